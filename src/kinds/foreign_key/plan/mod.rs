//! The plans of a foreign key: drop, rollback, restore. Pure: they read the
//! playbook (or a run spec) and `model`, never the database.

pub mod cascade;
pub mod drift;
pub mod impact;
pub mod leaves;
pub mod restore;
#[cfg(test)]
mod snapshot_tests;
pub mod spec;
pub mod vacuum;

use crate::kinds::foreign_key::checks;
use crate::kinds::foreign_key::definition::{FkAction, ForeignKeyDef};
use crate::kinds::foreign_key::repair as purge;
use crate::kinds::foreign_key::violations::OrphanQuery;
use crate::model::LeafState;
use crate::model::{Inspection, Lookup};
use crate::plan::{
    Bind, Check, Expect, Lock, LockMode, Observed, Operation, Plan, Status, Step, StepKind,
};
use crate::playbook::{duration, OrphanPolicy, Playbook};
use leaves::{RollbackPath, PARTITIONED_NOT_VALID_VERSION};
use restore::ColumnPlan;

pub(crate) fn lock(relation: &str, mode: LockMode) -> Lock {
    Lock {
        relation: relation.to_string(),
        mode,
    }
}

pub(crate) fn timeouts(playbook: &Playbook) -> Vec<String> {
    vec![
        format!(
            "SET LOCAL lock_timeout = '{}'",
            duration::human(playbook.safety.lock_timeout)
        ),
        format!(
            "SET LOCAL statement_timeout = '{}'",
            duration::human(playbook.safety.statement_timeout)
        ),
    ]
}

struct Planner<'a> {
    playbook: &'a Playbook,
    observed: Option<&'a Observed<'a>>,
    child: String,
    parent: String,
    orphans: OrphanQuery,
    notes: Vec<String>,
}

impl<'a> Planner<'a> {
    /// Where deleted orphans are archived when not in the general archive:
    /// a table of the child's own columns (see `repair::typed`). Nullified
    /// rows and a child with columns of the application's own types use the
    /// general archive (a plan without a catalog assumes the table).
    fn typed_archive(&self) -> Option<crate::sql::ident::QualifiedName> {
        let fk = &self.playbook.constraint;
        let copyable = self
            .observed
            .is_none_or(|o| o.inspection.child_not_copyable.is_empty());
        (self.playbook.rollback.orphans == OrphanPolicy::ArchiveDelete && copyable).then(|| {
            purge::typed::table(
                &self.playbook.journal_schema,
                &self.playbook.change,
                &fk.name,
                &self.orphans.child,
            )
        })
    }

    fn new(playbook: &'a Playbook, observed: Option<&'a Observed<'a>>) -> Planner<'a> {
        let fk = &playbook.constraint;
        let mut notes = Vec::new();
        let orphans = match observed {
            Some(o) => o.inspection.orphan_query.clone(),
            None => {
                notes.push("Planned from the playbook alone: whether each step must run, the constraint's exact equality operators and any partitions are read from the database when it runs (`--env NAME` plans from the live catalog).".to_string());
                OrphanQuery::from_definition(fk)
            }
        };
        let child_partitions = observed.map_or(0, |o| o.inspection.child.partitions.len());
        let child = if child_partitions > 0 {
            format!("{} (and its {child_partitions} partitions)", fk.table)
        } else {
            fk.table.display()
        };
        Planner {
            playbook,
            observed,
            child,
            parent: fk.ref_table.display(),
            orphans,
            notes,
        }
    }

    /// The child's row identity, as observed (unknown without a live catalog).
    fn identity(&self) -> Option<&'a [crate::sql::ident::Ident]> {
        self.observed
            .and_then(|o| o.inspection.child_identity.as_deref())
    }

    fn lookup(&self) -> Option<&Lookup> {
        self.observed.map(|o| &o.inspection.constraint)
    }

    /// The child's leaf partitions, as observed (none without a live catalog).
    fn leaves(&self) -> &'a [crate::model::Leaf] {
        self.observed
            .map_or(&[][..], |o| o.inspection.leaves.as_slice())
    }

    /// ACCESS SHARE on both tables: what a read of them takes.
    fn reads_both(&self) -> Vec<Lock> {
        vec![
            lock(&self.child, LockMode::AccessShare),
            lock(&self.parent, LockMode::AccessShare),
        ]
    }

    fn exists_check(&self, expect: i64) -> Check {
        Check {
            what: if expect == 1 {
                "the constraint exists on the child table".into()
            } else {
                "the constraint is not on the child table".into()
            },
            sql: checks::constraint_exists_sql(&self.playbook.constraint),
            expect: Expect::Equals(expect),
        }
    }

    fn orphan_count_check(&self, limit: u64) -> Check {
        Check {
            what: format!("orphaned rows (rows VALIDATE would reject), at most {limit}"),
            sql: self.orphans.count_sql(),
            expect: Expect::AtMost(i64::try_from(limit).unwrap_or(i64::MAX)),
        }
    }

    /// The orphan count over the child table (one anti-join pass), at most `limit`.
    fn census_step(&self, why: &str, limit: u64, status: Status) -> Step {
        let mut census = step(StepKind::CountOrphans, "Count orphaned rows", why);
        census.locks = vec![
            lock(&self.child, LockMode::AccessShare),
            lock(&self.parent, LockMode::AccessShare),
        ];
        census.before = Some(self.orphan_count_check(limit));
        census.status = status;
        census
    }

    fn finish(self, operation: Operation, mut steps: Vec<Step>) -> Plan {
        for (i, step) in steps.iter_mut().enumerate() {
            step.number = i + 1;
        }
        let fk = &self.playbook.constraint;
        Plan {
            operation,
            change: self.playbook.change.clone(),
            constraint: fk.name.display(),
            table: fk.table.display(),
            environment: self.observed.map(|o| o.environment.to_string()),
            basis: match self.observed {
                Some(o) => format!("live catalog of {}", o.environment),
                None => "playbook".to_string(),
            },
            steps,
            notes: self.notes,
        }
    }
}

