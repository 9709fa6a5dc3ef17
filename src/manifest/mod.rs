//! The parsed project: nodes, sources, macros, docs and exposures with their
//! resolved configs, names and dependencies.

pub mod cache;
pub mod external;
pub mod generic_tests;
pub mod link;
pub mod parse_file;
pub mod parser;
pub mod pyrepr;
pub mod refs;
pub mod semantic;

use indexmap::IndexMap;
use serde_json::Value as Json;

use crate::jinja::RefCall;
use crate::project::config::{ConfigScope, Materialized, NodeConfig};
pub use crate::project::FileId;
pub use refs::{RefError, RefIndex};

/// The kinds of node dbt knows, as written in unique ids and `resource_type:`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub enum ResourceType {
    Model,
    Seed,
    Snapshot,
    Test,
    Analysis,
    Source,
    Exposure,
    Macro,
    Doc,
    UnitTest,
    /// A project hook (`on-run-start`/`on-run-end`).
    Operation,
}

impl ResourceType {
    pub fn as_str(self) -> &'static str {
        match self {
            ResourceType::Model => "model",
            ResourceType::Seed => "seed",
            ResourceType::Snapshot => "snapshot",
            ResourceType::Test => "test",
            ResourceType::Analysis => "analysis",
            ResourceType::Source => "source",
            ResourceType::Exposure => "exposure",
            ResourceType::Macro => "macro",
            ResourceType::Doc => "doc",
            ResourceType::UnitTest => "unit_test",
            ResourceType::Operation => "operation",
        }
    }

    pub fn parse(s: &str) -> Option<ResourceType> {
        Some(match s {
            "model" => ResourceType::Model,
            "seed" => ResourceType::Seed,
            "snapshot" => ResourceType::Snapshot,
            "test" | "data_test" => ResourceType::Test,
            "analysis" => ResourceType::Analysis,
            "source" => ResourceType::Source,
            "exposure" => ResourceType::Exposure,
            "macro" => ResourceType::Macro,
            "doc" => ResourceType::Doc,
            "unit_test" => ResourceType::UnitTest,
            "operation" => ResourceType::Operation,
            _ => return None,
        })
    }
}

/// A documented column.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct ColumnInfo {
    pub name: String,
    pub description: String,
    pub data_type: Option<String>,
    pub meta: Json,
    pub tags: Vec<String>,
    pub quote: Option<bool>,
    pub constraints: Vec<Json>,
}

/// What a generic test was declared as.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct TestMetadata {
    pub name: String,
    pub namespace: Option<String>,
    pub kwargs: IndexMap<String, Json>,
    pub column_name: Option<String>,
    pub attached_node: Option<String>,
    pub file_key_name: String,
    /// The YAML file that declared it (its `original_file_path` is the target's file).
    pub yaml_path: String,
}

/// A model, seed, snapshot, analysis or test. Serializable for the parse
/// cache, which stores nodes as parsing leaves them: before linking, so
/// without a config.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Node {
    pub unique_id: String,
    pub resource_type: ResourceType,
    pub package: String,
    pub name: String,
    /// Relative to the resource directory (dbt's `path`).
    pub path: String,
    /// Relative to the package root (dbt's `original_file_path`).
    pub original_file_path: String,
    /// Relative to the working project, for messages.
    pub display_path: String,
    /// Lines before `raw_code` starts in its file (snapshot blocks).
    pub line_offset: usize,
    pub fqn: Vec<String>,
    pub raw_code: String,
    pub checksum: String,
    /// Boxed, like `test`: nodes are moved whole between link stages.
    #[serde(skip)]
    pub config: Box<NodeConfig>,
    /// Keys set by `config()` in the SQL itself.
    pub config_call: IndexMap<String, Json>,
    pub database: String,
    pub schema: String,
    pub alias: String,
    pub description: String,
    pub columns: IndexMap<String, ColumnInfo>,
    pub meta: Json,
    pub patch_path: Option<String>,
    pub refs: Vec<RefCall>,
    pub sources: Vec<(String, String)>,
    pub depends_on_nodes: Vec<String>,
    pub depends_on_macros: Vec<String>,
    pub test: Option<Box<TestMetadata>>,
    /// The parse render with placeholders, reusable at compile time unless the
    /// template was phase-sensitive.
    pub parse_output: Option<String>,
    pub phase_sensitive: bool,
    pub docs_show: bool,
    /// `doc()` blocks its description uses.
    pub doc_blocks: Vec<String>,
    /// A model's `time_spine:` property (MetricFlow), as written (boxed:
    /// nodes are moved often and few have one).
    pub time_spine: Option<Box<Json>>,
    /// A versioned model's version (`versions:` in its properties) and the
    /// version a bare `ref()` to its name resolves to.
    pub version: Option<ModelVersion>,
}

