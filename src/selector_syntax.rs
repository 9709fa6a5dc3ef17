//! dbt's selection syntax, independent of any manifest: CLI atoms and
//! expressions (`+a b,c tag:x @y`), YAML selector definitions, selectors.yml.

use serde_json::Value as Json;
use serde_yaml::Value as Yaml;

use crate::error::{yaml_diagnostic, DiagKind, Diagnostic};

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
    let mut doc: Yaml = crate::error::yaml_from_str(file, text)?;
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
                "definition": crate::confmap::yaml_to_json(&def),
            }),
        );
    }
    Ok(Json::Object(out))
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
}
