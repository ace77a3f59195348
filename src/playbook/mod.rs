//! Playbooks: one foreign-key change per YAML file.
//!
//! [`load`] reads a file and returns a fully checked [`Playbook`], or a
//! [`PlaybookError`] naming `file:line:column`. Nothing here touches a database.

pub mod duration;
mod fleet;
mod raw;
mod validate;

use crate::kinds::foreign_key::definition::ForeignKeyDef;
use serde::Serialize;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use validate::parse_str;

/// A line and column in a playbook file, 1-based.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct Position {
    pub line: u64,
    pub column: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlaybookError {
    pub path: PathBuf,
    /// None when the file could not be read at all.
    pub position: Option<Position>,
    pub message: String,
}

impl fmt::Display for PlaybookError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.position {
            Some(p) => write!(
                f,
                "{}:{}:{}: {}",
                self.path.display(),
                p.line,
                p.column,
                self.message
            ),
            None => write!(f, "{}: {}", self.path.display(), self.message),
        }
    }
}

/// What happens to orphaned child rows during a rollback.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum OrphanPolicy {
    /// Delete them in batches, archiving each row in the same transaction.
    ArchiveDelete,
    /// Set the key columns to NULL, archiving the old values.
    Nullify,
    /// Stop and change nothing.
    Abort,
}

impl OrphanPolicy {
    pub fn name(self) -> &'static str {
        match self {
            OrphanPolicy::ArchiveDelete => "archive-delete",
            OrphanPolicy::Nullify => "nullify",
            OrphanPolicy::Abort => "abort",
        }
    }
}

/// The databases of one environment and how a change rolls over them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Fleet {
    pub targets: Vec<FleetTarget>,
    /// The first `canary` targets go alone, one at a time, before any other.
    pub canary: usize,
    /// Then at most this many targets at a time.
    pub concurrency: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FleetTarget {
    pub name: String,
    pub dsn_env: Option<String>,
    pub service: Option<String>,
}

/// `loose:`: a trigger on the parent queues deleted (or re-keyed) parent keys
/// and `fkctl cleanup` applies the foreign key's action to their children,
/// archived, while the constraint is gone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LooseSettings {
    /// Queued parent keys handled per transaction.
    pub batch_size: u32,
    /// One cleanup run stops after this long (it finishes its batch).
    #[serde(with = "duration_ms")]
    pub max_runtime: Duration,
    /// One cleanup run stops after removing or changing this many child rows.
    pub max_rows_per_run: u64,
}

