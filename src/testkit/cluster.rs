//! A throwaway PostgreSQL cluster from the local binaries.

use crate::error::{Error, Result};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// `FKCTL_PG_BIN` names the PostgreSQL binaries for clusters of fkctl's own
/// (tests and demo), e.g. another major version; else the ones on PATH, else
/// the newest under /usr/lib/postgresql.
pub fn bin_dir_override() -> Option<PathBuf> {
    std::env::var_os("FKCTL_PG_BIN")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

fn find_bin_dir() -> Option<PathBuf> {
    if let Some(dir) = bin_dir_override() {
        return dir.join("initdb").exists().then_some(dir);
    }
    if let Ok(out) = Command::new("sh")
        .args(["-c", "command -v initdb"])
        .output()
    {
        let path = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if !path.is_empty() {
            return Path::new(&path).parent().map(Path::to_path_buf);
        }
    }
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|p| p.join("initdb").exists())
        .collect();
    // Highest major version last.
    dirs.sort_by_key(|p| {
        p.parent()
            .and_then(|v| v.file_name())
            .and_then(|v| v.to_str())
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or(0)
    });
    dirs.pop()
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

fn free_port() -> Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")
        .map_err(|e| Error::internal(format!("cannot find a free port: {e}")))?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(|e| Error::internal(format!("cannot find a free port: {e}")))
}

