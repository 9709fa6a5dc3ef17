//! A throwaway PostgreSQL cluster per test binary: started on first use on a
//! free port, stopped and deleted when the test process exits.

use std::sync::{Mutex, OnceLock};

use strata::localpg::LocalCluster;

static CLUSTER: OnceLock<Mutex<Option<LocalCluster>>> = OnceLock::new();

extern "C" fn cleanup() {
    if let Some(m) = CLUSTER.get() {
        if let Ok(mut c) = m.lock() {
            if let Some(c) = c.take() {
                c.destroy();
            }
        }
    }
}

/// The port of the shared test cluster (superuser `strata`, password auth).
pub fn port() -> u16 {
    let m = CLUSTER.get_or_init(|| {
        let root = std::env::temp_dir().join(format!("strata-test-pg-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let mut c = LocalCluster::at(root, "strata").expect("postgres binaries");
        c.ensure_running().expect("start test cluster");
        // SAFETY: registering a plain extern "C" function with the C runtime.
        unsafe {
            libc::atexit(cleanup);
        }
        Mutex::new(Some(c))
    });
    m.lock().unwrap().as_ref().map(|c| c.port).expect("cluster")
}

/// The password of the shared test cluster's `strata` user.
pub fn password() -> String {
    port();
    let m = CLUSTER.get().expect("cluster");
    m.lock()
        .unwrap()
        .as_ref()
        .map(|c| c.password().expect("password"))
        .expect("cluster")
}

fn passfile() -> std::path::PathBuf {
    port();
    let m = CLUSTER.get().expect("cluster");
    m.lock()
        .unwrap()
        .as_ref()
        .map(|c| c.pgpass_file())
        .expect("cluster")
}

/// A fresh, uniquely named database on the shared cluster.
pub fn database(name: &str) -> String {
    let p = port();
    let db = format!("t_{name}_{}", std::process::id());
    let status = std::process::Command::new(psql_bin())
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &p.to_string(),
            "-U",
            "strata",
            "-d",
            "postgres",
            "-q",
        ])
        .arg("-c")
        .arg(format!("drop database if exists {db}"))
        .arg("-c")
        .arg(format!("create database {db}"))
        .env("PGPASSFILE", passfile())
        .status()
        .expect("psql");
    assert!(status.success());
    db
}

fn psql_bin() -> String {
    strata::localpg::PgBinaries::find()
        .ok()
        .and_then(|b| b.dir)
        .map(|d| d.join("psql").display().to_string())
        .unwrap_or_else(|| "psql".into())
}

/// psql connected to `db` of the test cluster as `strata`.
fn psql_on(db: &str) -> std::process::Command {
    let mut cmd = std::process::Command::new(psql_bin());
    cmd.args([
        "-h",
        "127.0.0.1",
        "-p",
        &port().to_string(),
        "-U",
        "strata",
        "-d",
        db,
    ])
    .env("PGPASSFILE", passfile());
    cmd
}

/// Runs one statement on `db` and returns its output unaligned (`psql -tA`).
pub fn psql(db: &str, sql: &str) -> String {
    let out = psql_on(db).args(["-tA", "-c", sql]).output().expect("psql");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A psql session on `db` running `script` from its standard input, in the
/// background (for sessions that hold locks while the test acts).
pub fn psql_session(db: &str, script: &str) -> std::process::Child {
    use std::io::Write;
    let mut child = psql_on(db)
        .arg("-q")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("psql");
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(script.as_bytes()).expect("psql stdin");
    }
    child
}

/// A profiles.yml for project `proj` on database `db` of the test cluster
/// (schema `main`, two threads).
pub fn profile(db: &str) -> String {
    format!(
        "proj:\n  target: dev\n  outputs:\n    dev:\n      type: postgres\n      host: 127.0.0.1\n      port: {}\n      user: strata\n      password: {}\n      dbname: {db}\n      schema: main\n      threads: 2\n",
        port(),
        password()
    )
}
