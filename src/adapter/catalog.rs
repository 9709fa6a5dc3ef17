//! Reading the text rows of a dialect's catalog queries into typed values,
//! the same for every transport.

use std::collections::HashMap;

use super::{RelationInfo, RelationKind, Table};

/// `table`, `view` or `materialized_view` as a kind.
pub(super) fn kind_of(word: &str) -> RelationKind {
    match word {
        "view" => RelationKind::View,
        "materialized_view" => RelationKind::MaterializedView,
        _ => RelationKind::Table,
    }
}

/// A materialized view may also be listed as the view over its storage
/// (Redshift): the most specific kind wins.
fn rank(k: RelationKind) -> u8 {
    match k {
        RelationKind::MaterializedView => 2,
        RelationKind::View => 1,
        _ => 0,
    }
}

pub(super) fn strongest_kind<S: AsRef<str>>(
    words: impl Iterator<Item = S>,
) -> Option<RelationKind> {
    words.map(|w| kind_of(w.as_ref())).max_by_key(|k| rank(*k))
}

/// A boolean as Postgres's text protocol (`t`) or a Data API string writes it.
pub(super) fn truthy(s: Option<&str>) -> bool {
    matches!(s, Some("t" | "true" | "TRUE" | "True" | "1"))
}

/// Rows of (schema, identifier, kind, granted), one relation per name.
pub(super) fn relations(t: Table) -> Vec<RelationInfo> {
    let mut out: Vec<RelationInfo> = Vec::with_capacity(t.rows.len());
    let mut seen: HashMap<(String, String), usize> = HashMap::new();
    for r in t.rows {
        let mut r = r.into_iter();
        let (Some(schema), Some(identifier)) = (r.next().flatten(), r.next().flatten()) else {
            continue;
        };
        let kind = kind_of(r.next().flatten().as_deref().unwrap_or("table"));
        let granted = truthy(r.next().flatten().as_deref());
        let key = (schema.clone(), identifier.clone());
        match seen.get(&key) {
            Some(&i) => {
                let prev = &mut out[i];
                if rank(kind) > rank(prev.kind) {
                    prev.kind = kind;
                }
                prev.granted |= granted;
            }
            None => {
                seen.insert(key, out.len());
                out.push(RelationInfo {
                    schema,
                    identifier,
                    kind,
                    granted,
                });
            }
        }
    }
    out
}
