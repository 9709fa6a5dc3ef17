//! Terminal output: text or one JSON event per line, honouring --quiet and --no-color.

use std::io::{IsTerminal, Write};

use crate::engine::events::{
    Event, EventSink, NodeEnd, Problem, Progress, RunStatus, SkipReason, Subject, Summary,
};

/// A command's result on stdout (a listing, compiled SQL, a table, `debug`'s
/// report), as opposed to log lines: the one place besides the reporter that
/// writes to the terminal. A closed pipe (`strata ls | head`) is not an error.
/// Secret values (`DBT_ENV_SECRET_*`) are masked, whatever the command prints.
pub fn out(args: std::fmt::Arguments<'_>) {
    let text = args.to_string();
    let _ = std::io::stdout()
        .lock()
        .write_all(crate::secrets::scrub(&text).as_bytes());
}

/// A final error of the process, on stderr.
pub fn err(args: std::fmt::Arguments<'_>) {
    let text = args.to_string();
    let _ = std::io::stderr()
        .lock()
        .write_all(crate::secrets::scrub(&text).as_bytes());
}

/// `println!` for a command's result, through [`out`].
#[macro_export]
macro_rules! outln {
    () => {
        $crate::report::out(format_args!("\n"))
    };
    ($($arg:tt)*) => {
        $crate::report::out(format_args!("{}\n", format_args!($($arg)*)))
    };
}

/// `print!` for a command's result, through [`out`].
#[macro_export]
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::report::out(format_args!($($arg)*))
    };
}

/// `eprintln!` for the process's final error, through [`err`].
#[macro_export]
macro_rules! errln {
    ($($arg:tt)*) => {
        $crate::report::err(format_args!("{}\n", format_args!($($arg)*)))
    };
}

/// Log lines as text, or as one JSON object per line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// How output looks, from plain settings (the CLI fills them from its flags).
#[derive(Debug, Clone, Copy, Default)]
pub struct ReportSettings {
    pub format: LogFormat,
    pub quiet: bool,
    /// Colour was not turned off by a flag (`NO_COLOR` and a non-terminal turn it off too).
    pub color: bool,
}

#[derive(Debug, Clone, Copy)]
pub struct Reporter {
    pub format: LogFormat,
    pub quiet: bool,
    pub color: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Info,
    Warn,
    Error,
}

impl Level {
    fn as_str(self) -> &'static str {
        match self {
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Error => "error",
        }
    }
}

impl Reporter {
    pub fn new(settings: ReportSettings) -> Reporter {
        Reporter {
            format: settings.format,
            quiet: settings.quiet,
            color: settings.color
                && std::env::var_os("NO_COLOR").is_none()
                && std::io::stderr().is_terminal(),
        }
    }

    fn emit(&self, level: Level, code: &str, msg: &str) {
        self.emit_with(level, code, msg, None);
    }

    /// One line; in JSON, `data` adds the event's structured fields.
    fn emit_with(&self, level: Level, code: &str, msg: &str, data: Option<serde_json::Value>) {
        if self.quiet && level == Level::Info {
            return;
        }
        let msg = crate::secrets::scrub(msg);
        match self.format {
            LogFormat::Json => {
                let mut line = serde_json::json!({
                    "ts": chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string(),
                    "level": level.as_str(),
                    "code": code,
                    "msg": msg,
                });
                if let (Some(serde_json::Value::Object(extra)), Some(obj)) =
                    (data, line.as_object_mut())
                {
                    obj.insert("data".into(), serde_json::Value::Object(extra));
                }
                let _ = writeln!(std::io::stdout().lock(), "{line}");
            }
            LogFormat::Text => {
                let time = chrono::Local::now().format("%H:%M:%S");
                let (pre, post) = match (self.color, level) {
                    (true, Level::Warn) => ("\x1b[33m", "\x1b[0m"),
                    (true, Level::Error) => ("\x1b[31m", "\x1b[0m"),
                    _ => ("", ""),
                };
                let text = match level {
                    Level::Error => format!("{pre}{msg}{post}"),
                    Level::Warn => format!("{pre}warning: {msg}{post}"),
                    Level::Info => msg.into_owned(),
                };
                let out = if level == Level::Info {
                    format!("{time}  {text}")
                } else {
                    text
                };
                // On a terminal, a progress bar may be drawn on this line.
                let clear = if std::io::stderr().is_terminal() {
                    "\r\x1b[2K"
                } else {
                    ""
                };
                let _ = writeln!(std::io::stderr().lock(), "{clear}{out}");
            }
        }
    }

    pub fn info(&self, code: &str, msg: &str) {
        self.emit(Level::Info, code, msg);
    }

    /// Whether a progress bar can be drawn: text on a terminal, not --quiet.
    pub fn shows_progress(&self) -> bool {
        self.format == LogFormat::Text && !self.quiet && std::io::stderr().is_terminal()
    }

