//! A comparison operator as SQL names it: `OPERATOR(schema.symbol)`, with
//! the casts its operands need. Shared by the kinds' key comparisons and
//! the catalog's partition keys.

use crate::sql::ident::{Ident, QualifiedName};
use serde::Serialize;

/// An equality operator, schema-qualified, with the casts its operands need.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Operator {
    pub schema: Ident,
    /// The operator symbol, e.g. `=`. Only operator characters are ever kept.
    pub symbol: String,
    /// Cast for the parent column when its type differs from the operator's left input.
    pub pk_cast: Option<QualifiedName>,
    /// Cast for the child column when its type differs from the operator's right input.
    pub fk_cast: Option<QualifiedName>,
}

impl Operator {
    /// `OPERATOR(pg_catalog.=)` with no casts: what a plan made from the
    /// playbook alone uses; PostgreSQL resolves it by the column types.
    pub fn default_equality() -> Operator {
        Operator {
            schema: Ident::from_catalog("pg_catalog"),
            symbol: "=".to_string(),
            pk_cast: None,
            fk_cast: None,
        }
    }

    /// `OPERATOR("schema".symbol)`: the operator itself, whatever the
    /// session's search_path.
    pub fn qualified(&self) -> String {
        format!("OPERATOR({}.{})", self.schema.quoted(), self.symbol)
    }

    /// Accepts a catalog operator name only if it is made of operator characters,
    /// since a symbol cannot be quoted like a name.
    pub fn is_valid_symbol(symbol: &str) -> bool {
        !symbol.is_empty()
            && symbol.len() <= 63
            && symbol.chars().all(|c| "+-*/<>=~!@#%^&|`?".contains(c))
    }
}
