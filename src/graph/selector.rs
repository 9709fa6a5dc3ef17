//! Evaluates selection expressions against a manifest and its graph.

use std::collections::{BTreeSet, HashMap};

use petgraph::Direction;
use serde_json::Value as Json;
use serde_yaml::Value as Yaml;

use super::Graph;
use crate::error::{DiagKind, Diagnostic};
use crate::manifest::{Manifest, ResourceType};
use crate::selector_syntax::yaml_expr;
pub use crate::selector_syntax::{parse_cli, Atom, Expr, IndirectSelection, Method};

fn glob(pattern: &str, text: &str) -> bool {
    if !pattern.contains(['*', '?', '[']) {
        return pattern == text;
    }
    fn rec(p: &[char], t: &[char]) -> bool {
        match (p.first(), t.first()) {
            (None, None) => true,
            (Some('*'), _) => rec(&p[1..], t) || (!t.is_empty() && rec(p, &t[1..])),
            (Some('?'), Some(_)) => rec(&p[1..], &t[1..]),
            (Some(a), Some(b)) if a == b => rec(&p[1..], &t[1..]),
            _ => false,
        }
    }
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    rec(&p, &t)
}

fn fqn_matches(fqn: &[String], value: &str) -> bool {
    if fqn.last().is_some_and(|n| glob(value, n)) {
        return true;
    }
    let parts: Vec<&str> = value.split('.').collect();
    let try_prefix = |f: &[String]| {
        parts.len() <= f.len()
            && parts.iter().zip(f).enumerate().all(|(i, (p, q))| {
                if *p == "*" && i == parts.len() - 1 {
                    return true;
                }
                glob(p, q)
            })
    };
    try_prefix(fqn) || (fqn.len() > 1 && try_prefix(&fqn[1..]))
}

/// What a selector needs to know about one node-like thing.
struct Item<'a> {
    id: &'a str,
    rt: ResourceType,
    name: &'a str,
    package: &'a str,
    fqn: &'a [String],
    path: &'a str,
    tags: &'a [String],
    config: Option<&'a crate::confmap::ConfigMap>,
    test_name: Option<&'a str>,
    generic: bool,
    source: Option<(&'a str, &'a str)>,
}

fn items(m: &Manifest) -> Vec<Item<'_>> {
    let mut v = Vec::with_capacity(m.nodes.len() + m.sources.len());
    for n in m
        .nodes
        .values()
        .filter(|n| n.resource_type != ResourceType::Operation)
    {
        v.push(Item {
            id: &n.unique_id,
            rt: n.resource_type,
            name: &n.name,
            package: &n.package,
            fqn: &n.fqn,
            path: &n.original_file_path,
            tags: &n.config.tags,
            config: Some(&n.config.all),
            test_name: match (&n.test, n.resource_type) {
                (Some(t), _) => Some(t.name.as_str()),
                (None, ResourceType::Test) => Some(n.name.as_str()),
                _ => None,
            },
            generic: n.test.is_some(),
            source: None,
        });
    }
    for s in m.sources.values() {
        v.push(Item {
            id: &s.unique_id,
            rt: ResourceType::Source,
            name: &s.name,
            package: &s.package,
            fqn: &s.fqn,
            path: &s.original_file_path,
            tags: &s.tags,
            config: Some(&s.config.all),
            test_name: None,
            generic: false,
            source: Some((&s.source_name, &s.name)),
        });
    }
    for u in m.unit_tests.values() {
        v.push(Item {
            id: &u.unique_id,
            rt: ResourceType::UnitTest,
            name: &u.name,
            package: &u.package,
            fqn: &u.fqn,
            path: &u.original_file_path,
            tags: &u.tags,
            config: Some(&u.config),
            test_name: Some(&u.name),
            generic: false,
            source: None,
        });
    }
    for e in m.exposures.values() {
        v.push(Item {
            id: &e.unique_id,
            rt: ResourceType::Exposure,
            name: &e.name,
            package: &e.package,
            fqn: &e.fqn,
            path: &e.original_file_path,
            tags: &e.tags,
            config: Some(&e.config.all),
            test_name: None,
            generic: false,
            source: None,
        });
    }
    v
}

fn config_matches(v: &Json, want: &str) -> bool {
    match v {
        Json::String(s) => glob(want, s),
        Json::Bool(b) => want.eq_ignore_ascii_case(&b.to_string()),
        Json::Number(n) => n.to_string() == want,
        Json::Array(a) => a.iter().any(|x| config_matches(x, want)),
        _ => false,
    }
}

