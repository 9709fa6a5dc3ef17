//! Data tests: failing rows counted with `fail_calc`, compared with `warn_if`
//! and `error_if` under the test's severity, and stored when asked.

use super::decide;
use super::error::{NodeError, NodeErrorKind};
use super::events::RunStatus;
use super::RunCtx;
use crate::adapter::{Batch, RelationId, RelationKind};
use crate::compile::CompiledNode;
use crate::manifest::Node;
use crate::project::config::StoreFailuresAs;

/// What a data test found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TestOutcome {
    /// `Pass`, `Warn` or `Fail`.
    pub(crate) status: RunStatus,
    pub(crate) failures: u64,
}

impl RunCtx<'_> {
    pub(super) fn run_test(
        &self,
        n: &Node,
        c: Option<&CompiledNode>,
    ) -> Result<TestOutcome, NodeError> {
        let c = c.ok_or_else(|| {
            NodeError::new(
                NodeErrorKind::Compilation,
                format!("{} was not compiled", n.unique_id),
            )
        })?;
        let cfg = n.config.test();
        let limit = cfg
            .limit
            .map(|l| format!("\nlimit {l}"))
            .unwrap_or_default();
        if cfg.store_failures {
            let d = self.adapter.dialect();
            let rel = d.relation(&RelationId::new(&n.database, &n.schema, &n.alias));
            let kind = match cfg.store_failures_as {
                Some(StoreFailuresAs::View) => RelationKind::View,
                _ => RelationKind::Table,
            };
            let batch = Batch::atomic(vec![
                d.create_schema(&n.schema),
                d.drop_relation(RelationKind::View, &rel),
                d.drop_relation(RelationKind::Table, &rel),
                d.create_as(
                    kind,
                    &rel,
                    &format!("{}{limit}", c.sql),
                    &Default::default(),
                ),
            ]);
            self.adapter.execute(&batch).map_err(|e| {
                NodeError::database(e, Some(&batch))
                    .context(format!("cannot store failures in {rel}"))
            })?;
        }
        let (fail_calc, warn_if, error_if) = (&cfg.fail_calc, &cfg.warn_if, &cfg.error_if);
        let sql = format!(
            "select {fail_calc} as failures, ({fail_calc}) {warn_if} as should_warn, ({fail_calc}) {error_if} as should_error\nfrom (\n{}{limit}\n) dbt_internal_test",
            c.sql
        );
        let t = self
            .adapter
            .query(&sql)
            .map_err(|e| NodeError::in_statement(e, &sql))?;
        let row = t.rows.first().ok_or_else(|| {
            NodeError::new(NodeErrorKind::Database, "the test query returned no row")
        })?;
        let failures: u64 = row
            .first()
            .cloned()
            .flatten()
            .and_then(|f| f.parse::<f64>().ok())
            .map(|f| f as u64)
            .unwrap_or(0);
        let truthy = |i: usize| row.get(i).cloned().flatten().as_deref() == Some("t");
        Ok(TestOutcome {
            status: decide::test_status(cfg.severity, truthy(1), truthy(2)),
            failures,
        })
    }
}
