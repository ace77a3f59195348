//! `fkctl cleanup`: the loose replacement's worker. Takes queued parent keys
//! batch by batch and does to their child rows what the dropped foreign key
//! did, archived; time-boxed by the playbook's `loose:` limits; safe beside
//! itself and the application. No prompt: the drop that installed the
//! replacement was the confirmation.

use super::{connect, inspect_live, load_with_env, write_json, write_stdout};
use crate::catalog;
use crate::cli::args::Connection;
use crate::error::{Error, Kind, Result};
use crate::execute::{interrupt, BindValues};
use crate::journal::{Journal, Run};
use crate::kinds::foreign_key::loose::cleanup::Duty;
use crate::kinds::foreign_key::loose::plan::{self as loose_plan, CleanupPass};
use crate::kinds::foreign_key::loose::{finish_run_sql, LooseObjects};
use crate::kinds::foreign_key::repair::create_archive_sql;
use crate::metrics;
use crate::model::LooseState;
use crate::plan::Observed;
use crate::playbook::{LooseSettings, Playbook};
use postgres::Client;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub struct Options {
    /// Keep running, one run per interval, until Ctrl-C.
    pub watch: Option<Duration>,
    pub metrics_file: Option<PathBuf>,
    pub listen: Option<String>,
    pub output: crate::cli::args::Output,
}

/// What one run did.
#[derive(Debug, Default, Clone, Serialize)]
pub struct RunTotals {
    pub run_id: Option<String>,
    pub keys_taken: i64,
    pub keys_done: i64,
    pub child_rows_changed: i64,
    pub rows_archived: i64,
    pub rescheduled: i64,
    pub seconds: f64,
    /// Why the run ended: "queue empty", "max_runtime", "max_rows_per_run".
    pub stopped: &'static str,
    pub pending_after: i64,
}

pub fn run(path: &Path, connection: &Connection, options: Options) -> Result<()> {
    let env = connection.env.as_str();
    let (playbook, environment) = load_with_env(path, env)?;
    if environment.fleet.is_some() {
        if options.watch.is_some() || options.metrics_file.is_some() {
            return Err(Error::usage(format!("{env} is a fleet: --watch and --metrics-file run per database (--env {env}/TARGET); a fleet-wide cleanup is one --once run of every target")));
        }
        return super::fleet::cleanup(
            path,
            &environment,
            &connection.dsn,
            options.output == crate::cli::args::Output::Json,
        );
    }
    let (target, mut client) = connect(&playbook, &environment, &connection.dsn)?;
    let latest = metrics::serve::Latest::default();
    if let Some(addr) = &options.listen {
        let bound = metrics::serve::start(addr, latest.clone())?;
        eprintln!("serving metrics at http://{bound}/metrics");
    }
    let tls = target.tls_connector()?;
    loop {
        let totals = one_run(&mut client, &tls, &playbook, env)?;
        let state = read_state(&mut client, &playbook, env)?;
        let text = metrics::encode(&metrics::loose_families(&playbook.change, env, &state));
        if let Some(file) = &options.metrics_file {
            metrics::write_file(file, &text)?;
        }
        latest.set(text);
        report(&totals, &state, options.output)?;
        let Some(every) = options.watch else {
            return Ok(());
        };
        sleep_unless_interrupted(every);
    }
}

fn report(totals: &RunTotals, state: &LooseState, output: crate::cli::args::Output) -> Result<()> {
    match output {
        crate::cli::args::Output::Json => write_json(totals),
        crate::cli::args::Output::Text => write_stdout(&format!(
            "cleanup: {} queued key(s) handled, {} child row(s) changed and archived{}, {} rescheduled in {:.2} s ({}); {} pending{}\n",
            totals.keys_done,
            totals.child_rows_changed,
            totals.run_id.as_ref().map(|r| format!(" (run {r})")).unwrap_or_default(),
            totals.rescheduled,
            totals.seconds,
            totals.stopped,
            state.pending,
            if state.violating_child_rows > 0 {
                format!(", {} child row(s) still reference deleted parents (the constraint would have refused those deletes)", state.violating_child_rows)
            } else {
                String::new()
            }
        )),
    }
}

fn sleep_unless_interrupted(every: Duration) {
    let until = Instant::now() + every;
    while Instant::now() < until && !interrupt::interrupted() {
        std::thread::sleep(Duration::from_millis(100).min(every));
    }
}

