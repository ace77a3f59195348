//! `fkctl restore`: put the rows a rollback archived back into the table,
//! batch by batch, once their parents exist again; exactly as they were, or
//! refused before any row moves, naming the columns that cannot come back.

use super::{connect, inspect_live, label, load_with_env};
use crate::catalog::relations;
use crate::cli::args::Connection;
use crate::error::{describe_postgres, Error, Kind, Result};
use crate::execute::{guard, interrupt, BindValues, Executor};
use crate::journal::archive::{typed_tables, TypedTable};
use crate::journal::{record_step, Journal};
use crate::kinds::foreign_key::plan::cascade;
use crate::kinds::foreign_key::plan::restore::{ArchivedKey, ColumnPlan};
use crate::kinds::foreign_key::repair::{self as purge, typed, ArchivedSet};
use crate::kinds::foreign_key::violations::OrphanQuery;
use crate::model::Inspection;
use crate::model::TableColumn;
use crate::pg::Cell;
use crate::plan::{restore_plan, Archived, Observed, StepKind};
use crate::playbook::Playbook;
use crate::sql::ident::{Ident, QualifiedName};
use crate::tui;
use postgres::Client;
use std::path::Path;

mod keys;
use keys::{restore_keys, KeysRun};

pub struct Options {
    pub yes: bool,
    /// Restore even though columns of the archived rows are gone from the table (their values are lost).
    pub discard_dropped_columns: bool,
    /// One JSON document (the run's archive before and after) on stdout.
    pub output: crate::cli::args::Output,
}

/// `--output json`: how much of the run's archive went back.
#[derive(Debug, Default, serde::Serialize)]
struct Report {
    environment: String,
    run_id: String,
    /// "restored" (the run's archive is empty now), "partly restored", or
    /// "refused" / "failed" (see the error on stderr).
    outcome: &'static str,
    archived_before: i64,
    archived_after: i64,
    restored: i64,
}

/// Archived rows of run `run_id` that `sql` counts; a lock wait on the
/// archive is retried and its holder named.
fn count(exec: &Executor<'_>, client: &mut Client, sql: &str, run_id: &str) -> Result<i64> {
    exec.read_count(client, sql, &[&run_id], "count the run's archived rows")
}

/// Where archived rows go back: the child, or one cascade level's table.
#[derive(Clone)]
struct Rows {
    table: QualifiedName,
    oid: u32,
    /// Its orphan query against the table it references.
    query: OrphanQuery,
    /// Its foreign-key columns.
    keys: Vec<Ident>,
    set: ArchivedSet,
    /// The cascade level (index in the inspection's tree), None for the child.
    level: Option<usize>,
    /// The columns that find one of its rows (see `Inspection::child_identity`).
    identity: Option<Vec<Ident>>,
    /// The table of the child's own shape that holds the rows, read as they
    /// are; None: the general archive, read through jsonb.
    from: Option<QualifiedName>,
}

impl Rows {
    fn child(playbook: &Playbook, inspection: &Inspection) -> Rows {
        Rows {
            table: playbook.constraint.table.clone(),
            oid: inspection.child.oid,
            query: inspection.orphan_query.clone(),
            keys: playbook.constraint.columns.clone(),
            set: ArchivedSet::deleted(),
            level: None,
            identity: inspection.child_identity.clone(),
            from: None,
        }
    }

    /// How many rows of run `run_id` are still archived where these come from.
    fn left_sql(&self, schema: &Ident) -> String {
        match &self.from {
            Some(table) => typed::rows_of_run_sql(table),
            None => purge::archived_left_sql(schema, &self.set),
        }
    }

    fn level(inspection: &Inspection, index: usize) -> Option<Rows> {
        let level = inspection.cascade.levels.get(index)?;
        Some(Rows {
            table: level.table.clone(),
            oid: level.oid,
            query: cascade::level_query(inspection, index)?,
            keys: level.keys.iter().map(|k| k.fk_column.clone()).collect(),
            set: purge::cascade::archived_set(level),
            level: Some(index),
            identity: level.identity.clone(),
            from: None,
        })
    }
}

