//! From the raw YAML structs to a checked [`Playbook`]. Every refusal names
//! the position of the offending value.

use super::raw::{
    RawChangeRequest, RawConstraint, RawEnvironment, RawLoose, RawPlaybook, RawRollback, RawSafety,
};
use super::{
    duration, ConstraintPositions, Environment, LooseSettings, OrphanPolicy, Playbook,
    PlaybookError, Position, RollbackSettings, Safety, VacuumPolicy,
};
use crate::kinds::foreign_key::definition::{FkAction, ForeignKeyDef, MatchType};
use crate::kinds::unique::definition::{
    DedupeSettings, DuplicatePolicy, OrderColumn, UniqueDef, UniqueSpec,
};
use crate::sql::ident::{Ident, IdentError, QualifiedName};
use serde_saphyr::{Location, Spanned};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// PostgreSQL's INDEX_MAX_KEYS: the most columns a foreign key can have.
const MAX_KEY_COLUMNS: usize = 32;
pub const SUPPORTED_VERSION: u32 = 1;

struct Checker<'a> {
    path: &'a Path,
}

fn position(location: Location) -> Position {
    Position {
        line: location.line(),
        column: location.column(),
    }
}

/// Where each field of a foreign-key constraint block was written.
fn foreign_key_positions(
    raw: &Spanned<RawConstraint>,
    ref_table: Location,
    columns: Vec<Position>,
    ref_columns: Vec<Position>,
) -> ConstraintPositions {
    let c = &raw.value;
    ConstraintPositions {
        block: position(raw.referenced),
        name: position(c.name.referenced),
        table: position(c.table.referenced),
        columns,
        ref_table: position(ref_table),
        ref_columns,
        on_delete: c.on_delete.as_ref().map(|v| position(v.referenced)),
        on_update: c.on_update.as_ref().map(|v| position(v.referenced)),
        match_type: c.match_type.as_ref().map(|v| position(v.referenced)),
        deferrable: c.deferrable.as_ref().map(|v| position(v.referenced)),
        initially_deferred: c
            .initially_deferred
            .as_ref()
            .map(|v| position(v.referenced)),
        nulls_not_distinct: None,
    }
}

