//! Command-line interface: the flags dbt users already type.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

pub use crate::report::LogFormat;
use crate::report::ReportSettings;
use crate::selector_syntax::IndirectSelection;

/// Strata: a fast warehouse modeling tool that runs dbt projects on PostgreSQL and Redshift.
#[derive(Debug, Parser)]
#[command(name = "strata", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Parse the project and write target/manifest.json without compiling SQL.
    Parse(CommonArgs),
    /// Render every selected node's SQL into target/compiled and write manifest.json.
    Compile(CompileArgs),
    /// Build the selected models in the warehouse, in dependency order.
    Run(RunArgs),
    /// Load the selected seed CSV files with COPY.
    Seed(RunArgs),
    /// Seeds, models and snapshots together, in dependency order.
    Build(RunArgs),
    /// Run the selected snapshots (SCD type 2 history tables).
    Snapshot(RunArgs),
    /// Run the selected data tests.
    Test(RunArgs),
    /// Source commands (`strata source freshness`).
    Source(SourceArgs),
    /// Load the new files of the selected sources' external locations, exactly once.
    Load(LoadArgs),
    /// Re-run what failed or was skipped in the last run_results.json.
    Retry(RunArgs),
    /// Preview the rows of a model (`--select`) or of inline SQL (`--inline`).
    Show(ShowArgs),
    /// Call a macro against the warehouse, with keyword arguments from --args.
    RunOperation(RunOperationArgs),
    /// List the selected resources.
    #[command(alias = "list")]
    Ls(LsArgs),
    /// Install the packages declared in packages.yml into dbt_packages/.
    Deps(CommonArgs),
    /// Delete the directories listed in clean-targets.
    Clean(CommonArgs),
    /// Create a new project from Strata's template.
    Init(InitArgs),
    /// Show the resolved project, profile and target, and check the connection.
    Debug(CommonArgs),
    /// Manage the project's local PostgreSQL (targets with `local: true`).
    Pg(PgArgs),
    /// Rebuild and test what changes as files are saved (local development).
    Watch(WatchArgs),
}

#[derive(Debug, Clone, Args)]
pub struct PgArgs {
    #[command(subcommand)]
    pub action: PgAction,
    #[command(flatten)]
    pub common: CommonArgs,
}

#[derive(Debug, Clone, Copy, Subcommand)]
pub enum PgAction {
    /// Create the cluster under .strata/postgres if needed, and start it.
    Start,
    /// Stop the cluster.
    Stop,
    /// Say whether the cluster is running, and where.
    Status,
    /// Print the connection URL.
    Url,
    /// Open psql on the target database.
    Psql,
}

/// Flags shared by every subcommand that reads a project.
#[derive(Debug, Clone, Args, Default)]
pub struct CommonArgs {
    /// The subcommand, as templates see it in `flags.WHICH` (set by `Command::stamp`).
    #[arg(skip)]
    pub which: String,
    /// The project directory (holds dbt_project.yml).
    #[arg(long, global = true, default_value = ".")]
    pub project_dir: PathBuf,
    /// Where profiles.yml lives [default: the project dir if it has one, else ~/.dbt].
    #[arg(long, global = true, env = "DBT_PROFILES_DIR")]
    pub profiles_dir: Option<PathBuf>,
    /// Profile to use instead of the project's `profile:`.
    #[arg(long, global = true)]
    pub profile: Option<String>,
    /// Target within the profile.
    #[arg(short = 't', long, global = true)]
    pub target: Option<String>,
    /// Variables as YAML or JSON, e.g. '{start_date: 2024-01-01}'.
    #[arg(long, global = true)]
    pub vars: Option<String>,
    /// Nodes to include (dbt selector syntax).
    #[arg(short = 's', long = "select", alias = "models", short_alias = 'm', global = true, num_args = 1..)]
    pub select: Vec<String>,
    /// Nodes to leave out (dbt selector syntax).
    #[arg(long, global = true, num_args = 1..)]
    pub exclude: Vec<String>,
    /// A named selector from selectors.yml.
    #[arg(long, global = true)]
    pub selector: Option<String>,
    /// Only these resource types (model, seed, snapshot, test, source, analysis, exposure).
    #[arg(long = "resource-type", alias = "resource-types", global = true, num_args = 1..)]
    pub resource_type: Vec<String>,
    /// How tests of selected nodes are included.
    #[arg(long, global = true, value_enum, default_value_t = IndirectSelection::Eager)]
    pub indirect_selection: IndirectSelection,
    /// Worker threads [default: the target's `threads`].
    #[arg(long, global = true)]
    pub threads: Option<usize>,
    /// Rebuild incremental models and seeds from scratch.
    #[arg(long, global = true)]
    pub full_refresh: bool,
    /// Where artifacts go [default: the project's target-path].
    #[arg(long, global = true)]
    pub target_path: Option<PathBuf>,
    /// Log lines as text or as one JSON object per line.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Print only errors (and the output of `ls`).
    #[arg(short = 'q', long, global = true)]
    pub quiet: bool,
    /// Disable colored output.
    #[arg(long, global = true)]
    pub no_color: bool,
    /// Parse every file again instead of reusing the parse cache under the
    /// target path (which is then not written either).
    #[arg(long, global = true)]
    pub no_partial_parse: bool,
}

