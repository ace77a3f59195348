//! `fkctl restore`: put the rows a rollback archived back into the table,
//! batch by batch, once their parents exist again; exactly as they were, or
//! refused before any row moves, naming the columns that cannot come back.

use super::{connect, inspect_live, label, load_with_env};
use crate::catalog::relations;
use crate::cli::args::Connection;
use crate::error::{describe_postgres, Error, Kind, Result};
use crate::execute::{guard, interrupt, BindValues, Executor};
use crate::journal::{record_step, Journal};
use crate::kinds::foreign_key::plan::restore::{ArchivedKey, ColumnPlan};
use crate::kinds::foreign_key::repair as purge;
use crate::model::Inspection;
use crate::model::TableColumn;
use crate::pg::Cell;
use crate::plan::{restore_plan, Archived, Observed, StepKind};
use crate::playbook::Playbook;
use crate::sql::ident::Ident;
use crate::tui;
use postgres::Client;
use std::path::Path;

mod keys;
use keys::{restore_keys, KeysRun};

pub struct Options {
    pub yes: bool,
    /// Restore even though columns of the archived rows are gone from the table (their values are lost).
    pub discard_dropped_columns: bool,
}

fn count(client: &mut Client, sql: &str, run_id: &str) -> Result<i64> {
    crate::pg::query_scalar(client, sql, &[&run_id])
}

/// The table's live columns against the keys of the run's archived rows.
fn compare_columns(
    client: &mut Client,
    playbook: &Playbook,
    inspection: &Inspection,
    run_id: &str,
    rows: i64,
    discard_dropped: bool,
) -> Result<(ColumnPlan, Vec<TableColumn>)> {
    let table = relations::table_columns(client, inspection.child.oid)?;
    let sql = purge::archived_keys_sql(&playbook.journal_schema);
    let keys: Vec<ArchivedKey> = client
        .query(sql.as_str(), &[&run_id])
        .map_err(|e| Error::from_postgres(&e, &sql))?
        .iter()
        .map(|r| {
            Ok(ArchivedKey {
                name: Ident::from_catalog(r.cell::<String>(0, &sql)?),
                rows: r.cell(1, &sql)?,
            })
        })
        .collect::<Result<_>>()?;
    let mut plan = ColumnPlan::compare(
        &table,
        &keys,
        rows,
        &playbook.constraint.columns,
        discard_dropped,
    );
    plan.triggers = relations::insert_triggers(client, inspection.child.oid)?;
    Ok((plan, table))
}

/// Reads every archived row of the run as a row of the table's current type,
/// before any row moves. If a value no longer converts (a column's type
/// changed), finds the columns that fail, one by one, and refuses.
fn check_conversion(
    client: &mut Client,
    inspection: &Inspection,
    schema: &Ident,
    columns: &ColumnPlan,
    table: &[TableColumn],
    run_id: &str,
) -> Result<()> {
    let query = &inspection.orphan_query;
    let sql = purge::restore_convert_sql(query, schema, &columns.columns);
    let whole = match client.query_one(sql.as_str(), &[&run_id]) {
        Ok(_) => return Ok(()),
        Err(e) if e.as_db_error().is_none() => return Err(Error::from_postgres(&e, &sql)),
        Err(e) => e,
    };
    let mut err = Error::precondition(format!(
        "archived values of run {run_id} no longer convert to the column types of {}: a column's type changed since the rollback",
        query.child
    ));
    let mut named = false;
    for column in table
        .iter()
        .filter(|c| !columns.columns.unread.contains(&c.name))
    {
        let one = purge::restore_convert_column_sql(query, schema, &column.name);
        match client.query_one(one.as_str(), &[&run_id]) {
            Ok(_) => {}
            Err(e) if e.as_db_error().is_none() => return Err(Error::from_postgres(&e, &one)),
            Err(e) => {
                named = true;
                err = err.with(
                    "column",
                    format!(
                        "{} (now {}): {}",
                        column.name,
                        column.type_name,
                        describe_postgres(&e).1
                    ),
                );
            }
        }
    }
    if !named {
        err = err
            .with("postgres", describe_postgres(&whole).1)
            .with("sql", sql);
    }
    Err(err.next("nothing was restored. Change the column back, or rewrite the archived values to the new type (they are jsonb in the archive, row_data), then run the same restore again"))
}

