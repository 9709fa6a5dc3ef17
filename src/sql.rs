//! SQL text helpers every layer may use: ANSI quoting of identifiers and string
//! literals, and COPY's CSV encoding. Warehouse-specific SQL lives in
//! `adapter::dialect`, which builds on these.

/// `"name"`, with embedded double quotes doubled.
pub fn quote_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// `'text'`, with embedded single quotes doubled.
pub fn quote_literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// One value as COPY's CSV format reads it back exactly: `None` (nothing
/// written) is NULL, an empty string is `""`, and anything COPY could
/// misread (delimiters, quotes, line breaks, backslashes, and `\.`, its
/// end-of-data marker) is quoted.
pub fn copy_csv_field(out: &mut Vec<u8>, value: Option<&str>) {
    let Some(value) = value else { return };
    if value.is_empty() {
        out.extend_from_slice(b"\"\"");
        return;
    }
    let needs_quotes = value == "\\."
        || value
            .bytes()
            .any(|b| matches!(b, b',' | b'"' | b'\n' | b'\r' | b'\\'));
    if needs_quotes {
        out.push(b'"');
        for b in value.bytes() {
            if b == b'"' {
                out.push(b'"');
            }
            out.push(b);
        }
        out.push(b'"');
    } else {
        out.extend_from_slice(value.as_bytes());
    }
}

/// The data line a Postgres COPY error names (`CONTEXT: COPY t, line 3, ...`).
pub fn copy_error_line(message: &str) -> Option<u64> {
    let at = message.find("COPY ")?;
    let rest = &message[at..];
    let l = rest.find(", line ")?;
    rest[l + 7..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect::<String>()
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_are_doubled() {
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
        assert_eq!(quote_literal("it's"), "'it''s'");
    }
}