impl Checker<'_> {
    fn error<T>(&self, location: Location, message: impl Into<String>) -> Result<T, PlaybookError> {
        Err(PlaybookError {
            path: self.path.to_path_buf(),
            position: Some(position(location)),
            message: message.into(),
        })
    }

    fn ident(&self, field: &str, value: &Spanned<String>) -> Result<Ident, PlaybookError> {
        Ident::parse(&value.value).or_else(|e| self.ident_error(field, value, e))
    }

    fn qualified(
        &self,
        field: &str,
        value: &Spanned<String>,
    ) -> Result<QualifiedName, PlaybookError> {
        QualifiedName::parse(&value.value).or_else(|e| self.ident_error(field, value, e))
    }

    fn ident_error<T>(
        &self,
        field: &str,
        value: &Spanned<String>,
        e: IdentError,
    ) -> Result<T, PlaybookError> {
        self.error(value.referenced, format!("{field}: {e}"))
    }

    fn columns(
        &self,
        field: &str,
        list: &Spanned<Vec<Spanned<String>>>,
    ) -> Result<(Vec<Ident>, Vec<Position>), PlaybookError> {
        if list.value.is_empty() {
            return self.error(
                list.referenced,
                format!("{field}: at least one column is required"),
            );
        }
        if list.value.len() > MAX_KEY_COLUMNS {
            return self.error(
                list.referenced,
                format!("{field}: a foreign key has at most {MAX_KEY_COLUMNS} columns"),
            );
        }
        let mut seen = HashSet::new();
        let mut names = Vec::new();
        let mut positions = Vec::new();
        for column in &list.value {
            let name = self.ident(field, column)?;
            if !seen.insert(name.clone()) {
                return self.error(
                    column.referenced,
                    format!("{field}: column {name} is listed twice"),
                );
            }
            names.push(name);
            positions.push(position(column.referenced));
        }
        Ok((names, positions))
    }

    fn action(
        &self,
        field: &str,
        value: &Option<Spanned<String>>,
    ) -> Result<FkAction, PlaybookError> {
        let Some(value) = value else {
            return Ok(FkAction::NoAction);
        };
        match value.value.as_str() {
            "no_action" => Ok(FkAction::NoAction),
            "restrict" => Ok(FkAction::Restrict),
            "cascade" => Ok(FkAction::Cascade),
            "set_null" => Ok(FkAction::SetNull),
            "set_default" => Ok(FkAction::SetDefault),
            other => self.error(
                value.referenced,
                format!("{field}: unknown action {other:?}; expected one of no_action, restrict, cascade, set_null, set_default"),
            ),
        }
    }

    fn constraint(
        &self,
        raw: &Spanned<RawConstraint>,
    ) -> Result<(ForeignKeyDef, ConstraintPositions, Option<UniqueDef>), PlaybookError> {
        let c = &raw.value;
        if let Some(kind) = &c.kind {
            match kind.value.as_str() {
                "foreign_key" => {}
                "unique" => return self.unique_constraint(raw),
                other => {
                    return self.error(
                        kind.referenced,
                        format!("constraint.kind: unknown kind {other:?}; expected foreign_key (the default) or unique"),
                    )
                }
            }
        }
        if let Some(n) = &c.nulls_not_distinct {
            return self.error(
                n.referenced,
                "constraint.nulls_not_distinct: only a unique constraint has it; add `kind: unique`, or remove it for a foreign key",
            );
        }
        let Some(references) = &c.references else {
            return self.error(
                raw.referenced,
                "constraint: missing field `references` (the table and columns the foreign key points to); for a unique constraint write `kind: unique`",
            );
        };
        let name = self.ident("constraint.name", &c.name)?;
        let table = self.qualified("constraint.table", &c.table)?;
        let (columns, column_positions) = self.columns("constraint.columns", &c.columns)?;
        let refs = &references.value;
        let ref_table = self.qualified("constraint.references.table", &refs.table)?;
        let (ref_columns, ref_positions) =
            self.columns("constraint.references.columns", &refs.columns)?;
        if columns.len() != ref_columns.len() {
            return self.error(
                refs.columns.referenced,
                format!(
                    "constraint.references.columns: {} referenced column(s) for {} referencing column(s); the lists must pair up one to one",
                    ref_columns.len(),
                    columns.len()
                ),
            );
        }
        let on_delete = self.action("constraint.on_delete", &c.on_delete)?;
        let on_update = self.action("constraint.on_update", &c.on_update)?;
        let match_type = self.match_type(&c.match_type)?;
        let deferrable = c.deferrable.as_ref().is_some_and(|d| d.value);
        let initially_deferred = c.initially_deferred.as_ref().is_some_and(|d| d.value);
        if let Some(d) = &c.initially_deferred {
            if d.value && !deferrable {
                return self.error(d.referenced, "constraint.initially_deferred: a constraint can only be initially deferred if it is deferrable: add `deferrable: true`");
            }
        }
        let fk = ForeignKeyDef {
            name,
            table,
            columns,
            ref_table,
            ref_columns,
            on_delete,
            on_update,
            match_type,
            deferrable,
            initially_deferred,
        };
        let positions =
            foreign_key_positions(raw, refs.table.referenced, column_positions, ref_positions);
        Ok((fk, positions, None))
    }

    /// `kind: unique`: name, table, columns, nulls_not_distinct, deferrable.
    /// The foreign-key fields are refused where they are written. The
    /// returned foreign key only carries the shared name, table and columns
    /// (it references its own table); commands read the unique definition.
    fn unique_constraint(
        &self,
        raw: &Spanned<RawConstraint>,
    ) -> Result<(ForeignKeyDef, ConstraintPositions, Option<UniqueDef>), PlaybookError> {
        let c = &raw.value;
        let fk_only = [
            ("references", c.references.as_ref().map(|r| r.referenced)),
            ("on_delete", c.on_delete.as_ref().map(|r| r.referenced)),
            ("on_update", c.on_update.as_ref().map(|r| r.referenced)),
            ("match", c.match_type.as_ref().map(|r| r.referenced)),
        ];
        if let Some((field, Some(at))) = fk_only.iter().find(|(_, at)| at.is_some()) {
            return self.error(
                *at,
                format!("constraint.{field}: a unique constraint has no {field} (only a foreign key does); remove it, or drop `kind: unique`"),
            );
        }
        let name = self.ident("constraint.name", &c.name)?;
        let table = self.qualified("constraint.table", &c.table)?;
        let (columns, column_positions) = self.columns("constraint.columns", &c.columns)?;
        let deferrable = c.deferrable.as_ref().is_some_and(|d| d.value);
        let initially_deferred = c.initially_deferred.as_ref().is_some_and(|d| d.value);
        if let Some(d) = &c.initially_deferred {
            if d.value && !deferrable {
                return self.error(d.referenced, "constraint.initially_deferred: a constraint can only be initially deferred if it is deferrable: add `deferrable: true`");
            }
        }
        let unique = UniqueDef {
            name: name.clone(),
            table: table.clone(),
            columns: columns.clone(),
            nulls_not_distinct: c.nulls_not_distinct.as_ref().is_some_and(|n| n.value),
            deferrable,
            initially_deferred,
        };
        let fk = ForeignKeyDef {
            name,
            ref_table: table.clone(),
            table,
            ref_columns: columns.clone(),
            columns,
            on_delete: FkAction::NoAction,
            on_update: FkAction::NoAction,
            match_type: MatchType::Simple,
            deferrable,
            initially_deferred,
        };
        let positions = ConstraintPositions {
            block: position(raw.referenced),
            name: position(c.name.referenced),
            table: position(c.table.referenced),
            ref_table: position(c.table.referenced),
            ref_columns: column_positions.clone(),
            columns: column_positions,
            deferrable: c.deferrable.as_ref().map(|v| position(v.referenced)),
            initially_deferred: c
                .initially_deferred
                .as_ref()
                .map(|v| position(v.referenced)),
            nulls_not_distinct: c
                .nulls_not_distinct
                .as_ref()
                .map(|v| position(v.referenced)),
            ..ConstraintPositions::default()
        };
        Ok((fk, positions, Some(unique)))
    }

    fn match_type(&self, value: &Option<Spanned<String>>) -> Result<MatchType, PlaybookError> {
        Ok(match value {
            None => MatchType::Simple,
            Some(m) => match m.value.as_str() {
                "simple" => MatchType::Simple,
                "full" => MatchType::Full,
                "partial" => {
                    return self.error(
                        m.referenced,
                        "constraint.match: MATCH PARTIAL is not implemented by PostgreSQL",
                    )
                }
                other => {
                    return self.error(
                        m.referenced,
                        format!(
                    "constraint.match: unknown match type {other:?}; expected simple or full"
                ),
                    )
                }
            },
        })
    }

    fn slug(&self, field: &str, value: &Spanned<String>) -> Result<String, PlaybookError> {
        let text = value.value.trim();
        let ok = !text.is_empty()
            && text.len() <= 100
            && text
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
        if !ok {
            return self.error(
                value.referenced,
                format!(
                    "{field}: {:?} must be 1 to 100 characters of letters, digits, '-', '_' or '.'",
                    value.value
                ),
            );
        }
        Ok(text.to_string())
    }

    fn environments(
        &self,
        raw: &Spanned<Vec<Spanned<RawEnvironment>>>,
    ) -> Result<Vec<Environment>, PlaybookError> {
        if raw.value.is_empty() {
            return self.error(
                raw.referenced,
                "environments: at least one environment is required",
            );
        }
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        for env in &raw.value {
            let e = &env.value;
            let name = self.slug("environments.name", &e.name)?;
            if !seen.insert(name.clone()) {
                return self.error(
                    e.name.referenced,
                    format!("environments.name: {name:?} appears twice"),
                );
            }
            let fleet = super::fleet::fleet(self.path, e)?;
            let dsn_env = match (&e.dsn_env, &fleet) {
                (Some(var), None) => {
                    let v = var.value.trim();
                    if !super::fleet::is_variable_name(v) {
                        return self.error(
                            var.referenced,
                            "environments.dsn_env: not an environment variable name (letters, digits and '_'; the value is not shown, it may be a connection string): put the connection string in that variable, not here",
                        );
                    }
                    v.to_string()
                }
                (None, Some(_)) => String::new(),
                (Some(var), Some(_)) => return self.error(var.referenced, format!("environment {name:?}: dsn_env is for one database; a fleet's targets each say how to connect")),
                (None, None) => return self.error(e.name.referenced, format!("environment {name:?}: give dsn_env (the variable holding its connection string), or targets: / targets_file: for a fleet")),
            };
            out.push(Environment {
                name,
                dsn_env,
                service: None,
                fleet,
                protected: e.protected.as_ref().is_some_and(|p| p.value),
            });
        }
        Ok(out)
    }

    fn duration(
        &self,
        field: &str,
        value: &Option<Spanned<String>>,
        default: Duration,
    ) -> Result<Duration, PlaybookError> {
        let Some(value) = value else {
            return Ok(default);
        };
        let d = duration::parse(&value.value)
            .or_else(|e| self.error(value.referenced, format!("{field}: {e}")))?;
        if d.is_zero() {
            return self.error(
                value.referenced,
                format!("{field}: 0 means no timeout at all; fkctl never waits without one"),
            );
        }
        Ok(d)
    }

    fn safety(&self, raw: &Option<Spanned<RawSafety>>) -> Result<Safety, PlaybookError> {
        let defaults = RawSafety {
            lock_timeout: None,
            statement_timeout: None,
            lock_retries: None,
            max_orphans_before_drop: None,
        };
        let s = raw.as_ref().map(|s| &s.value).unwrap_or(&defaults);
        let lock_timeout = self.duration(
            "safety.lock_timeout",
            &s.lock_timeout,
            Duration::from_millis(500),
        )?;
        if let Some(v) = &s.lock_timeout {
            if lock_timeout > Duration::from_secs(60) {
                return self.error(v.referenced, "safety.lock_timeout: over a minute; every query on the table would queue behind fkctl that long. Keep it short (below deadlock_timeout, 1s by default) and let retries do the waiting");
            }
        }
        let statement_timeout = self.duration(
            "safety.statement_timeout",
            &s.statement_timeout,
            Duration::from_secs(30),
        )?;
        let lock_retries = s.lock_retries.as_ref().map_or(8, |r| r.value);
        if let Some(r) = &s.lock_retries {
            if r.value > 1000 {
                return self.error(r.referenced, "safety.lock_retries: at most 1000");
            }
        }
        Ok(Safety {
            lock_timeout,
            statement_timeout,
            lock_retries,
            max_orphans_before_drop: s.max_orphans_before_drop.as_ref().map_or(0, |m| m.value),
        })
    }

    fn rollback(
        &self,
        raw: &Option<Spanned<RawRollback>>,
    ) -> Result<RollbackSettings, PlaybookError> {
        let defaults = RawRollback::default();
        let r = raw.as_ref().map(|r| &r.value).unwrap_or(&defaults);
        let unique_only = [
            ("duplicates", r.duplicates.as_ref().map(|v| v.referenced)),
            ("keep", r.keep.as_ref().map(|v| v.referenced)),
            (
                "max_duplicates",
                r.max_duplicates.as_ref().map(|v| v.referenced),
            ),
        ];
        if let Some((field, Some(at))) = unique_only.iter().find(|(_, at)| at.is_some()) {
            return self.error(*at, format!("rollback.{field}: only a unique constraint (kind: unique) has duplicates; a foreign key's rollback purges orphans (rollback.orphans)"));
        }
        let orphans = match &r.orphans {
            None => OrphanPolicy::ArchiveDelete,
            Some(p) => match p.value.as_str() {
                "archive-delete" => OrphanPolicy::ArchiveDelete,
                "nullify" => OrphanPolicy::Nullify,
                "abort" => OrphanPolicy::Abort,
                other => return self.error(p.referenced, format!("rollback.orphans: unknown policy {other:?}; expected archive-delete, nullify or abort")),
            },
        };
        let batch_size = r.batch_size.as_ref().map_or(1000, |b| b.value);
        if let Some(b) = &r.batch_size {
            if b.value == 0 || b.value > 1_000_000 {
                return self.error(b.referenced, "rollback.batch_size: must be between 1 and 1000000 (small batches keep row locks brief)");
            }
        }
        let vacuum = match &r.vacuum {
            None => VacuumPolicy::Auto,
            Some(v) => match v.value.as_str() {
                "auto" => VacuumPolicy::Auto,
                "always" => VacuumPolicy::Always,
                "never" => VacuumPolicy::Never,
                other => return self.error(v.referenced, format!("rollback.vacuum: unknown value {other:?}; expected auto (after {}), always or never", crate::kinds::foreign_key::plan::vacuum::auto_rule())),
            },
        };
        Ok(RollbackSettings {
            orphans,
            batch_size,
            max_orphans: r.max_orphans.as_ref().map_or(100_000, |m| m.value),
            vacuum,
        })
    }

    /// A unique constraint's rollback: its duplicates' policy, which row
    /// of equal keys stays, batch size and limit.
    fn dedupe(
        &self,
        raw: &Option<Spanned<RawRollback>>,
        constraint_block: Location,
    ) -> Result<DedupeSettings, PlaybookError> {
        let defaults = RawRollback::default();
        let r = raw.as_ref().map(|r| &r.value).unwrap_or(&defaults);
        let fk_only = [
            ("orphans", r.orphans.as_ref().map(|v| v.referenced)),
            ("max_orphans", r.max_orphans.as_ref().map(|v| v.referenced)),
        ];
        if let Some(v) = &r.vacuum {
            return self.error(v.referenced, "rollback.vacuum: only a foreign key's rollback vacuums the child after its purge; a unique constraint's rollback builds its index concurrently and has no such step");
        }
        if let Some((field, Some(at))) = fk_only.iter().find(|(_, at)| at.is_some()) {
            return self.error(*at, format!("rollback.{field}: a unique constraint has no orphans; say what happens to duplicate rows with rollback.duplicates (archive-delete or abort) and rollback.max_duplicates"));
        }
        let duplicates = match &r.duplicates {
            None => DuplicatePolicy::ArchiveDelete,
            Some(p) => match p.value.as_str() {
                "archive-delete" => DuplicatePolicy::ArchiveDelete,
                "abort" => DuplicatePolicy::Abort,
                other => return self.error(p.referenced, format!("rollback.duplicates: unknown policy {other:?}; expected archive-delete or abort")),
            },
        };
        let keep_order_by = match &r.keep {
            Some(keep) => self.order_by(&keep.value.order_by)?,
            None if duplicates == DuplicatePolicy::Abort => Vec::new(),
            None => {
                let at = raw.as_ref().map_or(constraint_block, |r| r.referenced);
                return self.error(at, "rollback.keep: say which row of each group of duplicates stays, e.g. keep: { order_by: [id] } (the first by that order stays; -column sorts descending), or use duplicates: abort");
            }
        };
        let batch_size = r.batch_size.as_ref().map_or(1000, |b| b.value);
        if let Some(b) = &r.batch_size {
            if b.value == 0 || b.value > 1_000_000 {
                return self.error(b.referenced, "rollback.batch_size: must be between 1 and 1000000 (small batches keep row locks brief)");
            }
        }
        Ok(DedupeSettings {
            duplicates,
            keep_order_by,
            batch_size,
            max_duplicates: r.max_duplicates.as_ref().map_or(100_000, |m| m.value),
        })
    }

    /// `order_by: [id, -created_at]`: a leading `-` sorts that column descending.
    fn order_by(
        &self,
        list: &Spanned<Vec<Spanned<String>>>,
    ) -> Result<Vec<OrderColumn>, PlaybookError> {
        if list.value.is_empty() {
            return self.error(
                list.referenced,
                "rollback.keep.order_by: at least one column is required",
            );
        }
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        for item in &list.value {
            let text = item.value.trim();
            let (descending, name) = match text.strip_prefix('-') {
                Some(rest) => (true, rest.trim_start()),
                None => (false, text),
            };
            let column = Ident::parse(name)
                .or_else(|e| self.error(item.referenced, format!("rollback.keep.order_by: {e}")))?;
            if !seen.insert(column.clone()) {
                return self.error(
                    item.referenced,
                    format!("rollback.keep.order_by: column {column} is listed twice"),
                );
            }
            out.push(OrderColumn { column, descending });
        }
        Ok(out)
    }

    fn loose(
        &self,
        raw: &Option<Spanned<RawLoose>>,
    ) -> Result<Option<LooseSettings>, PlaybookError> {
        let Some(raw) = raw else {
            return Ok(None);
        };
        let l = &raw.value;
        let defaults = LooseSettings::default();
        let batch_size = l
            .batch_size
            .as_ref()
            .map_or(defaults.batch_size, |b| b.value);
        if let Some(b) = &l.batch_size {
            if b.value == 0 || b.value > 100_000 {
                return self.error(b.referenced, "loose.batch_size: must be between 1 and 100000 (each batch is one transaction holding row locks on the child)");
            }
        }
        let max_runtime =
            self.duration("loose.max_runtime", &l.max_runtime, defaults.max_runtime)?;
        if let Some(m) = &l.max_rows_per_run {
            if m.value == 0 {
                return self.error(m.referenced, "loose.max_rows_per_run: 0 would never clean anything; leave loose: out to turn the replacement off");
            }
        }
        Ok(Some(LooseSettings {
            batch_size,
            max_runtime,
            max_rows_per_run: l
                .max_rows_per_run
                .as_ref()
                .map_or(defaults.max_rows_per_run, |m| m.value),
        }))
    }

    fn change_request_template(
        &self,
        raw: &Option<Spanned<RawChangeRequest>>,
    ) -> Result<Option<PathBuf>, PlaybookError> {
        let Some(template) = raw.as_ref().and_then(|c| c.value.template.as_ref()) else {
            return Ok(None);
        };
        let t = template.value.trim();
        if t.is_empty() {
            return self.error(
                template.referenced,
                "change_request.template: must name a file",
            );
        }
        let base = self.path.parent().unwrap_or_else(|| Path::new("."));
        Ok(Some(base.join(t)))
    }

    /// Labels as GitLab and GitHub accept them: GitLab's API takes labels as
    /// one comma-separated string, so a comma would split one label in two.
    fn change_request_labels(
        &self,
        raw: &Option<Spanned<RawChangeRequest>>,
    ) -> Result<Vec<String>, PlaybookError> {
        let Some(labels) = raw.as_ref().and_then(|c| c.value.labels.as_ref()) else {
            return Ok(Vec::new());
        };
        let mut out: Vec<String> = Vec::new();
        for label in &labels.value {
            let text = label.value.trim();
            if text.is_empty() {
                return self.error(
                    label.referenced,
                    "change_request.labels: a label cannot be empty",
                );
            }
            if text.contains(',') {
                return self.error(
                    label.referenced,
                    format!("change_request.labels: {text:?} contains a comma, which GitLab reads as two labels; write them as two entries"),
                );
            }
            if text.chars().count() > 50 {
                return self.error(
                    label.referenced,
                    "change_request.labels: a label is at most 50 characters (GitHub's limit)",
                );
            }
            if out.iter().any(|l| l == text) {
                return self.error(
                    label.referenced,
                    format!("change_request.labels: {text:?} is listed twice"),
                );
            }
            out.push(text.to_string());
        }
        Ok(out)
    }

    fn playbook(&self, raw: RawPlaybook) -> Result<Playbook, PlaybookError> {
        if raw.version.value.0 != u64::from(SUPPORTED_VERSION) {
            return self.error(
                raw.version.referenced,
                format!(
                    "version: {} is not supported; this fkctl reads version {SUPPORTED_VERSION}",
                    raw.version.value.0
                ),
            );
        }
        let change = self.slug("change", &raw.change)?;
        let summary = raw.summary.value.trim().to_string();
        if summary.is_empty() {
            return self.error(raw.summary.referenced, "summary: must not be empty");
        }
        let mut links = Vec::new();
        for link in &raw.links {
            let l = link.value.trim();
            if l.is_empty() || l.contains(char::is_whitespace) {
                return self.error(
                    link.referenced,
                    format!("links: {:?} is not a link", link.value),
                );
            }
            links.push(l.to_string());
        }
        let (constraint, positions, unique_def) = self.constraint(&raw.constraint)?;
        let unique = match unique_def {
            None => None,
            Some(def) => {
                if let Some(l) = &raw.loose {
                    return self.error(l.referenced, "loose: the loose replacement stands in for a foreign key's actions; a unique constraint has none (remove loose:)");
                }
                Some(UniqueSpec {
                    def,
                    rollback: self.dedupe(&raw.rollback, raw.constraint.referenced)?,
                })
            }
        };
        let fk_rollback = if unique.is_some() {
            RollbackSettings {
                orphans: OrphanPolicy::Abort,
                batch_size: unique.as_ref().map_or(1000, |u| u.rollback.batch_size),
                max_orphans: 0,
                vacuum: VacuumPolicy::Never,
            }
        } else {
            self.rollback(&raw.rollback)?
        };
        Ok(Playbook {
            path: self.path.to_path_buf(),
            version: SUPPORTED_VERSION,
            change,
            summary,
            links,
            constraint,
            environments: self.environments(&raw.environments)?,
            safety: self.safety(&raw.safety)?,
            rollback: fk_rollback,
            unique,
            loose: self.loose(&raw.loose)?,
            journal_schema: match &raw.journal {
                None => Ident::from_catalog(crate::kinds::foreign_key::repair::DEFAULT_SCHEMA),
                Some(j) => self.ident("journal.schema", &j.value.schema)?,
            },
            change_request_template: self.change_request_template(&raw.change_request)?,
            change_request_labels: self.change_request_labels(&raw.change_request)?,
            positions,
        })
    }
}

