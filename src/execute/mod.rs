//! Running a plan's steps against one database: checks, statements in one
//! transaction under a short lock timeout, retries with backoff, and the
//! blockers seen while waiting. The SQL run is the plan's, byte for byte.

pub mod guard;
pub mod interrupt;
pub mod lock_wait;

pub use lock_wait::backoff;

use crate::connect::Target;
use crate::error::{Error, Kind, Result};
use crate::plan::{Bind, Check, Expect, Step};
use crate::tui;
use postgres::types::ToSql;
use postgres::Client;
use std::time::{Duration, Instant};

/// The values a run gives to the plan's [`Bind`]s.
pub struct BindValues<'a> {
    pub run_id: &'a str,
    pub change: &'a str,
    pub constraint_name: &'a str,
    /// For restore: the run whose archived rows go back.
    pub restore_run_id: Option<&'a str>,
}

impl<'a> BindValues<'a> {
    /// The parameters for `step`, in the order its binds name them.
    pub fn for_step(&self, step: &Step) -> Result<Vec<&(dyn ToSql + Sync + 'a)>> {
        step.binds
            .iter()
            .map(|b| -> Result<&(dyn ToSql + Sync + 'a)> {
                Ok(match b {
                    Bind::RunId => &self.run_id,
                    Bind::Change => &self.change,
                    Bind::ConstraintName => &self.constraint_name,
                    Bind::RestoreRunId => self.restore_run_id.as_ref().ok_or_else(|| {
                        Error::internal(format!("step {} needs the run to restore", step.id))
                    })?,
                })
            })
            .collect()
    }
}

/// Statements parsed on one connection, by their SQL, for a step that runs
/// many times (see [`Executor::run_prepared`]). Named prepared statements
/// outlive the transaction that parsed them, and PostgreSQL plans them
/// again by itself when a table they read is dropped and created again.
#[derive(Default)]
pub struct Prepared {
    statements: std::collections::HashMap<String, postgres::Statement>,
}

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

impl StepOutcome {
    /// The rows a batch of a restore list moved (see
    /// `repair::listed_moved_as_put`): None once the list is done; 0 for a
    /// batch whose rows all had to wait.
    pub fn listed_batch_moved(&self) -> Result<Option<i64>> {
        self.returned
            .as_deref()
            .map(|text| {
                text.parse()
                    .map_err(|_| Error::internal("the restore batch did not return its row count"))
            })
            .transpose()
    }
}

pub struct Executor<'a> {
    pub target: &'a Target,
    /// Built once: creating a TLS context loads the system's root
    /// certificates, far too slow to repeat for every statement.
    tls: crate::connect::Tls,
    pub environment: &'a str,
    /// Tables whose lock holders are reported while fkctl waits.
    pub watched: Vec<u32>,
    /// Lock-timeout retries for checks (reads), as for the playbook's DDL.
    pub read_retries: u32,
    /// fkctl's own schema, whose tables' lock holders are named too.
    journal: Option<String>,
}

impl<'a> Executor<'a> {
    /// An executor that reports lock holders on both tables and all their
    /// partitions, as the inspection found them.
    pub fn for_inspection(
        target: &'a Target,
        environment: &'a str,
        inspection: &crate::model::Inspection,
        read_retries: u32,
    ) -> Result<Executor<'a>> {
        Executor::new(
            target,
            environment,
            inspection.watched.clone(),
            read_retries,
        )
    }

    pub fn new(
        target: &'a Target,
        environment: &'a str,
        watched: Vec<u32>,
        read_retries: u32,
    ) -> Result<Executor<'a>> {
        Ok(Executor {
            target,
            tls: target.tls_connector()?,
            environment,
            watched,
            read_retries,
            journal: None,
        })
    }

    /// Also names the holders of locks on the tables of fkctl's own schema
    /// (journal, archive) when a step waits for one of them.
    pub fn watching_journal(mut self, schema: &crate::sql::ident::Ident) -> Executor<'a> {
        self.journal = Some(schema.as_str().to_string());
        self
    }
}

