//! What a run reports while it runs: typed events that a sink (the terminal
//! reporter, as text or JSON lines) turns into output. The engine never prints.

use crate::scheduler::JobStatus;

/// Why a node did not run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SkipReason {
    /// A node it depends on failed (or its unit tests did).
    UpstreamFailed,
    /// The run stopped before it started: interrupt, fail-fast, or the
    /// warehouse went away.
    RunStopped,
}

/// The code of a node a dry run planned without executing it.
pub const DRY_RUN: &str = "DRY RUN";

/// How one node (or unit test) ended, as run_results.json names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunStatus {
    /// A model, seed or snapshot was built.
    Success,
    /// Building failed, or a test could not run.
    Error,
    /// Not run because something upstream failed.
    Skipped,
    /// A test found nothing wrong.
    Pass,
    /// A test found rows, within its warning threshold or at severity warn.
    Warn,
    /// A test found rows beyond its error threshold.
    Fail,
}

impl RunStatus {
    /// The status string of run_results.json.
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Success => "success",
            RunStatus::Error => "error",
            RunStatus::Skipped => "skipped",
            RunStatus::Pass => "pass",
            RunStatus::Warn => "warn",
            RunStatus::Fail => "fail",
        }
    }

    /// What the scheduler makes of it: failures skip descendants, warnings do not.
    pub fn job(self) -> JobStatus {
        match self {
            RunStatus::Success | RunStatus::Pass => JobStatus::Success,
            RunStatus::Warn => JobStatus::Warn,
            RunStatus::Error | RunStatus::Fail => JobStatus::Error,
            RunStatus::Skipped => JobStatus::Skipped,
        }
    }

    /// Whether this status counts as an error in the summary.
    pub fn is_failure(self) -> bool {
        matches!(self, RunStatus::Error | RunStatus::Fail)
    }
}

/// What a progress line is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subject {
    Model {
        unique_id: String,
        materialized: String,
        /// `schema.alias`
        relation: String,
    },
    Seed {
        unique_id: String,
        relation: String,
    },
    Snapshot {
        unique_id: String,
        relation: String,
    },
    Test {
        unique_id: String,
        name: String,
    },
    UnitTest {
        unique_id: String,
        /// `model::test`
        label: String,
    },
}

impl Subject {
    pub fn unique_id(&self) -> &str {
        match self {
            Subject::Model { unique_id, .. }
            | Subject::Seed { unique_id, .. }
            | Subject::Snapshot { unique_id, .. }
            | Subject::Test { unique_id, .. }
            | Subject::UnitTest { unique_id, .. } => unique_id,
        }
    }
}

/// Position of a node in the run: `index of total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    pub index: usize,
    pub total: usize,
}

/// How a node ended, for its progress line.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeEnd<'a> {
    pub at: Progress,
    pub subject: &'a Subject,
    pub status: RunStatus,
    /// The warehouse's response code (`CREATE VIEW`, `INSERT`, ...), when built.
    pub code: Option<&'a str>,
    pub rows: Option<u64>,
    /// Failing rows of a test.
    pub failures: Option<u64>,
    pub seconds: f64,
}

/// Counts for the closing line.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Summary {
    pub pass: usize,
    pub warn: usize,
    pub error: usize,
    pub skip: usize,
    pub total: usize,
}

/// A failure or warning explained at the end of the run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub is_error: bool,
    /// Several lines: what failed, where, why, and where its compiled code is.
    pub text: String,
}

/// One thing that happened during a run.
#[derive(Debug, Clone, PartialEq)]
pub enum Event<'a> {
    /// The run begins: `what` reads like "3 models and 1 seed".
    Started {
        command: &'a str,
        threads: usize,
        target: &'a str,
        what: &'a str,
    },
    NodeStarted {
        at: Progress,
        subject: &'a Subject,
    },
    NodeFinished(NodeEnd<'a>),
    /// Not run: its unit tests failed.
    NodeBlocked {
        at: Progress,
        subject: &'a Subject,
    },
    /// Not run: something upstream failed.
    NodeSkipped {
        at: Progress,
        subject: &'a Subject,
        reason: SkipReason,
    },
    /// All nodes are done; `problems` in the order they happened.
    Finished {
        what: &'a str,
        seconds: f64,
        problems: &'a [Problem],
        summary: Summary,
    },
    /// Ctrl-C (or SIGTERM) stopped the run.
    Interrupted,
}

/// Where a run's events go. Called from worker threads.
pub trait EventSink: Sync {
    fn event(&self, event: &Event<'_>);
}

/// Drops every event (library callers that only want the results).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoEvents;

impl EventSink for NoEvents {
    fn event(&self, _: &Event<'_>) {}
}
