//! Config layering (project folders → schema YAML → inline `config()`, merged
//! with dbt's rules) and the typed, validated config the engine reads.

use std::collections::BTreeSet;
use std::sync::LazyLock;

use serde_json::Value as Json;
use serde_yaml::{Mapping, Value as Yaml};

use crate::confmap::{
    as_list, json_truthy, merge_key, yaml_key, yaml_to_json, ConfigMap, DICT_CONFIGS,
};

/// Whether a dbt_project.yml key at a folder level is a config (else a sub-folder).
fn is_config_entry(k: &str, v: &Yaml) -> bool {
    k.starts_with('+') || !v.is_mapping() || DICT_CONFIGS.contains(&k)
}

/// Applies the folder-scoped configs of one resource section along `fqn`
/// (package name first, then folders, then the node name).
pub fn apply_folder_configs(section: &Mapping, fqn: &[String], into: &mut ConfigMap) {
    let mut level = section;
    let mut depth = 0;
    loop {
        for (k, v) in level {
            let key = match k.as_str() {
                Some(s) => s,
                None => continue,
            };
            if is_config_entry(key, v) {
                merge_key(into, key, yaml_to_json(v));
            }
        }
        let Some(next) = fqn.get(depth) else { break };
        match level.get(next.as_str()) {
            Some(Yaml::Mapping(m)) if !next.starts_with('+') => {
                level = m;
                depth += 1;
            }
            _ => break,
        }
    }
}

/// Converts a YAML `config:` block to a map with normalized keys.
pub fn config_from_yaml(m: &Mapping) -> ConfigMap {
    let mut out = ConfigMap::default();
    for (k, v) in m {
        merge_key(&mut out, &yaml_key(k), yaml_to_json(v));
    }
    out
}

/// Which kind of node a config belongs to: it decides the defaults and which
/// keys are checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigScope {
    Model,
    Seed,
    Snapshot,
    Test,
    Analysis,
    /// Sources, exposures, project hooks: only the common keys matter.
    Other,
}

/// Names a project or its packages define that configs may use besides the
/// built-in ones: `{% materialization %}` blocks, `get_incremental_<name>_sql`
/// and `snapshot_<name>_strategy` macros.
#[derive(Debug, Clone, Default)]
pub struct Extensions {
    pub materializations: BTreeSet<String>,
    pub incremental_strategies: BTreeSet<String>,
    pub snapshot_strategies: BTreeSet<String>,
}

/// A config value that is not valid for its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    pub key: String,
    pub message: String,
    pub hint: Option<String>,
}

/// How a node is built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Materialized {
    View,
    Table,
    Incremental,
    Ephemeral,
    MaterializedView,
    Seed,
    Snapshot,
    Test,
    /// A `{% materialization %}` a project or package defines.
    Custom(String),
}

impl Materialized {
    const BUILT_IN: &'static [&'static str] = &[
        "view",
        "table",
        "incremental",
        "ephemeral",
        "materialized_view",
    ];

    pub fn as_str(&self) -> &str {
        match self {
            Materialized::View => "view",
            Materialized::Table => "table",
            Materialized::Incremental => "incremental",
            Materialized::Ephemeral => "ephemeral",
            Materialized::MaterializedView => "materialized_view",
            Materialized::Seed => "seed",
            Materialized::Snapshot => "snapshot",
            Materialized::Test => "test",
            Materialized::Custom(s) => s,
        }
    }

    fn parse(s: &str, ext: &Extensions) -> Option<Materialized> {
        Some(match s {
            "view" => Materialized::View,
            "table" => Materialized::Table,
            "incremental" => Materialized::Incremental,
            "ephemeral" => Materialized::Ephemeral,
            "materialized_view" => Materialized::MaterializedView,
            "seed" => Materialized::Seed,
            "snapshot" => Materialized::Snapshot,
            "test" => Materialized::Test,
            other if ext.materializations.contains(other) => Materialized::Custom(other.into()),
            _ => return None,
        })
    }
}

