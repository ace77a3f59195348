//! `fkctl lint`: playbooks checked offline. Each problem has a rule id (the
//! playbook field it concerns, or the kind of YAML mistake), a severity and
//! a position; `--output gitlab` writes them as a GitLab Code Quality report
//! so that a merge request shows them on the lines they concern.

use super::{write_json, write_stdout};
use crate::cli::args::LintOutput;
use crate::error::{Error, Result};
use crate::playbook::{self, PlaybookError};
use serde::Serialize;
use std::path::PathBuf;

#[derive(Serialize)]
struct LintResult {
    file: String,
    ok: bool,
    problems: Vec<Problem>,
}

#[derive(Serialize)]
struct Problem {
    /// Stable id: the field (`loose.batch_size`, `environments.dsn_env`) or
    /// the kind of YAML mistake (`unknown-field`, `yaml-syntax`, ...).
    rule: String,
    severity: &'static str,
    /// The file the problem is in (a targets file may be another than the playbook).
    file: String,
    line: Option<u64>,
    column: Option<u64>,
    message: String,
}

/// The rule a message belongs to: its field prefix (`field: ...`), else the
/// kind of YAML mistake it describes.
fn rule_of(message: &str) -> String {
    let kinds = [
        ("unknown field", "unknown-field"),
        ("missing field", "missing-field"),
        ("duplicate mapping key", "duplicate-key"),
        ("appears twice", "duplicate-name"),
        ("not valid UTF-8", "encoding"),
        ("cannot read", "unreadable"),
    ];
    if let Some((_, rule)) = kinds.iter().find(|(k, _)| message.contains(k)) {
        return rule.to_string();
    }
    match message.split_once(": ") {
        Some((field, _))
            if !field.is_empty()
                && field
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "._".contains(c)) =>
        {
            field.to_string()
        }
        _ => "yaml-syntax".to_string(),
    }
}

fn problem(e: &PlaybookError) -> Problem {
    Problem {
        rule: rule_of(&e.message),
        severity: "error",
        file: e.path.display().to_string(),
        line: e.position.map(|p| p.line),
        column: e.position.map(|p| p.column),
        message: e.message.clone(),
    }
}

/// GitLab Code Quality: an array of issues, each with a fingerprint that
/// stays the same while the problem does (so GitLab can tell new from fixed).
fn code_quality(results: &[LintResult]) -> serde_json::Value {
    let issues: Vec<serde_json::Value> = results
        .iter()
        .flat_map(|r| &r.problems)
        .map(|p| {
            serde_json::json!({
                "description": p.message,
                "check_name": format!("fkctl/{}", p.rule),
                "fingerprint": format!("{:016x}", fingerprint(&format!("{}|{}|{}", p.file, p.rule, p.message))),
                "severity": "blocker",
                "location": { "path": p.file, "lines": { "begin": p.line.unwrap_or(1) } },
            })
        })
        .collect();
    serde_json::Value::Array(issues)
}

/// FNV-1a, 64 bits: stable across runs and fkctl versions, unlike std's hasher.
fn fingerprint(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// Checks every file, reports each, and fails (exit 2) if any is bad.
pub fn run(paths: &[PathBuf], output: LintOutput) -> Result<()> {
    let results: Vec<LintResult> = paths
        .iter()
        .map(|path| {
            let problems = match playbook::load(path) {
                Ok(_) => Vec::new(),
                Err(e) => vec![problem(&e)],
            };
            LintResult {
                file: path.display().to_string(),
                ok: problems.is_empty(),
                problems,
            }
        })
        .collect();
    let failed = results.iter().filter(|r| !r.ok).count();
    match output {
        LintOutput::Json => write_json(&serde_json::json!({ "files": results, "failed": failed }))?,
        LintOutput::Gitlab => write_stdout(&format!(
            "{}\n",
            serde_json::to_string_pretty(&code_quality(&results))
                .map_err(|e| Error::internal(format!("cannot encode JSON: {e}")))?
        ))?,
        LintOutput::Text => {
            let mut text = String::new();
            for r in &results {
                if r.ok {
                    text.push_str(&format!("ok: {}\n", r.file));
                }
                for p in &r.problems {
                    match (p.line, p.column) {
                        (Some(l), Some(c)) => eprintln!("error: {}:{l}:{c}: {}", p.file, p.message),
                        _ => eprintln!("error: {}: {}", p.file, p.message),
                    }
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

#[cfg(test)]
mod tests {
    use super::rule_of;

    #[test]
    fn rules_come_from_the_field_or_the_kind_of_mistake() {
        assert_eq!(
            rule_of("loose.batch_size: must be between 1 and 100000"),
            "loose.batch_size"
        );
        assert_eq!(
            rule_of("unknown field `rollbak`, expected one of ..."),
            "unknown-field"
        );
        assert_eq!(rule_of("did not find expected node content"), "yaml-syntax");
        assert_eq!(
            rule_of("target \"a\" appears twice in this environment"),
            "duplicate-name"
        );
    }
}
