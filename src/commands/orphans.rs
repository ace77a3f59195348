use super::{bounded, connect, load_with_env, write_json, write_stdout};
use crate::census;
use crate::cli::args::{Connection, Output};
use crate::error::Result;
use crate::execute::lock_wait::Watched;
use crate::render;
use crate::report::OrphanReport;
use std::path::Path;
use std::time::Instant;

pub fn run(
    path: &Path,
    connection: &Connection,
    sample: u32,
    metrics_file: Option<&Path>,
    output: Output,
) -> Result<()> {
    let env = connection.env.as_str();
    let (playbook, environment) = load_with_env(path, env)?;
    if environment.fleet.is_some() {
        if metrics_file.is_some() {
            return Err(crate::error::Error::usage(format!("--metrics-file: {env} is a fleet; write one file per database with --env {env}/TARGET")));
        }
        let count = |d: &serde_json::Value| crate::fleet::report::field(d, "/orphan_count");
        let state = |d: &serde_json::Value| crate::fleet::report::field(d, "/state");
        let columns: [crate::fleet::report::Column<'_>; 2] =
            [("constraint", &state), ("orphans", &count)];
        return super::fleet::read(
            "orphans",
            path,
            &environment,
            &connection.dsn,
            output == Output::Json,
            &columns,
        );
    }
    let (_, mut client) = connect(&playbook, &environment, &connection.dsn)?;
    let inspection = super::inspect_census(&mut client, &playbook, env, "read the live catalog")?;
    let query = &inspection.orphan_query;
    let started = Instant::now();
    let bar = crate::tui::spinner(format!(
        "counting orphans in {} ({env})",
        playbook.constraint.table
    ));
    let watched = Watched::Relations(&inspection.watched);
    let counted = bounded(&mut client, &playbook, env, "count orphans", watched, |c| {
        census::count(c, query)
    });
    bar.finish_and_clear();
    let orphan_count = counted?;
    if let Some(file) = metrics_file {
        let families = crate::metrics::orphan_families(
            &playbook.change,
            env,
            &playbook.constraint.name.display(),
            orphan_count,
        );
        crate::metrics::write_file(file, &crate::metrics::encode(&families))?;
    }
    let elapsed_ms = started.elapsed().as_millis();
    let rows = if sample > 0 && orphan_count > 0 {
        bounded(
            &mut client,
            &playbook,
            env,
            "sample orphans",
            watched,
            |c| census::sample(c, query, i64::from(sample)),
        )?
    } else {
        Vec::new()
    };
    let report = OrphanReport {
        environment: env.to_string(),
        constraint: playbook.constraint.name.display(),
        table: playbook.constraint.table.display(),
        references: playbook.constraint.ref_table.display(),
        state: crate::report::state_of(&inspection.constraint),
        orphan_count,
        elapsed_ms,
        sql: query.count_sql(),
        sample: rows,
    };
    match output {
        Output::Json => write_json(&report),
        Output::Text => write_stdout(&render::orphans::text(&report)),
    }
}
