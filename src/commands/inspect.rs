use super::{connect, inspect_live, load_with_env, write_json, write_stdout};
use crate::cli::args::{Connection, Output};
use crate::error::{Error, Result};
use crate::kinds::foreign_key::plan::{drift, impact};
use crate::model::Lookup;
use crate::render;
use crate::report::{state_of, InspectReport};
use std::path::Path;

pub fn run(path: &Path, connection: &Connection, output: Output) -> Result<()> {
    let (playbook, environment) = load_with_env(path, &connection.env)?;
    let (target, mut client) = connect(&playbook, &environment, &connection.dsn)?;
    let inspection = inspect_live(&mut client, &playbook, &connection.env, "inspect")?;
    let live = inspection.live();
    let report = InspectReport {
        environment: &connection.env,
        connection: &target.description,
        server: &inspection.server,
        state: state_of(&inspection.constraint),
        playbook: &playbook.constraint,
        live,
        drift: live.map_or_else(Vec::new, |l| {
            drift::compare(&playbook.constraint, &l.definition)
        }),
        child: &inspection.child,
        parent: &inspection.parent,
        child_indexes: &inspection.child_indexes,
        referencing_child: &inspection.referencing_child,
        sessions: &inspection.sessions,
        impact: impact::analyse(&playbook, Some(&inspection)),
    };
    match output {
        Output::Json => write_json(&report)?,
        Output::Text => write_stdout(&render::inspect::text(&report))?,
    }
    if !report.drift.is_empty() {
        return Err(Error::precondition(format!(
            "the live constraint differs from the playbook in {} field(s): {}",
            report.drift.len(),
            report.drift.iter().map(|d| d.field).collect::<Vec<_>>().join(", ")
        ))
        .with("environment", connection.env.clone())
        .with("playbook", playbook.locate(playbook.positions.of_field(report.drift[0].field)))
        .next("make the playbook describe the constraint as it is (or find out who changed it) before dropping it"));
    }
    if let Lookup::NotAForeignKey { contype } = &inspection.constraint {
        return Err(Error::precondition(format!(
            "{} on {} is a constraint of type {contype:?}, not a foreign key",
            playbook.constraint.name, playbook.constraint.table
        ))
        .with("environment", connection.env.clone())
        .with("playbook", playbook.locate(playbook.positions.name)));
    }
    Ok(())
}
