//! `strata deps` against a local package hub (an HTTP server in the test that
//! serves a hub-shaped index and tarballs) and local git repositories: version
//! ranges, transitive dependencies, conflicts, git revisions and
//! subdirectories, package-lock.yml, and a hub that cannot be reached.

mod common;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::sync::{Arc, Mutex};

use common::*;

/// A tiny HTTP/1.1 server: GET of a known path answers its bytes, else 404.
struct Server {
    base: String,
    files: Arc<Mutex<HashMap<String, Vec<u8>>>>,
}

impl Server {
    fn start() -> Server {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let files: Arc<Mutex<HashMap<String, Vec<u8>>>> = Arc::default();
        let served = files.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut s) = stream else { continue };
                let mut buf = [0u8; 4096];
                let n = s.read(&mut buf).unwrap_or(0);
                let req = String::from_utf8_lossy(&buf[..n]).to_string();
                let path = req.split_whitespace().nth(1).unwrap_or("/").to_string();
                let body = served.lock().unwrap().get(&path).cloned();
                let _ = match body {
                    Some(b) => s
                        .write_all(
                            format!(
                                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                                b.len()
                            )
                            .as_bytes(),
                        )
                        .and_then(|_| s.write_all(&b)),
                    None => s.write_all(
                        b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                    ),
                };
            }
        });
        Server { base, files }
    }

    fn put(&self, path: &str, body: Vec<u8>) {
        self.files.lock().unwrap().insert(path.to_string(), body);
    }
}

