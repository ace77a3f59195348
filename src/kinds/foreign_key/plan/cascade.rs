//! The cascade tree below the child in the rollback and restore plans: what
//! the purge archives besides the child's own rows, what it refuses, and the
//! restore of each level once the rows above it are back. Pure.

use super::{lock, restore_keys_step, restore_rows_step, Archived, Planner};
use crate::catalog::cascade::tree_unchanged_sql;
use crate::kinds::foreign_key::definition::FkAction;
use crate::kinds::foreign_key::repair::cascade as sql;
use crate::kinds::foreign_key::repair::typed::Typed;
use crate::kinds::foreign_key::violations::OrphanQuery;
use crate::model::{CascadeLevel, CascadeProblem, Inspection};
use crate::plan::{LockMode, Observed, Operation, Plan, Step};
use crate::playbook::{OrphanPolicy, Playbook};
use crate::sql::ident::QualifiedName;
use serde::Serialize;

fn names(columns: &[crate::sql::ident::Ident]) -> String {
    columns
        .iter()
        .map(|c| c.display())
        .collect::<Vec<_>>()
        .join(", ")
}

fn key_columns(level: &CascadeLevel) -> String {
    names(
        &level
            .keys
            .iter()
            .map(|k| k.fk_column.clone())
            .collect::<Vec<_>>(),
    )
}

/// Why a level's changes cannot be archived, if they cannot.
fn unarchivable(level: &CascadeLevel) -> Option<String> {
    let what = format!(
        "{} ({}, ON DELETE {} on {}({}))",
        level.table,
        level.constraint,
        level.on_delete.sql(),
        level.table,
        key_columns(level)
    );
    match level.on_delete {
        FkAction::SetNull | FkAction::SetDefault if level.identity.is_none() => Some(format!(
            "{what}: {} has no primary key, replica-identity index or unique index on NOT NULL columns, so a row whose key the cascade changes could not be found again by fkctl restore",
            level.table
        )),
        FkAction::SetNull | FkAction::SetDefault if !level.set_columns.is_empty() && level.set_columns.len() < level.keys.len() => Some(format!(
            "{what}: the action sets only ({}); fkctl restores SET NULL / SET DEFAULT levels whose whole key is set",
            names(&level.set_columns)
        )),
        FkAction::SetNull | FkAction::SetDefault
            if level.identity.as_ref().is_some_and(|identity| {
                level.written_columns().iter().any(|c| identity.contains(c))
            }) =>
        {
            Some(format!(
                "{what}: the action writes columns of the row identity ({}) that finds a changed row again, so fkctl restore could not find it",
                level.identity.as_deref().map_or(String::new(), names)
            ))
        }
        _ => None,
    }
}

fn problem_text(problem: &CascadeProblem) -> String {
    match problem {
        CascadeProblem::Cycle { constraint, table, references } if table == references => format!(
            "{table} ({constraint}) references itself with an ON DELETE action: deleting one of its rows can cascade through the same table, which fkctl does not archive"
        ),
        CascadeProblem::Cycle { constraint, table, references } => format!(
            "{table} ({constraint}, referencing {references}) is already above it in the cascade tree: a cycle, whose deletes fkctl does not archive"
        ),
        CascadeProblem::ReachedTwice { constraint, table, references } => format!(
            "{table} is reached twice in the cascade tree (again by {constraint}, referencing {references}): one of its rows could be deleted or changed by two paths, which fkctl does not archive"
        ),
        CascadeProblem::ReferencesPartition { constraint, table, partition } => format!(
            "{table} ({constraint}) references the partition {partition} rather than its partitioned table, which fkctl does not archive"
        ),
        CascadeProblem::TooDeep { table, depth } => format!(
            "the cascade tree reaches {table} at depth {depth}, deeper than fkctl follows ({})",
            depth - 1
        ),
        CascadeProblem::SetsOffUpdate(action) => format!(
            "{}: the key columns of {} that the cascade sets are referenced with an ON UPDATE action, which would change rows of {} that fkctl does not archive",
            action.describe(),
            action.references,
            action.table
        ),
    }
}

/// Everything below the child that an archived delete could not archive,
/// each naming its table and why; empty when the purge can go ahead.
pub fn refusals(i: &Inspection) -> Vec<String> {
    let tree = &i.cascade;
    let mut out: Vec<String> = tree.problems.iter().map(problem_text).collect();
    out.extend(tree.levels.iter().filter_map(unarchivable));
    if !tree.levels.is_empty() && !tree.track_counts {
        out.push("track_counts is off on this server: fkctl counts the rows each cascade level deleted or changed from the transaction's statistics, and cannot check them without it".to_string());
    }
    out
}

/// One line of the cascade tree as shown to people: its depth (1 under
/// the child) and what happens there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TreeLine {
    pub depth: usize,
    pub text: String,
}

