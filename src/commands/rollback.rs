//! `fkctl rollback`: put the constraint back, for incidents.
//! ADD ... NOT VALID -> orphan census -> archived purge in batches -> verify
//! -> VALIDATE -> verify. Every step reads the catalog first, so a run killed
//! anywhere is continued by the next one from where the database is.

use super::{connect, inspect_live, label, load_with_env, write_json};
use crate::cli::args::{Connection, Output};
use crate::error::{Error, Kind, Result};
use crate::execute::{guard, interrupt, BindValues, Executor, Value};
use crate::journal::{record_step, Journal, Run};
use crate::kinds::foreign_key::plan::spec::{
    resolve_rollback, Recorded, RollbackOverrides, RollbackSpec,
};
use crate::kinds::foreign_key::plan::{drift, vacuum};
use crate::kinds::foreign_key::repair as purge;
use crate::model::LeafState;
use crate::model::{Inspection, Lookup};
use crate::plan::{rollback_plan, Observed, Status, Step, StepKind};
use crate::playbook::{OrphanPolicy, Playbook, VacuumPolicy};
use crate::render;
use crate::tui;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use postgres::Client;
use serde::Serialize;
use std::path::Path;
use std::time::Instant;

pub struct Options {
    pub yes: bool,
    pub max_orphans: Option<u64>,
    pub use_playbook_definition: bool,
    /// For a fleet: only these targets (empty: all).
    pub targets: Vec<String>,
    pub output: Output,
}

#[derive(Debug, Default, Serialize)]
pub struct Summary {
    pub environment: String,
    pub outcome: &'static str,
    /// Where the restored definition came from: "snapshot" or "playbook".
    pub definition_source: &'static str,
    pub definition: String,
    pub orphans_found: Option<i64>,
    pub rows_archived: i64,
    pub batches: u64,
    pub validated: bool,
    pub run_id: Option<String>,
    pub elapsed_ms: u128,
}

/// Narration for people: stdout normally, stderr when stdout carries JSON.
struct Say {
    json: bool,
}

impl Say {
    fn line(&self, text: impl AsRef<str>) {
        if self.json {
            eprintln!("{}", text.as_ref());
        } else {
            println!("{}", text.as_ref());
        }
    }
}

fn ask(question: &str, protected: bool, env: &str) -> Result<bool> {
    if protected {
        tui::confirm_by_name(question, env)
    } else {
        tui::confirm(question)
    }
}

pub fn run(path: &Path, connection: &Connection, options: Options) -> Result<()> {
    let env = connection.env.as_str();
    let (loaded, environment) = load_with_env(path, env)?;
    if environment.fleet.is_some() {
        return super::fleet::rollback(path, &loaded, &environment, connection, &options);
    }
    if !options.yes && !tui::interactive() {
        return Err(Error::usage("fkctl rollback asks before the purge and before VALIDATE, but there is no terminal to ask on")
            .next(format!("in a script or runbook: fkctl rollback {} --env {env} --yes", path.display())));
    }
    let say = Say {
        json: options.output == Output::Json,
    };
    interrupt::install();
    let started = Instant::now();
    let mut summary = Summary {
        environment: env.to_string(),
        ..Summary::default()
    };
    let result = rollback_in(
        &loaded,
        &environment,
        connection,
        &options,
        &say,
        &mut summary,
    );
    summary.elapsed_ms = started.elapsed().as_millis();
    let result = result.map_err(|e| label(e, env, "rollback"));
    if let Err(e) = &result {
        if summary.outcome.is_empty() {
            summary.outcome = refusal_or_failure(e);
        }
    }
    if options.output == Output::Json {
        write_json(&summary)?;
    } else if result.is_ok() {
        say.line(format!(
            "\n{}: {} in {} ms; orphans found {}, rows archived {}, definition from the {}",
            env,
            summary.outcome,
            summary.elapsed_ms,
            summary
                .orphans_found
                .map_or("-".to_string(), |n| n.to_string()),
            summary.rows_archived,
            summary.definition_source
        ));
    }
    result
}

