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

/// Runs openssl in `dir`; panics with its output if it fails.
fn openssl(dir: &std::path::Path, args: &[&str]) {
    let out = std::process::Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("openssl: {e}"));
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA, a server certificate for localhost and a client certificate for
/// the user postgres, signed by it (PEM; keys PKCS#8, as OpenSSL 3 writes them).
fn certificates(dir: &std::path::Path) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
            "-days",
            "2",
            "-subj",
            "/CN=fkctl-test-ca",
        ],
    );
    std::fs::write(
        dir.join("san.ext"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\n",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    for (name, cn) in [("server", "localhost"), ("client", "postgres")] {
        openssl(
            dir,
            &[
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                &format!("{name}.key"),
                "-out",
                &format!("{name}.csr"),
                "-subj",
                &format!("/CN={cn}"),
            ],
        );
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                &format!("{name}.csr"),
                "-CA",
                "ca.crt",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                &format!("{name}.crt"),
                "-days",
                "2",
                "-extfile",
                "san.ext",
            ],
        );
    }
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(
        dir.join("client.key"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap_or_else(|e| panic!("{e}"));
}

/// A throwaway cluster that takes only certificate logins over TCP
/// (`hostssl ... cert`, which is clientcert=verify-full); None (skipped)
/// when its PostgreSQL was built without TLS.
fn cert_cluster(dir: &std::path::Path) -> Option<fkctl::testkit::Cluster> {
    let cluster = fkctl::testkit::Cluster::start(None).unwrap_or_else(|e| panic!("{e}"));
    for name in ["server.crt", "server.key", "ca.crt"] {
        let bytes = std::fs::read(dir.join(name)).unwrap_or_else(|e| panic!("{e}"));
        cluster
            .write_data_file(name, &bytes)
            .unwrap_or_else(|e| panic!("{e}"));
    }
    cluster
        .write_data_file("pg_hba.conf", b"local all all trust\nhostssl all all 127.0.0.1/32 cert\nhostssl all all ::1/128 cert\n")
        .unwrap_or_else(|e| panic!("{e}"));
    cluster
        .configure("ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\nssl_ca_file = 'ca.crt'")
        .unwrap_or_else(|e| panic!("{e}"));
    match cluster.restart() {
        Ok(()) => Some(cluster),
        Err(e) => {
            eprintln!(
                "skipped: this PostgreSQL does not start with ssl = on (built without TLS?): {e}"
            );
            None
        }
    }
}

#[test]
fn a_client_certificate_logs_in_where_the_server_requires_one() {
    let dir = common::TempDir::new("client_cert");
    certificates(&dir.0);
    let Some(cluster) = cert_cluster(&dir.0) else {
        return;
    };
    let d = dir.0.display();
    let base = format!(
        "host=localhost port={} user=postgres dbname=postgres sslmode=verify-full sslrootcert={d}/ca.crt connect_timeout=5",
        cluster.port
    );
    let with_cert = format!("{base} sslcert={d}/client.crt sslkey={d}/client.key");
    let target = Target::from_dsn("test", &with_cert).unwrap_or_else(|e| panic!("{e}"));
    let mut client = target
        .connect(std::time::Duration::from_secs(1))
        .unwrap_or_else(|e| panic!("{e}"));
    let dn: Option<String> = client
        .query_one(
            "SELECT client_dn FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .unwrap_or_else(|e| panic!("{e}"))
        .get(0);
    assert_eq!(dn.as_deref(), Some("/CN=postgres"));

    // Without a certificate the server refuses the login.
    let refused = Target::from_dsn("test", &base)
        .and_then(|t| t.connect(std::time::Duration::from_secs(1)))
        .err()
        .unwrap_or_else(|| panic!("logged in without a certificate"));
    assert_eq!(refused.kind, Kind::Unreachable, "{refused}");

    // A key others can read is refused before connecting, as libpq does.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(
        dir.0.join("client.key"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let loose = Target::from_dsn("test", &with_cert)
        .and_then(|t| t.connect(std::time::Duration::from_secs(1)))
        .err()
        .unwrap_or_else(|| panic!("a world-readable key was used"));
    assert!(
        loose.to_string().contains("has group or world access"),
        "{loose}"
    );
    assert_eq!(loose.kind, Kind::Usage);
}