fn path_matches(path: &str, value: &str) -> bool {
    let value = value.trim_end_matches('/');
    glob(value, path) || path.starts_with(&format!("{value}/")) || path == value
}

fn atom_base(item: &Item<'_>, atom: &Atom) -> bool {
    let v = atom.value.as_str();
    match &atom.method {
        Method::Default => {
            if v.contains('/') || v.ends_with(".sql") || v.ends_with(".csv") {
                path_matches(item.path, v)
            } else {
                fqn_matches(item.fqn, v)
            }
        }
        Method::Fqn => fqn_matches(item.fqn, v),
        Method::Tag => item.tags.iter().any(|t| glob(v, t)),
        Method::Path => path_matches(item.path, v),
        Method::File => {
            let file = item.path.rsplit('/').next().unwrap_or(item.path);
            glob(v, file) || file.rsplit_once('.').is_some_and(|(s, _)| glob(v, s))
        }
        Method::Config(key) => item
            .config
            .and_then(|c| c.get(key.as_str()))
            .is_some_and(|x| config_matches(x, v)),
        Method::ResourceType => {
            v == item.rt.as_str() || (v == "data_test" && item.rt == ResourceType::Test)
        }
        Method::Source => match item.source {
            Some((s, t)) => {
                let parts: Vec<&str> = v.split('.').collect();
                match parts.as_slice() {
                    [a] => glob(a, s),
                    [a, b] if glob(a, s) && glob(b, t) => true,
                    [p, a] => glob(p, item.package) && glob(a, s),
                    [p, a, b] => glob(p, item.package) && glob(a, s) && glob(b, t),
                    _ => false,
                }
            }
            None => false,
        },
        Method::Exposure => item.rt == ResourceType::Exposure && glob(v, item.name),
        Method::TestType => match v {
            "generic" | "schema" => item.rt == ResourceType::Test && item.generic,
            "singular" | "data" => item.rt == ResourceType::Test && !item.generic,
            "unit" => item.rt == ResourceType::UnitTest,
            _ => false,
        },
        Method::TestName => item.test_name.is_some_and(|t| glob(v, t)),
        Method::Package => glob(v, item.package),
        Method::Selector => false,
    }
}

/// Evaluates selection expressions against one manifest and graph.
pub struct Selector<'a> {
    m: &'a Manifest,
    g: &'a Graph,
    items: Vec<Item<'a>>,
    yaml: HashMap<String, Expr>,
}

impl<'a> Selector<'a> {
    pub fn new(m: &'a Manifest, g: &'a Graph) -> Result<Self, Diagnostic> {
        let yaml = yaml_selectors(&m.selectors)?;
        Ok(Selector {
            m,
            g,
            items: items(m),
            yaml,
        })
    }

    pub fn yaml_selector(&self, name: &str) -> Result<&Expr, Diagnostic> {
        self.yaml.get(name).ok_or_else(|| {
            let mut d = Diagnostic::new(
                DiagKind::Selector,
                format!("selector '{name}' is not defined in selectors.yml"),
            );
            d = match crate::error::suggest(name, self.yaml.keys().map(String::as_str)) {
                Some(h) => d.hint(h),
                None if self.yaml.is_empty() => d.hint(
                    "no selectors are defined; add them to selectors.yml next to dbt_project.yml",
                ),
                None => {
                    let mut names: Vec<&str> = self.yaml.keys().map(String::as_str).collect();
                    names.sort();
                    d.hint(format!("defined selectors: {}", names.join(", ")))
                }
            };
            d
        })
    }

    /// The `default: true` YAML selector, if any.
    pub fn default_expr(&self) -> Option<Expr> {
        let sels = self.m.selectors.as_object()?;
        sels.iter()
            .find(|(_, v)| v.get("default").and_then(Json::as_bool) == Some(true))
            .and_then(|(k, _)| self.yaml.get(k).cloned())
    }

    pub fn eval(&self, e: &Expr) -> Result<BTreeSet<String>, Diagnostic> {
        self.eval_depth(e, 0)
    }

