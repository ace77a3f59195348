//! The loose replacement: what does the foreign key's duty while it is gone.
//!
//! A statement trigger on the parent (and on every partition of it, since a
//! statement trigger fires only for statements naming its own table) copies
//! the keys of deleted parent rows, and of rows whose key changed, into a
//! queue in fkctl's schema, in the deleting transaction. `fkctl cleanup`
//! later applies the foreign key's action to the children of queued keys,
//! archiving every row it removes or changes in the same statement, as the
//! rollback's purge does. This module is the SQL of it; `plan` makes steps.

pub mod cleanup;
pub mod plan;

use crate::kinds::foreign_key::definition::ForeignKeyDef;
use crate::sql::ident::{quote_literal, Ident, QualifiedName};

/// The names of one change's loose objects in fkctl's schema. Derived from
/// the change (a slug of at most 100 characters), shortened to fit
/// PostgreSQL's 63-byte names, with a hash so that two long changes that
/// share a prefix never share a queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LooseObjects {
    pub schema: Ident,
    pub change: String,
    base: String,
}

/// Queue columns fkctl adds next to the parent's key columns. Prefixed so
/// that a parent key column can hardly share a name with one.
pub const QUEUE_ID: &str = "fkctl_id";
const EVENT: &str = "fkctl_event";
const ATTEMPTS: &str = "fkctl_attempts";
const NEXT_ATTEMPT: &str = "fkctl_next_attempt_at";
const LAST_ERROR: &str = "fkctl_last_error";
const VIOLATING: &str = "fkctl_violating_rows";
const COUNTERS_TABLE: &str = "loose_counters";

