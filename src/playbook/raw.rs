//! The playbook exactly as written: serde structs that keep the position of
//! every value a later check may need to point at.

use serde::Deserialize;
use serde_saphyr::Spanned;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPlaybook {
    pub version: Spanned<Version>,
    pub change: Spanned<String>,
    pub summary: Spanned<String>,
    #[serde(default)]
    pub links: Vec<Spanned<String>>,
    pub constraint: Spanned<RawConstraint>,
    pub environments: Spanned<Vec<Spanned<RawEnvironment>>>,
    #[serde(default)]
    pub safety: Option<Spanned<RawSafety>>,
    #[serde(default)]
    pub rollback: Option<Spanned<RawRollback>>,
    #[serde(default)]
    pub loose: Option<Spanned<RawLoose>>,
    #[serde(default)]
    pub journal: Option<Spanned<RawJournal>>,
    #[serde(default)]
    pub change_request: Option<Spanned<RawChangeRequest>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawChangeRequest {
    #[serde(default)]
    pub template: Option<Spanned<String>>,
    /// Labels of the posted issue (e.g. `C2`, `change::scheduled`).
    #[serde(default)]
    pub labels: Option<Spanned<Vec<Spanned<String>>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawJournal {
    pub schema: Spanned<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConstraint {
    /// `foreign_key` (the default) or `unique`.
    #[serde(default)]
    pub kind: Option<Spanned<String>>,
    pub name: Spanned<String>,
    pub table: Spanned<String>,
    pub columns: Spanned<Vec<Spanned<String>>>,
    /// Required for a foreign key, refused for a unique constraint.
    #[serde(default)]
    pub references: Option<Spanned<RawReferences>>,
    /// Unique constraints only (PostgreSQL 15+).
    #[serde(default)]
    pub nulls_not_distinct: Option<Spanned<bool>>,
    #[serde(default)]
    pub on_delete: Option<Spanned<String>>,
    #[serde(default)]
    pub on_update: Option<Spanned<String>>,
    #[serde(default, rename = "match")]
    pub match_type: Option<Spanned<String>>,
    #[serde(default)]
    pub deferrable: Option<Spanned<bool>>,
    #[serde(default)]
    pub initially_deferred: Option<Spanned<bool>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawReferences {
    pub table: Spanned<String>,
    pub columns: Spanned<Vec<Spanned<String>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEnvironment {
    pub name: Spanned<String>,
    /// One database: the variable holding its connection string.
    #[serde(default)]
    pub dsn_env: Option<Spanned<String>>,
    #[serde(default)]
    pub protected: Option<Spanned<bool>>,
    /// A fleet: many databases, listed here ...
    #[serde(default)]
    pub targets: Option<Spanned<Vec<Spanned<RawTarget>>>>,
    /// ... or in a file, one `NAME env=VARIABLE` or `NAME service=SERVICE` per line.
    #[serde(default)]
    pub targets_file: Option<Spanned<String>>,
    #[serde(default)]
    pub rollout: Option<Spanned<RawRollout>>,
}

/// One database of a fleet: how to connect, never the password itself.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTarget {
    pub name: Spanned<String>,
    #[serde(default)]
    pub dsn_env: Option<Spanned<String>>,
    /// A service of pg_service.conf.
    #[serde(default)]
    pub service: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRollout {
    #[serde(default)]
    pub canary: Option<Spanned<u32>>,
    #[serde(default)]
    pub concurrency: Option<Spanned<u32>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSafety {
    #[serde(default)]
    pub lock_timeout: Option<Spanned<String>>,
    #[serde(default)]
    pub statement_timeout: Option<Spanned<String>>,
    #[serde(default)]
    pub lock_retries: Option<Spanned<u32>>,
    #[serde(default)]
    pub max_orphans_before_drop: Option<Spanned<u64>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRollback {
    #[serde(default)]
    pub orphans: Option<Spanned<String>>,
    #[serde(default)]
    pub batch_size: Option<Spanned<u32>>,
    #[serde(default)]
    pub max_orphans: Option<Spanned<u64>>,
    /// Whether the child is vacuumed between the purge and VALIDATE.
    #[serde(default)]
    pub vacuum: Option<Spanned<String>>,
    /// Unique constraints: what happens to duplicate rows.
    #[serde(default)]
    pub duplicates: Option<Spanned<String>>,
    #[serde(default)]
    pub keep: Option<Spanned<RawKeep>>,
    #[serde(default)]
    pub max_duplicates: Option<Spanned<u64>>,
}

/// `keep: { order_by: [id] }`: among rows with equal keys, the first stays.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawKeep {
    pub order_by: Spanned<Vec<Spanned<String>>>,
}

/// `loose:` — the replacement that does the foreign key's duty while it is gone.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLoose {
    #[serde(default)]
    pub batch_size: Option<Spanned<u32>>,
    #[serde(default)]
    pub max_runtime: Option<Spanned<String>>,
    #[serde(default)]
    pub max_rows_per_run: Option<Spanned<u64>>,
}

/// `version: 1`, a YAML number. A quoted "1" is a string and is refused: the
/// version says which format the file is written in, so it must be exact.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Version(pub u64);

impl<'de> Deserialize<'de> for Version {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Version, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Version;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a whole number, e.g. version: 1 (not quoted)")
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Version, E> {
                Ok(Version(v))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Version, E> {
                u64::try_from(v)
                    .map(Version)
                    .map_err(|_| E::custom("version must be a whole number, e.g. version: 1"))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Version, E> {
                Err(E::custom(format!(
                    "version must be a number, not the text {v:?}: write version: {} without quotes",
                    v.trim()
                )))
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}
