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
