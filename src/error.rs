//! Diagnostics: every user-facing error carries a kind, a location, an excerpt and a hint.

use std::fmt;
use std::path::PathBuf;

/// Where in a user's file something went wrong (1-based line and column).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    pub file: String,
    pub line: usize,
    pub column: usize,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file, self.line, self.column)
    }
}

/// The class of a diagnostic; its `code()` is printed as `error[code]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiagKind {
    Yaml,
    Config,
    UnknownRef,
    UnknownSource,
    UnknownMacro,
    UnknownVar,
    EnvVar,
    JinjaSyntax,
    JinjaRuntime,
    Cycle,
    Selector,
    Duplicate,
    Package,
    Io,
}

impl DiagKind {
    pub fn code(self) -> &'static str {
        match self {
            DiagKind::Yaml => "yaml",
            DiagKind::Config => "config",
            DiagKind::UnknownRef => "unknown-ref",
            DiagKind::UnknownSource => "unknown-source",
            DiagKind::UnknownMacro => "unknown-macro",
            DiagKind::UnknownVar => "unknown-var",
            DiagKind::EnvVar => "env-var",
            DiagKind::JinjaSyntax => "jinja-syntax",
            DiagKind::JinjaRuntime => "jinja",
            DiagKind::Cycle => "cycle",
            DiagKind::Selector => "selector",
            DiagKind::Duplicate => "duplicate",
            DiagKind::Package => "package",
            DiagKind::Io => "io",
        }
    }
}

/// One problem in the user's project, printed like a compiler error.
#[derive(Debug, Clone)]
pub struct Diagnostic {
    pub kind: DiagKind,
    pub message: String,
    pub location: Option<Location>,
    pub excerpt: Option<String>,
    pub hint: Option<String>,
}

impl Diagnostic {
    pub fn new(kind: DiagKind, message: impl Into<String>) -> Self {
        Diagnostic {
            kind,
            message: message.into(),
            location: None,
            excerpt: None,
            hint: None,
        }
    }

    /// Attaches a location and quotes the offending line of `source`.
    pub fn at(mut self, file: &str, source: Option<&str>, line: usize, column: usize) -> Self {
        let line = line.max(1);
        self.location = Some(Location {
            file: file.to_string(),
            line,
            column: column.max(1),
        });
        if let Some(src) = source {
            self.excerpt = src.lines().nth(line - 1).map(|l| l.trim_end().to_string());
        }
        self
    }

    pub fn file(mut self, file: &str) -> Self {
        if self.location.is_none() {
            self.location = Some(Location {
                file: file.to_string(),
                line: 1,
                column: 1,
            });
        }
        self
    }

    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "error[{}]: {}", self.kind.code(), self.message)?;
        if let Some(loc) = &self.location {
            write!(f, "\n  --> {loc}")?;
            if let Some(ex) = &self.excerpt {
                let num = loc.line.to_string();
                let pad = " ".repeat(num.len());
                let (shown, col) = clip_line(ex, loc.column.saturating_sub(1));
                write!(f, "\n {pad} |\n {num} | {shown}")?;
                if col < shown.chars().count() {
                    write!(f, "\n {pad} | {}^", " ".repeat(col))?;
                }
            }
        }
        if let Some(h) = &self.hint {
            write!(f, "\n  = hint: {h}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Diagnostic {}

/// A long source line cut to a window around `col` (0-based, in characters),
/// with `…` where text was left out; returns the text and the caret column.
fn clip_line(line: &str, col: usize) -> (std::borrow::Cow<'_, str>, usize) {
    const WIDTH: usize = 100;
    let len = line.chars().count();
    if len <= WIDTH + 20 {
        return (line.into(), col);
    }
    let start = col.saturating_sub(WIDTH / 2).min(len.saturating_sub(WIDTH));
    let end = (start + WIDTH).min(len);
    let mut out = String::new();
    let mut caret = col - start.min(col);
    if start > 0 {
        out.push('…');
        caret += 1;
    }
    out.extend(line.chars().skip(start).take(end - start));
    if end < len {
        out.push('…');
    }
    (out.into(), caret)
}

/// Several independent problems, reported together.
#[derive(Debug, Clone, Default)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl Diagnostics {
    pub fn push(&mut self, d: Diagnostic) {
        self.0.push(d);
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    pub fn extend(&mut self, other: Diagnostics) {
        self.0.extend(other.0);
    }
    /// `Ok(())` when nothing was recorded, else all diagnostics as one error.
    pub fn into_result(self) -> Result<(), Error> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(Error::Diagnostics(self))
        }
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
                writeln!(f)?;
            }
            write!(f, "{d}")?;
        }
        if self.0.len() > 1 {
            write!(f, "\n\n{} errors found", self.0.len())?;
        }
        Ok(())
    }
}

