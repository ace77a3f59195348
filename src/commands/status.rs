//! `fkctl status`: per environment, the constraint as the catalog shows it,
//! the last runs of this change from the journal, and the stored snapshot.

use super::{connect, inspect_live, select_environments, write_json, write_stdout};
use crate::cli::args::Output;
use crate::error::{Error, Kind, Result};
use crate::execute::Executor;
use crate::journal::{Journal, RunRecord, Snapshot};
use crate::pg::Cell;
use crate::playbook;
use crate::report::{state_of, ConstraintState};
use serde::Serialize;
use std::fmt::Write;
use std::path::Path;

#[derive(Debug, Serialize)]
struct EnvironmentStatus {
    environment: String,
    reachable: bool,
    error: Option<String>,
    constraint: Option<ConstraintState>,
    definition: Option<String>,
    snapshot: Option<Snapshot>,
    runs: Vec<RunRecord>,
    /// The loose replacement, when the playbook asks for one or one is installed.
    loose: Option<crate::model::LooseState>,
    /// What fkctl keeps in this database for the change (see `fkctl prune`).
    retention: Option<Retention>,
    /// Why it could not be read, for the exit code.
    #[serde(skip)]
    error_kind: Option<Kind>,
}

#[derive(Debug, Serialize)]
struct Retention {
    runs: i64,
    oldest_run: Option<String>,
    archived_rows: i64,
    oldest_archived: Option<String>,
}

fn retention(
    client: &mut postgres::Client,
    playbook: &playbook::Playbook,
    journal: &Journal,
) -> Result<Option<Retention>> {
    if !journal.exists(client)? {
        return Ok(None);
    }
    let archive = crate::journal::archive::readable(client, &playbook.journal_schema)?;
    let sql = crate::sql::journal::retention_sql(&playbook.journal_schema, archive.as_deref());
    let row = client
        .query_one(sql.as_str(), &[&playbook.change])
        .map_err(|e| Error::from_postgres(&e, &sql))?;
    Ok(Some(Retention {
        runs: row.cell(0, &sql)?,
        oldest_run: row.cell(1, &sql)?,
        archived_rows: row.cell(2, &sql)?,
        oldest_archived: row.cell(3, &sql)?,
    }))
}

fn one(
    playbook: &playbook::Playbook,
    environment: &playbook::Environment,
    dsn: &[(String, String)],
) -> Result<EnvironmentStatus> {
    let (target, mut client) = connect(playbook, environment, dsn)?;
    let inspection = inspect_live(&mut client, playbook, &environment.name, "status")?;
    let journal = Journal::new(&playbook.journal_schema);
    // A rollback rebuilding the archive's view, or a restore filing rows,
    // holds fkctl's tables briefly: wait within the lock timeout, retried,
    // and name the holder rather than fail on the first wait.
    let reader = Executor::new(
        &target,
        &environment.name,
        Vec::new(),
        playbook.safety.lock_retries,
    )?
    .watching_journal(&playbook.journal_schema);
    let (snapshot, runs, retention) =
        reader.bounded(&mut client, "read the journal and archive", |c| {
            Ok((
                journal.snapshot(c, &playbook.change, &playbook.constraint)?,
                journal.recent_runs(c, &playbook.change, 5)?,
                retention(c, playbook, &journal)?,
            ))
        })?;
    Ok(EnvironmentStatus {
        environment: environment.name.clone(),
        reachable: true,
        error: None,
        constraint: Some(state_of(&inspection.constraint)),
        definition: inspection.live().map(|l| l.pg_definition.clone()),
        snapshot,
        runs,
        loose: (playbook.loose.is_some() || inspection.loose.any_installed())
            .then(|| inspection.loose.clone()),
        retention,
        error_kind: None,
    })
}