/// The tree, depth first (each level under the one it references).
pub fn tree_lines(i: &Inspection) -> Vec<TreeLine> {
    let mut out = Vec::new();
    push_below(i, None, 1, &mut out);
    out
}

fn push_below(i: &Inspection, above: Option<usize>, depth: usize, out: &mut Vec<TreeLine>) {
    for (index, level) in i.cascade.levels.iter().enumerate() {
        if level.above != above {
            continue;
        }
        let what = match level.on_delete {
            FkAction::Cascade if level.copyable => {
                "its rows are deleted: archived whole, value for value, in a table of its columns (cascade-delete)".to_string()
            }
            FkAction::Cascade => {
                "its rows are deleted: archived whole as jsonb, its columns using the application's own types (cascade-delete)".to_string()
            }
            FkAction::SetNull | FkAction::SetDefault => {
                let set = if level.on_delete == FkAction::SetNull {
                    "set to NULL"
                } else {
                    "set to its default"
                };
                match &level.identity {
                    Some(identity) => format!(
                        "its key is {set}: rows archived with their identity ({}) and old key ({})",
                        names(identity),
                        sql::action(level)
                    ),
                    None => format!("its key is {set}: no row identity, refused"),
                }
            }
            _ => "no change below the child".to_string(),
        };
        let partitioned = if level.partitioned {
            ", partitioned"
        } else {
            ""
        };
        out.push(TreeLine {
            depth,
            text: format!(
                "{}{partitioned} via {} ({}) ON DELETE {}: {what}",
                level.table,
                level.constraint,
                key_columns(level),
                level.on_delete.sql()
            ),
        });
        if depth < 64 {
            push_below(i, Some(index), depth + 1, out);
        }
    }
}

/// The rollback plan's notes about the tree: what the purge archives, or why
/// fkctl refuses to purge.
pub fn notes(playbook: &Playbook, i: &Inspection) -> Vec<String> {
    if i.cascade.is_empty() || playbook.rollback.orphans != OrphanPolicy::ArchiveDelete {
        return Vec::new();
    }
    let fk = &playbook.constraint;
    let mut notes = Vec::new();
    let lines = tree_lines(i);
    if !lines.is_empty() {
        let tree = lines
            .iter()
            .map(|l| format!("{}- {}", "  ".repeat(l.depth), l.text))
            .collect::<Vec<_>>()
            .join("\n");
        notes.push(format!(
            "Cascade tree below {}: deleting its orphans sets off these ON DELETE actions; each purge batch archives, in its own statement, the rows every level loses or changes, then checks in the same transaction that each level's archived rows are exactly the rows the cascade deleted or changed (else the batch rolls back). fkctl restore puts them back level by level after the child's rows.\n{tree}",
            fk.table
        ));
    }
    let refused = refusals(i);
    if !refused.is_empty() {
        notes.push(format!(
            "fkctl rollback refuses to purge (nothing is changed), because deleting orphans of {} would change rows it cannot archive: {}.",
            fk.table,
            refused.join("; ")
        ));
    }
    notes
}

/// The archive step also prepares the batch's counts table.
pub(super) fn extend_archive(cx: &Planner<'_>, step: &mut Step) {
    if let Some(levels) = levels(cx) {
        if !levels.is_empty() {
            step.statements
                .extend(sql::prepare_sql(&cx.playbook.journal_schema));
        }
    }
}

/// Deleting the child's orphans fires other tables' ON DELETE actions.
pub(super) fn fires(cx: &Planner<'_>) -> bool {
    levels(cx).is_some_and(|l| !l.is_empty())
}

/// Per level, the table of its own columns its deleted rows go to (None:
/// the general archive).
fn level_tables(cx: &Planner<'_>) -> Vec<Option<QualifiedName>> {
    let (playbook, levels) = (cx.playbook, levels(cx).unwrap_or_default());
    levels
        .iter()
        .map(|level| {
            sql::level_table(
                &playbook.journal_schema,
                &playbook.change,
                &playbook.constraint.name,
                level,
            )
        })
        .collect()
}

/// The tables of their own columns the archive step makes for the levels.
pub(super) fn typed_levels<'a>(cx: &Planner<'a>) -> Vec<Typed<'a>> {
    let levels = levels(cx).unwrap_or_default();
    levels
        .iter()
        .zip(level_tables(cx))
        .filter_map(|(level, table)| {
            Some(Typed {
                table: table?,
                change: &cx.playbook.change,
                constraint: &cx.playbook.constraint.name,
                source: &level.table,
                action: sql::action(level),
            })
        })
        .collect()
}

