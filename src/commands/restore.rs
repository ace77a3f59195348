//! `fkctl restore`: put the rows a rollback archived back into the table,
//! batch by batch, once their parents exist again.

use super::{connect, inspect_live, label, load_with_env};
use crate::cli::args::Connection;
use crate::error::{Error, Result};
use crate::execute::{guard, interrupt, Executor};
use crate::journal::{record_step, Journal};
use crate::plan::{restore_plan, Observed};
use crate::sql::purge;
use crate::tui;
use postgres::Client;
use std::path::Path;

fn count(client: &mut Client, sql: &str, run_id: &str) -> Result<i64> {
    client
        .query_one(sql, &[&run_id])
        .map(|r| r.get(0))
        .map_err(|e| Error::from_postgres(&e, sql))
}

pub fn run(path: &Path, connection: &Connection, run_id: &str, yes: bool) -> Result<()> {
    let env = connection.env.as_str();
    let (playbook, environment) = load_with_env(path, env)?;
    if !yes && !tui::interactive() {
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
        let archive = purge::archive_table(schema);
        let exists: bool = client
            .query_one("SELECT to_regclass($1) IS NOT NULL", &[&archive.quoted()])
            .map(|r| r.get(0))
            .map_err(|e| Error::from_postgres(&e, "to_regclass"))?;
        if !exists {
            return Err(Error::precondition(format!("there is no archive ({archive}) in the {env} database: no rollback purged rows here")));
        }
        let by_run = purge::archived_by_run_sql(schema);
        let row = client.query_one(by_run.as_str(), &[&run_id]).map_err(|e| Error::from_postgres(&e, &by_run))?;
        let (deleted, nullified): (i64, i64) = (row.get(0), row.get(1));
        if deleted == 0 {
            let mut e = Error::precondition(format!("run {run_id} has no deleted rows in the archive of {env}"));
            if nullified > 0 {
                e = e.with("note", format!("{nullified} rows of that run were nullified, not deleted; restoring nullified keys is not supported yet"));
            }
            return Err(e.next("fkctl status lists the runs; the archive is the table above"));
        }
        let inspection = inspect_live(&mut client, &playbook, env, "pre-checks")?;
        let observed = Observed { environment: env, inspection: &inspection };
        let plan = restore_plan(&playbook, Some(&observed));
        let step = plan.steps.first().ok_or_else(|| Error::internal("empty restore plan"))?;
        let refused_sql = purge::restore_refused_sql(&inspection.orphan_query, schema);
        let refused_before = count(&mut client, &refused_sql, run_id)?;
        println!("== restore on {env} ({}) ==", target.description);
        println!("  run {run_id}: {deleted} archived row(s); {} can go back now, {refused_before} still lack their parent", deleted - refused_before);
        println!("{}", super::step_text(step));
        if deleted == refused_before {
            return Err(Error::precondition(format!("none of the {deleted} archived rows has its parent back in {}", playbook.constraint.ref_table))
                .with("environment", env)
                .next("restore the parent rows first, then run restore again"));
        }
        if !yes {
            let question = format!("Put {} row(s) back into {} on {env}?", deleted - refused_before, playbook.constraint.table);
            let go = if environment.protected { tui::confirm_by_name(&question, env)? } else { tui::confirm(&question)? };
            if !go {
                println!("Stopped at your request; nothing was restored.");
                return Ok(());
            }
        }
        let exec = Executor::new(&target, env, inspection.watched.clone(), playbook.safety.lock_retries)?;
        journal.ensure(&mut client)?;
        let run = journal.start_run(&mut client, &playbook.change, "restore", env, &playbook.constraint)?;
        let archived_left = format!("SELECT count(*) FROM {} WHERE run_id = $1 AND action = 'delete'", archive.quoted());
        let result = record_step(&mut client, Some(&run), step, |c| {
            let mut left = count(c, &archived_left, run_id)?;
            loop {
                exec.run(c, step, &[&run_id])?;
                let now = count(c, &archived_left, run_id)?;
                if now == left {
                    break;
                }
                left = now;
            }
            Ok((left, 0, Vec::new(), Some(format!("{} row(s) restored", deleted - left))))
        });
        let finished = run.finish(&mut client, if result.is_ok() { "restored" } else { "failed" }, result.as_ref().err().map(|e| e.to_string()).as_deref());
        let left = result?;
        finished?;
        println!("  restored {} row(s) into {}", deleted - left, playbook.constraint.table);
        if left > 0 {
            return Err(Error::precondition(format!("{left} archived row(s) stay in the archive: their parent rows are still missing"))
                .with("environment", env)
                .next("restore the parent rows, then run the same restore again; the rows are safe in the archive"));
        }
        Ok(())
    })()
    .map_err(|e| label(e, env, "restore"))
}