/// The rollback on one environment: resolve, inspect, plan, ask, run the
/// plan's steps, read the catalog back.
fn rollback_in(
    loaded: &Playbook,
    environment: &crate::playbook::Environment,
    connection: &Connection,
    options: &Options,
    say: &Say,
    summary: &mut Summary,
) -> Result<()> {
    let env = environment.name.as_str();
    let (target, mut client) = connect(loaded, environment, &connection.dsn)?;
    say.line(format!("== rollback on {env} ({}) ==", target.description));
    guard::lock_change(&mut client, &loaded.change, &loaded.constraint, env)?;
    let journal = Journal::new(&loaded.journal_schema);
    let spec = resolve(&mut client, &journal, loaded, options, say)?;
    let playbook = &spec.playbook;
    summary.definition_source = spec.source.as_str();
    summary.definition = playbook.constraint.constraint_clause();
    let inspection = inspect_live(&mut client, playbook, env, "pre-checks")?;
    if refuse_or_done(playbook, &inspection, env, say, summary)? {
        return Ok(());
    }
    super::check_lock_timeout(playbook, &inspection, env)?;
    announce_cascade(playbook, &inspection, say);
    let observed = Observed {
        environment: env,
        inspection: &inspection,
    };
    let plan = rollback_plan(playbook, Some(&observed));
    let exec = Executor::for_inspection(&target, env, &inspection, playbook.safety.lock_retries)?
        .watching_journal(&playbook.journal_schema);
    let question = format!("Roll back {} on {env}?", playbook.constraint.name);
    if !options.yes && !ask(&question, environment.protected, env)? {
        summary.outcome = "declined";
        return Err(Error::declined(format!(
            "at your request before the rollback on {env}; nothing was changed"
        )));
    }
    journal.ensure(&mut client)?;
    let fk = &playbook.constraint;
    let run = journal.start_run(&mut client, &playbook.change, "rollback", env, fk)?;
    summary.run_id = Some(run.id.clone());
    let outcome = RollbackRun {
        client: &mut client,
        exec: &exec,
        run: &run,
        playbook,
        say,
        options,
        summary,
        child_bytes: inspection.child.total_bytes,
    }
    .steps(&plan.steps)
    .and_then(|()| {
        if !summary.outcome.is_empty() {
            return Ok(()); // stopped before VALIDATE
        }
        // The catalog is the truth: read the constraint back (pg_constraint
        // only: the tables are the ones just inspected, their oids unchanged).
        let after = crate::kinds::foreign_key::catalog::lookup(
            &mut client,
            inspection.server.version_num,
            inspection.child.oid,
            &playbook.constraint.table,
            &playbook.constraint.name,
        )
        .map_err(|e| label(e, env, "verify the restored constraint"))?;
        verify_restored(playbook, &after, env, summary)
    });
    let (label_text, message) = match &outcome {
        Ok(()) => (summary.outcome, None),
        Err(e) => (refusal_or_failure(e), Some(e.to_string())),
    };
    let finished = run.finish(&mut client, label_text, message.as_deref());
    outcome?;
    finished?;
    summary.rows_archived = archived(&mut client, &exec, playbook, &run)?;
    Ok(())
}

/// The outcome word for a run that ended in an error (journal and JSON).
fn refusal_or_failure(e: &Error) -> &'static str {
    match e.kind {
        Kind::Precondition => "refused",
        Kind::LockNotAcquired => "lock not acquired",
        Kind::Interrupted => "interrupted",
        Kind::Usage => "usage error",
        Kind::Declined => "declined",
        Kind::Unreachable => "unreachable",
        _ => "failed",
    }
}

/// Resolves what this run restores, once: the drop-time snapshot (read from
/// the journal) unless told otherwise, and the command line's limits.
fn resolve(
    client: &mut Client,
    journal: &Journal,
    loaded: &Playbook,
    options: &Options,
    say: &Say,
) -> Result<RollbackSpec> {
    let snapshot = journal.snapshot(client, &loaded.change, &loaded.constraint)?;
    let recorded = snapshot.and_then(|s| {
        s.foreign_key().map(|definition| Recorded {
            definition,
            text: s.definition,
            run_id: s.run_id,
            taken_at: s.taken_at,
        })
    });
    let spec = resolve_rollback(
        loaded,
        recorded.as_ref(),
        &RollbackOverrides {
            max_orphans: options.max_orphans,
            use_playbook_definition: options.use_playbook_definition,
        },
    );
    if !spec.snapshot_drift.is_empty() {
        say.line("  the drop-time snapshot differs from the playbook:");
        for d in &spec.snapshot_drift {
            say.line(format!(
                "    {:<20} playbook {:<16} snapshot {}",
                d.field, d.playbook, d.database
            ));
        }
    }
    say.line(format!("  {}", spec.explanation));
    Ok(spec)
}