pub(crate) fn step(kind: StepKind, title: &str, why: &str) -> Step {
    Step {
        number: 0,
        id: kind.id(),
        kind,
        binds: Vec::new(),
        title: title.to_string(),
        why: why.to_string(),
        statements: Vec::new(),
        transaction: false,
        repeat: None,
        locks: Vec::new(),
        lock_retries: None,
        before: None,
        after: None,
        status: Status::Unknown,
    }
}

/// ADD ... NOT VALID of `fk` (on the child, or on one leaf) in its own short
/// transaction: a catalog change under the short timeouts, retried.
pub(super) fn add_not_valid(
    step: &mut Step,
    playbook: &Playbook,
    fk: &ForeignKeyDef,
    table: &str,
    parent: &str,
) {
    short_ddl(
        step,
        playbook,
        vec![fk.add_not_valid_sql()],
        vec![
            lock(table, LockMode::ShareRowExclusive),
            lock(parent, LockMode::ShareRowExclusive),
        ],
    );
}

/// Catalog-only DDL in its own transaction under the short lock and statement
/// timeouts, rolled back, backed off and retried on a lock timeout.
pub(crate) fn short_ddl(step: &mut Step, playbook: &Playbook, ddl: Vec<String>, locks: Vec<Lock>) {
    step.transaction = true;
    step.statements = timeouts(playbook);
    step.statements.extend(ddl);
    step.locks = locks;
    step.lock_retries = Some(playbook.safety.lock_retries);
}

/// VALIDATE of `fk`: a short lock timeout, but no statement timeout (the
/// scan takes as long as the table needs), then read convalidated back.
pub(super) fn validate_constraint(
    step: &mut Step,
    playbook: &Playbook,
    fk: &ForeignKeyDef,
    table: &str,
    parent: &str,
    what: &str,
) {
    step.transaction = true;
    step.statements = vec![
        format!(
            "SET LOCAL lock_timeout = '{}'",
            duration::human(playbook.safety.lock_timeout)
        ),
        "SET LOCAL statement_timeout = 0".to_string(),
        fk.validate_sql(),
    ];
    step.locks = vec![
        lock(table, LockMode::ShareUpdateExclusive),
        lock(parent, LockMode::RowShare),
    ];
    step.lock_retries = Some(playbook.safety.lock_retries);
    step.after = Some(Check {
        what: what.to_string(),
        sql: checks::constraint_validated_sql(fk),
        expect: Expect::IsTrue,
    });
}

/// Drop: check, count, snapshot, drop under a short lock timeout, verify gone.
pub fn drop_plan(playbook: &Playbook, observed: Option<&Observed<'_>>) -> Plan {
    let mut cx = Planner::new(playbook, observed);
    let status = match cx.lookup() {
        None => Status::Unknown,
        Some(Lookup::Found(_)) | Some(Lookup::NotAForeignKey { .. }) => Status::Pending,
        Some(Lookup::Absent) => Status::AlreadyDone("the constraint is already absent".into()),
    };
    let notes = drop_notes(&cx, observed);
    cx.notes.extend(notes);
    let fk = &playbook.constraint;
    let mut verify = step(
        StepKind::VerifyDefinition,
        "Check the live constraint matches the playbook",
        "Every field of pg_constraint is compared with the playbook (fkctl inspect); any drift stops the change before DDL.",
    );
    verify.before = Some(cx.exists_check(1));
    verify.status = status.clone();
    let census = cx.census_step(
        "A valid foreign key has none; a NOT VALID one may. One anti-join pass over the child table.",
        playbook.safety.max_orphans_before_drop,
        status.clone(),
    );
    let mut snapshot = step(
        StepKind::SnapshotDefinition,
        "Record the live definition",
        "What rollback restores: pg_get_constraintdef with every name schema-qualified, and every catalog field.",
    );
    snapshot.transaction = true;
    snapshot.statements = vec![
        "SET LOCAL search_path = ''".to_string(),
        checks::constraint_definition_sql(fk),
    ];
    snapshot.status = status.clone();
    let drop = drop_step(&cx, status);
    let mut steps = vec![verify, census, snapshot];
    steps.extend(crate::kinds::foreign_key::loose::plan::install_step(
        playbook, observed,
    ));
    steps.push(drop);
    cx.finish(Operation::Drop, steps)
}

