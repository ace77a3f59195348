//! Checking an environment's fleet: `targets:` written in the playbook or
//! read from `targets_file:`, and `rollout:`. Names, duplicates and the
//! rollout numbers are checked here, each error at file:line:column.

use super::raw::{RawEnvironment, RawRollout, RawTarget};
use super::{Fleet, FleetTarget, PlaybookError, Position};
use serde_saphyr::Spanned;
use std::collections::HashSet;
use std::path::{Path, PathBuf};

/// The most databases one environment may list: a typo in a generated
/// targets file should not start ten thousand connections.
pub const MAX_TARGETS: usize = 10_000;
const MAX_CONCURRENCY: u32 = 64;

/// One target as read, with where it was written (for error messages).
struct Read {
    target: FleetTarget,
    path: PathBuf,
    position: Position,
}

pub(super) fn error_at(
    path: &Path,
    position: Position,
    message: impl Into<String>,
) -> PlaybookError {
    PlaybookError {
        path: path.to_path_buf(),
        position: Some(position),
        message: message.into(),
    }
}

fn at<T>(span: &Spanned<T>) -> Position {
    Position {
        line: span.referenced.line(),
        column: span.referenced.column(),
    }
}

/// A variable name the shell can export.
pub(super) fn is_variable_name(var: &str) -> bool {
    !var.is_empty()
        && !var.starts_with(|c: char| c.is_ascii_digit())
        && var.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn is_target_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 100
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
}

/// The fleet of an environment, or None for a one-database environment.
pub(super) fn fleet(playbook: &Path, env: &RawEnvironment) -> Result<Option<Fleet>, PlaybookError> {
    let mut read = Vec::new();
    if let Some(list) = &env.targets {
        for t in &list.value {
            read.push(written(playbook, t)?);
        }
        if list.value.is_empty() {
            return Err(error_at(
                playbook,
                at(list),
                "targets: the list is empty; list the databases, or use dsn_env for one",
            ));
        }
    }
    if let Some(file) = &env.targets_file {
        let base = playbook.parent().unwrap_or_else(|| Path::new("."));
        read.extend(from_file(
            &base.join(file.value.trim()),
            playbook,
            at(file),
        )?);
    }
    if read.is_empty() {
        if let Some(r) = &env.rollout {
            return Err(error_at(
                playbook,
                at(r),
                "rollout: only a fleet (targets: or targets_file:) rolls out in waves",
            ));
        }
        return Ok(None);
    }
    if read.len() > MAX_TARGETS {
        return Err(error_at(
            &read[MAX_TARGETS].path,
            read[MAX_TARGETS].position,
            format!("more than {MAX_TARGETS} targets in one environment"),
        ));
    }
    let mut seen = HashSet::new();
    for r in &read {
        if !seen.insert(r.target.name.clone()) {
            return Err(error_at(
                &r.path,
                r.position,
                format!(
                    "target {:?} appears twice in this environment",
                    r.target.name
                ),
            ));
        }
    }
    let (canary, concurrency) = rollout(playbook, env.rollout.as_ref(), read.len())?;
    Ok(Some(Fleet {
        targets: read.into_iter().map(|r| r.target).collect(),
        canary,
        concurrency,
    }))
}

fn rollout(
    playbook: &Path,
    raw: Option<&Spanned<RawRollout>>,
    targets: usize,
) -> Result<(usize, usize), PlaybookError> {
    let Some(raw) = raw else {
        return Ok((1.min(targets), 1));
    };
    let canary = raw.value.canary.as_ref().map_or(1, |c| c.value as usize);
    if let Some(c) = &raw.value.canary {
        if canary >= targets && targets > 1 {
            return Err(error_at(playbook, at(c), format!("rollout.canary: {canary} of {targets} targets leaves none for the waves; canaries go first, alone")));
        }
    }
    let concurrency = raw.value.concurrency.as_ref().map_or(1, |c| c.value);
    if let Some(c) = &raw.value.concurrency {
        if c.value == 0 || c.value > MAX_CONCURRENCY {
            return Err(error_at(playbook, at(c), format!("rollout.concurrency: must be between 1 and {MAX_CONCURRENCY} (each target holds a session and takes locks)")));
        }
    }
    Ok((canary.min(targets), concurrency as usize))
}

