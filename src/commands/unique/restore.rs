//! `fkctl restore` for a unique constraint: a rollback's archived duplicates
//! go back where no live row has their key; the others stay archived and
//! are named.

use super::{run_step, Session};
use crate::error::{Error, Result};
use crate::execute::{interrupt, BindValues, Executor};
use crate::journal::{Journal, Run};
use crate::kinds::unique::catalog::insertable_columns;
use crate::kinds::unique::definition::UniqueDef;
use crate::kinds::unique::observed::UniqueInspection;
use crate::kinds::unique::plan::{restore_plan, Observed};
use crate::kinds::unique::repair;
use crate::kinds::unique::violations::DuplicateQuery;
use crate::pg::Cell;
use crate::plan::Step;
use crate::tui;
use std::path::Path;

pub fn run(
    path: &Path,
    env: &str,
    dsn: &[(String, String)],
    run_id: &str,
    yes: bool,
) -> Result<()> {
    if !yes && !tui::interactive() {
        return Err(Error::usage(
            "fkctl restore asks before it changes anything, but there is no terminal to ask on",
        )
        .next("pass --yes"));
    }
    interrupt::install();
    let mut session = Session::open(path, env, dsn)?;
    let env = session.env().to_string();
    restore_in(&mut session, run_id, yes).map_err(|e| super::super::label(e, &env, "restore"))
}

fn restore_in(session: &mut Session, run_id: &str, yes: bool) -> Result<()> {
    let env = session.env().to_string();
    let playbook = session.playbook.clone();
    session.lock_change()?;
    let inspection = session.inspect("pre-checks")?;
    let def = session.spec.def.clone();
    let query = DuplicateQuery::new(&def, Some(&inspection.table));
    let schema = &playbook.journal_schema;
    if !Journal::new(schema).exists(&mut session.client)? {
        crate::say!("  {env} has no fkctl archive (schema {schema}): nothing to restore");
        return Ok(());
    }
    // Reads of the archive wait within the lock timeout, retried, the
    // holder named (a rollback of another change may be altering it).
    let (target, env_name) = session.engine();
    let exec = super::executor(
        &target,
        &env_name,
        &inspection,
        playbook.safety.lock_retries,
        schema,
    )?;
    let Some(resolved) = exec.bounded(&mut session.client, "find the run to restore", |c| {
        crate::journal::archive::resolve_run(c, schema, &playbook.change, &def.name, run_id)
    })?
    else {
        crate::say!(
            "  {env}: nothing of change {} is waiting in the archive; nothing to restore",
            playbook.change
        );
        return Ok(());
    };
    let run_id = resolved.as_str();
    let left_sql = repair::archived_left_sql(&query, schema);
    let before = exec
        .read_count(
            &mut session.client,
            &left_sql,
            &[&run_id],
            "count the run's archived rows",
        )
        .map_err(|e| {
            if e.next.is_some() {
                return e;
            }
            e.next("is the run id right? fkctl status lists the runs")
        })?;
    if before == 0 {
        crate::say!(
            "  run {run_id} has no archived duplicates of {} on {env}: nothing to restore",
            def.name
        );
        return Ok(());
    }
    if !yes
        && !tui::confirm(&format!(
            "Put back the {before} archived duplicate(s) of run {run_id} that no longer collide?"
        ))?
    {
        return Err(Error::declined("at your request; nothing was restored"));
    }
    let (moved, after, message) = put_back(session, &exec, &def, &inspection, run_id, &left_sql)?;
    if before - after != moved {
        return Err(Error::new(crate::error::Kind::FailedMidway, format!("the archive of run {run_id} went from {before} to {after} rows but {moved} went back; another restore may be running")).with("environment", env.as_str()));
    }
    crate::say!("{env}: {message}");
    if after > 0 {
        return still_archived(session, &query, &def, run_id, after);
    }
    Ok(())
}

/// Runs the restore plan under a journal run: the rows moved, the rows
/// still archived afterwards, and the run's closing message.
fn put_back(
    session: &mut Session,
    exec: &Executor<'_>,
    def: &UniqueDef,
    inspection: &UniqueInspection,
    run_id: &str,
    left_sql: &str,
) -> Result<(i64, i64, String)> {
    let env = session.env().to_string();
    let playbook = session.playbook.clone();
    let columns = insertable_columns(&mut session.client, &def.table)?;
    let observed = Observed {
        environment: &env,
        inspection,
    };
    let plan = restore_plan(&playbook, def, &columns, Some(&observed));
    let journal = Journal::new(&playbook.journal_schema);
    journal.ensure(&mut session.client)?;
    let run = journal.start_run(
        &mut session.client,
        &playbook.change,
        "restore",
        &env,
        &playbook.constraint,
    )?;
    let binds = BindValues {
        run_id: &run.id,
        change: &playbook.change,
        constraint_name: def.name.as_str(),
        restore_run_id: Some(run_id),
    };
    let mut moved = 0;
    let result = run_steps(session, exec, &run, &plan.steps, &binds, &mut moved);
    let after = exec.read_count(
        &mut session.client,
        left_sql,
        &[&run_id],
        "count the run's archived rows",
    )?;
    let message = format!(
        "{moved} row(s) put back; {after} still archived (their key is taken by a live row)"
    );
    let finished = run.finish(
        &mut session.client,
        if result.is_ok() { "restored" } else { "failed" },
        Some(&message),
    );
    result?;
    finished?;
    Ok((moved, after, message))
}

/// Each step runs until it moves no more rows; `moved` counts them even
/// when a step fails, so the journal records what did go back.
fn run_steps(
    session: &mut Session,
    exec: &Executor<'_>,
    run: &Run,
    steps: &[Step],
    binds: &BindValues<'_>,
    moved: &mut i64,
) -> Result<()> {
    // The list runs once (it returns nothing); the batches until the list
    // is done (no row), a batch whose rows all collide moving 0.
    for step in steps {
        loop {
            let outcome = run_step(&mut session.client, exec, Some(run), step, binds)?;
            let Some(n) = outcome.listed_batch_moved()? else {
                break;
            };
            *moved += n;
        }
    }
    Ok(())
}

/// Names each archived row whose key a live row holds, then refuses.
fn still_archived(
    session: &mut Session,
    query: &DuplicateQuery,
    def: &UniqueDef,
    run_id: &str,
    after: i64,
) -> Result<()> {
    let env = session.env().to_string();
    let schema = &session.playbook.journal_schema;
    let sql = repair::colliding_sql(query, schema);
    let rows = session
        .client
        .query(sql.as_str(), &[&run_id])
        .map_err(|e| Error::from_postgres(&e, &sql))?;
    for r in rows {
        let id: i64 = r.cell(0, &sql)?;
        let key: Vec<Option<String>> = r.cell(1, &sql)?;
        let key: Vec<String> = key
            .into_iter()
            .map(|k| k.unwrap_or_else(|| "NULL".into()))
            .collect();
        crate::say!(
            "  cannot go back: archive id {id}, key ({}) is taken by a live row",
            key.join(", ")
        );
    }
    Err(Error::precondition(format!(
        "{after} archived row(s) of run {run_id} cannot go back: a live row has their key, and {} would refuse them",
        def.name
    ))
    .with("environment", env.as_str())
    .next("they stay in the archive (fkctl.archived_rows, action dedupe); decide which row of each key to keep, delete the live one if the archived one is right, and run restore again"))
}