/// The notes of a drop plan: refusals the command will make, leftovers of
/// an unfinished rollback, and what the database stops doing.
fn drop_notes(cx: &Planner<'_>, observed: Option<&Observed<'_>>) -> Vec<String> {
    let fk = &cx.playbook.constraint;
    let mut notes = Vec::new();
    match cx.lookup() {
        Some(Lookup::NotAForeignKey { contype }) => notes.push(format!("A constraint named {} exists but is not a foreign key (contype {contype}); fkctl drop will refuse.", fk.name)),
        Some(Lookup::Found(live)) => {
            let drift = drift::compare(fk, &live.definition);
            if !drift.is_empty() {
                notes.push(format!(
                    "The live constraint differs from the playbook ({}); fkctl drop stops at step 1 until they agree.",
                    drift.iter().map(|d| d.field).collect::<Vec<_>>().join(", ")
                ));
            }
        }
        _ => {}
    }
    let leftover: Vec<String> = observed
        .map(|o| o.inspection.leaves.as_slice())
        .unwrap_or_default()
        .iter()
        .filter(|l| l.state != LeafState::Absent && !l.attached)
        .map(|l| l.table.display())
        .collect();
    if !leftover.is_empty() {
        notes.push(format!(
            "Partitions {} carry their own copy of {} (left by an unfinished partition-by-partition rollback): finish it with fkctl rollback, or drop those copies by hand.",
            leftover.join(", "),
            fk.name
        ));
    }
    // What the database loses is what the live constraint does, which may
    // differ from the playbook (drift is refused, but the note must be true).
    let live = match cx.lookup() {
        Some(Lookup::Found(c)) => Some(&c.definition),
        _ => None,
    };
    notes.push(what_stops(live.unwrap_or(fk)));
    notes
}

fn drop_step(cx: &Planner<'_>, status: Status) -> Step {
    let fk = &cx.playbook.constraint;
    let mut drop = step(
        StepKind::DropConstraint,
        "Drop the constraint",
        "ACCESS EXCLUSIVE on both tables: a waiting DROP queues all traffic behind it, so it waits at most lock_timeout, then rolls back, backs off and retries.",
    );
    short_ddl(
        &mut drop,
        cx.playbook,
        vec![fk.drop_sql()],
        vec![
            lock(&cx.child, LockMode::AccessExclusive),
            lock(&cx.parent, LockMode::AccessExclusive),
        ],
    );
    drop.before = Some(cx.exists_check(1));
    drop.after = Some(Check {
        what: "the constraint is gone from the child table and every partition".into(),
        sql: checks::constraint_anywhere_sql(fk),
        expect: Expect::Equals(0),
    });
    drop.status = status;
    drop
}

/// What PostgreSQL stops doing once the constraint is gone.
fn what_stops(fk: &ForeignKeyDef) -> String {
    let on_delete = match fk.on_delete {
        FkAction::Cascade => format!(
            "deleting a {} row will no longer delete its {} rows",
            fk.ref_table, fk.table
        ),
        FkAction::SetNull => format!(
            "deleting a {} row will no longer set {} keys to NULL",
            fk.ref_table, fk.table
        ),
        FkAction::SetDefault => format!(
            "deleting a {} row will no longer reset {} keys to their defaults",
            fk.ref_table, fk.table
        ),
        FkAction::NoAction | FkAction::Restrict => format!(
            "deleting a {} row that still has {} rows will no longer be refused",
            fk.ref_table, fk.table
        ),
    };
    format!(
        "Once dropped: {on_delete}; rows of {} may reference missing {} rows (orphans).",
        fk.table, fk.ref_table
    )
}

/// Rollback: ADD NOT VALID, census, archived purge, verify, VALIDATE.
pub fn rollback_plan(playbook: &Playbook, observed: Option<&Observed<'_>>) -> Plan {
    let mut cx = Planner::new(playbook, observed);
    let (add_status, rest) = rollback_statuses(observed);
    let path = rollback_path(observed);
    if let Some(o) = observed {
        let notes = rollback_notes(playbook, o.inspection, path);
        cx.notes.extend(notes);
    }
    let adds = rollback_adds(&cx, path, add_status);
    // The census comes before any change: a rollback refused over
    // max_orphans (or by policy abort) leaves the database as it found it.
    let mut steps = Vec::new();
    let loose = crate::kinds::foreign_key::loose::plan::in_rollback(playbook, observed);
    if loose {
        // The drain archives what it removes: the archive must exist first.
        steps.push(archive_step(&cx, &rest));
        steps.push(crate::kinds::foreign_key::loose::plan::drain_step(
            playbook, observed, &rest,
        ));
    }
    match playbook.rollback.orphans {
        OrphanPolicy::Abort => {
            steps.push(cx.census_step(
                "Exactly the rows VALIDATE would reject; above rollback.max_orphans fkctl stops unless --max-orphans raises it.",
                playbook.rollback.max_orphans,
                rest.clone(),
            ));
            steps.push(refuse_orphans_step(&cx, &rest));
            steps.extend(adds);
        }
        policy => {
            steps.extend([collect_step(&cx, &rest), listed_census_step(&cx, &rest)]);
            steps.extend(adds);
            if !loose {
                steps.push(archive_step(&cx, &rest));
            }
            steps.push(purge_batch_step(&cx, policy, &rest));
            steps.extend(vacuum::vacuum_step(&cx, &rest));
        }
    }
    // With a purge to repeat, VALIDATE itself is the last check (a failure
    // with 23503 sends the rollback back through the purge): one scan of
    // the child fewer than checking first. Leaf by leaf too: a leaf
    // validated stays so, and the purge lists the child whole again.
    let validate_repairs = playbook.rollback.orphans != OrphanPolicy::Abort;
    if !validate_repairs {
        steps.push(verify_no_orphans_step(&cx, &rest));
    }
    let mut validations = rollback_validations(&cx, path, &rest);
    if validate_repairs {
        for v in validations.iter_mut().filter(|v| {
            matches!(
                v.kind,
                StepKind::ValidateConstraint | StepKind::ValidatePartition
            )
        }) {
            v.why.push_str(VALIDATE_REPAIRS);
        }
    }
    steps.extend(validations);
    if loose {
        steps.push(crate::kinds::foreign_key::loose::plan::remove_step(
            playbook, observed, &rest,
        ));
    }
    cx.finish(Operation::Rollback, steps)
}

