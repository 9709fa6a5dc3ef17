//! dbt's rule for what `ref()` names, in one place: the link step uses it for
//! `depends_on` and compilation for rendering, so the two always agree.

use rustc_hash::FxHashMap;

use super::{Node, ResourceType};
use crate::jinja::RefCall;

/// Why a `ref()` resolves to nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RefError {
    #[error("ref('{0}') is not a model, seed or snapshot")]
    Unknown(String),
    #[error("ref('{name}') is not in package '{package}'")]
    NotInPackage { name: String, package: String },
}

/// Models, seeds and snapshots by name, with the packages that define them.
#[derive(Debug, Clone, Default)]
pub struct RefIndex {
    by_name: FxHashMap<String, Vec<Entry>>,
    root: String,
}

/// One node a name can mean.
#[derive(Debug, Clone)]
struct Entry {
    package: String,
    unique_id: String,
    /// A versioned model's version, and whether a bare ref() means it.
    version: Option<String>,
    latest: bool,
}

impl RefIndex {
    /// Indexes the refable nodes among `nodes`; `root` is the project's own package.
    pub fn new<'a>(nodes: impl Iterator<Item = &'a Node>, root: &str) -> RefIndex {
        let mut by_name: FxHashMap<String, Vec<Entry>> = FxHashMap::default();
        for n in nodes {
            if matches!(
                n.resource_type,
                ResourceType::Model | ResourceType::Seed | ResourceType::Snapshot
            ) {
                by_name.entry(n.name.clone()).or_default().push(Entry {
                    package: n.package.clone(),
                    unique_id: n.unique_id.clone(),
                    version: n.version.as_ref().map(|v| v.v.clone()),
                    latest: n.version.as_ref().is_none_or(|v| v.v == v.latest),
                });
            }
        }
        RefIndex {
            by_name,
            root: root.to_string(),
        }
    }

    /// The unique id `r` names when written in `from_package`: with a package,
    /// that package's node; without, the caller's own package first, then the
    /// root project, then any package.
    pub fn resolve(&self, from_package: &str, r: &RefCall) -> Result<&str, RefError> {
        let cands = self
            .by_name
            .get(&r.name)
            .ok_or_else(|| RefError::Unknown(r.name.clone()))?;
        // `ref(name, v=2)` means that version; a bare ref the latest one.
        let fits = |e: &&Entry| match &r.version {
            Some(v) => e.version.as_deref() == Some(v.as_str()),
            None => e.latest,
        };
        let pick = |p: &str| {
            cands
                .iter()
                .filter(fits)
                .find(|e| e.package == p)
                .map(|e| e.unique_id.as_str())
        };
        match &r.package {
            Some(p) => pick(p).ok_or_else(|| RefError::NotInPackage {
                name: r.name.clone(),
                package: p.clone(),
            }),
            None => pick(from_package)
                .or_else(|| pick(&self.root))
                .or_else(|| cands.iter().find(fits).map(|e| e.unique_id.as_str()))
                .ok_or_else(|| RefError::Unknown(r.name.clone())),
        }
    }

    /// Every refable name, for "did you mean" hints.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.by_name.keys().map(String::as_str)
    }
}