impl serde::Serialize for Materialized {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl std::fmt::Display for Materialized {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `incremental_strategy`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IncrementalStrategy {
    Append,
    Merge,
    DeleteInsert,
    Microbatch,
    InsertOverwrite,
    /// A strategy a project defines with a `get_incremental_<name>_sql` macro.
    Custom(String),
}

impl IncrementalStrategy {
    pub fn as_str(&self) -> &str {
        match self {
            IncrementalStrategy::Append => "append",
            IncrementalStrategy::Merge => "merge",
            IncrementalStrategy::DeleteInsert => "delete+insert",
            IncrementalStrategy::Microbatch => "microbatch",
            IncrementalStrategy::InsertOverwrite => "insert_overwrite",
            IncrementalStrategy::Custom(s) => s,
        }
    }
}

/// `on_schema_change` of incremental models.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnSchemaChange {
    #[default]
    Ignore,
    Fail,
    AppendNewColumns,
    SyncAllColumns,
}

/// `on_configuration_change` of materialized views.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnConfigurationChange {
    /// Apply configuration that can change in place (create missing indexes).
    #[default]
    Apply,
    /// Only refresh.
    Continue,
    /// Refuse to run when configuration (indexes) is set.
    Fail,
}

/// A data test's `severity`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Severity {
    #[default]
    Error,
    Warn,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Error => "ERROR",
            Severity::Warn => "WARN",
        }
    }
}

/// A snapshot's `hard_deletes`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HardDeletes {
    #[default]
    Ignore,
    Invalidate,
    NewRecord,
}

/// A snapshot's `strategy`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SnapshotStrategy {
    Timestamp,
    Check,
    /// A strategy a project defines with a `snapshot_<name>_strategy` macro.
    Custom(String),
}

/// A snapshot's `check_cols`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum CheckCols {
    #[default]
    All,
    Columns(Vec<String>),
}

/// The names of a snapshot's meta columns (`snapshot_meta_column_names`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetaColumns {
    pub scd_id: String,
    pub updated_at: String,
    pub valid_from: String,
    pub valid_to: String,
    pub is_deleted: String,
}

impl Default for MetaColumns {
    fn default() -> Self {
        MetaColumns {
            scd_id: "dbt_scd_id".into(),
            updated_at: "dbt_updated_at".into(),
            valid_from: "dbt_valid_from".into(),
            valid_to: "dbt_valid_to".into(),
            is_deleted: "dbt_is_deleted".into(),
        }
    }
}

/// Where a data test's failing rows are stored (`store_failures_as`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreFailuresAs {
    Table,
    View,
    Ephemeral,
}

/// A pre- or post-hook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hook {
    pub sql: String,
    /// Runs inside the node's transaction (the default).
    pub transaction: bool,
}

/// One `grants` entry: a privilege and who gets it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantConfig {
    pub privilege: String,
    pub grantees: Vec<String>,
}

/// One Postgres `indexes` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexConfig {
    pub columns: Vec<String>,
    pub unique: bool,
    /// The access method (`type:`).
    pub method: Option<String>,
}

/// `persist_docs`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PersistDocs {
    pub relation: bool,
    pub columns: bool,
}

/// Settings only seeds read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeedConfig {
    /// Column name → type, overriding inference.
    pub column_types: Vec<(String, String)>,
    pub delimiter: u8,
    pub quote_columns: bool,
}

impl Default for SeedConfig {
    fn default() -> Self {
        SeedConfig {
            column_types: vec![],
            delimiter: b',',
            quote_columns: true,
        }
    }
}

/// Settings only snapshots read.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SnapshotConfig {
    pub strategy: Option<SnapshotStrategy>,
    pub updated_at: Option<String>,
    pub check_cols: CheckCols,
    pub hard_deletes: HardDeletes,
    pub meta_columns: MetaColumns,
    /// SQL for `dbt_valid_to` of current rows.
    pub valid_to_current: Option<String>,
}

/// Settings only data tests read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestConfig {
    pub severity: Severity,
    pub fail_calc: String,
    pub warn_if: String,
    pub error_if: String,
    pub limit: Option<u64>,
    pub where_clause: Option<String>,
    pub store_failures: bool,
    pub store_failures_as: Option<StoreFailuresAs>,
}