/// The batch statement's own failure (fewer rows went into the table than
/// left the archive) in plain words; other errors unchanged.
fn explain_batch(mut e: Error, culprit: &str) -> Error {
    let said = e
        .context
        .iter()
        .find(|(label, _)| label == "postgres")
        .and_then(|(_, text)| text.split_once("\"fkctl: "))
        .map(|(_, rest)| rest.trim_end_matches('"').to_string());
    if let Some(said) = said {
        e.message = format!("a restore batch was refused: {said}");
        e.kind = Kind::FailedMidway;
        e.next = Some(format!("no row of that batch moved and earlier batches are complete; every row is in exactly one place. Find the trigger or rule on the table that {culprit}, disable it for the restore, then run the same restore again"));
    }
    e
}

/// How many rows run `run_id` archived here: (deleted, nullified); refused
/// when it archived none.
fn archived_rows(
    client: &mut Client,
    schema: &Ident,
    run_id: &str,
    env: &str,
) -> Result<(i64, i64)> {
    let archive = purge::archive_table(schema);
    let exists: bool = crate::pg::query_scalar(
        client,
        "SELECT to_regclass($1) IS NOT NULL",
        &[&archive.quoted()],
    )?;
    if !exists {
        return Err(Error::precondition(format!(
            "there is no archive ({archive}) in the {env} database: no rollback purged rows here"
        )));
    }
    let by_run = purge::archived_by_run_sql(schema);
    let row = client
        .query_one(by_run.as_str(), &[&run_id])
        .map_err(|e| Error::from_postgres(&e, &by_run))?;
    let (deleted, nullified): (i64, i64) = (row.cell(0, &by_run)?, row.cell(1, &by_run)?);
    if deleted == 0 && nullified == 0 {
        return Err(Error::precondition(format!(
            "run {run_id} has no rows in the archive of {env}"
        ))
        .next("fkctl status lists the runs; the archive is the table above"));
    }
    Ok((deleted, nullified))
}

/// Refuses, before any row moves, when the rows cannot go back as they were.
fn refuse_columns(
    columns: &ColumnPlan,
    deleted: i64,
    run_id: &str,
    playbook: &Playbook,
    env: &str,
    discard_dropped_columns: bool,
) -> Result<()> {
    let refusals = columns.refusals();
    if !refusals.is_empty() {
        let mut e = Error::precondition(format!(
            "the {deleted} archived row(s) of run {run_id} cannot go back into {} as they were",
            playbook.constraint.table
        ))
        .with("environment", env);
        for (what, why) in refusals {
            e = e.with(&what, why);
        }
        let advice = if columns.dropped.is_empty() || discard_dropped_columns {
            "nothing was restored. Change the table back (or give the added column a default), then run the same restore again"
        } else {
            "nothing was restored. Add the columns back to keep their values, or pass --discard-dropped-columns to restore the rows without them"
        };
        return Err(e.next(advice));
    }
    Ok(())
}

/// Moves the run's rows (or keys) back batch by batch until none can move,
/// then checks the archive shrank by exactly the rows that went back.
/// `archived_left` counts the run's rows of this kind still archived, of
/// which there were `deleted` before. Returns (rows moved, rows left in the
/// archive, a line for the journal).
#[allow(clippy::too_many_arguments)]
fn move_rows(
    c: &mut Client,
    exec: &Executor<'_>,
    step: &crate::plan::Step,
    params: &[&(dyn postgres::types::ToSql + Sync)],
    archived_left: &str,
    run_id: &str,
    deleted: i64,
    env: &str,
) -> Result<(i64, i64, String)> {
    let culprit = if step.kind == StepKind::RestoreKeys {
        "skips updates"
    } else {
        "drops inserted rows"
    };
    let mut moved = 0i64;
    let mut batches = 0u32;
    loop {
        let outcome = exec
            .run(c, step, params)
            .map_err(|e| explain_batch(e, culprit))?;
        let n: i64 = outcome
            .returned
            .as_deref()
            .and_then(|t| t.parse().ok())
            .ok_or_else(|| Error::internal("the restore batch did not return its row count"))?;
        if n == 0 {
            break;
        }
        moved += n;
        batches += 1;
    }
    let left = count(c, archived_left, run_id)?;
    if deleted - left != moved {
        return Err(Error::new(Kind::Internal, format!("the archive of run {run_id} went from {deleted} to {left} row(s), but {moved} row(s) went back into the table"))
            .with("environment", env)
            .next("something else changed the archive during the restore; compare the archive with the table before going on"));
    }
    Ok((
        moved,
        left,
        format!("{moved} row(s) restored in {batches} batch(es); archive of the run: {deleted} row(s) before, {left} after"),
    ))
}

