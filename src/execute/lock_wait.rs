//! Every wait on a lock is bounded. Each session fkctl opens has a
//! `lock_timeout` (see `connect`), so a statement that would queue behind
//! another session's lock fails after that long instead; this module turns
//! such a failure into a retry with backoff, says who holds the lock, and
//! gives up after the playbook's `lock_retries`. Reads and DDL alike.

use super::interrupt;
use crate::catalog::activity;
use crate::error::{Error, Kind, Result};
use crate::sql::ident::QualifiedName;
use postgres::Client;
use std::time::Duration;

/// Whose lock holders to name when a lock wait times out.
#[derive(Clone, Copy)]
pub enum Watched<'a> {
    /// These relations (both tables and their partitions, as inspected).
    Relations(&'a [u32]),
    /// These tables and all their partitions, looked up only when a lock
    /// wait times out (before the first inspection, nothing is known yet).
    Tables(&'a [&'a QualifiedName]),
    /// These relations, and the tables of fkctl's own schema (its journal
    /// and archive, which a step may wait for too), looked up when a lock
    /// wait times out: they may not exist before the run makes them.
    RelationsAndJournal(&'a [u32], &'a str),
}

impl Watched<'_> {
    fn relations(self, client: &mut Client) -> Vec<u32> {
        match self {
            Watched::Relations(oids) => oids.to_vec(),
            Watched::Tables(tables) => {
                crate::catalog::relation_family(client, tables).unwrap_or_default()
            }
            Watched::RelationsAndJournal(oids, schema) => {
                let mut all = oids.to_vec();
                all.extend(crate::catalog::schema_tables(client, schema).unwrap_or_default());
                all
            }
        }
    }
}

/// What waiting cost: how many retries, and who held the lock meanwhile.
#[derive(Debug, Clone, Default)]
pub struct Waited {
    pub retries: u32,
    /// One entry per blocking session, as first seen.
    pub blockers: Vec<String>,
}

/// Retry delay: exponential from 250 ms, capped at 10 s, with +-50% jitter
/// so that two waiting operators do not retry in step.
pub fn backoff(attempt: u32) -> Duration {
    let base = 250u64.saturating_mul(1u64 << attempt.min(6)).min(10_000);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let jitter = u64::from(nanos % 1000); // 0..1000 per mille
    Duration::from_millis(base / 2 + base * jitter / 1000)
}

/// Runs `work` until it succeeds, fails for another reason than a lock
/// timeout, or has been retried `retries` times. `work` must be safe to
/// repeat: it runs in its own transaction, rolled back when it fails.
pub fn with_lock_retries<T>(
    client: &mut Client,
    environment: &str,
    what: &str,
    retries: u32,
    watched: Watched<'_>,
    mut work: impl FnMut(&mut Client) -> Result<T>,
) -> Result<(T, Waited)> {
    let mut waited = Waited::default();
    loop {
        let err = match work(client) {
            Ok(value) => return Ok((value, waited)),
            Err(e) if e.kind == Kind::LockNotAcquired && !interrupt::interrupted() => e,
            Err(e) => return Err(e),
        };
        let relations = watched.relations(client);
        let blockers = lock_holders(client, &relations);
        for b in &blockers {
            let pid = b.split(" (").next().unwrap_or(b);
            if !waited
                .blockers
                .iter()
                .any(|seen| seen.split(" (").next() == Some(pid))
            {
                waited.blockers.push(b.clone());
            }
        }
        if waited.retries >= retries {
            return Err(gave_up(err, environment, what, &waited));
        }
        let delay = backoff(waited.retries);
        waited.retries += 1;
        eprintln!(
            "  {environment}: lock not granted within lock_timeout for \"{what}\" (attempt {} of {}); blocked by {}; retrying in {} ms",
            waited.retries,
            retries + 1,
            if blockers.is_empty() {
                "a session that has since finished".to_string()
            } else {
                blockers.join("; ")
            },
            delay.as_millis()
        );
        std::thread::sleep(delay);
    }
}

fn gave_up(mut err: Error, environment: &str, what: &str, waited: &Waited) -> Error {
    err.message = format!(
        "could not get the lock for \"{what}\" after {} retries",
        waited.retries
    );
    if !err.context.iter().any(|(l, _)| l == "environment") {
        err.context
            .insert(0, ("environment".to_string(), environment.to_string()));
    }
    err = err.with("retries", waited.retries.to_string());
    if waited.blockers.is_empty() {
        err = err.with(
            "blocked by",
            "a session that finished before fkctl could see it",
        );
    }
    for b in &waited.blockers {
        err = err.with("blocked by", b.clone());
    }
    err.next("nothing was changed by this step. Wait for (or end) the blocking session, then run the same command again")
}

/// Sessions holding granted locks on the watched tables, described for people
/// (their queries with literals redacted).
pub fn lock_holders(client: &mut Client, watched: &[u32]) -> Vec<String> {
    match activity::sessions(client, watched, 1e9) {
        Ok(sessions) => sessions
            .into_iter()
            .filter(|s| s.locks.iter().any(|l| !l.contains("(waiting)")))
            .map(|s| {
                format!(
                    "pid {} ({} / {}, {}, transaction open {}; {}): {}",
                    s.pid,
                    s.user,
                    if s.application.is_empty() {
                        "-"
                    } else {
                        &s.application
                    },
                    s.state,
                    s.transaction_age_s
                        .map_or("-".into(), |a| format!("{a:.1}s")),
                    s.locks.join(", "),
                    s.query
                )
            })
            .collect(),
        Err(_) => Vec::new(),
    }
}
