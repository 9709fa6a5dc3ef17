//! The PostgreSQL adapter against a real server: batches, atomicity, queries,
//! and `strata debug`'s connection check.

mod common;

use std::time::Duration;

use common::pg;
use strata::adapter::postgres::{PgSettings, PostgresAdapter};
use strata::adapter::{Adapter, Batch};

fn adapter(db: &str) -> PostgresAdapter {
    PostgresAdapter::new(PgSettings {
        host: "127.0.0.1".into(),
        port: pg::port(),
        user: "strata".into(),
        password: Some(pg::password()),
        dbname: db.into(),
        connect_timeout: Duration::from_secs(10),
        keepalives_idle: Some(Duration::from_secs(30)),
        retries: 2,
        search_path: None,
        role: None,
        threads: 4,
        tls: strata::adapter::postgres::TlsMode::Disable,
        root_cert: None,
    })
    .expect("connect")
}

#[test]
fn atomic_batch_rolls_back_on_failure() {
    let db = pg::database("atomic");
    let a = adapter(&db);
    a.execute(&Batch::atomic(vec![
        "create table t (id int)".into(),
        "insert into t values (1), (2)".into(),
    ]))
    .unwrap();
    let err = a
        .execute(&Batch::atomic(vec![
            "insert into t values (3)".into(),
            "select * from missing_table".into(),
        ]))
        .unwrap_err();
    assert_eq!(err.statement, Some(1));
    assert!(err.message.contains("missing_table"), "{}", err.message);
    let t = a.query("select count(*) from t").unwrap();
    assert_eq!(
        t.rows[0][0].as_deref(),
        Some("2"),
        "the failed batch left no rows"
    );
    let r = a
        .execute(&Batch::atomic(vec!["update t set id = id + 10".into()]))
        .unwrap();
    assert_eq!(r.rows_affected, vec![Some(2)]);
}

#[test]
fn sessions_run_in_parallel_up_to_threads() {
    let db = pg::database("parallel");
    let a = std::sync::Arc::new(adapter(&db));
    let start = std::time::Instant::now();
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let a = a.clone();
            std::thread::spawn(move || a.query("select pg_sleep(0.5)").unwrap())
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    assert!(
        start.elapsed() < Duration::from_millis(1800),
        "{:?}",
        start.elapsed()
    );
}

#[test]
fn cancel_stops_a_running_statement() {
    let db = pg::database("cancel");
    let a = std::sync::Arc::new(adapter(&db));
    let b = a.clone();
    let h = std::thread::spawn(move || b.query("select pg_sleep(30)"));
    std::thread::sleep(Duration::from_millis(500));
    a.cancel_all();
    let res = h.join().unwrap();
    let e = res.unwrap_err();
    assert!(e.message.contains("cancel"), "{}", e.message);
}

