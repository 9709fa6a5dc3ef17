//! Where a source's files are read from: a local directory (the demo, most
//! tests) or an S3 prefix (with the `aws` feature), behind one interface so
//! that the loader has one code path for both.

use std::io::Read;
use std::path::{Path, PathBuf};

use crate::manifest::external::Location;

/// A file under the location.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectMeta {
    /// The path under the location, `/`-separated.
    pub key: String,
    pub size: u64,
    /// What changes when the content does: the ETag in S3, the
    /// modification time locally.
    pub version: String,
}

/// Lists and reads the files of one location.
pub trait ObjectSource: Send + Sync {
    /// Every file under the location.
    fn list(&self) -> Result<Vec<ObjectMeta>, String>;
    /// A file's bytes.
    fn open(&self, key: &str) -> std::io::Result<Box<dyn Read + Send>>;
    /// How to name a file to the user.
    fn display(&self, key: &str) -> String;
    /// How to name the location to the user.
    fn describe(&self) -> String;
}

/// Files under a local directory.
pub struct LocalFiles {
    root: PathBuf,
    shown: String,
}

impl ObjectSource for LocalFiles {
    fn list(&self) -> Result<Vec<ObjectMeta>, String> {
        if !self.root.is_dir() {
            return Err(format!("location {} is not a directory", self.shown));
        }
        let mut out = Vec::new();
        for e in walkdir::WalkDir::new(&self.root).follow_links(true) {
            let e = e.map_err(|e| format!("cannot list {}: {e}", self.shown))?;
            if !e.file_type().is_file() {
                continue;
            }
            let name = e.file_name().to_string_lossy();
            // Hidden and temporary files (editors, partial copies) are not data.
            if name.starts_with('.') || name.starts_with('_') || name.ends_with(".tmp") {
                continue;
            }
            let meta = e
                .metadata()
                .map_err(|err| format!("cannot read {}: {err}", e.path().display()))?;
            let modified = meta
                .modified()
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map(|d| d.as_nanos())
                .unwrap_or(0);
            let key = e
                .path()
                .strip_prefix(&self.root)
                .unwrap_or(e.path())
                .to_string_lossy()
                .replace('\\', "/");
            out.push(ObjectMeta {
                key,
                size: meta.len(),
                version: format!("mtime:{modified}"),
            });
        }
        Ok(out)
    }

    fn open(&self, key: &str) -> std::io::Result<Box<dyn Read + Send>> {
        Ok(Box::new(std::fs::File::open(self.root.join(key))?))
    }

    fn display(&self, key: &str) -> String {
        format!("{}/{key}", self.shown.trim_end_matches('/'))
    }

    fn describe(&self) -> String {
        self.shown.clone()
    }
}

/// The reader of a location, relative paths under the project.
pub fn source_for(
    project_dir: &Path,
    location: &Location,
) -> Result<Box<dyn ObjectSource>, String> {
    match location {
        Location::Local(p) => {
            let path = Path::new(p);
            let root = if path.is_absolute() {
                path.to_path_buf()
            } else {
                project_dir.join(path)
            };
            Ok(Box::new(LocalFiles {
                root,
                shown: p.clone(),
            }))
        }
        Location::S3 { bucket, prefix } => Err(format!(
            "s3://{bucket}/{prefix}: loading from S3 is not available yet (local locations are)"
        )),
    }
}
