use crate::plan::{Operation, Plan, Status};
use std::fmt::Write;

// Long because it prints each part of a step in the order shown; no logic to split out.
pub fn text(plan: &Plan) -> String {
    let mut out = String::new();
    let op = match plan.operation {
        Operation::Drop => "drop",
        Operation::Rollback => "rollback",
        Operation::Restore => "restore",
        Operation::Cleanup => "cleanup",
    };
    let _ = writeln!(
        out,
        "Plan: {op} of {} on {} (change {}; planned from the {})",
        plan.constraint, plan.table, plan.change, plan.basis
    );
    for step in &plan.steps {
        let _ = writeln!(out, "\n{}. {}", step.number, step.title);
        match &step.status {
            Status::AlreadyDone(why) => {
                let _ = writeln!(out, "   status: already done ({why}); will be skipped");
            }
            Status::Pending => {
                let _ = writeln!(out, "   status: to do");
            }
            Status::Unknown => {}
        }
        let _ = writeln!(out, "   why: {}", step.why);
        if let Some(check) = &step.before {
            let _ = writeln!(
                out,
                "   check before: {} (expect {})",
                check.what,
                check.expect.describe()
            );
            let _ = writeln!(out, "     {};", check.sql);
        }
        if !step.statements.is_empty() {
            let scope = if step.transaction {
                " (one transaction)"
            } else {
                ""
            };
            let _ = writeln!(out, "   sql{scope}:");
            if step.transaction {
                let _ = writeln!(out, "     BEGIN;");
            }
            for sql in &step.statements {
                let _ = writeln!(out, "     {sql};");
            }
            if step.transaction {
                let _ = writeln!(out, "     COMMIT;");
            }
        }
        if let Some(repeat) = &step.repeat {
            let _ = writeln!(out, "   repeat: {repeat}");
        }
        if step.locks.is_empty() {
            let _ = writeln!(out, "   locks: none on the foreign-key tables");
        }
        for lock in &step.locks {
            let _ = writeln!(
                out,
                "   lock: {} on {} (blocks {})",
                lock.mode.sql_name(),
                lock.relation,
                lock.mode.blocks()
            );
        }
        if let Some(n) = step.lock_retries {
            let _ = writeln!(
                out,
                "   on lock timeout: roll back, back off with jitter, retry (up to {n} retries)"
            );
        }
        if let Some(check) = &step.after {
            let _ = writeln!(
                out,
                "   check after: {} (expect {})",
                check.what,
                check.expect.describe()
            );
            let _ = writeln!(out, "     {};", check.sql);
        }
    }
    if !plan.notes.is_empty() {
        let _ = writeln!(out, "\nNotes:");
        for note in &plan.notes {
            let _ = writeln!(out, "- {note}");
        }
    }
    out
}
