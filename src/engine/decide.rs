//! The engine's decisions as pure functions of configuration and warehouse
//! state: which resources a command runs, how a model is built, when a seed
//! is recreated, how a test's counts become a status, and which jobs wait for
//! which. Unit-tested without a warehouse.

use std::collections::{BTreeSet, HashMap};

use super::error::{NodeError, NodeErrorKind};
use super::events::RunStatus;
use crate::adapter::RelationKind;
use crate::manifest::{Node, ResourceType};
use crate::project::config::{IncrementalStrategy, Materialized, Severity};

/// Which resources a command builds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Which {
    Run,
    Seed,
    Build,
    Snapshot,
    Test,
}

impl Which {
    pub fn name(self) -> &'static str {
        match self {
            Which::Run => "run",
            Which::Seed => "seed",
            Which::Build => "build",
            Which::Snapshot => "snapshot",
            Which::Test => "test",
        }
    }

    /// The command that wrote a run_results.json (`args.which`), for retry.
    pub fn parse(s: &str) -> Option<Which> {
        Some(match s {
            "run" => Which::Run,
            "seed" => Which::Seed,
            "build" => Which::Build,
            "snapshot" => Which::Snapshot,
            "test" => Which::Test,
            _ => return None,
        })
    }

    /// Whether this command runs nodes of this type (ephemeral models never run).
    pub fn runs(self, resource: ResourceType, ephemeral: bool) -> bool {
        match resource {
            ResourceType::Model => matches!(self, Which::Run | Which::Build) && !ephemeral,
            ResourceType::Seed => matches!(self, Which::Seed | Which::Build),
            ResourceType::Snapshot => matches!(self, Which::Snapshot | Which::Build),
            ResourceType::Test => matches!(self, Which::Test | Which::Build),
            _ => false,
        }
    }

    pub fn includes(self, n: &Node) -> bool {
        self.runs(n.resource_type, n.is_ephemeral())
    }

    /// Unit tests of the selected models run first in `test` and `build`.
    pub fn runs_unit_tests(self) -> bool {
        matches!(self, Which::Test | Which::Build)
    }
}

/// How a model is built this time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelBuild {
    View,
    /// A table built from scratch and swapped in: tables, and incremental
    /// models on their first run or under a full refresh.
    Table,
    /// New rows merged into the existing table.
    Incremental,
    /// A materialized view built and swapped in.
    MaterializedView,
    /// An existing materialized view refreshed in place.
    RefreshMaterializedView,
}

impl ModelBuild {
    /// The kind of relation it leaves.
    pub fn kind(self) -> RelationKind {
        match self {
            ModelBuild::View => RelationKind::View,
            ModelBuild::Table | ModelBuild::Incremental => RelationKind::Table,
            ModelBuild::MaterializedView | ModelBuild::RefreshMaterializedView => {
                RelationKind::MaterializedView
            }
        }
    }

    /// Whether the existing relation is kept (so grants the config no longer
    /// lists must be revoked).
    pub fn keeps_relation(self) -> bool {
        matches!(
            self,
            ModelBuild::Incremental | ModelBuild::RefreshMaterializedView
        )
    }

    /// The adapter response code dbt reports for it.
    pub fn code(self, strategy: Option<&IncrementalStrategy>) -> &'static str {
        match self {
            ModelBuild::View => "CREATE VIEW",
            ModelBuild::RefreshMaterializedView => "REFRESH MATERIALIZED VIEW",
            ModelBuild::Incremental if strategy == Some(&IncrementalStrategy::Merge) => "MERGE",
            ModelBuild::Incremental => "INSERT",
            ModelBuild::Table | ModelBuild::MaterializedView => "SELECT",
        }
    }
}

/// How to build a model with this materialization over what exists now.
/// `full_refresh` is the node's own decision (`NodeConfig::full_refresh_under`).
pub fn model_build(
    materialized: &Materialized,
    existing: Option<RelationKind>,
    full_refresh: bool,
) -> Result<ModelBuild, NodeError> {
    Ok(match materialized {
        Materialized::View => ModelBuild::View,
        Materialized::Table => ModelBuild::Table,
        Materialized::Incremental if existing == Some(RelationKind::Table) && !full_refresh => {
            ModelBuild::Incremental
        }
        Materialized::Incremental => ModelBuild::Table,
        Materialized::MaterializedView
            if existing == Some(RelationKind::MaterializedView) && !full_refresh =>
        {
            ModelBuild::RefreshMaterializedView
        }
        Materialized::MaterializedView => ModelBuild::MaterializedView,
        other => {
            return Err(NodeError::new(
                NodeErrorKind::Config,
                format!(
                    "materialization '{}' is not supported by Strata yet",
                    other.as_str()
                ),
            ))
        }
    })
}

