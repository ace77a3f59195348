//! `fkctl drop` for a unique constraint: pre-checks (the constraint is the
//! playbook's, no foreign key depends on its index), the snapshot of its
//! definition, then DROP CONSTRAINT under the short timeouts with retries.

use super::{refuse_mismatch, run_step, Session};
use crate::error::{Error, Result};
use crate::execute::{interrupt, BindValues};
use crate::journal::Journal;
use crate::kinds::unique::definition::UniqueDef;
use crate::kinds::unique::observed::{UniqueInspection, UniqueLookup};
use crate::kinds::unique::plan::{drop_plan, Observed};
use crate::plan::StepKind;
use crate::playbook::{self, Playbook};
use crate::tui;
use std::path::Path;

pub struct Options {
    pub dry_run: bool,
    pub yes: bool,
    /// Why --env NAME goes before an earlier environment; kept in the journal.
    pub out_of_order: Option<String>,
}

pub fn run(
    path: &Path,
    env: Option<&str>,
    dsn: &[(String, String)],
    options: Options,
) -> Result<()> {
    let Options {
        dry_run,
        yes,
        out_of_order,
    } = options;
    let playbook = playbook::load(path)?;
    if let (Some(name), None) = (env, &out_of_order) {
        earlier_environments_done(&playbook, name, dsn)?;
    }
    let environments = super::environments(&playbook, env)?;
    if !yes && !dry_run && !tui::interactive() {
        return Err(Error::usage("fkctl drop asks before every change, but there is no terminal to ask on")
            .next("run it from a terminal, or pass --yes with --env NAME to run without questions; --dry-run needs neither"));
    }
    if yes && !dry_run && env.is_none() && environments.iter().any(|e| e.protected) {
        return Err(Error::usage("--yes would drop the constraint on a protected environment without anyone typing its name")
            .next("name each environment explicitly: --env NAME --yes"));
    }
    interrupt::install();
    for environment in environments {
        let session = Session::connect(playbook.clone(), environment, dsn)?;
        let env = session.env().to_string();
        drop_in(session, dry_run, yes, out_of_order.as_deref())
            .map_err(|e| super::super::label(e, &env, "drop"))?;
    }
    Ok(())
}

/// The playbook's order is the rollout: an environment is dropped only once
/// every earlier one shows the constraint gone in its catalog.
fn earlier_environments_done(
    playbook: &Playbook,
    env: &str,
    dsn: &[(String, String)],
) -> Result<()> {
    let def = playbook
        .unique
        .as_ref()
        .map(|u| u.def.clone())
        .ok_or_else(|| Error::internal("a unique command got a foreign-key playbook"))?;
    for earlier in playbook.environments.iter().take_while(|e| e.name != env) {
        let pending = |why: String| {
            Error::precondition(format!("{env} comes after {} in the playbook, and {why}; nothing was changed", earlier.name))
                .with("environment", env)
                .next(format!(
                    "drop it on {} first (fkctl drop {} --env {}), or say why {env} must go first: --out-of-order \"REASON\"",
                    earlier.name,
                    playbook.path.display(),
                    earlier.name
                ))
        };
        let mut session =
            Session::connect(playbook.clone(), earlier.clone(), dsn).map_err(|e| {
                pending(format!(
                    "fkctl cannot confirm {} is done: {}",
                    earlier.name, e.message
                ))
            })?;
        let inspection = session.inspect("check the earlier environment")?;
        if !matches!(inspection.constraint, UniqueLookup::Absent) {
            return Err(pending(format!(
                "{} still has {} on {}",
                earlier.name, def.name, def.table
            )));
        }
    }
    Ok(())
}

/// Refusals before any change: the constraint is not the playbook's, a
/// foreign key depends on its index, or lock_timeout reaches deadlock_timeout.
fn refuse(session: &Session, inspection: &UniqueInspection) -> Result<()> {
    refuse_mismatch(session, inspection, &session.spec.def, "playbook")?;
    if !inspection.dependents.is_empty() {
        let mut e = Error::precondition(format!(
            "{} foreign key(s) reference {} through the index of {}: PostgreSQL refuses to drop it while they exist; nothing was changed",
            inspection.dependents.len(),
            session.spec.def.table,
            session.spec.def.name
        ))
        .with("environment", session.env());
        for fk in &inspection.dependents {
            e = e.with(
                "depends on it",
                format!("{} on {}: {}", fk.name, fk.table, fk.definition),
            );
        }
        return Err(e.next("drop those foreign keys first (each with its own fkctl playbook), or keep this constraint"));
    }
    let deadlock = inspection.server.deadlock_timeout_ms;
    let lock_ms =
        i64::try_from(session.playbook.safety.lock_timeout.as_millis()).unwrap_or(i64::MAX);
    if lock_ms >= deadlock {
        return Err(Error::precondition(format!(
            "safety.lock_timeout ({lock_ms} ms) is not below the server's deadlock_timeout ({deadlock} ms)"
        ))
        .with("environment", session.env())
        .next("lower safety.lock_timeout in the playbook: a DDL waiting that long holds up every query on the table"));
    }
    Ok(())
}

