//! A rollback plan as a script a DBA can paste into one psql session: the
//! plan's statements and checks, each byte for byte, with the two things a
//! paste cannot do by itself done in SQL. The batch statement's parameters
//! ($1 run id, $2 change, $3 constraint name) are bound by a DO block that
//! runs it batch after batch, each committed on its own, until a batch takes
//! nothing; and the run id the archive files rows under is chosen once, at
//! the top, and kept in a session setting.

use crate::plan::{Bind, Plan, Status, Step, StepKind};
use crate::playbook::Playbook;
use crate::sql::ident::quote_literal;
use std::fmt::Write;

/// The session setting that holds the by-hand run's id.
const RUN_ID_SETTING: &str = "fkctl.run_id";

/// A dollar-quote tag that does not occur in `sql` (an identifier may hold `$`).
fn dollar_tag(base: &str, sql: &str) -> String {
    let mut n = 0;
    loop {
        let tag = if n == 0 {
            format!("${base}$")
        } else {
            format!("${base}_{n}$")
        };
        if !sql.contains(&tag) {
            return tag;
        }
        n += 1;
    }
}

fn bind_expression(bind: Bind, playbook: &Playbook) -> String {
    match bind {
        Bind::RunId => format!("current_setting({})", quote_literal(RUN_ID_SETTING)),
        Bind::Change => quote_literal(&playbook.change),
        Bind::ConstraintName => quote_literal(playbook.constraint.name.as_str()),
        Bind::RestoreRunId => format!("current_setting({})", quote_literal("fkctl.restore_run_id")),
    }
}

/// A step with parameters, run batch after batch by one DO block: each
/// batch runs the step's statements in order (a transaction setting, the
/// batch, the cascade's check) and commits; the last statement returns how
/// many rows the batch took off the list, and the loop stops at 0.
fn batch_loop(out: &mut String, statements: &[String], binds: &[Bind], playbook: &Playbook) {
    let all = statements.concat();
    let inner = dollar_tag("fkctl_batch", &all);
    let outer = dollar_tag("fkctl", &format!("{all}{inner}"));
    let using = binds
        .iter()
        .map(|b| bind_expression(*b, playbook))
        .collect::<Vec<_>>()
        .join(", ");
    let _ = writeln!(out, "DO {outer}");
    out.push_str("DECLARE\n  took text;\n  total bigint := 0;\nBEGIN\n  LOOP\n");
    let last = statements.len().saturating_sub(1);
    for (i, statement) in statements.iter().enumerate() {
        let _ = writeln!(out, "    EXECUTE {inner}");
        let _ = writeln!(out, "{statement}");
        if i == last {
            let _ = writeln!(out, "{inner} INTO took USING {using};");
        } else {
            let _ = writeln!(out, "{inner} USING {using};");
        }
    }
    out.push_str("    EXIT WHEN took::bigint = 0;\n    total := total + took::bigint;\n    RAISE NOTICE '% row(s) handled so far', total;\n    COMMIT;\n  END LOOP;\nEND\n");
    let _ = writeln!(out, "{outer};");
}

fn check(out: &mut String, when: &str, c: &crate::plan::Check) {
    let _ = writeln!(
        out,
        "-- check {when}: {}; expect {}",
        one_line(&c.what),
        c.expect.describe()
    );
    let _ = writeln!(out, "{};", c.sql);
}

fn one_line(text: &str) -> String {
    text.replace(['\n', '\r'], " ")
}

fn step_sql(out: &mut String, step: &Step, playbook: &Playbook, cleanup: &str) {
    let _ = writeln!(out, "\n-- {}. {}", step.number, one_line(&step.title));
    if let Status::AlreadyDone(why) = &step.status {
        let _ = writeln!(
            out,
            "-- (already done when this was written: {}; fkctl would skip it)",
            one_line(why)
        );
    }
    if step.kind == StepKind::DrainLoose {
        // Its statements bind different values each, inside fkctl cleanup's
        // run limits; by hand the purge below handles whatever it would have.
        let _ = writeln!(out, "-- Run `{cleanup}` (these are its statements, see `fkctl plan --rollback`). By hand it may be skipped: the purge below removes, archived, what the queue leaves.");
        return;
    }
    if step.kind == StepKind::VacuumChild {
        let _ = writeln!(
            out,
            "-- fkctl runs this only as rollback.vacuum says (auto: after {}); by hand it may be skipped on a small table.",
            crate::kinds::foreign_key::plan::vacuum::auto_rule()
        );
    }
    if let Some(c) = &step.before {
        check(out, "before", c);
    }
    if let Some(n) = step.lock_retries {
        let _ = writeln!(out, "-- on \"canceling statement due to lock timeout\": wait a few seconds and run this step again (fkctl retries up to {n} times)");
    }
    match (step.binds.is_empty(), step.statements.as_slice()) {
        (false, statements) if !statements.is_empty() => {
            batch_loop(out, statements, &step.binds, playbook)
        }
        (_, statements) if !statements.is_empty() => {
            if step.transaction {
                out.push_str("BEGIN;\n");
            }
            for s in statements {
                let _ = writeln!(out, "{s};");
            }
            if step.transaction {
                out.push_str("COMMIT;\n");
            }
        }
        _ => {}
    }
    if let Some(c) = &step.after {
        check(out, "after", c);
    }
}

/// The whole rollback of `plan` as one psql script (no fence around it).
pub fn rollback_script(plan: &Plan, playbook: &Playbook, playbook_path: &str) -> String {
    let env = plan.environment.as_deref().unwrap_or("ENV");
    let cleanup = format!("fkctl cleanup {playbook_path} --env {env} --once");
    let mut out = String::from("\\set ON_ERROR_STOP on\n");
    let _ = writeln!(
        out,
        "-- Paste into ONE psql session on {env}: the list of orphans is a temporary table of this session."
    );
    out.push_str("-- Each check prints one value: compare it with the expectation above it before going on.\n");
    out.push_str("-- Run again after a failure: a step whose check before shows it done already (fkctl would skip it) is skipped by hand too.\n");
    out.push_str("-- The run id under which the archive keeps every removed row (note it for fkctl restore --run):\n");
    let _ = writeln!(
        out,
        "SELECT pg_catalog.set_config({}, 'by-hand-' || to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYYMMDD\"T\"HH24MISS\"Z\"'), false) AS run_id;",
        quote_literal(RUN_ID_SETTING)
    );
    for step in &plan.steps {
        step_sql(&mut out, step, playbook, &cleanup);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dollar_tag_never_occurs_in_the_statement() {
        assert_eq!(dollar_tag("fkctl", "SELECT 1"), "$fkctl$");
        assert_eq!(dollar_tag("fkctl", "SELECT '$fkctl$'"), "$fkctl_1$");
    }
}
