//! Drop, rollback and restore plans of a unique constraint (pure: the
//! playbook, the definition to restore and the observed catalog in, steps
//! out). The SQL comes from the kind's `definition`, `violations`,
//! `repair` and `checks`.

use super::checks;
use super::definition::{DuplicatePolicy, UniqueDef, UniqueSpec};
use super::observed::{UniqueInspection, UniqueLookup};
use super::repair;
use super::violations::DuplicateQuery;
use crate::kinds::foreign_key::plan::{lock, short_ddl, step};
use crate::kinds::foreign_key::repair::create_archive_sql;
use crate::plan::{Bind, Check, Expect, LockMode, Operation, Plan, Status, Step, StepKind};
use crate::playbook::{duration, Playbook};

#[cfg(test)]
mod snapshot_tests;

/// The live state a unique plan reads.
pub struct Observed<'a> {
    pub environment: &'a str,
    pub inspection: &'a UniqueInspection,
}

/// The census query for `def` as the catalog shows the table.
pub fn duplicate_query(def: &UniqueDef, observed: Option<&Observed<'_>>) -> DuplicateQuery {
    DuplicateQuery::new(def, observed.map(|o| &o.inspection.table))
}

fn exists_check(def: &UniqueDef, expect: i64) -> Check {
    Check {
        what: if expect == 1 {
            "the unique constraint exists on the table".into()
        } else {
            "the unique constraint is not on the table".into()
        },
        sql: checks::constraint_exists_sql(def),
        expect: Expect::Equals(expect),
    }
}

fn surplus_check(query: &DuplicateQuery, limit: u64) -> Check {
    Check {
        what: format!("duplicate rows (rows CREATE UNIQUE INDEX would reject beyond the first of each key), at most {limit}"),
        sql: query.surplus_sql(),
        expect: Expect::AtMost(i64::try_from(limit).unwrap_or(i64::MAX)),
    }
}

fn finish(
    operation: Operation,
    playbook: &Playbook,
    def: &UniqueDef,
    observed: Option<&Observed<'_>>,
    mut steps: Vec<Step>,
    notes: Vec<String>,
) -> Plan {
    for (i, s) in steps.iter_mut().enumerate() {
        s.number = i + 1;
    }
    Plan {
        operation,
        change: playbook.change.clone(),
        constraint: def.name.display(),
        table: def.table.display(),
        environment: observed.map(|o| o.environment.to_string()),
        basis: match observed {
            Some(o) => format!("live catalog of {}", o.environment),
            None => "playbook".to_string(),
        },
        steps,
        notes,
    }
}

/// What the database stops guaranteeing once the constraint is gone.
pub fn what_stops(def: &UniqueDef) -> String {
    format!(
        "Once {} is dropped, PostgreSQL stops refusing rows of {} with equal ({}){}; the index {} goes with it, so queries that found rows through it may fall back to other plans. A rollback has to remove every duplicate written meanwhile.",
        def.name,
        def.table,
        def.columns.iter().map(|c| c.display()).collect::<Vec<_>>().join(", "),
        if def.nulls_not_distinct { ", NULLs included (NULLS NOT DISTINCT)" } else { " (rows with a NULL in the key never collided)" },
        def.name
    )
}

