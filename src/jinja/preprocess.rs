//! Source rewrites before minijinja sees a file: dbt's block tags become macros,
//! and literal `[]`/`{}` assignments become mutable containers.

use std::sync::LazyLock;

use regex::Regex;

static TEST_OPEN: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"\{%(-?)\s*test\s+([A-Za-z_][A-Za-z0-9_]*)\s*\(").expect("static regex")
});
static TEST_CLOSE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\{%(-?)\s*endtest\s*(-?)%\}").expect("static regex"));
static MAT_OPEN: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r#"\{%(-?)\s*materialization\s+([A-Za-z_][A-Za-z0-9_]*)\s*,\s*(?:adapter\s*=\s*['"]([A-Za-z0-9_]+)['"]|(default))\s*(?:,[^%]*)?(-?)%\}"#,
    )
    .expect("static regex")
});
static MAT_CLOSE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\{%(-?)\s*endmaterialization\s*(-?)%\}").expect("static regex"));
static SET_START: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"\{%-?\s*set\s+[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)?\s*=\s*[\[{]")
        .expect("static regex")
});
static BLOCK: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"\{%-?\s*(snapshot|docs)\s+([A-Za-z_][A-Za-z0-9_]*)\s*-?%\}").expect("static regex")
});
static MACRO_OPEN: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"\{%-?\s*macro\s+([A-Za-z_][A-Za-z0-9_]*)\s*\(").expect("static regex")
});
static MACRO_CLOSE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\{%-?\s*endmacro\s*-?%\}").expect("static regex"));

/// Rewrites a macro file: `{% test x(...) %}` → `{% macro test_x(...) %}`,
/// materializations → `materialization_<name>_<adapter>`, mutable literals.
pub fn rewrite_macro_file(src: &str) -> String {
    let s = TEST_OPEN.replace_all(src, "{%$1 macro test_$2(");
    let s = TEST_CLOSE.replace_all(&s, "{%$1 endmacro $2%}");
    let s = MAT_OPEN.replace_all(&s, |c: &regex::Captures| {
        let adapter = c
            .get(3)
            .or(c.get(4))
            .map(|m| m.as_str())
            .unwrap_or("default");
        format!(
            "{{%{} macro materialization_{}_{}() {}%}}",
            &c[1],
            &c[2],
            adapter,
            c.get(5).map(|m| m.as_str()).unwrap_or("")
        )
    });
    let s = MAT_CLOSE.replace_all(&s, "{%$1 endmacro $2%}");
    rewrite_mutable_literals(&s)
}

/// `{% set x = [...] %}` → a list that supports `.append()`; `{...}` → a dict
/// that supports `.update()` (minijinja's own literals are immutable).
pub fn rewrite_mutable_literals(src: &str) -> String {
    if !src.contains("set") {
        return src.to_string();
    }
    let mut out = String::with_capacity(src.len() + 64);
    let mut last = 0;
    for c in SET_START.captures_iter(src) {
        let whole = c.get(0).expect("match");
        if whole.start() < last {
            continue;
        }
        let lit_start = whole.end() - 1;
        let Some(lit_end) = literal_end(src, lit_start) else {
            continue;
        };
        let rest = &src[lit_end..];
        let trimmed = rest.trim_start();
        if !(trimmed.starts_with("%}") || trimmed.starts_with("-%}")) {
            continue;
        }
        let ctor = if src.as_bytes()[lit_start] == b'[' {
            "__strata_list"
        } else {
            "__strata_dict"
        };
        let literal = &src[lit_start..lit_end];
        out.push_str(&src[last..lit_start]);
        out.push_str(ctor);
        out.push('(');
        // An empty literal needs no copy.
        if literal[1..literal.len() - 1].trim().is_empty() {
            out.push(')');
        } else {
            out.push_str(literal);
            out.push(')');
        }
        last = lit_end;
    }
    if last == 0 {
        return src.to_string();
    }
    out.push_str(&src[last..]);
    out
}

/// The end (exclusive) of the bracketed literal opening at `start`, skipping
/// strings; `None` when it does not close before the tag ends.
fn literal_end(src: &str, start: usize) -> Option<usize> {
    let b = src.as_bytes();
    let mut depth = 0usize;
    let mut quote: Option<u8> = None;
    let mut i = start;
    while i < b.len() {
        let c = b[i];
        match quote {
            Some(q) => {
                if c == b'\\' {
                    i += 1;
                } else if c == q {
                    quote = None;
                }
            }
            None => match c {
                b'\'' | b'"' => quote = Some(c),
                b'[' | b'{' | b'(' => depth += 1,
                b']' | b'}' | b')' => {
                    depth = depth.checked_sub(1)?;
                    if depth == 0 {
                        return Some(i + 1);
                    }
                }
                b'%' if b.get(i + 1) == Some(&b'}') => return None,
                _ => {}
            },
        }
        i += 1;
    }
    None
}

/// One `{% macro %}` definition found in a file.
#[derive(Debug, Clone)]
pub struct MacroSpan {
    pub name: String,
    /// Byte range of the whole definition, tags included.
    pub start: usize,
    pub end: usize,
    /// 1-based line of the opening tag.
    pub line: usize,
}

