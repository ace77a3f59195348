//! One module per command: each loads what it needs, connects, asks the
//! planning core for the plan, runs its steps (in plan order, by kind) and
//! hands the result to a renderer. The SQL that changes anything comes from
//! the plan; what is written here is only small reads of fkctl's own tables.

/// Narration: to stdout for people, to stderr when stdout carries one JSON
/// document (`--output json`), so that the document stays parseable.
#[macro_export]
macro_rules! say {
    ($($arg:tt)*) => {
        if $crate::commands::narration_to_stderr() {
            eprintln!($($arg)*);
        } else {
            println!($($arg)*);
        }
    };
}

/// `fkctl demo --prefix`: a name usable in database and directory names.
pub fn valid_demo_prefix(text: &str) -> std::result::Result<String, String> {
    demo::valid_prefix(text)
}

static NARRATION_TO_STDERR: std::sync::atomic::AtomicBool =
    std::sync::atomic::AtomicBool::new(false);

/// Sends narration (`say!`) to stderr from now on: stdout is for JSON.
pub fn narrate_to_stderr() {
    NARRATION_TO_STDERR.store(true, std::sync::atomic::Ordering::SeqCst);
}

pub fn narration_to_stderr() -> bool {
    NARRATION_TO_STDERR.load(std::sync::atomic::Ordering::SeqCst)
}

mod change_request;
mod cleanup;
mod demo;
mod drop;
mod fleet;
mod inspect;
mod lint;
mod man;
mod orphans;
mod plan;
mod prune;
mod restore;
mod rollback;
mod status;
mod unique;

use crate::cli::args::{Cli, Command};
use crate::connect::Target;
use crate::error::{Error, Kind, Result};
use crate::execute::lock_wait::Watched;
use crate::playbook::{self, Playbook};
use clap::CommandFactory;
use std::io::Write;
use std::path::Path;

// Long because it is one match arm per command, handing each its arguments; no logic.
pub fn run(cli: Cli) -> Result<()> {
    // A unique constraint's playbook runs the unique kind's commands.
    if unique::handles(&cli) {
        return unique::run(cli);
    }
    match cli.command {
        Command::Lint { playbooks, output } => lint::run(&playbooks, output),
        Command::Inspect {
            playbook,
            connection,
            output,
        } => inspect::run(&playbook, &connection, output),
        Command::Orphans {
            playbook,
            connection,
            sample,
            metrics_file,
            output,
        } => orphans::run(
            &playbook,
            &connection,
            sample,
            metrics_file.as_deref(),
            output,
        ),
        Command::Cleanup {
            playbook,
            connection,
            once: _,
            watch,
            metrics_file,
            listen,
            output,
        } => cleanup::run(
            &playbook,
            &connection,
            cleanup::Options {
                watch,
                metrics_file,
                listen,
                output,
            },
        ),
        Command::Plan {
            playbook,
            environments,
            rollback,
            output,
        } => plan::run(
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
            targets,
            output,
        } => drop::run(
            &playbook,
            environments.env.as_deref(),
            &environments.dsn,
            drop::Options {
                output,
                targets,
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
            targets,
            output,
        } => rollback::run(
            &playbook,
            &connection,
            rollback::Options {
                yes,
                max_orphans,
                use_playbook_definition,
                targets,
                output,
            },
        ),
        Command::Restore {
            playbook,
            connection,
            run,
            yes,
            discard_dropped_columns,
            output,
        } => restore::run(
            &playbook,
            &connection,
            &run,
            restore::Options {
                yes,
                discard_dropped_columns,
                output,
            },
        ),
        Command::Prune {
            playbook,
            connection,
            older_than,
            force,
            yes,
            dry_run,
            output,
        } => prune::run(
            &playbook,
            &connection,
            prune::Options {
                older_than,
                force,
                yes,
                dry_run,
                output,
            },
        ),
        Command::Status {
            playbook,
            environments,
            output,
        } => status::run(
            &playbook,
            environments.env.as_deref(),
            &environments.dsn,
            output,
        ),
        Command::ChangeRequest {
            playbook,
            env,
            dsn,
            template,
            format,
            out,
            post,
            project,
            api_url,
        } => match post {
            Some(to) => change_request::post(
                &playbook,
                &dsn,
                template.as_deref(),
                to,
                project.as_deref().unwrap_or_default(),
                api_url.as_deref(),
            ),
            None => change_request::run(
                &playbook,
                &env,
                &dsn,
                template.as_deref(),
                format,
                out.as_deref(),
            ),
        },
        Command::Demo { yes, clean, prefix } => {
            if let Some(p) = prefix {
                // The sandbox's functions read it from here, as from the variable.
                std::env::set_var("FKCTL_DEMO_PREFIX", p);
            }
            demo::run(yes, clean)
        }
        Command::Completions { shell } => {
            let mut buf = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "fkctl", &mut buf);
            write_stdout(&String::from_utf8_lossy(&buf))
        }
        Command::Man { dir } => man::run(dir.as_deref()),
    }
}