pub fn run(path: &Path, connection: &Connection, run_id: &str, options: Options) -> Result<()> {
    let env = connection.env.as_str();
    let (playbook, environment) = load_with_env(path, env)?;
    if !options.yes && !tui::interactive() {
        return Err(Error::usage(
            "fkctl restore asks before putting rows back, but there is no terminal to ask on",
        )
        .next("pass --yes to run it from a script"));
    }
    interrupt::install();
    (|| -> Result<()> {
        let (target, mut client) = connect(&playbook, &environment, &connection.dsn)?;
        guard::lock_change(&mut client, &playbook.change, &playbook.constraint, env)?;
        let schema = &playbook.journal_schema;
        let journal = Journal::new(schema);
        let (deleted, nullified) = archived_rows(&mut client, schema, run_id, env)?;
        let inspection = inspect_live(&mut client, &playbook, env, "pre-checks")?;
        if deleted == 0 {
            let keys = KeysRun { playbook: &playbook, environment: &environment, inspection: &inspection, run_id, nullified, yes: options.yes };
            return restore_keys(&mut client, &target, &journal, &keys);
        }
        let (columns, table) = compare_columns(&mut client, &playbook, &inspection, run_id, deleted, options.discard_dropped_columns)?;
        refuse_columns(&columns, deleted, run_id, &playbook, env, options.discard_dropped_columns)?;
        check_conversion(&mut client, &inspection, schema, &columns, &table, run_id)?;
        let observed = Observed { environment: env, inspection: &inspection };
        let plan = restore_plan(&playbook, Some(&observed), Archived::Deleted(&columns));
        let step = plan.steps.iter().find(|s| s.kind == StepKind::RestoreRows).ok_or_else(|| Error::internal("the restore plan has no restore-rows step"))?;
        let refused_sql = purge::restore_refused_sql(&inspection.orphan_query, schema, &columns.columns);
        let refused_before = count(&mut client, &refused_sql, run_id)?;
        println!("== restore on {env} ({}) ==", target.description);
        println!("  run {run_id}: {deleted} archived row(s); {} can go back now, {refused_before} still lack their parent", deleted - refused_before);
        for note in columns.notes() {
            println!("  {note}");
        }
        println!("{}", super::step_text(step));
        if deleted == refused_before {
            return Err(Error::precondition(format!("none of the {deleted} archived rows has its parent back in {}", playbook.constraint.ref_table))
                .with("environment", env)
                .next("restore the parent rows first, then run restore again"));
        }
        if !options.yes {
            let question = format!("Put {} row(s) back into {} on {env}?", deleted - refused_before, playbook.constraint.table);
            let go = if environment.protected { tui::confirm_by_name(&question, env)? } else { tui::confirm(&question)? };
            if !go {
                return Err(Error::declined("at your request; nothing was restored"));
            }
        }
        let exec = Executor::new(&target, env, inspection.watched.clone(), playbook.safety.lock_retries)?;
        journal.ensure(&mut client)?;
        let run = journal.start_run(&mut client, &playbook.change, "restore", env, &playbook.constraint)?;
        let archived_left = purge::archived_left_sql(schema, "delete");
        let values = BindValues { run_id: &run.id, change: &playbook.change, constraint_name: playbook.constraint.name.as_str(), restore_run_id: Some(run_id) };
        let params = values.for_step(step)?;
        let result = record_step(&mut client, Some(&run), step, |c| {
            let (moved, left, detail) = move_rows(c, &exec, step, &params, &archived_left, run_id, deleted, env)?;
            let mut detail = vec![detail];
            detail.extend(columns.notes());
            Ok(((moved, left), 0, Vec::new(), Some(detail.join("\n"))))
        });
        let finished = run.finish(&mut client, if result.is_ok() { "restored" } else { "failed" }, result.as_ref().err().map(|e| e.to_string()).as_deref());
        let (moved, left) = result?;
        finished?;
        println!("  restored {moved} row(s) into {}; the archive of run {run_id} went from {deleted} to {left} row(s)", playbook.constraint.table);
        if left > 0 {
            let refused_after = count(&mut client, &refused_sql, run_id)?;
            let mut e = Error::precondition(format!("{left} archived row(s) stay in the archive: their parent rows are still missing"))
                .with("environment", env);
            if refused_after < left {
                e = e.with("note", format!("{} of them have their parent now (it came back during the restore)", left - refused_after));
            }
            if nullified > 0 {
                e = e.with("nullified", format!("the run also nullified the keys of {nullified} row(s); once its deleted rows are all back, the same restore puts those keys back"));
            }
            return Err(e.next("restore the parent rows, then run the same restore again; the rows are safe in the archive"));
        }
        Ok(())
    })()
    .map_err(|e| label(e, env, "restore"))
}
