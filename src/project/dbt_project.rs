//! `dbt_project.yml`: the raw serde shape and the resolved project settings.

use serde::Deserialize;
use serde_yaml::{Mapping, Value as Yaml};

use crate::error::{yaml_diagnostic, DiagKind, Diagnostic, Result};

/// Paths default to dbt's when the key is absent.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default)]
pub struct RawProject {
    pub name: Option<String>,
    pub version: Option<Yaml>,
    #[serde(rename = "config-version")]
    pub config_version: Option<Yaml>,
    pub profile: Option<String>,
    #[serde(rename = "model-paths", alias = "source-paths")]
    pub model_paths: Option<Vec<String>>,
    #[serde(rename = "seed-paths", alias = "data-paths")]
    pub seed_paths: Option<Vec<String>>,
    #[serde(rename = "test-paths")]
    pub test_paths: Option<Vec<String>>,
    #[serde(rename = "analysis-paths")]
    pub analysis_paths: Option<Vec<String>>,
    #[serde(rename = "macro-paths")]
    pub macro_paths: Option<Vec<String>>,
    #[serde(rename = "snapshot-paths")]
    pub snapshot_paths: Option<Vec<String>>,
    #[serde(rename = "docs-paths")]
    pub docs_paths: Option<Vec<String>>,
    #[serde(rename = "asset-paths")]
    pub asset_paths: Option<Vec<String>>,
    #[serde(rename = "target-path")]
    pub target_path: Option<String>,
    #[serde(rename = "log-path")]
    pub log_path: Option<String>,
    #[serde(rename = "packages-install-path")]
    pub packages_install_path: Option<String>,
    #[serde(rename = "clean-targets")]
    pub clean_targets: Option<Vec<String>>,
    pub vars: Option<Mapping>,
    #[serde(rename = "on-run-start")]
    pub on_run_start: Option<StringOrList>,
    #[serde(rename = "on-run-end")]
    pub on_run_end: Option<StringOrList>,
    pub quoting: Option<QuotingConfig>,
    pub dispatch: Option<Vec<DispatchEntry>>,
    #[serde(rename = "require-dbt-version")]
    pub require_dbt_version: Option<StringOrList>,
    pub models: Option<Mapping>,
    pub seeds: Option<Mapping>,
    pub snapshots: Option<Mapping>,
    #[serde(alias = "tests")]
    pub data_tests: Option<Mapping>,
    pub sources: Option<Mapping>,
    pub analyses: Option<Mapping>,
    pub exposures: Option<Mapping>,
    pub unit_tests: Option<Mapping>,
    #[serde(flatten)]
    pub unknown: Mapping,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum StringOrList {
    One(String),
    Many(Vec<String>),
}

impl StringOrList {
    pub fn into_vec(self) -> Vec<String> {
        match self {
            StringOrList::One(s) => vec![s],
            StringOrList::Many(v) => v,
        }
    }
}

#[derive(Debug, Clone, Copy, Deserialize, Default, serde::Serialize, PartialEq, Eq)]
#[serde(default)]
pub struct QuotingConfig {
    pub database: Option<bool>,
    pub schema: Option<bool>,
    pub identifier: Option<bool>,
    pub column: Option<bool>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct DispatchEntry {
    pub macro_namespace: String,
    pub search_order: Vec<String>,
}

/// Keys dbt accepts at the top level that Strata reads nowhere else.
const KNOWN_IGNORED: &[&str] = &[
    "flags",
    "metrics",
    "semantic-models",
    "saved-queries",
    "query-comment",
    "restrict-access",
    "dbt-cloud",
    "functions",
    "function-paths",
    "data_tests",
    "tests",
];

/// The resolved settings of one project (the root or an installed package).
#[derive(Debug, Clone)]
pub struct ProjectSettings {
    pub name: String,
    pub version: Option<String>,
    pub profile: Option<String>,
    pub model_paths: Vec<String>,
    pub seed_paths: Vec<String>,
    pub test_paths: Vec<String>,
    pub analysis_paths: Vec<String>,
    pub macro_paths: Vec<String>,
    pub snapshot_paths: Vec<String>,
    pub docs_paths: Option<Vec<String>>,
    pub target_path: String,
    pub packages_install_path: String,
    pub clean_targets: Vec<String>,
    pub vars: Mapping,
    pub on_run_start: Vec<String>,
    pub on_run_end: Vec<String>,
    pub quoting: QuotingConfig,
    pub dispatch: Vec<DispatchEntry>,
    pub require_dbt_version: Vec<String>,
    /// Folder-scoped configs by resource kind, exactly as written (with `+` keys).
    pub models: Mapping,
    pub seeds: Mapping,
    pub snapshots: Mapping,
    pub data_tests: Mapping,
    pub sources: Mapping,
    pub analyses: Mapping,
    pub exposures: Mapping,
    pub unit_tests: Mapping,
    pub warnings: Vec<String>,
}

fn paths(v: Option<Vec<String>>, default: &str) -> Vec<String> {
    v.unwrap_or_else(|| vec![default.to_string()])
        .into_iter()
        .map(|p| p.trim_end_matches('/').to_string())
        .collect()
}

impl ProjectSettings {
    /// Parses a `dbt_project.yml` text; `file` is used in diagnostics.
    pub fn parse(file: &str, text: &str) -> Result<ProjectSettings> {
        let mut value: Yaml = crate::error::yaml_from_str(file, text)?;
        value
            .apply_merge()
            .map_err(|e| yaml_diagnostic(file, text, &e))?;
        if value.is_null() {
            return Err(
                Diagnostic::new(DiagKind::Config, "dbt_project.yml is empty")
                    .file(file)
                    .into(),
            );
        }
        let raw: RawProject = serde_yaml::from_value(value).map_err(|e| {
            Diagnostic::new(
                DiagKind::Config,
                format!("dbt_project.yml has an invalid value: {e}"),
            )
            .at(
                file,
                Some(text),
                first_line_of_error(text, &e.to_string()),
                1,
            )
        })?;
        let mut warnings = Vec::new();
        for (k, _) in raw.unknown.iter() {
            let key = k.as_str().unwrap_or("?");
            if !KNOWN_IGNORED.contains(&key) {
                warnings.push(format!(
                    "{file}:{}: unknown key '{key}' in dbt_project.yml is ignored",
                    crate::error::line_of(text, &format!("{key}:"))
                ));
            }
        }
        let name = raw.name.ok_or_else(|| {
            Diagnostic::new(DiagKind::Config, "dbt_project.yml has no 'name'")
                .file(file)
                .hint("add `name: my_project` at the top level")
        })?;
        let require = raw
            .require_dbt_version
            .map(StringOrList::into_vec)
            .unwrap_or_default();
        for r in &require {
            if !version_range_accepts_1x(r) {
                warnings.push(format!(
                    "{file}: require-dbt-version '{r}' excludes dbt 1.x; Strata implements dbt 1.x semantics"
                ));
            }
        }
        Ok(ProjectSettings {
            name,
            version: raw.version.map(|v| match v {
                Yaml::String(s) => s,
                other => serde_yaml::to_string(&other)
                    .unwrap_or_default()
                    .trim()
                    .to_string(),
            }),
            profile: raw.profile,
            model_paths: paths(raw.model_paths, "models"),
            seed_paths: paths(raw.seed_paths, "seeds"),
            test_paths: paths(raw.test_paths, "tests"),
            analysis_paths: paths(raw.analysis_paths, "analyses"),
            macro_paths: paths(raw.macro_paths, "macros"),
            snapshot_paths: paths(raw.snapshot_paths, "snapshots"),
            docs_paths: raw.docs_paths,
            target_path: raw.target_path.unwrap_or_else(|| "target".into()),
            packages_install_path: raw
                .packages_install_path
                .unwrap_or_else(|| "dbt_packages".into()),
            clean_targets: raw.clean_targets.unwrap_or_default(),
            vars: raw.vars.unwrap_or_default(),
            on_run_start: raw
                .on_run_start
                .map(StringOrList::into_vec)
                .unwrap_or_default(),
            on_run_end: raw
                .on_run_end
                .map(StringOrList::into_vec)
                .unwrap_or_default(),
            quoting: raw.quoting.unwrap_or_default(),
            dispatch: raw.dispatch.unwrap_or_default(),
            require_dbt_version: require,
            models: raw.models.unwrap_or_default(),
            seeds: raw.seeds.unwrap_or_default(),
            snapshots: raw.snapshots.unwrap_or_default(),
            data_tests: raw.data_tests.unwrap_or_default(),
            sources: raw.sources.unwrap_or_default(),
            analyses: raw.analyses.unwrap_or_default(),
            exposures: raw.exposures.unwrap_or_default(),
            unit_tests: raw.unit_tests.unwrap_or_default(),
            warnings,
        })
    }
}

fn first_line_of_error(text: &str, msg: &str) -> usize {
    // serde reports "key: invalid type ..." without a position once it works on a Value.
    msg.split(':')
        .next()
        .map(|k| crate::error::line_of(text, &format!("{}:", k.trim())))
        .unwrap_or(1)
}

/// Whether a `require-dbt-version` constraint admits some 1.x release.
pub fn version_range_accepts_1x(spec: &str) -> bool {
    spec.split(',').all(|part| {
        let p = part.trim();
        let (op, ver) = p
            .find(|c: char| c.is_ascii_digit())
            .map(|i| (p[..i].trim(), p[i..].trim()))
            .unwrap_or(("", p));
        let major: u32 = ver
            .split('.')
            .next()
            .and_then(|m| m.parse().ok())
            .unwrap_or(1);
        match op {
            ">=" | ">" => major <= 1,
            "<" => major >= 2 || ver.starts_with("1.") && ver != "1.0.0",
            "<=" => major >= 1,
            "" | "=" | "==" => major == 1,
            _ => true,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_minimal_project_with_defaults() {
        let p = ProjectSettings::parse("dbt_project.yml", "name: demo\nprofile: p\n").unwrap();
        assert_eq!(p.name, "demo");
        assert_eq!(p.model_paths, vec!["models"]);
        assert_eq!(p.target_path, "target");
    }

    #[test]
    fn unknown_keys_warn() {
        let p = ProjectSettings::parse("dbt_project.yml", "name: demo\nbogus: 1\n").unwrap();
        assert_eq!(p.warnings.len(), 1);
        assert!(p.warnings[0].contains("bogus"));
    }

    #[test]
    fn version_ranges() {
        assert!(version_range_accepts_1x(">=1.5.0"));
        assert!(version_range_accepts_1x("<2.0.0"));
        assert!(!version_range_accepts_1x(">=2.0.0"));
    }
}
