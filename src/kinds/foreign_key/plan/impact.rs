//! What the database stops doing when the foreign key is dropped, what a
//! purge of child rows would set off, and what deserves a warning.

use crate::kinds::foreign_key::definition::{FkAction, ForeignKeyDef};
use crate::model::{Inspection, Lookup};
use crate::playbook::Playbook;
use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
pub struct Impact {
    /// Behaviour PostgreSQL enforces now and will not once the constraint is gone.
    pub stops_enforcing: Vec<String>,
    /// What deleting child rows sets off in other tables (their FKs reference the child).
    pub purge_sets_off: Vec<String>,
    /// The ON DELETE actions below the child, level by level, that an
    /// archive-delete purge archives (see `plan::cascade`).
    pub cascade_tree: Vec<super::cascade::TreeLine>,
    /// Why a purge would refuse (tables whose changes fkctl cannot archive).
    pub cascade_refusals: Vec<String>,
    pub warnings: Vec<String>,
}

fn action_effect(fk: &ForeignKeyDef, event: &str, action: FkAction) -> String {
    let (parent, child) = (fk.ref_table.display(), fk.table.display());
    // What the action reacts to: deleting a parent row, or changing its key.
    let what = if event == "delete" {
        "deletes"
    } else {
        "key changes"
    };
    match action {
        FkAction::Cascade if event == "delete" => format!("ON DELETE CASCADE: deleting a {parent} row deletes its {child} rows; after the drop those rows stay behind as orphans"),
        FkAction::Cascade => format!("ON UPDATE CASCADE: changing a {parent} key updates its {child} rows; after the drop they keep the old key"),
        FkAction::SetNull => format!("ON {} SET NULL: {what} of {parent} rows set the {child} key to NULL; after the drop the old key stays", event.to_uppercase()),
        FkAction::SetDefault => format!("ON {} SET DEFAULT: {what} of {parent} rows reset the {child} key; after the drop the old key stays", event.to_uppercase()),
        FkAction::NoAction | FkAction::Restrict => format!("ON {} {}: {what} of {parent} rows still referenced by {child} are refused; after the drop they succeed and leave orphans", event.to_uppercase(), action.sql()),
    }
}

// Long because it lists what PostgreSQL stops enforcing, action by action, in the order `inspect` shows them.
pub fn analyse(playbook: &Playbook, inspection: Option<&Inspection>) -> Impact {
    let live = inspection.and_then(Inspection::live);
    let fk = live.map_or(&playbook.constraint, |l| &l.definition);
    let mut stops = vec![
        action_effect(fk, "delete", fk.on_delete),
        action_effect(fk, "update", fk.on_update),
        format!(
            "inserts and updates of {} with a {} that matches no {} row are accepted",
            fk.table,
            fk.columns
                .iter()
                .map(|c| c.display())
                .collect::<Vec<_>>()
                .join(", "),
            fk.ref_table
        ),
    ];
    if live.is_some_and(|l| !l.validated) {
        stops.push("(the constraint is NOT VALID now: existing rows were never checked, so orphans may already exist)".to_string());
    }
    let mut impact = Impact {
        stops_enforcing: stops,
        purge_sets_off: Vec::new(),
        cascade_tree: Vec::new(),
        cascade_refusals: Vec::new(),
        warnings: Vec::new(),
    };
    let Some(i) = inspection else {
        return impact;
    };
    impact.purge_sets_off = i
        .referencing_child
        .iter()
        .map(|d| {
            format!(
                "{} on {}: deleting a {} row {}",
                d.name,
                d.table,
                fk.table,
                d.effect_of_delete()
            )
        })
        .collect();
    impact.cascade_tree = super::cascade::tree_lines(i);
    impact.cascade_refusals = super::cascade::refusals(i);
    if let Some(problem) = lock_timeout_problem(playbook, i) {
        impact.warnings.push(problem);
    }
    if !i
        .child_indexes
        .iter()
        .any(|x| x.covers_foreign_key && x.valid)
    {
        impact.warnings.push(format!(
            "no valid index on {} ({}): every delete or key update on {} scans {} while the constraint exists",
            fk.table,
            fk.columns.iter().map(|c| c.display()).collect::<Vec<_>>().join(", "),
            fk.ref_table,
            fk.table
        ));
    }
    if let Lookup::Found(l) = &i.constraint {
        if !l.enforced {
            impact.warnings.push("the constraint is NOT ENFORCED (PostgreSQL 18): rollback re-creates it with ADD ... NOT VALID and VALIDATE, never ALTER ... ENFORCED (which scans under ACCESS EXCLUSIVE)".to_string());
        }
        if !l.on_delete_set_columns.is_empty() {
            impact.warnings.push(format!(
                "ON DELETE SET NULL/DEFAULT applies only to ({}); playbooks cannot express a column list yet, so a rollback from the playbook would not restore it exactly",
                l.on_delete_set_columns.join(", ")
            ));
        }
    }
    for s in &i.sessions {
        let age = s
            .transaction_age_s
            .map_or(String::new(), |a| format!(", transaction open {a:.0}s"));
        let locks = if s.locks.is_empty() {
            String::new()
        } else {
            format!(", holds {}", s.locks.join(", "))
        };
        impact.warnings.push(format!(
            "session pid {} ({} / {}, {}{age}{locks}): DDL on these tables would wait for it; query: {}",
            s.pid, s.user, if s.application.is_empty() { "-" } else { &s.application }, s.state, s.query
        ));
    }
    if !i.all_tables_publications.is_empty() {
        impact.warnings.push(format!(
            "publication {} publishes FOR ALL TABLES: fkctl's schema {} (its journal, and the archive with whole rows of purged data, possibly personal) is replicated to every subscriber; list the application's tables or schemas in the publication instead, or give fkctl a journal.schema you exclude",
            i.all_tables_publications.join(", "),
            playbook.journal_schema
        ));
    }
    impact
}

/// A DDL waiting for its lock longer than the server's `deadlock_timeout`
/// could sit in the lock queue until deadlock detection runs, holding up
/// every query on both tables: shown by `inspect`, refused by `drop` and
/// `rollback`.
pub fn lock_timeout_problem(playbook: &Playbook, i: &Inspection) -> Option<String> {
    let lock_ms = i64::try_from(playbook.safety.lock_timeout.as_millis()).unwrap_or(i64::MAX);
    (lock_ms >= i.server.deadlock_timeout_ms).then(|| {
        format!(
            "safety.lock_timeout ({lock_ms} ms) is not below the server's deadlock_timeout ({} ms): a waiting DDL could sit in the lock queue until deadlock detection runs",
            i.server.deadlock_timeout_ms
        )
    })
}

/// The child's key columns that cannot be NULL: a nullify purge cannot touch them.
pub fn not_null_keys(i: &Inspection) -> Vec<String> {
    i.child_columns
        .iter()
        .filter(|c| c.not_null)
        .map(|c| c.name.display())
        .collect()
}