/// Stops early when there is nothing to do, or when going on would be unsafe.
fn refuse_or_done(
    playbook: &Playbook,
    inspection: &Inspection,
    env: &str,
    say: &Say,
    summary: &mut Summary,
) -> Result<bool> {
    let fk = &playbook.constraint;
    match &inspection.constraint {
        Lookup::NotAForeignKey { contype } => {
            return Err(Error::precondition(format!(
                "{} on {} is a constraint of type {contype:?}, not a foreign key",
                fk.name, fk.table
            ))
            .with("environment", env));
        }
        Lookup::Found(live) => {
            let differences = drift::compare(fk, &live.definition);
            if !differences.is_empty() {
                let e = super::drift_refusal(format!("a constraint named {} exists on {env} but differs from the definition to restore", fk.name), env, "to restore", &differences);
                return Err(e.next("drop the stray constraint by hand (or fix the playbook), then run the rollback again"));
            }
            if live.validated && live.enforced {
                say.line(format!(
                    "  nothing to do: {} is present and valid on {env}",
                    fk.name
                ));
                summary.outcome = "already valid";
                summary.validated = true;
                return Ok(true);
            }
        }
        Lookup::Absent => {}
    }
    let stray = inspection.leaves.iter().find_map(|l| match &l.state {
        LeafState::Different(definition) => Some((l, definition)),
        _ => None,
    });
    if let Some((leaf, definition)) = stray {
        return Err(Error::precondition(format!(
            "partition {} already has a constraint named {} that is not the one to restore",
            leaf.table, fk.name
        ))
        .with("environment", env)
        .with("partition has", definition.clone())
        .next("drop that stray constraint from the partition by hand (or fix the playbook), then run the rollback again"));
    }
    refuse_unsafe_purge(playbook, inspection, env)?;
    Ok(false)
}

/// Refuses a purge policy that would change rows fkctl could not archive,
/// or could not find again to restore.
fn refuse_unsafe_purge(playbook: &Playbook, inspection: &Inspection, env: &str) -> Result<()> {
    let fk = &playbook.constraint;
    if playbook.rollback.orphans == OrphanPolicy::Nullify {
        let not_null = crate::kinds::foreign_key::plan::impact::not_null_keys(inspection);
        if !not_null.is_empty() {
            return Err(Error::precondition(format!(
                "rollback.orphans is nullify but {} of {} cannot be NULL",
                not_null.join(", "),
                fk.table
            ))
            .with("environment", env)
            .next("use archive-delete or abort, or make the column nullable first"));
        }
        if inspection.child_identity.is_none() {
            return Err(Error::precondition(format!(
                "rollback.orphans is nullify but {} has no primary key, replica-identity index or unique index on NOT NULL columns: a nullified row could not be found again by fkctl restore",
                fk.table
            ))
            .with("environment", env)
            .next("add a primary key to the table, or use archive-delete or abort; nothing was changed"));
        }
        if !inspection.child_key_updates.is_empty() {
            let mut e = Error::precondition(format!(
                "rollback.orphans is nullify but ({}) of {} are referenced with an ON UPDATE action: setting them to NULL would change rows of other tables that fkctl does not archive; nothing was changed",
                fk.columns.iter().map(|c| c.display()).collect::<Vec<_>>().join(", "),
                fk.table
            ))
            .with("environment", env);
            for action in &inspection.child_key_updates {
                e = e.with("would set off", action.describe());
            }
            return Err(e.next("use archive-delete (it archives what deleting sets off) or abort"));
        }
    }
    if playbook.rollback.orphans == OrphanPolicy::ArchiveDelete {
        refuse_unarchivable_cascade(fk, inspection, env)?;
    }
    Ok(())
}

/// Refuses a purge whose deletes would set off ON DELETE actions below the
/// child that fkctl cannot archive, naming each table and why.
fn refuse_unarchivable_cascade(
    fk: &crate::kinds::foreign_key::definition::ForeignKeyDef,
    inspection: &Inspection,
    env: &str,
) -> Result<()> {
    let refused = crate::kinds::foreign_key::plan::cascade::refusals(inspection);
    if refused.is_empty() {
        return Ok(());
    }
    let mut e = Error::precondition(format!(
        "deleting orphans of {} would set off ON DELETE actions below it that fkctl cannot archive; nothing was changed",
        fk.table
    ))
    .with("environment", env);
    for why in refused {
        e = e.with("cannot archive", why);
    }
    Err(e.next("use rollback.orphans: nullify (keeps the rows) or abort, or change those foreign keys first; fkctl never changes rows it cannot archive"))
}