/// One version of a versioned model.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ModelVersion {
    pub v: String,
    pub latest: String,
}

/// What identifies a node and where it comes from; the rest starts empty.
#[derive(Debug, Clone)]
pub struct NodeBase {
    pub unique_id: String,
    pub resource_type: ResourceType,
    pub package: String,
    pub name: String,
    pub path: String,
    pub original_file_path: String,
    pub display_path: String,
    pub fqn: Vec<String>,
}

impl ResourceType {
    /// Which config keys apply to nodes of this type.
    pub fn config_scope(self) -> ConfigScope {
        match self {
            ResourceType::Model => ConfigScope::Model,
            ResourceType::Seed => ConfigScope::Seed,
            ResourceType::Snapshot => ConfigScope::Snapshot,
            ResourceType::Test => ConfigScope::Test,
            ResourceType::Analysis => ConfigScope::Analysis,
            _ => ConfigScope::Other,
        }
    }
}

impl Node {
    /// A node with its identity set and everything else empty; parsing and
    /// linking fill in the rest.
    pub fn new(base: NodeBase) -> Node {
        let scope = base.resource_type.config_scope();
        Node {
            unique_id: base.unique_id,
            resource_type: base.resource_type,
            package: base.package,
            name: base.name,
            path: base.path,
            original_file_path: base.original_file_path,
            display_path: base.display_path,
            line_offset: 0,
            fqn: base.fqn,
            raw_code: String::new(),
            checksum: String::new(),
            config: Box::new(NodeConfig::empty(scope)),
            config_call: IndexMap::new(),
            database: String::new(),
            schema: String::new(),
            alias: String::new(),
            description: String::new(),
            columns: IndexMap::new(),
            meta: Json::Object(Default::default()),
            patch_path: None,
            refs: vec![],
            sources: vec![],
            depends_on_nodes: vec![],
            depends_on_macros: vec![],
            test: None,
            parse_output: None,
            phase_sensitive: false,
            docs_show: true,
            doc_blocks: vec![],
            version: None,
            time_spine: None,
        }
    }

    pub fn is_ephemeral(&self) -> bool {
        self.resource_type == ResourceType::Model
            && self.config.materialized == Materialized::Ephemeral
    }

    pub fn has_sql(&self) -> bool {
        !matches!(self.resource_type, ResourceType::Seed)
    }

    pub fn relation_name(&self, quoting: &crate::jinja::QuotePolicy) -> Option<String> {
        match self.resource_type {
            ResourceType::Model | ResourceType::Seed | ResourceType::Snapshot => {}
            ResourceType::Test if self.config.test().store_failures => {}
            _ => return None,
        }
        if self.is_ephemeral() {
            return None;
        }
        Some(
            crate::jinja::RelationName::new(&self.database, &self.schema, &self.alias, *quoting)
                .render(),
        )
    }
}

/// A source table.
#[derive(Debug, Clone)]
pub struct Source {
    pub unique_id: String,
    pub package: String,
    pub source_name: String,
    pub name: String,
    pub identifier: String,
    pub database: String,
    pub schema: String,
    pub loader: String,
    pub description: String,
    pub source_description: String,
    pub columns: IndexMap<String, ColumnInfo>,
    pub loaded_at_field: Option<String>,
    pub loaded_at_query: Option<String>,
    pub freshness: Json,
    pub quoting: crate::jinja::QuotePolicy,
    pub meta: Json,
    pub source_meta: Json,
    pub tags: Vec<String>,
    pub config: NodeConfig,
    pub path: String,
    pub original_file_path: String,
    pub fqn: Vec<String>,
    pub relation_name: String,
    /// The `external:` block as written (manifest.json keeps it).
    pub external_raw: Json,
    /// The files `strata load` loads into this table, when `external:` names them.
    pub external: Option<external::External>,
}