/// (ADD steps, every later step): what the catalog shows already done.
fn rollback_statuses(observed: Option<&Observed<'_>>) -> (Status, Status) {
    match (observed, observed.and_then(Observed::present)) {
        (None, _) => (Status::Unknown, Status::Unknown),
        (Some(_), None) => (Status::Pending, Status::Pending),
        (Some(_), Some(false)) => (
            Status::AlreadyDone("the constraint is present, NOT VALID".into()),
            Status::Pending,
        ),
        (Some(_), Some(true)) => (
            Status::AlreadyDone("the constraint is present and valid".into()),
            Status::AlreadyDone("the constraint is present and valid".into()),
        ),
    }
}

/// What the people running the rollback must know before it starts.
fn rollback_notes(playbook: &Playbook, i: &Inspection, path: RollbackPath) -> Vec<String> {
    let fk = &playbook.constraint;
    let mut notes: Vec<String> = path_note(path, i, fk).into_iter().collect();
    for leaf in &i.leaves {
        if let LeafState::Different(definition) = &leaf.state {
            notes.push(format!(
                "Partition {} already has a different constraint named {} ({definition}): fkctl rollback refuses until it is removed.",
                leaf.table, fk.name
            ));
        }
    }
    if let Lookup::Found(live) = &i.constraint {
        let differences = drift::compare(fk, &live.definition);
        if !differences.is_empty() {
            let fields: Vec<&str> = differences.iter().map(|d| d.field).collect();
            notes.push(format!(
                "A constraint named {} exists but differs from the definition to restore ({}): fkctl rollback refuses until it is dropped by hand or the playbook is fixed.",
                fk.name,
                fields.join(", ")
            ));
        }
    }
    if playbook.rollback.orphans == OrphanPolicy::Nullify {
        let not_null = impact::not_null_keys(i);
        if !not_null.is_empty() {
            notes.push(format!(
                "rollback.orphans is nullify but {} cannot be NULL: fkctl rollback refuses; use archive-delete or abort.",
                not_null.join(", ")
            ));
        }
        if i.child_identity.is_none() {
            notes.push(format!(
                "rollback.orphans is nullify but {} has no primary key, replica-identity index or unique index on NOT NULL columns: a nullified row could not be found again to restore its key, so fkctl rollback refuses; add such a key, or use archive-delete or abort.",
                fk.table
            ));
        }
        if !i.child_key_updates.is_empty() {
            notes.push(format!(
                "rollback.orphans is nullify but the key columns of {} are referenced with an ON UPDATE action ({}): setting them to NULL would change rows fkctl does not archive, so fkctl rollback refuses; use archive-delete or abort.",
                fk.table,
                i.child_key_updates
                    .iter()
                    .map(crate::model::UpdateAction::describe)
                    .collect::<Vec<_>>()
                    .join("; ")
            ));
        }
    }
    notes.extend(cascade::notes(playbook, i));
    notes
}

/// The ADD ... NOT VALID step(s) of the path the server needs.
fn rollback_adds(cx: &Planner<'_>, path: RollbackPath, status: Status) -> Vec<Step> {
    let playbook = cx.playbook;
    let not_enforced = matches!(cx.lookup(), Some(Lookup::Found(c)) if !c.enforced);
    match path {
        RollbackPath::Direct if not_enforced => vec![replace_not_enforced(cx)],
        RollbackPath::Direct => {
            let mut add = step(
                StepKind::AddNotValid,
                "Add the constraint NOT VALID",
                "A catalog change only, no scan: from its commit on, PostgreSQL checks every new and updated row.",
            );
            add_not_valid(
                &mut add,
                playbook,
                &playbook.constraint,
                &cx.child,
                &cx.parent,
            );
            add.before = Some(cx.exists_check(0));
            add.after = Some(cx.exists_check(1));
            add.status = status;
            vec![add]
        }
        RollbackPath::PerLeaf => leaves::add_steps(playbook, cx.leaves(), &cx.parent),
    }
}

fn refuse_orphans_step(cx: &Planner<'_>, status: &Status) -> Step {
    no_orphan_step(
        cx,
        status,
        step(
            StepKind::RefuseOrphans,
            "Stop if any orphan exists (policy: abort)",
            "The playbook forbids removing rows: with orphans present the rollback stops here and changes nothing.",
        ),
    )
}

/// A step whose check is "no orphaned row exists" (it stops at the first one).
fn no_orphan_step(cx: &Planner<'_>, status: &Status, mut step: Step) -> Step {
    step.before = Some(Check {
        what: "no orphaned row exists".into(),
        sql: cx.orphans.exists_sql(),
        expect: Expect::IsFalse,
    });
    step.locks = cx.reads_both();
    step.status = status.clone();
    step
}

fn collect_step(cx: &Planner<'_>, status: &Status) -> Step {
    let mut collect = step(
        StepKind::CollectOrphans,
        "List the orphaned rows' addresses",
        "The one pass over the child table, before any change, in one transaction; it may use parallel workers, as the census's count does. The census counts this list and the batches below touch only listed rows (rows orphaned after this pass are found by VALIDATE, or the check before it, and listed again).",
    );
    collect.transaction = true;
    collect.statements = purge::collect_sql(&cx.orphans, cx.playbook.rollback.batch_size);
    collect.locks = cx.reads_both();
    collect.status = status.clone();
    collect
}