/// One database's status, or what kept fkctl from reading it.
fn read_one(
    playbook: &playbook::Playbook,
    environment: &playbook::Environment,
    dsn: &[(String, String)],
) -> std::result::Result<EnvironmentStatus, Error> {
    one(playbook, environment, dsn).or_else(|e| {
        if e.kind == Kind::Usage {
            return Err(e);
        }
        Ok(EnvironmentStatus {
            environment: environment.name.clone(),
            reachable: e.kind != Kind::Unreachable,
            error: Some(e.to_string()),
            constraint: None,
            definition: None,
            snapshot: None,
            runs: Vec::new(),
            loose: None,
            retention: None,
            error_kind: Some(e.kind),
        })
    })
}

/// Every database of an environment; a fleet's read in parallel, at most
/// its rollout concurrency (at least 4) sessions at once.
fn read_environment(
    playbook: &playbook::Playbook,
    environment: &playbook::Environment,
    dsn: &[(String, String)],
) -> Result<Vec<EnvironmentStatus>> {
    let databases = environment.databases();
    let width = environment
        .fleet
        .as_ref()
        .map_or(1, |f| f.concurrency.max(4));
    let mut out = Vec::new();
    for chunk in databases.chunks(width) {
        let read: Vec<std::result::Result<EnvironmentStatus, Error>> =
            std::thread::scope(|scope| {
                let handles: Vec<_> = chunk
                    .iter()
                    .map(|db| scope.spawn(move || read_one(playbook, db, dsn)))
                    .collect();
                handles
                    .into_iter()
                    .map(|h| {
                        h.join()
                            .unwrap_or_else(|_| Err(Error::internal("a status reader panicked")))
                    })
                    .collect()
            });
        for r in read {
            out.push(r?);
        }
    }
    Ok(out)
}

pub fn run(path: &Path, env: Option<&str>, dsn: &[(String, String)], output: Output) -> Result<()> {
    let playbook = playbook::load(path)?;
    let mut all = Vec::new();
    for environment in select_environments(&playbook, env)? {
        all.extend(read_environment(&playbook, &environment, dsn)?);
    }
    match output {
        Output::Json => {
            write_json(&serde_json::json!({ "change": playbook.change, "environments": all }))?
        }
        Output::Text => write_stdout(&text(&playbook, &all))?,
    }
    let unreadable = all.iter().filter(|s| s.error.is_some()).count();
    if unreadable == 0 {
        return Ok(());
    }
    // The first database that could not be read says why (its exit code).
    let kind = all
        .iter()
        .find_map(|s| s.error_kind)
        .unwrap_or(Kind::Precondition);
    Err(Error::new(
        kind,
        format!("{unreadable} database(s) could not be read; see above"),
    ))
}

fn text(playbook: &playbook::Playbook, all: &[EnvironmentStatus]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Change {}: {} on {}",
        playbook.change, playbook.constraint.name, playbook.constraint.table
    );
    let mut fleet_header: Option<&str> = None;
    for s in all {
        if let Some((env, target)) = s.environment.split_once('/') {
            if fleet_header != Some(env) {
                fleet_header = Some(env);
                let _ = writeln!(
                    out,
                    "\n{env} (fleet)\n  {:<24} {:<12} {:<40} loose",
                    "target", "constraint", "last run"
                );
            }
            let _ = writeln!(out, "  {}", fleet_row(target, s));
            continue;
        }
        fleet_header = None;
        environment_block(&mut out, s);
    }
    out
}

/// The loose replacement in one line: installed?, queue, last success, totals.
fn loose_line(l: &crate::model::LooseState) -> String {
    let installed = if l.fully_installed() {
        format!("installed ({} capture triggers)", l.triggers.len())
    } else if l.any_installed() {
        format!(
            "PARTLY installed ({} of {} capture triggers, queue {}): fkctl drop installs the rest",
            l.triggers.len(),
            l.expected_triggers(),
            if l.queue_exists { "present" } else { "missing" }
        )
    } else {
        "not installed".to_string()
    };
    let c = l.counters.clone().unwrap_or_default();
    let last = c.last_success_epoch_s.map_or("never".to_string(), |t| {
        chrono::DateTime::from_timestamp(t as i64, 0)
            .map_or_else(|| format!("{t}"), |d| d.to_rfc3339())
    });
    format!(
        "{installed}; {} queued key(s) pending, {} child row(s) still violating; last successful cleanup {last}; totals: {} keys, {} rows deleted, {} nullified, {} rescheduled over {} run(s)",
        l.pending, l.violating_child_rows, c.processed_deletions, c.child_rows_deleted, c.child_rows_nullified, c.rescheduled, c.runs
    )
}

