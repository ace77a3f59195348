//! sslmode against the real server's TLS. Debian's PostgreSQL serves the
//! self-signed "snakeoil" certificate (CN and SAN localhost), which is its
//! own root: verify-full must accept it for host=localhost and refuse it for
//! 127.0.0.1, and any mode that verifies must refuse a foreign root.
//! When the server has no TLS (e.g. a throwaway test cluster), the tests say
//! so and check nothing.

mod common;

use fkctl::connect::Target;
use fkctl::error::Kind;

const SNAKEOIL: &str = "/etc/ssl/certs/ssl-cert-snakeoil.pem";
const FOREIGN_ROOTS: &str = "/etc/ssl/certs/ca-certificates.crt";

/// The base connection string of a local TLS server with the snakeoil certificate, if there is one.
fn tls_server() -> Option<String> {
    let server = fkctl::testkit::server().ok()?;
    let mut admin = server.admin().ok()?;
    let ssl: String = admin.query_one("SHOW ssl", &[]).ok()?.get(0);
    let cert: String = admin.query_one("SHOW ssl_cert_file", &[]).ok()?.get(0);
    let port: String = admin.query_one("SHOW port", &[]).ok()?.get(0);
    if ssl != "on" || cert != SNAKEOIL || std::fs::metadata(SNAKEOIL).is_err() {
        eprintln!("skipped: the test server has no TLS with {SNAKEOIL}");
        return None;
    }
    Some(format!(
        "port={port} user=postgres dbname=postgres connect_timeout=5"
    ))
}

fn connect(dsn: &str) -> Result<bool, fkctl::error::Error> {
    let target = Target::from_dsn("test", dsn)?;
    let mut client = target.connect(std::time::Duration::from_secs(1))?;
    let row = client
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .map_err(|e| fkctl::error::Error::from_postgres(&e, "pg_stat_ssl"))?;
    Ok(row.get(0))
}

#[test]
fn disable_and_require_follow_libpq() {
    let Some(base) = tls_server() else { return };
    assert_eq!(
        connect(&format!("host=localhost {base} sslmode=disable")).ok(),
        Some(false)
    );
    assert_eq!(
        connect(&format!("host=localhost {base} sslmode=require")).ok(),
        Some(true)
    );
    assert_eq!(
        connect(&format!("host=127.0.0.1 {base} sslmode=prefer")).ok(),
        Some(true)
    );
}

#[test]
fn verify_full_checks_the_chain_and_the_host_name() {
    let Some(base) = tls_server() else { return };
    let ok = connect(&format!(
        "host=localhost {base} sslmode=verify-full sslrootcert={SNAKEOIL}"
    ));
    assert_eq!(ok.as_ref().ok(), Some(&true), "{ok:?}");
    let wrong_host = connect(&format!(
        "host=127.0.0.1 {base} sslmode=verify-full sslrootcert={SNAKEOIL}"
    ));
    assert_eq!(
        wrong_host.as_ref().err().map(|e| e.kind),
        Some(Kind::Unreachable),
        "{wrong_host:?}"
    );
    let ca_only = connect(&format!(
        "host=127.0.0.1 {base} sslmode=verify-ca sslrootcert={SNAKEOIL}"
    ));
    assert_eq!(
        ca_only.as_ref().ok(),
        Some(&true),
        "verify-ca does not check the host: {ca_only:?}"
    );
    let foreign = connect(&format!(
        "host=localhost {base} sslmode=verify-ca sslrootcert={FOREIGN_ROOTS}"
    ));
    assert_eq!(
        foreign.as_ref().err().map(|e| e.kind),
        Some(Kind::Unreachable),
        "{foreign:?}"
    );
}

#[test]
fn verify_modes_need_a_root_certificate() {
    let Some(base) = tls_server() else { return };
    let missing = connect(&format!(
        "host=localhost {base} sslmode=verify-full sslrootcert=/nonexistent/root.crt"
    ));
    let e = missing.err();
    assert_eq!(e.as_ref().map(|e| e.kind), Some(Kind::Usage));
    assert!(e
        .map(|e| e.to_string())
        .unwrap_or_default()
        .contains("cannot read sslrootcert /nonexistent/root.crt"));
}