fn drop_in(
    mut session: Session,
    dry_run: bool,
    yes: bool,
    out_of_order: Option<&str>,
) -> Result<()> {
    let env = session.env().to_string();
    crate::say!(
        "\n== {env}{} ==",
        if session.environment.protected {
            " (protected)"
        } else {
            ""
        }
    );
    crate::say!("  connected: {}", session.target.description);
    let playbook: Playbook = session.playbook.clone();
    if !dry_run {
        session.lock_change()?;
    }
    let inspection = session.inspect("pre-checks")?;
    let def = session.spec.def.clone();
    if matches!(inspection.constraint, UniqueLookup::Absent) {
        crate::say!(
            "  {} is already absent from {}: nothing to do",
            def.name,
            def.table
        );
        return Ok(());
    }
    refuse(&session, &inspection)?;
    describe(&inspection, &def);
    let observed = Observed {
        environment: &env,
        inspection: &inspection,
    };
    let plan = drop_plan(&playbook, &session.spec, Some(&observed));
    for note in &plan.notes {
        crate::say!("  note: {note}");
    }
    for step in &plan.steps {
        crate::say!("{}", super::super::step_text(step));
    }
    if dry_run {
        crate::say!("\n  dry run: nothing was changed on {env}");
        return Ok(());
    }
    if !yes && !confirm(&session, &format!("Drop {} on {env} now?", def.name))? {
        return Err(Error::declined(format!(
            "at your request; {} is unchanged on {env}",
            def.name
        )));
    }
    journaled(&mut session, &inspection, &plan.steps, out_of_order)
}

/// The live constraint and the sessions on its table, before the plan.
fn describe(inspection: &UniqueInspection, def: &UniqueDef) {
    if let Some(live) = inspection.live() {
        crate::say!(
            "  constraint: {} on {} ({}), index {}",
            def.name,
            def.table,
            live.definition,
            live.index_name
        );
    }
    crate::say!(
        "  {}",
        super::read::sessions_text(&inspection.sessions).trim_end()
    );
}

/// The plan's steps under a journal run, which records why the order was
/// overridden and how the drop ended.
fn journaled(
    session: &mut Session,
    inspection: &UniqueInspection,
    plan_steps: &[crate::plan::Step],
    out_of_order: Option<&str>,
) -> Result<()> {
    let env = session.env().to_string();
    let playbook = session.playbook.clone();
    let journal = Journal::new(&playbook.journal_schema);
    journal.ensure(&mut session.client)?;
    let run = journal.start_run(
        &mut session.client,
        &playbook.change,
        "drop",
        &env,
        &playbook.constraint,
    )?;
    if let Some(reason) = out_of_order {
        run.note(
            &mut session.client,
            &format!("out of order (--out-of-order): {reason}"),
        )?;
    }
    let result = steps(session, inspection, plan_steps, &run);
    let (outcome, message) = match &result {
        Ok(()) => ("dropped", None),
        Err(e) => ("failed", Some(e.to_string())),
    };
    let finished = run.finish(&mut session.client, outcome, message.as_deref());
    result?;
    finished
}

fn confirm(session: &Session, question: &str) -> Result<bool> {
    if session.environment.protected {
        tui::confirm_by_name(question, session.env())
    } else {
        tui::confirm(question)
    }
}

fn steps(
    session: &mut Session,
    inspection: &UniqueInspection,
    steps: &[crate::plan::Step],
    run: &crate::journal::Run,
) -> Result<()> {
    let (target, env) = session.engine();
    let exec = super::executor(
        &target,
        &env,
        inspection,
        session.playbook.safety.lock_retries,
        &session.playbook.journal_schema,
    )?;
    let binds = BindValues {
        run_id: &run.id,
        change: &session.playbook.change,
        constraint_name: session.spec.def.name.as_str(),
        restore_run_id: None,
    };
    for step in steps {
        let outcome = run_step(&mut session.client, &exec, Some(run), step, &binds)?;
        match step.kind {
            StepKind::SnapshotDefinition => {
                let definition = outcome
                    .returned
                    .clone()
                    .ok_or_else(|| Error::internal("the snapshot step returned no definition"))?;
                let json = serde_json::to_value(&session.spec.def)
                    .map_err(|e| Error::internal(format!("cannot encode the snapshot: {e}")))?;
                run.save_snapshot_json(
                    &mut session.client,
                    &session.playbook.change,
                    &session.spec.def.table,
                    &session.spec.def.name,
                    &definition,
                    &json,
                )?;
                crate::say!("{}. {}: recorded {definition}", step.number, step.title);
            }
            StepKind::DropConstraint => crate::say!(
                "{}. {}: dropped in {} ms after {} lock retries; the catalog confirms it is gone",
                step.number,
                step.title,
                outcome.elapsed.as_millis(),
                outcome.retries
            ),
            _ => crate::say!("{}. {}: ok", step.number, step.title),
        }
    }
    Ok(())
}