impl Default for LooseSettings {
    /// What a `loose:` section leaves out, and what a rollback's drain uses
    /// for a replacement installed by a playbook that no longer has one.
    fn default() -> LooseSettings {
        LooseSettings {
            batch_size: 1000,
            max_runtime: Duration::from_secs(30),
            max_rows_per_run: 100_000,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Environment {
    /// Its name; for one database of a fleet, `ENVIRONMENT/TARGET`.
    pub name: String,
    /// The environment variable holding this environment's connection string
    /// (empty for a fleet, and for a target reached through a service).
    pub dsn_env: String,
    /// A pg_service.conf service to connect through, instead of `dsn_env`.
    pub service: Option<String>,
    /// Many databases carrying the same schema, rolled out in waves.
    pub fleet: Option<Fleet>,
    /// Production-like: confirmations require typing the name.
    pub protected: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Safety {
    #[serde(with = "duration_ms")]
    pub lock_timeout: Duration,
    #[serde(with = "duration_ms")]
    pub statement_timeout: Duration,
    pub lock_retries: u32,
    pub max_orphans_before_drop: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RollbackSettings {
    pub orphans: OrphanPolicy,
    pub batch_size: u32,
    pub max_orphans: u64,
    pub vacuum: VacuumPolicy,
}

/// Whether the rollback vacuums the child between the purge and VALIDATE.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum VacuumPolicy {
    /// After a purge large for a large table (see `plan::vacuum`).
    Auto,
    /// After any purge.
    Always,
    Never,
}

impl VacuumPolicy {
    pub fn name(self) -> &'static str {
        match self {
            VacuumPolicy::Auto => "auto",
            VacuumPolicy::Always => "always",
            VacuumPolicy::Never => "never",
        }
    }
}

/// Where the constraint's parts were written, so that a problem found later
/// against a live database (a missing table, a missing column) names the line.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct ConstraintPositions {
    /// The `constraint:` block itself: where a field left at its default is.
    pub block: Position,
    pub name: Position,
    pub table: Position,
    pub columns: Vec<Position>,
    pub ref_table: Position,
    pub ref_columns: Vec<Position>,
    pub on_delete: Option<Position>,
    pub on_update: Option<Position>,
    pub match_type: Option<Position>,
    pub deferrable: Option<Position>,
    pub initially_deferred: Option<Position>,
    pub nulls_not_distinct: Option<Position>,
}

impl ConstraintPositions {
    /// Where the playbook says `field` (a drift field name, e.g. "on_delete");
    /// the constraint block for a field left at its default.
    pub fn of_field(&self, field: &str) -> Position {
        let given = match field {
            "columns" => self.columns.first().copied(),
            "references.table" => Some(self.ref_table),
            "references.columns" => self.ref_columns.first().copied(),
            "on_delete" => self.on_delete,
            "on_update" => self.on_update,
            "match" => self.match_type,
            "deferrable" => self.deferrable,
            "initially_deferred" => self.initially_deferred,
            "nulls_not_distinct" => self.nulls_not_distinct,
            _ => Some(self.name),
        };
        given.unwrap_or(self.block)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Playbook {
    pub path: PathBuf,
    pub version: u32,
    pub change: String,
    pub summary: String,
    pub links: Vec<String>,
    pub constraint: ForeignKeyDef,
    pub environments: Vec<Environment>,
    pub safety: Safety,
    pub rollback: RollbackSettings,
    /// `kind: unique`: the unique constraint and its dedupe policy. Then
    /// `constraint` only carries the shared name, table and columns, and
    /// `rollback` is not used: commands run the unique kind instead.
    pub unique: Option<crate::kinds::unique::definition::UniqueSpec>,
    /// The loose replacement, when the playbook asks for one.
    pub loose: Option<LooseSettings>,
    /// The schema fkctl keeps its journal, snapshots and archive in.
    pub journal_schema: crate::sql::ident::Ident,
    /// The team's change-request template, resolved against the playbook's folder.
    pub change_request_template: Option<PathBuf>,
    /// The labels a posted change-request issue gets (`change_request.labels`).
    pub change_request_labels: Vec<String>,
    #[serde(skip)]
    pub positions: ConstraintPositions,
}

impl Environment {
    /// The databases it stands for: itself, or one environment per target
    /// of its fleet, named `ENVIRONMENT/TARGET`, each protected as it is.
    pub fn databases(&self) -> Vec<Environment> {
        match &self.fleet {
            None => vec![self.clone()],
            Some(fleet) => fleet
                .targets
                .iter()
                .map(|t| Environment {
                    name: format!("{}/{}", self.name, t.name),
                    dsn_env: t.dsn_env.clone().unwrap_or_default(),
                    service: t.service.clone(),
                    fleet: None,
                    protected: self.protected,
                })
                .collect(),
        }
    }
}

impl Playbook {
    /// An environment by name, or one database of a fleet as `ENVIRONMENT/TARGET`.
    pub fn environment(&self, name: &str) -> Option<Environment> {
        if let Some(e) = self.environments.iter().find(|e| e.name == name) {
            return Some(e.clone());
        }
        let (env, _) = name.split_once('/')?;
        self.environments
            .iter()
            .find(|e| e.name == env)?
            .databases()
            .into_iter()
            .find(|d| d.name == name)
    }

    /// The environment a name belongs to (a fleet's, for `ENVIRONMENT/TARGET`).
    pub fn owning_environment(&self, name: &str) -> Option<&Environment> {
        let env = name.split_once('/').map_or(name, |(e, _)| e);
        self.environments.iter().find(|e| e.name == env)
    }

    /// `path:line:column` of a position in this playbook, for messages.
    pub fn locate(&self, position: Position) -> String {
        format!(
            "{}:{}:{}",
            self.path.display(),
            position.line,
            position.column
        )
    }
}

/// Reads and checks one playbook file.
pub fn load(path: &Path) -> Result<Playbook, PlaybookError> {
    let bytes = std::fs::read(path).map_err(|e| PlaybookError {
        path: path.to_path_buf(),
        position: None,
        message: format!("cannot read the playbook: {e}"),
    })?;
    let text = String::from_utf8(bytes).map_err(|e| {
        let offset = e.utf8_error().valid_up_to();
        let before = &e.as_bytes()[..offset];
        let line = before.iter().filter(|b| **b == b'\n').count() as u64 + 1;
        let column = before.iter().rev().take_while(|b| **b != b'\n').count() as u64 + 1;
        PlaybookError {
            path: path.to_path_buf(),
            position: Some(Position { line, column }),
            message: "the playbook is not valid UTF-8".to_string(),
        }
    })?;
    parse_str(&text, path)
}

mod duration_ms {
    use serde::Serializer;
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::duration::human(*d))
    }
}