/// Drop: check the live constraint, record its definition, DROP under the short timeouts.
pub fn drop_plan(playbook: &Playbook, spec: &UniqueSpec, observed: Option<&Observed<'_>>) -> Plan {
    let def = &spec.def;
    let table = def.table.display();
    let status = match observed.map(|o| &o.inspection.constraint) {
        None => Status::Unknown,
        Some(UniqueLookup::Absent) => {
            Status::AlreadyDone("the constraint is already absent".into())
        }
        Some(_) => Status::Pending,
    };
    let mut notes = Vec::new();
    if let Some(o) = observed {
        for fk in &o.inspection.dependents {
            notes.push(format!("Foreign key {} on {} references the table through this constraint's index ({}): PostgreSQL refuses the DROP, and fkctl drop refuses before changing anything.", fk.name, fk.table, fk.definition));
        }
    }
    notes.push(what_stops(def));
    let mut verify = step(
        StepKind::VerifyDefinition,
        "Check the live constraint matches the playbook",
        "Columns in order, NULLS NOT DISTINCT and deferrability are compared with the playbook (fkctl inspect); any drift, or a foreign key that depends on the index, stops the change before DDL.",
    );
    verify.before = Some(exists_check(def, 1));
    verify.status = status.clone();
    let mut snapshot = step(
        StepKind::SnapshotDefinition,
        "Record the live definition",
        "What rollback restores: pg_get_constraintdef, and every catalog field.",
    );
    snapshot.transaction = true;
    snapshot.statements = vec![
        "SET LOCAL search_path = ''".to_string(),
        checks::constraint_definition_sql(def),
    ];
    snapshot.status = status.clone();
    let mut drop = step(
        StepKind::DropConstraint,
        "Drop the constraint",
        "ACCESS EXCLUSIVE on the table: a waiting DROP queues all traffic behind it, so it waits at most lock_timeout, then rolls back, backs off and retries.",
    );
    short_ddl(
        &mut drop,
        playbook,
        vec![def.drop_sql()],
        vec![lock(&table, LockMode::AccessExclusive)],
    );
    drop.before = Some(exists_check(def, 1));
    drop.after = Some(exists_check(def, 0));
    drop.status = status;
    finish(
        Operation::Drop,
        playbook,
        def,
        observed,
        vec![verify, snapshot, drop],
        notes,
    )
}

/// How far a rollback has got, read from the catalog.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RollbackState {
    /// Planned from the playbook alone.
    Unknown,
    /// No constraint, no index: census, dedupe, build, add.
    Start,
    /// An INVALID index of the constraint's name: a failed or killed build.
    InvalidIndex,
    /// A valid unique index of the name: only ADD ... USING INDEX is left.
    IndexBuilt,
    /// The constraint is there.
    Done,
}

pub fn rollback_state(observed: Option<&Observed<'_>>) -> RollbackState {
    let Some(o) = observed else {
        return RollbackState::Unknown;
    };
    match (&o.inspection.constraint, &o.inspection.index) {
        (UniqueLookup::Found(_), _) => RollbackState::Done,
        (_, Some(i)) if i.on_table && i.valid && i.unique => RollbackState::IndexBuilt,
        (_, Some(i)) if !i.valid => RollbackState::InvalidIndex,
        _ => RollbackState::Start,
    }
}

