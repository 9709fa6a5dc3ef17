//! Errors of the engine: why one node failed (`NodeError`, which keeps the
//! warehouse's error and the failing statement) and why a whole run could not
//! go on (`RunError`).

use crate::adapter::{AdapterError, Batch};
use crate::error::Diagnostic;
use crate::materialize::PlanError;

/// What kind of problem failed a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeErrorKind {
    /// The warehouse rejected a statement or the connection failed.
    Database,
    /// The node's SQL could not be rendered.
    Compilation,
    /// Its configuration asks for something that cannot be done.
    Config,
    /// The model's output does not match its enforced contract.
    Contract,
    /// A seed file cannot be read or loaded.
    Data,
}

impl NodeErrorKind {
    /// How the end-of-run summary names it (`Database Error in model x`).
    pub fn label(self) -> &'static str {
        match self {
            NodeErrorKind::Database => "Database Error",
            NodeErrorKind::Compilation => "Compilation Error",
            NodeErrorKind::Config => "Configuration Error",
            NodeErrorKind::Contract => "Contract Error",
            NodeErrorKind::Data => "Error",
        }
    }
}

/// Why one node failed.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct NodeError {
    pub kind: NodeErrorKind,
    pub message: String,
    /// The statement the warehouse rejected, when one did.
    pub statement: Option<String>,
    /// The connection failed or was lost: the warehouse may be gone.
    pub connection_lost: bool,
    #[source]
    pub source: Option<Box<AdapterError>>,
}

impl NodeError {
    pub fn new(kind: NodeErrorKind, message: impl Into<String>) -> NodeError {
        NodeError {
            kind,
            message: message.into(),
            statement: None,
            connection_lost: false,
            source: None,
        }
    }

    /// A warehouse error while running `batch`, naming the failing statement.
    pub fn database(e: AdapterError, batch: Option<&Batch>) -> NodeError {
        let statement = match (batch, e.statement) {
            (Some(b), Some(i)) => b.statements.get(i).cloned(),
            (Some(b), None) if b.statements.len() == 1 => b.statements.first().cloned(),
            _ => None,
        };
        NodeError {
            kind: NodeErrorKind::Database,
            message: e.message.clone(),
            statement,
            connection_lost: e.kind == crate::adapter::FailureKind::Connection,
            source: Some(Box::new(e)),
        }
    }

    /// A warehouse error while running one statement.
    pub fn in_statement(e: AdapterError, sql: &str) -> NodeError {
        NodeError {
            statement: Some(sql.to_string()),
            ..NodeError::database(e, None)
        }
    }

    /// The same error with `what` said first (`cannot store failures in x: ...`).
    pub fn context(mut self, what: impl std::fmt::Display) -> NodeError {
        self.message = format!("{what}: {}", self.message);
        self
    }
}

impl From<AdapterError> for NodeError {
    fn from(e: AdapterError) -> NodeError {
        NodeError::database(e, None)
    }
}

impl From<PlanError> for NodeError {
    fn from(e: PlanError) -> NodeError {
        NodeError::new(NodeErrorKind::Config, e.0)
    }
}

impl From<Diagnostic> for NodeError {
    fn from(d: Diagnostic) -> NodeError {
        NodeError::new(NodeErrorKind::Compilation, d.to_string())
    }
}

/// Why a run stopped before (or after) its nodes, as opposed to a node failing.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Project(#[from] crate::error::Error),
    #[error("{hook} hook of package '{package}' failed")]
    Hook {
        hook: &'static str,
        package: String,
        #[source]
        source: AdapterError,
    },
    #[error("cannot create schema {schema}")]
    Schema {
        schema: String,
        #[source]
        source: AdapterError,
    },
    #[error("cannot list existing relations")]
    Introspection(#[source] AdapterError),
}

impl From<Diagnostic> for RunError {
    fn from(d: Diagnostic) -> RunError {
        RunError::Project(d.into())
    }
}