/// The census counts the collected list: one scan of the child serves both.
fn listed_census_step(cx: &Planner<'_>, status: &Status) -> Step {
    let limit = cx.playbook.rollback.max_orphans;
    let mut census = step(
        StepKind::CountOrphans,
        "Count the listed orphans",
        "Exactly the rows VALIDATE would reject, as listed by the one scan above; above rollback.max_orphans fkctl stops unless --max-orphans raises it.",
    );
    census.before = Some(Check {
        what: format!("orphaned rows (rows VALIDATE would reject), at most {limit}"),
        sql: purge::remaining_listed_sql(),
        expect: Expect::AtMost(i64::try_from(limit).unwrap_or(i64::MAX)),
    });
    census.status = status.clone();
    census
}

fn archive_step(cx: &Planner<'_>, status: &Status) -> Step {
    let mut archive = step(
        StepKind::PrepareArchive,
        "Create fkctl's archive tables if missing",
        "Every purged row is written here, whole, in the same statement that removes it.",
    );
    let fk = &cx.playbook.constraint;
    let typed = cx.typed_archive().map(|table| purge::typed::Typed {
        table,
        change: &cx.playbook.change,
        constraint: &fk.name,
        source: &cx.orphans.child,
        action: "delete",
    });
    let mut tables: Vec<purge::typed::Typed<'_>> = typed.into_iter().collect();
    tables.extend(cascade::typed_levels(cx));
    archive.statements = purge::create_archive_sql(&cx.playbook.journal_schema, &tables);
    let typed = tables.first().filter(|t| t.source == &cx.orphans.child);
    cascade::extend_archive(cx, &mut archive);
    let view = purge::typed::view(&cx.playbook.journal_schema);
    let not_copyable = cx
        .observed
        .map(|o| o.inspection.child_not_copyable.as_slice())
        .unwrap_or_default();
    if let Some(typed) = &typed {
        archive.why = format!("Every purged row is written to {}, a table of the child's own columns (so copying a row costs little), in the same statement that removes it; the view {view} shows it with every other archived row.", typed.table);
    } else if !not_copyable.is_empty()
        && cx.playbook.rollback.orphans == OrphanPolicy::ArchiveDelete
    {
        archive.why = format!("Every purged row is written here, whole, as jsonb, in the same statement that removes it; not to a table of the child's own columns, since {} would make fkctl's table depend on the application's types (or clash with fkctl's column names). The view {view} shows every archived row.", not_copyable.join(", "));
    }
    // One transaction under the archive lock: the view is rebuilt with any
    // new table, and nobody sees it missing.
    archive.transaction = true;
    archive.status = status.clone();
    archive
}

fn purge_batch_step(cx: &Planner<'_>, policy: OrphanPolicy, status: &Status) -> Step {
    let schema = &cx.playbook.journal_schema;
    let batch = cx.playbook.rollback.batch_size;
    let (kind, title, sql) = if policy == OrphanPolicy::Nullify {
        (
            StepKind::NullifyOrphans,
            "Set orphaned keys to NULL, archiving each row first",
            purge::nullify_batch_sql(&cx.orphans, schema, cx.identity()),
        )
    } else if let Some(table) = cx.typed_archive() {
        (
            StepKind::PurgeOrphans,
            "Delete orphaned rows, archiving each one",
            purge::typed::delete_batch_sql(&cx.orphans, &table),
        )
    } else {
        (
            StepKind::PurgeOrphans,
            "Delete orphaned rows, archiving each one",
            purge::delete_batch_sql(&cx.orphans, schema),
        )
    };
    let mut purge_step = step(
        kind,
        title,
        "Each batch re-checks the orphan condition at that moment and commits on its own: row locks are brief, no long transaction holds back vacuum, and a row is always either in its table or in the archive.",
    );
    purge_step.transaction = true;
    purge_step.statements = vec![sql];
    let child_typed = cx.typed_archive();
    let names_bound =
        cascade::names_bound(cx, child_typed.as_ref()).unwrap_or(child_typed.is_none());
    purge_step.binds = if !names_bound {
        vec![Bind::RunId]
    } else {
        vec![Bind::RunId, Bind::Change, Bind::ConstraintName]
    };
    purge_step.repeat = Some(format!(
        "per batch of up to {batch} rows until a batch takes none (each returns how many it took off the list); {}",
        if !names_bound {
            "$1 = run id"
        } else {
            "$1 = run id, $2 = change, $3 = constraint name"
        }
    ));
    purge_step.locks = vec![lock(&cx.child, LockMode::RowExclusive)];
    purge_step.after = Some(Check {
        what: "every listed row was handled".into(),
        sql: purge::remaining_listed_sql(),
        expect: Expect::Equals(0),
    });
    purge_step.status = status.clone();
    cascade::extend_purge(cx, &mut purge_step);
    // After extend_purge, which replaces the statements with the cascade's.
    purge_step
        .statements
        .insert(0, purge::ASYNC_BATCH_COMMIT.to_string());
    purge_step.why.push_str(purge::ASYNC_BATCH_COMMIT_WHY);
    purge_step
}

/// What the rollback does when VALIDATE finds an orphan the purge left.
pub const VALIDATE_REPAIRS: &str = " If it finds a row orphaned after the census (SQLSTATE 23503: written before NOT VALID committed, or moved by an UPDATE while listed), fkctl lists and purges again with the steps above, archiving each row, and validates again, at most 3 times.";

fn verify_no_orphans_step(cx: &Planner<'_>, status: &Status) -> Step {
    no_orphan_step(
        cx,
        status,
        step(
            StepKind::VerifyNoOrphans,
            "Verify no orphan remains",
            "VALIDATE would fail on any remaining orphan; checking first gives a clear answer instead.",
        ),
    )
}

