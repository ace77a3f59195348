//! `fkctl drop`: the staged, interactive removal, one environment at a time.

use super::fleet::FleetDrop;
use super::{connect, inspect_live, label, select_environments};
use crate::error::{Error, Result};
use crate::execute::{guard, interrupt, Executor};
use crate::journal::{record_step, Journal, Run};
use crate::kinds::foreign_key::plan::{drift, impact};
use crate::model::{Inspection, Lookup};
use crate::plan::{drop_plan, Observed, Status, Step, StepKind};
use crate::playbook::{self, Environment, Playbook};
use crate::tui;
use postgres::Client;
use std::path::Path;

/// What one environment's run showed, for the gate before the next one.
#[derive(Debug, Default, serde::Serialize)]
pub struct Evidence {
    pub(super) environment: String,
    pub(super) outcome: &'static str,
    pub(super) orphans: Option<i64>,
    pub(super) drop_ms: Option<u128>,
    pub(super) retries: u32,
    pub(super) blockers: Vec<String>,
    pub(super) run_id: Option<String>,
    /// For a fleet: every target's result.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) targets: Option<serde_json::Value>,
}

pub struct Options {
    /// One JSON document (every environment's evidence) on stdout.
    pub output: crate::cli::args::Output,
    /// For a fleet: only these targets (empty: all).
    pub targets: Vec<String>,
    pub dry_run: bool,
    pub yes: bool,
    /// Why a later environment goes before an earlier one is done (journaled).
    pub out_of_order: Option<String>,
}

pub fn run(
    path: &Path,
    env: Option<&str>,
    dsn: &[(String, String)],
    options: Options,
) -> Result<()> {
    let Options {
        output,
        targets,
        dry_run,
        yes,
        out_of_order,
    } = options;
    let json = output == crate::cli::args::Output::Json;
    if json {
        super::narrate_to_stderr();
    }
    let playbook = playbook::load(path)?;
    let environments = select_environments(&playbook, env)?;
    refuse_unattended(env, yes, dry_run, &environments)?;
    interrupt::install();
    if let Some(name) = env {
        if out_of_order.is_none() {
            earlier_environments_done(&playbook, name, dsn)?;
        }
    }
    let mut done: Vec<Evidence> = Vec::new();
    for environment in &environments {
        if let Some(before) = done.last() {
            if !gate(before, environment, yes || dry_run)? {
                return Err(Error::declined(format!(
                    "before {} at your request; nothing was changed there",
                    environment.name
                ))
                .next(format!(
                    "when ready: fkctl drop {} --env {}",
                    path.display(),
                    environment.name
                )));
            }
        }
        let evidence = if environment.fleet.is_some() {
            let fleet = FleetDrop {
                path,
                playbook: &playbook,
                dsn,
                dry_run,
                yes,
                out_of_order: out_of_order.as_deref(),
                only: &targets,
            };
            fleet.run(environment)?
        } else {
            drop_in(
                &playbook,
                environment,
                dsn,
                dry_run,
                yes,
                out_of_order.as_deref(),
            )
            .map_err(|e| label(e, &environment.name, "drop"))?
        };
        if evidence.outcome == "declined" {
            return Err(Error::declined(format!(
                "at your request; the constraint is unchanged on {}",
                environment.name
            )));
        }
        done.push(evidence);
    }
    if json {
        super::write_json(&serde_json::json!({ "environments": done }))?;
    }
    Ok(())
}

/// Without a terminal only --yes runs; --yes never reaches a protected
/// environment that was not named.
fn refuse_unattended(
    env: Option<&str>,
    yes: bool,
    dry_run: bool,
    environments: &[Environment],
) -> Result<()> {
    if !yes && !dry_run && !tui::interactive() {
        return Err(Error::usage("fkctl drop asks before every change, but there is no terminal to ask on")
            .next("run it from a terminal, or pass --yes (and --env NAME for a protected environment) to run without questions; --dry-run needs neither"));
    }
    if yes && !dry_run && env.is_none() {
        if let Some(p) = environments.iter().find(|e| e.protected) {
            return Err(Error::usage(format!(
                "--yes would drop the constraint on the protected environment {:?} without anyone typing its name",
                p.name
            ))
            .next(format!("name it explicitly: --env {} --yes (after the earlier environments are done)", p.name)));
        }
    }
    Ok(())
}