/// Runs a PostgreSQL binary, as the `postgres` OS user when we are root.
fn run_pg(bin: &Path, args: &[&str], as_postgres: bool) -> Result<()> {
    let mut cmd = if as_postgres {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(bin);
        c
    } else {
        Command::new(bin)
    };
    let out = cmd
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| Error::internal(format!("cannot run {}: {e}", bin.display())))?;
    if !out.status.success() {
        return Err(Error::internal(format!(
            "{} failed: {}",
            bin.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

/// A PostgreSQL cluster of its own in a temporary directory, stopped and
/// removed when dropped. With a password, TCP logins need it (scram-sha-256).
pub struct Cluster {
    bin: PathBuf,
    dir: PathBuf,
    data: String,
    pub port: u16,
    as_postgres: bool,
    /// Left running when dropped (the demo's sandbox); `stop_in` removes it.
    keep: bool,
}

impl Cluster {
    pub fn start(password: Option<&str>) -> Result<Cluster> {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("fkctl-pg-{}-{n}", std::process::id()));
        Cluster::start_in(dir, password, false)
    }

    /// A cluster in `dir` (replaced if it exists); with `keep` it outlives this process.
    pub fn start_in(dir: PathBuf, password: Option<&str>, keep: bool) -> Result<Cluster> {
        let bin = find_bin_dir().ok_or_else(|| {
            Error::internal(
                "no initdb was found (install postgresql, set FKCTL_PG_BIN to a directory of PostgreSQL binaries, or point the DSN variable at a server)",
            )
        })?;
        let as_postgres = is_root();
        if dir.join("data").exists() {
            let _ = stop_in(&dir);
        }
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)
            .map_err(|e| Error::internal(format!("cannot create {}: {e}", dir.display())))?;
        let dir_s = dir.display().to_string();
        let data = format!("{dir_s}/data");
        let mut initdb = vec![
            "-D",
            data.as_str(),
            "-U",
            "postgres",
            "-E",
            "UTF8",
            "--no-sync",
        ];
        let pwfile = format!("{dir_s}/pwfile");
        match password {
            Some(p) => {
                std::fs::write(&pwfile, p)
                    .map_err(|e| Error::internal(format!("cannot write {pwfile}: {e}")))?;
                initdb.extend([
                    "--auth-local=trust",
                    "--auth-host=scram-sha-256",
                    "--pwfile",
                    pwfile.as_str(),
                ]);
            }
            None => initdb.push("--auth=trust"),
        }
        if as_postgres {
            run_pg(Path::new("chown"), &["-R", "postgres", &dir_s], false)?;
        }
        run_pg(&bin.join("initdb"), &initdb, as_postgres)?;
        let _ = std::fs::remove_file(&pwfile);
        let cluster = Cluster {
            bin,
            dir,
            data,
            port: free_port()?,
            as_postgres,
            keep,
        };
        cluster.pg_ctl(&["start"])?;
        Ok(cluster)
    }

    fn pg_ctl(&self, action: &[&str]) -> Result<()> {
        let dir_s = self.dir.display().to_string();
        let options = format!(
            "-p {} -k {dir_s} -c listen_addresses=127.0.0.1 -c fsync=off",
            self.port
        );
        let log = format!("{dir_s}/server.log");
        let mut args = vec![
            "-D",
            self.data.as_str(),
            "-o",
            options.as_str(),
            "-l",
            log.as_str(),
            "-w",
        ];
        args.extend_from_slice(action);
        run_pg(&self.bin.join("pg_ctl"), &args, self.as_postgres)
    }

    /// Connection string without user, password or dbname.
    pub fn base_dsn(&self) -> String {
        format!("host=127.0.0.1 port={}", self.port)
    }

    /// Writes a file into the data directory (configuration, certificates),
    /// readable by the server only, owned by it when it runs as postgres.
    pub fn write_data_file(&self, name: &str, contents: &[u8]) -> Result<()> {
        let path = Path::new(&self.data).join(name);
        std::fs::write(&path, contents)
            .map_err(|e| Error::internal(format!("cannot write {}: {e}", path.display())))?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| Error::internal(format!("cannot chmod {}: {e}", path.display())))?;
        if self.as_postgres {
            run_pg(
                Path::new("chown"),
                &["postgres", &path.display().to_string()],
                false,
            )?;
        }
        Ok(())
    }

    /// Appends settings to postgresql.conf.
    pub fn configure(&self, settings: &str) -> Result<()> {
        let path = Path::new(&self.data).join("postgresql.conf");
        let mut conf = std::fs::read_to_string(&path)
            .map_err(|e| Error::internal(format!("cannot read {}: {e}", path.display())))?;
        conf.push('\n');
        conf.push_str(settings);
        conf.push('\n');
        self.write_data_file("postgresql.conf", conf.as_bytes())
    }

    /// A fast restart: every session is disconnected.
    pub fn restart(&self) -> Result<()> {
        self.pg_ctl(&["-m", "fast", "restart"])
    }

    /// Keeps the cluster running until this process exits (a watchdog stops it then).
    fn outlive_on_watchdog(self) -> Result<String> {
        let pg_ctl = self.bin.join("pg_ctl").display().to_string();
        let stop = format!("{pg_ctl} -D {} -m immediate stop", self.data);
        let stop = if self.as_postgres {
            format!("runuser -u postgres -- {stop}")
        } else {
            stop
        };
        let watchdog = format!(
            "while kill -0 {pid} 2>/dev/null; do sleep 1; done; {stop} >/dev/null 2>&1; rm -rf {dir}",
            pid = std::process::id(),
            dir = self.dir.display()
        );
        Command::new("sh")
            .args(["-c", &watchdog])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| Error::internal(format!("cannot start the cluster watchdog: {e}")))?;
        let dsn = format!("{} user=postgres", self.base_dsn());
        std::mem::forget(self);
        Ok(dsn)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if self.keep {
            return;
        }
        let _ = self.pg_ctl(&["-m", "immediate", "stop"]);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Stops a kept cluster in `dir` and removes the directory.
pub fn stop_in(dir: &Path) -> Result<()> {
    let bin = find_bin_dir().ok_or_else(|| Error::internal("no pg_ctl was found"))?;
    let data = dir.join("data").display().to_string();
    let _ = run_pg(
        &bin.join("pg_ctl"),
        &["-D", &data, "-m", "fast", "-w", "stop"],
        is_root(),
    );
    std::fs::remove_dir_all(dir)
        .map_err(|e| Error::internal(format!("cannot remove {}: {e}", dir.display())))
}

/// Starts the shared throwaway cluster and returns its base connection string.
pub fn start_throwaway() -> Result<String> {
    Cluster::start(None)?.outlive_on_watchdog()
}