    fn eval_depth(&self, e: &Expr, depth: usize) -> Result<BTreeSet<String>, Diagnostic> {
        if depth > 50 {
            return Err(Diagnostic::new(
                DiagKind::Selector,
                "YAML selectors refer to each other in a cycle",
            ));
        }
        Ok(match e {
            Expr::Union(v) => {
                let mut out = BTreeSet::new();
                for x in v {
                    out.extend(self.eval_depth(x, depth + 1)?);
                }
                out
            }
            Expr::Intersection(v) => {
                let mut it = v.iter();
                let Some(first) = it.next() else {
                    return Ok(BTreeSet::new());
                };
                let mut out = self.eval_depth(first, depth + 1)?;
                for x in it {
                    let other = self.eval_depth(x, depth + 1)?;
                    out.retain(|i| other.contains(i));
                }
                out
            }
            Expr::Difference(a, b) => {
                let mut out = self.eval_depth(a, depth + 1)?;
                for x in self.eval_depth(b, depth + 1)? {
                    out.remove(&x);
                }
                out
            }
            Expr::Atom(a) => {
                let base: BTreeSet<String> = if a.method == Method::Selector {
                    self.eval_depth(self.yaml_selector(&a.value)?, depth + 1)?
                } else {
                    self.items
                        .iter()
                        .filter(|i| atom_base(i, a))
                        .map(|i| i.id.to_string())
                        .collect()
                };
                self.expand(a, base)
            }
        })
    }

    fn expand(&self, a: &Atom, base: BTreeSet<String>) -> BTreeSet<String> {
        let mut out = base.clone();
        for id in &base {
            if let Some(d) = a.parents {
                out.extend(self.g.walk(id, Direction::Incoming, d));
            }
            if a.children.is_some() || a.at {
                let desc = self.g.walk(id, Direction::Outgoing, a.children.flatten());
                if a.at {
                    for c in &desc {
                        out.extend(self.g.walk(c, Direction::Incoming, None));
                    }
                    out.extend(self.g.walk(id, Direction::Incoming, None));
                }
                out.extend(desc);
            }
        }
        out
    }

    /// Adds tests whose parents are selected (dbt's indirect selection).
    pub fn add_tests(&self, selected: &mut BTreeSet<String>, mode: IndirectSelection) {
        if mode == IndirectSelection::Empty {
            return;
        }
        let mut extra = Vec::new();
        for n in self.m.nodes.values() {
            if n.resource_type != ResourceType::Test || selected.contains(&n.unique_id) {
                continue;
            }
            let parents = &n.depends_on_nodes;
            if parents.is_empty() {
                continue;
            }
            let sel = |p: &String| selected.contains(p);
            let pick = match mode {
                IndirectSelection::Eager => parents.iter().any(sel),
                IndirectSelection::Cautious => parents.iter().all(sel),
                IndirectSelection::Buildable => parents.iter().all(|p| {
                    sel(p)
                        || parents.iter().any(|q| {
                            sel(q) && self.g.walk(q, Direction::Incoming, None).contains(p)
                        })
                }),
                IndirectSelection::Empty => false,
            };
            if pick {
                extra.push(n.unique_id.clone());
            }
        }
        // Unit tests go with their model (dbt selects them indirectly too).
        if !self.m.unit_tests.is_empty() {
            let models: HashMap<&str, &str> = self
                .m
                .nodes
                .values()
                .filter(|n| n.resource_type == ResourceType::Model)
                .map(|n| (n.name.as_str(), n.unique_id.as_str()))
                .collect();
            for u in self.m.unit_tests.values() {
                if models
                    .get(u.model.as_str())
                    .is_some_and(|id| selected.contains(*id))
                {
                    extra.push(u.unique_id.clone());
                }
            }
        }
        selected.extend(extra);
    }
}

fn yaml_selectors(j: &Json) -> Result<HashMap<String, Expr>, Diagnostic> {
    let mut out = HashMap::new();
    if let Some(m) = j.as_object() {
        for (k, v) in m {
            let def: Yaml =
                serde_yaml::to_value(v.get("definition").cloned().unwrap_or(Json::Null))
                    .map_err(|e| Diagnostic::new(DiagKind::Selector, e.to_string()))?;
            out.insert(k.clone(), yaml_expr(&def)?);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fqn_and_glob() {
        let fqn: Vec<String> = ["p", "staging", "stg_a"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert!(fqn_matches(&fqn, "stg_a"));
        assert!(fqn_matches(&fqn, "staging"));
        assert!(fqn_matches(&fqn, "p.staging.*"));
        assert!(fqn_matches(&fqn, "stg_*"));
        assert!(!fqn_matches(&fqn, "marts"));
    }
}