/// The table's live columns against the keys of the run's archived rows.
fn compare_columns(
    client: &mut Client,
    playbook: &Playbook,
    rows_to: &Rows,
    run_id: &str,
    rows: i64,
    discard_dropped: bool,
) -> Result<(ColumnPlan, Vec<TableColumn>)> {
    let table = relations::table_columns(client, rows_to.oid)?;
    let keys = match &rows_to.from {
        Some(from) => typed_columns(client, from, &rows_to.table, rows)?,
        None => {
            let sql = purge::archived_keys_sql(&playbook.journal_schema, &rows_to.set);
            archived_keys(client, &sql, &[&run_id], None)?
        }
    };
    let mut plan = ColumnPlan::compare(&table, &keys, rows, &rows_to.keys, discard_dropped);
    plan.columns.from = rows_to.from.clone();
    plan.triggers = relations::insert_triggers(client, rows_to.oid)?;
    Ok((plan, table))
}

/// The child's columns in `from`, a table of its shape, each held by all
/// `rows` rows; refused when they no longer match the child's (its columns
/// changed since the restore filed the tables that did not match: the same
/// restore then files this one too).
fn typed_columns(
    client: &mut Client,
    from: &QualifiedName,
    child: &QualifiedName,
    rows: i64,
) -> Result<Vec<ArchivedKey>> {
    let same = typed::same_shape_sql();
    let (from_name, child_name) = (from.quoted(), child.quoted());
    let matches: bool = crate::pg::query_scalar(client, &same, &[&from_name, &child_name])?;
    if !matches {
        return Err(Error::new(
            Kind::FailedMidway,
            format!("the columns of {child} changed while the restore read {from}, which holds its archived rows; nothing was restored from it"),
        )
        .next("run the same restore again: it puts the rows into the general archive first and converts them to the new columns"));
    }
    archived_keys(client, &typed::columns_sql(), &[&from_name], Some(rows))
}

/// The archived keys `sql` lists: each key's name, then how many rows have
/// it, or `rows` for every key when the table's columns say so.
fn archived_keys(
    client: &mut Client,
    sql: &str,
    params: &[&(dyn postgres::types::ToSql + Sync)],
    rows: Option<i64>,
) -> Result<Vec<ArchivedKey>> {
    client
        .query(sql, params)
        .map_err(|e| Error::from_postgres(&e, sql))?
        .iter()
        .map(|r| {
            Ok(ArchivedKey {
                name: Ident::from_catalog(r.cell::<String>(0, sql)?),
                rows: match rows {
                    Some(rows) => rows,
                    None => r.cell(1, sql)?,
                },
            })
        })
        .collect()
}

