//! A private PostgreSQL cluster that Strata creates and manages under the
//! project (`.strata/postgres`), and throwaway clusters for tests.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::error::{DiagKind, Diagnostic, Result};

/// Where the server binaries live.
#[derive(Debug, Clone)]
pub struct PgBinaries {
    pub dir: Option<PathBuf>,
}

impl PgBinaries {
    /// `initdb` on PATH, else the newest `/usr/lib/postgresql/*/bin`.
    pub fn find() -> Result<PgBinaries> {
        if which("initdb").is_some() && which("pg_ctl").is_some() {
            return Ok(PgBinaries { dir: None });
        }
        let mut candidates: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
            .into_iter()
            .flatten()
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let v: u32 = e
                    .file_name()
                    .to_string_lossy()
                    .split('.')
                    .next()?
                    .parse()
                    .ok()?;
                let bin = e.path().join("bin");
                bin.join("initdb").is_file().then_some((v, bin))
            })
            .collect();
        candidates.sort();
        match candidates.pop() {
            Some((_, dir)) => Ok(PgBinaries { dir: Some(dir) }),
            None => Err(Diagnostic::new(
                DiagKind::Config,
                "PostgreSQL server binaries (initdb, pg_ctl) were not found on PATH or under /usr/lib/postgresql/*/bin",
            )
            .hint("install them, e.g. `apt-get install -y postgresql` (Debian/Ubuntu) or `brew install postgresql` (macOS)")
            .into()),
        }
    }

    pub fn cmd(&self, name: &str) -> Command {
        match &self.dir {
            Some(d) => Command::new(d.join(name)),
            None => Command::new(name),
        }
    }
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join(name))
            .find(|f| f.is_file())
    })
}

/// Whether this process runs as root (the server refuses to).
fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// A cluster on disk: data directory, socket directory, port and superuser.
#[derive(Debug, Clone)]
pub struct LocalCluster {
    pub root: PathBuf,
    pub port: u16,
    pub user: String,
    bins: PgBinaries,
    /// The unprivileged account that owns the cluster when Strata runs as root.
    run_as: Option<String>,
}

/// Connection details of a running local cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalConn {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub socket_dir: PathBuf,
}

impl LocalCluster {
    /// The cluster of a project (not created until `ensure_running`).
    pub fn for_project(project_dir: &Path, user: &str) -> Result<LocalCluster> {
        let dir = project_dir
            .canonicalize()
            .unwrap_or_else(|_| absolute(project_dir));
        let root = dir.join(".strata").join("postgres");
        Self::at(root, user)
    }

    /// A cluster rooted at `root` (tests use a temporary directory).
    pub fn at(root: PathBuf, user: &str) -> Result<LocalCluster> {
        let bins = PgBinaries::find()?;
        let port = std::fs::read_to_string(root.join("port"))
            .ok()
            .and_then(|p| p.trim().parse().ok())
            .unwrap_or(0);
        let run_as = if is_root() {
            Some(std::env::var("STRATA_PG_OS_USER").unwrap_or_else(|_| "postgres".into()))
        } else {
            None
        };
        Ok(LocalCluster {
            root,
            port,
            user: user.to_string(),
            bins,
            run_as,
        })
    }

    pub fn data_dir(&self) -> PathBuf {
        self.root.join("data")
    }

    /// The unix socket directory: inside the project unless that path is too
    /// long for a socket address (about 100 bytes).
    pub fn socket_dir(&self) -> PathBuf {
        let inside = self.root.join("socket");
        if inside.as_os_str().len() + 20 < 100 {
            inside
        } else {
            let mut h: u64 = 1469598103934665603;
            for b in self.root.as_os_str().as_encoded_bytes() {
                h = (h ^ *b as u64).wrapping_mul(1099511628211);
            }
            std::env::temp_dir().join(format!("strata-pg-{h:x}"))
        }
    }

    fn log_file(&self) -> PathBuf {
        self.root.join("server.log")
    }

    pub fn is_initialized(&self) -> bool {
        self.data_dir().join("PG_VERSION").is_file()
    }

    fn run(&self, mut cmd: Command, what: &str) -> Result<Output> {
        if let Some(u) = &self.run_as {
            let prog = cmd.get_program().to_os_string();
            let args: Vec<_> = cmd.get_args().map(|a| a.to_os_string()).collect();
            let mut wrapped = Command::new("runuser");
            wrapped.arg("-u").arg(u).arg("--").arg(prog).args(args);
            cmd = wrapped;
        }
        let out = cmd.output().map_err(|e| {
            Diagnostic::new(DiagKind::Io, format!("cannot run {what}: {e}"))
                .hint("check that the PostgreSQL server package is installed")
        })?;
        if !out.status.success() {
            let mut msg = String::from_utf8_lossy(&out.stderr).trim().to_string();
            if msg.is_empty() {
                msg = String::from_utf8_lossy(&out.stdout).trim().to_string();
            }
            return Err(
                Diagnostic::new(DiagKind::Io, format!("{what} failed: {msg}"))
                    .hint(format!("see {}", self.log_file().display()))
                    .into(),
            );
        }
        Ok(out)
    }