impl Default for TestConfig {
    fn default() -> Self {
        TestConfig {
            severity: Severity::Error,
            fail_calc: "count(*)".into(),
            warn_if: "!= 0".into(),
            error_if: "!= 0".into(),
            limit: None,
            where_clause: None,
            store_failures: false,
            store_failures_as: None,
        }
    }
}

/// A node's final config: typed and validated for what the engine reads, with
/// every key kept in `all` for `config.get`, selectors and the manifest.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeConfig {
    pub enabled: bool,
    pub materialized: Materialized,
    pub schema: Option<String>,
    pub database: Option<String>,
    pub alias: Option<String>,
    pub tags: Vec<String>,
    /// `Some` overrides `--full-refresh` (dbt: `false` means never).
    pub full_refresh: Option<bool>,
    pub pre_hook: Vec<Hook>,
    pub post_hook: Vec<Hook>,
    pub unique_key: Vec<String>,
    pub incremental_strategy: Option<IncrementalStrategy>,
    pub incremental_predicates: Vec<String>,
    pub on_schema_change: OnSchemaChange,
    pub on_configuration_change: OnConfigurationChange,
    pub grants: Vec<GrantConfig>,
    pub indexes: Vec<IndexConfig>,
    pub persist_docs: PersistDocs,
    pub contract_enforced: bool,
    pub unlogged: bool,
    /// Redshift's table layout (`dist`, `sort`, `sort_type`, `backup`) and
    /// views' `bind`; accepted and ignored on Postgres.
    pub layout: Layout,
    /// Settings only one kind of node reads.
    pub kind: KindConfig,
    /// Every key, for `config.get` and the manifest.
    pub all: ConfigMap,
}

/// How Redshift distributes a table's rows over its slices (`dist`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dist {
    All,
    Even,
    Auto,
    /// `DISTSTYLE KEY` on this column.
    Key(String),
}

/// `sort_type`: how a multi-column sort key orders rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SortType {
    #[default]
    Compound,
    Interleaved,
}

/// dbt-redshift's physical settings of a table or view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    pub dist: Option<Dist>,
    pub sort: Vec<String>,
    pub sort_type: SortType,
    /// `backup: false` leaves the table out of snapshots (`BACKUP NO`).
    pub backup: Option<bool>,
    /// `bind: false` makes a view late-binding (`WITH NO SCHEMA BINDING`).
    pub bind: bool,
    /// Materialized views: Redshift refreshes them itself (`AUTO REFRESH`).
    pub auto_refresh: Option<bool>,
}

impl Default for Layout {
    fn default() -> Self {
        Layout {
            dist: None,
            sort: Vec::new(),
            sort_type: SortType::Compound,
            backup: None,
            bind: true,
            auto_refresh: None,
        }
    }
}

/// The settings of seeds, snapshots and tests, kept only on nodes of that kind.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum KindConfig {
    #[default]
    None,
    Seed(Box<SeedConfig>),
    Snapshot(Box<SnapshotConfig>),
    Test(Box<TestConfig>),
}

static DEFAULT_SEED: LazyLock<SeedConfig> = LazyLock::new(SeedConfig::default);
static DEFAULT_SNAPSHOT: LazyLock<SnapshotConfig> = LazyLock::new(SnapshotConfig::default);
static DEFAULT_TEST: LazyLock<TestConfig> = LazyLock::new(TestConfig::default);

/// Reads typed values out of a config map, collecting problems instead of
/// stopping at the first (each bad key falls back to its default).
struct Reader<'a> {
    map: &'a ConfigMap,
    problems: Vec<ConfigProblem>,
}