// Long because it lays out the eight steps of the rollback in order, each
// with its SQL, locks and checks; splitting it would scatter one sequence.
/// Rollback: census, archived dedupe, concurrent build, ADD ... USING INDEX.
pub fn rollback_plan(
    playbook: &Playbook,
    spec: &UniqueSpec,
    def: &UniqueDef,
    max_duplicates: u64,
    observed: Option<&Observed<'_>>,
) -> Plan {
    let settings = &spec.rollback;
    let table = def.table.display();
    let query = duplicate_query(def, observed);
    let state = rollback_state(observed);
    let done = |why: &str| Status::AlreadyDone(why.to_string());
    let (dedupe_status, build_status, add_status) = match state {
        RollbackState::Unknown => (Status::Unknown, Status::Unknown, Status::Unknown),
        RollbackState::Start | RollbackState::InvalidIndex => {
            (Status::Pending, Status::Pending, Status::Pending)
        }
        RollbackState::IndexBuilt => (
            done("a valid unique index of the name is built: it admits no duplicate"),
            done("the unique index is built and valid"),
            Status::Pending,
        ),
        RollbackState::Done => (
            done("the constraint is in place"),
            done("the constraint is in place"),
            done("the constraint is in place"),
        ),
    };
    let mut steps = Vec::new();
    let abort = settings.duplicates == DuplicatePolicy::Abort;
    if abort {
        let mut census = step(
            StepKind::RefuseDuplicates,
            "Count duplicate rows",
            "Exactly the rows CREATE UNIQUE INDEX would reject (NULLs distinct unless NULLS NOT DISTINCT; each column's collation and equality): one aggregate pass, before any change; with duplicates: abort, any duplicate stops the rollback.",
        );
        census.locks = vec![lock(&table, LockMode::AccessShare)];
        census.before = Some(surplus_check(&query, 0));
        census.status = dedupe_status.clone();
        steps.push(census);
    } else {
        dedupe_steps(
            playbook,
            spec,
            &query,
            max_duplicates,
            &dedupe_status,
            &mut steps,
        );
    }
    let leaves: Vec<UniqueDef> = observed
        .map(|o| {
            o.inspection
                .leaves
                .iter()
                .map(|(leaf, _)| def.on_leaf(leaf))
                .collect()
        })
        .unwrap_or_default();
    let partitioned = observed.is_some_and(|o| o.inspection.table.partitioned);
    if !partitioned {
        let statuses = BuildStatuses {
            drop_invalid: match state {
                RollbackState::InvalidIndex => Status::Pending,
                RollbackState::Unknown => Status::Unknown,
                _ => done("no invalid index of the name"),
            },
            build: build_status,
            add: add_status,
        };
        let mut add = build_steps(playbook, def, statuses, &mut steps);
        add.before = Some(surplus_check(&query, 0));
        steps.push(add);
    } else {
        for leaf in &leaves {
            let statuses = BuildStatuses {
                drop_invalid: build_status.clone(),
                build: build_status.clone(),
                add: build_status.clone(),
            };
            let add = build_steps(playbook, leaf, statuses, &mut steps);
            steps.push(add);
        }
        let mut attach = step(
            StepKind::AttachConstraint,
            "Add the constraint on the partitioned table, attaching the leaves' copies",
            "ALTER TABLE ... ADD CONSTRAINT ... UNIQUE on the partitioned table: every leaf already has a matching unique constraint, so PostgreSQL attaches their indexes and builds none; a catalog change under the short lock_timeout with retries, after a last duplicate check.",
        );
        short_ddl(
            &mut attach,
            playbook,
            vec![def.add_attaching_sql()],
            vec![lock(&table, LockMode::AccessExclusive)],
        );
        attach.before = Some(surplus_check(&query, 0));
        attach.after = Some(exists_check(def, 1));
        attach.status = add_status;
        steps.push(attach);
    }
    let mut notes = Vec::new();
    if state == RollbackState::InvalidIndex {
        notes.push(format!("An INVALID index {} is on the table (a failed or killed build): it is dropped concurrently before the index is built again.", def.name));
    }
    finish(Operation::Rollback, playbook, def, observed, steps, notes)
}

