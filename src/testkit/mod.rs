//! Finding a PostgreSQL to test against (and, later, to run the demo on),
//! and giving each caller a fresh database of its own.
//!
//! Discovery, in order: `FKCTL_TEST_DSN`; a local server at
//! `host=localhost user=postgres` (unless `FKCTL_PG_BIN` or
//! `FKCTL_TEST_FORCE_CLUSTER` is set); else a throwaway cluster started from
//! the PostgreSQL binaries in `FKCTL_PG_BIN`, or the local ones, in a temporary directory (as the `postgres` OS
//! user when running as root, since initdb refuses root). A watchdog process
//! stops that cluster and removes its directory when this process exits.

mod cluster;

pub use cluster::{stop_in, Cluster};

use crate::error::{Error, Result};
use crate::sql::ident::Ident;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;

/// A reachable server and how to reach it as a superuser.
#[derive(Debug)]
pub struct Server {
    /// Connection string without dbname.
    pub base_dsn: String,
    pub started_here: bool,
}

impl Server {
    pub fn dsn_for(&self, dbname: &str) -> String {
        format!("{} dbname={dbname}", self.base_dsn)
    }

    pub fn admin(&self) -> Result<postgres::Client> {
        postgres::Client::connect(&self.dsn_for("postgres"), postgres::NoTls).map_err(|e| {
            Error::new(
                crate::error::Kind::Unreachable,
                format!("cannot connect to the test server: {e}"),
            )
        })
    }
}

fn answers(base: &str) -> bool {
    let dsn = format!("{base} dbname=postgres connect_timeout=3");
    postgres::Client::connect(&dsn, postgres::NoTls)
        .and_then(|mut c| c.simple_query("SELECT 1"))
        .is_ok()
}

fn discover() -> Result<Server> {
    if let Ok(dsn) = std::env::var("FKCTL_TEST_DSN") {
        if !dsn.trim().is_empty() {
            return Ok(Server {
                base_dsn: dsn,
                started_here: false,
            });
        }
    }
    let local = "host=localhost user=postgres".to_string();
    // FKCTL_PG_BIN asks for a cluster from those binaries (another major
    // version), so the local server is not used then.
    let own_cluster = std::env::var_os("FKCTL_TEST_FORCE_CLUSTER").is_some()
        || cluster::bin_dir_override().is_some();
    if !own_cluster && answers(&local) {
        return Ok(Server {
            base_dsn: local,
            started_here: false,
        });
    }
    let base_dsn = cluster::start_throwaway()?;
    Ok(Server {
        base_dsn,
        started_here: true,
    })
}

static SERVER: OnceLock<std::result::Result<Server, String>> = OnceLock::new();

/// The shared server for this process, found (or started) once.
pub fn server() -> Result<&'static Server> {
    SERVER
        .get_or_init(|| discover().map_err(|e| e.to_string()))
        .as_ref()
        .map_err(|e| Error::internal(format!("no PostgreSQL to test against: {e}")))
}

/// A database created for one caller and dropped when it goes out of scope.
pub struct TestDatabase {
    pub name: String,
    pub dsn: String,
    server: &'static Server,
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

impl TestDatabase {
    pub fn create(prefix: &str) -> Result<TestDatabase> {
        Self::create_from(prefix, "template0 ENCODING 'UTF8'")
    }

    /// A copy of this database, file by file: the same rows at the same
    /// addresses, the same visibility map and statistics. Benchmarks start
    /// fkctl and the baseline from copies of one database, so that neither
    /// runs on a layout the other's earlier run left behind. This database
    /// must have no open sessions while it is copied.
    pub fn copy(&self, prefix: &str) -> Result<TestDatabase> {
        let quoted = Ident::from_catalog(self.name.clone()).quoted();
        Self::create_from(prefix, &format!("{quoted} STRATEGY FILE_COPY"))
    }

    fn create_from(prefix: &str, template: &str) -> Result<TestDatabase> {
        let server = server()?;
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let name = format!("fkctl_{prefix}_{}_{n}", std::process::id());
        let quoted = Ident::from_catalog(name.clone()).quoted();
        let mut admin = server.admin()?;
        // Separate statements: CREATE DATABASE refuses to run inside the
        // implicit transaction of a multi-statement query. template0 never has
        // sessions, so parallel creations do not collide on it; retry anyway
        // (autovacuum may be visiting another template).
        let _ = admin.batch_execute(&format!("DROP DATABASE IF EXISTS {quoted}"));
        let sql = format!("CREATE DATABASE {quoted} TEMPLATE {template}");
        let mut attempt = 0;
        loop {
            match admin.batch_execute(&sql) {
                Ok(()) => break,
                Err(e)
                    if attempt < 20
                        && e.code() == Some(&postgres::error::SqlState::OBJECT_IN_USE) =>
                {
                    attempt += 1;
                    std::thread::sleep(std::time::Duration::from_millis(50 * attempt));
                }
                Err(e) => {
                    let (_, said) = crate::error::describe_postgres(&e);
                    return Err(Error::internal(format!(
                        "cannot create test database {name}: {said}"
                    )));
                }
            }
        }
        Ok(TestDatabase {
            dsn: server.dsn_for(&name),
            name,
            server,
        })
    }

    pub fn connect(&self) -> Result<postgres::Client> {
        postgres::Client::connect(&self.dsn, postgres::NoTls)
            .map_err(|e| Error::internal(format!("cannot connect to {}: {e}", self.name)))
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let quoted = Ident::from_catalog(self.name.clone()).quoted();
        if let Ok(mut admin) = self.server.admin() {
            // WITH (FORCE) ends sessions a failed test left behind (PostgreSQL 13+).
            let _ = admin.batch_execute(&format!("DROP DATABASE IF EXISTS {quoted} WITH (FORCE)"));
        }
    }
}
