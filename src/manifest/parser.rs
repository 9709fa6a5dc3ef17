//! Project → Manifest: builds the Jinja environment from every package's
//! macros, parses each file on its own (in parallel), then links the results.

use std::sync::Arc;

use super::cache::ParseCache;
use super::link::{link, quote_policy};
use super::parse_file::{parse_all, FileCtx};
use super::Manifest;
use crate::error::Error;
use crate::jinja::{self, EnvSettings, JinjaEnv, MacroSource};
use crate::project::{FileKind, Project};

pub use super::link::timing;
pub use super::parse_file::with_call_site;

/// The parse result: the manifest and the Jinja environment used to compile it.
pub struct Parsed {
    pub manifest: Manifest,
    pub jinja: JinjaEnv,
    /// Where display paths are relative to.
    pub project_dir: std::path::PathBuf,
}

/// The Jinja environment of a project: every macro of every package, the
/// target, vars and dispatch settings. Templates' `log`/`print`/
/// `exceptions.warn` go to `log`.
pub fn environment(project: &Project, log: Arc<dyn jinja::LogSink>) -> Result<JinjaEnv, Error> {
    let macro_sources: Vec<MacroSource<'_>> = project
        .files
        .iter()
        .filter(|f| f.kind == FileKind::Macro)
        .map(|f| MacroSource {
            package: &f.id.package,
            display_path: &f.display,
            original_path: &f.id.path,
            contents: &f.contents,
        })
        .collect();
    let settings = EnvSettings {
        project_name: project.name().to_string(),
        adapter_type: project.target.connection.type_name().to_string(),
        target: project.target.to_json(),
        target_schema: project.target.schema.clone(),
        target_database: project.target.database.clone(),
        vars: project
            .packages
            .iter()
            .map(|p| (p.name().to_string(), Arc::new(p.vars.clone())))
            .collect(),
        quoting: quote_policy(project),
        folder_configs: Some(Arc::new(super::link::ProjectFolderConfigs::new(project))),
        packages: project
            .packages
            .iter()
            .map(|p| p.name().to_string())
            .collect(),
        search_orders: project
            .root()
            .settings
            .dispatch
            .iter()
            .map(|d| (d.macro_namespace.clone(), d.search_order.clone()))
            .collect(),
        flags: serde_json::json!({
            "FULL_REFRESH": project.full_refresh,
            "WHICH": if project.which.is_empty() { "parse" } else { project.which.as_str() },
        }),
        log,
    };
    Ok(JinjaEnv::build(settings, &macro_sources)?)
}

/// Parses the project; templates' `log`/`print`/`exceptions.warn` go to `log`.
pub fn parse(project: &Project, log: Arc<dyn jinja::LogSink>) -> Result<Parsed, Error> {
    parse_cached(project, log, None)
}

/// Parses the project, reusing and updating `cache` when given.
pub fn parse_cached(
    project: &Project,
    log: Arc<dyn jinja::LogSink>,
    cache: Option<&mut ParseCache>,
) -> Result<Parsed, Error> {
    let t0 = std::time::Instant::now();
    let jinja = environment(project, log)?;
    timing("jinja env", t0);
    let ctx = FileCtx {
        jinja: &jinja,
        target_database: &project.target.database,
        target_schema: &project.target.schema,
    };
    let files = match cache {
        Some(c) => c.parse_all(&ctx, project),
        None => parse_all(&ctx, &project.files),
    };
    timing("files", t0);
    let manifest = link(project, &jinja, files)?;
    Ok(Parsed {
        manifest,
        jinja,
        project_dir: project.dir.clone(),
    })
}
