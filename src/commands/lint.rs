use super::{write_json, write_stdout};
use crate::cli::args::Output;
use crate::error::{Error, Result};
use crate::playbook;
use serde::Serialize;
use std::path::PathBuf;

#[derive(Serialize)]
struct LintResult {
    file: String,
    ok: bool,
    error: Option<String>,
    line: Option<u64>,
    column: Option<u64>,
}

/// Checks every file, reports each, and fails (exit 2) if any is bad.
pub fn run(paths: &[PathBuf], output: Output) -> Result<()> {
    let mut results = Vec::new();
    for path in paths {
        results.push(match playbook::load(path) {
            Ok(_) => LintResult {
                file: path.display().to_string(),
                ok: true,
                error: None,
                line: None,
                column: None,
            },
            Err(e) => LintResult {
                file: path.display().to_string(),
                ok: false,
                line: e.position.map(|p| p.line),
                column: e.position.map(|p| p.column),
                error: Some(e.to_string()),
            },
        });
    }
    let failed = results.iter().filter(|r| !r.ok).count();
    match output {
        Output::Json => write_json(&serde_json::json!({ "files": results, "failed": failed }))?,
        Output::Text => {
            let mut text = String::new();
            for r in &results {
                match &r.error {
                    None => text.push_str(&format!("ok: {}\n", r.file)),
                    Some(e) => eprintln!("error: {e}"),
                }
            }
            write_stdout(&text)?;
        }
    }
    if failed > 0 {
        return Err(Error::usage(format!(
            "{failed} of {} playbook(s) failed the check",
            results.len()
        )));
    }
    Ok(())
}
