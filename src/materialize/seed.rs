//! Seeds: CSV files read and typed like dbt (agate's inference), then loaded
//! with the dialect's bulk load (`COPY ... FROM STDIN` on Postgres) inside one
//! transaction.

use std::borrow::Cow;
use std::sync::LazyLock;

use regex::Regex;

use super::{split_hooks, NodePlanInput};
use crate::adapter::dialect::{LoadSource, SeedType, TableOptions};
use crate::adapter::{Dialect, RelationKind};
use crate::error::{DiagKind, Diagnostic};

static INTEGER: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[-+]?\d+$").expect("static regex"));
static NUMBER: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$").expect("static regex"));
static DATE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^\d{4}-\d{2}-\d{2}$").expect("static regex"));
static DATETIME: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?$").expect("static regex")
});

fn is_bool(v: &str) -> bool {
    matches!(
        v.to_ascii_lowercase().as_str(),
        "true" | "false" | "t" | "f" | "yes" | "no" | "y" | "n"
    )
}

fn fits(t: SeedType, v: &str) -> bool {
    match t {
        SeedType::Integer => INTEGER.is_match(v) && v.trim_start_matches(['-', '+']).len() <= 9,
        SeedType::Number => NUMBER.is_match(v),
        SeedType::Date => {
            DATE.is_match(v) && chrono::NaiveDate::parse_from_str(v, "%Y-%m-%d").is_ok()
        }
        SeedType::DateTime => DATETIME.is_match(v),
        SeedType::Boolean => is_bool(v),
        SeedType::Text => true,
    }
}

/// The narrowest type every non-empty value fits; a column with no values
/// at all is an integer, as agate (and so dbt) infers it.
pub fn infer(values: &mut dyn Iterator<Item = &str>) -> SeedType {
    let order = [
        SeedType::Integer,
        SeedType::Number,
        SeedType::Date,
        SeedType::DateTime,
        SeedType::Boolean,
        SeedType::Text,
    ];
    let mut candidates: Vec<SeedType> = order.to_vec();
    let mut any = false;
    for v in values {
        if v.is_empty() {
            continue;
        }
        any = true;
        candidates.retain(|t| fits(*t, v));
        if candidates.len() == 1 {
            break;
        }
    }
    if !any {
        return SeedType::Integer;
    }
    candidates.first().copied().unwrap_or(SeedType::Text)
}

/// A parsed seed file ready to load.
#[derive(Debug, Clone)]
pub struct SeedData {
    pub columns: Vec<String>,
    pub types: Vec<String>,
    /// The rows re-encoded as CSV for `COPY ... WITH (FORMAT csv)`; empty = NULL.
    pub copy_data: Vec<u8>,
    pub rows: usize,
}

/// Reads a CSV, checking every row has the header's width. `column_types`
/// overrides inferred types by column name.
pub fn read_csv(
    d: &dyn Dialect,
    file: &str,
    bytes: &[u8],
    delimiter: u8,
    column_types: &dyn Fn(&str) -> Option<String>,
) -> Result<SeedData, Diagnostic> {
    let text = std::str::from_utf8(bytes).map_err(|e| {
        let line = bytes[..e.valid_up_to()]
            .iter()
            .filter(|b| **b == b'\n')
            .count()
            + 1;
        Diagnostic::new(DiagKind::Io, "seed file is not valid UTF-8")
            .at(file, None, line, 1)
            .hint("save the CSV as UTF-8")
    })?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut rows = parse_csv(text, delimiter)
        .map_err(|(line, msg)| Diagnostic::new(DiagKind::Io, msg).at(file, Some(text), line, 1))?
        .into_iter();
    let Some(header) = rows.next() else {
        return Err(
            Diagnostic::new(DiagKind::Io, "cannot read the header: the file is empty").at(
                file,
                Some(text),
                1,
                1,
            ),
        );
    };
    let columns: Vec<String> = header.fields.iter().map(|h| h.trim().to_string()).collect();
    if columns.is_empty() || columns.iter().any(String::is_empty) {
        return Err(
            Diagnostic::new(DiagKind::Io, "the header has an empty column name").at(
                file,
                Some(text),
                header.line,
                1,
            ),
        );
    }
    let mut records: Vec<Vec<Cow<'_, str>>> = Vec::new();
    for r in rows {
        // A blank line is a NULL value of a one-column seed (as dbt loads
        // it), and nothing in a wider one.
        if r.blank && columns.len() > 1 {
            continue;
        }
        if r.fields.len() != columns.len() {
            return Err(Diagnostic::new(
                DiagKind::Io,
                format!("row has {} fields but the header has {}", r.fields.len(), columns.len()),
            )
            .at(file, Some(text), r.line, 1)
            .hint("every row needs one value per header column; quote values that contain the delimiter"));
        }
        records.push(r.fields);
    }
    let types: Vec<String> = columns
        .iter()
        .enumerate()
        .map(|(i, c)| {
            column_types(c)
                .map(|t| d.declared_type(&t))
                .unwrap_or_else(|| d.seed_type(infer(&mut records.iter().map(|r| r[i].as_ref()))))
        })
        .collect();
    let mut copy_data = Vec::with_capacity(text.len() + records.len());
    for r in &records {
        for (i, f) in r.iter().enumerate() {
            if i > 0 {
                copy_data.push(b',');
            }
            // An empty seed value is NULL, as dbt loads it.
            crate::sql::copy_csv_field(&mut copy_data, Some(f.as_ref()).filter(|v| !v.is_empty()));
        }
        copy_data.push(b'\n');
    }
    Ok(SeedData {
        columns,
        types,
        copy_data,
        rows: records.len(),
    })
}

