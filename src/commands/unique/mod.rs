//! The commands for a `kind: unique` playbook. `commands::run` hands a
//! unique playbook here; each command connects, inspects the constraint
//! (`kinds::unique::catalog`), asks the kind's pure plans for the steps and
//! runs them on the shared engine (executor, lock waits, journal, archive).

pub mod demo;
mod drop;
mod read;
mod restore;
mod rollback;

use crate::cli::args::{Cli, Command, Output};
use crate::connect::Target;
use crate::error::{Error, Result};
use crate::execute::lock_wait::Watched;
use crate::execute::{BindValues, Executor, StepOutcome, Value};
use crate::journal::Run;
use crate::kinds::unique::definition::UniqueSpec;
use crate::kinds::unique::observed::{UniqueInspection, UniqueLookup};
use crate::plan::Step;
use crate::playbook::{self, Environment, Playbook};
use std::path::Path;

/// The playbook's path when the command reads one.
fn playbook_path(command: &Command) -> Option<&Path> {
    match command {
        Command::Inspect { playbook, .. }
        | Command::Orphans { playbook, .. }
        | Command::Cleanup { playbook, .. }
        | Command::Plan { playbook, .. }
        | Command::Drop { playbook, .. }
        | Command::Rollback { playbook, .. }
        | Command::Restore { playbook, .. }
        | Command::Status { playbook, .. }
        | Command::ChangeRequest { playbook, .. } => Some(playbook),
        _ => None,
    }
}

/// Whether the command is for a unique constraint's playbook. A playbook
/// that does not load is left to the command, which reports why.
pub fn handles(cli: &Cli) -> bool {
    playbook_path(&cli.command)
        .and_then(|p| playbook::load(p).ok())
        .is_some_and(|p| p.unique.is_some())
}

// Long because it is one match arm per command, handing each its arguments; no logic.
pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Inspect {
            playbook,
            connection,
            output,
        } => read::inspect(&playbook, &connection.env, &connection.dsn, output),
        Command::Orphans {
            playbook,
            connection,
            sample,
            metrics_file,
            output,
        } => read::duplicates(
            &playbook,
            &connection.env,
            &connection.dsn,
            read::CensusOptions {
                sample,
                metrics_file,
                output,
            },
        ),
        Command::Plan {
            playbook,
            environments,
            rollback,
            output,
        } => read::plan(
            &playbook,
            environments.env.as_deref(),
            &environments.dsn,
            rollback,
            output,
        ),
        Command::Drop {
            playbook,
            environments,
            dry_run,
            yes,
            out_of_order,
            ..
        } => drop::run(
            &playbook,
            environments.env.as_deref(),
            &environments.dsn,
            drop::Options {
                dry_run,
                yes,
                out_of_order,
            },
        ),
        Command::Rollback {
            playbook,
            connection,
            yes,
            max_orphans,
            use_playbook_definition,
            output,
            ..
        } => rollback::run(
            &playbook,
            &connection.env,
            &connection.dsn,
            rollback::Options {
                yes,
                max_duplicates: max_orphans,
                use_playbook_definition,
                json: output == Output::Json,
            },
        ),
        Command::Restore {
            playbook,
            connection,
            run,
            yes,
            ..
        } => restore::run(&playbook, &connection.env, &connection.dsn, &run, yes),
        Command::Status {
            playbook,
            environments,
            output,
        } => read::status(
            &playbook,
            environments.env.as_deref(),
            &environments.dsn,
            output,
        ),
        Command::ChangeRequest { playbook, out, .. } => {
            read::change_request(&playbook, out.as_deref())
        }
        Command::Cleanup { .. } => Err(Error::usage(
            "fkctl cleanup runs the loose replacement of a dropped foreign key; a unique constraint has none",
        )),
        _ => Err(Error::internal("not a command for a playbook")),
    }
}

/// A loaded unique playbook, its spec and one environment, connected.
pub(super) struct Session {
    pub playbook: Playbook,
    pub spec: UniqueSpec,
    pub environment: Environment,
    pub target: Target,
    pub client: postgres::Client,
}

impl Session {
    pub fn open(path: &Path, env: &str, dsn: &[(String, String)]) -> Result<Session> {
        let (playbook, environment) = super::load_with_env(path, env)?;
        Session::connect(playbook, environment, dsn)
    }

    pub fn connect(
        playbook: Playbook,
        environment: Environment,
        dsn: &[(String, String)],
    ) -> Result<Session> {
        if environment.fleet.is_some() {
            return Err(Error::usage(format!(
                "{} is a fleet; fkctl runs unique constraints on one database at a time so far",
                environment.name
            ))
            .next("name one of its databases: --env ENVIRONMENT/TARGET"));
        }
        let spec = playbook
            .unique
            .clone()
            .ok_or_else(|| Error::internal("a unique command got a foreign-key playbook"))?;
        let (target, client) = super::connect(&playbook, &environment, dsn)?;
        Ok(Session {
            playbook,
            spec,
            environment,
            target,
            client,
        })
    }

    pub fn env(&self) -> &str {
        &self.environment.name
    }