    fn chown(&self, path: &Path) -> Result<()> {
        if let Some(u) = &self.run_as {
            let status = Command::new("chown").arg("-R").arg(u).arg(path).status();
            if !status.map(|s| s.success()).unwrap_or(false) {
                return Err(Diagnostic::new(
                    DiagKind::Io,
                    format!("cannot give {} to the '{u}' account", path.display()),
                )
                .hint("Strata runs the server as an unprivileged user when started as root; set STRATA_PG_OS_USER to choose it")
                .into());
            }
        }
        Ok(())
    }

    /// Creates the cluster if needed and starts it if it is not running.
    pub fn ensure_running(&mut self) -> Result<LocalConn> {
        std::fs::create_dir_all(&self.root).map_err(|e| {
            Diagnostic::new(
                DiagKind::Io,
                format!("cannot create {}: {e}", self.root.display()),
            )
        })?;
        if !self.is_initialized() {
            self.chown(&self.root)?;
            let mut cmd = self.bins.cmd("initdb");
            cmd.arg("-D")
                .arg(self.data_dir())
                .arg("-U")
                .arg(&self.user)
                .arg("--auth=trust")
                .arg("--encoding=UTF8")
                .arg("--no-sync");
            self.run(cmd, "initdb")?;
        }
        if self.status()? {
            return Ok(self.conn());
        }
        if self.port == 0 || !port_free(self.port) {
            self.port = free_port()?;
        }
        std::fs::write(self.root.join("port"), self.port.to_string()).map_err(|e| {
            Diagnostic::new(
                DiagKind::Io,
                format!("cannot write {}: {e}", self.root.display()),
            )
        })?;
        let socket = self.socket_dir();
        std::fs::create_dir_all(&socket).map_err(|e| {
            Diagnostic::new(
                DiagKind::Io,
                format!("cannot create {}: {e}", socket.display()),
            )
        })?;
        self.chown(&socket)?;
        self.chown(&self.root)?;
        let mut cmd = self.bins.cmd("pg_ctl");
        cmd.arg("-D")
            .arg(self.data_dir())
            .arg("-l")
            .arg(self.log_file())
            .arg("-w")
            .arg("-t")
            .arg("60")
            .arg("-o")
            .arg(format!(
                "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=100",
                self.port,
                socket.display()
            ))
            .arg("start");
        self.run(cmd, "pg_ctl start")?;
        Ok(self.conn())
    }

    pub fn conn(&self) -> LocalConn {
        LocalConn {
            host: "127.0.0.1".into(),
            port: self.port,
            user: self.user.clone(),
            socket_dir: self.socket_dir(),
        }
    }

    /// Whether the server is running.
    pub fn status(&self) -> Result<bool> {
        if !self.is_initialized() {
            return Ok(false);
        }
        let mut cmd = self.bins.cmd("pg_ctl");
        cmd.arg("-D").arg(self.data_dir()).arg("status");
        if let Some(u) = &self.run_as {
            let mut w = Command::new("runuser");
            w.arg("-u")
                .arg(u)
                .arg("--")
                .arg(cmd.get_program())
                .args(cmd.get_args());
            cmd = w;
        }
        Ok(cmd.output().map(|o| o.status.success()).unwrap_or(false))
    }

    pub fn stop(&self) -> Result<bool> {
        if !self.status()? {
            return Ok(false);
        }
        let mut cmd = self.bins.cmd("pg_ctl");
        cmd.arg("-D")
            .arg(self.data_dir())
            .arg("-m")
            .arg("fast")
            .arg("-w")
            .arg("stop");
        self.run(cmd, "pg_ctl stop")?;
        Ok(true)
    }

    /// Stops the server and deletes the cluster (throwaway clusters).
    pub fn destroy(&self) {
        let _ = self.stop();
        let _ = std::fs::remove_dir_all(&self.root);
        let _ = std::fs::remove_dir_all(self.socket_dir());
    }

    pub fn url(&self, dbname: &str) -> String {
        format!(
            "postgresql://{}@127.0.0.1:{}/{}",
            self.user, self.port, dbname
        )
    }

    /// A `psql` command connected to `dbname`.
    pub fn psql(&self, dbname: &str) -> Command {
        let mut c = self.bins.cmd("psql");
        c.arg("-h")
            .arg("127.0.0.1")
            .arg("-p")
            .arg(self.port.to_string())
            .arg("-U")
            .arg(&self.user)
            .arg(dbname);
        c
    }
}

fn absolute(p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir()
            .map(|d| d.join(p))
            .unwrap_or_else(|_| p.to_path_buf())
    }
}

fn port_free(port: u16) -> bool {
    TcpListener::bind(("127.0.0.1", port)).is_ok()
}

/// A free TCP port on 127.0.0.1, chosen by the OS.
pub fn free_port() -> Result<u16> {
    TcpListener::bind(("127.0.0.1", 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| {
            Diagnostic::new(DiagKind::Io, format!("no free port on 127.0.0.1: {e}")).into()
        })
}
