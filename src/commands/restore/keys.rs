//! `fkctl restore` of a nullify run: the keys a rollback set to NULL go back
//! into their rows, each row found by the row identity recorded with it, only
//! where its keys are all still NULL and its parent exists again.

use super::move_rows;
use crate::connect::Target;
use crate::error::{describe_postgres, Error, Result};
use crate::execute::{BindValues, Executor};
use crate::journal::{record_step, Journal};
use crate::kinds::foreign_key::plan::cascade;
use crate::kinds::foreign_key::repair::{self as purge, ArchivedSet};
use crate::kinds::foreign_key::violations::OrphanQuery;
use crate::model::Inspection;
use crate::pg::Cell;
use crate::plan::{restore_plan, Archived, Observed, StepKind};
use crate::playbook::{Environment, Playbook};
use crate::sql::ident::{Ident, QualifiedName};
use postgres::Client;

/// One restore of nullified keys: what the command knows before it starts.
pub struct KeysRun<'a> {
    pub playbook: &'a Playbook,
    pub environment: &'a Environment,
    pub inspection: &'a Inspection,
    pub run_id: &'a str,
    /// Nullified rows of the run in the archive.
    pub nullified: i64,
    pub yes: bool,
    /// The table whose keys go back, and its orphan query against the
    /// table it references: the child's, or a SET NULL cascade level's.
    pub table: &'a QualifiedName,
    pub query: &'a OrphanQuery,
    /// Its live row identity.
    pub identity: Option<&'a [Ident]>,
    /// Its rows in the archive.
    pub set: ArchivedSet,
    /// The cascade level (index in the inspection's tree), None for the child.
    pub level: Option<usize>,
}

impl<'a> KeysRun<'a> {
    /// The child's own nullified keys.
    pub fn child(
        playbook: &'a Playbook,
        environment: &'a Environment,
        inspection: &'a Inspection,
        run_id: &'a str,
        nullified: i64,
        yes: bool,
    ) -> KeysRun<'a> {
        KeysRun {
            playbook,
            environment,
            inspection,
            run_id,
            nullified,
            yes,
            table: &playbook.constraint.table,
            query: &inspection.orphan_query,
            identity: inspection.child_identity.as_deref(),
            set: ArchivedSet::nullified(),
            level: None,
        }
    }
}

/// Where the still-archived nullified rows of a run stand.
struct State {
    archived: i64,
    /// Their row is gone (no row of the table has the archived identity).
    gone: i64,
    /// The application has set a key of the row since (not all NULL).
    changed: i64,
    /// Their parent is still missing.
    parent_missing: i64,
}

impl State {
    fn ready(&self) -> i64 {
        self.archived - self.gone - self.changed - self.parent_missing
    }

    fn describe(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        if self.parent_missing > 0 {
            out.push(("parent missing", format!("{} row(s): their parent row is still missing; restore the parent rows, then run the same restore again", self.parent_missing)));
        }
        if self.changed > 0 {
            out.push(("changed since", format!("{} row(s): the application has set their key since the rollback; fkctl leaves them as they are (their old values stay in the archive)", self.changed)));
        }
        if self.gone > 0 {
            out.push(("row gone", format!("{} row(s): no row of the table has their identity any more (deleted, or its key changed)", self.gone)));
        }
        out
    }
}

fn identity_names(identity: &[Ident]) -> String {
    identity
        .iter()
        .map(Ident::display)
        .collect::<Vec<_>>()
        .join(", ")
}

fn state(client: &mut Client, k: &KeysRun<'_>, identity: &[Ident], env: &str) -> Result<State> {
    let sql = purge::nullified_state_sql(k.query, &k.playbook.journal_schema, identity, &k.set);
    let row = client.query_one(sql.as_str(), &[&k.run_id]).map_err(|e| {
        if e.as_db_error().is_none() {
            return Error::from_postgres(&e, &sql);
        }
        Error::precondition(format!(
            "the archived identity or key values of run {} no longer convert to the column types of {}",
            k.run_id, k.table
        ))
        .with("environment", env)
        .with("postgres", describe_postgres(&e).1)
        .next("nothing was restored. Change the column back, or rewrite the archived values (jsonb, row_data), then run the same restore again")
    })?;
    Ok(State {
        archived: row.cell(0, &sql)?,
        gone: row.cell(1, &sql)?,
        changed: row.cell(2, &sql)?,
        parent_missing: row.cell(3, &sql)?,
    })
}

/// The row identity to find the rows by: the child's live one, which every
/// archived row of the run must have been recorded with. Refused otherwise.
fn identity<'a>(client: &mut Client, k: &KeysRun<'a>, env: &str) -> Result<&'a [Ident]> {
    let table = k.table;
    let Some(identity) = k.identity else {
        return Err(Error::precondition(format!(
            "{table} has no primary key, replica-identity index or unique index on NOT NULL columns now: the nullified rows of run {} cannot be found again",
            k.run_id
        ))
        .with("environment", env)
        .next("nothing was restored. Add back the key the table had at rollback time, then run the same restore again"));
    };
    let archive = purge::archive_table(&k.playbook.journal_schema);
    let recorded: bool = crate::pg::query_scalar(
        client,
        "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_attribute WHERE attrelid = to_regclass($1) AND attname = 'identity_columns' AND NOT attisdropped)",
        &[&archive.quoted()],
    )?;
    let (other, recorded_as): (i64, String) = if recorded {
        let sql = purge::nullified_other_identity_sql(&k.playbook.journal_schema, identity, &k.set);
        let row = client
            .query_one(sql.as_str(), &[&k.run_id])
            .map_err(|e| Error::from_postgres(&e, &sql))?;
        (row.cell(0, &sql)?, row.cell(1, &sql)?)
    } else {
        (k.nullified, "(none recorded)".to_string())
    };
    if other > 0 {
        return Err(Error::precondition(format!(
            "{other} nullified row(s) of run {} were not archived with the row identity {table} has now ({})",
            k.run_id,
            identity_names(identity)
        ))
        .with("environment", env)
        .with("archived with", recorded_as)
        .next("nothing was restored. Rows archived by an fkctl that recorded no identity, or under another key of the table, cannot be matched safely; put their keys back by hand from the archive (row_data)"));
    }
    Ok(identity)
}

