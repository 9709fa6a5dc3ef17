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

/// Writes `text` to a new file readable by its owner only.
fn write_private(path: &Path, text: &str) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let _ = std::fs::remove_file(path);
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .map_err(|e| {
            Diagnostic::new(
                DiagKind::Io,
                format!("cannot write {}: {e}", path.display()),
            )
            .into()
        })
}

/// The pg_hba.conf of a local cluster: password (scram) for the cluster's
/// user only, over the socket and 127.0.0.1; nothing else, no replication.
fn hba_conf(user: &str) -> String {
    let u = crate::sql::quote_ident(user);
    format!(
        "# Written by Strata: only the project's user, with the password in\n\
         # .strata/postgres/password (never trust: any local account could connect).\n\
         local all {u} scram-sha-256\n\
         host all {u} 127.0.0.1/32 scram-sha-256\n"
    )
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

    /// The generated password of the cluster's user (0600, next to the data).
    pub fn password_file(&self) -> PathBuf {
        self.root.join("password")
    }

    /// A libpq password file for tools (`psql`, the URL of `strata pg url`).
    pub fn pgpass_file(&self) -> PathBuf {
        self.root.join("pgpass")
    }

    pub fn password(&self) -> Result<String> {
        std::fs::read_to_string(self.password_file())
            .map(|p| p.trim().to_string())
            .map_err(|e| {
                Diagnostic::new(
                    DiagKind::Io,
                    format!("cannot read {}: {e}", self.password_file().display()),
                )
                .hint("`strata pg stop` and delete .strata/postgres to create the local cluster afresh")
                .into()
            })
    }

    /// Creates the password and pgpass files of a new password.
    fn write_password(&self) -> Result<String> {
        let password = format!(
            "{}{}",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        );
        write_private(&self.password_file(), &format!("{password}\n"))?;
        write_private(
            &self.pgpass_file(),
            &format!(
                "127.0.0.1:*:*:{}:{password}\n",
                self.user.replace(':', "\\:")
            ),
        )?;
        Ok(password)
    }

    /// The socket directory, private to the account running the server: made
    /// with mode 0700, or refused when it exists with another owner or wider
    /// permissions (a shared /tmp could otherwise hand the socket to others).
    fn private_socket_dir(&self) -> Result<PathBuf> {
        use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
        let dir = self.socket_dir();
        let owner = uid_of(self.run_as.as_deref());
        match std::fs::symlink_metadata(&dir) {
            Err(_) => {
                std::fs::DirBuilder::new()
                    .mode(0o700)
                    .recursive(false)
                    .create(&dir)
                    .or_else(|e| {
                        // Inside the project, the parents may be missing.
                        if dir.starts_with(&self.root) {
                            std::fs::create_dir_all(&dir).and_then(|()| {
                                std::fs::set_permissions(
                                    &dir,
                                    std::fs::Permissions::from_mode(0o700),
                                )
                            })
                        } else {
                            Err(e)
                        }
                    })
                    .map_err(|e| {
                        Diagnostic::new(
                            DiagKind::Io,
                            format!("cannot create {}: {e}", dir.display()),
                        )
                    })?;
                self.chown(&dir)?;
            }
            Ok(m) if dir.starts_with(&self.root) && m.is_dir() && !m.file_type().is_symlink() => {
                // Inside the project (made by an older Strata): made private.
                std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).map_err(
                    |e| {
                        Diagnostic::new(
                            DiagKind::Io,
                            format!("cannot protect {}: {e}", dir.display()),
                        )
                    },
                )?;
                self.chown(&dir)?;
            }
            Ok(m) => {
                let wrong_owner = owner.is_some_and(|o| m.uid() != o);
                if !m.is_dir() || m.file_type().is_symlink() || m.mode() & 0o077 != 0 || wrong_owner
                {
                    return Err(Diagnostic::new(
                        DiagKind::Io,
                        format!(
                            "the socket directory {} exists but is not private (a directory of this account with mode 0700); refusing to use it",
                            dir.display()
                        ),
                    )
                    .hint("someone else may have made it; remove it, or move the project to a shorter path so the socket stays inside .strata/")
                    .into());
                }
            }
        }
        Ok(dir)
    }

    /// A cluster made by an older Strata trusted every local connection:
    /// give its user a password and replace pg_hba.conf (server running).
    fn secure_legacy_cluster(&self) -> Result<()> {
        let password = self.write_password()?;
        let mut cmd = self.bins.cmd("psql");
        cmd.arg("-X")
            .arg("-q")
            .arg("-h")
            .arg("127.0.0.1")
            .arg("-p")
            .arg(self.port.to_string())
            .arg("-U")
            .arg(&self.user)
            .arg("-d")
            .arg("postgres")
            .arg("-c")
            .arg(format!(
                "alter role {} password {}",
                crate::sql::quote_ident(&self.user),
                crate::sql::quote_literal(&password)
            ));
        self.run(cmd, "setting the local cluster's password")?;
        self.write_hba()?;
        let mut cmd = self.bins.cmd("pg_ctl");
        cmd.arg("-D").arg(self.data_dir()).arg("reload");
        self.run(cmd, "pg_ctl reload")?;
        Ok(())
    }

    fn write_hba(&self) -> Result<()> {
        let hba = self.data_dir().join("pg_hba.conf");
        write_private(&hba, &hba_conf(&self.user))?;
        self.chown(&hba)
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
        let mut legacy = false;
        if !self.is_initialized() {
            let password = self.write_password()?;
            // initdb reads the password from a file the server account can read.
            let pwfile = self.root.join("initdb-password");
            write_private(&pwfile, &format!("{password}\n"))?;
            self.chown(&self.root)?;
            let mut cmd = self.bins.cmd("initdb");
            cmd.arg("-D")
                .arg(self.data_dir())
                .arg("-U")
                .arg(&self.user)
                .arg("--auth=scram-sha-256")
                .arg(format!("--pwfile={}", pwfile.display()))
                .arg("--encoding=UTF8")
                .arg("--no-sync");
            let done = self.run(cmd, "initdb");
            let _ = std::fs::remove_file(&pwfile);
            done?;
            self.write_hba()?;
        } else if !self.password_file().exists() {
            legacy = true;
        }
        if self.status()? {
            if legacy {
                self.secure_legacy_cluster()?;
            }
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
        let socket = self.private_socket_dir()?;
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
                // Development data only (README): durability traded for speed.
                "-p {} -k {} -c listen_addresses=127.0.0.1 -c unix_socket_permissions=0700 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=100",
                self.port,
                socket.display()
            ))
            .arg("start");
        self.run(cmd, "pg_ctl start")?;
        if legacy {
            self.secure_legacy_cluster()?;
        }
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

    /// A libpq URL; the password stays in the pgpass file it names.
    pub fn url(&self, dbname: &str) -> String {
        format!(
            "postgresql://{}@127.0.0.1:{}/{}?passfile={}",
            self.user,
            self.port,
            dbname,
            self.pgpass_file().display()
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
            .arg(dbname)
            .env("PGPASSFILE", self.pgpass_file());
        c
    }
}

/// The uid of an account (this process's without one), from `id -u`.
fn uid_of(user: Option<&str>) -> Option<u32> {
    let out = Command::new("id").arg("-u").args(user).output().ok()?;
    String::from_utf8_lossy(&out.stdout).trim().parse().ok()
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