    /// Inspects the constraint; a lock wait is retried with backoff and the holder named.
    pub fn inspect(&mut self, step: &str) -> Result<UniqueInspection> {
        let tables = [&self.spec.def.table];
        let (playbook, spec, env) = (&self.playbook, &self.spec, self.environment.name.clone());
        super::bounded(
            &mut self.client,
            playbook,
            &env,
            step,
            Watched::Tables(&tables),
            |c| crate::kinds::unique::catalog::inspect(c, playbook, &spec.def, &env),
        )
    }

    /// The change's advisory lock on this database: no second fkctl works
    /// on the same change here at the same time.
    pub fn lock_change(&mut self) -> Result<()> {
        crate::execute::guard::lock_change(
            &mut self.client,
            &self.playbook.change,
            &self.playbook.constraint,
            &self.environment.name,
        )
    }

    /// What an executor needs, owned, so that it does not borrow the session.
    pub fn engine(&self) -> (Target, String) {
        (self.target.clone(), self.environment.name.clone())
    }
}

/// An executor over the table and its partitions, as inspected, and
/// fkctl's own tables in `journal`.
pub(super) fn executor<'a>(
    target: &'a Target,
    env: &'a str,
    inspection: &UniqueInspection,
    retries: u32,
    journal: &crate::sql::ident::Ident,
) -> Result<Executor<'a>> {
    Ok(Executor::new(target, env, inspection.watched.clone(), retries)?.watching_journal(journal))
}

/// Refusals any command that changes the constraint makes before acting:
/// a constraint of another kind under the name, or one that differs from
/// the playbook (field by field), or an index fkctl could not rebuild alike.
pub(super) fn refuse_mismatch(
    session: &Session,
    inspection: &UniqueInspection,
    want: &crate::kinds::unique::definition::UniqueDef,
    wanted: &str,
) -> Result<()> {
    let env = session.env();
    let def = &session.spec.def;
    match &inspection.constraint {
        UniqueLookup::OtherKind(contype) => Err(Error::precondition(format!(
            "a constraint named {} exists on {} but is not a unique constraint (contype {contype})",
            def.name, def.table
        ))
        .with("environment", env)
        .next("check the playbook's constraint name and kind; nothing was changed")),
        UniqueLookup::Found(live) => {
            let differences = crate::kinds::unique::plan::drift(want, &live.def);
            if !differences.is_empty() {
                return Err(super::drift_refusal(
                    format!(
                        "the live constraint {} differs from the {wanted}; nothing was changed",
                        def.name
                    ),
                    env,
                    wanted,
                    &differences,
                )
                .next("bring the playbook in line with the database (fkctl inspect shows both), then run again"));
            }
            // What ADD CONSTRAINT ... USING INDEX on a plain concurrent
            // build would not give back: INCLUDE columns, storage
            // parameters, a tablespace (pg_get_constraintdef shows each).
            let extras = [" INCLUDE (", " WITH (", " USING INDEX TABLESPACE "];
            if live.include_columns > 0
                || !live.nondefault_keys.is_empty()
                || extras.iter().any(|x| live.definition.contains(x))
            {
                return Err(Error::precondition(format!(
                    "{} is {} (index: {}): it has INCLUDE columns, storage parameters, a tablespace or non-default operator classes or collations{}; fkctl restores a plain UNIQUE ({}) and could not put this one back alike",
                    def.name, live.definition, live.index_definition,
                    if live.nondefault_keys.is_empty() { String::new() } else { format!(" ({})", live.nondefault_keys.join(", ")) },
                    def.columns.iter().map(|c| c.display()).collect::<Vec<_>>().join(", ")
                ))
                .with("environment", env)
                .next("drop and restore this constraint by hand; nothing was changed"));
            }
            Ok(())
        }
        UniqueLookup::Absent => Ok(()),
    }
}

/// Runs one step in its transaction: the check before, the statements
/// (retried on lock timeout), the check after; recorded in the journal.
pub(super) fn run_step(
    client: &mut postgres::Client,
    exec: &Executor<'_>,
    run: Option<&Run>,
    step: &Step,
    binds: &BindValues<'_>,
) -> Result<StepOutcome> {
    crate::journal::record_step(client, run, step, |c| {
        if let Some(check) = &step.before {
            exec.check(c, check, step)?;
        }
        let outcome = if step.statements.is_empty() {
            StepOutcome::default()
        } else {
            let params = binds.for_step(step)?;
            exec.run(c, step, &params)?
        };
        if let Some(check) = &step.after {
            exec.check_after(c, check, step)?;
        }
        let (retries, blockers) = (outcome.retries, outcome.blockers.clone());
        let detail = outcome.returned.clone();
        Ok((outcome, retries, blockers, detail))
    })
}

/// A check's value as a count.
pub(super) fn count(value: Value) -> i64 {
    match value {
        Value::Count(n) => n,
        Value::Flag(b) => i64::from(b),
    }
}

/// The environments a command acts on, named or all in playbook order.
pub(super) fn environments(playbook: &Playbook, env: Option<&str>) -> Result<Vec<Environment>> {
    super::select_environments(playbook, env)
}