/// The playbook's order is the rollout: an environment is dropped only once
/// every earlier one is done, as its catalog shows (the constraint is gone).
fn earlier_environments_done(
    playbook: &Playbook,
    env: &str,
    dsn: &[(String, String)],
) -> Result<()> {
    let fk = &playbook.constraint;
    // A fleet's database waits for the environments before its fleet; an
    // earlier fleet is done when every one of its databases is.
    let owner = playbook
        .owning_environment(env)
        .map_or(env, |e| e.name.as_str());
    let earlier_databases = playbook
        .environments
        .iter()
        .take_while(|e| e.name != owner)
        .flat_map(|e| e.databases());
    for earlier in earlier_databases {
        let earlier = &earlier;
        let pending = |why: String| {
            Error::precondition(format!(
                "{env} comes after {} in the playbook, and {why}; nothing was changed",
                earlier.name
            ))
            .with("environment", env)
            .with("rollout", playbook.environments.iter().map(|e| e.name.as_str()).collect::<Vec<_>>().join(" -> "))
            .next(format!(
                "drop it on {} first (fkctl drop {} --env {}), or, if {env} really must go first, say why: --out-of-order \"REASON\" (recorded in the journal)",
                earlier.name,
                playbook.path.display(),
                earlier.name
            ))
        };
        let (_, mut client) = connect(playbook, earlier, dsn).map_err(|e| {
            pending(format!(
                "fkctl cannot confirm {} is done: {}",
                earlier.name, e.message
            ))
        })?;
        let inspection = super::inspect_census(
            &mut client,
            playbook,
            &earlier.name,
            "check the earlier environment",
        )?;
        if !matches!(inspection.constraint, Lookup::Absent) {
            return Err(pending(format!(
                "{} still has {} on {}",
                earlier.name, fk.name, fk.table
            )));
        }
    }
    Ok(())
}

/// Shows what the previous environment did and asks before going on.
fn gate(before: &Evidence, next: &Environment, no_questions: bool) -> Result<bool> {
    crate::say!("\nEvidence from {}:", before.environment);
    crate::say!("  outcome:  {}", before.outcome);
    if let Some(o) = before.orphans {
        crate::say!("  orphans before the drop: {o}");
    }
    if let Some(ms) = before.drop_ms {
        crate::say!("  drop took {ms} ms, {} lock retries", before.retries);
    }
    for b in &before.blockers {
        crate::say!("  blocked by: {b}");
    }
    if let Some(id) = &before.run_id {
        crate::say!("  journal run: {id}");
    }
    if no_questions {
        return Ok(true);
    }
    let question = format!("Go on to {}?", next.name);
    if next.protected {
        tui::confirm_by_name(&question, &next.name)
    } else {
        tui::confirm(&question)
    }
}

fn show_inspection(playbook: &Playbook, inspection: &Inspection) {
    let fk = &playbook.constraint;
    if let Some(live) = inspection.live() {
        crate::say!(
            "  constraint: {} on {} ({})",
            fk.name,
            fk.table,
            if live.validated { "valid" } else { "NOT VALID" }
        );
        crate::say!("  definition: {}", live.pg_definition);
        for copy in &live.copies {
            crate::say!("  partition copy: {} -> {}", copy.table, copy.references);
        }
    }
    let found = impact::analyse(playbook, Some(inspection));
    crate::say!("  once dropped, PostgreSQL stops:");
    for s in &found.stops_enforcing {
        crate::say!("    - {s}");
    }
    for s in &found.purge_sets_off {
        crate::say!("  referencing the child: {s}");
    }
    for w in &found.warnings {
        crate::say!("  ! {w}");
    }
}

