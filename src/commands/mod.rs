//! One module per subcommand, plus the load → parse → graph session they share.

pub mod clean;
pub mod compile;
pub mod debug;
pub mod deps;
pub mod freshness;
pub mod init;
pub mod load;
pub mod ls;
pub mod parse;
pub mod pg;
pub mod run;
pub mod run_operation;
pub mod show;
pub mod watch;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Instant;

use crate::cli::CommonArgs;
use crate::error::{DiagKind, Diagnostic, Error};
use crate::graph::selector::{parse_cli, IndirectSelection, Selector};
use crate::graph::Graph;
use crate::manifest::cache::{CacheStats, ParseCache};
use crate::manifest::parser::{self, Parsed};
use crate::manifest::ResourceType;
use crate::project::{LoadOptions, Project};
use crate::report::Reporter;

/// How a command ended; mapped to the process exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Success,
    /// Models or tests failed (exit 1).
    Failed,
    /// Stopped by Ctrl-C after cancelling statements in flight (exit 130).
    Interrupted,
}

pub fn load_options(args: &CommonArgs, offline: bool) -> LoadOptions {
    LoadOptions {
        project_dir: args.project_dir.clone(),
        profiles_dir: args.profiles_dir.clone(),
        profile: args.profile.clone(),
        target: args.target.clone(),
        vars: args.vars.clone(),
        offline,
        which: args.which.clone(),
        full_refresh: args.full_refresh,
    }
}

/// A loaded and parsed project with its graph.
pub struct Session {
    pub args: CommonArgs,
    pub project: Project,
    pub parsed: Parsed,
    pub graph: Graph,
    pub target_dir: PathBuf,
    pub reporter: Reporter,
    pub started: Instant,
    pub started_at: chrono::DateTime<chrono::Utc>,
    /// `None` with `--no-partial-parse`.
    pub parse_reuse: Option<ParseReuse>,
}

/// A loaded project, not yet parsed.
pub struct Loaded {
    pub args: CommonArgs,
    pub project: Project,
    pub target_dir: PathBuf,
    pub reporter: Reporter,
    pub started: Instant,
    pub started_at: chrono::DateTime<chrono::Utc>,
}

/// What the parse cache gave a session's parse.
#[derive(Debug, Clone, Default)]
pub struct ParseReuse {
    pub stats: CacheStats,
    /// The env vars the cached files' parses read.
    pub env_vars: BTreeSet<String>,
}

impl Session {
    pub fn open(args: &CommonArgs) -> Result<Session, Error> {
        Session::load(args)?.parse()
    }

    /// Loads the project (settings, target, files) without parsing it.
    pub fn load(args: &CommonArgs) -> Result<Loaded, Error> {
        let started = Instant::now();
        let started_at = chrono::Utc::now();
        let reporter = Reporter::new(args.report_settings());
        crate::secrets::register_from_env();
        let project = Project::load(&load_options(args, false))?;
        parser::timing("load", started);
        for w in &project.warnings {
            reporter.warn(w);
        }
        let target_dir = project.target_dir(args.target_path.as_deref());
        Ok(Loaded {
            args: args.clone(),
            project,
            target_dir,
            reporter,
            started,
            started_at,
        })
    }
}

impl Loaded {
    /// Parses (through the parse cache unless `--no-partial-parse`) and builds the graph.
    pub fn parse(self) -> Result<Session, Error> {
        let Loaded {
            args,
            project,
            target_dir,
            reporter,
            started,
            started_at,
        } = self;
        let mut cache = (!args.no_partial_parse).then(|| ParseCache::load(&target_dir));
        let parsed = parser::parse_cached(&project, std::sync::Arc::new(reporter), cache.as_mut())?;
        parser::timing("parsed", started);
        let mut parse_reuse = None;
        if let Some(c) = &mut cache {
            // A cache that can't be written costs the next run time, nothing else.
            if let Err(e) = c.save() {
                reporter.warn(&format!("could not save the parse cache: {e}"));
            }
            parser::timing("parse cache saved", started);
            parse_reuse = Some(ParseReuse {
                stats: c.stats,
                env_vars: c.env_vars_read(),
            });
        }
        for w in
            &parsed.manifest.warnings[project.warnings.len().min(parsed.manifest.warnings.len())..]
        {
            reporter.warn(w);
        }
        let graph = Graph::build(&parsed.manifest)?;
        parser::timing("graph", started);
        Ok(Session {
            args,
            project,
            parsed,
            graph,
            target_dir,
            reporter,
            started,
            started_at,
            parse_reuse,
        })
    }
}

impl Session {
    /// The target path as written into artifacts (relative when inside the project).
    pub fn target_path_label(&self) -> String {
        match &self.args.target_path {
            Some(p) => p.display().to_string(),
            None => self.project.root().settings.target_path.clone(),
        }
    }

    /// Applies --select/--selector/--exclude/--resource-type.
    pub fn select(&self) -> Result<BTreeSet<String>, Error> {
        let m = &self.parsed.manifest;
        let sel = Selector::new(m, &self.graph)?;
        let explicit = if !self.args.select.is_empty() {
            Some(parse_cli(&self.args.select)?)
        } else if let Some(name) = &self.args.selector {
            Some(sel.yaml_selector(name)?.clone())
        } else {
            sel.default_expr()
        };
        let mut chosen: BTreeSet<String> = match &explicit {
            Some(e) => {
                let mut s = sel.eval(e)?;
                sel.add_tests(&mut s, self.args.indirect_selection);
                s
            }
            None => m.all_ids().chain(m.unit_tests.keys()).cloned().collect(),
        };
        chosen.retain(|id| !id.starts_with("operation."));
        if !self.args.exclude.is_empty() {
            let mut ex = sel.eval(&parse_cli(&self.args.exclude)?)?;
            sel.add_tests(&mut ex, IndirectSelection::Eager);
            chosen.retain(|id| !ex.contains(id));
        }
        if !self.args.resource_type.is_empty() {
            let mut types = Vec::new();
            for t in &self.args.resource_type {
                for part in t.split(',') {
                    let rt = ResourceType::parse(part.trim()).ok_or_else(|| {
                        Diagnostic::new(
                            DiagKind::Selector,
                            format!("unknown resource type '{part}'"),
                        )
                        .hint("one of: model, seed, snapshot, test, source, analysis, exposure")
                    })?;
                    types.push(rt);
                }
            }
            chosen.retain(|id| resource_type_of(id).is_some_and(|rt| types.contains(&rt)));
        }
        Ok(chosen)
    }
}

/// Frees `value` on a background thread. Dropping tens of thousands of parsed
/// nodes takes longer than the command's last output; a one-shot process
/// exits before the thread is done (the OS reclaims the memory), and a
/// long-lived one (watch) still frees it, off the critical path.
pub fn drop_in_background<T: Send + 'static>(value: T) {
    let spawned = std::thread::Builder::new()
        .name("strata-drop".into())
        .spawn(move || drop(value));
    // Without a thread, it is dropped here, when the closure is.
    drop(spawned);
}

pub fn resource_type_of(unique_id: &str) -> Option<ResourceType> {
    ResourceType::parse(unique_id.split('.').next()?)
}