fn read_state(client: &mut Client, playbook: &Playbook, env: &str) -> Result<LooseState> {
    let parent = catalog::relations::find(
        client,
        &playbook.constraint.ref_table,
        catalog::relations::PartitionKeys::Skip,
    )?
    .ok_or_else(|| {
        Error::precondition(format!(
            "the parent table {} does not exist",
            playbook.constraint.ref_table
        ))
        .with("environment", env)
    })?;
    catalog::loose::read(client, &loose_plan::objects(playbook), parent.oid)
}

/// One run: every pass until the queue has no ready key or a limit is hit.
pub fn one_run(
    client: &mut Client,
    tls: &crate::connect::Tls,
    playbook: &Playbook,
    env: &str,
) -> Result<RunTotals> {
    let inspection = inspect_live(client, playbook, env, "read the live catalog")?;
    if !inspection.loose.queue_exists {
        return Err(Error::precondition(format!(
            "no loose replacement is installed for change {} on {env}",
            playbook.change
        ))
        .with("environment", env)
        .next("fkctl drop installs it when the playbook has a loose: section; see fkctl status"));
    }
    // A cascade below the child added since the drop: deleting children
    // would change rows the cleanup does not archive.
    super::drop::refuse_unarchivable_loose(playbook, &inspection, env)?;
    let observed = Observed {
        environment: env,
        inspection: &inspection,
    };
    let passes = loose_plan::cleanup_passes(playbook, Some(&observed));
    let objects = loose_plan::objects(playbook);
    let mut worker = Worker {
        client,
        tls,
        playbook,
        env,
        objects: &objects,
        limits: playbook.loose.clone().unwrap_or_default(),
        started: Instant::now(),
        totals: RunTotals {
            stopped: "queue empty",
            ..RunTotals::default()
        },
        run: None,
    };
    let result = worker.passes(&passes, inspection.loose.pending);
    worker.finish(result.is_ok())?;
    result?;
    worker.totals.pending_after = read_state(worker.client, playbook, env)?.pending;
    Ok(worker.totals)
}

struct Worker<'a> {
    client: &'a mut Client,
    tls: &'a crate::connect::Tls,
    playbook: &'a Playbook,
    env: &'a str,
    objects: &'a LooseObjects,
    limits: LooseSettings,
    started: Instant,
    totals: RunTotals,
    /// The journal run whose id the archived rows carry (for `fkctl restore`);
    /// started only when there is something to do.
    run: Option<Run>,
}

/// One batch's result row.
struct Batch {
    taken: i64,
    done: i64,
    changed: i64,
    archived: i64,
}

