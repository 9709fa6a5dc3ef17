//! dbt's node selection syntax (`+a b,c tag:x @y`) and YAML selectors.

use std::collections::{BTreeSet, HashMap};

use petgraph::Direction;
use serde_json::Value as Json;
use serde_yaml::Value as Yaml;

use super::Graph;
use crate::error::{yaml_diagnostic, DiagKind, Diagnostic};
use crate::manifest::{Manifest, ResourceType};

/// One selection atom: `2+method:value+1` or `@value`.
#[derive(Debug, Clone, PartialEq)]
pub struct Atom {
    pub method: Method,
    pub value: String,
    pub parents: Option<Option<usize>>,
    pub children: Option<Option<usize>>,
    pub at: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Method {
    /// No method given: names, fqn parts, or a path when the value looks like one.
    Default,
    Fqn,
    Tag,
    Path,
    File,
    Config(String),
    ResourceType,
    Source,
    Exposure,
    TestType,
    TestName,
    Package,
    Selector,
}

/// A parsed selection expression: a union of intersections.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    Atom(Atom),
    Union(Vec<Expr>),
    Intersection(Vec<Expr>),
    Difference(Box<Expr>, Box<Expr>),
}

fn sel_err(spec: &str, msg: impl Into<String>) -> Diagnostic {
    Diagnostic::new(DiagKind::Selector, format!("invalid selector '{spec}': {}", msg.into())).hint(
        "selectors look like: name, +name, name+2, @name, tag:x, path:models/staging, config.materialized:table, a,b (intersection), a b (union)",
    )
}

fn parse_method(m: &str, spec: &str) -> Result<Method, Diagnostic> {
    Ok(match m {
        "fqn" => Method::Fqn,
        "tag" => Method::Tag,
        "path" => Method::Path,
        "file" => Method::File,
        "resource_type" => Method::ResourceType,
        "source" => Method::Source,
        "exposure" => Method::Exposure,
        "test_type" => Method::TestType,
        "test_name" => Method::TestName,
        "package" => Method::Package,
        "selector" => Method::Selector,
        c if c.starts_with("config.") => Method::Config(c["config.".len()..].to_string()),
        other => {
            let known = [
                "fqn",
                "tag",
                "path",
                "file",
                "resource_type",
                "source",
                "exposure",
                "test_type",
                "test_name",
                "package",
                "selector",
                "config.<key>",
            ];
            let mut d = sel_err(spec, format!("unknown selection method '{other}'"));
            if let Some(h) = crate::error::suggest(other, known.iter().copied()) {
                d = d.hint(h);
            }
            return Err(d);
        }
    })
}

/// Parses one atom such as `2+tag:nightly+` or `@stg_orders`.
pub fn parse_atom(spec: &str) -> Result<Atom, Diagnostic> {
    let mut s = spec;
    let at = s.starts_with('@');
    if at {
        s = &s[1..];
    }
    let mut parents = None;
    let digits: String = s.chars().take_while(|c| c.is_ascii_digit()).collect();
    if s[digits.len()..].starts_with('+') {
        parents = Some(if digits.is_empty() {
            None
        } else {
            digits.parse().ok()
        });
        s = &s[digits.len() + 1..];
    } else if !digits.is_empty() && s.len() == digits.len() {
        // A bare number is a name.
    }
    let mut children = None;
    if let Some(pos) = s.rfind('+') {
        let tail = &s[pos + 1..];
        if tail.chars().all(|c| c.is_ascii_digit()) {
            children = Some(if tail.is_empty() {
                None
            } else {
                tail.parse().ok()
            });
            s = &s[..pos];
        }
    }
    if at && (parents.is_some() || children.is_some()) {
        return Err(sel_err(spec, "'@' cannot be combined with '+'"));
    }
    if s.is_empty() {
        return Err(sel_err(spec, "nothing to select"));
    }
    let (method, value) = match s.split_once(':') {
        Some((m, v)) => (parse_method(m, spec)?, v.to_string()),
        None => (Method::Default, s.to_string()),
    };
    if value.is_empty() {
        return Err(sel_err(spec, "a method needs a value after ':'"));
    }
    Ok(Atom {
        method,
        value,
        parents,
        children,
        at,
    })
}

/// `--select a b,c`: space-separated union of comma-separated intersections.
pub fn parse_cli(specs: &[String]) -> Result<Expr, Diagnostic> {
    let mut union = Vec::new();
    for spec in specs {
        for term in spec.split_whitespace() {
            let parts: Vec<Expr> = term
                .split(',')
                .filter(|p| !p.is_empty())
                .map(|p| parse_atom(p).map(Expr::Atom))
                .collect::<Result<_, _>>()?;
            union.push(if parts.len() == 1 {
                parts
                    .into_iter()
                    .next()
                    .ok_or_else(|| sel_err(term, "empty"))?
            } else {
                Expr::Intersection(parts)
            });
        }
    }
    Ok(Expr::Union(union))
}

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
    config: Option<&'a crate::project::config::ConfigMap>,
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
        selected.extend(extra);
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Default)]
pub enum IndirectSelection {
    #[default]
    Eager,
    Cautious,
    Buildable,
    Empty,
}

