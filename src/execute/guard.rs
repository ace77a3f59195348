//! One operator per change per database: a session-level advisory lock keyed
//! by the change name. A second run gets "already running" with who holds it.

use crate::error::{Error, Result};
use postgres::Client;

/// First advisory-lock key: fkctl's own ("fkct" in ASCII), the second is hashtext(change).
pub const LOCK_CLASS: i32 = 0x666b_6374;

const TRY_SQL: &str = "SELECT pg_try_advisory_lock($1, hashtext($2))";
const HOLDER_SQL: &str = "\
SELECT a.pid, coalesce(a.application_name, ''), coalesce(a.usename::text, ''),
       coalesce(a.client_addr::text, 'local'), to_char(a.backend_start AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')
  FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
 WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 2
   AND l.classid = $1::int4::oid AND l.objid = hashtext($2)::oid";

/// Takes the change's lock for the life of the connection, or says who has it.
pub fn lock_change(client: &mut Client, change: &str, environment: &str) -> Result<()> {
    let got: bool = client
        .query_one(TRY_SQL, &[&LOCK_CLASS, &change])
        .map(|r| r.get(0))
        .map_err(|e| Error::from_postgres(&e, TRY_SQL))?;
    if got {
        return Ok(());
    }
    let holder = client
        .query(HOLDER_SQL, &[&LOCK_CLASS, &change])
        .ok()
        .and_then(|rows| {
            rows.first().map(|r| {
                format!(
                    "pid {} ({} as {}, from {}, connected since {})",
                    r.get::<_, i32>(0),
                    r.get::<_, String>(1),
                    r.get::<_, String>(2),
                    r.get::<_, String>(3),
                    r.get::<_, String>(4)
                )
            })
        })
        .unwrap_or_else(|| "a session that has since gone".to_string());
    Err(Error::precondition(format!("change {change:?} is already running against the {environment} database"))
        .with("environment", environment)
        .with("held by", holder)
        .next("wait for that run to finish (fkctl status shows it), or ask who runs it; do not run two at once"))
}