impl CommonArgs {
    /// The output settings these flags ask for.
    pub fn report_settings(&self) -> ReportSettings {
        ReportSettings {
            format: self.log_format,
            quiet: self.quiet,
            color: !self.no_color,
        }
    }
}

#[derive(Debug, Clone, Args)]
pub struct CompileArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Do not write compiled SQL files, only manifest.json.
    #[arg(long)]
    pub no_write: bool,
}

#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Stop at the first failure and cancel statements in flight.
    #[arg(short = 'x', long)]
    pub fail_fast: bool,
    /// Plan every statement and write it under <target-path>/run/ without
    /// executing anything (the warehouse is still read, for introspection).
    #[arg(long)]
    pub dry_run: bool,
    /// With --dry-run: make no connection at all and plan a first run.
    #[arg(long, requires = "dry_run")]
    pub offline: bool,
    /// With --dry-run: also print each node's statements.
    #[arg(long, requires = "dry_run")]
    pub show_sql: bool,
}

/// What `watch` rebuilds below a changed node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum Downstream {
    /// Views and ephemeral models (cheap, and stale otherwise on Postgres).
    #[default]
    Views,
    /// Everything below it.
    All,
}

#[derive(Debug, Clone, Args)]
pub struct WatchArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Recompile what changed; build nothing.
    #[arg(long)]
    pub compile_only: bool,
    /// What else to rebuild below a changed node.
    #[arg(long, value_enum, default_value_t)]
    pub downstream: Downstream,
    /// Do not print the first rows of the edited model after a rebuild.
    #[arg(long)]
    pub no_preview: bool,
    /// Quiet time after a change before rebuilding, in milliseconds (editors
    /// write a file several times per save).
    #[arg(long, default_value_t = 80)]
    pub debounce_ms: u64,
}

#[derive(Debug, Clone, Args)]
pub struct LoadArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// List the files that would load, per table; change nothing.
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Clone, Args)]
pub struct RunOperationArgs {
    /// The macro to call (`name` or `package.name`).
    pub macro_name: String,
    /// Keyword arguments as YAML or JSON, e.g. '{table: orders, days: 7}'.
    #[arg(long)]
    pub args: Option<String>,
    #[command(flatten)]
    pub common: CommonArgs,
}

impl Command {
    /// Records the subcommand's name in its common arguments (`flags.WHICH`).
    pub fn stamp(&mut self) {
        let (name, common) = match self {
            Command::Parse(c) => ("parse", Some(c)),
            Command::Compile(a) => ("compile", Some(&mut a.common)),
            Command::Run(a) => ("run", Some(&mut a.common)),
            Command::Seed(a) => ("seed", Some(&mut a.common)),
            Command::Build(a) => ("build", Some(&mut a.common)),
            Command::Snapshot(a) => ("snapshot", Some(&mut a.common)),
            Command::Test(a) => ("test", Some(&mut a.common)),
            Command::Source(a) => match &mut a.action {
                SourceAction::Freshness(c) => ("freshness", Some(c)),
            },
            Command::Retry(a) => ("retry", Some(&mut a.common)),
            Command::Load(a) => ("load", Some(&mut a.common)),
            Command::Show(a) => ("show", Some(&mut a.common)),
            Command::RunOperation(a) => ("run-operation", Some(&mut a.common)),
            Command::Ls(a) => ("list", Some(&mut a.common)),
            Command::Deps(c) => ("deps", Some(c)),
            Command::Clean(c) => ("clean", Some(c)),
            Command::Debug(c) => ("debug", Some(c)),
            Command::Pg(a) => ("pg", Some(&mut a.common)),
            Command::Watch(a) => ("watch", Some(&mut a.common)),
            Command::Init(_) => ("init", None),
        };
        if let Some(c) = common {
            c.which = name.to_string();
        }
    }
}

#[derive(Debug, Clone, Args)]
pub struct SourceArgs {
    #[command(subcommand)]
    pub action: SourceAction,
}

#[derive(Debug, Clone, Subcommand)]
pub enum SourceAction {
    /// Check how recently each source table was loaded; writes sources.json.
    Freshness(CommonArgs),
}

#[derive(Debug, Clone, Args)]
pub struct ShowArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// SQL to preview instead of a selected model; may use ref() and source().
    #[arg(long)]
    pub inline: Option<String>,
    /// How many rows to show.
    #[arg(long, default_value_t = 5)]
    pub limit: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum LsOutput {
    #[default]
    Selector,
    Name,
    Path,
    Json,
}

#[derive(Debug, Clone, Args)]
pub struct LsArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value_t = LsOutput::Selector)]
    pub output: LsOutput,
    /// With `--output json`, only these keys.
    #[arg(long, num_args = 1..)]
    pub output_keys: Vec<String>,
}

#[derive(Debug, Clone, Args)]
pub struct InitArgs {
    /// Name of the new project (also its directory).
    pub name: String,
    /// Where to create the project directory.
    #[arg(long, default_value = ".")]
    pub dir: PathBuf,
}