    /// Redraws the progress bar in place on the terminal's last line; an
    /// empty text clears it.
    pub fn progress_bar(&self, text: &str) {
        if self.shows_progress() {
            let _ = write!(std::io::stderr().lock(), "\r\x1b[2K{text}");
        }
    }

    pub fn warn(&self, msg: &str) {
        self.emit(Level::Warn, "warning", msg);
    }

    /// An info line with structured fields (`data` in JSON).
    pub fn info_data(&self, code: &str, msg: &str, data: serde_json::Value) {
        self.emit_with(Level::Info, code, msg, Some(data));
    }

    /// An error line with structured fields (`data` in JSON).
    pub fn error_data(&self, code: &str, msg: &str, data: serde_json::Value) {
        self.emit_with(Level::Error, code, msg, Some(data));
    }

    pub fn error(&self, msg: &str) {
        self.emit(Level::Error, "error", msg);
    }
}

/// Template output (`log`, `print`, `exceptions.warn`) goes through the reporter,
/// so it honours --log-format and --quiet.
impl crate::jinja::LogSink for Reporter {
    fn info(&self, msg: &str) {
        Reporter::info(self, "log", msg);
    }

    fn warn(&self, msg: &str) {
        Reporter::warn(self, msg);
    }

    /// Python's `print`: plain text on stdout, as dbt writes it (so that
    /// `strata run-operation generate_source … > sources.yml` works).
    fn print(&self, msg: &str) {
        crate::outln!("{msg}");
    }
}

/// `1 of 5 START sql view model schema.name ..... [RUN]`, dbt's layout.
fn progress(at: Progress, text: &str, status: &str) -> String {
    let head = format!("{} of {} {text} ", at.index, at.total);
    let dots = 72usize.saturating_sub(head.chars().count());
    format!("{head}{} [{status}]", ".".repeat(dots.max(3)))
}

/// How a subject reads in `START ...` and `OK created ...`.
fn describe(subject: &Subject) -> String {
    match subject {
        Subject::Model {
            materialized,
            relation,
            ..
        } => format!("sql {materialized} model {relation}"),
        Subject::Seed { relation, .. } => format!("seed file {relation}"),
        Subject::Snapshot { relation, .. } => format!("snapshot {relation}"),
        Subject::Test { name, .. } => format!("test {name}"),
        Subject::UnitTest { label, .. } => format!("unit_test {label}"),
    }
}

/// The relation (`schema.alias`) or test name of a subject.
fn short_name(subject: &Subject) -> &str {
    match subject {
        Subject::Model { relation, .. }
        | Subject::Seed { relation, .. }
        | Subject::Snapshot { relation, .. } => relation,
        Subject::Test { name, .. } => name,
        Subject::UnitTest { label, .. } => label,
    }
}

fn node_data(subject: &Subject, status: Option<RunStatus>) -> serde_json::Value {
    let mut v = serde_json::json!({ "unique_id": subject.unique_id() });
    if let (Some(s), Some(obj)) = (status, v.as_object_mut()) {
        obj.insert("status".into(), s.as_str().into());
    }
    v
}