/// selectors.yml → the `selectors` object of manifest.json.
pub fn selectors_json(file: &str, text: &str) -> Result<Json, Diagnostic> {
    let mut doc: Yaml = serde_yaml::from_str(text).map_err(|e| yaml_diagnostic(file, text, &e))?;
    doc.apply_merge()
        .map_err(|e| yaml_diagnostic(file, text, &e))?;
    let list = doc
        .get("selectors")
        .and_then(Yaml::as_sequence)
        .cloned()
        .unwrap_or_default();
    let mut out = serde_json::Map::new();
    for s in list {
        let name = s.get("name").and_then(Yaml::as_str).ok_or_else(|| {
            Diagnostic::new(
                DiagKind::Selector,
                "a selector in selectors.yml has no name",
            )
            .file(file)
        })?;
        let def = s.get("definition").cloned().unwrap_or(Yaml::Null);
        // Validate now so a broken selector is reported at parse time with its file.
        yaml_expr(&def).map_err(|d| {
            Diagnostic {
                message: format!("selector '{name}': {}", d.message),
                ..d
            }
            .at(
                file,
                Some(text),
                crate::error::line_of(text, &format!("name: {name}")),
                1,
            )
        })?;
        out.insert(
            name.to_string(),
            serde_json::json!({
                "name": name,
                "description": s.get("description").and_then(Yaml::as_str).unwrap_or(""),
                "default": s.get("default").and_then(Yaml::as_bool).unwrap_or(false),
                "definition": crate::project::config::yaml_to_json(&def),
            }),
        );
    }
    Ok(Json::Object(out))
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

/// One YAML selector definition: a CLI string, a method/value mapping, or a set operation.
pub fn yaml_expr(y: &Yaml) -> Result<Expr, Diagnostic> {
    match y {
        Yaml::String(s) => parse_cli(std::slice::from_ref(s)),
        Yaml::Mapping(m) => {
            let list = |k: &str| -> Result<Option<Vec<Expr>>, Diagnostic> {
                match m.get(k) {
                    Some(Yaml::Sequence(s)) => {
                        Ok(Some(s.iter().map(yaml_expr).collect::<Result<_, _>>()?))
                    }
                    Some(other) => Ok(Some(vec![yaml_expr(other)?])),
                    None => Ok(None),
                }
            };
            if let Some(u) = list("union")? {
                let (inc, exc): (Vec<Expr>, Vec<Expr>) = split_excludes(u);
                return Ok(with_excludes(Expr::Union(inc), exc));
            }
            if let Some(i) = list("intersection")? {
                let (inc, exc) = split_excludes(i);
                return Ok(with_excludes(Expr::Intersection(inc), exc));
            }
            if let Some(e) = list("exclude")? {
                return Ok(Expr::Difference(
                    Box::new(Expr::Union(vec![])),
                    Box::new(Expr::Union(e)),
                ));
            }
            let method = m.get("method").and_then(Yaml::as_str).ok_or_else(|| {
                Diagnostic::new(
                    DiagKind::Selector,
                    "selector definition needs 'method' and 'value', or union/intersection",
                )
            })?;
            let value = match m.get("value") {
                Some(Yaml::String(s)) => s.clone(),
                Some(Yaml::Bool(b)) => b.to_string(),
                Some(Yaml::Number(n)) => n.to_string(),
                _ => {
                    return Err(Diagnostic::new(
                        DiagKind::Selector,
                        format!("method '{method}' needs a value"),
                    ))
                }
            };
            let method = if method == "fqn" && value == "*" {
                Method::Fqn
            } else {
                parse_method(method, method)?
            };
            let b = |k: &str| m.get(k).and_then(Yaml::as_bool).unwrap_or(false);
            let depth = |k: &str| m.get(k).and_then(Yaml::as_u64).map(|d| d as usize);
            let parents = if b("parents") || depth("parents_depth").is_some() {
                Some(depth("parents_depth"))
            } else {
                None
            };
            let children = if b("children") || depth("children_depth").is_some() {
                Some(depth("children_depth"))
            } else {
                None
            };
            let atom = Expr::Atom(Atom {
                method,
                value,
                parents,
                children,
                at: b("childrens_parents"),
            });
            match list("exclude")? {
                Some(e) => Ok(Expr::Difference(Box::new(atom), Box::new(Expr::Union(e)))),
                None => Ok(atom),
            }
        }
        _ => Err(Diagnostic::new(
            DiagKind::Selector,
            "selector definition must be a string or a mapping",
        )),
    }
}

fn split_excludes(v: Vec<Expr>) -> (Vec<Expr>, Vec<Expr>) {
    let mut inc = Vec::new();
    let mut exc = Vec::new();
    for e in v {
        match e {
            Expr::Difference(a, b) if matches!(&*a, Expr::Union(x) if x.is_empty()) => exc.push(*b),
            other => inc.push(other),
        }
    }
    (inc, exc)
}

fn with_excludes(e: Expr, exc: Vec<Expr>) -> Expr {
    if exc.is_empty() {
        e
    } else {
        Expr::Difference(Box::new(e), Box::new(Expr::Union(exc)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atoms() {
        let a = parse_atom("2+tag:nightly+1").unwrap();
        assert_eq!(a.method, Method::Tag);
        assert_eq!(a.parents, Some(Some(2)));
        assert_eq!(a.children, Some(Some(1)));
        assert!(parse_atom("@x").unwrap().at);
        assert!(parse_atom("bogus:x").is_err());
        assert!(parse_atom("@x+").is_err());
    }

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