/// VALIDATE on the table, or on each leaf and then the attach.
fn rollback_validations(cx: &Planner<'_>, path: RollbackPath, status: &Status) -> Vec<Step> {
    let playbook = cx.playbook;
    match path {
        RollbackPath::Direct => {
            let mut validate = step(
                StepKind::ValidateConstraint,
                "Validate the constraint",
                "Scans the child under SHARE UPDATE EXCLUSIVE: reads and writes go on. No statement timeout (the scan takes as long as the table needs), but still a short lock timeout.",
            );
            validate_constraint(
                &mut validate,
                playbook,
                &playbook.constraint,
                &cx.child,
                &cx.parent,
                "the constraint is validated",
            );
            validate.status = status.clone();
            vec![validate]
        }
        RollbackPath::PerLeaf => {
            let mut steps = leaves::validate_steps(playbook, cx.leaves(), &cx.parent);
            steps.push(leaves::attach_step(
                playbook,
                &cx.child,
                &cx.parent,
                status.clone(),
            ));
            steps
        }
    }
}

/// A NOT ENFORCED constraint (PostgreSQL 18) is swapped for an enforced NOT
/// VALID one in one transaction, never turned on with ALTER ... ENFORCED,
/// which validates every row under ACCESS EXCLUSIVE.
fn replace_not_enforced(cx: &Planner<'_>) -> Step {
    let fk = &cx.playbook.constraint;
    let mut swap = step(
        StepKind::ReplaceNotEnforced,
        "Replace the NOT ENFORCED constraint with an enforced NOT VALID one",
        "ALTER ... ENFORCED would check every row under ACCESS EXCLUSIVE. Instead DROP and ADD ... NOT VALID in one transaction: catalog changes only, so the ACCESS EXCLUSIVE locks last milliseconds, and there is no moment without the constraint.",
    );
    short_ddl(
        &mut swap,
        cx.playbook,
        vec![fk.drop_sql(), fk.add_not_valid_sql()],
        vec![
            lock(&cx.child, LockMode::AccessExclusive),
            lock(&cx.parent, LockMode::AccessExclusive),
        ],
    );
    swap.before = Some(Check {
        what: "the constraint is NOT ENFORCED".into(),
        sql: checks::constraint_not_enforced_sql(fk),
        expect: Expect::Equals(1),
    });
    swap.after = Some(Check {
        what: "the constraint is enforced (NOT VALID until validated)".into(),
        sql: checks::constraint_not_enforced_sql(fk),
        expect: Expect::Equals(0),
    });
    swap.status = Status::Pending;
    swap
}

/// Leaf by leaf only where it must be: a partitioned child on a server that
/// cannot add NOT VALID to it. (Such a server cannot hold a NOT VALID
/// constraint on the partitioned table either, so a constraint found there
/// is valid and every step shows as done.)
pub fn rollback_path(observed: Option<&Observed<'_>>) -> RollbackPath {
    match observed {
        Some(o)
            if o.inspection.child.partitioned
                && o.inspection.server.version_num < PARTITIONED_NOT_VALID_VERSION =>
        {
            RollbackPath::PerLeaf
        }
        _ => RollbackPath::Direct,
    }
}

fn path_note(
    path: RollbackPath,
    i: &crate::model::Inspection,
    fk: &crate::kinds::foreign_key::definition::ForeignKeyDef,
) -> Option<String> {
    let n = i.leaves.len();
    match path {
        RollbackPath::PerLeaf => Some(format!(
            "Path: partition by partition. {} is partitioned and PostgreSQL {} refuses ADD FOREIGN KEY ... NOT VALID on a partitioned table (allowed from 18), while a validating ADD would block writes on every partition for the whole scan. So: NOT VALID on each of its {n} leaf partitions, the purge, VALIDATE on each leaf (writes go on), then one ADD on the partitioned table, for which PostgreSQL attaches the validated copies without scanning.",
            fk.table, i.server.version
        )),
        RollbackPath::Direct if i.child.partitioned => Some(format!(
            "Path: on the partitioned table directly. PostgreSQL {} adds a NOT VALID foreign key to {} and its {n} leaf partitions in one statement; VALIDATE then scans each partition under SHARE UPDATE EXCLUSIVE (writes go on).",
            i.server.version, fk.table
        )),
        RollbackPath::Direct => None,
    }
}

/// What a restore puts back: known once the archive of the run is read.
#[derive(Debug, Clone, Copy)]
pub enum Archived<'a> {
    /// A plan from the playbook alone: the archive has not been read.
    Unknown,
    /// Deleted rows, with the comparison of the table with the archived rows.
    Deleted(&'a ColumnPlan),
    /// Rows whose keys a nullify set to NULL.
    Nullified,
}

/// Restore: put archived rows of one run back, batch by batch: deleted rows
/// go back into the table (their INSERT needs the comparison of the table
/// with the archived rows), nullified keys go back into their rows (found by
/// the child's row identity, read from the live catalog).
pub fn restore_plan(
    playbook: &Playbook,
    observed: Option<&Observed<'_>>,
    archived: Archived<'_>,
) -> Plan {
    let mut cx = Planner::new(playbook, observed);
    let identity = cx.identity();
    let steps = match archived {
        Archived::Nullified => {
            restore_keys_step(&mut cx, identity, &purge::ArchivedSet::nullified())
        }
        Archived::Deleted(columns) => restore_rows_step(
            &mut cx,
            Some(columns),
            &purge::ArchivedSet::deleted(),
            identity,
        ),
        Archived::Unknown => restore_rows_step(&mut cx, None, &purge::ArchivedSet::deleted(), None),
    };
    cx.finish(Operation::Restore, steps)
}