#[test]
fn debug_checks_the_connection() {
    let db = pg::database("debug");
    let dir = common::project(&[(
        "profiles.yml",
        &format!(
            "proj:\n  target: dev\n  outputs:\n    dev:\n      type: postgres\n      host: 127.0.0.1\n      port: {}\n      user: strata\n      password: {}\n      dbname: {db}\n      schema: main\n",
            pg::port(),
            pg::password()
        ),
    )]);
    let r = common::strata(dir.path(), &["debug"]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(
        r.stdout.contains("connection:    OK (PostgreSQL"),
        "{}",
        r.stdout
    );
    let bad = common::project(&[(
        "profiles.yml",
        "proj:\n  target: dev\n  outputs:\n    dev:\n      type: postgres\n      host: 127.0.0.1\n      port: 1\n      user: strata\n      dbname: x\n      schema: main\n      connect_timeout: 2\n",
    )]);
    let r = common::strata(bad.path(), &["debug"]);
    assert_eq!(r.code, 1);
    assert!(r.stdout.contains("connection:    FAILED"));
    assert!(
        r.stderr
            .contains("cannot connect to postgres at 127.0.0.1:1"),
        "{}",
        r.stderr
    );
}

fn tls_adapter(
    port: u16,
    password: &str,
    tls: strata::adapter::postgres::TlsMode,
    root_cert: Option<std::path::PathBuf>,
) -> Result<PostgresAdapter, strata::adapter::AdapterError> {
    PostgresAdapter::new(PgSettings {
        host: "127.0.0.1".into(),
        port,
        user: "strata".into(),
        password: Some(password.to_string()),
        dbname: "postgres".into(),
        connect_timeout: Duration::from_secs(10),
        keepalives_idle: None,
        retries: 0,
        search_path: None,
        role: None,
        threads: 1,
        tls,
        root_cert,
    })
}

#[test]
fn tls_require_and_verify_full() {
    use strata::adapter::postgres::TlsMode;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("cluster");
    let mut cluster = strata::localpg::LocalCluster::at(root.clone(), "strata").unwrap();
    cluster.ensure_running().unwrap();
    cluster.stop().unwrap();
    let data = root.join("data");
    // A CA, and a server certificate it signs for 127.0.0.1.
    let openssl = |args: &[&str]| {
        let ok = std::process::Command::new("openssl")
            .args(args)
            .current_dir(dir.path())
            .stderr(std::process::Stdio::null())
            .status()
            .expect("openssl")
            .success();
        assert!(ok, "openssl {args:?}");
    };
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "1",
        "-subj",
        "/CN=strata test CA",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
    ]);
    openssl(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=127.0.0.1",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
    ]);
    std::fs::write(
        dir.path().join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n",
    )
    .unwrap();
    openssl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "1",
        "-extfile",
        "ext.cnf",
        "-out",
        "server.crt",
    ]);
    std::fs::copy(dir.path().join("server.crt"), data.join("server.crt")).unwrap();
    std::fs::copy(dir.path().join("server.key"), data.join("server.key")).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(
        data.join("server.key"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    let conf = std::fs::read_to_string(data.join("postgresql.conf")).unwrap();
    std::fs::write(
        data.join("postgresql.conf"),
        conf + "\nssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n",
    )
    .unwrap();
    if unsafe { libc::geteuid() } == 0 {
        std::process::Command::new("chown")
            .args(["-R", "postgres"])
            .arg(&data)
            .status()
            .unwrap();
    }
    cluster.ensure_running().unwrap();
    let port = cluster.port;
    let pw = cluster.password().unwrap();
    let check = |a: &PostgresAdapter| {
        a.query("select ssl::text from pg_stat_ssl where pid = pg_backend_pid()")
            .unwrap()
            .rows[0][0]
            .clone()
    };

    let req = tls_adapter(port, &pw, TlsMode::Require, None).expect("sslmode=require connects");
    assert_eq!(check(&req).as_deref(), Some("true"));
    let plain = tls_adapter(port, &pw, TlsMode::Disable, None).unwrap();
    assert_eq!(check(&plain).as_deref(), Some("false"));
    let err = tls_adapter(port, &pw, TlsMode::VerifyFull, None)
        .err()
        .expect("an unknown issuer is refused");
    assert!(
        err.message.to_lowercase().contains("certificate"),
        "{}",
        err.message
    );
    let full = tls_adapter(
        port,
        &pw,
        TlsMode::VerifyFull,
        Some(dir.path().join("ca.crt")),
    )
    .expect("trusted via sslrootcert");
    assert_eq!(check(&full).as_deref(), Some("true"));
    cluster.destroy();
}

/// Key matching (snapshots, merge, delete+insert) matches NULL with NULL and
/// lets Postgres hash or merge join: with `is not distinct from` a second
/// snapshot over 30,000 rows was a nested loop taking 80 s.
#[test]
fn key_matching_is_null_safe_and_never_a_nested_loop() {
    use strata::adapter::{Dialect, PostgresDialect};
    let db = pg::database("keyeq");
    let a = adapter(&db);
    a.execute(&Batch {
        statements: vec![
            "create table l as select case when g % 100 = 0 then null else g end as k, g::numeric(10,1) as n from generate_series(1, 20000) g".into(),
            "create table r as select case when g % 100 = 0 then null else g end as k, g::numeric(10,2) as n from generate_series(1, 20000) g".into(),
            "analyze l".into(),
            "analyze r".into(),
        ],
        atomic: false,
    })
    .unwrap();
    let d = PostgresDialect;
    let on = format!("{} and {}", d.key_eq("l.k", "r.k"), d.key_eq("l.n", "r.n"));
    for sql in [
        format!("select count(*) from l left join r on {on}"),
        format!("select count(*) from l where not exists (select 1 from r where {on})"),
        format!(
            "select count(*) from l join r on {}",
            d.key_eq("l.k", "r.k")
        ),
    ] {
        let plan = a.query(&format!("explain {sql}")).unwrap();
        let text: Vec<String> = plan.rows.iter().filter_map(|r| r[0].clone()).collect();
        let text = text.join("\n");
        assert!(!text.contains("Nested Loop"), "{sql}\n{text}");
        assert!(
            text.contains("Hash") || text.contains("Merge"),
            "{sql}\n{text}"
        );
    }
    let count = |sql: &str| a.query(sql).unwrap().rows[0][0].clone().unwrap();
    // Every row matches exactly one row: 200 NULL keys match each other only
    // pairwise through `n` (1.0 = 1.00), never by being NULL alone.
    assert_eq!(
        count(&format!("select count(*) from l join r on {on}")),
        "20000"
    );
    assert_eq!(
        count(&format!(
            "select count(*) from l join r on {}",
            d.key_eq("l.k", "r.k")
        )),
        (19800 + 200 * 200).to_string()
    );
}

/// The project's local cluster is private to the user who owns the project:
/// a generated password (scram) in a 0600 file, a 0700 socket directory,
/// no trust anywhere (anyone on the machine could otherwise connect as
/// superuser and run `copy ... to program`).
#[test]
fn the_local_cluster_lets_in_only_its_owner() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("pg");
    let mut cluster = strata::localpg::LocalCluster::at(root.clone(), "strata").unwrap();
    cluster.ensure_running().unwrap();
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&cluster.password_file()), 0o600);
    assert_eq!(mode(&cluster.pgpass_file()), 0o600);
    assert_eq!(mode(&cluster.socket_dir()), 0o700);
    let hba = std::fs::read_to_string(root.join("data/pg_hba.conf")).unwrap();
    assert!(
        !hba.lines()
            .any(|l| !l.starts_with('#') && l.contains("trust")),
        "{hba}"
    );
    assert!(!hba.contains("replication"), "{hba}");
    let psql_bin = strata::localpg::PgBinaries::find()
        .unwrap()
        .dir
        .map(|d| d.join("psql"))
        .unwrap_or_else(|| "psql".into());
    let try_connect =
        |port: u16, host: &str, passfile: &std::path::Path, as_user: Option<&str>| -> bool {
            let mut cmd = match as_user {
                Some(u) => {
                    let mut c = std::process::Command::new("runuser");
                    c.args(["-u", u, "--"]).arg(&psql_bin);
                    c
                }
                None => std::process::Command::new(&psql_bin),
            };
            cmd.args([
                "-X",
                "-w",
                "-tA",
                "-h",
                host,
                "-p",
                &port.to_string(),
                "-U",
                "strata",
                "-d",
                "postgres",
                "-c",
                "select current_user",
            ])
            .env("PGPASSFILE", passfile)
            .env_remove("PGPASSWORD")
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false)
        };
    let socket = cluster.socket_dir().display().to_string();
    let nothing = std::path::Path::new("/dev/null");
    assert!(
        !try_connect(cluster.port, "127.0.0.1", nothing, None),
        "no password, no entry over TCP"
    );
    assert!(
        !try_connect(cluster.port, &socket, nothing, None),
        "no password, no entry over the socket"
    );
    assert!(
        try_connect(cluster.port, "127.0.0.1", &cluster.pgpass_file(), None),
        "the owner gets in"
    );
    let url = cluster.url("postgres");
    assert!(
        url.contains("passfile=") && !url.contains(&cluster.password().unwrap()),
        "{url}"
    );
    if unsafe { libc::geteuid() } == 0 {
        // Another account of the machine, as the probe tried it.
        assert!(!try_connect(
            cluster.port,
            "127.0.0.1",
            nothing,
            Some("nobody")
        ));
        assert!(!try_connect(cluster.port, &socket, nothing, Some("nobody")));
    }
    // A cluster made by an older Strata (trust, no password file) is secured.
    cluster.stop().unwrap();
    std::fs::remove_file(cluster.password_file()).unwrap();
    std::fs::write(
        root.join("data/pg_hba.conf"),
        "local all all trust\nhost all all 127.0.0.1/32 trust\n",
    )
    .unwrap();
    cluster.ensure_running().unwrap();
    assert!(
        !try_connect(cluster.port, "127.0.0.1", nothing, None),
        "trust is gone"
    );
    assert!(try_connect(
        cluster.port,
        "127.0.0.1",
        &cluster.pgpass_file(),
        None
    ));
    cluster.destroy();

    // The socket directory outside the project (long paths) is refused when
    // someone prepared it with other permissions.
    let long = dir.path().join("a".repeat(60)).join("b".repeat(60));
    let mut far = strata::localpg::LocalCluster::at(long, "strata").unwrap();
    let shared = far.socket_dir();
    assert!(
        shared.starts_with(std::env::temp_dir()),
        "{}",
        shared.display()
    );
    let _ = std::fs::remove_dir_all(&shared);
    std::fs::create_dir(&shared).unwrap();
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o777)).unwrap();
    let err = far.ensure_running().expect_err("refused").to_string();
    assert!(err.contains("is not private"), "{err}");
    std::fs::remove_dir(&shared).unwrap();
    far.ensure_running().unwrap();
    assert_eq!(mode(&shared), 0o700);
    far.destroy();
}
