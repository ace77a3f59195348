use crate::report::{ConstraintState, InspectReport};
use std::fmt::Write;

fn estimate(rows: Option<i64>) -> String {
    rows.map_or("unknown (never analyzed)".to_string(), |n| {
        format!("~{}", super::count(n))
    })
}

// Long because it prints the report's sections in the order a DBA reads them, each a few lines; no logic to split out.
pub fn text(r: &InspectReport<'_>) -> String {
    let mut out = String::new();
    let fk = r.playbook;
    let _ = writeln!(
        out,
        "Environment {} ({}), PostgreSQL {}, database {}",
        r.environment, r.connection, r.server.version, r.server.database
    );
    let _ = writeln!(out, "\nConstraint {} on {}", fk.name, fk.table);
    let state = match r.state {
        ConstraintState::Absent => "ABSENT (not in pg_constraint)",
        ConstraintState::Valid => "present, VALID",
        ConstraintState::NotValid => "present, NOT VALID (existing rows never checked)",
        ConstraintState::NotEnforced => "present, NOT ENFORCED",
        ConstraintState::NotAForeignKey => {
            "a constraint of that name exists but is NOT a foreign key"
        }
    };
    let _ = writeln!(out, "  state:    {state}");
    let _ = writeln!(out, "  playbook: {}", fk.constraint_clause());
    if let Some(live) = r.live {
        let _ = writeln!(out, "  database: {}", live.pg_definition);
        if let Some(index) = &live.parent_index {
            let _ = writeln!(out, "  parent key index: {index}");
        }
        for copy in &live.copies {
            let _ = writeln!(
                out,
                "  partition copy: {} -> {}{}",
                copy.table,
                copy.references,
                if copy.validated { "" } else { " (NOT VALID)" }
            );
        }
    }
    if r.drift.is_empty() {
        if r.live.is_some() {
            let _ = writeln!(
                out,
                "  drift:    none, the live constraint matches the playbook"
            );
        }
    } else {
        let _ = writeln!(out, "  DRIFT ({} field(s)):", r.drift.len());
        for d in &r.drift {
            let _ = writeln!(
                out,
                "    {:<20} playbook: {:<24} database: {}",
                d.field, d.playbook, d.database
            );
        }
    }
    let _ = writeln!(out, "\nIf this foreign key is dropped, PostgreSQL stops:");
    for s in &r.impact.stops_enforcing {
        let _ = writeln!(out, "  - {s}");
    }
    let _ = writeln!(
        out,
        "\nForeign keys referencing {} (what deleting its rows sets off):",
        fk.table
    );
    if r.impact.purge_sets_off.is_empty() {
        let _ = writeln!(out, "  none");
    }
    for s in &r.impact.purge_sets_off {
        let _ = writeln!(out, "  - {s}");
    }
    if !r.impact.cascade_tree.is_empty() {
        let _ = writeln!(
            out,
            "\nCascade tree below {} (what a rollback's archive-delete purge archives):",
            fk.table
        );
        for line in &r.impact.cascade_tree {
            let _ = writeln!(out, "  {}- {}", "  ".repeat(line.depth), line.text);
        }
    }
    for why in &r.impact.cascade_refusals {
        let _ = writeln!(out, "  an archive-delete purge would be refused: {why}");
    }
    let _ = writeln!(out, "\nTables");
    for (role, rel) in [("child ", r.child), ("parent", r.parent)] {
        let parts = if rel.partitions.is_empty() {
            String::new()
        } else {
            format!(", {} partitions", rel.partitions.len())
        };
        let _ = writeln!(
            out,
            "  {role} {}: {} rows, {}{parts}",
            rel.name,
            estimate(rel.row_estimate),
            super::bytes(rel.total_bytes)
        );
    }
    let _ = writeln!(out, "\nIndexes on the foreign-key columns of {}", fk.table);
    if r.child_indexes.is_empty() {
        let _ = writeln!(out, "  none");
    }
    for i in r.child_indexes {
        let mark = if i.covers_foreign_key {
            "covers the FK"
        } else {
            "partial match"
        };
        let _ = writeln!(
            out,
            "  {} ({mark}{}): {}",
            i.name,
            if i.valid { "" } else { ", INVALID" },
            i.definition
        );
    }
    let _ = writeln!(
        out,
        "\nSessions with locks on these tables or long transactions"
    );
    if r.sessions.is_empty() {
        let _ = writeln!(out, "  none");
    }
    for s in r.sessions {
        let age = s
            .transaction_age_s
            .map_or("no transaction".to_string(), |a| {
                format!("transaction open {a:.0}s")
            });
        let _ = writeln!(
            out,
            "  pid {} {} ({}) {}, {age}",
            s.pid, s.user, s.application, s.state
        );
        for l in &s.locks {
            let _ = writeln!(out, "    {l}");
        }
        let _ = writeln!(out, "    query: {}", s.query);
    }
    if !r.impact.warnings.is_empty() {
        let _ = writeln!(out, "\nWarnings");
        for w in &r.impact.warnings {
            let _ = writeln!(out, "  ! {w}");
        }
    }
    out
}
