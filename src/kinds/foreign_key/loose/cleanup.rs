//! The cleanup's statements: one per batch of queued keys, doing what the
//! foreign key would have done to their children, in one statement that
//! also archives every row it removes or changes, takes the keys off the
//! queue and adds to the counters, so that a batch is all or nothing.
//!
//! Concurrency: the batch takes its queue rows `FOR UPDATE SKIP LOCKED`, so
//! two cleanups never hold the same queued key; a key queued twice (a parent
//! deleted, re-inserted, deleted again) is safe too, since the child rows are
//! row-locked by the DELETE/UPDATE and re-checked against the orphan
//! condition, so the second batch finds nothing left to do.

use super::{LooseObjects, ATTEMPTS, EVENT, LAST_ERROR, NEXT_ATTEMPT, QUEUE_ID, VIOLATING};
use crate::kinds::foreign_key::definition::FkAction;
use crate::kinds::foreign_key::repair::archive_table;
use crate::kinds::foreign_key::violations::OrphanQuery;
use crate::plan::Bind;
use crate::sql::ident::Ident;
use serde::Serialize;

/// What the cleanup does to the children of one class of queued keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Duty {
    /// ON DELETE CASCADE: delete them.
    Delete,
    /// SET NULL: set their key to NULL.
    SetNull,
    /// SET DEFAULT: set their key to its default.
    SetDefault,
    /// RESTRICT / NO ACTION (or an ON UPDATE CASCADE, whose new key a
    /// statement trigger cannot pair with the old one): touch nothing, count
    /// the children the foreign key would have refused to orphan.
    Count,
}

impl Duty {
    /// The duty for keys of deleted parent rows.
    pub fn on_delete(action: FkAction) -> Duty {
        match action {
            FkAction::Cascade => Duty::Delete,
            FkAction::SetNull => Duty::SetNull,
            FkAction::SetDefault => Duty::SetDefault,
            FkAction::NoAction | FkAction::Restrict => Duty::Count,
        }
    }

    /// The duty for old keys of parent rows whose key changed.
    pub fn on_update(action: FkAction) -> Duty {
        match action {
            FkAction::SetNull => Duty::SetNull,
            FkAction::SetDefault => Duty::SetDefault,
            FkAction::Cascade | FkAction::NoAction | FkAction::Restrict => Duty::Count,
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            Duty::Delete => "delete their child rows, archiving each",
            Duty::SetNull => "set their child rows' key to NULL, archiving each old row",
            Duty::SetDefault => "set their child rows' key to its default, archiving each old row",
            Duty::Count => "change nothing; count the child rows left referencing them (what the foreign key would have refused) and look again later",
        }
    }
}

/// The parameters of [`batch_sql`] for `duty`, in order.
pub fn binds(duty: Duty) -> Vec<Bind> {
    match duty {
        Duty::Count => vec![Bind::Change],
        _ => vec![Bind::RunId, Bind::Change, Bind::ConstraintName],
    }
}

/// Which queued keys a batch takes: `event` ('delete' or 'update'), ready
/// now, oldest first, none another cleanup holds.
fn take_batch(objects: &LooseObjects, query: &OrphanQuery, event: &str, size: u32) -> String {
    let keys = query
        .keys
        .iter()
        .map(|k| format!("q.{}", k.pk_column.quoted()))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "batch AS (SELECT q.{QUEUE_ID}, {keys} FROM {} q WHERE q.{EVENT} = '{event}' AND q.{NEXT_ATTEMPT} <= now() ORDER BY q.{QUEUE_ID} LIMIT {size} FOR UPDATE SKIP LOCKED)",
        objects.queue().quoted()
    )
}

/// The child rows of the batch's keys that are orphans now: a parent row
/// with the key again (re-inserted since) saves its children.
fn batch_children(query: &OrphanQuery) -> String {
    format!(
        "EXISTS (SELECT 1 FROM batch pk WHERE {}) AND {}",
        query.key_matches(),
        query.predicate()
    )
}

/// The statement's one row: keys taken, keys done, child rows changed,
/// rows archived (all int8).
fn result_row(changed: &str, archived: &str) -> String {
    format!(
        "SELECT (SELECT count(*) FROM batch)::int8, (SELECT count(*) FROM dequeued)::int8, (SELECT count(*) FROM {changed})::int8, (SELECT count(*) FROM {archived})::int8"
    )
}

/// Takes the batch's keys off the queue and adds to the counters.
fn dequeue_and_count(objects: &LooseObjects, changed_counter: &str, changed: &str) -> String {
    format!(
        "dequeued AS (DELETE FROM {} q USING batch b WHERE q.{QUEUE_ID} = b.{QUEUE_ID} RETURNING 1), counted AS (UPDATE {} SET processed_deletions = processed_deletions + (SELECT count(*) FROM dequeued), {changed_counter} = {changed_counter} + (SELECT count(*) FROM {changed}) WHERE change = $2 RETURNING 1)",
        objects.queue().quoted(),
        objects.counters().quoted()
    )
}