/// The census and the archived dedupe: the collecting scan is the census
/// (its list holds exactly the rows a dedupe removes), then the archive, the
/// batches, and the check that none is left.
fn dedupe_steps(
    playbook: &Playbook,
    spec: &UniqueSpec,
    query: &DuplicateQuery,
    max_duplicates: u64,
    status: &Status,
    steps: &mut Vec<Step>,
) {
    let settings = &spec.rollback;
    let table = query.table.display();
    let mut collect = step(
        StepKind::CollectDuplicates,
        "Count and list the duplicate rows",
        "The census, before any change: exactly the rows CREATE UNIQUE INDEX would reject beyond the first of each key (NULLs distinct unless NULLS NOT DISTINCT; each column's collation and equality), each listed with the address of the row its key keeps (the first by keep.order_by), in a temporary table of this session. A hash semi-join of the table with itself keeps only rows whose key repeats, so only those are sorted.",
    );
    collect.transaction = true;
    collect.statements = repair::collect_sql(query, &settings.keep_order_by);
    collect.locks = vec![lock(&table, LockMode::AccessShare)];
    collect.after = Some(Check {
        what: format!("duplicate rows listed, at most {max_duplicates} (rollback.max_duplicates)"),
        sql: repair::remaining_listed_sql(),
        expect: Expect::AtMost(i64::try_from(max_duplicates).unwrap_or(i64::MAX)),
    });
    collect.status = status.clone();
    steps.push(collect);
    let mut archive = step(
        StepKind::PrepareArchive,
        "Prepare the archive",
        "fkctl's archive of removed rows (shared with foreign keys): every duplicate is kept there, whole, and fkctl restore puts rows back.",
    );
    archive.transaction = true;
    archive.statements = create_archive_sql(&playbook.journal_schema, &[]);
    archive.status = status.clone();
    steps.push(archive);
    let mut dedupe = step(
        StepKind::DedupeRows,
        "Delete the listed duplicates, archiving each",
        "Each batch is one statement: it locks the kept rows (FOR SHARE), deletes the listed rows that still have their kept row's key, and archives each deleted row whole; committed on its own. Before it, the batch locks the table (ROW EXCLUSIVE, as the delete would) and checks that still no foreign key with an ON DELETE action references it: one added since the inspection would delete or change rows in other tables that the dedupe does not archive, so the batch then rolls back before its delete.",
    );
    dedupe.transaction = true;
    dedupe.statements = crate::catalog::cascade::tree_unchanged_sql(&query.table, &[]);
    dedupe.statements.push(repair::dedupe_batch_sql(
        query,
        settings.batch_size,
        &playbook.journal_schema,
    ));
    dedupe.binds = vec![Bind::RunId, Bind::Change, Bind::ConstraintName];
    dedupe.repeat = Some(format!(
        "per batch of {} rows until the list is empty",
        settings.batch_size
    ));
    dedupe.locks = vec![lock(&table, LockMode::RowExclusive)];
    dedupe.status = status.clone();
    steps.push(dedupe);
    let mut verify = step(
        StepKind::VerifyNoDuplicates,
        "Check no duplicate is left",
        "The census again: the application keeps writing, so duplicates written since the list are listed and removed in another round, up to three rounds, then fkctl stops and says so.",
    );
    verify.locks = vec![lock(&table, LockMode::AccessShare)];
    verify.before = Some(surplus_check(query, 0));
    verify.status = status.clone();
    steps.push(verify);
}

struct BuildStatuses {
    drop_invalid: Status,
    build: Status,
    add: Status,
}

/// The build of one unique index and its constraint, on the table or on
/// one leaf of it: drop an INVALID leftover, build concurrently, then ADD
/// ... USING INDEX. Pushes the first two steps and returns the third.
fn build_steps(
    playbook: &Playbook,
    target: &UniqueDef,
    statuses: BuildStatuses,
    steps: &mut Vec<Step>,
) -> Step {
    let table = target.table.display();
    let on = format!("{} on {}", target.name, target.table);
    let mut drop_invalid = step(
        StepKind::DropInvalidIndex,
        &format!("Drop an invalid index {on} left by an earlier build"),
        "A failed or killed CREATE INDEX CONCURRENTLY leaves an INVALID index that writes keep maintaining; it is dropped concurrently before building again.",
    );
    drop_invalid.statements = vec![
        lock_timeout_statement(playbook),
        target.drop_invalid_index_sql(),
    ];
    drop_invalid.locks = vec![lock(&table, LockMode::ShareUpdateExclusive)];
    drop_invalid.lock_retries = Some(playbook.safety.lock_retries);
    drop_invalid.after = Some(Check {
        what: "no invalid index of the name is left".into(),
        sql: checks::invalid_index_sql(target),
        expect: Expect::Equals(0),
    });
    drop_invalid.status = statuses.drop_invalid;
    steps.push(drop_invalid);
    let mut build = step(
        StepKind::BuildIndex,
        &format!("Build the unique index {on} concurrently"),
        "CREATE UNIQUE INDEX CONCURRENTLY, outside a transaction: reads and writes go on; it waits for older transactions under lock_timeout and is retried (an index a failed attempt leaves INVALID is dropped first). A duplicate written during the build fails it: fkctl dedupes again.",
    );
    build.statements = vec![
        lock_timeout_statement(playbook),
        "SET statement_timeout = 0".to_string(),
        target.create_index_concurrently_sql(),
    ];
    build.locks = vec![lock(&table, LockMode::ShareUpdateExclusive)];
    build.lock_retries = Some(playbook.safety.lock_retries);
    build.after = Some(Check {
        what: "a valid unique index of the name is on the table".into(),
        sql: checks::valid_index_sql(target),
        expect: Expect::Equals(1),
    });
    build.status = statuses.build;
    steps.push(build);
    let mut add = step(
        StepKind::AddUsingIndex,
        &format!("Add the constraint {on} using the index"),
        "ALTER TABLE ... ADD CONSTRAINT ... UNIQUE USING INDEX: a catalog change, no scan, under the short lock_timeout with retries.",
    );
    short_ddl(
        &mut add,
        playbook,
        vec![target.add_using_index_sql()],
        vec![lock(&table, LockMode::AccessExclusive)],
    );
    add.after = Some(exists_check(target, 1));
    add.status = statuses.add;
    add
}

