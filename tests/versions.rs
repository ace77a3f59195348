//! The suite runs on the server version it was asked for: with FKCTL_PG_BIN
//! (CI sets it to PostgreSQL 18's binaries) every test database lives on a
//! cluster started from those binaries, not on the machine's server.

mod common;

use std::process::Command;

#[test]
fn tests_run_on_the_requested_server_version() {
    let db = common::database("version");
    let server_major =
        common::scalar_i64(&db, "SELECT current_setting('server_version_num')::int8") / 10000;
    eprintln!("tests run on PostgreSQL major version {server_major}");
    let Some(bin) = std::env::var_os("FKCTL_PG_BIN").filter(|v| !v.is_empty()) else {
        return;
    };
    let out = Command::new(std::path::Path::new(&bin).join("postgres"))
        .arg("--version")
        .output()
        .unwrap_or_else(|e| panic!("cannot run postgres --version from FKCTL_PG_BIN: {e}"));
    let text = String::from_utf8_lossy(&out.stdout);
    // "postgres (PostgreSQL) 18.6"
    let wanted: i64 = text
        .rsplit(' ')
        .next()
        .and_then(|v| v.trim().split('.').next())
        .and_then(|major| major.parse().ok())
        .unwrap_or_else(|| panic!("unexpected postgres --version output: {text}"));
    assert_eq!(server_major, wanted, "FKCTL_PG_BIN is {bin:?}");
}
