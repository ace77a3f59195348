//! One operator per change and per constraint in a database: two
//! session-level advisory locks, one keyed by the change name and one by the
//! constraint itself (schema, table, constraint name), so that two playbooks
//! with different `change:` names for the same foreign key cannot run at
//! once either. A second run gets "already running" with who holds it.
//!
//! A run whose client was killed can leave its backend behind for a moment,
//! still running its last statement and holding the locks. Each fkctl session
//! sets `client_connection_check_interval` (see `connect`), so the server
//! ends such a backend within about a second; fkctl waits a few seconds for
//! a holder that is an fkctl session to go, and when it does not, says
//! whether its client still runs on this machine and how to end it.

use crate::error::{Error, Result};
use crate::kinds::foreign_key::definition::ForeignKeyDef;
use postgres::Client;
use std::time::{Duration, Instant};

/// First advisory-lock key of a change lock: fkctl's own ("fkct" in ASCII);
/// the second is hashtext(change).
pub const LOCK_CLASS: i32 = 0x666b_6374;
/// First key of a constraint lock ("fkcc"); the second is hashtext of the
/// quoted `schema.table.constraint`.
pub const CONSTRAINT_LOCK_CLASS: i32 = 0x666b_6363;

/// How long to wait for a holder that is an fkctl session to go away: the
/// server ends a killed client's backend within about a second.
const ORPHAN_GRACE: Duration = Duration::from_secs(4);
/// Any other holder gets a moment too: a session that just ended may still
/// be on its way out of the server.
const LEAVING_GRACE: Duration = Duration::from_secs(1);

const TRY_SQL: &str = "SELECT pg_try_advisory_lock($1, hashtext($2))";
const UNLOCK_SQL: &str = "SELECT pg_advisory_unlock($1, hashtext($2))";
const HOLDER_SQL: &str = "\
SELECT a.pid, coalesce(a.application_name, ''), coalesce(a.usename::text, ''),
       coalesce(a.client_addr::text, 'local'), to_char(a.backend_start AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'),
       coalesce(a.state, ''), coalesce(a.query, ''),
       coalesce(extract(epoch FROM clock_timestamp() - a.query_start), 0)::float8
  FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
 WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 2
   AND l.classid = $1::int4::oid AND l.objid = hashtext($2)::oid";

/// The key that identifies the constraint across playbooks.
pub fn constraint_key(fk: &ForeignKeyDef) -> String {
    format!("{}.{}", fk.table.quoted(), fk.name.quoted())
}

struct Holder {
    pid: i32,
    application: String,
    description: String,
    active: bool,
}

fn try_lock(client: &mut Client, class: i32, key: &str) -> Result<bool> {
    client
        .query_one(TRY_SQL, &[&class, &key])
        .and_then(|r| r.try_get(0))
        .map_err(|e| Error::from_postgres(&e, TRY_SQL))
}

fn holder(client: &mut Client, class: i32, key: &str) -> Option<Holder> {
    let rows = client.query(HOLDER_SQL, &[&class, &key]).ok()?;
    let r = rows.first()?;
    let pid: i32 = r.try_get(0).ok()?;
    let application: String = r.try_get(1).ok()?;
    let state: String = r.try_get(5).ok()?;
    let query: String = r.try_get(6).ok()?;
    let running_s: f64 = r.try_get(7).ok()?;
    Some(Holder {
        pid,
        description: format!(
            "pid {pid} ({} as {}, from {}, connected since {}; {state}{}: {})",
            application,
            r.try_get::<_, String>(2).ok()?,
            r.try_get::<_, String>(3).ok()?,
            r.try_get::<_, String>(4).ok()?,
            if state == "active" {
                format!(" for {running_s:.1}s")
            } else {
                String::new()
            },
            crate::catalog::activity::redact_query(&query)
        ),
        application,
        active: state == "active",
    })
}

/// Takes one advisory lock, waiting a little for a holder that is an fkctl
/// session (it may be the backend of a killed run, which the server is ending).
fn take(
    client: &mut Client,
    class: i32,
    key: &str,
) -> Result<std::result::Result<(), Option<Holder>>> {
    let started = Instant::now();
    loop {
        if try_lock(client, class, key)? {
            return Ok(Ok(()));
        }
        let held_by = holder(client, class, key);
        let fkctl_session = held_by
            .as_ref()
            .is_some_and(|h| h.application.starts_with("fkctl"));
        let grace = if fkctl_session {
            ORPHAN_GRACE
        } else {
            LEAVING_GRACE
        };
        if started.elapsed() >= grace {
            return Ok(Err(held_by));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Takes the change's and the constraint's locks for the life of the
/// connection, or says who has them.
pub fn lock_change(
    client: &mut Client,
    change: &str,
    fk: &ForeignKeyDef,
    environment: &str,
) -> Result<()> {
    if let Err(held_by) = take(client, LOCK_CLASS, change)? {
        return Err(already_running(
            format!("change {change:?} is already running against the {environment} database"),
            held_by,
            environment,
        ));
    }
    let key = constraint_key(fk);
    if let Err(held_by) = take(client, CONSTRAINT_LOCK_CLASS, &key)? {
        // Give the change lock back: this run does nothing.
        let _ = client.query_one(UNLOCK_SQL, &[&LOCK_CLASS, &change]);
        return Err(already_running(
            format!(
                "another fkctl run (another playbook's change) is already working on {} of {} in the {environment} database",
                fk.name, fk.table
            ),
            held_by,
            environment,
        ));
    }
    Ok(())
}

fn already_running(message: String, held_by: Option<Holder>, environment: &str) -> Error {
    let Some(h) = held_by else {
        return Error::precondition(message)
            .with("environment", environment)
            .with("held by", "a session that has since gone")
            .next("run the same command again");
    };
    let mut e = Error::precondition(message)
        .with("environment", environment)
        .with("held by", h.description.clone());
    let from_fkctl = h.application.starts_with("fkctl");
    if from_fkctl && h.active && !fkctl_runs_here() {
        e = e.with(
            "note",
            format!("no fkctl process runs on this machine: pid {} may be the backend of a run whose client was killed, still finishing its last statement (PostgreSQL 14+ ends it within seconds; older servers only when the statement ends)", h.pid),
        );
        return e.next(format!(
            "wait a few seconds and run again; if pid {} stays, end it with SELECT pg_cancel_backend({}); (its transaction rolls back, nothing is lost) and run again",
            h.pid, h.pid
        ));
    }
    e.next("wait for that run to finish (fkctl status shows it), or ask who runs it; do not run two at once")
}

/// Whether another fkctl process runs on this machine (Linux: /proc; elsewhere
/// we cannot tell and assume it may).
fn fkctl_runs_here() -> bool {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return true;
    };
    let me = std::process::id().to_string();
    entries.flatten().any(|entry| {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        name.chars().all(|c| c.is_ascii_digit())
            && name != me.as_str()
            && std::fs::read_to_string(entry.path().join("comm"))
                .is_ok_and(|comm| comm.trim() == "fkctl")
    })
}