/// The library's error type; the CLI maps it to exit code 2.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Diagnostics(Diagnostics),
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl From<Diagnostic> for Error {
    fn from(d: Diagnostic) -> Self {
        Error::Diagnostics(Diagnostics(vec![d]))
    }
}

impl From<Diagnostics> for Error {
    fn from(d: Diagnostics) -> Self {
        Error::Diagnostics(d)
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Suggests up to three names close to `wanted`, for "did you mean" hints.
pub fn suggest<'a>(wanted: &str, candidates: impl Iterator<Item = &'a str>) -> Option<String> {
    let mut scored: Vec<(f64, &str)> = candidates
        .map(|c| (strsim::jaro_winkler(wanted, c), c))
        .filter(|(s, _)| *s > 0.8)
        .collect();
    scored.sort_by(|a, b| b.0.partial_cmp(&a.0).unwrap_or(std::cmp::Ordering::Equal));
    scored.dedup_by(|a, b| a.1 == b.1);
    if scored.is_empty() {
        return None;
    }
    let names: Vec<String> = scored
        .iter()
        .take(3)
        .map(|(_, n)| format!("'{n}'"))
        .collect();
    Some(format!("did you mean {}?", names.join(" or ")))
}

/// Converts a serde_yaml error into a diagnostic at its reported position.
pub fn yaml_diagnostic(file: &str, source: &str, err: &serde_yaml::Error) -> Diagnostic {
    let msg = err.to_string();
    let (line, col) = err
        .location()
        .map(|l| (l.line(), l.column()))
        .unwrap_or((1, 1));
    let short = msg.split(" at line ").next().unwrap_or(&msg).to_string();
    Diagnostic::new(DiagKind::Yaml, format!("invalid YAML: {short}"))
        .at(file, Some(source), line, col)
        .hint("check the indentation and quoting around this line")
}

/// A file that is not UTF-8, at the line and column of the first bad byte.
pub fn utf8_diagnostic(file: &str, bytes: &[u8], e: std::str::Utf8Error) -> Diagnostic {
    let valid = &bytes[..e.valid_up_to()];
    let line = valid.iter().filter(|b| **b == b'\n').count() + 1;
    let line_start = valid
        .iter()
        .rposition(|b| *b == b'\n')
        .map(|p| p + 1)
        .unwrap_or(0);
    let column = String::from_utf8_lossy(&valid[line_start..])
        .chars()
        .count()
        + 1;
    Diagnostic::new(DiagKind::Io, "file is not valid UTF-8")
        .at(file, None, line, column)
        .hint("save the file as UTF-8")
}

/// Refuses absurdly nested YAML at once (see `yaml_depth`), naming where.
pub fn yaml_depth_check(file: &str, source: &str) -> Result<(), Diagnostic> {
    crate::yaml_depth::check(source).map_err(|e| {
        Diagnostic::new(
            DiagKind::Yaml,
            format!(
                "YAML nested more than {} levels deep",
                crate::yaml_depth::MAX_DEPTH
            ),
        )
        .at(file, Some(source), e.line, e.column)
        .hint("no dbt file nests this deep; is the file generated by mistake?")
    })
}

/// Parses user-written YAML: absurd nesting refused first, then serde_yaml,
/// errors with the file, line and column.
pub fn yaml_from_str<T: serde::de::DeserializeOwned>(
    file: &str,
    source: &str,
) -> Result<T, Diagnostic> {
    yaml_depth_check(file, source)?;
    serde_yaml::from_str(source).map_err(|e| yaml_diagnostic(file, source, &e))
}

/// Finds the 1-based line of the first line containing `needle`, for YAML entries
/// whose position serde does not keep.
pub fn line_of(source: &str, needle: &str) -> usize {
    source
        .lines()
        .position(|l| l.contains(needle))
        .map(|i| i + 1)
        .unwrap_or(1)
}
