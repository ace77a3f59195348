//! Running a plan's steps against one database: checks, statements in one
//! transaction under a short lock timeout, retries with backoff, and the
//! blockers seen while waiting. The SQL run is the plan's, byte for byte.

pub mod guard;
pub mod interrupt;

use crate::catalog::activity;
use crate::connect::Target;
use crate::error::{describe_postgres, Error, Kind, Result};
use crate::plan::{Check, Expect, Step};
use crate::tui;
use postgres::types::ToSql;
use postgres::Client;
use std::time::{Duration, Instant};

/// What a check's query returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Count(i64),
    Flag(bool),
}

impl std::fmt::Display for Value {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Value::Count(n) => write!(f, "{n}"),
            Value::Flag(b) => write!(f, "{b}"),
        }
    }
}

/// How a transactional step went.
#[derive(Debug, Clone, Default)]
pub struct StepOutcome {
    pub retries: u32,
    /// Sessions that held conflicting locks while fkctl waited.
    pub blockers: Vec<String>,
    pub elapsed: Duration,
    /// Rows of the last statement, as text (for statements that return one value).
    pub returned: Option<String>,
}

pub struct Executor<'a> {
    pub target: &'a Target,
    /// Built once: creating a TLS context loads the system's root
    /// certificates, far too slow to repeat for every statement.
    tls: postgres_native_tls::MakeTlsConnector,
    pub environment: &'a str,
    /// Tables whose lock holders are reported while fkctl waits.
    pub watched: Vec<u32>,
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

impl<'a> Executor<'a> {
    /// An executor that reports lock holders on both tables and all their partitions.
    pub fn for_inspection(
        client: &mut Client,
        target: &'a Target,
        environment: &'a str,
        inspection: &crate::catalog::Inspection,
    ) -> Result<Executor<'a>> {
        let mut watched = vec![inspection.child.oid, inspection.parent.oid];
        watched.extend(crate::catalog::partition_oids(
            client,
            inspection.child.oid,
            inspection.parent.oid,
        )?);
        Executor::new(target, environment, watched)
    }

    pub fn new(
        target: &'a Target,
        environment: &'a str,
        watched: Vec<u32>,
    ) -> Result<Executor<'a>> {
        Ok(Executor {
            target,
            tls: target.tls_connector()?,
            environment,
            watched,
        })
    }
}

