//! Errors for people at 3 a.m., and the stable exit codes scripts act on.
//!
//! Every error has a kind (which decides the exit code), a one-line message,
//! context lines (environment, step, SQL, what PostgreSQL said) and, where we
//! know it, what to do next.

use crate::playbook::PlaybookError;
use std::fmt;
use std::sync::Arc;

/// What to do after losing the connection in the middle of a command.
pub const RECONNECT_ADVICE: &str = "the connection was lost; any open transaction was rolled back by the server. Check that the server is up, then run the same command again: it continues from what the catalog shows";

/// Exit codes. Documented in the README; never renumber them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// 1: a fault inside fkctl or the machine (I/O, a bug).
    Internal,
    /// 2: bad command line or bad playbook; nothing was touched.
    Usage,
    /// 3: the database could not be reached or refused the login.
    Unreachable,
    /// 4: refused: a precondition failed (drift, missing object, orphans over
    /// the limit, a policy that refuses, another run holding the change); the
    /// application's schema and data were not changed.
    Precondition,
    /// 5: a lock was not acquired within lock_timeout after every retry; the
    /// step that waited changed nothing.
    LockNotAcquired,
    /// 6: a statement failed part-way through a change; the database is
    /// consistent and the same command can be run again to continue.
    FailedMidway,
    /// 7: stopped at a prompt at the operator's request ("n", or not the
    /// environment's name): the step asked about was not run.
    Declined,
    /// 130: interrupted (Ctrl-C); the running statement was cancelled and rolled back.
    Interrupted,
}

impl Kind {
    pub fn exit_code(self) -> u8 {
        match self {
            Kind::Internal => 1,
            Kind::Usage => 2,
            Kind::Unreachable => 3,
            Kind::Precondition => 4,
            Kind::LockNotAcquired => 5,
            Kind::FailedMidway => 6,
            Kind::Declined => 7,
            Kind::Interrupted => 130,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Error {
    pub kind: Kind,
    pub message: String,
    /// `(label, text)` lines shown under the message, in order.
    pub context: Vec<(String, String)>,
    pub next: Option<String>,
    /// What PostgreSQL (or the network) said, kept whole for `source()`.
    pub cause: Option<Arc<dyn std::error::Error + Send + Sync + 'static>>,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn new(kind: Kind, message: impl Into<String>) -> Error {
        Error {
            kind,
            message: message.into(),
            context: Vec::new(),
            next: None,
            cause: None,
        }
    }

    /// The SQLSTATE PostgreSQL answered with, when this error is its answer
    /// (`from_postgres` keeps the server's error itself as the cause).
    pub fn sqlstate(&self) -> Option<&str> {
        self.cause
            .as_deref()?
            .downcast_ref::<postgres::error::DbError>()
            .map(|db| db.code().code())
    }

    pub fn usage(message: impl Into<String>) -> Error {
        Error::new(Kind::Usage, message)
    }

    pub fn precondition(message: impl Into<String>) -> Error {
        Error::new(Kind::Precondition, message)
    }

    pub fn internal(message: impl Into<String>) -> Error {
        Error::new(Kind::Internal, message)
    }

    /// The operator said no at a prompt: not a failure, but not done either.
    pub fn declined(message: impl Into<String>) -> Error {
        Error::new(Kind::Declined, message)
    }

    pub fn with(mut self, label: &str, text: impl Into<String>) -> Error {
        self.context.push((label.to_string(), text.into()));
        self
    }

    pub fn next(mut self, advice: impl Into<String>) -> Error {
        self.next = Some(advice.into());
        self
    }

    /// An error from PostgreSQL while running `sql`, classified by SQLSTATE.
    pub fn from_postgres(err: &postgres::Error, sql: &str) -> Error {
        let (kind, said) = describe_postgres(err);
        let message = match kind {
            Kind::Unreachable => "the connection to PostgreSQL failed",
            Kind::Internal => "fkctl could not run a statement",
            _ => "PostgreSQL refused a statement",
        };
        let mut e = Error::new(kind, message).with("sql", sql);
        e = e.with("postgres", said);
        e.cause = Some(match err.as_db_error() {
            Some(db) => Arc::new(db.clone()),
            None => Arc::new(Cause(err.to_string())),
        });
        if let Some(db) = err.as_db_error() {
            if let Some(detail) = db.detail() {
                e = e.with("detail", detail);
            }
            if let Some(hint) = db.hint() {
                e = e.with("hint", hint);
            }
        }
        e
    }
}

/// PostgreSQL's own words for an error, with its SQLSTATE, and the kind it maps to.
pub fn describe_postgres(err: &postgres::Error) -> (Kind, String) {
    if let Some(db) = err.as_db_error() {
        let code = db.code().code();
        let kind = match code {
            "55P03" => Kind::LockNotAcquired,
            "57014" => Kind::Interrupted,
            c if c.starts_with("08") || c == "57P01" || c == "57P02" || c == "57P03" => {
                Kind::Unreachable
            }
            "28000" | "28P01" | "3D000" => Kind::Unreachable,
            "42P01" | "42703" | "42704" | "42501" | "3F000" => Kind::Precondition,
            _ => Kind::FailedMidway,
        };
        (
            kind,
            format!("{} {}: {}", db.severity(), code, db.message()),
        )
    } else if err.is_closed() {
        (
            Kind::Unreachable,
            format!("the connection was closed: {err}"),
        )
    } else if std::error::Error::source(err).is_some_and(|s| s.is::<std::io::Error>()) {
        (Kind::Unreachable, err.to_string())
    } else {
        // Not from the server and not the network: a fault on fkctl's side.
        (Kind::Internal, err.to_string())
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let lead = if self.kind == Kind::Declined {
            "stopped"
        } else {
            "error"
        };
        write!(f, "{lead}: {}", self.message)?;
        let width = self.context.iter().map(|(l, _)| l.len()).max().unwrap_or(0);
        for (label, text) in &self.context {
            let mut lines = text.lines();
            write!(
                f,
                "\n  {label:>width$}: {}",
                lines.next().unwrap_or_default()
            )?;
            for more in lines {
                write!(f, "\n  {:>width$}  {more}", "")?;
            }
        }
        if let Some(next) = &self.next {
            write!(f, "\n  next: {next}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.cause
            .as_deref()
            .map(|c| c as &(dyn std::error::Error + 'static))
    }
}

/// A cause known only by its words (a client-side or network error, which
/// the postgres crate does not let us clone).
#[derive(Debug)]
struct Cause(String);

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Cause {}

impl From<PlaybookError> for Error {
    fn from(e: PlaybookError) -> Error {
        Error::usage(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_aligns_context_and_ends_with_advice() {
        let e = Error::precondition("the constraint differs from the playbook")
            .with("environment", "staging")
            .with("sql", "SELECT 1\nFROM x")
            .next("fix the playbook");
        assert_eq!(
            e.to_string(),
            "error: the constraint differs from the playbook\n  environment: staging\n          sql: SELECT 1\n               FROM x\n  next: fix the playbook"
        );
        assert_eq!(e.kind.exit_code(), 4);
    }
}