#[derive(Debug, Clone)]
pub struct Exposure {
    pub unique_id: String,
    pub package: String,
    pub name: String,
    pub kind: String,
    pub owner: Json,
    pub description: String,
    pub label: Option<String>,
    pub url: Option<String>,
    pub maturity: Option<String>,
    pub meta: Json,
    pub tags: Vec<String>,
    pub config: NodeConfig,
    pub path: String,
    pub original_file_path: String,
    pub fqn: Vec<String>,
    pub refs: Vec<RefCall>,
    pub sources: Vec<(String, String)>,
    pub depends_on_nodes: Vec<String>,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Doc {
    pub unique_id: String,
    pub package: String,
    pub name: String,
    pub path: String,
    pub original_file_path: String,
    pub block_contents: String,
    /// Where the block starts in its file, for messages.
    pub line: usize,
}

/// A macro as the manifest lists it.
#[derive(Debug, Clone)]
pub struct MacroEntry {
    pub unique_id: String,
    pub package: String,
    pub name: String,
    pub path: String,
    pub original_file_path: String,
    pub macro_sql: String,
    pub description: String,
    pub arguments: Vec<Json>,
    pub meta: Json,
    pub patch_path: Option<String>,
}

/// The whole parsed project.
#[derive(Debug, Default)]
pub struct Manifest {
    pub project_name: String,
    pub adapter_type: String,
    pub nodes: IndexMap<String, Node>,
    pub sources: IndexMap<String, Source>,
    pub exposures: IndexMap<String, Exposure>,
    pub docs: IndexMap<String, Doc>,
    pub macros: IndexMap<String, MacroEntry>,
    pub disabled: IndexMap<String, Vec<Node>>,
    pub selectors: Json,
    pub quoting: crate::jinja::QuotePolicy,
    pub warnings: Vec<String>,
    pub unit_tests: IndexMap<String, UnitTest>,
    /// What `ref()` names resolve to; shared with the compiler's resolver.
    pub refs: std::sync::Arc<RefIndex>,
    /// Semantic models, metrics and saved queries, in dbt's manifest shapes.
    pub semantic: semantic::SemanticLayer,
}

/// Rows given to or expected from a unit test.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum Fixture {
    /// Column → value maps (`format: dict`, also from `format: csv`).
    Rows(Vec<IndexMap<String, Json>>),
    /// A query producing the rows (`format: sql`).
    Sql(String),
    /// `fixture: name`: rows in a file `fixtures/<name>.csv` or `.sql` under
    /// a test path, read when the manifest is linked.
    File { name: String, format: FixtureFormat },
}

/// The format of a fixture file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum FixtureFormat {
    Csv,
    Sql,
}

/// One `given:` input: `ref('x')` or `source('a', 'b')` and its rows.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct UnitGiven {
    pub input: String,
    pub refs: Vec<RefCall>,
    pub sources: Vec<(String, String)>,
    pub rows: Fixture,
}

/// A YAML `unit_tests:` entry.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct UnitTest {
    pub unique_id: String,
    pub package: String,
    pub name: String,
    pub model: String,
    pub given: Vec<UnitGiven>,
    pub expect: Fixture,
    pub vars: IndexMap<String, Json>,
    pub env_vars: IndexMap<String, Json>,
    pub macros: IndexMap<String, Json>,
    pub description: String,
    pub original_file_path: String,
    pub display_path: String,
    pub raw: Json,
    /// `[package, dirs..., model, name]`, as dbt builds it.
    pub fqn: Vec<String>,
    /// The merged config (project `unit_tests:` and the test's own `config:`,
    /// Jinja rendered), its tags and whether it is enabled.
    pub config: crate::confmap::ConfigMap,
    pub tags: Vec<String>,
    pub enabled: bool,
}

impl Manifest {
    /// Every node-like unique id (nodes, sources, exposures) in manifest order.
    pub fn all_ids(&self) -> impl Iterator<Item = &String> {
        self.nodes
            .keys()
            .chain(self.sources.keys())
            .chain(self.exposures.keys())
    }
}