impl<'a> Reader<'a> {
    fn get(&self, key: &str) -> Option<&'a Json> {
        self.map.get(key).filter(|v| !v.is_null())
    }

    fn problem(&mut self, key: &str, message: String, hint: Option<String>) {
        self.problems.push(ConfigProblem {
            key: key.to_string(),
            message,
            hint,
        });
    }

    fn string(&mut self, key: &str) -> Option<String> {
        match self.get(key)? {
            Json::String(s) => Some(s.clone()),
            Json::Number(n) => Some(n.to_string()),
            Json::Bool(b) => Some(b.to_string()),
            other => {
                self.problem(key, format!("{key} must be a string, not {other}"), None);
                None
            }
        }
    }

    fn bool(&mut self, key: &str) -> Option<bool> {
        match self.get(key)? {
            Json::Bool(b) => Some(*b),
            Json::String(s) if s.eq_ignore_ascii_case("true") => Some(true),
            Json::String(s) if s.eq_ignore_ascii_case("false") => Some(false),
            other => {
                self.problem(
                    key,
                    format!("{key} must be true or false, not {other}"),
                    None,
                );
                None
            }
        }
    }

    fn string_list(&mut self, key: &str) -> Vec<String> {
        match self.get(key) {
            None => vec![],
            Some(Json::String(s)) => vec![s.clone()],
            Some(Json::Array(a)) if a.iter().all(Json::is_string) => a
                .iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect(),
            Some(other) => {
                self.problem(
                    key,
                    format!("{key} must be a string or a list of strings, not {other}"),
                    None,
                );
                vec![]
            }
        }
    }

    /// One of `choices` (compared case-insensitively when `fold`).
    fn choice<T: Clone>(&mut self, key: &str, choices: &[(&str, T)], fold: bool) -> Option<T> {
        let v = self.string(key)?;
        let found = choices.iter().find(|(name, _)| {
            if fold {
                name.eq_ignore_ascii_case(&v)
            } else {
                *name == v
            }
        });
        match found {
            Some((_, t)) => Some(t.clone()),
            None => {
                let names: Vec<&str> = choices.iter().map(|(n, _)| *n).collect();
                self.problem(
                    key,
                    format!("{key} '{v}' is not one of {}", names.join(", ")),
                    crate::error::suggest(&v, names.iter().copied()),
                );
                None
            }
        }
    }

    fn hooks(&mut self, key: &str) -> Vec<Hook> {
        let mut out = Vec::new();
        for h in as_list(self.map.get(key).unwrap_or(&Json::Null)) {
            match h {
                Json::String(sql) => out.push(Hook {
                    sql,
                    transaction: true,
                }),
                Json::Object(o) => match o.get("sql") {
                    Some(Json::String(sql)) => out.push(Hook {
                        sql: sql.clone(),
                        transaction: o.get("transaction").map(json_truthy).unwrap_or(true),
                    }),
                    _ => self.problem(
                        key,
                        format!("a {key} entry needs `sql:` text"),
                        Some(
                            "write a hook as SQL text, or as {sql: ..., transaction: false}".into(),
                        ),
                    ),
                },
                Json::Null => {}
                other => out.push(Hook {
                    sql: other.to_string(),
                    transaction: true,
                }),
            }
        }
        out
    }
}

/// The config of a node before linking (cached nodes are read back with it).
impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig::empty(ConfigScope::Other)
    }
}