impl Executor<'_> {
    /// Whose lock holders to name when a wait times out.
    fn watched_now(&self) -> lock_wait::Watched<'_> {
        match &self.journal {
            Some(schema) => lock_wait::Watched::RelationsAndJournal(&self.watched, schema),
            None => lock_wait::Watched::Relations(&self.watched),
        }
    }

    /// The TLS connector, for cancelling a statement another part runs.
    pub fn tls(&self) -> &crate::connect::Tls {
        &self.tls
    }

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
        } else if err.kind == Kind::LockNotAcquired {
            // Retried, then explained, by lock_wait.
        } else if err.next.is_none() {
            err.kind = Kind::FailedMidway;
            err.next = Some("the step's transaction was rolled back; fix the cause above and run the same command again".into());
        }
        err
    }

    /// Runs a check's query and returns its single value, without judging it.
    /// A lock wait is bounded and retried like a DDL step's.
    pub fn measure(&self, client: &mut Client, check: &Check, step: &Step) -> Result<Value> {
        let (row, _) = lock_wait::with_lock_retries(
            client,
            self.environment,
            &step.title,
            self.read_retries,
            self.watched_now(),
            |c| {
                let _running = self.running(c)?;
                c.query_one(check.sql.as_str(), &[])
                    .map_err(|e| self.fail(&e, &check.sql, step))
            },
        )?;
        match row.try_get::<_, i64>(0) {
            Ok(n) => Ok(Value::Count(n)),
            Err(_) => Ok(Value::Flag(row.try_get::<_, bool>(0).map_err(|e| {
                Error::internal(format!("check returned neither a count nor a flag: {e}"))
                    .with("sql", check.sql.clone())
            })?)),
        }
    }

    /// Runs `work` (reads outside any step: fkctl's archive, mostly) with
    /// its lock waits bounded and retried like a check's, naming who holds
    /// the lock (a rollback of another change altering the archive). `what`
    /// says what was being read.
    pub fn bounded<T>(
        &self,
        client: &mut Client,
        what: &str,
        mut work: impl FnMut(&mut Client) -> Result<T>,
    ) -> Result<T> {
        let (value, _) = lock_wait::with_lock_retries(
            client,
            self.environment,
            what,
            self.read_retries,
            self.watched_now(),
            |c| {
                let _running = self.running(c)?;
                work(c).map_err(|e| e.with("environment", self.environment))
            },
        )?;
        Ok(value)
    }

    /// One count, [`Executor::bounded`].
    pub fn read_count(
        &self,
        client: &mut Client,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
        what: &str,
    ) -> Result<i64> {
        self.bounded(client, what, |c| crate::pg::query_scalar(c, sql, params))
    }

    /// Runs a check and compares its single value with the expectation.
    pub fn check(&self, client: &mut Client, check: &Check, step: &Step) -> Result<Value> {
        let value = self.measure(client, check, step)?;
        self.judge(check, step, value)
    }

    /// A check after a step's change committed: a mismatch is not a refused
    /// precondition (something did change), so it is reported as failed
    /// part-way (exit 6), with what was found.
    pub fn check_after(&self, client: &mut Client, check: &Check, step: &Step) -> Result<Value> {
        self.check(client, check, step).map_err(|mut e| {
            if e.kind == Kind::Precondition {
                e.kind = Kind::FailedMidway;
                e.message = format!("after the step committed, {}", e.message);
            }
            e
        })
    }

    /// The value if it is what the check expects, else a precondition error saying what was found.
    pub fn judge(&self, check: &Check, step: &Step, value: Value) -> Result<Value> {
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

    /// Runs the step's statements in one transaction, retrying on lock
    /// timeout. `params` are the values of `step.binds` (see [`BindValues`]).
    pub fn run(
        &self,
        client: &mut Client,
        step: &Step,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<StepOutcome> {
        self.run_prepared(client, step, params, &mut Prepared::default())
    }

    /// [`Executor::run`] for a step that runs again and again on one
    /// connection (a purge's batches): each statement is parsed once, into
    /// `prepared`, which the caller keeps for that connection only.
    pub fn run_prepared(
        &self,
        client: &mut Client,
        step: &Step,
        params: &[&(dyn ToSql + Sync)],
        prepared: &mut Prepared,
    ) -> Result<StepOutcome> {
        if params.len() != step.binds.len() {
            return Err(Error::internal(format!(
                "step {} takes {} parameter(s), {} given",
                step.id,
                step.binds.len(),
                params.len()
            )));
        }
        let (returned, mut outcome) = self.with_retries(client, step, |c| {
            self.attempt(c, step, params, prepared)
                .map_err(|(e, sql)| self.fail(&e, &sql, step))
        })?;
        outcome.returned = returned;
        Ok(outcome)
    }

    /// Runs the step's statements one by one outside any transaction
    /// (VACUUM refuses one), retried on lock timeout like [`Executor::run`];
    /// the session's lock_timeout bounds each wait.
    pub fn run_autocommit(&self, client: &mut Client, step: &Step) -> Result<StepOutcome> {
        let ((), outcome) = self.with_retries(client, step, |c| {
            let _running = self.running(c)?;
            step.statements
                .iter()
                .try_for_each(|sql| c.batch_execute(sql).map_err(|e| self.fail(&e, sql, step)))
        })?;
        Ok(outcome)
    }

    /// `work` under the step's lock-timeout retries, with a spinner while
    /// it runs; the outcome says how long it took and who blocked it.
    fn with_retries<T>(
        &self,
        client: &mut Client,
        step: &Step,
        mut work: impl FnMut(&mut Client) -> Result<T>,
    ) -> Result<(T, StepOutcome)> {
        let started = Instant::now();
        let (value, waited) = lock_wait::with_lock_retries(
            client,
            self.environment,
            &step.title,
            step.lock_retries.unwrap_or(self.read_retries),
            self.watched_now(),
            |c| {
                let bar = tui::spinner(format!("{}: {}", self.environment, step.title));
                let done = work(c);
                bar.finish_and_clear();
                done
            },
        )?;
        let outcome = StepOutcome {
            retries: waited.retries,
            blockers: waited.blockers,
            elapsed: started.elapsed(),
            returned: None,
        };
        Ok((value, outcome))
    }

    /// One attempt: BEGIN, the statements, COMMIT. The error carries the statement that failed.
    fn attempt(
        &self,
        client: &mut Client,
        step: &Step,
        params: &[&(dyn ToSql + Sync)],
        prepared: &mut Prepared,
    ) -> std::result::Result<Option<String>, (postgres::Error, String)> {
        let running = self.running(client).ok();
        let mut tx = client.transaction().map_err(|e| (e, "BEGIN".to_string()))?;
        let mut returned = None;
        for sql in &step.statements {
            // A transaction's own settings take no parameters and return
            // nothing: one round trip, not a parse and an execute.
            if sql.starts_with("SET LOCAL ") {
                tx.batch_execute(sql).map_err(|e| (e, sql.clone()))?;
                continue;
            }
            let statement = match prepared.statements.get(sql) {
                Some(statement) => statement.clone(),
                None => {
                    let statement = tx.prepare(sql.as_str()).map_err(|e| (e, sql.clone()))?;
                    prepared.statements.insert(sql.clone(), statement.clone());
                    statement
                }
            };
            // A statement of a step with binds takes them all or none (a
            // purge batch and the check that follows it in its transaction):
            // the server says which once it has parsed the statement.
            let rows = if statement.params().is_empty() {
                tx.query(&statement, &[])
            } else {
                tx.query(&statement, params)
            }
            .map_err(|e| (e, sql.clone()))?;
            returned = rows.first().and_then(|r| r.try_get::<_, String>(0).ok());
        }
        tx.commit().map_err(|e| (e, "COMMIT".to_string()))?;
        drop(running);
        Ok(returned)
    }
}