/// Puts the nullified keys of the run back; exit 4 when some stay archived.
/// Shows what will happen, refuses when no row can get its key back, and
/// asks (unless --yes).
fn announce_and_ask(
    k: &KeysRun<'_>,
    target: &Target,
    steps: &[&crate::plan::Step],
    before: &State,
    identity: &[Ident],
) -> Result<()> {
    let env = k.environment.name.as_str();
    let table = k.table;
    crate::say!("== restore on {env} ({}) ==", target.description);
    crate::say!(
        "  run {}: {} nullified row(s) archived; {} can get their key back now, found by ({})",
        k.run_id,
        before.archived,
        before.ready(),
        identity_names(identity)
    );
    for (what, why) in before.describe() {
        crate::say!("  {what}: {why}");
    }
    for step in steps {
        crate::say!("{}", super::super::step_text(step));
    }
    if before.ready() == 0 {
        let mut e = Error::precondition(format!(
            "none of the {} nullified row(s) of run {} can get its key back now",
            before.archived, k.run_id
        ))
        .with("environment", env);
        for (what, why) in before.describe() {
            e = e.with(what, why);
        }
        return Err(e.next("nothing was changed; the old keys are safe in the archive"));
    }
    if !k.yes {
        let question = format!(
            "Put the keys of {} row(s) of {table} back on {env}?",
            before.ready()
        );
        super::ask(&question, k.environment)?;
    }
    Ok(())
}

/// The refusal for rows that stay in the archive after the batches.
fn rows_left(client: &mut Client, k: &KeysRun<'_>, identity: &[Ident], left: i64) -> Result<Error> {
    let env = k.environment.name.as_str();
    let after = state(client, k, identity, env)?;
    let mut e = Error::precondition(format!(
        "{left} nullified row(s) stay in the archive: their keys could not go back"
    ))
    .with("environment", env);
    for (what, why) in after.describe() {
        e = e.with(what, why);
    }
    if after.ready() > 0 {
        e = e.with(
            "note",
            format!(
                "{} of them can go back now (a parent came back during the restore)",
                after.ready()
            ),
        );
    }
    Ok(e.next(if after.parent_missing > 0 {
        "the rows left are safe in the archive; run the same restore again once their parents are back"
    } else {
        "the rows left are safe in the archive; a restore cannot put their keys back as they are (see above): compare them with their archived values in fkctl.archive"
    }))
}

/// The plan that puts the keys of `k` back: the child's, or a cascade level's.
fn keys_plan(k: &KeysRun<'_>, observed: &Observed<'_>) -> Result<crate::plan::Plan> {
    match k.level {
        None => Ok(restore_plan(
            k.playbook,
            Some(observed),
            Archived::Nullified,
        )),
        Some(level) => {
            cascade::restore_level_plan(k.playbook, observed, level, Archived::Nullified)
                .ok_or_else(|| Error::internal("no such cascade level"))
        }
    }
}

pub fn restore_keys(
    client: &mut Client,
    target: &Target,
    journal: &Journal,
    k: &KeysRun<'_>,
) -> Result<()> {
    let env = k.environment.name.as_str();
    let table = k.table;
    let identity = identity(client, k, env)?;
    let before = state(client, k, identity, env)?;
    let observed = Observed {
        environment: env,
        inspection: k.inspection,
    };
    let plan = keys_plan(k, &observed)?;
    let (list, step) = super::steps_of(&plan, StepKind::RestoreKeys)?;
    announce_and_ask(k, target, &[list, step], &before, identity)?;
    let exec = Executor::new(
        target,
        env,
        k.inspection.watched.clone(),
        k.playbook.safety.lock_retries,
    )?
    .watching_journal(&k.playbook.journal_schema);
    journal.ensure(client)?;
    let run = journal.start_run(
        client,
        &k.playbook.change,
        "restore",
        env,
        &k.playbook.constraint,
    )?;
    let archived_left = purge::archived_left_sql(&k.playbook.journal_schema, &k.set);
    let values = BindValues {
        run_id: &run.id,
        change: &k.playbook.change,
        constraint_name: k.playbook.constraint.name.as_str(),
        restore_run_id: Some(k.run_id),
    };
    let params = values.for_step(step)?;
    let result = record_step(client, Some(&run), step, |c| {
        let (moved, left, detail) = move_rows(
            c,
            &exec,
            list,
            step,
            &params,
            &archived_left,
            k.run_id,
            before.archived,
            env,
        )?;
        let detail = format!(
            "{detail}; keys put back into rows found by ({})",
            identity_names(identity)
        );
        Ok(((moved, left), 0, Vec::new(), Some(detail)))
    });
    let finished = run.finish(
        client,
        if result.is_ok() { "restored" } else { "failed" },
        result.as_ref().err().map(|e| e.to_string()).as_deref(),
    );
    let (moved, left) = result?;
    finished?;
    crate::say!(
        "  put the keys of {moved} row(s) of {table} back; the archive of run {} went from {} to {left} nullified row(s)",
        k.run_id, before.archived
    );
    if left > 0 {
        return Err(rows_left(client, k, identity, left)?);
    }
    Ok(())
}
