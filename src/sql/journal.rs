//! fkctl's journal in the target database: runs, steps and snapshots.
//! Keeping it in the database itself means a resumed run, another operator
//! and `fkctl status` all read the same truth.

use super::ident::{Ident, QualifiedName};

pub fn table(schema: &Ident, name: &str) -> String {
    QualifiedName::new(schema.clone(), Ident::from_catalog(name)).quoted()
}

/// Idempotent DDL creating the journal (run under the change's advisory lock).
pub fn create_sql(schema: &Ident) -> Vec<String> {
    let runs = table(schema, "runs");
    vec![
        format!("CREATE SCHEMA IF NOT EXISTS {}", schema.quoted()),
        format!(
            "CREATE TABLE IF NOT EXISTS {runs} (run_id text PRIMARY KEY, change text NOT NULL, operation text NOT NULL, environment text NOT NULL, constraint_name text NOT NULL, table_name text NOT NULL, operator text NOT NULL, fkctl_version text NOT NULL, started_at timestamptz NOT NULL, finished_at timestamptz, outcome text, message text)"
        ),
        // Added after the first release: journals created before it gain the column.
        format!("ALTER TABLE {runs} ADD COLUMN IF NOT EXISTS note text"),
        format!(
            "CREATE TABLE IF NOT EXISTS {} (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, run_id text NOT NULL REFERENCES {runs}, step text NOT NULL, sql text NOT NULL, started_at timestamptz NOT NULL, finished_at timestamptz, outcome text, retries integer NOT NULL DEFAULT 0, blockers text, detail text)",
            table(schema, "steps")
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {} (change text NOT NULL, table_name text NOT NULL, constraint_name text NOT NULL, definition text NOT NULL, definition_json jsonb NOT NULL, run_id text NOT NULL, taken_at timestamptz NOT NULL, PRIMARY KEY (change, table_name, constraint_name))",
            table(schema, "snapshots")
        ),
    ]
}

/// Whether the journal exists yet (read-only commands must not create it).
pub fn exists_sql() -> &'static str {
    "SELECT to_regclass(quote_ident($1) || '.runs') IS NOT NULL AND to_regclass(quote_ident($1) || '.snapshots') IS NOT NULL"
}

/// Whether the journal is complete as this fkctl writes it (every table and
/// column `create_sql` makes), so that a run need not repeat its DDL.
pub fn complete_sql() -> &'static str {
    "SELECT to_regclass(quote_ident($1) || '.runs') IS NOT NULL AND to_regclass(quote_ident($1) || '.steps') IS NOT NULL AND to_regclass(quote_ident($1) || '.snapshots') IS NOT NULL AND EXISTS (SELECT 1 FROM pg_catalog.pg_attribute WHERE attrelid = to_regclass(quote_ident($1) || '.runs') AND attname = 'note' AND NOT attisdropped)"
}

/// The runs of a change that `fkctl prune` may remove: finished (or
/// started) before the cutoff, not the run whose snapshot a rollback
/// restores, and, unless forced, none whose archived rows a `restore` may
/// still need. Parameters: $1 change, $2 age in seconds, $3 force.
fn prunable_runs(schema: &Ident, archive: Option<&str>) -> String {
    let keep_archived = match archive {
        Some(a) => {
            format!(" AND ($3 OR NOT EXISTS (SELECT 1 FROM {a} a WHERE a.run_id = r.run_id))")
        }
        None => " AND $3 IS NOT NULL".to_string(),
    };
    format!(
        "old AS (SELECT r.run_id FROM {} r WHERE r.change = $1 AND coalesce(r.finished_at, r.started_at) < now() - make_interval(secs => $2) AND r.run_id NOT IN (SELECT s.run_id FROM {} s WHERE s.change = $1){keep_archived})",
        table(schema, "runs"),
        table(schema, "snapshots")
    )
}

/// Where a prune finds archived rows: `read`, every archived row (the view
/// over all archive tables, or the general archive alone); and the tables it
/// removes them from, each with its run column.
pub struct ArchiveTables {
    pub read: Option<String>,
    pub hold: Vec<(String, Ident)>,
}

/// What a prune would remove: runs, their steps, their archived rows.
pub fn prune_preview_sql(schema: &Ident, archive: &ArchiveTables) -> String {
    let archived = match &archive.read {
        Some(a) => {
            format!("(SELECT count(*) FROM {a} a WHERE a.run_id IN (SELECT run_id FROM old))")
        }
        None => "0::int8".to_string(),
    };
    format!(
        "WITH {} SELECT (SELECT count(*) FROM old), (SELECT count(*) FROM {} s WHERE s.run_id IN (SELECT run_id FROM old)), {archived}",
        prunable_runs(schema, archive.read.as_deref()),
        table(schema, "steps")
    )
}

/// Removes them in one statement; returns the same three counts.
pub fn prune_sql(schema: &Ident, archive: &ArchiveTables) -> String {
    let mut ctes = String::new();
    let mut counts = Vec::new();
    for (i, (held_in, run)) in archive.hold.iter().enumerate() {
        ctes.push_str(&format!(
            ", gone_archive_{i} AS (DELETE FROM {held_in} a WHERE a.{} IN (SELECT run_id FROM old) RETURNING 1)",
            run.quoted()
        ));
        counts.push(format!("(SELECT count(*) FROM gone_archive_{i})"));
    }
    let archived = if counts.is_empty() {
        "0::int8".to_string()
    } else {
        counts.join(" + ")
    };
    format!(
        "WITH {}, gone_steps AS (DELETE FROM {} s WHERE s.run_id IN (SELECT run_id FROM old) RETURNING 1), gone_runs AS (DELETE FROM {} r WHERE r.run_id IN (SELECT run_id FROM old) RETURNING 1){ctes} SELECT (SELECT count(*) FROM gone_runs), (SELECT count(*) FROM gone_steps), {archived}",
        prunable_runs(schema, archive.read.as_deref()),
        table(schema, "steps"),
        table(schema, "runs")
    )
}

/// What the journal and the archive hold for a change: runs and the oldest,
/// archived rows waiting for a restore and the oldest. $1 change.
pub fn retention_sql(schema: &Ident, archive: Option<&str>) -> String {
    let archive = match archive {
        Some(a) => format!(
            "(SELECT count(*) FROM {a} WHERE change = $1), (SELECT min(archived_at)::text FROM {a} WHERE change = $1)"
        ),
        None => "0::int8, NULL::text".to_string(),
    };
    format!(
        "SELECT (SELECT count(*) FROM {r} WHERE change = $1), (SELECT min(started_at)::text FROM {r} WHERE change = $1), {archive}",
        r = table(schema, "runs")
    )
}