/// Before anything changes, what the purge sets off below the child (and
/// archives): the DBA sees every table whose rows will leave or change.
fn announce_cascade(playbook: &Playbook, inspection: &Inspection, say: &Say) {
    if playbook.rollback.orphans != OrphanPolicy::ArchiveDelete {
        return;
    }
    let lines = crate::kinds::foreign_key::plan::cascade::tree_lines(inspection);
    if lines.is_empty() {
        return;
    }
    say.line(format!(
        "  deleting orphans of {} sets off ON DELETE actions below it; each purge batch archives those rows too:",
        playbook.constraint.table
    ));
    for line in lines {
        say.line(format!("  {}- {}", "  ".repeat(line.depth), line.text));
    }
}

/// A purge batch that the cascade count check rolled back, in plain words.
fn explain_cascade_batch(mut e: Error) -> Error {
    let said = e
        .context
        .iter()
        .find(|(label, _)| label == "postgres")
        .and_then(|(_, text)| text.split_once("\"fkctl: "))
        .map(|(_, rest)| rest.trim_end_matches('"').to_string());
    if let Some(said) = said {
        e.message = format!("a purge batch was rolled back: the cascade below the child did not change exactly the rows fkctl archived ({said})");
        e.kind = Kind::FailedMidway;
        e.next = Some("no row of that batch changed and earlier batches are complete; a row was probably added under a purged row while the batch ran (or a trigger changed rows of those tables). Run the rollback again: it lists and purges what is left".to_string());
    }
    e
}

fn verify_restored(
    playbook: &Playbook,
    after: &Lookup,
    env: &str,
    summary: &mut Summary,
) -> Result<()> {
    let live = match after {
        Lookup::Found(live) => Some(live),
        _ => None,
    }
    .ok_or_else(|| {
        Error::new(
            Kind::FailedMidway,
            "the constraint is missing after the rollback",
        )
        .with("environment", env)
    })?;
    let differences = drift::compare(&playbook.constraint, &live.definition);
    if !differences.is_empty() || !live.validated || !live.enforced {
        return Err(Error::new(
            Kind::FailedMidway,
            "the restored constraint is not the one intended, or not validated",
        )
        .with("environment", env)
        .with("database", live.pg_definition.clone()));
    }
    summary.validated = true;
    summary.outcome = "restored";
    Ok(())
}

/// The rows the run archived, whichever archive table holds them.
fn archived(
    client: &mut Client,
    exec: &Executor<'_>,
    playbook: &Playbook,
    run: &Run,
) -> Result<i64> {
    // With no orphan to purge, the archive may never have been created.
    let Some(table) = crate::journal::archive::readable(client, &playbook.journal_schema)? else {
        return Ok(0);
    };
    let sql = format!("SELECT count(*) FROM {table} WHERE run_id = $1");
    exec.read_count(client, &sql, &[&run.id], "count the rows the rollback archived")
        .map_err(|mut e| {
            e.next = Some("the rollback itself is complete: the constraint is back and validated (see above); only this count was not read. Once the blocking session is gone, fkctl status shows the rows the run archived".to_string());
            e
        })
}

struct RollbackRun<'a> {
    client: &'a mut Client,
    exec: &'a Executor<'a>,
    run: &'a Run,
    playbook: &'a Playbook,
    say: &'a Say,
    options: &'a Options,
    summary: &'a mut Summary,
    /// The child's size (tables, indexes, TOAST): whether VACUUM pays after the purge.
    child_bytes: i64,
}

/// How often the collect -> purge -> verify cycle may repeat: a row whose
/// address changed under fkctl (an UPDATE) is found again by the next cycle.
const PURGE_ROUNDS: usize = 3;

/// The steps that list and purge orphans again when the check before
/// VALIDATE still finds some, found in the plan by kind.
struct RepairSteps<'s> {
    archive: &'s Step,
    collect: &'s Step,
    batch: &'s Step,
}

