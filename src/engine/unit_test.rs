//! Unit tests (dbt's YAML `unit_tests:`): the model's SQL runs against fixture
//! rows standing in for its inputs, and its output is compared with the
//! expected rows, without building anything upstream.

use std::collections::HashMap;

use minijinja::value::Value;
use serde_json::Value as Json;

use super::error::{NodeError, NodeErrorKind};
use crate::adapter::Dialect;
use crate::adapter::{Adapter, Column};
use crate::compile::{inject_ctes, CompiledNode, Compiler};
use crate::manifest::{Fixture, Manifest, Node, UnitTest};

/// What a unit test found.
#[derive(Debug, Clone, PartialEq)]
pub enum UnitOutcome {
    Pass,
    /// Expected and actual rows differ; the text is a readable diff.
    Fail(String),
}

fn literal(d: &dyn Dialect, v: &Json) -> String {
    match v {
        Json::Null => "null".into(),
        Json::Bool(b) => b.to_string(),
        Json::Number(n) => n.to_string(),
        Json::String(s) => d.quote_literal(s),
        other => d.quote_literal(&other.to_string()),
    }
}

/// The CTE body for one input's rows, typed like the real relation when it exists.
fn fixture_sql(d: &dyn Dialect, rows: &Fixture, columns: &[Column]) -> String {
    match rows {
        // Linking reads fixture files into rows or SQL; none is left here.
        Fixture::File { .. } => fixture_sql(d, &Fixture::Rows(Vec::new()), columns),
        Fixture::Sql(sql) => sql.clone(),
        Fixture::Rows(rows) => {
            let mut names: Vec<String> = columns.iter().map(|c| c.name.clone()).collect();
            for r in rows {
                for k in r.keys() {
                    if !names.contains(k) {
                        names.push(k.clone());
                    }
                }
            }
            let ty = |n: &str| {
                columns
                    .iter()
                    .find(|c| c.name == n)
                    .map(|c| c.data_type.clone())
            };
            let cell = |n: &str, v: Option<&Json>| {
                let lit = literal(d, v.unwrap_or(&Json::Null));
                match ty(n) {
                    Some(t) => format!("cast({lit} as {t}) as {}", d.quote_ident(n)),
                    None => format!("{lit} as {}", d.quote_ident(n)),
                }
            };
            if rows.is_empty() {
                let cols: Vec<String> = names.iter().map(|n| cell(n, None)).collect();
                if cols.is_empty() {
                    return "select null as dbt_unit_empty where false".into();
                }
                return format!("select {} where false", cols.join(", "));
            }
            rows.iter()
                .map(|r| {
                    let cols: Vec<String> = names.iter().map(|n| cell(n, r.get(n))).collect();
                    format!("select {}", cols.join(", "))
                })
                .collect::<Vec<_>>()
                .join("\nunion all\n")
        }
    }
}

/// Comparable text of a value: numbers canonical, booleans as true/false.
fn norm(v: Option<&str>) -> String {
    match v {
        None => "null".into(),
        Some("t") | Some("true") | Some("True") => "true".into(),
        Some("f") | Some("false") | Some("False") => "false".into(),
        Some(s) => match s.parse::<f64>() {
            Ok(f)
                if s.trim()
                    .chars()
                    .all(|c| c.is_ascii_digit() || matches!(c, '.' | '-' | '+' | 'e' | 'E')) =>
            {
                format!("{f}")
            }
            _ => s.to_string(),
        },
    }
}

