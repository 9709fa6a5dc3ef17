//! Terminal output: text or one JSON event per line, honouring --quiet and --no-color.

use std::io::{IsTerminal, Write};

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
        if self.quiet && level == Level::Info {
            return;
        }
        let msg = crate::secrets::scrub(msg);
        match self.format {
            LogFormat::Json => {
                let line = serde_json::json!({
                    "ts": chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string(),
                    "level": level.as_str(),
                    "code": code,
                    "msg": msg,
                });
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
                let _ = writeln!(std::io::stderr().lock(), "{out}");
            }
        }
    }

    pub fn info(&self, code: &str, msg: &str) {
        self.emit(Level::Info, code, msg);
    }

    pub fn warn(&self, msg: &str) {
        self.emit(Level::Warn, "warning", msg);
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

    fn print(&self, msg: &str) {
        let _ = writeln!(std::io::stderr().lock(), "{}", crate::secrets::scrub(msg));
    }
}