impl<'s> RepairSteps<'s> {
    fn find(steps: &'s [Step]) -> Option<RepairSteps<'s>> {
        let of = |pred: fn(StepKind) -> bool| steps.iter().find(|s| pred(s.kind));
        Some(RepairSteps {
            archive: of(|k| k == StepKind::PrepareArchive)?,
            collect: of(|k| k == StepKind::CollectOrphans)?,
            batch: of(|k| matches!(k, StepKind::PurgeOrphans | StepKind::NullifyOrphans))?,
        })
    }
}

// The questions after "Roll back ...?" are y/N even on a protected
// environment: its name is typed once per command, for the first one.
impl RollbackRun<'_> {
    /// Runs the plan's steps in the order the plan gives, by kind.
    fn steps(&mut self, steps: &[Step]) -> Result<()> {
        let env = self.exec.environment;
        let mut orphans = 0;
        let mut validation_confirmed = false;
        // The drain archives what it removes, before the census.
        let draining = steps.iter().any(|s| s.kind == StepKind::DrainLoose);
        // The constraint already there NOT VALID: an earlier run got past
        // that step, and may have purged before it was stopped.
        let resumed = steps
            .iter()
            .any(|s| s.kind.adds() && matches!(s.status, Status::AlreadyDone(_)));
        for step in steps {
            match step.kind {
                StepKind::DrainLoose => self.drain(step)?,
                StepKind::RemoveLoose => self.ddl_step(step, "removed the loose replacement")?,
                StepKind::CollectOrphans => self.plain_step(step)?,
                StepKind::CountOrphans => {
                    // The census comes before any change: a refusal (over
                    // max_orphans, policy abort, an answer of "no") leaves
                    // the database as it was.
                    orphans = self.census(step)?;
                    if orphans > 0 && !self.confirm_purge(orphans)? {
                        return Err(Error::declined(
                            "before the purge at your request; nothing was changed",
                        )
                        .with("environment", env)
                        .next("run the rollback again when ready"));
                    }
                }
                StepKind::RefuseOrphans => self.refuse(step)?,
                kind if kind.adds() => self.ddl_step(step, "added NOT VALID")?,
                StepKind::PrepareArchive if orphans > 0 || draining => self.plain_step(step)?,
                StepKind::PurgeOrphans | StepKind::NullifyOrphans if orphans > 0 => {
                    self.batches(step)?;
                }
                StepKind::PrepareArchive | StepKind::PurgeOrphans | StepKind::NullifyOrphans => {}
                StepKind::VacuumChild => self.vacuum(step, orphans, resumed)?,
                StepKind::VerifyNoOrphans => self.verify(step, steps)?,
                kind if kind.validates() => {
                    if !validation_confirmed {
                        validation_confirmed = true;
                        if !self.confirm_validation(steps)? {
                            self.summary.outcome = "stopped before VALIDATE";
                            return Err(Error::declined("before VALIDATE at your request: the constraint stays NOT VALID (new rows are checked)")
                                .with("environment", env)
                                .next("run the rollback again to validate"));
                        }
                    }
                    let repairs = !steps.iter().any(|s| s.kind == StepKind::VerifyNoOrphans);
                    match kind {
                        StepKind::AttachConstraint => {
                            self.ddl_step(step, "attached the partitions' validated copies")?
                        }
                        StepKind::ValidateConstraint | StepKind::ValidatePartition if repairs => {
                            self.validate_or_repair(step, steps)?
                        }
                        _ => self.ddl_step(step, "validated")?,
                    }
                }
                _ => {
                    return Err(Error::internal(format!(
                        "a rollback has no use for step {}",
                        step.id
                    )))
                }
            }
        }
        Ok(())
    }

    /// One cleanup run of the loose replacement (its own journal run, whose
    /// id the archived rows carry), unless the catalog showed nothing queued.
    fn drain(&mut self, step: &Step) -> Result<()> {
        self.say.line(super::step_text(step));
        if let Status::AlreadyDone(why) = &step.status {
            self.say.line(format!("   already done: {why}"));
            return Ok(());
        }
        let (exec, playbook) = (self.exec, self.playbook);
        let totals = record_step(self.client, Some(self.run), step, |c| {
            let t = super::cleanup::one_run(c, exec.tls(), playbook, exec.environment)?;
            let detail = format!(
                "{} key(s), {} child row(s) archived",
                t.keys_done, t.rows_archived
            );
            Ok((t, 0, Vec::new(), Some(detail)))
        })?;
        self.say.line(format!(
            "   drained {} queued key(s): {} child row(s) changed and archived{} ({}; {} left queued)",
            totals.keys_done,
            totals.child_rows_changed,
            totals.run_id.map(|r| format!(" under run {r}")).unwrap_or_default(),
            totals.stopped,
            totals.pending_after
        ));
        Ok(())
    }