/// One batch of `event` keys under `duty`. Parameters: $1 run id, $2 change,
/// $3 constraint name (the archive's columns, as the rollback's purge);
/// see [`binds`].
pub fn batch_sql(
    objects: &LooseObjects,
    query: &OrphanQuery,
    event: &str,
    duty: Duty,
    size: u32,
    identity: Option<&[Ident]>,
) -> String {
    let batch = take_batch(objects, query, event, size);
    let archive = archive_table(&objects.schema).quoted();
    match duty {
        Duty::Delete => format!(
            "WITH {batch}, removed AS (DELETE FROM {} WHERE {} RETURNING fk.tableoid::regclass::text AS source_table, to_jsonb(fk) AS row_data), archived AS (INSERT INTO {archive} (run_id, change, constraint_name, source_table, action, row_data) SELECT $1, $2, $3, source_table, 'delete', row_data FROM removed RETURNING 1), {} {}",
            query.child_from(),
            batch_children(query),
            dequeue_and_count(objects, "child_rows_deleted", "removed"),
            result_row("removed", "archived")
        ),
        Duty::SetNull | Duty::SetDefault => {
            let (value, action) = if duty == Duty::SetNull {
                ("NULL", "nullify")
            } else {
                ("DEFAULT", "set-default")
            };
            let set = query
                .keys
                .iter()
                .map(|k| format!("{} = {value}", k.fk_column.quoted()))
                .collect::<Vec<_>>()
                .join(", ");
            let identity = identity.map_or_else(
                || "NULL::text[]".to_string(),
                crate::kinds::foreign_key::repair::text_array,
            );
            format!(
                "WITH {batch}, old AS (SELECT fk.tableoid AS rel, fk.ctid AS row_id, to_jsonb(fk) AS row_data FROM {} WHERE {} FOR UPDATE OF fk), changed AS (UPDATE {} SET {set} FROM old WHERE fk.tableoid OPERATOR(pg_catalog.=) old.rel AND fk.ctid OPERATOR(pg_catalog.=) old.row_id RETURNING fk.tableoid::regclass::text AS source_table, old.row_data), archived AS (INSERT INTO {archive} (run_id, change, constraint_name, source_table, action, row_data, identity_columns) SELECT $1, $2, $3, source_table, '{action}', row_data, {identity} FROM changed RETURNING 1), {} {}",
                query.child_from(),
                batch_children(query),
                query.child_from(),
                dequeue_and_count(objects, "child_rows_nullified", "changed"),
                result_row("changed", "archived")
            )
        }
        Duty::Count => count_batch_sql(objects, query, &batch),
    }
}

/// Keys whose children are all gone (or were never there) leave the queue;
/// the others stay, with how many children still reference them, and are
/// looked at again after a back-off. Nothing is archived: nothing changes.
/// Its one parameter: $1 change.
fn count_batch_sql(objects: &LooseObjects, query: &OrphanQuery, batch: &str) -> String {
    let queue = objects.queue().quoted();
    format!(
        "WITH {batch}, found AS (SELECT pk.{QUEUE_ID}, (SELECT count(*) FROM {} WHERE {} AND {}) AS n FROM batch pk), dequeued AS (DELETE FROM {queue} q USING found f WHERE q.{QUEUE_ID} = f.{QUEUE_ID} AND f.n = 0 RETURNING 1), waiting AS (UPDATE {queue} q SET {VIOLATING} = f.n, {ATTEMPTS} = q.{ATTEMPTS} + 1, {NEXT_ATTEMPT} = now() + {} FROM found f WHERE q.{QUEUE_ID} = f.{QUEUE_ID} AND f.n > 0 RETURNING 1), counted AS (UPDATE {} SET processed_deletions = processed_deletions + (SELECT count(*) FROM dequeued) WHERE change = $1 RETURNING 1) SELECT (SELECT count(*) FROM batch)::int8, (SELECT count(*) FROM dequeued)::int8, 0::int8, 0::int8 FROM (SELECT count(*) FROM waiting) w, (SELECT count(*) FROM counted) c",
        query.child_from(),
        query.key_matches(),
        query.predicate(),
        backoff("q"),
        objects.counters().quoted()
    )
}

/// Doubling back-off from 30 s, at most an hour, by attempts so far: a key
/// that failed on its own rarely succeeds a second later.
fn backoff(alias: &str) -> String {
    format!("least(30 * power(2, least({alias}.{ATTEMPTS}, 7)), 3600) * interval '1 second'")
}

/// After a failed batch retried one key at a time: puts the oldest ready
/// `event` key that failed again back with a back-off and the error, and
/// counts it. Parameters: $1 change, $2 the error.
pub fn reschedule_sql(objects: &LooseObjects, event: &str) -> String {
    let queue = objects.queue().quoted();
    format!(
        "WITH head AS (SELECT q.{QUEUE_ID} FROM {queue} q WHERE q.{EVENT} = '{event}' AND q.{NEXT_ATTEMPT} <= now() ORDER BY q.{QUEUE_ID} LIMIT 1 FOR UPDATE SKIP LOCKED), moved AS (UPDATE {queue} q SET {ATTEMPTS} = q.{ATTEMPTS} + 1, {NEXT_ATTEMPT} = now() + {}, {LAST_ERROR} = $2 FROM head WHERE q.{QUEUE_ID} = head.{QUEUE_ID} RETURNING 1), counted AS (UPDATE {} SET rescheduled = rescheduled + (SELECT count(*) FROM moved) WHERE change = $1 RETURNING 1) SELECT (SELECT count(*) FROM moved)::int8 FROM (SELECT count(*) FROM counted) c",
        backoff("q"),
        objects.counters().quoted()
    )
}