/// One CSV record and the line it starts on.
#[derive(Debug, Clone, PartialEq, Eq)]
struct CsvRow<'a> {
    line: usize,
    /// Borrowed from the file unless a quoted value holds `""`.
    fields: Vec<Cow<'a, str>>,
    /// An empty line.
    blank: bool,
}

/// Reads CSV as RFC 4180 writes it (quoted fields may hold delimiters,
/// quotes as `""` and line breaks), keeping blank lines, and refusing a
/// quote that never closes instead of swallowing the rest of the file.
/// Works on bytes: an ASCII delimiter, quote or line break never occurs
/// inside a multi-byte UTF-8 character.
fn parse_csv(text: &str, delimiter: u8) -> Result<Vec<CsvRow<'_>>, (usize, String)> {
    let b = text.as_bytes();
    let mut rows = Vec::new();
    let mut fields: Vec<Cow<'_, str>> = Vec::new();
    let mut line = 1usize;
    let mut i = 0usize;
    let n = b.len();
    while i < n {
        let row_line = line;
        // One record.
        loop {
            let field: Cow<'_, str>;
            if b[i] == b'"' {
                let open_line = line;
                let start = i + 1;
                let mut j = start;
                let mut escaped = false;
                loop {
                    if j >= n {
                        return Err((
                            open_line,
                            "malformed CSV: a quoted value starts here and is never closed"
                                .to_string(),
                        ));
                    }
                    match b[j] {
                        b'"' if j + 1 < n && b[j + 1] == b'"' => {
                            escaped = true;
                            j += 2;
                        }
                        b'"' => break,
                        b'\n' => {
                            line += 1;
                            j += 1;
                        }
                        _ => j += 1,
                    }
                }
                let inner = &text[start..j];
                i = j + 1;
                // Text after the closing quote belongs to the value (lenient, like dbt).
                let rest_start = i;
                while i < n && b[i] != delimiter && b[i] != b'\n' && b[i] != b'\r' {
                    i += 1;
                }
                let mut value = if escaped {
                    Cow::Owned(inner.replace("\"\"", "\""))
                } else {
                    Cow::Borrowed(inner)
                };
                if i > rest_start {
                    value = Cow::Owned(format!("{value}{}", &text[rest_start..i]));
                }
                field = value;
            } else {
                let start = i;
                while i < n && b[i] != delimiter && b[i] != b'\n' {
                    i += 1;
                }
                let mut end = i;
                if i < n && b[i] == b'\n' && end > start && b[end - 1] == b'\r' {
                    end -= 1;
                }
                field = Cow::Borrowed(&text[start..end]);
            }
            fields.push(field);
            if i < n && b[i] == b'\r' && i + 1 < n && b[i + 1] == b'\n' {
                i += 1;
            }
            if i < n && b[i] == delimiter {
                i += 1;
                if i >= n {
                    fields.push(Cow::Borrowed(""));
                    break;
                }
                continue;
            }
            // End of line or of file.
            if i < n {
                i += 1;
                line += 1;
            }
            break;
        }
        let blank = fields.len() == 1 && fields[0].is_empty();
        rows.push(CsvRow {
            line: row_line,
            fields: std::mem::take(&mut fields),
            blank,
        });
    }
    Ok(rows)
}