fn json_text(v: &Json) -> Option<String> {
    match v {
        Json::Null => None,
        Json::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

fn table(header: &[String], rows: &[(char, Vec<String>)]) -> String {
    let widths: Vec<usize> = (0..header.len())
        .map(|i| {
            rows.iter()
                .map(|r| r.1[i].len())
                .chain([header[i].len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |mark: char, vals: &[String]| {
        let cells: Vec<String> = vals
            .iter()
            .zip(&widths)
            .map(|(v, w)| format!("{v:<w$}"))
            .collect();
        format!("{mark} | {} |", cells.join(" | "))
    };
    let mut out = vec![line(' ', header)];
    for (m, r) in rows {
        out.push(line(*m, r));
    }
    out.join("\n")
}

/// Runs one unit test. `Err` is a problem running it (bad fixture, SQL error).
pub fn run(
    m: &Manifest,
    compiler: &Compiler,
    adapter: &dyn Adapter,
    u: &UnitTest,
    done: &HashMap<String, CompiledNode>,
) -> Result<UnitOutcome, NodeError> {
    let config_error = |m: String| NodeError::new(NodeErrorKind::Config, m);
    let node: &Node = m
        .nodes
        .values()
        .find(|n| n.name == u.model && n.resource_type == crate::manifest::ResourceType::Model)
        .ok_or_else(|| {
            config_error(format!(
                "unit test '{}' tests model '{}', which does not exist",
                u.name, u.model
            ))
        })?;
    let to_map = |map: &indexmap::IndexMap<String, Json>| crate::jinja::to_value(map);
    let overrides: Vec<(String, Value)> = vec![
        ("__strata_var_overrides".into(), to_map(&u.vars)),
        ("__strata_env_overrides".into(), to_map(&u.env_vars)),
        ("__strata_macro_overrides".into(), to_map(&u.macros)),
    ];
    let compiled = compiler.compile_with_overrides(node, overrides, done)?;
    let mut sql = compiled.pre_injected.clone();
    let mut ctes: Vec<(String, String)> = compiled.extra_ctes.clone();
    for (i, g) in u.given.iter().enumerate() {
        // Types the warehouse does not know yet (a source not loaded yet)
        // come from the declared columns.
        let mut declared: Vec<Column> = Vec::new();
        let (rendered, schema, ident) = if let Some(r) = g.refs.first() {
            let (uid, rendered, eph) = compiler
                .resolver()
                .resolve_rendered(&node.package, r)
                .map_err(config_error)?;
            if eph {
                return Err(config_error(format!(
                    "given input {} is an ephemeral model; give its inputs instead",
                    g.input
                )));
            }
            let n = &m.nodes[uid];
            (rendered.to_string(), n.schema.clone(), n.alias.clone())
        } else {
            let (s, t) = g.sources.first().cloned().unwrap_or_default();
            let src = m
                .sources
                .values()
                .find(|x| x.source_name == s && x.name == t)
                .ok_or_else(|| {
                    config_error(format!("given input {} is not a defined source", g.input))
                })?;
            declared = src
                .columns
                .values()
                .filter_map(|c| {
                    Some(Column {
                        name: c.name.clone(),
                        data_type: c.data_type.clone()?,
                    })
                })
                .collect();
            (
                src.relation_name.clone(),
                src.schema.clone(),
                src.identifier.clone(),
            )
        };
        let name = format!("__dbt__unit_given_{i}");
        sql = sql.replace(&rendered, &name);
        let mut columns = adapter.columns_of(&schema, &ident).unwrap_or_default();
        if columns.is_empty() {
            columns = declared;
        }
        ctes.push((
            name.clone(),
            format!(
                " {name} as (\n{}\n)",
                fixture_sql(adapter.dialect(), &g.rows, &columns)
            ),
        ));
    }
    let sql = inject_ctes(&sql, &ctes);
    let query = format!("select * from (\n{sql}\n) as dbt_unit_actual");
    let actual = adapter
        .query(&query)
        .map_err(|e| NodeError::in_statement(e, &query))?;
    let (exp_cols, expected): (Vec<String>, Vec<Vec<Option<String>>>) = match &u.expect {
        Fixture::Rows(rows) => {
            let mut cols: Vec<String> = Vec::new();
            for r in rows {
                for k in r.keys() {
                    if !cols.contains(k) {
                        cols.push(k.clone());
                    }
                }
            }
            let vals = rows
                .iter()
                .map(|r| cols.iter().map(|c| r.get(c).and_then(json_text)).collect())
                .collect();
            (cols, vals)
        }
        Fixture::File { .. } => (Vec::new(), Vec::new()),
        Fixture::Sql(q) => {
            let t = adapter
                .query(q)
                .map_err(|e| NodeError::in_statement(e, q).context("expect rows query failed"))?;
            (t.columns, t.rows)
        }
    };
    let idx: Vec<usize> = exp_cols
        .iter()
        .map(|c| {
            actual.columns.iter().position(|a| a == c).ok_or_else(|| {
                config_error(format!(
                    "expected column '{c}' is not in the model's output ({})",
                    actual.columns.join(", ")
                ))
            })
        })
        .collect::<Result<_, _>>()?;
    let key = |vals: Vec<String>| vals;
    let mut exp: Vec<Vec<String>> = expected
        .iter()
        .map(|r| key(r.iter().map(|v| norm(v.as_deref())).collect()))
        .collect();
    let mut act: Vec<Vec<String>> = actual
        .rows
        .iter()
        .map(|r| key(idx.iter().map(|&i| norm(r[i].as_deref())).collect()))
        .collect();
    exp.sort();
    act.sort();
    if exp == act {
        return Ok(UnitOutcome::Pass);
    }
    // A diff: rows only expected (-), only actual (+), and shared ( ).
    let mut rows: Vec<(char, Vec<String>)> = Vec::new();
    let mut act_left = act.clone();
    for e in &exp {
        match act_left.iter().position(|a| a == e) {
            Some(p) => {
                act_left.remove(p);
                rows.push((' ', e.clone()));
            }
            None => rows.push(('-', e.clone())),
        }
    }
    for a in act_left {
        rows.push(('+', a));
    }
    Ok(UnitOutcome::Fail(format!(
        "actual differs from expected (- expected, + actual):\n{}",
        table(&exp_cols, &rows)
    )))
}