impl NodeConfig {
    /// Types and validates a merged config; problems name the key, and each
    /// bad key falls back to its default.
    pub fn resolve(
        map: ConfigMap,
        scope: ConfigScope,
        ext: &Extensions,
    ) -> (NodeConfig, Vec<ConfigProblem>) {
        let mut r = Reader {
            map: &map,
            problems: Vec::new(),
        };
        let default_materialized = match scope {
            ConfigScope::Seed => Materialized::Seed,
            ConfigScope::Snapshot => Materialized::Snapshot,
            ConfigScope::Test => Materialized::Test,
            _ => Materialized::View,
        };
        let materialized = match r.string("materialized") {
            None => default_materialized,
            Some(m) => match Materialized::parse(&m, ext) {
                Some(m) => m,
                None => {
                    let mut known: Vec<&str> = Materialized::BUILT_IN.to_vec();
                    known.extend(ext.materializations.iter().map(String::as_str));
                    r.problem(
                        "materialized",
                        format!(
                            "materialized '{m}' is not a materialization (known: {})",
                            known.join(", ")
                        ),
                        crate::error::suggest(&m, known.iter().copied()).or(Some(format!(
                            "define it with {{% materialization {m}, default %}} in a macro file, or use a built-in one"
                        ))),
                    );
                    default_materialized
                }
            },
        };
        let tags = map
            .get("tags")
            .map(as_list)
            .unwrap_or_default()
            .into_iter()
            .filter_map(|t| t.as_str().map(str::to_string))
            .collect();
        let full_refresh = r.bool("full_refresh");
        let unique_key = r.string_list("unique_key");
        let incremental_strategy = match r.string("incremental_strategy") {
            None => None,
            Some(v) => match v.as_str() {
                "default" => None,
                "append" => Some(IncrementalStrategy::Append),
                "merge" => Some(IncrementalStrategy::Merge),
                "delete+insert" => Some(IncrementalStrategy::DeleteInsert),
                "microbatch" => Some(IncrementalStrategy::Microbatch),
                "insert_overwrite" => Some(IncrementalStrategy::InsertOverwrite),
                other if ext.incremental_strategies.contains(other) => {
                    Some(IncrementalStrategy::Custom(other.into()))
                }
                other => {
                    let known = ["append", "merge", "delete+insert", "microbatch"];
                    r.problem(
                        "incremental_strategy",
                        format!(
                            "incremental_strategy '{other}' is not one of {}",
                            known.join(", ")
                        ),
                        crate::error::suggest(other, known.iter().copied()).or(Some(format!(
                            "a custom strategy needs a macro named get_incremental_{other}_sql"
                        ))),
                    );
                    None
                }
            },
        };
        let incremental_predicates = r.string_list("incremental_predicates");
        let on_schema_change = r
            .choice(
                "on_schema_change",
                &[
                    ("ignore", OnSchemaChange::Ignore),
                    ("fail", OnSchemaChange::Fail),
                    ("append_new_columns", OnSchemaChange::AppendNewColumns),
                    ("sync_all_columns", OnSchemaChange::SyncAllColumns),
                ],
                false,
            )
            .unwrap_or_default();
        let on_configuration_change = r
            .choice(
                "on_configuration_change",
                &[
                    ("apply", OnConfigurationChange::Apply),
                    ("continue", OnConfigurationChange::Continue),
                    ("fail", OnConfigurationChange::Fail),
                ],
                false,
            )
            .unwrap_or_default();
        let mut grants = Vec::new();
        match r.get("grants") {
            None => {}
            Some(Json::Object(g)) => {
                for (privilege, who) in g {
                    let grantees = match who {
                        Json::String(s) => vec![s.clone()],
                        Json::Array(a) => a
                            .iter()
                            .filter_map(|x| x.as_str().map(str::to_string))
                            .collect(),
                        Json::Null => vec![],
                        other => {
                            r.problem(
                                "grants",
                                format!("grants.{privilege} must be a grantee or a list of them, not {other}"),
                                None,
                            );
                            continue;
                        }
                    };
                    grants.push(GrantConfig {
                        privilege: privilege.clone(),
                        grantees,
                    });
                }
            }
            Some(other) => r.problem(
                "grants",
                format!("grants must map privileges to grantees, not {other}"),
                Some("example: grants: {select: [reporter]}".into()),
            ),
        }
        let mut indexes = Vec::new();
        match r.get("indexes") {
            None => {}
            Some(Json::Array(list)) => {
                for i in list {
                    let columns = match i.get("columns") {
                        Some(Json::String(c)) => vec![c.clone()],
                        Some(Json::Array(a)) => a
                            .iter()
                            .filter_map(|x| x.as_str().map(str::to_string))
                            .collect(),
                        _ => vec![],
                    };
                    if columns.is_empty() {
                        r.problem(
                            "indexes",
                            "an index needs `columns`".into(),
                            Some("example: indexes: [{columns: [id], unique: true}]".into()),
                        );
                        continue;
                    }
                    indexes.push(IndexConfig {
                        columns,
                        unique: i.get("unique").is_some_and(json_truthy),
                        method: i.get("type").and_then(Json::as_str).map(str::to_string),
                    });
                }
            }
            Some(other) => r.problem(
                "indexes",
                format!("indexes must be a list, not {other}"),
                Some("example: indexes: [{columns: [id], unique: true}]".into()),
            ),
        }
        let flag = |v: Option<&Json>, k: &str| v.and_then(|o| o.get(k)).is_some_and(json_truthy);
        let persist_docs = PersistDocs {
            relation: flag(r.get("persist_docs"), "relation"),
            columns: flag(r.get("persist_docs"), "columns"),
        };
        let contract_enforced = flag(r.get("contract"), "enforced");
        let unlogged = r.bool("unlogged").unwrap_or(false);
        let layout = Layout {
            dist: r
                .string("dist")
                .map(|d| match d.to_ascii_lowercase().as_str() {
                    "all" => Dist::All,
                    "even" => Dist::Even,
                    "auto" => Dist::Auto,
                    _ => Dist::Key(d),
                }),
            sort: r.string_list("sort"),
            sort_type: r
                .choice(
                    "sort_type",
                    &[
                        ("compound", SortType::Compound),
                        ("interleaved", SortType::Interleaved),
                    ],
                    true,
                )
                .unwrap_or_default(),
            backup: r.bool("backup"),
            bind: r.bool("bind").unwrap_or(true),
            auto_refresh: r.bool("auto_refresh"),
        };
        let pre_hook = r.hooks("pre-hook");
        let post_hook = r.hooks("post-hook");

        let mut seed = SeedConfig::default();
        let mut snapshot = SnapshotConfig::default();
        let mut test = TestConfig::default();
        let kind_is = |k: ConfigScope| scope == k;
        if scope == ConfigScope::Seed {
            if let Some(ct) = r.get("column_types") {
                match ct {
                    Json::Object(m) => {
                        seed.column_types = m
                            .iter()
                            .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                            .collect()
                    }
                    other => r.problem(
                        "column_types",
                        format!("column_types must map column names to types, not {other}"),
                        None,
                    ),
                }
            }
            if let Some(d) = r.string("delimiter") {
                match d.as_bytes() {
                    [b] => seed.delimiter = *b,
                    _ => r.problem(
                        "delimiter",
                        format!("delimiter '{d}' must be a single character"),
                        None,
                    ),
                }
            }
            seed.quote_columns = r.bool("quote_columns").unwrap_or(true);
        }
        if scope == ConfigScope::Snapshot {
            snapshot.strategy = match r.string("strategy") {
                None => None,
                Some(s) if s == "timestamp" => Some(SnapshotStrategy::Timestamp),
                Some(s) if s == "check" => Some(SnapshotStrategy::Check),
                Some(s) if ext.snapshot_strategies.contains(&s) => {
                    Some(SnapshotStrategy::Custom(s))
                }
                Some(s) => {
                    r.problem(
                        "strategy",
                        format!("snapshot strategy '{s}' is not timestamp or check"),
                        crate::error::suggest(&s, ["timestamp", "check"].into_iter()),
                    );
                    None
                }
            };
            snapshot.updated_at = r.string("updated_at");
            snapshot.check_cols = match r.get("check_cols") {
                Some(Json::String(s)) if s == "all" => CheckCols::All,
                None => CheckCols::All,
                _ => CheckCols::Columns(r.string_list("check_cols")),
            };
            let legacy = r.bool("invalidate_hard_deletes").unwrap_or(false);
            snapshot.hard_deletes = r
                .choice(
                    "hard_deletes",
                    &[
                        ("ignore", HardDeletes::Ignore),
                        ("invalidate", HardDeletes::Invalidate),
                        ("new_record", HardDeletes::NewRecord),
                    ],
                    false,
                )
                .unwrap_or(if legacy {
                    HardDeletes::Invalidate
                } else {
                    HardDeletes::Ignore
                });
            match r.get("snapshot_meta_column_names") {
                None => {}
                Some(Json::Object(names)) => {
                    let m = &mut snapshot.meta_columns;
                    let get = |k: &str| names.get(k).and_then(Json::as_str).map(str::to_string);
                    m.scd_id = get("dbt_scd_id").unwrap_or(std::mem::take(&mut m.scd_id));
                    m.updated_at =
                        get("dbt_updated_at").unwrap_or(std::mem::take(&mut m.updated_at));
                    m.valid_from =
                        get("dbt_valid_from").unwrap_or(std::mem::take(&mut m.valid_from));
                    m.valid_to = get("dbt_valid_to").unwrap_or(std::mem::take(&mut m.valid_to));
                    m.is_deleted =
                        get("dbt_is_deleted").unwrap_or(std::mem::take(&mut m.is_deleted));
                }
                Some(other) => r.problem(
                    "snapshot_meta_column_names",
                    format!(
                        "snapshot_meta_column_names must map meta columns to names, not {other}"
                    ),
                    None,
                ),
            }
            snapshot.valid_to_current = r.string("dbt_valid_to_current");
            let strategy_set = snapshot.strategy.is_some();
            if unique_key.is_empty() && map.get("unique_key").is_none() {
                r.problem(
                    "unique_key",
                    "a snapshot needs a unique_key".into(),
                    Some(
                        "set unique_key to the column (or list of columns) identifying a row"
                            .into(),
                    ),
                );
            }
            match &snapshot.strategy {
                None if !strategy_set && map.get("strategy").is_none() => r.problem(
                    "strategy",
                    "a snapshot needs a strategy (timestamp or check)".into(),
                    None,
                ),
                Some(SnapshotStrategy::Timestamp) if snapshot.updated_at.is_none() => r.problem(
                    "strategy",
                    "the timestamp strategy needs updated_at".into(),
                    Some("set updated_at to the column holding each row's last change".into()),
                ),
                _ => {}
            }
        }
        if scope == ConfigScope::Test {
            test.severity = r
                .choice(
                    "severity",
                    &[("error", Severity::Error), ("warn", Severity::Warn)],
                    true,
                )
                .unwrap_or_default();
            for (key, slot) in [
                ("fail_calc", &mut test.fail_calc),
                ("warn_if", &mut test.warn_if),
                ("error_if", &mut test.error_if),
            ] {
                if let Some(v) = r.string(key) {
                    *slot = v;
                }
            }
            test.limit = match r.get("limit") {
                None => None,
                Some(v) => match v.as_u64() {
                    Some(l) => Some(l),
                    None => {
                        r.problem(
                            "limit",
                            format!("limit must be a whole number, not {v}"),
                            None,
                        );
                        None
                    }
                },
            };
            test.where_clause = r.string("where");
            test.store_failures_as = r.choice(
                "store_failures_as",
                &[
                    ("table", StoreFailuresAs::Table),
                    ("view", StoreFailuresAs::View),
                    ("ephemeral", StoreFailuresAs::Ephemeral),
                ],
                false,
            );
            test.store_failures = match test.store_failures_as {
                Some(StoreFailuresAs::Ephemeral) => false,
                Some(_) => true,
                None => r.bool("store_failures").unwrap_or(false),
            };
        }
        let config = NodeConfig {
            enabled: map.get("enabled").map(json_truthy).unwrap_or(true),
            materialized,
            schema: r.string("schema"),
            database: r.string("database"),
            alias: r.string("alias"),
            tags,
            full_refresh,
            pre_hook,
            post_hook,
            unique_key,
            incremental_strategy,
            incremental_predicates,
            on_schema_change,
            on_configuration_change,
            grants,
            indexes,
            persist_docs,
            contract_enforced,
            unlogged,
            layout,
            kind: if kind_is(ConfigScope::Seed) {
                KindConfig::Seed(Box::new(seed))
            } else if kind_is(ConfigScope::Snapshot) {
                KindConfig::Snapshot(Box::new(snapshot))
            } else if kind_is(ConfigScope::Test) {
                KindConfig::Test(Box::new(test))
            } else {
                KindConfig::None
            },
            all: ConfigMap::default(),
        };
        let problems = r.problems;
        (NodeConfig { all: map, ..config }, problems)
    }