impl Executor<'_> {
    fn fail(&self, e: &postgres::Error, sql: &str, step: &Step) -> Error {
        let mut err = Error::from_postgres(e, sql)
            .with("environment", self.environment)
            .with("step", format!("{}. {}", step.number, step.title));
        if interrupt::interrupted() || err.kind == Kind::Interrupted {
            err.kind = Kind::Interrupted;
            err.message =
                "interrupted: the statement was cancelled and its transaction rolled back".into();
            err.next = Some(
                "nothing of this step was applied; run the same command again to continue".into(),
            );
        } else if err.kind == Kind::Unreachable {
            err.next = Some(crate::error::RECONNECT_ADVICE.into());
        } else if err.next.is_none() {
            err.kind = Kind::FailedMidway;
            err.next = Some("the step's transaction was rolled back; fix the cause above and run the same command again".into());
        }
        err
    }

    /// Runs a check and compares its single value with the expectation.
    pub fn check(&self, client: &mut Client, check: &Check, step: &Step) -> Result<Value> {
        let _running = self.running(client)?;
        let row = client
            .query_one(check.sql.as_str(), &[])
            .map_err(|e| self.fail(&e, &check.sql, step))?;
        let value = match row.try_get::<_, i64>(0) {
            Ok(n) => Value::Count(n),
            Err(_) => Value::Flag(row.try_get::<_, bool>(0).map_err(|e| {
                Error::internal(format!("check returned neither a count nor a flag: {e}"))
            })?),
        };
        let ok = match (&check.expect, &value) {
            (Expect::Equals(n), Value::Count(v)) => v == n,
            (Expect::AtMost(n), Value::Count(v)) => v <= n,
            (Expect::IsTrue, Value::Flag(b)) => *b,
            (Expect::IsFalse, Value::Flag(b)) => !*b,
            _ => false,
        };
        if ok {
            Ok(value)
        } else {
            Err(Error::precondition(format!(
                "check failed: {} (expected {}, found {value})",
                check.what,
                check.expect.describe()
            ))
            .with("environment", self.environment)
            .with("step", format!("{}. {}", step.number, step.title))
            .with("sql", check.sql.clone()))
        }
    }

    fn running(&self, client: &Client) -> Result<interrupt::Running> {
        Ok(interrupt::Running::start(
            client.cancel_token(),
            self.tls.clone(),
        ))
    }

    /// Runs the step's statements in one transaction, retrying on lock timeout.
    pub fn run(
        &self,
        client: &mut Client,
        step: &Step,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<StepOutcome> {
        let started = Instant::now();
        let mut outcome = StepOutcome::default();
        let retries = step.lock_retries.unwrap_or(0);
        loop {
            let bar = tui::spinner(format!("{}: {}", self.environment, step.title));
            let attempt = self.attempt(client, step, params);
            bar.finish_and_clear();
            match attempt {
                Ok(returned) => {
                    outcome.returned = returned;
                    outcome.elapsed = started.elapsed();
                    return Ok(outcome);
                }
                Err((e, sql)) => {
                    let (kind, said) = describe_postgres(&e);
                    if kind != Kind::LockNotAcquired || interrupt::interrupted() {
                        return Err(self.fail(&e, &sql, step));
                    }
                    let blockers = self.blockers(client);
                    // One entry per blocking session (its description changes as it ages).
                    for b in &blockers {
                        let pid = b.split(" (").next().unwrap_or(b);
                        if !outcome
                            .blockers
                            .iter()
                            .any(|seen| seen.split(" (").next() == Some(pid))
                        {
                            outcome.blockers.push(b.clone());
                        }
                    }
                    if outcome.retries >= retries {
                        let mut err = Error::new(
                            Kind::LockNotAcquired,
                            format!(
                                "could not get the lock for \"{}\" after {} retries",
                                step.title, outcome.retries
                            ),
                        )
                        .with("environment", self.environment)
                        .with("step", format!("{}. {}", step.number, step.title))
                        .with("sql", sql)
                        .with("postgres", said)
                        .with("retries", outcome.retries.to_string());
                        for b in &outcome.blockers {
                            err = err.with("blocked by", b.clone());
                        }
                        return Err(err.next("nothing was changed. Wait for (or end) the blocking session, then run the same command again"));
                    }
                    let delay = backoff(outcome.retries);
                    outcome.retries += 1;
                    eprintln!(
                        "  {}: lock not granted within lock_timeout (attempt {} of {}); blocked by {}; retrying in {} ms",
                        self.environment,
                        outcome.retries,
                        retries + 1,
                        if blockers.is_empty() { "a session that has since finished".to_string() } else { blockers.join("; ") },
                        delay.as_millis()
                    );
                    std::thread::sleep(delay);
                }
            }
        }
    }

    /// One attempt: BEGIN, the statements, COMMIT. The error carries the statement that failed.
    fn attempt(
        &self,
        client: &mut Client,
        step: &Step,
        params: &[&(dyn ToSql + Sync)],
    ) -> std::result::Result<Option<String>, (postgres::Error, String)> {
        let running = self.running(client).ok();
        let mut tx = client.transaction().map_err(|e| (e, "BEGIN".to_string()))?;
        let mut returned = None;
        for sql in &step.statements {
            let uses_params = sql.contains("$1");
            let rows = if uses_params {
                tx.query(sql.as_str(), params)
            } else {
                tx.query(sql.as_str(), &[])
            }
            .map_err(|e| (e, sql.clone()))?;
            returned = rows.first().and_then(|r| r.try_get::<_, String>(0).ok());
        }
        tx.commit().map_err(|e| (e, "COMMIT".to_string()))?;
        drop(running);
        Ok(returned)
    }

    /// Sessions holding granted locks on the watched tables, described for people.
    pub fn blockers(&self, client: &mut Client) -> Vec<String> {
        match activity::sessions(client, &self.watched, 1e9) {
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
}