/// The constraint as the catalog shows it: absent already (true: nothing to
/// do), or present and exactly the playbook's (false: go on); anything else
/// is refused before any change.
fn already_absent(
    client: &mut Client,
    journal: &Journal,
    playbook: &Playbook,
    inspection: &Inspection,
    env: &str,
) -> Result<bool> {
    let fk = &playbook.constraint;
    match &inspection.constraint {
        Lookup::Absent => {
            match journal.snapshot(client, &playbook.change, fk)? {
                Some(s) => crate::say!(
                    "  already done: {} is absent from {}, and its definition is on record (run {}, {}):\n    {}",
                    fk.name, fk.table, s.run_id, s.taken_at, s.definition
                ),
                None => crate::say!(
                    "  nothing to do: {} is absent from {} and no snapshot is on record, so it was dropped outside fkctl; a rollback will use the playbook's definition",
                    fk.name, fk.table
                ),
            }
            Ok(true)
        }
        Lookup::NotAForeignKey { contype } => Err(Error::precondition(format!(
            "{} on {} is a constraint of type {contype:?}, not a foreign key",
            fk.name, fk.table
        ))
        .with("environment", env)
        .with("playbook", playbook.locate(playbook.positions.name))),
        Lookup::Found(live) => {
            let differences = drift::compare(fk, &live.definition);
            if !differences.is_empty() {
                let e = super::drift_refusal(
                    format!("the live constraint differs from the playbook; nothing was changed on {env}"),
                    env,
                    "playbook",
                    &differences,
                )
                .with(
                    "playbook",
                    playbook.locate(playbook.positions.of_field(differences[0].field)),
                );
                return Err(e.next("run fkctl inspect to see the whole definition; make the playbook match the database (or find out who changed it)"));
            }
            Ok(false)
        }
    }
}

fn drop_in(
    playbook: &Playbook,
    environment: &Environment,
    dsn: &[(String, String)],
    dry_run: bool,
    yes: bool,
    out_of_order: Option<&str>,
) -> Result<Evidence> {
    let env = environment.name.as_str();
    let fk = &playbook.constraint;
    let protected = if environment.protected {
        " (protected)"
    } else {
        ""
    };
    crate::say!("\n== {env}{protected} ==");
    let (target, mut client) = connect(playbook, environment, dsn)?;
    crate::say!("  connected: {}", target.description);
    if !dry_run {
        guard::lock_change(&mut client, &playbook.change, &playbook.constraint, env)?;
    }
    let journal = Journal::new(&playbook.journal_schema);
    let inspection = inspect_live(&mut client, playbook, env, "pre-checks")?;
    let mut evidence = Evidence {
        environment: env.to_string(),
        ..Evidence::default()
    };
    if already_absent(&mut client, &journal, playbook, &inspection, env)? {
        warn_loose_missing(playbook, &inspection, env);
        evidence.outcome = "already absent";
        return Ok(evidence);
    }
    show_inspection(playbook, &inspection);
    super::check_lock_timeout(playbook, &inspection, env)?;
    refuse_unarchivable_loose(playbook, &inspection, env)?;
    let observed = Observed {
        environment: env,
        inspection: &inspection,
    };
    let plan = drop_plan(playbook, Some(&observed));
    let exec = Executor::for_inspection(&target, env, &inspection, playbook.safety.lock_retries)?
        .watching_journal(&playbook.journal_schema);
    let run = if dry_run {
        None
    } else {
        journal.ensure(&mut client)?;
        let run = journal.start_run(&mut client, &playbook.change, "drop", env, fk)?;
        if let Some(reason) = out_of_order {
            run.note(
                &mut client,
                &format!("out of order (--out-of-order): {reason}"),
            )?;
        }
        Some(run)
    };
    evidence.run_id = run.as_ref().map(|r| r.id.clone());
    let result = DropRun {
        client: &mut client,
        exec: &exec,
        run: run.as_ref(),
        playbook,
        environment,
        dry_run,
        no_questions: yes || dry_run,
        evidence: &mut evidence,
        definition: None,
    }
    .steps(&plan.steps);
    if let Some(r) = &run {
        let (outcome, message) = match &result {
            Ok(()) => (evidence.outcome, None),
            Err(e) => ("failed", Some(e.to_string())),
        };
        let finished = r.finish(&mut client, outcome, message.as_deref());
        if result.is_ok() {
            finished?;
        }
    }
    result.map(|()| evidence)
}