/// Splits a (rewritten) macro file into its top-level macro definitions.
pub fn macro_spans(src: &str) -> Vec<MacroSpan> {
    let mut out = Vec::new();
    let mut pos = 0;
    while let Some(open) = MACRO_OPEN.captures_at(src, pos) {
        let m = open.get(0).map(|m| (m.start(), m.end())).unwrap_or((0, 0));
        let name = open[1].to_string();
        // Nested macros do not occur in dbt projects; the next endmacro closes this one.
        let Some(close) = MACRO_CLOSE.find_at(src, m.1) else {
            break;
        };
        out.push(MacroSpan {
            name,
            start: m.0,
            end: close.end(),
            line: src[..m.0].matches('\n').count() + 1,
        });
        pos = close.end();
    }
    out
}

/// Jinja2's implicit `varargs`/`kwargs`: a macro whose body names either
/// accepts extra positional / keyword arguments. For such a macro, its
/// declared parameter names and its source with `varargs=none, kwargs=none`
/// added to the signature (the caller fills them in).
pub fn extra_args(body: &str) -> Option<(Vec<String>, String)> {
    static WORDS: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r"\b(?:kwargs|varargs)\b").expect("static regex"));
    let open = MACRO_OPEN.find(body)?;
    let inner_start = open.end();
    // The matching `)` of the signature, skipping strings and nesting.
    let b = body.as_bytes();
    let (mut depth, mut quote, mut i) = (1usize, None::<u8>, inner_start);
    while i < b.len() && depth > 0 {
        let c = b[i];
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None => match c {
                b'\'' | b'"' => quote = Some(c),
                b'(' | b'[' | b'{' => depth += 1,
                b')' | b']' | b'}' => depth -= 1,
                _ => {}
            },
        }
        i += 1;
    }
    if depth != 0 {
        return None;
    }
    let close = i - 1;
    if !WORDS.is_match(&body[close..]) {
        return None;
    }
    let sig = &body[inner_start..close];
    let mut params = Vec::new();
    let (mut depth, mut quote, mut seg_start) = (0usize, None::<u8>, 0usize);
    let sb = sig.as_bytes();
    for (j, &c) in sb.iter().enumerate() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None => match c {
                b'\'' | b'"' => quote = Some(c),
                b'(' | b'[' | b'{' => depth += 1,
                b')' | b']' | b'}' => depth = depth.saturating_sub(1),
                b',' if depth == 0 => {
                    params.push(sig[seg_start..j].to_string());
                    seg_start = j + 1;
                }
                _ => {}
            },
        }
    }
    params.push(sig[seg_start..].to_string());
    let names: Vec<String> = params
        .iter()
        .map(|p| p.split('=').next().unwrap_or("").trim().to_string())
        .filter(|n| !n.is_empty())
        .collect();
    let sep = if names.is_empty() { "" } else { ", " };
    let rewritten = format!(
        "{}{sep}varargs=none, kwargs=none{}",
        &body[..close],
        &body[close..]
    );
    Some((names, rewritten))
}

/// A `{% snapshot %}` or `{% docs %}` block: name, body and the body's first line.
#[derive(Debug, Clone)]
pub struct NamedBlock {
    pub kind: String,
    pub name: String,
    pub body: String,
    pub line: usize,
}

/// Extracts `{% snapshot name %}...{% endsnapshot %}` and `{% docs %}` blocks.
pub fn named_blocks(src: &str) -> Vec<NamedBlock> {
    let mut out = Vec::new();
    let mut pos = 0;
    while let Some(c) = BLOCK.captures_at(src, pos) {
        let whole = c.get(0).map(|m| (m.start(), m.end())).unwrap_or((0, 0));
        let kind = c[1].to_string();
        let close_re = format!("\\{{%-?\\s*end{kind}\\s*-?%\\}}");
        let Ok(close) = Regex::new(&close_re) else {
            break;
        };
        let Some(end) = close.find_at(src, whole.1) else {
            break;
        };
        out.push(NamedBlock {
            name: c[2].to_string(),
            body: src[whole.1..end.start()].to_string(),
            line: src[..whole.1].matches('\n').count() + 1,
            kind,
        });
        pos = end.end();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rewrites_test_and_materialization_blocks() {
        let out = rewrite_macro_file(
            "{% test positive(model, column_name) %}x{% endtest %}\n{% materialization mine, adapter='postgres' %}y{% endmaterialization %}",
        );
        assert!(out.contains("{% macro test_positive(model, column_name) %}"));
        assert!(out.contains("macro materialization_mine_postgres()"));
        assert_eq!(out.matches("endmacro").count(), 2);
    }

    #[test]
    fn spans_and_blocks() {
        let src = "{% macro a(x) %}1{% endmacro %}\n\n{%- macro b() -%}2{%- endmacro -%}";
        let spans = macro_spans(src);
        assert_eq!(spans.len(), 2);
        assert_eq!(spans[1].name, "b");
        assert_eq!(spans[1].line, 3);
        let blocks = named_blocks("{% docs d1 %}\nhello\n{% enddocs %}");
        assert_eq!(blocks[0].name, "d1");
        assert_eq!(blocks[0].body, "\nhello\n");
    }

    #[test]
    fn mutable_literals() {
        assert_eq!(
            rewrite_mutable_literals("{% set cols = [] %}"),
            "{% set cols = __strata_list() %}"
        );
    }
}