/// Run events as progress lines (text) or JSON lines with their fields.
impl EventSink for Reporter {
    fn event(&self, event: &Event<'_>) {
        match event {
            Event::Started {
                command,
                threads,
                target,
                what,
            } => self.emit_with(
                Level::Info,
                command,
                &format!("Concurrency: {threads} threads (target='{target}'); running {what}"),
                self.data(|| serde_json::json!({"threads": threads, "target": target})),
            ),
            Event::NodeStarted { at, subject } => {
                let code = if matches!(subject, Subject::UnitTest { .. }) {
                    "unit_start"
                } else {
                    "node_start"
                };
                self.emit_with(
                    Level::Info,
                    code,
                    &progress(*at, &format!("START {}", describe(subject)), "RUN"),
                    self.data(|| node_data(subject, None)),
                );
            }
            Event::NodeFinished(end) => self.node_finished(end),
            Event::NodeBlocked { at, subject } => {
                let relation = short_name(subject);
                self.emit_with(
                    Level::Error,
                    "node_blocked",
                    &progress(
                        *at,
                        &format!("ERROR {relation} (its unit tests failed)"),
                        "ERROR",
                    ),
                    self.data(|| node_data(subject, Some(RunStatus::Error))),
                );
            }
            Event::NodeSkipped {
                at,
                subject,
                reason,
            } => {
                let relation = short_name(subject);
                let why = match reason {
                    SkipReason::UpstreamFailed => "due to an upstream failure",
                    SkipReason::RunStopped => "because the run stopped",
                };
                self.emit_with(
                    Level::Info,
                    "node_skip",
                    &progress(*at, &format!("SKIP relation {relation} {why}"), "SKIP"),
                    self.data(|| node_data(subject, Some(RunStatus::Skipped))),
                );
            }
            Event::Finished {
                what,
                seconds,
                problems,
                summary,
            } => {
                self.info(
                    "run_done",
                    &format!("Finished running {what} in {seconds:.2}s."),
                );
                let errors: Vec<&Problem> = problems.iter().filter(|p| p.is_error).collect();
                if errors.is_empty() {
                    self.info("run_done", "Completed successfully");
                } else {
                    // Failed nodes, as the summary counts them (a stopped run
                    // adds its reason to the list, not to the count).
                    let n = summary.error.max(1);
                    self.error(&format!(
                        "Completed with {n} error{}:",
                        if n == 1 { "" } else { "s" }
                    ));
                    for e in errors {
                        self.error(&e.text);
                    }
                }
                for w in problems.iter().filter(|p| !p.is_error) {
                    self.warn(&w.text);
                }
                let Summary {
                    pass,
                    warn,
                    error,
                    skip,
                    total,
                } = *summary;
                self.emit_with(
                    Level::Info,
                    "run_done",
                    &format!(
                        "Done. PASS={pass} WARN={warn} ERROR={error} SKIP={skip} TOTAL={total}"
                    ),
                    self.data(|| {
                        serde_json::json!({
                            "pass": pass, "warn": warn, "error": error, "skip": skip, "total": total,
                            "elapsed": seconds,
                        })
                    }),
                );
            }
            Event::Interrupted => {
                self.error("Interrupted: statements in flight were cancelled and rolled back")
            }
        }
    }
}

impl Reporter {
    /// An event's structured fields, built only for JSON output.
    fn data(&self, fields: impl FnOnce() -> serde_json::Value) -> Option<serde_json::Value> {
        (self.format == LogFormat::Json).then(fields)
    }

    fn node_finished(&self, end: &NodeEnd<'_>) {
        let secs = end.seconds;
        let data = self.data(|| {
            let mut d = node_data(end.subject, Some(end.status));
            if let Some(obj) = d.as_object_mut() {
                obj.insert("elapsed".into(), secs.into());
                if let Some(r) = end.rows {
                    obj.insert("rows_affected".into(), r.into());
                }
                if let Some(f) = end.failures {
                    obj.insert("failures".into(), f.into());
                }
            }
            d
        });
        let unit = matches!(end.subject, Subject::UnitTest { .. });
        let name = match end.subject {
            Subject::Test { name, .. } => name.as_str(),
            Subject::UnitTest { label, .. } => label.as_str(),
            _ => "",
        };
        if unit || matches!(end.subject, Subject::Test { .. }) {
            let word = match (end.status, end.failures) {
                (RunStatus::Pass, _) => "PASS".to_string(),
                (RunStatus::Success, _) => end.code.unwrap_or("OK").to_string(),
                (RunStatus::Warn, Some(f)) => format!("WARN {f}"),
                (RunStatus::Fail, Some(f)) => format!("FAIL {f}"),
                (RunStatus::Fail, None) => "FAIL".to_string(),
                _ => "ERROR".to_string(),
            };
            let short = word.split(' ').next().unwrap_or_default();
            let line = progress(
                end.at,
                &format!("{word} {name}"),
                &format!("{} in {secs:.2}s", if unit { short } else { &word }),
            );
            let code = if unit { "unit_ok" } else { "node_ok" };
            match end.status {
                RunStatus::Pass | RunStatus::Success => {
                    self.emit_with(Level::Info, code, &line, data)
                }
                RunStatus::Warn => self.emit_with(Level::Warn, "warning", &line, data),
                _ => self.emit_with(Level::Error, "error", &line, data),
            }
            return;
        }
        let what = describe(end.subject);
        if end.status == RunStatus::Success {
            let code = end.code.unwrap_or("OK");
            let shown = match end.rows {
                Some(r) => format!("{code} {r} in {secs:.2}s"),
                None => format!("{code} in {secs:.2}s"),
            };
            let verb = match end.subject {
                _ if code == crate::engine::events::DRY_RUN => "planned",
                Subject::Seed { .. } => "loaded",
                Subject::Snapshot { .. } => "snapshotted",
                _ => "created",
            };
            self.emit_with(
                Level::Info,
                "node_ok",
                &progress(end.at, &format!("OK {verb} {what}"), &shown),
                data,
            );
        } else {
            let verb = if matches!(end.subject, Subject::Seed { .. }) {
                "loading"
            } else {
                "creating"
            };
            self.emit_with(
                Level::Error,
                "error",
                &progress(
                    end.at,
                    &format!("ERROR {verb} {what}"),
                    &format!("ERROR in {secs:.2}s"),
                ),
                data,
            );
        }
    }
}