/// The YAML library's wording, in the words of someone editing a playbook.
fn plain_words(message: &str) -> String {
    // The YAML library's words for these name its own functions and types.
    if message.starts_with("multiple YAML documents detected") {
        return "a playbook is one YAML document, and this file has more than one (a second `---` line)".to_string();
    }
    if message.starts_with("budget breached") || message.starts_with("recursion limit exceeded") {
        return "the file is far too large or too deeply nested to be a playbook (a playbook is a few dozen lines)".to_string();
    }
    let replaced = match message {
        "invalid u32" | "invalid u64" => "expected a whole number, 0 or more",
        "expected sequence start" => "expected a list, e.g. [a, b]",
        "expected mapping start" => "expected a mapping of keys to values (key: value)",
        "expected string scalar" => "expected a text value",
        "unexpected end of input" => "the playbook is empty or ends too early",
        other => other,
    };
    replaced.to_string()
}

/// Parses playbook text; `path` is used in messages only.
pub fn parse_str(text: &str, path: &Path) -> Result<Playbook, PlaybookError> {
    let mut options = serde_saphyr::options::Options::default();
    options.with_snippet = false;
    let raw: RawPlaybook = serde_saphyr::from_str_with_options(text, options).map_err(|e| {
        let location = e.location();
        let mut message = e.to_string();
        if let Some(l) = location {
            let suffix = format!(" at line {}, column {}", l.line(), l.column());
            if let Some(stripped) = message.strip_suffix(&suffix) {
                message = stripped.to_string();
            }
        }
        let message =
            plain_words(&message.replace(", set DuplicateKeyPolicy in Options if acceptable", ""));
        PlaybookError {
            path: path.to_path_buf(),
            position: Some(
                location
                    .map(position)
                    .unwrap_or(Position { line: 1, column: 1 }),
            ),
            message,
        }
    })?;
    Checker { path }.playbook(raw)
}

#[cfg(test)]
mod tests {
    use super::plain_words;

    #[test]
    fn the_yaml_librarys_internal_words_are_replaced() {
        for raw in [
            "budget breached: Nodes { nodes: 250001 }",
            "multiple YAML documents detected; use from_str_multiple or from_str_multiple_with_options",
        ] {
            let said = plain_words(raw);
            assert!(!said.contains("Nodes") && !said.contains("from_str"), "{said}");
        }
    }
}
