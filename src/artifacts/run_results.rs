//! run_results.json (dbt schema v6).

use std::path::Path;

use serde_json::{json, Value as Json};

use crate::error::Error;

pub const SCHEMA_URL: &str = "https://schemas.getdbt.com/dbt/run-results/v6.json";

type Time = chrono::DateTime<chrono::Utc>;

/// One node's outcome.
#[derive(Debug, Clone)]
pub struct NodeResult {
    pub unique_id: String,
    /// `success`, `error`, `skipped` (models); `pass`, `fail`, `warn` (tests).
    pub status: &'static str,
    pub thread: usize,
    pub compile: (Time, Time),
    pub execute: Option<(Time, Time)>,
    pub execution_time: f64,
    /// The warehouse's status line, e.g. `CREATE VIEW` or `SELECT 42`.
    pub code: Option<String>,
    pub rows_affected: Option<u64>,
    pub message: Option<String>,
    pub failures: Option<u64>,
    pub compiled_code: Option<String>,
    pub relation_name: Option<String>,
}

impl NodeResult {
    /// A node that ran over `span` in `secs`; the optional fields start empty.
    pub fn ran(
        unique_id: &str,
        status: &'static str,
        thread: usize,
        span: (Time, Time),
        secs: f64,
    ) -> Self {
        NodeResult {
            unique_id: unique_id.to_string(),
            status,
            thread,
            compile: (span.0, span.0),
            execute: Some(span),
            execution_time: secs,
            code: None,
            rows_affected: None,
            message: None,
            failures: None,
            compiled_code: None,
            relation_name: None,
        }
    }

    /// A node skipped because something upstream failed.
    pub fn skipped(unique_id: &str, relation_name: Option<String>) -> Self {
        let now = chrono::Utc::now();
        NodeResult {
            unique_id: unique_id.to_string(),
            status: "skipped",
            thread: 0,
            compile: (now, now),
            execute: None,
            execution_time: 0.0,
            code: None,
            rows_affected: None,
            message: Some("SKIP".into()),
            failures: None,
            compiled_code: None,
            relation_name,
        }
    }
}

fn ts(t: &Time) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

pub fn to_json(r: &NodeResult) -> Json {
    let mut timing = vec![
        json!({"name": "compile", "started_at": ts(&r.compile.0), "completed_at": ts(&r.compile.1)}),
    ];
    if let Some((a, b)) = &r.execute {
        timing.push(json!({"name": "execute", "started_at": ts(a), "completed_at": ts(b)}));
    }
    let adapter_response = match &r.code {
        Some(code) => json!({
            "_message": match r.rows_affected { Some(n) => format!("{code} {n}"), None => code.clone() },
            "code": code,
            "rows_affected": r.rows_affected.map(|n| n as i64).unwrap_or(-1),
        }),
        None => json!({}),
    };
    json!({
        "status": r.status,
        "timing": timing,
        "thread_id": format!("Thread-{}", r.thread + 1),
        "execution_time": r.execution_time,
        "adapter_response": adapter_response,
        "message": r.message.as_ref().map(|m| crate::secrets::scrub(m).into_owned()),
        "failures": r.failures,
        "unique_id": r.unique_id,
        "compiled": r.compiled_code.is_some(),
        "compiled_code": r.compiled_code.as_ref().map(|c| crate::secrets::scrub(c).into_owned()),
        "relation_name": r.relation_name,
        "batch_results": null,
    })
}

pub fn write(
    path: &Path,
    results: &[NodeResult],
    invocation_id: &str,
    started_at: chrono::DateTime<chrono::Utc>,
    elapsed: f64,
    args: Json,
) -> Result<(), Error> {
    let doc = json!({
        "metadata": {
            "dbt_schema_version": SCHEMA_URL,
            "dbt_version": super::manifest::DBT_VERSION,
            "generated_at": ts(&chrono::Utc::now()),
            "invocation_id": invocation_id,
            "invocation_started_at": ts(&started_at),
            "env": {},
        },
        "results": results.iter().map(to_json).collect::<Vec<_>>(),
        "elapsed_time": elapsed,
        "args": args,
    });
    // Written aside and renamed: a reader (or a kill -9) never sees half a file.
    // Named per write: two runs in one project may write at once.
    let tmp = path.with_extension(format!("json.{}.tmp", uuid::Uuid::new_v4().simple()));
    std::fs::write(&tmp, serde_json::to_string_pretty(&doc).unwrap_or_default())
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|source| Error::Write {
            path: path.to_path_buf(),
            source,
        })
}

/// The message of a node that an unfinished run never completed.
pub const NOT_FINISHED: &str =
    "not finished: the run ended (killed or crashed) before this node completed";
