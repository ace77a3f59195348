use super::{connect, inspect_live, load_with_env, write_json, write_stdout};
use crate::cli::args::Output;
use crate::error::Result;
use crate::plan::{self, Observed, Operation};
use crate::playbook;
use crate::render;
use std::path::Path;

pub fn run(
    path: &Path,
    env: Option<&str>,
    dsn: &[(String, String)],
    rollback: bool,
    output: Output,
) -> Result<()> {
    let operation = if rollback {
        Operation::Rollback
    } else {
        Operation::Drop
    };
    let plan = match env {
        None => {
            let playbook = playbook::load(path)?;
            super::check_overrides(&playbook, dsn)?;
            if !dsn.is_empty() {
                return Err(crate::error::Error::usage(
                    "--dsn without --env: a plan from the playbook alone connects nowhere",
                )
                .next("add --env NAME to plan from that environment's live catalog"));
            }
            plan::build(operation, &playbook, None)
        }
        Some(env) => {
            let (playbook, environment) = load_with_env(path, env)?;
            let (_, mut client) = connect(&playbook, &environment, dsn)?;
            let inspection = inspect_live(&mut client, &playbook, env, "read the live catalog")?;
            let observed = Observed {
                environment: env,
                inspection: &inspection,
            };
            plan::build(operation, &playbook, Some(&observed))
        }
    };
    match output {
        Output::Json => write_json(&plan),
        Output::Text => write_stdout(&render::plan::text(&plan)),
    }
}