/// The constraint is gone already, but not the way the playbook wants it:
/// nothing replaces it.
fn warn_loose_missing(playbook: &Playbook, inspection: &Inspection, env: &str) {
    if playbook.loose.is_some() && !inspection.loose.fully_installed() {
        crate::say!("  warning: the playbook has loose: but its replacement is not installed on {env} (the constraint was dropped without it); nothing queues deleted parent keys, so orphans accumulate until a rollback purges them");
    }
}

/// A cleanup that deletes children would fire other tables' cascades
/// below the child, changing rows fkctl could not archive: refused before
/// any change.
pub(super) fn refuse_unarchivable_loose(
    playbook: &Playbook,
    inspection: &Inspection,
    env: &str,
) -> Result<()> {
    use crate::kinds::foreign_key::loose::cleanup::Duty;
    let duty = Duty::on_delete(playbook.constraint.on_delete);
    if playbook.loose.is_none() {
        return Ok(());
    }
    let writes_keys = [duty, Duty::on_update(playbook.constraint.on_update)]
        .iter()
        .any(|d| matches!(d, Duty::SetNull | Duty::SetDefault));
    if writes_keys && !inspection.child_key_updates.is_empty() {
        let mut e = Error::precondition(format!(
            "loose: would set keys of {} that other foreign keys reference with an ON UPDATE action, changing rows the cleanup does not archive",
            playbook.constraint.table
        ))
        .with("environment", env);
        for action in &inspection.child_key_updates {
            e = e.with("would set off", action.describe());
        }
        return Err(e.next("remove loose: from the playbook, or change those foreign keys first; nothing was changed"));
    }
    let tree = &inspection.cascade;
    if duty != Duty::Delete || (tree.levels.is_empty() && tree.problems.is_empty()) {
        return Ok(());
    }
    let tables: Vec<String> = tree
        .levels
        .iter()
        .map(|l| {
            format!(
                "{} ({} ON DELETE {})",
                l.table,
                l.constraint,
                l.on_delete.sql()
            )
        })
        .collect();
    Err(Error::precondition(format!(
        "loose: would delete {} rows, which fires other foreign keys that the cleanup does not archive yet: {}",
        playbook.constraint.table,
        tables.join("; ")
    ))
    .with("environment", env)
    .next("remove loose: from the playbook (the rollback archives the whole cascade when it purges orphans), or handle those tables first; nothing was changed"))
}

/// One environment's drop, walking the plan's steps in order by kind.
struct DropRun<'a> {
    client: &'a mut Client,
    exec: &'a Executor<'a>,
    run: Option<&'a Run>,
    playbook: &'a Playbook,
    environment: &'a Environment,
    dry_run: bool,
    no_questions: bool,
    evidence: &'a mut Evidence,
    /// The definition recorded before the DROP (what rollback restores).
    definition: Option<String>,
}