    /// A step whose statements run as they are (listing orphans, creating the archive).
    fn plain_step(&mut self, step: &Step) -> Result<()> {
        self.say.line(super::step_text(step));
        let exec = self.exec;
        record_step(self.client, Some(self.run), step, |c| {
            exec.run(c, step, &[])
                .map(|o| ((), o.retries, o.blockers, None))
        })
    }

    /// VACUUM after the purge when `rollback.vacuum` and the child's size
    /// say so (see `plan::vacuum`); otherwise says why not and goes on. Only
    /// an optimisation: a failure is reported and VALIDATE goes ahead.
    fn vacuum(&mut self, step: &Step, purged: i64, resumed: bool) -> Result<()> {
        let policy = self.playbook.rollback.vacuum;
        let bytes = Some(self.child_bytes);
        // A resumed run may purge nothing itself while the rows its stopped
        // predecessor deleted are still there, dead: it weighs the child's
        // dead rows too (the application's among them). A fresh run weighs
        // only its own purge, so a busy child's dead rows alone never cost a
        // VACUUM. The server's count is an estimate (reset by a crash) and
        // decides only an optimisation: unreadable, it is 0.
        let dead: i64 = if resumed {
            let dead_sql = vacuum::dead_rows_sql(&self.playbook.constraint.table);
            crate::pg::query_scalar(self.client, &dead_sql, &[]).unwrap_or(0)
        } else {
            0
        };
        let weight = purged.max(dead);
        if !vacuum::runs(policy, weight, bytes) {
            if weight > 0 {
                let why = match (policy, vacuum::auto_threshold(bytes)) {
                    (VacuumPolicy::Never, _) => "rollback.vacuum is never".to_string(),
                    (_, Some(t)) => format!(
                        "{} row(s) purged and {} dead in the child, under the {} that make it pay on this child",
                        render::count(purged),
                        render::count(dead),
                        render::count(t)
                    ),
                    (_, None) => {
                        "the child is under 1 GB, where VALIDATE gains nothing from it".to_string()
                    }
                };
                self.say.line(format!(
                    "   (no VACUUM before validating: {why}; rollback.vacuum: always forces one)"
                ));
            }
            return Ok(());
        }
        self.say.line(super::step_text(step));
        let exec = self.exec;
        let done = record_step(self.client, Some(self.run), step, |c| {
            exec.run_autocommit(c, step)
                .map(|o| (o.elapsed, o.retries, o.blockers, None))
        });
        match done {
            Ok(took) => self
                .say
                .line(format!("   vacuumed in {} ms", took.as_millis())),
            Err(e) if e.kind == Kind::Interrupted || interrupt::interrupted() => return Err(e),
            Err(e) => {
                // The session's settings may be left as the failed step set them.
                let _ = self.client.batch_execute("RESET statement_timeout");
                self.say.line(format!(
                    "   VACUUM failed, going on to VALIDATE without it (it only makes VALIDATE faster): {}",
                    e.message
                ));
            }
        }
        Ok(())
    }

    fn refuse(&mut self, step: &Step) -> Result<()> {
        self.say.line(super::step_text(step));
        let check = step
            .before
            .as_ref()
            .ok_or_else(|| Error::internal("refusal without its check"))?;
        let exec = self.exec;
        record_step(self.client, Some(self.run), step, |c| exec.check(c, check, step).map(|v| (v, 0, Vec::new(), None)))
            .map_err(|e| e.next("rollback.orphans is abort: nothing was changed. Clean the orphans up (fkctl orphans --sample shows them), then run the rollback again"))?;
        Ok(())
    }