/// Whether a seed load replaces its table instead of emptying and reloading
/// it: on a full refresh (the seed's own `full_refresh` wins over the flag),
/// when nothing is there yet, or when the file's columns no longer match.
pub fn seed_recreates(
    existing: Option<RelationKind>,
    full_refresh: bool,
    columns_changed: bool,
) -> bool {
    full_refresh || columns_changed || existing != Some(RelationKind::Table)
}

/// A data test's status from its query: `should_warn` and `should_error` are
/// the `warn_if` and `error_if` comparisons; `error_if` counts only at
/// severity error.
pub fn test_status(severity: Severity, should_warn: bool, should_error: bool) -> RunStatus {
    if severity == Severity::Error && should_error {
        RunStatus::Fail
    } else if should_warn {
        RunStatus::Warn
    } else {
        RunStatus::Pass
    }
}

/// A node to schedule, as far as ordering goes.
#[derive(Debug, Clone, Copy)]
pub struct JobNode<'a> {
    pub unique_id: &'a str,
    pub depends_on: &'a [String],
    pub is_test: bool,
}

/// For each job, the jobs it waits for: its dependencies among the jobs,
/// looking through nodes that do not run (ephemeral models, whose own
/// dependencies `passthrough` gives). A test with a single parent also gates
/// that parent's children (`build`: a failing test skips what is downstream);
/// tests of several parents do not, or a relationships test between a node
/// and its descendant would wait on itself.
pub fn job_parents<'a>(
    jobs: &[JobNode<'a>],
    passthrough: impl Fn(&str) -> Option<&'a [String]>,
) -> Vec<Vec<usize>> {
    let index: HashMap<&str, usize> = jobs
        .iter()
        .enumerate()
        .map(|(i, j)| (j.unique_id, i))
        .collect();
    let mut parents: Vec<Vec<usize>> = jobs
        .iter()
        .map(|j| {
            let mut out = BTreeSet::new();
            let mut stack: Vec<&str> = j.depends_on.iter().map(String::as_str).collect();
            let mut seen = BTreeSet::new();
            while let Some(d) = stack.pop() {
                if !seen.insert(d) {
                    continue;
                }
                if let Some(&i) = index.get(d) {
                    out.insert(i);
                } else if let Some(deps) = passthrough(d) {
                    stack.extend(deps.iter().map(String::as_str));
                }
            }
            out.into_iter().collect()
        })
        .collect();
    let mut tests_of: HashMap<usize, Vec<usize>> = HashMap::new();
    for (t, j) in jobs.iter().enumerate() {
        if j.is_test && parents[t].len() == 1 {
            tests_of.entry(parents[t][0]).or_default().push(t);
        }
    }
    if !tests_of.is_empty() {
        for (c, j) in jobs.iter().enumerate() {
            if j.is_test {
                continue;
            }
            let extra: Vec<usize> = parents[c]
                .iter()
                .filter_map(|p| tests_of.get(p))
                .flatten()
                .copied()
                .collect();
            parents[c].extend(extra);
            parents[c].sort_unstable();
            parents[c].dedup();
        }
    }
    parents
}