fn fnv1a(text: &str) -> u32 {
    text.bytes().fold(0x811c_9dc5u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}

impl LooseObjects {
    pub fn new(schema: &Ident, change: &str) -> LooseObjects {
        let short: String = change
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .take(30)
            .collect();
        LooseObjects {
            schema: schema.clone(),
            change: change.to_string(),
            base: format!("loose_{short}_{:08x}", fnv1a(change)),
        }
    }

    fn in_schema(&self, name: String) -> QualifiedName {
        QualifiedName::new(self.schema.clone(), Ident::from_catalog(name))
    }

    pub fn queue(&self) -> QualifiedName {
        self.in_schema(format!("{}_queue", self.base))
    }

    pub fn function(&self) -> QualifiedName {
        self.in_schema(format!("{}_capture", self.base))
    }

    pub fn delete_trigger(&self) -> Ident {
        Ident::from_catalog(format!("fkctl_{}_delete", self.base))
    }

    pub fn update_trigger(&self) -> Ident {
        Ident::from_catalog(format!("fkctl_{}_update", self.base))
    }

    pub fn counters(&self) -> QualifiedName {
        self.in_schema(COUNTERS_TABLE.to_string())
    }

    /// The change as an SQL literal (a slug: letters, digits, '-', '_', '.').
    pub fn change_literal(&self) -> String {
        quote_literal(&self.change)
    }
}

fn quoted_list(columns: &[Ident], prefix: &str) -> String {
    columns
        .iter()
        .map(|c| format!("{prefix}{}", c.quoted()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The queue (with the parent's key columns, their exact types and
/// collations, copied by CREATE TABLE AS from the parent itself) and the
/// counters table. Idempotent.
pub fn create_queue_sql(objects: &LooseObjects, fk: &ForeignKeyDef) -> Vec<String> {
    let queue = objects.queue().quoted();
    vec![
        format!("CREATE SCHEMA IF NOT EXISTS {}", objects.schema.quoted()),
        format!(
            "CREATE TABLE IF NOT EXISTS {queue} AS SELECT {} FROM {} pk WITH NO DATA",
            quoted_list(&fk.ref_columns, "pk."),
            fk.ref_table.quoted()
        ),
        format!(
            "ALTER TABLE {queue} ADD COLUMN IF NOT EXISTS {QUEUE_ID} bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, ADD COLUMN IF NOT EXISTS {EVENT} text NOT NULL DEFAULT 'delete', ADD COLUMN IF NOT EXISTS fkctl_queued_at timestamptz NOT NULL DEFAULT now(), ADD COLUMN IF NOT EXISTS {ATTEMPTS} integer NOT NULL DEFAULT 0, ADD COLUMN IF NOT EXISTS {NEXT_ATTEMPT} timestamptz NOT NULL DEFAULT now(), ADD COLUMN IF NOT EXISTS {LAST_ERROR} text, ADD COLUMN IF NOT EXISTS {VIOLATING} bigint NOT NULL DEFAULT 0"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {} (change text PRIMARY KEY, processed_deletions bigint NOT NULL DEFAULT 0, child_rows_deleted bigint NOT NULL DEFAULT 0, child_rows_nullified bigint NOT NULL DEFAULT 0, rescheduled bigint NOT NULL DEFAULT 0, runs bigint NOT NULL DEFAULT 0, last_success_at timestamptz, last_run_seconds double precision)",
            objects.counters().quoted()
        ),
        format!(
            "INSERT INTO {} (change) VALUES ({}) ON CONFLICT (change) DO NOTHING",
            objects.counters().quoted(),
            objects.change_literal()
        ),
    ]
}

/// The trigger function: one INSERT of the statement's vanished keys.
/// SECURITY DEFINER with an empty search_path, so that the application's
/// role needs no rights on fkctl's schema and cannot redirect the names.
pub fn capture_function_sql(objects: &LooseObjects, fk: &ForeignKeyDef) -> String {
    let keys = quoted_list(&fk.ref_columns, "");
    let old_keys = quoted_list(&fk.ref_columns, "o.");
    let not_null = fk
        .ref_columns
        .iter()
        .map(|c| format!("o.{} IS NOT NULL", c.quoted()))
        .collect::<Vec<_>>()
        .join(" AND ");
    let same_key = fk
        .ref_columns
        .iter()
        .map(|c| format!("n.{0} = o.{0}", c.quoted()))
        .collect::<Vec<_>>()
        .join(" AND ");
    let queue = objects.queue().quoted();
    let body = format!(
        "BEGIN IF TG_OP = 'DELETE' THEN INSERT INTO {queue} ({keys}) SELECT {old_keys} FROM fkctl_old o WHERE {not_null}; ELSE INSERT INTO {queue} ({keys}, {EVENT}) SELECT {old_keys}, 'update' FROM fkctl_old o WHERE {not_null} AND NOT EXISTS (SELECT 1 FROM fkctl_new n WHERE {same_key}); END IF; RETURN NULL; END"
    );
    let tag = crate::sql::ident::dollar_tag(&body);
    format!(
        "CREATE OR REPLACE FUNCTION {}() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER SET search_path = '' AS {tag} {body} {tag}",
        objects.function().quoted()
    )
}

/// The two statement triggers on one table of the parent.
pub fn create_triggers_sql(objects: &LooseObjects, table: &QualifiedName) -> Vec<String> {
    let function = objects.function().quoted();
    vec![
        format!(
            "CREATE TRIGGER {} AFTER DELETE ON {} REFERENCING OLD TABLE AS fkctl_old FOR EACH STATEMENT EXECUTE FUNCTION {function}()",
            objects.delete_trigger().quoted(),
            table.quoted()
        ),
        format!(
            "CREATE TRIGGER {} AFTER UPDATE ON {} REFERENCING OLD TABLE AS fkctl_old NEW TABLE AS fkctl_new FOR EACH STATEMENT EXECUTE FUNCTION {function}()",
            objects.update_trigger().quoted(),
            table.quoted()
        ),
    ]
}

/// Removes the triggers from every table of the parent, then the function
/// and the queue; the counters stay as the change's history.
pub fn remove_sql(objects: &LooseObjects, tables: &[QualifiedName]) -> Vec<String> {
    let mut out = Vec::new();
    for table in tables {
        for trigger in [objects.delete_trigger(), objects.update_trigger()] {
            out.push(format!(
                "DROP TRIGGER IF EXISTS {} ON {}",
                trigger.quoted(),
                table.quoted()
            ));
        }
    }
    out.push(format!(
        "DROP FUNCTION IF EXISTS {}()",
        objects.function().quoted()
    ));
    out.push(format!("DROP TABLE IF EXISTS {}", objects.queue().quoted()));
    out
}

/// How many of fkctl's enabled capture triggers the parent's tables carry.
pub fn triggers_count_sql(objects: &LooseObjects, tables: &[QualifiedName]) -> String {
    let tables = tables
        .iter()
        .map(|t| quote_literal(&t.quoted()))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "SELECT count(*) FROM pg_catalog.pg_trigger t WHERE t.tgenabled <> 'D' AND t.tgname IN ({}, {}) AND t.tgrelid IN (SELECT to_regclass(n) FROM unnest(ARRAY[{tables}]::text[]) n)",
        quote_literal(objects.delete_trigger().as_str()),
        quote_literal(objects.update_trigger().as_str())
    )
}

/// Queued keys not yet handled (the pending gauge).
pub fn pending_sql(objects: &LooseObjects) -> String {
    format!(
        "SELECT count(*), coalesce(sum({VIOLATING}), 0)::int8 FROM {}",
        objects.queue().quoted()
    )
}

/// The change's cumulative counters.
pub fn counters_sql(objects: &LooseObjects) -> String {
    format!(
        "SELECT processed_deletions, child_rows_deleted, child_rows_nullified, rescheduled, runs, extract(epoch FROM last_success_at)::float8, last_run_seconds FROM {} WHERE change = $1",
        objects.counters().quoted()
    )
}

/// Records the end of one cleanup run. $1 change, $2 seconds it took, $3 whether it succeeded.
pub fn finish_run_sql(objects: &LooseObjects) -> String {
    format!(
        "UPDATE {} SET runs = runs + 1, last_run_seconds = $2, last_success_at = CASE WHEN $3 THEN now() ELSE last_success_at END WHERE change = $1",
        objects.counters().quoted()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_fit_postgres_and_differ_for_changes_sharing_a_prefix() {
        let schema = Ident::from_catalog("fkctl");
        let long_a = format!("{}-a", "x".repeat(98));
        let long_b = format!("{}-b", "x".repeat(98));
        let a = LooseObjects::new(&schema, &long_a);
        let b = LooseObjects::new(&schema, &long_b);
        assert_ne!(a.queue(), b.queue());
        for name in [
            a.queue().name.as_str().to_string(),
            a.function().name.as_str().to_string(),
            a.delete_trigger().as_str().to_string(),
            a.update_trigger().as_str().to_string(),
        ] {
            assert!(name.len() <= 63, "{name} is {} bytes", name.len());
        }
    }
}
