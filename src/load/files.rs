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
    /// Where the file is on this machine, when it is local.
    fn local_path(&self, _key: &str) -> Option<PathBuf> {
        None
    }
    /// How to name a file to the user.
    fn display(&self, key: &str) -> String;
    /// The last `len` bytes of a file (all of it when shorter): a Parquet
    /// footer, without reading the rest.
    fn read_tail(&self, key: &str, size: u64, len: u64) -> std::io::Result<Vec<u8>> {
        let _ = size;
        let mut all = Vec::new();
        self.open(key)?.read_to_end(&mut all)?;
        let start = all.len().saturating_sub(len as usize);
        Ok(all.split_off(start))
    }
    /// How the warehouse names the file when it reads it itself (`s3://`).
    fn warehouse_url(&self, _key: &str) -> Option<String> {
        None
    }
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

    fn local_path(&self, key: &str) -> Option<PathBuf> {
        Some(self.root.join(key))
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
        #[cfg(feature = "aws")]
        Location::S3 { bucket, prefix } => Ok(Box::new(s3::S3Files::new(bucket, prefix)?)),
        #[cfg(not(feature = "aws"))]
        Location::S3 { bucket, prefix } => Err(format!(
            "s3://{bucket}/{prefix}: S3 locations need the AWS SDK, and this strata was built without it (cargo build --features aws)"
        )),
    }
}

/// S3 through the AWS SDK's S3 client: the SDK is already Strata's for
/// Redshift (IAM, Data API, seed staging), so S3 costs no second HTTP and
/// credential stack; the standard credential chain and region settings
/// apply (`AWS_PROFILE`, `AWS_REGION`, `AWS_ENDPOINT_URL_S3`, ...).
#[cfg(feature = "aws")]
mod s3 {
    use std::io::Read;
    use std::sync::Arc;

    use super::{ObjectMeta, ObjectSource};

    /// Bytes fetched per ranged GET: memory stays at one part per file.
    const PART: u64 = 8 << 20;

    pub(super) struct S3Files {
        rt: Arc<tokio::runtime::Runtime>,
        client: aws_sdk_s3::Client,
        bucket: String,
        prefix: String,
    }

    impl S3Files {
        pub(super) fn new(bucket: &str, prefix: &str) -> Result<S3Files, String> {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .map_err(|e| format!("cannot start the I/O runtime: {e}"))?;
            let config =
                rt.block_on(aws_config::defaults(aws_config::BehaviorVersion::latest()).load());
            let mut b = aws_sdk_s3::config::Builder::from(&config);
            // A custom endpoint (S3-compatible stores, tests) is addressed by path.
            if std::env::var_os("AWS_ENDPOINT_URL_S3").is_some()
                || std::env::var_os("AWS_ENDPOINT_URL").is_some()
            {
                b = b.force_path_style(true);
            }
            Ok(S3Files {
                rt: Arc::new(rt),
                client: aws_sdk_s3::Client::from_conf(b.build()),
                bucket: bucket.to_string(),
                prefix: prefix.to_string(),
            })
        }
    }

    impl ObjectSource for S3Files {
        fn list(&self) -> Result<Vec<ObjectMeta>, String> {
            let mut out = Vec::new();
            let mut token: Option<String> = None;
            loop {
                let page = self
                    .rt
                    .block_on(
                        self.client
                            .list_objects_v2()
                            .bucket(&self.bucket)
                            .prefix(&self.prefix)
                            .set_continuation_token(token.take())
                            .send(),
                    )
                    .map_err(|e| {
                        format!(
                            "cannot list {}: {}",
                            self.describe(),
                            crate::adapter::aws_message(&e)
                        )
                    })?;
                for o in page.contents() {
                    let Some(key) = o.key() else { continue };
                    let rel = key.strip_prefix(&self.prefix).unwrap_or(key);
                    let name = rel.rsplit('/').next().unwrap_or(rel);
                    if rel.is_empty()
                        || key.ends_with('/')
                        || name.starts_with('.')
                        || name.starts_with('_')
                    {
                        continue;
                    }
                    // The ETag; a store that lists none gives its modification time.
                    let version = match (o.e_tag(), o.last_modified()) {
                        (Some(e), _) if !e.is_empty() => e.to_string(),
                        (_, Some(t)) => format!("modified:{t}"),
                        _ => String::new(),
                    };
                    out.push(ObjectMeta {
                        key: rel.to_string(),
                        size: o.size().unwrap_or(0).max(0) as u64,
                        version,
                    });
                }
                match page.next_continuation_token() {
                    Some(t) if page.is_truncated().unwrap_or(false) => token = Some(t.to_string()),
                    _ => return Ok(out),
                }
            }
        }

