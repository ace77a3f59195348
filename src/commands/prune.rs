//! `fkctl prune`: retention for what fkctl keeps in the application's
//! database. Removes a change's journal runs older than a given age, never
//! the run whose snapshot a rollback restores and, without `--force`, never
//! a run whose archived rows a `restore` may still need. Counted first,
//! removed in one statement that must remove exactly that, checked after.

use super::{connect, load_with_env, write_json, write_stdout};
use crate::cli::args::Connection;
use crate::error::{Error, Result};
use crate::execute::{guard, Executor};
use crate::journal::Journal;
use crate::kinds::foreign_key::repair::{archive_table, typed};
use crate::pg::Cell;
use crate::sql::ident::Ident;
use crate::sql::journal::{prune_preview_sql, prune_sql, ArchiveTables};
use crate::tui;
use postgres::Client;
use serde::Serialize;
use std::path::Path;
use std::time::Duration;

pub struct Options {
    pub older_than: Duration,
    pub force: bool,
    pub yes: bool,
    pub dry_run: bool,
    pub output: crate::cli::args::Output,
}

#[derive(Debug, Default, Serialize, PartialEq, Eq, Clone, Copy)]
struct Counts {
    runs: i64,
    steps: i64,
    archived_rows: i64,
}

#[derive(Serialize)]
struct Outcome {
    environment: String,
    older_than_seconds: u64,
    force: bool,
    dry_run: bool,
    removed: Counts,
}

fn counts(
    client: &mut impl postgres::GenericClient,
    sql: &str,
    change: &str,
    age_s: f64,
    force: bool,
) -> Result<Counts> {
    let row = client
        .query_one(sql, &[&change, &age_s, &force])
        .map_err(|e| Error::from_postgres(&e, sql))?;
    Ok(Counts {
        runs: row.cell(0, sql)?,
        steps: row.cell(1, sql)?,
        archived_rows: row.cell(2, sql)?,
    })
}

pub fn run(path: &Path, connection: &Connection, options: Options) -> Result<()> {
    let env = connection.env.as_str();
    let (playbook, environment) = load_with_env(path, env)?;
    let json = options.output == crate::cli::args::Output::Json;
    if json {
        super::narrate_to_stderr();
    }
    let (target, mut client) = connect(&playbook, &environment, &connection.dsn)?;
    // Reads and removals on fkctl's own tables wait within the lock
    // timeout, retried, naming whoever holds them.
    let reader = Executor::new(&target, env, Vec::new(), playbook.safety.lock_retries)?
        .watching_journal(&playbook.journal_schema);
    let journal = Journal::new(&playbook.journal_schema);
    let mut outcome = Outcome {
        environment: env.to_string(),
        older_than_seconds: options.older_than.as_secs(),
        force: options.force,
        dry_run: options.dry_run,
        removed: Counts::default(),
    };
    if journal.exists(&mut client)? {
        guard::lock_change(&mut client, &playbook.change, &playbook.constraint, env)?;
        outcome.removed = prune(&mut client, &reader, &playbook, &environment, &options)?;
    } else {
        crate::say!("nothing to prune on {env}: fkctl has no journal there");
    }
    if json {
        write_json(&outcome)
    } else {
        write_stdout("")
    }
}

/// Asks before removing anything: the environment's name typed when protected.
fn confirm(environment: &crate::playbook::Environment) -> Result<bool> {
    let question = format!("Remove them from {}?", environment.name);
    if environment.protected {
        tui::confirm_by_name(&question, &environment.name)
    } else {
        tui::confirm(&question)
    }
}

/// Where the change's archived rows are counted (the view over every
/// archive table, or the general archive of an older install), and the
/// tables that hold them, each with its run column.
fn archive_tables(
    client: &mut Client,
    playbook: &crate::playbook::Playbook,
) -> Result<ArchiveTables> {
    let schema = &playbook.journal_schema;
    let read = crate::journal::archive::readable(client, schema)?;
    let mut hold = Vec::new();
    let general = archive_table(schema).quoted();
    if crate::pg::relation_exists(client, &general)? {
        hold.push((general, Ident::from_catalog("run_id")));
    }
    let change = &playbook.change;
    let constraint = &playbook.constraint.name;
    for t in crate::journal::archive::typed_tables(client, schema, change, constraint)? {
        hold.push((t.table.quoted(), typed::run_column()));
    }
    Ok(ArchiveTables { read, hold })
}

fn prune(
    client: &mut Client,
    reader: &Executor<'_>,
    playbook: &crate::playbook::Playbook,
    environment: &crate::playbook::Environment,
    options: &Options,
) -> Result<Counts> {
    let env = environment.name.as_str();
    let schema = &playbook.journal_schema;
    let archive = reader.bounded(client, "read the archive's tables", |c| {
        archive_tables(c, playbook)
    })?;
    let age = options.older_than.as_secs_f64();
    let change = playbook.change.as_str();
    let preview_sql = prune_preview_sql(schema, &archive);
    let count_old = |c: &mut Client| counts(c, &preview_sql, change, age, options.force);
    let preview = reader.bounded(client, "count what prune would remove", count_old)?;
    crate::say!(
        "{env}: {} run(s) of {change} older than {}, with {} step record(s){}",
        preview.runs,
        crate::playbook::duration::human(options.older_than),
        preview.steps,
        if options.force {
            format!(
                " and {} archived row(s) (--force: a restore can no longer bring them back)",
                preview.archived_rows
            )
        } else {
            " (runs whose archived rows a restore may still need are kept; the run of the recorded snapshot too)".to_string()
        }
    );
    if options.dry_run || preview == Counts::default() {
        return Ok(Counts::default());
    }
    if !options.yes && !confirm(environment)? {
        return Err(Error::declined("at your request; nothing was removed"));
    }
    let sql = prune_sql(schema, &archive);
    let removed = reader.bounded(client, "remove the old runs", |c| {
        let mut tx = c
            .transaction()
            .map_err(|e| Error::from_postgres(&e, "BEGIN"))?;
        let removed = counts(&mut tx, &sql, change, age, options.force)?;
        if removed != preview {
            // Something changed between the count and the removal (a run
            // finished, a restore ran): remove nothing rather than guess.
            return Err(Error::precondition(format!(
                "the journal changed while pruning (counted {preview:?}, the statement would remove {removed:?}); nothing was removed"
            ))
            .with("environment", env)
            .next("run the same command again"));
        }
        tx.commit()
            .map_err(|e| Error::from_postgres(&e, "COMMIT"))?;
        Ok(removed)
    })?;
    let left = reader.bounded(client, "count what is left", count_old)?;
    if left != Counts::default() {
        return Err(Error::new(
            crate::error::Kind::FailedMidway,
            format!("after the prune committed, {left:?} of the same age are still there"),
        )
        .with("environment", env));
    }
    crate::say!(
        "{env}: removed {} run(s), {} step record(s), {} archived row(s)",
        removed.runs,
        removed.steps,
        removed.archived_rows
    );
    Ok(removed)
}