    /// No orphan may remain before VALIDATE. Rows orphaned after the census
    /// (before NOT VALID checked new rows), or whose address changed under
    /// fkctl, are listed and purged again, a bounded number of times.
    fn verify(&mut self, step: &Step, steps: &[Step]) -> Result<()> {
        self.say.line(super::step_text(step));
        let Some(check) = &step.before else {
            return Ok(());
        };
        let exec = self.exec;
        let mut verified = record_step(self.client, Some(self.run), step, |c| {
            exec.check(c, check, step).map(|v| (v, 0, Vec::new(), None))
        });
        let repair = RepairSteps::find(steps);
        for round in 0..PURGE_ROUNDS {
            let (e, repair) = match (verified, &repair) {
                (Ok(_), _) => return Ok(()),
                (Err(e), Some(repair)) if e.kind == Kind::Precondition => (e, repair),
                (Err(mut e), _) => {
                    // NOT VALID is in place by now: not a refusal before any change.
                    if e.kind == Kind::Precondition {
                        e.kind = Kind::FailedMidway;
                        e = e.next("rows were orphaned after the census; the constraint stays NOT VALID (new rows are checked). Run the rollback again");
                    }
                    return Err(e);
                }
            };
            self.say.line(format!(
                "   round {}: rows were orphaned after the census, or their address changed under fkctl",
                round + 2
            ));
            if !self.options.yes
                && !tui::confirm("List those rows and purge them too, archiving each one?")?
            {
                let mut e = e.next("the constraint stays NOT VALID (new rows are checked); run the rollback again to purge the rest");
                e.kind = Kind::Declined;
                e.message = format!("at your request after NOT VALID: {}", e.message);
                return Err(e);
            }
            self.plain_step(repair.archive)?;
            self.plain_step(repair.collect)?;
            self.batches(repair.batch)?;
            verified = exec.check(self.client, check, step);
        }
        verified.map(|_| ()).map_err(|mut e| {
            e.kind = Kind::FailedMidway;
            e.next("orphans keep appearing while fkctl purges them: find what writes them (the constraint is NOT VALID, so new rows are already checked), then run the rollback again")
        })
    }

    /// VALIDATE, the last check: when it finds rows orphaned after the
    /// census (23503), they are listed and purged (archived) and VALIDATE
    /// runs again, at most PURGE_ROUNDS times.
    fn validate_or_repair(&mut self, step: &Step, steps: &[Step]) -> Result<()> {
        let repair = RepairSteps::find(steps);
        let mut round = 0;
        loop {
            let e = match self.ddl_step(step, "validated") {
                Ok(()) => return Ok(()),
                Err(e) => e,
            };
            let (Some(repair), true) = (&repair, e.sqlstate() == Some("23503")) else {
                return Err(e);
            };
            round += 1;
            if round > PURGE_ROUNDS {
                return Err(e.next("orphans keep appearing while fkctl purges them: find what writes them (the constraint is NOT VALID, so new rows are already checked), then run the rollback again"));
            }
            self.say.line(format!(
                "   round {}: VALIDATE found orphaned rows the purge did not handle (written before NOT VALID took effect, or moved by an UPDATE while listed); listing and purging them too",
                round + 1
            ));
            if !self.options.yes
                && !tui::confirm("List those rows and purge them too, archiving each one?")?
            {
                let mut e = e.next("the constraint stays NOT VALID (new rows are checked); run the rollback again to purge the rest");
                e.kind = Kind::Declined;
                e.message = format!("at your request after NOT VALID: {}", e.message);
                return Err(e);
            }
            self.plain_step(repair.archive)?;
            self.plain_step(repair.collect)?;
            self.batches(repair.batch)?;
        }
    }

    fn confirm_validation(&self, steps: &[Step]) -> Result<bool> {
        let pending = steps
            .iter()
            .any(|s| s.kind.validates() && s.status == Status::Pending);
        if !pending || self.options.yes {
            return Ok(true);
        }
        let env = self.exec.environment;
        tui::confirm(&format!(
            "Validate {} on {env} now? (it scans the table; reads and writes go on)",
            self.playbook.constraint.name
        ))
    }

    /// The orphan count, recorded in the summary even when it is over the
    /// limit, so that every rendering reports the number found.
    fn census(&mut self, census: &Step) -> Result<i64> {
        let env = self.exec.environment;
        self.say.line(super::step_text(census));
        let check = census
            .before
            .as_ref()
            .ok_or_else(|| Error::internal("census without its check"))?;
        let exec = self.exec;
        let bar = tui::spinner(format!("{env}: counting orphans"));
        let summary = &mut *self.summary;
        let counted = record_step(self.client, Some(self.run), census, |c| {
            let v = exec.measure(c, check, census)?;
            if let Value::Count(n) = v {
                summary.orphans_found = Some(n);
            }
            let v = exec.judge(check, census, v)?;
            Ok((v.clone(), 0, Vec::new(), Some(v.to_string())))
        });
        bar.finish_and_clear();
        let orphans = match counted {
            Ok(Value::Count(n)) => n,
            Ok(Value::Flag(_)) => return Err(Error::internal("the census returned a flag")),
            Err(e) if e.kind == Kind::Precondition => {
                return Err(e.next(format!(
                    "nothing was changed. Look at them with fkctl orphans --env {env} --sample 20; if they really must go, raise the limit for this run with --max-orphans N"
                )))
            }
            Err(e) => return Err(e),
        };
        self.say.line(format!("   {orphans} orphaned row(s)"));
        Ok(orphans)
    }