        fn open(&self, key: &str) -> std::io::Result<Box<dyn Read + Send>> {
            Ok(Box::new(Ranged {
                rt: self.rt.clone(),
                client: self.client.clone(),
                bucket: self.bucket.clone(),
                key: format!("{}{key}", self.prefix),
                pos: 0,
                buf: Vec::new(),
                at: 0,
                done: false,
            }))
        }

        fn display(&self, key: &str) -> String {
            format!("s3://{}/{}{key}", self.bucket, self.prefix)
        }

        fn warehouse_url(&self, key: &str) -> Option<String> {
            Some(self.display(key))
        }

        fn read_tail(&self, key: &str, size: u64, len: u64) -> std::io::Result<Vec<u8>> {
            if size == 0 {
                return Ok(Vec::new());
            }
            // An explicit range: some S3-compatible stores refuse a suffix
            // longer than the object.
            let start = size.saturating_sub(len);
            let got = self.rt.block_on(async {
                let o = self
                    .client
                    .get_object()
                    .bucket(&self.bucket)
                    .key(format!("{}{key}", self.prefix))
                    .range(format!("bytes={start}-{}", size - 1))
                    .send()
                    .await
                    .map_err(|e| crate::adapter::aws_message(&e))?;
                o.body
                    .collect()
                    .await
                    .map(|b| b.into_bytes().to_vec())
                    .map_err(|e| e.to_string())
            });
            got.map_err(std::io::Error::other)
        }

        fn describe(&self) -> String {
            format!("s3://{}/{}", self.bucket, self.prefix)
        }
    }

    /// An object read a part at a time with ranged GETs.
    struct Ranged {
        rt: Arc<tokio::runtime::Runtime>,
        client: aws_sdk_s3::Client,
        bucket: String,
        key: String,
        pos: u64,
        buf: Vec<u8>,
        at: usize,
        done: bool,
    }

    impl Read for Ranged {
        fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
            if self.at >= self.buf.len() {
                if self.done {
                    return Ok(0);
                }
                let range = format!("bytes={}-{}", self.pos, self.pos + PART - 1);
                let got = self.rt.block_on(async {
                    let r = self
                        .client
                        .get_object()
                        .bucket(&self.bucket)
                        .key(&self.key)
                        .range(range)
                        .send()
                        .await;
                    match r {
                        Ok(o) => o
                            .body
                            .collect()
                            .await
                            .map(|b| b.into_bytes().to_vec())
                            .map_err(|e| e.to_string()),
                        // Past the end of an object: nothing more.
                        Err(e) if crate::adapter::aws_code(&e) == Some("InvalidRange") => {
                            Ok(Vec::new())
                        }
                        Err(e) => Err(crate::adapter::aws_message(&e)),
                    }
                });
                let bytes = got.map_err(std::io::Error::other)?;
                if (bytes.len() as u64) < PART {
                    self.done = true;
                }
                self.pos += bytes.len() as u64;
                self.buf = bytes;
                self.at = 0;
                if self.buf.is_empty() {
                    return Ok(0);
                }
            }
            let n = out.len().min(self.buf.len() - self.at);
            out[..n].copy_from_slice(&self.buf[self.at..self.at + n]);
            self.at += n;
            Ok(n)
        }
    }
}