/// Whether the purge's statement binds the change and constraint name
/// besides the run id; None when the purge fires no cascade.
pub(super) fn names_bound(cx: &Planner<'_>, child: Option<&QualifiedName>) -> Option<bool> {
    if !fires(cx) {
        return None;
    }
    let levels = level_tables(cx);
    Some(
        sql::Destinations {
            child,
            levels: &levels,
        }
        .names_bound(),
    )
}

fn levels<'a>(cx: &Planner<'a>) -> Option<&'a [CascadeLevel]> {
    if cx.playbook.rollback.orphans != OrphanPolicy::ArchiveDelete {
        return None;
    }
    cx.observed.map(|o| o.inspection.cascade.levels.as_slice())
}

/// The purge batch archives the cascade too: its statement, the count
/// check after it, and row locks on every level's table. Every delete
/// batch, with a cascade below or none, first checks that the cascade is
/// still the one planned.
pub(super) fn extend_purge(cx: &Planner<'_>, step: &mut Step) {
    if cx.playbook.rollback.orphans != OrphanPolicy::ArchiveDelete {
        return;
    }
    let levels = levels(cx).unwrap_or_default();
    let guard = tree_unchanged_sql(&cx.orphans.child, levels);
    if !levels.is_empty() {
        let (child, level_tables) = (cx.typed_archive(), level_tables(cx));
        let to = sql::Destinations {
            child: child.as_ref(),
            levels: &level_tables,
        };
        step.statements =
            sql::delete_batch_sql(&cx.orphans, &cx.playbook.journal_schema, levels, &to);
        step.why.push_str(" Deleting them fires other tables' ON DELETE actions (the cascade tree shown with the plan): the batch's statement archives those rows too, before its delete fires them, and a second statement checks, level by level, that the rows archived are exactly those the cascade deleted or changed; otherwise the batch rolls back.");
        step.locks.extend(
            levels
                .iter()
                .map(|l| lock(&l.table.display(), LockMode::RowExclusive)),
        );
    }
    step.statements.splice(0..0, guard);
    step.why.push_str(TREE_UNCHANGED_WHY);
}

const TREE_UNCHANGED_WHY: &str = " Before its delete, each batch locks the tables the delete reaches (ROW EXCLUSIVE, as the delete would) and checks that the foreign keys whose ON DELETE action the delete sets off are still those fkctl read (none, or the cascade tree shown): a key added below the child since would delete or change rows no statement archives, so the batch then rolls back and fkctl stops, naming the key.";

/// The orphan query of a level against the table it references: which of
/// its archived rows have their parent row back.
pub fn level_query(i: &Inspection, index: usize) -> Option<OrphanQuery> {
    let level = i.cascade.levels.get(index)?;
    let parent_partitioned = match level.above {
        None => i.child.partitioned,
        Some(above) => i.cascade.levels.get(above)?.partitioned,
    };
    Some(OrphanQuery {
        child: level.table.clone(),
        parent: level.references.clone(),
        child_partitioned: level.partitioned,
        parent_partitioned,
        match_type: level.match_type,
        keys: level.keys.clone(),
        partition_keys: Vec::new(),
    })
}

/// Restore of one cascade level of a run: its deleted rows back into its
/// table, or its keys back into its rows, where the row above is back.
pub fn restore_level_plan(
    playbook: &Playbook,
    observed: &Observed<'_>,
    index: usize,
    archived: Archived<'_>,
) -> Option<Plan> {
    let i = observed.inspection;
    let level = i.cascade.levels.get(index)?;
    let mut cx = Planner::new(playbook, Some(observed));
    cx.orphans = level_query(i, index)?;
    cx.child = level.table.display();
    cx.parent = level.references.display();
    let set = sql::archived_set(level);
    let steps = match archived {
        Archived::Nullified => {
            let steps = restore_keys_step(&mut cx, level.identity.as_deref(), &set);
            cx.notes = vec![format!(
                "Rows of {} are found by ({}), its row identity recorded with them when the cascade of {} set their key to NULL.",
                level.table,
                level.identity.as_deref().map_or("none".to_string(), names),
                level.constraint
            )];
            steps
        }
        Archived::Deleted(columns) => {
            restore_rows_step(&mut cx, Some(columns), &set, level.identity.as_deref())
        }
        Archived::Unknown => restore_rows_step(&mut cx, None, &set, None),
    };
    cx.notes.insert(0, format!(
        "Cascade level {} of {}: rows of {} that {} ON DELETE {} {} when the rollback purged orphans of {}; they go back once their {} rows are back.",
        index + 1,
        playbook.constraint.name,
        level.table,
        level.constraint,
        level.on_delete.sql(),
        if level.on_delete == FkAction::Cascade { "deleted" } else { "changed" },
        playbook.constraint.table,
        level.references
    ));
    Some(cx.finish(Operation::Restore, steps))
}
