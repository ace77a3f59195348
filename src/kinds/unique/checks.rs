//! Catalog checks on a unique constraint and its index (one value each), run
//! before and after steps.

use super::definition::UniqueDef;
use crate::sql::ident::quote_literal;

fn regclass(def: &UniqueDef) -> String {
    format!("{}::regclass", quote_literal(&def.table.quoted()))
}

/// 1 when the unique constraint exists on the table, 0 when it does not.
pub fn constraint_exists_sql(def: &UniqueDef) -> String {
    format!(
        "SELECT count(*) FROM pg_catalog.pg_constraint WHERE conrelid = {} AND conname = {} AND contype = 'u'",
        regclass(def),
        quote_literal(def.name.as_str())
    )
}

/// The live definition as `pg_get_constraintdef` prints it.
pub fn constraint_definition_sql(def: &UniqueDef) -> String {
    format!(
        "SELECT pg_catalog.pg_get_constraintdef(oid) FROM pg_catalog.pg_constraint WHERE conrelid = {} AND conname = {} AND contype = 'u'",
        regclass(def),
        quote_literal(def.name.as_str())
    )
}

/// Indexes of the constraint's name in the table's schema that are not
/// valid: what a failed or killed concurrent build leaves.
pub fn invalid_index_sql(def: &UniqueDef) -> String {
    format!(
        "SELECT count(*) FROM pg_catalog.pg_index i JOIN pg_catalog.pg_class c ON c.oid = i.indexrelid JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = {} AND c.relname = {} AND NOT i.indisvalid",
        quote_literal(def.table.schema.as_str()),
        quote_literal(def.name.as_str())
    )
}

/// 1 when a valid unique index of the constraint's name is on the table.
pub fn valid_index_sql(def: &UniqueDef) -> String {
    format!(
        "SELECT count(*) FROM pg_catalog.pg_index i JOIN pg_catalog.pg_class c ON c.oid = i.indexrelid WHERE i.indrelid = {} AND c.relname = {} AND i.indisvalid AND i.indisunique",
        regclass(def),
        quote_literal(def.name.as_str())
    )
}