/// A package tarball as GitHub serves them: one top folder.
fn tarball(name: &str, version: &str, packages_yml: Option<&str>) -> Vec<u8> {
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut tar = tar::Builder::new(gz);
    let top = format!("{name}-{version}");
    let mut files = vec![
        (
            "dbt_project.yml".to_string(),
            format!("name: {name}\nversion: '{version}'\n"),
        ),
        (
            format!("macros/{name}.sql"),
            format!("{{% macro {name}_version() %}}{version}{{% endmacro %}}"),
        ),
    ];
    if let Some(p) = packages_yml {
        files.push(("packages.yml".to_string(), p.to_string()));
    }
    for (path, text) in files {
        let mut h = tar::Header::new_gnu();
        h.set_size(text.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        tar.append_data(&mut h, format!("{top}/{path}"), text.as_bytes())
            .unwrap();
    }
    tar.into_inner().unwrap().finish().unwrap()
}

/// Publishes versions of `acme/<name>` on the hub: (version, its packages).
fn publish(hub: &Server, name: &str, versions: &[(&str, serde_json::Value)]) {
    let mut index = serde_json::Map::new();
    for (v, deps) in versions {
        let url = format!("/tarballs/{name}-{v}.tar.gz");
        let yml = deps
            .as_array()
            .filter(|a| !a.is_empty())
            .map(|a| serde_yaml::to_string(&serde_json::json!({ "packages": a })).unwrap());
        hub.put(&url, tarball(name, v, yml.as_deref()));
        index.insert(
            v.to_string(),
            serde_json::json!({"name": name, "version": v, "packages": deps,
                "downloads": {"tarball": format!("{}{url}", hub.base)}}),
        );
    }
    hub.put(
        &format!("/api/v1/acme/{name}.json"),
        serde_json::to_vec(
            &serde_json::json!({"name": name, "namespace": "acme", "versions": index}),
        )
        .unwrap(),
    );
}

fn git(dir: &std::path::Path, args: &[&str]) {
    let out = std::process::Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@example.com")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@example.com")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn installed_version(dir: &std::path::Path, name: &str) -> String {
    let text = read(dir, &format!("dbt_packages/{name}/dbt_project.yml"));
    text.lines()
        .find_map(|l| l.strip_prefix("version: "))
        .unwrap()
        .trim_matches('\'')
        .to_string()
}

#[test]
fn hub_git_and_lock() {
    let hub = Server::start();
    publish(
        &hub,
        "util",
        &[
            ("1.0.0", serde_json::json!([])),
            ("1.2.0", serde_json::json!([])),
            ("2.0.0", serde_json::json!([])),
        ],
    );
    publish(
        &hub,
        "extra",
        &[(
            "0.5.0",
            serde_json::json!([{"package": "acme/util", "version": [">=1.0.0", "<2.0.0"]}]),
        )],
    );
    // A git repository whose package sits in a subdirectory; the tag v1 is
    // the revision asked for, and a later commit changes the version.
    let repo = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(repo.path().join("pkg/macros")).unwrap();
    std::fs::write(
        repo.path().join("pkg/dbt_project.yml"),
        "name: gitpkg\nversion: '1.0.0'\n",
    )
    .unwrap();
    std::fs::write(
        repo.path().join("pkg/macros/g.sql"),
        "{% macro g() %}1{% endmacro %}",
    )
    .unwrap();
    git(repo.path(), &["init", "-q", "-b", "main"]);
    git(repo.path(), &["add", "."]);
    git(repo.path(), &["commit", "-q", "-m", "v1"]);
    git(repo.path(), &["tag", "v1"]);
    std::fs::write(
        repo.path().join("pkg/dbt_project.yml"),
        "name: gitpkg\nversion: '9.9.9'\n",
    )
    .unwrap();
    git(repo.path(), &["commit", "-q", "-am", "later"]);

    let packages = format!(
        "packages:\n  - package: acme/extra\n    version: 0.5.0\n  - package: acme/util\n    version: \">=1.1.0\"\n  - git: \"{}\"\n    revision: v1\n    subdirectory: pkg\n",
        repo.path().display()
    );
    let dir = project(&[("packages.yml", &packages)]);
    let env = [("DBT_PACKAGE_HUB_URL", hub.base.as_str())];
    let r = strata_env(dir.path(), &["deps"], &env);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    // util: the highest version both `>=1.1.0` and extra's `<2.0.0` accept.
    assert_eq!(installed_version(dir.path(), "util"), "1.2.0");
    assert_eq!(installed_version(dir.path(), "extra"), "0.5.0");
    assert_eq!(installed_version(dir.path(), "gitpkg"), "1.0.0");
    assert!(!dir.path().join("dbt_packages/gitpkg/.git").exists());
    let lock = read(dir.path(), "package-lock.yml");
    assert!(
        lock.contains("acme/util") && lock.contains("1.2.0") && lock.contains("revision: v1"),
        "{lock}"
    );
    // The installed macros work.
    std::fs::create_dir_all(dir.path().join("models")).unwrap();
    std::fs::write(
        dir.path().join("models/m.sql"),
        "select '{{ util.util_version() }}' as v",
    )
    .unwrap();
    let r = strata(dir.path(), &["compile"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(read(dir.path(), "target/compiled/proj/models/m.sql").contains("'1.2.0'"));

    // A newer release does not move a locked project.
    publish(
        &hub,
        "util",
        &[
            ("1.0.0", serde_json::json!([])),
            ("1.2.0", serde_json::json!([])),
            ("1.3.0", serde_json::json!([])),
        ],
    );
    let r = strata_env(dir.path(), &["deps"], &env);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(installed_version(dir.path(), "util"), "1.2.0");
    // Changing packages.yml resolves again.
    std::fs::write(
        dir.path().join("packages.yml"),
        packages.replace(">=1.1.0", ">=1.1.0, <1.9.0"),
    )
    .unwrap();
    let r = strata_env(dir.path(), &["deps"], &env);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(installed_version(dir.path(), "util"), "1.3.0");
}

#[test]
fn version_conflicts_and_unreachable_hubs_are_clear_errors() {
    let hub = Server::start();
    publish(
        &hub,
        "util",
        &[
            ("1.0.0", serde_json::json!([])),
            ("2.0.0", serde_json::json!([])),
        ],
    );
    publish(
        &hub,
        "extra",
        &[(
            "0.5.0",
            serde_json::json!([{"package": "acme/util", "version": "<2.0.0"}]),
        )],
    );
    let dir = project(&[(
        "packages.yml",
        "packages:\n  - package: acme/extra\n    version: 0.5.0\n  - package: acme/util\n    version: [\">=2.0.0\"]\n",
    )]);
    let r = strata_env(
        dir.path(),
        &["deps"],
        &[("DBT_PACKAGE_HUB_URL", hub.base.as_str())],
    );
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains("version conflict for acme/util")
            && r.stderr.contains("packages.yml wants >=2.0.0")
            && r.stderr.contains("acme/extra@0.5.0 wants <2.0.0"),
        "{}",
        r.stderr
    );
    // Nothing listens on port 9: the error names the host.
    let r = strata_env(
        dir.path(),
        &["deps"],
        &[("DBT_PACKAGE_HUB_URL", "http://127.0.0.1:9")],
    );
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.contains("cannot reach 127.0.0.1:9"),
        "{}",
        r.stderr
    );
}