/// `SET lock_timeout` for the statements that run outside a transaction.
fn lock_timeout_statement(playbook: &Playbook) -> String {
    format!(
        "SET lock_timeout = '{}'",
        duration::human(playbook.safety.lock_timeout)
    )
}

/// Restore: archived duplicates of a run go back where no live row has their key.
pub fn restore_plan(
    playbook: &Playbook,
    def: &UniqueDef,
    columns: &[crate::sql::ident::Ident],
    observed: Option<&Observed<'_>>,
) -> Plan {
    let query = duplicate_query(def, observed);
    let mut restore = step(
        StepKind::RestoreRows,
        "Move archived duplicates back",
        "Only rows whose key no live row has (and of several archived rows of one key, the first archived), each removed from the archive in the statement that puts it back; the rest stay archived and are named.",
    );
    restore.transaction = true;
    restore.statements = vec![repair::restore_batch_sql(
        &query,
        &playbook.journal_schema,
        columns,
    )];
    restore.without_jit();
    restore.binds = vec![Bind::RestoreRunId];
    restore.repeat = Some(format!(
        "per listed batch of up to {} rows until the list is done",
        playbook.rollback.batch_size
    ));
    restore.locks = vec![lock(&def.table.display(), LockMode::RowExclusive)];
    restore.status = Status::Pending;
    let list = repair::restore_list_sql(&playbook.journal_schema, playbook.rollback.batch_size);
    finish(
        Operation::Restore,
        playbook,
        def,
        observed,
        crate::kinds::foreign_key::plan::with_list(restore, list),
        Vec::new(),
    )
}

/// Field by field, where the live constraint differs from the one intended.
pub fn drift(want: &UniqueDef, live: &UniqueDef) -> Vec<crate::plan::Drift> {
    let list = |d: &UniqueDef| {
        format!(
            "[{}]",
            d.columns
                .iter()
                .map(|c| c.display())
                .collect::<Vec<_>>()
                .join(", ")
        )
    };
    let mut out = Vec::new();
    let mut field = |name: &'static str, a: String, b: String| {
        if a != b {
            out.push(crate::plan::Drift {
                field: name,
                playbook: a,
                database: b,
            });
        }
    };
    field("columns", list(want), list(live));
    field(
        "nulls_not_distinct",
        want.nulls_not_distinct.to_string(),
        live.nulls_not_distinct.to_string(),
    );
    field(
        "deferrable",
        want.deferrable.to_string(),
        live.deferrable.to_string(),
    );
    field(
        "initially_deferred",
        want.initially_deferred.to_string(),
        live.initially_deferred.to_string(),
    );
    out
}