/// A restore step: one transaction per batch, row locks on the child.
fn batched_restore_step(cx: &Planner<'_>, mut restore: Step, what: &str) -> Step {
    let batch = cx.playbook.rollback.batch_size;
    restore.transaction = true;
    restore.repeat = Some(format!(
        "per listed batch of up to {batch} rows until the list is done; $1 = the run id whose {what} are restored"
    ));
    restore.locks = vec![lock(&cx.child, LockMode::RowExclusive)];
    restore
}

/// The step before a restore's batches: its list, made in one scan of the
/// run's archived rows (see `purge::restore_list_sql`); none when the
/// restore has no statements (a plan from the playbook alone).
pub(crate) fn with_list(restore: Step, list: Vec<String>) -> Vec<Step> {
    if restore.statements.is_empty() {
        return vec![restore];
    }
    let mut listing = step(
        StepKind::ListArchived,
        "List the run's archived rows",
        "One scan of the archive lists every row of the run, in batches; each batch below takes the next one and finds its rows by address. Each archived row is read once, however many must wait for their parent, and no planner estimate can make a batch sort the whole archive. The list lives in the session only.",
    );
    listing.statements = list;
    listing.transaction = true;
    listing.binds = vec![Bind::RestoreRunId];
    listing.status = Status::Pending;
    vec![listing, restore]
}

fn restore_rows_step(
    cx: &mut Planner<'_>,
    columns: Option<&ColumnPlan>,
    set: &purge::ArchivedSet,
    identity: Option<&[crate::sql::ident::Ident]>,
) -> Vec<Step> {
    let schema = &cx.playbook.journal_schema;
    let batch = cx.playbook.rollback.batch_size;
    let mut list = Vec::new();
    let mut restore = batched_restore_step(
        cx,
        step(
            StepKind::RestoreRows,
            "Put archived rows back",
            "Only rows whose parent exists again go back; each batch moves its rows out of the archive and into the table in one statement, so a row is never in both or in neither. The INSERT names its columns: generated columns are computed again, columns added since the rollback get their default, identity values are kept (OVERRIDING SYSTEM VALUE). A batch that would put fewer rows into the table than it takes from the archive fails and rolls back.",
        ),
        "rows",
    );
    match columns {
        Some(columns) => {
            restore.binds = vec![Bind::RestoreRunId];
            restore.statements = vec![purge::restore_batch_sql(
                &cx.orphans,
                schema,
                &columns.columns,
                set,
                identity,
            )];
            list = purge::restore_rows_list_sql(schema, &columns.columns, set, batch);
            restore.without_jit();
            restore.status = Status::Pending;
            cx.notes.extend(columns.notes());
            let refused = purge::restore_refused_sql(&cx.orphans, schema, &columns.columns, set);
            cx.notes.push(format!(
                "Rows whose parent is still missing stay in the archive: {refused}"
            ));
            if let Some(taken) =
                purge::restore_taken_sql(&cx.orphans, schema, &columns.columns, set, identity)
            {
                cx.notes.push(format!(
                    "So do rows whose identity a live row has taken since the rollback (each would fail with a duplicate key): {taken}"
                ));
            }
        }
        None => cx.notes.push(
            "The INSERT's column list comes from the table's live columns and the archived rows of the run, read when restore runs.".to_string(),
        ),
    }
    with_list(restore, list)
}

