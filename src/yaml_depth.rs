//! A linear pre-check of YAML text for absurd nesting. libyaml's scanner
//! takes time quadratic in the nesting of flow collections (`[[[...` or
//! `{a: {a: ...`): a 200 KB file costs half a minute before serde_yaml's own
//! recursion limit (128) rejects it. This scan rejects such text at once.

/// Deeper than serde_yaml accepts anyway, so valid files are never refused.
pub const MAX_DEPTH: usize = 128;

/// Where the nesting went beyond [`MAX_DEPTH`] (1-based line and column).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooDeep {
    pub line: usize,
    pub column: usize,
}

impl std::fmt::Display for TooDeep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "YAML nested more than {MAX_DEPTH} levels deep at line {} column {}",
            self.line, self.column
        )
    }
}

/// Scans `text` once. Counts flow collections (`[` and `{` where YAML opens
/// one, outside quotes, comments and block scalars) and compact block
/// sequences (`- - - x`); errs at the first place deeper than [`MAX_DEPTH`].
/// It may undercount odd but valid YAML; it never rejects a file serde_yaml
/// would accept, since that parser stops at the same depth.
pub fn check(text: &str) -> Result<(), TooDeep> {
    let mut depth = 0usize;
    // Indentation of the line that holds a block scalar's indicator (`|`, `>`).
    let mut block_scalar: Option<usize> = None;
    for (i, line) in text.lines().enumerate() {
        let indent = line.len() - line.trim_start_matches(' ').len();
        if let Some(parent) = block_scalar {
            if line.trim().is_empty() || indent > parent {
                continue;
            }
            block_scalar = None;
        }
        let b = line.as_bytes();
        let mut j = indent;
        // Whether the next character starts a value (a flow collection or a
        // quoted scalar may open there in block context).
        let mut value_start = true;
        // Compact block sequences on this line (`- - - x`).
        let mut dashes = 0usize;
        while j < b.len() {
            let c = b[j];
            let too_deep = |d: usize| {
                (d > MAX_DEPTH).then_some(TooDeep {
                    line: i + 1,
                    column: j + 1,
                })
            };
            match c {
                b'#' if j == 0 || b[j - 1] == b' ' || b[j - 1] == b'\t' => break,
                b'"' | b'\'' if value_start || depth > 0 && starts_token(b, j) => {
                    j = skip_quoted(b, j);
                    value_start = false;
                    continue;
                }
                b'[' | b'{' if depth > 0 || value_start => {
                    depth += 1;
                    if let Some(e) = too_deep(depth + dashes) {
                        return Err(e);
                    }
                    value_start = true;
                }
                b']' | b'}' if depth > 0 => {
                    depth -= 1;
                    value_start = false;
                }
                b',' if depth > 0 => value_start = true,
                b'-' | b'?' if depth == 0 && value_start && next_is_space(b, j) => {
                    dashes += 1;
                    if let Some(e) = too_deep(dashes) {
                        return Err(e);
                    }
                    value_start = true;
                }
                b':' if next_is_space(b, j) || depth > 0 => value_start = true,
                b'|' | b'>' if depth == 0 && value_start => {
                    block_scalar = Some(indent);
                    break;
                }
                b' ' | b'\t' => {}
                _ => value_start = false,
            }
            j += 1;
        }
    }
    Ok(())
}

/// A space, a tab or the end of the line follows position `j`.
fn next_is_space(b: &[u8], j: usize) -> bool {
    matches!(b.get(j + 1), None | Some(b' ' | b'\t'))
}

/// Inside a flow collection, a quote starts a scalar only at a token's start.
fn starts_token(b: &[u8], j: usize) -> bool {
    j == 0 || matches!(b[j - 1], b' ' | b'\t' | b'[' | b'{' | b',' | b':')
}

/// The position after the quoted scalar opening at `j` (or the line's end: a
/// quoted scalar spanning lines is rare, and only undercounts).
fn skip_quoted(b: &[u8], j: usize) -> usize {
    let q = b[j];
    let mut k = j + 1;
    while k < b.len() {
        if q == b'"' && b[k] == b'\\' {
            k += 2;
            continue;
        }
        if b[k] == q {
            if q == b'\'' && b.get(k + 1) == Some(&b'\'') {
                k += 2;
                continue;
            }
            return k + 1;
        }
        k += 1;
    }
    b.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deep_flow_and_compact_sequences_are_refused_where_they_go_too_deep() {
        let deep = format!("x: {}1{}", "[".repeat(40_000), "]".repeat(40_000));
        assert_eq!(
            check(&deep),
            Err(TooDeep {
                line: 1,
                column: 132
            })
        );
        let deep_map = format!("vars:\n  x: {}1{}", "{a: ".repeat(200), "}".repeat(200));
        assert_eq!(check(&deep_map).map_err(|e| e.line), Err(2));
        let dashes = format!("{}x", "- ".repeat(500));
        assert!(check(&dashes).is_err());
        assert!(check(&"[".repeat(129)).is_err());
        assert!(check(&"[".repeat(128)).is_ok());
    }

    #[test]
    fn brackets_in_scalars_comments_and_block_scalars_do_not_count() {
        let many = |s: &str| s.repeat(300);
        assert!(check(&many("description: a[1] and {b\n")).is_ok());
        assert!(check(&many("- 'it''s [[[['\n")).is_ok());
        assert!(check(&many("x: \"[[[[\\\" {{{{\"\n")).is_ok());
        assert!(check(&many("# [[[[[[[[\n")).is_ok());
        assert!(check(&format!("sql: |\n{}done: 1\n", many("  [[[[ {{{{\n"))).is_ok());
        assert!(check(&many("x: [a, [b, {c: d}], \"e]\"]\n")).is_ok());
        // A YAML file of ordinary depth.
        assert!(check("a:\n  - b: [1, 2, {c: [3]}]\n    d: >\n      [text\n").is_ok());
    }
}