/// Whether a finished run counts as failed (exit 1): any error, or anything
/// skipped when `--fail-fast` stopped it.
pub fn run_failed(errors: usize, skipped: usize, fail_fast: bool) -> bool {
    errors > 0 || skipped > 0 && fail_fast
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn which_runs_what() {
        assert!(Which::Run.runs(ResourceType::Model, false));
        assert!(!Which::Run.runs(ResourceType::Model, true));
        assert!(!Which::Run.runs(ResourceType::Seed, false));
        assert!(Which::Build.runs(ResourceType::Seed, false));
        assert!(Which::Build.runs(ResourceType::Test, false));
        assert!(!Which::Seed.runs(ResourceType::Test, false));
        assert!(Which::Snapshot.runs(ResourceType::Snapshot, false));
        assert!(!Which::Build.runs(ResourceType::Source, false));
        assert!(Which::Test.runs_unit_tests() && !Which::Run.runs_unit_tests());
        for w in [
            Which::Run,
            Which::Seed,
            Which::Build,
            Which::Snapshot,
            Which::Test,
        ] {
            assert_eq!(Which::parse(w.name()), Some(w));
        }
    }

    #[test]
    fn materialization_choice() {
        use Materialized as M;
        use RelationKind::{MaterializedView as Mv, Table, View};
        let b = |m: &M, e, fr| model_build(m, e, fr).unwrap();
        assert_eq!(b(&M::View, Some(Table), false), ModelBuild::View);
        assert_eq!(b(&M::Table, None, false), ModelBuild::Table);
        // Incremental: merges only into an existing table, and not under a full refresh.
        assert_eq!(b(&M::Incremental, None, false), ModelBuild::Table);
        assert_eq!(b(&M::Incremental, Some(View), false), ModelBuild::Table);
        assert_eq!(
            b(&M::Incremental, Some(Table), false),
            ModelBuild::Incremental
        );
        assert_eq!(b(&M::Incremental, Some(Table), true), ModelBuild::Table);
        assert_eq!(
            b(&M::MaterializedView, Some(Mv), false),
            ModelBuild::RefreshMaterializedView
        );
        assert_eq!(
            b(&M::MaterializedView, Some(Mv), true),
            ModelBuild::MaterializedView
        );
        assert_eq!(
            b(&M::MaterializedView, Some(Table), false),
            ModelBuild::MaterializedView
        );
        let e = model_build(&M::Custom("my_mat".into()), None, false).unwrap_err();
        assert_eq!(e.kind, NodeErrorKind::Config);
        assert!(e.message.contains("'my_mat'"), "{}", e.message);
        assert!(model_build(&M::Ephemeral, None, false).is_err());
    }

    #[test]
    fn codes_and_kept_relations() {
        assert_eq!(ModelBuild::View.code(None), "CREATE VIEW");
        assert_eq!(
            ModelBuild::Incremental.code(Some(&IncrementalStrategy::Merge)),
            "MERGE"
        );
        assert_eq!(ModelBuild::Incremental.code(None), "INSERT");
        assert_eq!(ModelBuild::Table.code(None), "SELECT");
        assert!(ModelBuild::Incremental.keeps_relation());
        assert!(ModelBuild::RefreshMaterializedView.keeps_relation());
        assert!(!ModelBuild::Table.keeps_relation());
        assert_eq!(ModelBuild::Incremental.kind(), RelationKind::Table);
    }

    #[test]
    fn full_refresh_follows_the_node_config_over_the_flag() {
        use crate::project::config::{ConfigScope, NodeConfig};
        let mut c = NodeConfig::empty(ConfigScope::Seed);
        assert!(c.full_refresh_under(true));
        assert!(!c.full_refresh_under(false));
        c.full_refresh = Some(false);
        assert!(!c.full_refresh_under(true));
        c.full_refresh = Some(true);
        assert!(c.full_refresh_under(false));
        let t = Some(RelationKind::Table);
        assert!(!seed_recreates(t, false, false));
        assert!(seed_recreates(t, true, false));
        assert!(seed_recreates(t, false, true));
        assert!(seed_recreates(None, false, false));
        assert!(seed_recreates(Some(RelationKind::View), false, false));
    }

    #[test]
    fn test_severity_and_thresholds() {
        assert_eq!(test_status(Severity::Error, true, true), RunStatus::Fail);
        assert_eq!(test_status(Severity::Warn, true, true), RunStatus::Warn);
        assert_eq!(test_status(Severity::Error, true, false), RunStatus::Warn);
        assert_eq!(test_status(Severity::Error, false, false), RunStatus::Pass);
        assert_eq!(test_status(Severity::Warn, false, true), RunStatus::Pass);
    }

    #[test]
    fn skip_rules() {
        // seed → (ephemeral) → model → child; a unique test on model; a
        // relationships test on model and child.
        let ids = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let seed_deps = ids(&[]);
        let eph_deps = ids(&["seed.p.raw"]);
        let model_deps = ids(&["model.p.eph"]);
        let child_deps = ids(&["model.p.m"]);
        let unique_deps = ids(&["model.p.m"]);
        let rel_deps = ids(&["model.p.m", "model.p.child"]);
        let jobs = [
            JobNode {
                unique_id: "seed.p.raw",
                depends_on: &seed_deps,
                is_test: false,
            },
            JobNode {
                unique_id: "model.p.m",
                depends_on: &model_deps,
                is_test: false,
            },
            JobNode {
                unique_id: "model.p.child",
                depends_on: &child_deps,
                is_test: false,
            },
            JobNode {
                unique_id: "test.p.unique",
                depends_on: &unique_deps,
                is_test: true,
            },
            JobNode {
                unique_id: "test.p.rel",
                depends_on: &rel_deps,
                is_test: true,
            },
        ];
        let parents = job_parents(&jobs, |id| (id == "model.p.eph").then_some(&eph_deps[..]));
        assert_eq!(parents[0], Vec::<usize>::new());
        // Through the ephemeral model to the seed.
        assert_eq!(parents[1], vec![0]);
        // The child waits for its parent and the parent's single-parent test.
        assert_eq!(parents[2], vec![1, 3]);
        assert_eq!(parents[3], vec![1]);
        // The two-parent test gates nothing and waits for both.
        assert_eq!(parents[4], vec![1, 2]);
        assert!(run_failed(1, 0, false));
        assert!(!run_failed(0, 3, false));
        assert!(run_failed(0, 3, true));
    }
}