/// How a seed's rows reach the warehouse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SeedSource {
    /// Streamed from the client (`COPY ... FROM STDIN`).
    ClientCsv,
    /// Copied server side from a CSV object Strata uploads first (Redshift).
    S3 { url: String, iam_role: String },
    /// Multi-row INSERTs of at most `max_bytes` each, where nothing else can
    /// load (Redshift without an S3 staging location).
    Inserts { max_bytes: usize },
}

/// The load step of a seed plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SeedLoad {
    /// A COPY the client streams the CSV data into.
    ClientCopy(String),
    /// Statements that carry the rows themselves, or load them server side.
    Statements(Vec<String>),
}

impl SeedLoad {
    /// The statements as text, for errors, dry runs and snapshots.
    pub fn sql(&self) -> Vec<&str> {
        match self {
            SeedLoad::ClientCopy(s) => vec![s.as_str()],
            SeedLoad::Statements(v) => v.iter().map(String::as_str).collect(),
        }
    }
}

/// The statements around the COPY of a seed: `before`, the COPY and `after`
/// run in one transaction; hooks outside the transaction run around it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeedPlan {
    /// Hooks with `transaction: false`, before the load.
    pub outside_before: Vec<String>,
    pub before: Vec<String>,
    pub load: SeedLoad,
    pub after: Vec<String>,
    /// Hooks with `transaction: false`, after the load.
    pub outside_after: Vec<String>,
}

/// Full refresh (or first load): a new table, swapped in. Otherwise the existing
/// table is emptied and reloaded. Either way in one transaction, so where
/// TRUNCATE would commit it (Redshift) the rows are deleted instead.
pub fn plan(
    d: &dyn Dialect,
    node: &NodePlanInput<'_>,
    data: &SeedData,
    quote_columns: bool,
    recreate: bool,
    source: &SeedSource,
) -> SeedPlan {
    let target = &node.target;
    let relation = d.relation(target);
    let mut outside_before = Vec::new();
    let mut outside_after = Vec::new();
    let mut before = Vec::new();
    let mut after = Vec::new();
    split_hooks(&node.pre_hooks, &mut outside_before, &mut before);
    let col = |c: &str| {
        if quote_columns {
            d.quote_ident(c)
        } else {
            c.to_string()
        }
    };
    let cols: Vec<String> = data.columns.iter().map(|c| col(c)).collect();
    if recreate {
        let tmp = d.relation(&target.sibling(&d.suffixed(&target.identifier, "__dbt_tmp")));
        let defs: Vec<String> = cols
            .iter()
            .zip(&data.types)
            .map(|(c, t)| format!("{c} {t}"))
            .collect();
        before.push(d.drop_relation(RelationKind::Table, &tmp));
        before.push(d.create_table(&tmp, &defs, &TableOptions::default()));
        // Views built on the old table outlive it (`drop ... cascade`).
        match d.keep_dependent_views(&relation) {
            Some(k) => {
                let backup_name = d.suffixed(&target.identifier, "__dbt_backup");
                let backup = d.relation(&target.sibling(&backup_name));
                after.push(k.remember);
                after.push(d.drop_relation(RelationKind::Table, &backup));
                after.push(d.rename_relation(RelationKind::Table, &relation, &backup_name, true));
                after.push(d.rename_relation(RelationKind::Table, &tmp, &target.identifier, false));
                after.push(k.repoint);
                after.push(d.drop_relation(RelationKind::Table, &backup));
            }
            None => {
                after.push(d.drop_relation(RelationKind::Table, &relation));
                after.push(d.rename_relation(RelationKind::Table, &tmp, &target.identifier, false));
            }
        }
        split_hooks(&node.post_hooks, &mut outside_after, &mut after);
        SeedPlan {
            outside_before,
            before,
            load: load_step(d, &tmp, &cols, data, source),
            after,
            outside_after,
        }
    } else {
        before.push(if d.truncate_is_transactional() {
            d.truncate(&relation)
        } else {
            d.delete_all(&relation)
        });
        split_hooks(&node.post_hooks, &mut outside_after, &mut after);
        SeedPlan {
            outside_before,
            before,
            load: load_step(d, &relation, &cols, data, source),
            after,
            outside_after,
        }
    }
}

