//! Project → Manifest: builds the Jinja environment from every package's
//! macros, parses each file on its own (in parallel), then links the results.

use std::sync::Arc;

use super::cache::ParseCache;
use super::link::{link, quote_policy};
use super::parse_file::{parse_all, parse_file, FileCtx, FileItems};
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

/// What [`reparse_bodies`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum BodyEdit {
    /// The nodes whose SQL changed, updated in place.
    Applied(Vec<String>),
    /// The edits change more than SQL bodies: parse and link everything.
    NeedsFullParse,
}

/// Applies edits of SQL files (models, analyses, singular tests, snapshots)
/// to a parsed project without linking it again: watch's fast path for the
/// common save, which changes a query but none of its refs, sources,
/// `config()` keys or macros. Each edited file is rendered as it was and as
/// it is; when everything linking reads from them is the same, only the
/// nodes' SQL (and parse output) are replaced. Anything else, including a
/// file that is not one of the project's SQL files, asks for a full parse.
/// A file that no longer renders is an error, and nothing is changed.
pub fn reparse_bodies(
    project: &mut Project,
    parsed: &mut Parsed,
    edits: Vec<(usize, String)>,
) -> Result<BodyEdit, Error> {
    let jinja = environment(project, parsed.jinja.shared.log.clone())?;
    let ctx = FileCtx {
        jinja: &jinja,
        target_database: &project.target.database,
        target_schema: &project.target.schema,
    };
    // Everything linking reads from a node as parsed, with its SQL left out.
    let shape = |n: &super::Node| {
        let mut n = n.clone();
        n.raw_code.clear();
        n.checksum.clear();
        n.parse_output = None;
        n.phase_sensitive = false;
        n.line_offset = 0;
        format!("{n:?}")
    };
    let mut updates: Vec<super::Node> = Vec::new();
    for (idx, contents) in &edits {
        let Some(old) = project.files.get(*idx) else {
            return Ok(BodyEdit::NeedsFullParse);
        };
        if !matches!(
            old.kind,
            FileKind::Model | FileKind::Analysis | FileKind::SingularTest | FileKind::Snapshot
        ) {
            return Ok(BodyEdit::NeedsFullParse);
        }
        let new = crate::project::SourceFile {
            contents: contents.clone(),
            ..old.clone()
        };
        let after = parse_file(&ctx, &new);
        if !after.diagnostics.is_empty() {
            return Err(crate::error::Diagnostics(after.diagnostics).into());
        }
        let before = parse_file(&ctx, old);
        let (FileItems::Nodes(before), FileItems::Nodes(after)) = (before.items, after.items)
        else {
            return Ok(BodyEdit::NeedsFullParse);
        };
        let same_shape = before.len() == after.len()
            && before
                .iter()
                .zip(&after)
                .all(|(b, a)| b.unique_id == a.unique_id && shape(b) == shape(a));
        let all_linked = after
            .iter()
            .all(|a| parsed.manifest.nodes.contains_key(&a.unique_id));
        if !same_shape || !all_linked {
            return Ok(BodyEdit::NeedsFullParse);
        }
        updates.extend(after);
    }
    let mut ids = Vec::with_capacity(updates.len());
    for a in updates {
        if let Some(n) = parsed.manifest.nodes.get_mut(&a.unique_id) {
            n.raw_code = a.raw_code;
            n.checksum = a.checksum;
            n.parse_output = a.parse_output;
            n.phase_sensitive = a.phase_sensitive;
            n.line_offset = a.line_offset;
            ids.push(a.unique_id);
        }
    }
    for (idx, contents) in edits {
        project.files[idx].contents = contents;
    }
    parsed.jinja = jinja;
    Ok(BodyEdit::Applied(ids))
}