    /// A config of defaults for `scope`, without checking anything.
    pub fn empty(scope: ConfigScope) -> NodeConfig {
        NodeConfig::resolve(ConfigMap::default(), scope, &Extensions::default()).0
    }

    pub fn get(&self, key: &str) -> Option<&Json> {
        self.all.get(key)
    }

    /// Seed settings (defaults on other nodes).
    pub fn seed(&self) -> &SeedConfig {
        match &self.kind {
            KindConfig::Seed(s) => s,
            _ => &DEFAULT_SEED,
        }
    }

    /// Snapshot settings (defaults on other nodes).
    pub fn snapshot(&self) -> &SnapshotConfig {
        match &self.kind {
            KindConfig::Snapshot(s) => s,
            _ => &DEFAULT_SNAPSHOT,
        }
    }

    /// Data test settings (defaults on other nodes).
    pub fn test(&self) -> &TestConfig {
        match &self.kind {
            KindConfig::Test(t) => t,
            _ => &DEFAULT_TEST,
        }
    }

    /// Whether this node is rebuilt from scratch: the node's `full_refresh`
    /// config, when set, wins over the `--full-refresh` flag.
    pub fn full_refresh_under(&self, flag: bool) -> bool {
        self.full_refresh.unwrap_or(flag)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn yaml(s: &str) -> Mapping {
        serde_yaml::from_str(s).unwrap()
    }

    #[test]
    fn folder_configs_descend_and_override() {
        let section = yaml(
            "+materialized: view\nmy_proj:\n  +tags: [a]\n  marts:\n    +materialized: table\n    +tags: b\n",
        );
        let mut out = ConfigMap::default();
        let fqn: Vec<String> = ["my_proj", "marts", "orders"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        apply_folder_configs(&section, &fqn, &mut out);
        assert_eq!(out["materialized"], "table");
        assert_eq!(out["tags"], serde_json::json!(["a", "b"]));
    }
}

#[cfg(test)]
mod typed_tests {
    use super::*;

    fn resolve(json: serde_json::Value, scope: ConfigScope) -> (NodeConfig, Vec<ConfigProblem>) {
        let map: ConfigMap = json
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        NodeConfig::resolve(map, scope, &Extensions::default())
    }

    #[test]
    fn typed_values_and_defaults() {
        let (c, p) = resolve(
            serde_json::json!({
                "materialized": "incremental", "unique_key": ["id", "region"],
                "incremental_strategy": "merge", "on_schema_change": "sync_all_columns",
                "full_refresh": false, "grants": {"select": "reporter"},
                "post-hook": [{"sql": "analyze", "transaction": false}, "select 1"],
            }),
            ConfigScope::Model,
        );
        assert!(p.is_empty(), "{p:?}");
        assert_eq!(c.materialized, Materialized::Incremental);
        assert_eq!(c.unique_key, vec!["id", "region"]);
        assert_eq!(c.incremental_strategy, Some(IncrementalStrategy::Merge));
        assert_eq!(c.on_schema_change, OnSchemaChange::SyncAllColumns);
        assert!(!c.full_refresh_under(true));
        assert_eq!(c.grants[0].grantees, vec!["reporter"]);
        assert_eq!(
            c.post_hook,
            vec![
                Hook {
                    sql: "analyze".into(),
                    transaction: false
                },
                Hook {
                    sql: "select 1".into(),
                    transaction: true
                }
            ]
        );
    }

    #[test]
    fn invalid_values_are_problems_with_suggestions() {
        let (c, p) = resolve(
            serde_json::json!({"materialized": "tabel", "on_schema_change": "append"}),
            ConfigScope::Model,
        );
        assert_eq!(c.materialized, Materialized::View);
        assert_eq!(p.len(), 2);
        assert_eq!(p[0].key, "materialized");
        assert!(
            p[0].hint.as_deref().unwrap().contains("'table'"),
            "{:?}",
            p[0]
        );
        assert!(
            p[1].message.contains("on_schema_change 'append'"),
            "{:?}",
            p[1]
        );
        let (t, p) = resolve(
            serde_json::json!({"severity": "WARN", "limit": 5}),
            ConfigScope::Test,
        );
        assert!(p.is_empty());
        assert_eq!(
            (t.test().severity, t.test().limit),
            (Severity::Warn, Some(5))
        );
        let (_, p) = resolve(
            serde_json::json!({"strategy": "timestamp", "unique_key": "id"}),
            ConfigScope::Snapshot,
        );
        assert_eq!(p[0].message, "the timestamp strategy needs updated_at");
    }

    #[test]
    fn project_defined_names_are_accepted() {
        let mut ext = Extensions::default();
        ext.materializations.insert("mine".into());
        let map: ConfigMap = [("materialized".to_string(), serde_json::json!("mine"))]
            .into_iter()
            .collect();
        let (c, p) = NodeConfig::resolve(map, ConfigScope::Model, &ext);
        assert!(p.is_empty());
        assert_eq!(c.materialized, Materialized::Custom("mine".into()));
    }
}