fn load_step(
    d: &dyn Dialect,
    relation: &str,
    cols: &[String],
    data: &SeedData,
    source: &SeedSource,
) -> SeedLoad {
    match source {
        SeedSource::ClientCsv => {
            SeedLoad::ClientCopy(d.copy_from(relation, cols, &LoadSource::ClientCsv))
        }
        SeedSource::S3 { url, iam_role } => SeedLoad::Statements(vec![d.copy_from(
            relation,
            cols,
            &LoadSource::S3Csv {
                url: url.clone(),
                iam_role: iam_role.clone(),
            },
        )]),
        SeedSource::Inserts { max_bytes } => {
            SeedLoad::Statements(insert_statements(d, relation, cols, data, *max_bytes))
        }
    }
}

/// The rows as multi-row INSERTs, each at most `max_bytes` long (a single
/// row longer than that is a statement of its own). Values are string
/// literals the server casts to the column types; an empty value is NULL.
pub fn insert_statements(
    d: &dyn Dialect,
    relation: &str,
    cols: &[String],
    data: &SeedData,
    max_bytes: usize,
) -> Vec<String> {
    let head = format!("insert into {relation} ({}) values\n", cols.join(", "));
    let text = String::from_utf8_lossy(&data.copy_data);
    let rows = parse_csv(&text, b',').unwrap_or_default();
    let mut out = Vec::new();
    let mut current = String::new();
    for r in rows {
        if r.blank && cols.len() > 1 {
            continue;
        }
        let values: Vec<String> = if r.blank {
            vec!["null".into()]
        } else {
            r.fields
                .iter()
                .map(|f| {
                    if f.is_empty() {
                        "null".to_string()
                    } else {
                        d.quote_literal(f)
                    }
                })
                .collect()
        };
        let tuple = format!("({})", values.join(", "));
        if !current.is_empty() && current.len() + 2 + tuple.len() > max_bytes {
            out.push(std::mem::take(&mut current));
        }
        if current.is_empty() {
            current.push_str(&head);
        } else {
            current.push_str(",\n");
        }
        current.push_str(&tuple);
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapter::dialect::{self, PostgresDialect};
    use crate::materialize::{HookSql, RelationId};

    #[test]
    fn inference_follows_agate_order() {
        let t = |vals: &[&str]| infer(&mut vals.iter().copied());
        assert_eq!(t(&["1", "2", ""]), SeedType::Integer);
        assert_eq!(t(&["1", "2.5"]), SeedType::Number);
        assert_eq!(t(&["2024-01-02"]), SeedType::Date);
        assert_eq!(t(&["2024-01-02 10:00:00", "2024-01-03"]), SeedType::Text);
        assert_eq!(t(&["2024-01-02T10:00:00"]), SeedType::DateTime);
        assert_eq!(t(&["true", "False"]), SeedType::Boolean);
        assert_eq!(t(&["$1.00"]), SeedType::Text);
        // A column with no values is an integer, as agate infers it.
        assert_eq!(t(&["", ""]), SeedType::Integer);
        assert_eq!(t(&["12345678901"]), SeedType::Number);
    }

    #[test]
    fn ragged_rows_name_the_line() {
        let d = &PostgresDialect;
        let e = read_csv(d, "seeds/x.csv", b"a,b\n1,2\n3\n", b',', &|_| None).unwrap_err();
        assert_eq!(e.location.unwrap().line, 3);
        let e = read_csv(d, "seeds/x.csv", b"a,b\n1,\xff\n", b',', &|_| None).unwrap_err();
        assert_eq!(e.location.unwrap().line, 2);
    }

    /// What each dialect loads seeds with when nothing else is configured.
    fn source(d: &dyn Dialect) -> SeedSource {
        if d.copy_from_client() {
            SeedSource::ClientCsv
        } else {
            SeedSource::Inserts { max_bytes: 1 << 20 }
        }
    }

    #[test]
    fn inserts_are_bounded_and_null_aware() {
        let d = &PostgresDialect;
        let data = read_csv(
            d,
            "s.csv",
            b"id,name\n1,a'b\n2,\n3,\"x,y\"\n",
            b',',
            &|_| None,
        )
        .unwrap();
        let cols = vec!["id".to_string(), "name".to_string()];
        let one = insert_statements(d, "t", &cols, &data, 1 << 20);
        assert_eq!(
            one,
            vec!["insert into t (id, name) values\n('1', 'a''b'),\n('2', null),\n('3', 'x,y')"]
        );
        // A limit smaller than two rows: one statement per row, none empty.
        let many = insert_statements(d, "t", &cols, &data, 50);
        assert_eq!(many.len(), 3);
        assert!(many.iter().all(|s| s.starts_with("insert into t")));
    }

    #[test]
    fn s3_seeds_copy_server_side() {
        let d = &dialect::RedshiftDialect::default();
        let data = read_csv(d, "s.csv", b"id,name\n1,a\n", b',', &|_| None).unwrap();
        let target = NodePlanInput::new(RelationId::new("db", "raw", "s"), "");
        let src = SeedSource::S3 {
            url: "s3://bucket/seeds/s.csv".into(),
            iam_role: "arn:aws:iam::123456789012:role/load".into(),
        };
        let p = plan(d, &target, &data, true, true, &src);
        insta::assert_snapshot!(p.load.sql().join(";\n"));
    }

    #[test]
    fn plans() {
        for d in dialect::all() {
            let data = read_csv(d, "s.csv", b"id,name\n1,a\n", b',', &|_| None).unwrap();
            let show = |p: SeedPlan| {
                format!(
                    "{}\n-- copy\n{}\n-- after\n{}",
                    p.before.join(";\n"),
                    p.load.sql().join(";\n"),
                    p.after.join(";\n")
                )
            };
            let target = NodePlanInput::new(RelationId::new("db", "raw", "s"), "");
            insta::assert_snapshot!(
                format!("{}__seed_recreate", d.name()),
                show(plan(d, &target, &data, true, true, &source(d)))
            );
            insta::assert_snapshot!(
                format!("{}__seed_reload", d.name()),
                show(plan(d, &target, &data, false, false, &source(d)))
            );
        }
    }

    #[test]
    fn hooks_run_inside_or_around_the_load() {
        let d = &PostgresDialect;
        let data = read_csv(d, "s.csv", b"id\n1\n", b',', &|_| None).unwrap();
        let mut node = NodePlanInput::new(RelationId::new("db", "raw", "s"), "");
        node.pre_hooks = vec![HookSql::new("set a", false), HookSql::new("set b", true)];
        node.post_hooks = vec![
            HookSql::new("analyze s", true),
            HookSql::new("vacuum s", false),
        ];
        for recreate in [true, false] {
            let p = plan(d, &node, &data, true, recreate, &SeedSource::ClientCsv);
            assert_eq!(p.outside_before, vec!["set a"]);
            assert_eq!(p.before.first().map(String::as_str), Some("set b"));
            assert_eq!(p.after.last().map(String::as_str), Some("analyze s"));
            assert_eq!(p.outside_after, vec!["vacuum s"]);
        }
    }

    #[test]
    fn copy_data_keeps_quotes_and_nulls() {
        let d = read_csv(
            &PostgresDialect,
            "s.csv",
            b"id,name\n1,\"a, b\"\n2,\n",
            b',',
            &|c| (c == "id").then(|| "bigint".into()),
        )
        .unwrap();
        assert_eq!(d.types, vec!["bigint", "text"]);
        assert_eq!(String::from_utf8(d.copy_data).unwrap(), "1,\"a, b\"\n2,\n");
    }

    #[test]
    fn every_value_arrives_or_the_file_is_refused() {
        let d = &PostgresDialect;
        // COPY's end-of-data marker as a value is quoted, not an end.
        let data = read_csv(d, "s.csv", b"v\na\n\\.\nb\nc\n", b',', &|_| None).unwrap();
        assert_eq!(data.rows, 4);
        assert_eq!(
            String::from_utf8(data.copy_data).unwrap(),
            "a\n\"\\.\"\nb\nc\n"
        );
        // A blank line is a NULL row of a one-column seed, nothing in a wider one.
        let data = read_csv(d, "s.csv", b"v\na\n\nb\n", b',', &|_| None).unwrap();
        assert_eq!(data.rows, 3);
        assert_eq!(String::from_utf8(data.copy_data).unwrap(), "a\n\nb\n");
        let data = read_csv(d, "s.csv", b"a,b\n1,2\n\n3,4\r\n", b',', &|_| None).unwrap();
        assert_eq!(data.rows, 2);
        assert_eq!(String::from_utf8(data.copy_data).unwrap(), "1,2\n3,4\n");
        // An unterminated quote names the line where it opens.
        let e = read_csv(d, "s.csv", b"a,b\n1,2\n3,\"x\n4,5\n6,7\n", b',', &|_| None).unwrap_err();
        assert_eq!(e.location.as_ref().unwrap().line, 3);
        assert!(e.to_string().contains("never closed"), "{e}");
        // Quoted line breaks keep later line numbers right.
        let e = read_csv(d, "s.csv", b"a,b\n1,\"x\ny\"\n3\n", b',', &|_| None).unwrap_err();
        assert_eq!(e.location.unwrap().line, 4);
    }
}