/// One target of a fleet in one line: its constraint, its last run, its
/// loose replacement's queue; or why it could not be read.
fn fleet_row(target: &str, s: &EnvironmentStatus) -> String {
    if let Some(e) = &s.error {
        let first = e.lines().next().unwrap_or("");
        return format!("{target:<24} UNREADABLE: {first}");
    }
    let state = s.constraint.map_or("unknown", ConstraintState::label);
    let last = s.runs.first().map_or("none recorded".to_string(), |r| {
        format!(
            "{} {} ({})",
            r.operation,
            r.outcome.as_deref().unwrap_or("unfinished"),
            r.started_at.get(..16).unwrap_or(&r.started_at)
        )
    });
    let loose = s.loose.as_ref().map_or("-".to_string(), |l| {
        if l.fully_installed() {
            format!("{} pending", l.pending)
        } else {
            "not installed".to_string()
        }
    });
    format!("{target:<24} {state:<12} {last:<40} {loose}")
}

/// One database's status, in full.
fn environment_block(out: &mut String, s: &EnvironmentStatus) {
    let _ = writeln!(out, "\n{}", s.environment);
    if let Some(e) = &s.error {
        let _ = writeln!(
            out,
            "  could not read it:\n    {}",
            e.replace('\n', "\n    ")
        );
        return;
    }
    let state = s.constraint.map_or("unknown", ConstraintState::label);
    let _ = writeln!(out, "  constraint: {state}");
    if let Some(d) = &s.definition {
        let _ = writeln!(out, "  definition: {d}");
    }
    match &s.snapshot {
        Some(snap) => {
            let _ = writeln!(
                out,
                "  snapshot:   {} (run {}, {})",
                snap.definition, snap.run_id, snap.taken_at
            );
        }
        None => {
            let _ = writeln!(out, "  snapshot:   none recorded");
        }
    }
    if let Some(l) = &s.loose {
        let _ = writeln!(out, "  loose:      {}", loose_line(l));
    }
    if let Some(r) = &s.retention {
        let _ = writeln!(
            out,
            "  kept:       {} run(s) in the journal{}; {} archived row(s) waiting for a restore{} (fkctl prune removes old runs)",
            r.runs,
            r.oldest_run.as_ref().map(|t| format!(" since {}", t.get(..16).unwrap_or(t))).unwrap_or_default(),
            r.archived_rows,
            r.oldest_archived.as_ref().map(|t| format!(", the oldest from {}", t.get(..16).unwrap_or(t))).unwrap_or_default()
        );
    }
    if s.runs.is_empty() {
        let _ = writeln!(out, "  runs:       none recorded");
    }
    for r in &s.runs {
        let outcome = r
            .outcome
            .as_deref()
            .unwrap_or("unfinished (running, or killed: the next run continues from the catalog)");
        let _ = writeln!(
            out,
            "  run {} {} by {} at {}: {outcome}",
            r.run_id, r.operation, r.operator, r.started_at
        );
        if let Some(note) = &r.note {
            let _ = writeln!(out, "    note: {note}");
        }
        for step in &r.steps {
            let _ = writeln!(
                out,
                "    {:<20} {}{}",
                step.step,
                step.outcome.as_deref().unwrap_or("unfinished"),
                if step.retries > 0 {
                    format!(" after {} retries", step.retries)
                } else {
                    String::new()
                }
            );
        }
    }
}