fn written(playbook: &Path, t: &Spanned<RawTarget>) -> Result<Read, PlaybookError> {
    let name = t.value.name.value.trim();
    if !is_target_name(name) {
        return Err(error_at(playbook, at(&t.value.name), format!("targets.name: {:?} must be 1 to 100 characters of letters, digits, '-', '_' or '.'", t.value.name.value)));
    }
    let connect = match (&t.value.dsn_env, &t.value.service) {
        (Some(var), None) => Connect::Variable(var.value.trim().to_string(), at(var)),
        (None, Some(service)) => Connect::Service(service.value.trim().to_string(), at(service)),
        _ => return Err(error_at(playbook, at(t), format!("target {name:?}: give exactly one of dsn_env (a variable holding its connection string) or service (in pg_service.conf)"))),
    };
    Ok(Read {
        target: connect.target(playbook, name)?,
        path: playbook.to_path_buf(),
        position: at(&t.value.name),
    })
}

enum Connect {
    Variable(String, Position),
    Service(String, Position),
}

impl Connect {
    fn target(self, path: &Path, name: &str) -> Result<FleetTarget, PlaybookError> {
        match self {
            Connect::Variable(var, _) if is_variable_name(&var) => Ok(FleetTarget { name: name.to_string(), dsn_env: Some(var), service: None }),
            Connect::Variable(_, position) => Err(error_at(path, position, format!("target {name:?}: dsn_env is not an environment variable name (letters, digits and '_'; the value is not shown, it may be a connection string): put the connection string in that variable, not here"))),
            Connect::Service(service, _) if is_target_name(&service) => Ok(FleetTarget { name: name.to_string(), dsn_env: None, service: Some(service) }),
            Connect::Service(_, position) => Err(error_at(path, position, format!("target {name:?}: not a service name (letters, digits, '-', '_' or '.'; the value is not shown)"))),
        }
    }
}

/// `targets_file:`: one target per line, `NAME env=VARIABLE` or
/// `NAME service=SERVICE`; blank lines and `#` comments are skipped. Errors
/// point into that file.
fn from_file(
    file: &Path,
    playbook: &Path,
    written_at: Position,
) -> Result<Vec<Read>, PlaybookError> {
    let text = std::fs::read_to_string(file).map_err(|e| {
        error_at(
            playbook,
            written_at,
            format!("targets_file: cannot read {}: {e}", file.display()),
        )
    })?;
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let content = line.split('#').next().unwrap_or("").trim_end();
        if content.trim().is_empty() {
            continue;
        }
        let column = (content.len() - content.trim_start().len() + 1) as u64;
        let position = Position {
            line: n as u64 + 1,
            column,
        };
        let mut words = content.split_whitespace();
        let (Some(name), Some(how), None) = (words.next(), words.next(), words.next()) else {
            return Err(error_at(file, position, "expected `NAME env=VARIABLE` or `NAME service=SERVICE` (a password never goes here)"));
        };
        if !is_target_name(name) {
            return Err(error_at(
                file,
                position,
                // Not echoed: a line that went wrong may hold a connection string.
                "the first word is not a target name (1 to 100 letters, digits, '-', '_' or '.')",
            ));
        }
        let after_name = &content[content.len() - content.trim_start().len() + name.len()..];
        let value_at = Position {
            line: position.line,
            column: column
                + name.len() as u64
                + (after_name.len() - after_name.trim_start().len()) as u64,
        };
        let connect = match how.split_once('=') {
            Some(("env", var)) => Connect::Variable(var.to_string(), value_at),
            Some(("service", service)) => Connect::Service(service.to_string(), value_at),
            _ => {
                return Err(error_at(
                    file,
                    value_at,
                    "expected env=VARIABLE or service=SERVICE after the target name (not shown: it may hold a secret; a password never goes in this file)",
                ))
            }
        };
        out.push(Read {
            target: connect.target(file, name)?,
            path: file.to_path_buf(),
            position,
        });
    }
    if out.is_empty() {
        return Err(error_at(
            playbook,
            written_at,
            format!("targets_file: {} lists no target", file.display()),
        ));
    }
    Ok(out)
}