    /// Asks before the purge (unless --yes); true to go on.
    fn confirm_purge(&self, orphans: i64) -> Result<bool> {
        if self.options.yes || self.playbook.rollback.orphans == OrphanPolicy::Abort {
            return Ok(true);
        }
        let env = self.exec.environment;
        let question = format!(
            "{} {orphans} orphaned row(s) of {} on {env}, archiving each one in {}?",
            if self.playbook.rollback.orphans == OrphanPolicy::Nullify {
                "Set the key to NULL in"
            } else {
                "Delete"
            },
            self.playbook.constraint.table,
            purge::typed::view(&self.playbook.journal_schema)
        );
        tui::confirm(&question)
    }

    /// Runs one DDL step with its checks before and after, unless the
    /// catalog showed it already done when the plan was made.
    fn ddl_step(&mut self, step: &Step, done: &str) -> Result<()> {
        self.say.line(super::step_text(step));
        if let Status::AlreadyDone(why) = &step.status {
            self.say.line(format!("   already done: {why}"));
            return Ok(());
        }
        let exec = self.exec;
        let out = record_step(self.client, Some(self.run), step, |c| {
            if let Some(check) = &step.before {
                exec.check(c, check, step)?;
            }
            let out = exec.run(c, step, &[])?;
            if let Some(check) = &step.after {
                exec.check_after(c, check, step)?;
            }
            let (r, b) = (out.retries, out.blockers.clone());
            Ok((out, r, b, None))
        })?;
        self.say.line(format!(
            "   {done} in {} ms ({} lock retries)",
            out.elapsed.as_millis(),
            out.retries
        ));
        Ok(())
    }

    /// Deletes (or nullifies) the listed orphans batch by batch, each batch
    /// archived in the statement that removes it, until the list is empty.
    fn batches(&mut self, batch: &Step) -> Result<()> {
        let remaining_sql = purge::remaining_listed_sql();
        let listed = self.count(&remaining_sql)?;
        if listed == 0 {
            return Ok(());
        }
        self.say.line(super::step_text(batch));
        let bar = ProgressBar::with_draw_target(
            Some(u64::try_from(listed).unwrap_or(0)),
            ProgressDrawTarget::stderr(),
        );
        if let Ok(style) =
            ProgressStyle::with_template("{bar:40} {pos}/{len} rows ({per_sec}, ETA {eta})")
        {
            bar.set_style(style);
        }
        let values = BindValues {
            run_id: &self.run.id,
            change: &self.playbook.change,
            constraint_name: self.playbook.constraint.name.as_str(),
            restore_run_id: None,
        };
        let params = values.for_step(batch)?;
        let exec = self.exec;
        let client = &mut *self.client;
        let summary = &mut *self.summary;
        let done = record_step(client, Some(self.run), batch, |c| {
            // Each batch says how many addresses it took off the list; the
            // list is empty when one takes none (no count of the list per batch).
            let mut prepared = crate::execute::Prepared::default();
            loop {
                let taken: u64 = exec
                    .run_prepared(c, batch, &params, &mut prepared)
                    .map_err(explain_cascade_batch)?
                    .returned
                    .as_deref()
                    .and_then(|t| t.parse().ok())
                    .ok_or_else(|| {
                        Error::internal("a purge batch did not say how many rows it took")
                    })?;
                if taken == 0 {
                    break;
                }
                summary.batches += 1;
                bar.inc(taken);
            }
            Ok((
                (),
                0,
                Vec::new(),
                Some(format!("{listed} listed row(s) handled")),
            ))
        });
        bar.finish_and_clear();
        done
    }

    fn count(&mut self, sql: &str) -> Result<i64> {
        crate::pg::query_scalar(self.client, sql, &[])
    }
}