impl Worker<'_> {
    fn passes(&mut self, passes: &[CleanupPass], pending: i64) -> Result<()> {
        if pending == 0 {
            return Ok(());
        }
        self.start_journal()?;
        for pass in passes {
            while self.may_continue() {
                let taken = self.batch_or_one_by_one(pass)?;
                if taken == 0 {
                    break;
                }
            }
        }
        Ok(())
    }

    fn start_journal(&mut self) -> Result<()> {
        let journal = Journal::new(&self.playbook.journal_schema);
        journal.ensure(self.client)?;
        self.ensure_archive()?;
        let run = journal.start_run(
            self.client,
            &self.playbook.change,
            "cleanup",
            self.env,
            &self.playbook.constraint,
        )?;
        self.totals.run_id = Some(run.id.clone());
        self.run = Some(run);
        Ok(())
    }

    /// The drop's install created the archive; an archive dropped since is
    /// created again, one cleanup at a time (concurrent CREATE TABLE IF NOT
    /// EXISTS of one name can fail).
    fn ensure_archive(&mut self) -> Result<()> {
        let schema = &self.playbook.journal_schema;
        let table = crate::kinds::foreign_key::repair::archive_table(schema).quoted();
        let exists: bool = crate::pg::relation_exists(self.client, &table)?;
        if exists {
            return Ok(());
        }
        let env = self.env;
        let fail =
            |e: postgres::Error, sql: &str| Error::from_postgres(&e, sql).with("environment", env);
        let mut tx = self.client.transaction().map_err(|e| fail(e, "BEGIN"))?;
        for sql in create_archive_sql(schema, &[]) {
            tx.batch_execute(&sql).map_err(|e| fail(e, &sql))?;
        }
        tx.commit().map_err(|e| fail(e, "COMMIT"))
    }

    /// Whether the run may take another batch; records why not.
    fn may_continue(&mut self) -> bool {
        if self.started.elapsed() >= self.limits.max_runtime {
            self.totals.stopped = "max_runtime";
            return false;
        }
        if u64::try_from(self.totals.child_rows_changed).unwrap_or(0)
            >= self.limits.max_rows_per_run
        {
            self.totals.stopped = "max_rows_per_run";
            return false;
        }
        true
    }

    /// One batch; if it fails (a lock wait, a row a trigger refuses), the
    /// same number of keys one at a time, each failing one rescheduled, so
    /// that one bad key never holds the others back. Returns keys taken.
    fn batch_or_one_by_one(&mut self, pass: &CleanupPass) -> Result<i64> {
        let batch_sql = pass.step.statements.last().cloned().unwrap_or_default();
        match self.batch(pass, &batch_sql) {
            Ok(taken) => Ok(taken),
            Err(e) if retry_key_by_key(&e) => {
                eprintln!("  a batch failed, retrying its keys one at a time: {e}");
                let mut taken = 0;
                for _ in 0..self.limits.batch_size {
                    match self.batch(pass, &pass.one_key_sql) {
                        Ok(0) => break,
                        Ok(n) => taken += n,
                        Err(e) if retry_key_by_key(&e) => {
                            let moved = self.reschedule(pass, &e.to_string())?;
                            if moved == 0 {
                                break;
                            }
                            taken += moved;
                        }
                        Err(e) => return Err(e),
                    }
                }
                Ok(taken)
            }
            Err(e) => Err(e),
        }
    }

    /// Runs one batch statement in its own transaction (the pass's SET
    /// LOCALs first); commits only if every changed row was archived.
    fn batch(&mut self, pass: &CleanupPass, sql: &str) -> Result<i64> {
        let run_id = self.totals.run_id.clone().unwrap_or_default();
        let constraint = self.playbook.constraint.name.as_str().to_string();
        let values = BindValues {
            run_id: &run_id,
            change: &self.playbook.change,
            constraint_name: &constraint,
            restore_run_id: None,
        };
        let params = values.for_step(&pass.step)?;
        let env = self.env.to_string();
        let fail = |e: postgres::Error, sql: &str| {
            Error::from_postgres(&e, sql)
                .with("environment", env.clone())
                .with("step", pass.step.title.clone())
        };
        let running = interrupt::Running::start(self.client.cancel_token(), self.tls.clone());
        let mut tx = self.client.transaction().map_err(|e| fail(e, "BEGIN"))?;
        let settings = &pass.step.statements[..pass.step.statements.len().saturating_sub(1)];
        for s in settings {
            tx.batch_execute(s).map_err(|e| fail(e, s))?;
        }
        let row = tx.query_one(sql, &params).map_err(|e| fail(e, sql))?;
        let batch = Batch {
            taken: row.try_get(0).map_err(|e| fail(e, sql))?,
            done: row.try_get(1).map_err(|e| fail(e, sql))?,
            changed: row.try_get(2).map_err(|e| fail(e, sql))?,
            archived: row.try_get(3).map_err(|e| fail(e, sql))?,
        };
        if pass.duty != Duty::Count && batch.changed != batch.archived {
            return Err(Error::internal(format!(
                "a cleanup batch changed {} child rows but archived {}; its transaction was rolled back",
                batch.changed, batch.archived
            ))
            .with("environment", self.env)
            .with("sql", sql.to_string()));
        }
        tx.commit().map_err(|e| fail(e, "COMMIT"))?;
        drop(running);
        self.totals.keys_taken += batch.taken;
        self.totals.keys_done += batch.done;
        self.totals.child_rows_changed += batch.changed;
        self.totals.rows_archived += batch.archived;
        Ok(batch.taken)
    }

    /// Puts the failing key back with a back-off; how many were (0 or 1).
    fn reschedule(&mut self, pass: &CleanupPass, error: &str) -> Result<i64> {
        let sql = &pass.reschedule_sql;
        let moved: i64 =
            crate::pg::query_scalar(self.client, sql, &[&self.playbook.change, &error])?;
        self.totals.rescheduled += moved;
        Ok(moved)
    }

    /// Adds the run to the counters (runs, duration, last success) and
    /// closes its journal record.
    fn finish(&mut self, ok: bool) -> Result<()> {
        self.totals.seconds = self.started.elapsed().as_secs_f64();
        let sql = finish_run_sql(self.objects);
        self.client
            .execute(
                sql.as_str(),
                &[&self.playbook.change, &self.totals.seconds, &ok],
            )
            .map_err(|e| Error::from_postgres(&e, &sql).with("environment", self.env))?;
        if let Some(run) = &self.run {
            run.finish(self.client, if ok { "cleaned" } else { "failed" }, None)?;
        }
        Ok(())
    }
}

/// A failure of the batch's own making (a lock wait, a refused row), not a
/// lost connection or an interrupt: worth retrying key by key.
fn retry_key_by_key(e: &Error) -> bool {
    !matches!(
        e.kind,
        Kind::Unreachable | Kind::Interrupted | Kind::Internal
    ) && !interrupt::interrupted()
}