fn restore_keys_step(
    cx: &mut Planner<'_>,
    identity: Option<&[crate::sql::ident::Ident]>,
    set: &purge::ArchivedSet,
) -> Vec<Step> {
    let schema = &cx.playbook.journal_schema;
    let batch = cx.playbook.rollback.batch_size;
    let mut list = Vec::new();
    let mut restore = batched_restore_step(
        cx,
        step(
            StepKind::RestoreKeys,
            "Put nullified keys back",
            "Each archived row finds its row in the table by the row identity recorded with it, and gets its old key values back only where those key columns are all still NULL (as the rollback left them) and the parent exists again; each batch first locks its rows (waiting, within the lock timeout, for an application transaction that holds one), then updates them as the application left them and removes them from the archive in one statement. Rows the application changed since, rows that no longer exist and rows whose parent is still missing stay in the archive. A batch that would change fewer rows than it takes from the archive fails and rolls back.",
        ),
        "keys",
    );
    match identity {
        Some(identity) => {
            restore.binds = vec![Bind::RestoreRunId];
            restore.statements = purge::restore_keys_batch_sql(&cx.orphans, schema, identity, set);
            list = purge::restore_keys_list_sql(schema, identity, set, batch);
            restore.without_jit();
            restore.status = Status::Pending;
            let names = identity
                .iter()
                .map(|c| c.display())
                .collect::<Vec<_>>()
                .join(", ");
            cx.notes.push(format!(
                "Rows are found by ({names}), the row identity of {} recorded with them at rollback time.",
                cx.playbook.constraint.table
            ));
        }
        None => cx.notes.push(format!(
            "{} has no row identity (primary key, replica-identity index or unique index on NOT NULL columns) in the live catalog, or none was read: nullified keys cannot be put back.",
            cx.playbook.constraint.table
        )),
    }
    with_list(restore, list)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::build;
    use std::path::Path;

    fn playbook(rollback: &str) -> Playbook {
        let text = format!(
            "version: 1\nchange: c\nsummary: s\nconstraint:\n  name: fk_rails_f300456b63\n  table: ci_pipeline_chat_data\n  columns: [chat_name_id]\n  references: {{ table: chat_names, columns: [id] }}\n  on_delete: cascade\nenvironments: [{{ name: staging, dsn_env: X }}]\nsafety: {{ lock_timeout: 250ms, statement_timeout: 15s, lock_retries: 3 }}\nrollback: {rollback}\n"
        );
        match crate::playbook::parse_str(&text, Path::new("t.yml")) {
            Ok(p) => p,
            Err(e) => panic!("{e}"),
        }
    }

    fn ids(plan: &Plan) -> Vec<&'static str> {
        plan.steps.iter().map(|s| s.id).collect()
    }

    #[test]
    fn drop_runs_under_short_timeouts_and_checks_before_and_after() {
        let plan = build(Operation::Drop, &playbook("{}"), None);
        assert_eq!(
            ids(&plan),
            [
                "verify-definition",
                "count-orphans",
                "snapshot-definition",
                "drop-constraint"
            ]
        );
        let drop = &plan.steps[3];
        assert_eq!(
            drop.statements,
            [
                "SET LOCAL lock_timeout = '250ms'",
                "SET LOCAL statement_timeout = '15s'",
                r#"ALTER TABLE "public"."ci_pipeline_chat_data" DROP CONSTRAINT "fk_rails_f300456b63""#,
            ]
        );
        assert!(drop.transaction);
        assert_eq!(drop.lock_retries, Some(3));
        assert!(drop
            .locks
            .iter()
            .all(|l| l.mode == LockMode::AccessExclusive));
        assert_eq!(drop.locks.len(), 2);
        assert_eq!(
            drop.after.as_ref().map(|c| &c.expect),
            Some(&Expect::Equals(0))
        );
        assert!(plan.steps.iter().all(|s| s.status == Status::Unknown));
        assert_eq!(
            plan.steps[1].before.as_ref().map(|c| &c.expect),
            Some(&Expect::AtMost(0))
        );
    }

    #[test]
    fn rollback_archives_deletes_in_batches_then_validates() {
        let plan = build(Operation::Rollback, &playbook("{ batch_size: 250 }"), None);
        assert_eq!(
            ids(&plan),
            [
                "collect-orphans",
                "count-orphans",
                "add-not-valid",
                "prepare-archive",
                "purge-orphans",
                "vacuum-child",
                "validate-constraint"
            ]
        );
        assert!(plan.steps[2].statements[2].ends_with("ON DELETE CASCADE NOT VALID"));
        let purge = &plan.steps[4];
        assert!(
            plan.steps[1]
                .before
                .as_ref()
                .is_some_and(|c| c.sql.contains("fkctl_orphan_rows")),
            "the census counts the collected list"
        );
        assert!(
            plan.steps[0].statements[3].contains("(n - 1) / 250 AS batch"),
            "the list is cut into batches of 250 addresses"
        );
        assert_eq!(
            purge.statements[1],
            r#"LOCK TABLE "public"."ci_pipeline_chat_data" IN ROW EXCLUSIVE MODE"#,
            "the delete's tables are locked before the check of their keys"
        );
        assert!(
            purge.statements[2].contains("changed since fkctl read them"),
            "no key with an ON DELETE action appeared below the child"
        );
        assert!(
            purge.statements[3].contains(r#"INSERT INTO "fkctl"."deleted_rows_"#),
            "deleted rows go to the table of the child's shape"
        );
        assert_eq!(purge.binds, [Bind::RunId], "the statement's one parameter");
        assert_eq!(
            purge.statements[0], "SET LOCAL synchronous_commit = off",
            "a batch is atomic: its commit need not wait for the flush"
        );
        assert!(purge.repeat.is_some());
        assert_eq!(
            plan.steps[5].statements,
            [
                "SET lock_timeout = '250ms'",
                "SET statement_timeout = 0",
                "VACUUM (TRUNCATE false) \"public\".\"ci_pipeline_chat_data\"",
                "RESET statement_timeout"
            ]
        );
        assert!(!plan.steps[5].transaction, "VACUUM refuses a transaction");
        let validate = &plan.steps[6];
        assert!(
            validate.why.ends_with(VALIDATE_REPAIRS),
            "VALIDATE is the last check"
        );
        assert_eq!(validate.statements[1], "SET LOCAL statement_timeout = 0");
        assert_eq!(validate.locks[0].mode, LockMode::ShareUpdateExclusive);
        assert_eq!(
            validate.after.as_ref().map(|c| &c.expect),
            Some(&Expect::IsTrue)
        );
    }

    #[test]
    fn abort_policy_stops_instead_of_purging() {
        let plan = build(Operation::Rollback, &playbook("{ orphans: abort }"), None);
        assert_eq!(
            ids(&plan),
            [
                "count-orphans",
                "refuse-orphans",
                "add-not-valid",
                "verify-no-orphans",
                "validate-constraint"
            ]
        );
    }

    #[test]
    fn nullify_policy_sets_keys_to_null_and_archives_old_rows() {
        let plan = build(Operation::Rollback, &playbook("{ orphans: nullify }"), None);
        let step = plan.steps.iter().find(|s| s.id == "nullify-orphans");
        let sql = step.map(|s| s.statements[1].clone()).unwrap_or_default();
        assert!(sql.contains(r#"SET "chat_name_id" = NULL"#), "{sql}");
        assert!(sql.contains("'nullify'"), "{sql}");
        assert!(!ids(&plan).contains(&"purge-orphans"));
    }
}