/// Writes to stdout; a closed pipe (`fkctl plan x | head`) is not an error.
pub fn write_stdout(text: &str) -> Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(Error::internal(format!("cannot write to stdout: {e}"))),
    }
}

/// The version of fkctl's JSON documents, their first key. It goes up when a
/// field changes meaning or goes away; new fields may appear without it.
pub const JSON_SCHEMA_VERSION: u32 = 1;

/// A JSON document with its schema version first, then the document's own
/// fields in their declared order.
#[derive(serde::Serialize)]
pub struct Versioned<'a, T: serde::Serialize> {
    pub schema_version: u32,
    #[serde(flatten)]
    pub document: &'a T,
}

impl<'a, T: serde::Serialize> Versioned<'a, T> {
    pub fn new(document: &'a T) -> Versioned<'a, T> {
        Versioned {
            schema_version: JSON_SCHEMA_VERSION,
            document,
        }
    }
}

pub fn write_json(value: &impl serde::Serialize) -> Result<()> {
    let text = serde_json::to_string_pretty(&Versioned::new(value))
        .map_err(|e| Error::internal(format!("cannot encode JSON: {e}")))?;
    write_stdout(&(text + "\n"))
}

/// The environments a command acts on: the one named, or all in playbook order.
pub fn select_environments(
    playbook: &Playbook,
    env: Option<&str>,
) -> Result<Vec<playbook::Environment>> {
    match env {
        Some(name) => Ok(vec![playbook
            .environment(name)
            .ok_or_else(|| unknown_environment(playbook, name))?]),
        None => Ok(playbook.environments.clone()),
    }
}

/// The playbook's environments, in rollout order, for messages.
fn environment_names(playbook: &Playbook) -> String {
    playbook
        .environments
        .iter()
        .map(|e| e.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

fn unknown_environment(playbook: &Playbook, env: &str) -> Error {
    Error::usage(format!(
        "environment {env:?} is not in {}; it has: {}",
        playbook.path.display(),
        environment_names(playbook)
    ))
}

/// The playbook, and the named environment in it.
pub fn load_with_env(path: &Path, env: &str) -> Result<(Playbook, playbook::Environment)> {
    let playbook = playbook::load(path)?;
    let environment = playbook
        .environment(env)
        .ok_or_else(|| unknown_environment(&playbook, env))?;
    Ok((playbook, environment))
}

/// Connects to a playbook environment; every statement of the session waits
/// at most the playbook's `lock_timeout` for a lock.
pub fn connect(
    playbook: &Playbook,
    environment: &playbook::Environment,
    overrides: &[(String, String)],
) -> Result<(Target, postgres::Client)> {
    check_overrides(playbook, overrides)?;
    let target = Target::resolve(environment, overrides)?;
    let client = target.connect(playbook.safety.lock_timeout)?;
    Ok((target, client))
}

/// `--dsn NAME=...` must name an environment of the playbook: a typo would
/// otherwise be ignored and fkctl would connect where the variable points.
pub fn check_overrides(playbook: &Playbook, overrides: &[(String, String)]) -> Result<()> {
    match overrides
        .iter()
        .find(|(name, _)| playbook.environment(name).is_none())
    {
        None => Ok(()),
        Some((name, _)) => Err(Error::usage(format!(
            "--dsn {name}=...: the playbook {} has no environment {name:?}; it has: {}",
            playbook.path.display(),
            environment_names(playbook)
        ))
        .next("write --dsn ENVIRONMENT=CONNSTRING with one of the names above")),
    }
}

/// Inspects the live constraint; a lock wait is retried with backoff and the
/// holder named; errors are labelled with the environment and step.
pub fn inspect_live(
    client: &mut postgres::Client,
    playbook: &Playbook,
    env: &str,
    step: &str,
) -> Result<crate::model::Inspection> {
    let tables = [&playbook.constraint.table, &playbook.constraint.ref_table];
    bounded(client, playbook, env, step, Watched::Tables(&tables), |c| {
        crate::catalog::inspect(c, playbook, env)
    })
}

/// The census's inspection: the tables, the constraint and its operators
/// only (`catalog::Depth::Census`), for a count or "is it gone there".
pub fn inspect_census(
    client: &mut postgres::Client,
    playbook: &Playbook,
    env: &str,
    step: &str,
) -> Result<crate::model::Inspection> {
    let tables = [&playbook.constraint.table, &playbook.constraint.ref_table];
    bounded(client, playbook, env, step, Watched::Tables(&tables), |c| {
        crate::catalog::inspect_to(c, playbook, env, crate::catalog::Depth::Census)
    })
}

/// Runs a read under the session's lock_timeout, retried with backoff up
/// to the playbook's lock_retries, naming who holds the lock on `watched`.
pub fn bounded<T>(
    client: &mut postgres::Client,
    playbook: &Playbook,
    env: &str,
    step: &str,
    watched: Watched<'_>,
    work: impl FnMut(&mut postgres::Client) -> Result<T>,
) -> Result<T> {
    crate::execute::lock_wait::with_lock_retries(
        client,
        env,
        step,
        playbook.safety.lock_retries,
        watched,
        work,
    )
    .map(|(value, _)| value)
    .map_err(|e| label(e, env, step))
}

pub fn label(mut e: Error, env: &str, step: &str) -> Error {
    if !e.context.iter().any(|(l, _)| l == "environment") {
        e.context
            .insert(0, ("environment".to_string(), env.to_string()));
    }
    if !e.context.iter().any(|(l, _)| l == "step") {
        e.context.insert(1, ("step".to_string(), step.to_string()));
    }
    if e.next.is_none() && e.kind == Kind::Unreachable {
        e.next = Some(crate::error::RECONNECT_ADVICE.into());
    }
    e
}

/// A step and its SQL, shown before it runs.
pub fn step_text(step: &crate::plan::Step) -> String {
    let mut out = format!("\n{}. {}", step.number, step.title);
    if let Some(c) = &step.before {
        out.push_str(&format!(
            "\n   check: {} (expect {})\n     {};",
            c.what,
            c.expect.describe(),
            c.sql
        ));
    }
    for sql in &step.statements {
        out.push_str(&format!("\n     {sql};"));
    }
    out
}

/// DDL must give up on a lock before the server's deadlock detection would run.
/// Refusals before any change: Citus-managed tables; a lock_timeout at or
/// above the server's deadlock_timeout.
pub fn check_lock_timeout(
    playbook: &Playbook,
    inspection: &crate::model::Inspection,
    env: &str,
) -> Result<()> {
    if !inspection.citus_tables.is_empty() {
        return Err(Error::precondition(format!(
            "{} managed by Citus (distributed or reference tables); fkctl does not change those",
            inspection.citus_tables.join(", ")
        ))
        .with("environment", env)
        .next("change a Citus table's foreign key with Citus's own DDL on the coordinator (see the README, Fleets: where this ends); nothing was changed"));
    }
    match crate::kinds::foreign_key::plan::impact::lock_timeout_problem(playbook, inspection) {
        None => Ok(()),
        Some(problem) => Err(Error::precondition(problem)
            .with("environment", env)
            .next("lower safety.lock_timeout in the playbook: a DDL waiting that long holds up every query on both tables")),
    }
}

/// The refusal for a live constraint that differs from the one intended,
/// field by field (`wanted` labels the intended side: "playbook", "to restore").
pub fn drift_refusal(
    message: String,
    env: &str,
    wanted: &str,
    differences: &[crate::plan::Drift],
) -> Error {
    let mut e = Error::precondition(message).with("environment", env);
    for d in differences {
        e = e.with(
            d.field,
            format!("{wanted} {}, database {}", d.playbook, d.database),
        );
    }
    e
}
