//! A throwaway PostgreSQL cluster from the local binaries.

use crate::error::{Error, Result};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

fn find_bin_dir() -> Option<PathBuf> {
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

/// Starts a cluster on a free port and returns its base connection string.
pub fn start_throwaway() -> Result<String> {
    let bin = find_bin_dir().ok_or_else(|| {
        Error::internal("no local PostgreSQL answers and no initdb was found (install postgresql, or set FKCTL_TEST_DSN)")
    })?;
    let root = is_root();
    let dir = std::env::temp_dir().join(format!("fkctl-pg-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)
        .map_err(|e| Error::internal(format!("cannot create {}: {e}", dir.display())))?;
    let dir_s = dir.display().to_string();
    if root {
        run_pg(Path::new("chown"), &["postgres", &dir_s], false)?;
    }
    let data = format!("{dir_s}/data");
    run_pg(
        &bin.join("initdb"),
        &[
            "-D",
            &data,
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--no-sync",
        ],
        root,
    )?;
    let port = free_port()?;
    let options = format!("-p {port} -k {dir_s} -c listen_addresses=127.0.0.1 -c fsync=off");
    let log = format!("{dir_s}/server.log");
    run_pg(
        &bin.join("pg_ctl"),
        &["-D", &data, "-o", &options, "-l", &log, "-w", "start"],
        root,
    )?;
    // Stop the cluster when this process ends, however it ends.
    let pg_ctl = bin.join("pg_ctl").display().to_string();
    let stop = if root {
        format!("runuser -u postgres -- {pg_ctl} -D {data} -m immediate stop")
    } else {
        format!("{pg_ctl} -D {data} -m immediate stop")
    };
    let watchdog = format!(
        "while kill -0 {pid} 2>/dev/null; do sleep 1; done; {stop} >/dev/null 2>&1; rm -rf {dir_s}",
        pid = std::process::id()
    );
    Command::new("sh")
        .args(["-c", &watchdog])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| Error::internal(format!("cannot start the cluster watchdog: {e}")))?;
    Ok(format!("host=127.0.0.1 port={port} user=postgres"))
}