/// Reads every archived row of the run as a row of the table's current type,
/// before any row moves. If a value no longer converts (a column's type
/// changed), finds the columns that fail, one by one, and refuses.
fn check_conversion(
    client: &mut Client,
    rows_to: &Rows,
    schema: &Ident,
    columns: &ColumnPlan,
    table: &[TableColumn],
    run_id: &str,
) -> Result<()> {
    if rows_to.from.is_some() {
        // Copied from a table of the same column types: nothing converts.
        return Ok(());
    }
    let query = &rows_to.query;
    let sql = purge::restore_convert_sql(query, schema, &columns.columns, &rows_to.set);
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
        let one = purge::restore_convert_column_sql(query, schema, &column.name, &rows_to.set);
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

/// How many rows run `run_id` archived here: (deleted, nullified, by the
/// cascade below the child), wherever they are kept.
fn run_counts(
    client: &mut Client,
    exec: &Executor<'_>,
    schema: &Ident,
    run_id: &str,
) -> Result<(i64, i64, i64)> {
    let Some(archive) = crate::journal::archive::readable(client, schema)? else {
        return Err(Error::precondition(format!(
            "there is no archive ({}) in the {} database: no rollback purged rows here",
            purge::archive_table(schema),
            exec.environment
        )));
    };
    let by_run = purge::archived_by_run_sql(&archive);
    exec.bounded(client, "count the run's archived rows", |c| {
        let row = c
            .query_one(by_run.as_str(), &[&run_id])
            .map_err(|e| Error::from_postgres(&e, &by_run))?;
        Ok((
            row.cell(0, &by_run)?,
            row.cell(1, &by_run)?,
            row.cell(2, &by_run)?,
        ))
    })
}

/// [`run_counts`], refused when the run archived nothing here.
fn archived_rows(
    client: &mut Client,
    exec: &Executor<'_>,
    schema: &Ident,
    run_id: &str,
) -> Result<(i64, i64, i64)> {
    let (deleted, nullified, cascaded) = run_counts(client, exec, schema, run_id)?;
    if deleted == 0 && nullified == 0 && cascaded == 0 {
        return Err(Error::precondition(format!(
            "run {run_id} has no rows in the archive of {}",
            exec.environment
        ))
        .next("fkctl status lists the runs; the archive is the table above"));
    }
    Ok((deleted, nullified, cascaded))
}

/// Refuses, before any row moves, when the rows cannot go back as they were.
fn refuse_columns(
    columns: &ColumnPlan,
    deleted: i64,
    run_id: &str,
    table: &QualifiedName,
    env: &str,
    discard_dropped_columns: bool,
) -> Result<()> {
    let refusals = columns.refusals();
    if !refusals.is_empty() {
        let mut e = Error::precondition(format!(
            "the {deleted} archived row(s) of run {run_id} cannot go back into {table} as they were"
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

/// Lists the run's rows (`list`, one scan), then moves them (or their keys)
/// back batch by batch until the list is done, then checks the archive
/// shrank by exactly the rows that went back.
/// `archived_left` counts the run's rows of this kind still archived, of
/// which there were `deleted` before. Returns (rows moved, rows left in the
/// archive, a line for the journal).
#[allow(clippy::too_many_arguments)]
fn move_rows(
    c: &mut Client,
    exec: &Executor<'_>,
    list: &crate::plan::Step,
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
    exec.run(c, list, params)?;
    let mut moved = 0i64;
    let mut batches = 0u32;
    loop {
        // Planned again each batch (not prepared once): the run id decides
        // how the archive is read, and a generic plan would not know it.
        let outcome = exec
            .run(c, step, params)
            .map_err(|e| explain_batch(e, culprit))?;
        let Some(n) = outcome.listed_batch_moved()? else {
            break;
        };
        moved += n;
        batches += 1;
    }
    let left = count(exec, c, archived_left, run_id)?;
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

/// What one restore command knows before it moves anything.
struct Restore<'a> {
    playbook: &'a Playbook,
    environment: &'a crate::playbook::Environment,
    inspection: &'a Inspection,
    target: &'a crate::connect::Target,
    journal: &'a Journal,
    run_id: &'a str,
    options: &'a Options,
    /// Runs the batches and the reads of the archive (lock waits bounded,
    /// retried, their holders named).
    exec: &'a Executor<'a>,
    /// The change's tables of deleted rows (the child's and its cascade
    /// levels'), read once: the change's lock keeps them as they are.
    typed: &'a [TypedTable],
}

/// Archived rows of the run that came from a cascade level the live tree no
/// longer has (a foreign key dropped or changed since): refused before any
/// row moves, since fkctl no longer knows what they reference.
fn refuse_unknown_levels(client: &mut Client, r: &Restore<'_>) -> Result<()> {
    let Some(archive) = crate::journal::archive::readable(client, &r.playbook.journal_schema)?
    else {
        return Ok(());
    };
    let sql = purge::cascade::archived_levels_sql(&archive);
    let rows = client
        .query(sql.as_str(), &[&r.run_id])
        .map_err(|e| Error::from_postgres(&e, &sql))?;
    let known: Vec<ArchivedSet> = r
        .inspection
        .cascade
        .levels
        .iter()
        .map(purge::cascade::archived_set)
        .collect();
    let mut unknown = Vec::new();
    for row in &rows {
        let set = ArchivedSet {
            action: row.cell(1, &sql)?,
            source: Some(row.cell(0, &sql)?),
        };
        if !known.contains(&set) {
            unknown.push(format!(
                "{} ({})",
                set.source.unwrap_or_default(),
                set.action
            ));
        }
    }
    if unknown.is_empty() {
        return Ok(());
    }
    Err(Error::precondition(format!(
        "run {} archived rows of cascade levels that the live catalog no longer shows below {}: {}",
        r.run_id,
        r.playbook.constraint.table,
        unknown.join(", ")
    ))
    .with("environment", r.environment.name.as_str())
    .next("nothing was restored. Put back the foreign keys those tables had at rollback time (fkctl inspect shows the tree), then run the same restore again"))
}

/// What keeps archived rows from going back: the queries that count
/// those still waiting for their parent, and those whose identity a live
/// row has taken (None without a row identity).
struct Waiting<'a> {
    refused_sql: &'a str,
    taken_sql: Option<&'a str>,
}

impl Waiting<'_> {
    /// (waiting for their parent, identity taken) for run `run_id`.
    fn count(&self, exec: &Executor<'_>, client: &mut Client, run_id: &str) -> Result<(i64, i64)> {
        let refused = count(exec, client, self.refused_sql, run_id)?;
        let taken = match self.taken_sql {
            Some(sql) => count(exec, client, sql, run_id)?,
            None => 0,
        };
        Ok((refused, taken))
    }
}

/// The refusal for archived rows that stay: waiting for their parent, or
/// for the live row that has taken their identity to be dealt with.
fn rows_left(
    client: &mut Client,
    exec: &Executor<'_>,
    waiting: &Waiting<'_>,
    run_id: &str,
    left: i64,
    what: &str,
    env: &str,
) -> Result<Error> {
    let (refused_after, taken_after) = waiting.count(exec, client, run_id)?;
    let mut why = Vec::new();
    if refused_after > 0 {
        why.push(format!("{refused_after} still lack their parent row"));
    }
    if taken_after > 0 {
        why.push(format!(
            "{taken_after} have an identity a live row has taken since the rollback"
        ));
    }
    let mut e = Error::precondition(format!(
        "{left} archived row(s){what} stay in the archive: {}",
        why.join(", ")
    ))
    .with("environment", env);
    if refused_after + taken_after < left {
        e = e.with(
            "note",
            format!(
                "{} of them could go back now (their parent came back, or the row holding their identity went, during the restore)",
                left - refused_after - taken_after
            ),
        );
    }
    let mut next = Vec::new();
    if refused_after > 0 {
        next.push("restore the parent rows");
    }
    if taken_after > 0 {
        next.push("compare each row whose identity is taken with its archived copy (fkctl.archive) and keep one: delete the live row, or leave the archived one where it is");
    }
    Ok(e.next(format!(
        "{}, then run the same restore again; the rows are safe in the archive",
        next.join("; ")
    )))
}

/// Asks before rows move (a protected environment's name must be typed);
/// a "no" changes nothing.
fn ask(question: &str, environment: &crate::playbook::Environment) -> Result<()> {
    let go = if environment.protected {
        tui::confirm_by_name(question, &environment.name)?
    } else {
        tui::confirm(question)?
    };
    if go {
        Ok(())
    } else {
        Err(Error::declined("at your request; nothing was restored"))
    }
}

/// Refuses when no archived row can go back yet; asks (unless --yes).
fn refuse_or_ask(
    r: &Restore<'_>,
    rows_to: &Rows,
    archived: i64,
    (refused_before, taken_before): (i64, i64),
    what: &str,
) -> Result<()> {
    let env = r.environment.name.as_str();
    if archived == refused_before {
        let parent = rows_to.query.parent.clone();
        return Err(Error::precondition(format!(
            "none of the {archived} archived rows{what} has its parent back in {parent}"
        ))
        .with("environment", env)
        .next("restore the parent rows first, then run restore again"));
    }
    if archived == refused_before + taken_before {
        return Err(Error::precondition(format!(
            "none of the {archived} archived rows{what} can go back: {refused_before} still lack their parent row, {taken_before} have an identity a live row of {} has taken since the rollback",
            rows_to.table
        ))
        .with("environment", env)
        .next("compare each row whose identity is taken with its archived copy (fkctl.archive) and keep one, then run restore again"));
    }
    if !r.options.yes {
        let question = format!(
            "Put {} row(s) back into {} on {env}?",
            archived - refused_before - taken_before,
            rows_to.table
        );
        ask(&question, r.environment)?;
    }
    Ok(())
}

/// Puts the archived rows of `rows_to` back: refuses (nothing moved) when
/// they cannot go back as they were; exit 4 when some stay archived.
// Long because it is the restore of one table from start to end: columns,
// conversion, plan, counts, the batches and what is left, in order.
fn restore_rows(client: &mut Client, r: &Restore<'_>, rows_to: &Rows, archived: i64) -> Result<()> {
    let (playbook, env, run_id) = (r.playbook, r.environment.name.as_str(), r.run_id);
    let schema = &playbook.journal_schema;
    let (columns, table) = compare_columns(
        client,
        playbook,
        rows_to,
        run_id,
        archived,
        r.options.discard_dropped_columns,
    )?;
    refuse_columns(
        &columns,
        archived,
        run_id,
        &rows_to.table,
        env,
        r.options.discard_dropped_columns,
    )?;
    check_conversion(client, rows_to, schema, &columns, &table, run_id)?;
    let observed = Observed {
        environment: env,
        inspection: r.inspection,
    };
    let plan = match rows_to.level {
        None => restore_plan(playbook, Some(&observed), Archived::Deleted(&columns)),
        Some(level) => {
            cascade::restore_level_plan(playbook, &observed, level, Archived::Deleted(&columns))
                .ok_or_else(|| Error::internal("no such cascade level"))?
        }
    };
    let (list, step) = steps_of(&plan, StepKind::RestoreRows)?;
    let refused_sql =
        purge::restore_refused_sql(&rows_to.query, schema, &columns.columns, &rows_to.set);
    let taken_sql = purge::restore_taken_sql(
        &rows_to.query,
        schema,
        &columns.columns,
        &rows_to.set,
        rows_to.identity.as_deref(),
    );
    let waiting = Waiting {
        refused_sql: &refused_sql,
        taken_sql: taken_sql.as_deref(),
    };
    let (refused_before, taken_before) = waiting.count(r.exec, client, run_id)?;
    let what = match rows_to.level {
        None => String::new(),
        Some(_) => format!(" of {} (deleted by the cascade)", rows_to.table),
    };
    crate::say!("== restore on {env} ({}) ==", r.target.description);
    crate::say!(
        "  run {run_id}: {archived} archived row(s){what}; {} can go back now, {refused_before} still lack their parent{}",
        archived - refused_before - taken_before,
        if taken_before > 0 {
            format!(", {taken_before} have an identity a live row has taken since the rollback")
        } else {
            String::new()
        }
    );
    for note in columns.notes() {
        crate::say!("  {note}");
    }
    for step in [list, step] {
        crate::say!("{}", super::step_text(step));
    }
    refuse_or_ask(r, rows_to, archived, (refused_before, taken_before), &what)?;
    let exec = r.exec;
    r.journal.ensure(client)?;
    let run = r.journal.start_run(
        client,
        &playbook.change,
        "restore",
        env,
        &playbook.constraint,
    )?;
    let archived_left = rows_to.left_sql(schema);
    let values = BindValues {
        run_id: &run.id,
        change: &playbook.change,
        constraint_name: playbook.constraint.name.as_str(),
        restore_run_id: Some(run_id),
    };
    let params = values.for_step(step)?;
    let result = record_step(client, Some(&run), step, |c| {
        let (moved, left, detail) = move_rows(
            c,
            exec,
            list,
            step,
            &params,
            &archived_left,
            run_id,
            archived,
            env,
        )?;
        let mut detail = vec![detail];
        detail.extend(columns.notes());
        Ok(((moved, left), 0, Vec::new(), Some(detail.join("\n"))))
    });
    let finished = run.finish(
        client,
        if result.is_ok() { "restored" } else { "failed" },
        result.as_ref().err().map(|e| e.to_string()).as_deref(),
    );
    let (moved, left) = result?;
    finished?;
    crate::say!("  restored {moved} row(s) into {}; the archive of run {run_id} went from {archived} to {left} row(s){what}", rows_to.table);
    if left > 0 {
        return Err(rows_left(client, exec, &waiting, run_id, left, &what, env)?);
    }
    Ok(())
}

/// A restore plan's list step and the batch step of `kind` after it.
pub(super) fn steps_of(
    plan: &crate::plan::Plan,
    kind: StepKind,
) -> Result<(&crate::plan::Step, &crate::plan::Step)> {
    let find = |wanted: StepKind| {
        plan.steps
            .iter()
            .find(|s| s.kind == wanted && !s.statements.is_empty())
            .ok_or_else(|| {
                Error::internal(format!("the restore plan has no {} statement", wanted.id()))
            })
    };
    Ok((find(StepKind::ListArchived)?, find(kind)?))
}

/// Keeps going past a table whose rows must wait (a refusal: exit 4), so
/// that every level that can go back does; other errors stop at once.
fn wait_or_stop(result: Result<()>, waiting: &mut Vec<Error>) -> Result<()> {
    match result {
        Err(e) if e.kind == Kind::Precondition => {
            waiting.push(e);
            Ok(())
        }
        other => other,
    }
}

/// The first refusal, with the others named after it.
fn first_of(mut waiting: Vec<Error>) -> Result<()> {
    if waiting.is_empty() {
        return Ok(());
    }
    let mut first = waiting.remove(0);
    for e in waiting {
        first = first.with("also", e.message);
    }
    Err(first)
}

/// The cascade levels of the run, in dependency order (each after the level
/// whose rows it references): deleted rows back into their tables, keys set
/// to NULL back into their rows. Rows whose row above is still missing wait.
fn restore_levels(client: &mut Client, r: &Restore<'_>, waiting: &mut Vec<Error>) -> Result<()> {
    let schema = &r.playbook.journal_schema;
    for (index, level) in r.inspection.cascade.levels.iter().enumerate() {
        let set = purge::cascade::archived_set(level);
        if set.action == "cascade-delete" {
            let rows = Rows::level(r.inspection, index)
                .ok_or_else(|| Error::internal("no such cascade level"))?;
            for (rows_to, archived) in sources(client, r, &rows)? {
                wait_or_stop(restore_rows(client, r, &rows_to, archived), waiting)?;
            }
        } else {
            let archived = count(
                r.exec,
                client,
                &purge::archived_left_sql(schema, &set),
                r.run_id,
            )?;
            if archived == 0 {
                continue;
            }
            let query = cascade::level_query(r.inspection, index)
                .ok_or_else(|| Error::internal("no such cascade level"))?;
            let keys = KeysRun {
                table: &level.table,
                query: &query,
                identity: level.identity.as_deref(),
                set,
                level: Some(index),
                ..KeysRun::child(
                    r.playbook,
                    r.environment,
                    r.inspection,
                    r.run_id,
                    archived,
                    r.options.yes,
                )
            };
            wait_or_stop(restore_keys(client, r.target, r.journal, &keys), waiting)?;
        }
    }
    Ok(())
}

/// The restore's session. Restore reads fkctl's archive, whose tables
/// autovacuum may not have analyzed yet: the planner then costs a count of
/// 100,000 archived rows past jit_above_cost and compiles for a third of a
/// second (measured), in every count and batch. Nothing here gains from JIT.
fn connect_without_jit(
    playbook: &Playbook,
    environment: &crate::playbook::Environment,
    dsn: &[(String, String)],
) -> Result<(crate::connect::Target, Client)> {
    let (target, mut client) = connect(playbook, environment, dsn)?;
    client
        .batch_execute("SET jit = off")
        .map_err(|e| Error::from_postgres(&e, "SET jit = off"))?;
    Ok((target, client))
}

pub fn run(path: &Path, connection: &Connection, run_id: &str, options: Options) -> Result<()> {
    let env = connection.env.as_str();
    let (playbook, environment) = load_with_env(path, env)?;
    if environment.fleet.is_some() {
        return super::fleet::restore(path, &environment, connection, run_id, &options);
    }
    if !options.yes && !tui::interactive() {
        return Err(Error::usage(
            "fkctl restore asks before putting rows back, but there is no terminal to ask on",
        )
        .next("pass --yes to run it from a script"));
    }
    interrupt::install();
    let json = options.output == crate::cli::args::Output::Json;
    if json {
        super::narrate_to_stderr();
    }
    let mut report = Report {
        environment: env.to_string(),
        run_id: run_id.to_string(),
        ..Report::default()
    };
    let mut nothing = false;
    let result = (|| -> Result<()> {
        let (target, mut client) = connect_without_jit(&playbook, &environment, &connection.dsn)?;
        // Reads fkctl's archive before the tables are inspected: lock
        // holders named on fkctl's own tables only.
        let reader = Executor::new(&target, env, Vec::new(), playbook.safety.lock_retries)?
            .watching_journal(&playbook.journal_schema);
        file_typed_rows(&mut client, &reader, &playbook)?;
        let Some(resolved) = reader.bounded(&mut client, "find the run to restore", |c| {
            crate::journal::archive::resolve_run(
                c,
                &playbook.journal_schema,
                &playbook.change,
                &playbook.constraint.name,
                run_id,
            )
        })?
        else {
            crate::say!(
                "{env}: nothing of change {} is waiting in the archive; nothing to restore",
                playbook.change
            );
            nothing = true;
            return Ok(());
        };
        let run_id = resolved.as_str();
        report.run_id = run_id.to_string();
        let before = archived_rows(&mut client, &reader, &playbook.journal_schema, run_id)?;
        report.archived_before = before.0 + before.1 + before.2;
        report.archived_after = report.archived_before;
        let result = restore_in(
            &mut client,
            &target,
            &reader,
            &playbook,
            &environment,
            run_id,
            &options,
        );
        if let Ok(after) = run_counts(&mut client, &reader, &playbook.journal_schema, run_id) {
            report.archived_after = after.0 + after.1 + after.2;
        }
        result
    })();
    report.restored = report.archived_before - report.archived_after;
    report.outcome = match &result {
        Ok(()) if nothing => "nothing archived",
        Ok(()) => "restored",
        Err(_) if report.restored > 0 => "partly restored",
        Err(e) if e.kind == Kind::Precondition => "refused",
        Err(_) => "failed",
    };
    if json {
        super::write_json(&report)?;
    }
    result.map_err(|e| label(e, env, "restore"))
}

/// Takes the change's lock (no rollback adds rows meanwhile), then files
/// the deleted rows kept in tables whose columns no longer match the
/// child's into the general archive, where restore converts them. fkctl's
/// own tables only: no row of the application's tables moves.
fn file_typed_rows(client: &mut Client, reader: &Executor<'_>, playbook: &Playbook) -> Result<()> {
    let env = reader.environment;
    guard::lock_change(client, &playbook.change, &playbook.constraint, env)?;
    let schema = &playbook.journal_schema;
    // One transaction per table: a retry files the tables still to file.
    let filed = reader.bounded(client, "file archived rows for the restore", |c| {
        crate::journal::archive::file_typed(c, playbook)
    })?;
    if filed > 0 {
        crate::say!(
            "{env}: {filed} archived row(s) filed into {} for the restore",
            purge::archive_table(schema)
        );
    }
    Ok(())
}

/// Where the run's rows of `rows` wait, with how many each holds: the
/// tables of their own table's shape (the typical rollback's), then the
/// general archive.
fn sources(client: &mut Client, r: &Restore<'_>, rows: &Rows) -> Result<Vec<(Rows, i64)>> {
    let schema = &r.playbook.journal_schema;
    let mut sources = Vec::new();
    for typed in r.typed {
        if !typed.keeps(&rows.table, &rows.set.action) {
            continue;
        }
        let held = count(
            r.exec,
            client,
            &typed::rows_of_run_sql(&typed.table),
            r.run_id,
        )?;
        if held > 0 {
            let from = Rows {
                from: Some(typed.table.clone()),
                ..rows.clone()
            };
            sources.push((from, held));
        }
    }
    let general = count(r.exec, client, &rows.left_sql(schema), r.run_id)?;
    if general > 0 {
        sources.push((rows.clone(), general));
    }
    Ok(sources)
}

/// The restore itself, on a connection whose archive was counted.
fn restore_in(
    client: &mut Client,
    target: &crate::connect::Target,
    reader: &Executor<'_>,
    playbook: &Playbook,
    environment: &crate::playbook::Environment,
    run_id: &str,
    options: &Options,
) -> Result<()> {
    // The change's lock was taken by `file_typed_rows`, first thing.
    let env = environment.name.as_str();
    let schema = &playbook.journal_schema;
    let journal = Journal::new(schema);
    let (deleted, nullified, cascaded) = archived_rows(client, reader, schema, run_id)?;
    let inspection = inspect_live(client, playbook, env, "pre-checks")?;
    let exec = Executor::for_inspection(target, env, &inspection, playbook.safety.lock_retries)?
        .watching_journal(schema);
    let typed = reader.bounded(client, "read the archive's tables", |c| {
        typed_tables(c, schema, &playbook.change, &playbook.constraint.name)
    })?;
    let r = Restore {
        exec: &exec,
        playbook,
        environment,
        inspection: &inspection,
        target,
        journal: &journal,
        run_id,
        options,
        typed: &typed,
    };
    if deleted == 0 && cascaded == 0 {
        let keys = KeysRun::child(
            playbook,
            environment,
            &inspection,
            run_id,
            nullified,
            options.yes,
        );
        return restore_keys(client, target, &journal, &keys);
    }
    refuse_unknown_levels(client, &r)?;
    let mut waiting = Vec::new();
    for (rows_to, archived) in sources(client, &r, &Rows::child(playbook, &inspection))? {
        let done = restore_rows(client, &r, &rows_to, archived).map_err(|mut e| {
            if e.kind == Kind::Precondition && cascaded > 0 {
                e = e.with("cascade", format!("the run also archived {cascaded} row(s) of tables below {} (its cascade): those under a child row still archived wait with it", playbook.constraint.table));
            }
            if e.kind == Kind::Precondition && nullified > 0 {
                e = e.with("nullified", format!("the run also nullified the keys of {nullified} row(s); once its deleted rows are all back, the same restore puts those keys back"));
            }
            e
        });
        wait_or_stop(done, &mut waiting)?;
    }
    restore_levels(client, &r, &mut waiting)?;
    first_of(waiting)
}