impl DropRun<'_> {
    fn steps(&mut self, steps: &[Step]) -> Result<()> {
        for step in steps {
            crate::say!("{}", super::step_text(step));
            match step.kind {
                StepKind::VerifyDefinition | StepKind::CountOrphans => self.check(step)?,
                StepKind::SnapshotDefinition => self.snapshot(step)?,
                StepKind::InstallLoose => self.install_loose(step)?,
                StepKind::DropConstraint => {
                    if !self.drop(step)? {
                        return Ok(());
                    }
                }
                _ => {
                    return Err(Error::internal(format!(
                        "a drop has no use for step {}",
                        step.id
                    )))
                }
            }
        }
        Ok(())
    }

    fn check(&mut self, step: &Step) -> Result<()> {
        let check = step
            .before
            .as_ref()
            .ok_or_else(|| Error::internal("a check step without its check"))?;
        let exec = self.exec;
        let value = record_step(self.client, self.run, step, |c| {
            let v = exec.check(c, check, step)?;
            Ok((v.clone(), 0, Vec::new(), Some(v.to_string())))
        })
        .map_err(|e| {
            if step.kind == StepKind::CountOrphans {
                e.next("orphans exist although safety.max_orphans_before_drop forbids them: run fkctl orphans --sample 20 to see them")
            } else {
                e
            }
        })?;
        crate::say!("   ok: {value}");
        if let (StepKind::CountOrphans, crate::execute::Value::Count(n)) = (step.kind, value) {
            self.evidence.orphans = Some(n);
        }
        Ok(())
    }

    fn snapshot(&mut self, step: &Step) -> Result<()> {
        if self.dry_run {
            crate::say!("   dry run: not recorded");
            return Ok(());
        }
        let exec = self.exec;
        let text = record_step(self.client, self.run, step, |c| {
            let out = exec.run(c, step, &[])?;
            Ok((out.returned.clone(), 0, Vec::new(), out.returned))
        })?
        .ok_or_else(|| {
            Error::precondition("the constraint vanished before its definition could be recorded")
                .with("environment", self.environment.name.clone())
        })?;
        if let Some(r) = self.run {
            r.save_snapshot(
                self.client,
                &self.playbook.change,
                &self.playbook.constraint,
                &text,
            )?;
        }
        crate::say!("   recorded: {text}");
        self.definition = Some(text);
        Ok(())
    }

    /// The loose replacement, verified in the catalog before the DROP.
    fn install_loose(&mut self, step: &Step) -> Result<()> {
        if let Status::AlreadyDone(why) = &step.status {
            crate::say!("   already done: {why}");
            return Ok(());
        }
        if self.dry_run {
            crate::say!("   dry run: not installed");
            return Ok(());
        }
        let exec = self.exec;
        let outcome = record_step(self.client, self.run, step, |c| {
            let out = exec.run(c, step, &[])?;
            let (retries, blockers) = (out.retries, out.blockers.clone());
            Ok((out, retries, blockers, None))
        })?;
        if let Some(check) = &step.after {
            let found = exec.check_after(self.client, check, step).map_err(|e| {
                e.next("the constraint was NOT dropped: fkctl drops it only once every capture trigger is in place; see fkctl status")
            })?;
            crate::say!(
                "   installed in {} ms; the catalog shows {found} capture trigger(s)",
                outcome.elapsed.as_millis()
            );
        }
        Ok(())
    }

    /// The DROP itself; false when the operator declined.
    fn drop(&mut self, step: &Step) -> Result<bool> {
        let environment = self.environment;
        if self.dry_run {
            crate::say!(
                "\n   dry run: the statements above were not run; nothing was changed on {}",
                environment.name
            );
            self.evidence.outcome = "dry run";
            return Ok(true);
        }
        if !self.no_questions {
            let question = format!(
                "Drop {} on {} now?",
                self.playbook.constraint.name, environment.name
            );
            let go = if environment.protected {
                tui::confirm_by_name(&question, &environment.name)?
            } else {
                tui::confirm(&question)?
            };
            if !go {
                self.evidence.outcome = "declined";
                return Ok(false);
            }
        }
        let exec = self.exec;
        let outcome = record_step(self.client, self.run, step, |c| {
            if let Some(check) = &step.before {
                exec.check(c, check, step)?;
            }
            let out = exec.run(c, step, &[])?;
            let retries = out.retries;
            let blockers = out.blockers.clone();
            Ok((out, retries, blockers, None))
        })?;
        if let Some(check) = &step.after {
            exec.check_after(self.client, check, step).map_err(|e| {
                e.next("the DROP committed but the catalog still shows the constraint: inspect the database before doing anything else")
            })?;
        }
        crate::say!(
            "   dropped in {} ms after {} lock retries; the catalog confirms it is gone{}",
            outcome.elapsed.as_millis(),
            outcome.retries,
            if self.definition.is_some() {
                " (definition recorded for rollback)"
            } else {
                ""
            }
        );
        self.evidence.outcome = "dropped";
        self.evidence.drop_ms = Some(outcome.elapsed.as_millis());
        self.evidence.retries = outcome.retries;
        self.evidence.blockers = outcome.blockers;
        Ok(true)
    }
}
