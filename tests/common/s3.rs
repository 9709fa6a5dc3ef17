//! A real S3-protocol server in-process (s3s-fs): objects are files under a
//! temporary directory, requests are checked against one access key.

use std::path::PathBuf;

pub const ACCESS_KEY: &str = "AKIDEXAMPLE";
pub const SECRET_KEY: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";

pub struct S3 {
    pub url: String,
    /// Bucket directories live here.
    pub root: PathBuf,
    _dir: tempfile::TempDir,
}

/// Starts a server with the given buckets.
pub fn start(buckets: &[&str]) -> S3 {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    for b in buckets {
        std::fs::create_dir_all(root.join(b)).unwrap();
    }
    let (tx, rx) = std::sync::mpsc::channel();
    let serve_root = root.clone();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let fs = s3s_fs::FileSystem::new(&serve_root).unwrap();
            let mut b = s3s::service::S3ServiceBuilder::new(fs);
            b.set_auth(s3s::auth::SimpleAuth::from_single(ACCESS_KEY, SECRET_KEY));
            let service = b.build();
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(listener.local_addr().unwrap()).unwrap();
            let http =
                hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new());
            loop {
                let Ok((socket, _)) = listener.accept().await else {
                    continue;
                };
                let conn = http
                    .serve_connection(hyper_util::rt::TokioIo::new(socket), service.clone())
                    .into_owned();
                tokio::spawn(async move {
                    let _ = conn.await;
                });
            }
        });
    });
    let addr = rx.recv().unwrap();
    S3 {
        url: format!("http://{addr}"),
        root,
        _dir: dir,
    }
}

impl S3 {
    /// The environment that points the AWS SDK's standard chain at this
    /// server.
    pub fn env(&self) -> [(&str, &str); 5] {
        [
            ("AWS_ENDPOINT_URL_S3", self.url.as_str()),
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY),
            ("AWS_SECRET_ACCESS_KEY", SECRET_KEY),
            ("AWS_REGION", "us-east-1"),
            ("AWS_EC2_METADATA_DISABLED", "true"),
        ]
    }
}

#[cfg(feature = "aws")]
impl S3 {
    /// Puts an object through the AWS SDK (signed, as any client would).
    pub fn put(&self, bucket: &str, key: &str, body: Vec<u8>) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let creds =
                aws_credential_types::Credentials::new(ACCESS_KEY, SECRET_KEY, None, None, "test");
            let config = aws_sdk_s3::config::Builder::new()
                .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
                .region(aws_sdk_s3::config::Region::new("us-east-1"))
                .credentials_provider(creds)
                .endpoint_url(&self.url)
                .force_path_style(true)
                .build();
            aws_sdk_s3::Client::from_conf(config)
                .put_object()
                .bucket(bucket)
                .key(key)
                .body(body.into())
                .send()
                .await
                .unwrap();
        });
    }
}
