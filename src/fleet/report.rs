//! The fleet's outcome as one table (text) or one JSON document with an
//! object per target.

use super::TargetRun;
use std::fmt::Write;

/// What one column shows for a target, read from its JSON document.
pub type Column<'a> = (&'a str, &'a dyn Fn(&serde_json::Value) -> String);

/// A value of the document at a JSON pointer, as text ("" when absent).
pub fn field(document: &serde_json::Value, pointer: &str) -> String {
    match document.pointer(pointer) {
        None | Some(serde_json::Value::Null) => String::new(),
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(v) => v.to_string(),
    }
}

fn result(run: &TargetRun) -> String {
    match (run.started, run.exit_code) {
        (false, _) => "not started".to_string(),
        (true, Some(0)) => "ok".to_string(),
        (true, Some(c)) => format!("FAILED, exit {c}"),
        (true, None) => "FAILED".to_string(),
    }
}

/// The error a failed target printed: its `error:` line, else its last line.
fn error_line(run: &TargetRun) -> String {
    run.last_words
        .iter()
        .find(|l| l.starts_with("error:"))
        .or_else(|| run.last_words.last())
        .cloned()
        .unwrap_or_default()
}

/// A plain-text table: target, result, seconds, the columns given, and
/// below it each failed target's error.
pub fn table(title: &str, runs: &[TargetRun], columns: &[Column<'_>]) -> String {
    let mut header = vec![
        "target".to_string(),
        "result".to_string(),
        "seconds".to_string(),
    ];
    header.extend(columns.iter().map(|(name, _)| name.to_string()));
    let mut rows = vec![header];
    for run in runs {
        let mut row = vec![
            run.target.clone(),
            result(run),
            if run.started {
                format!("{:.1}", run.seconds)
            } else {
                String::new()
            },
        ];
        for (_, value) in columns {
            row.push(run.document.as_ref().map(value).unwrap_or_default());
        }
        rows.push(row);
    }
    let widths: Vec<usize> = (0..rows[0].len())
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = format!("\n{title}\n");
    for row in &rows {
        let line = row
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect::<Vec<_>>()
            .join("  ");
        let _ = writeln!(out, "  {}", line.trim_end());
    }
    for run in runs.iter().filter(|r| r.started && !r.ok()) {
        let _ = writeln!(out, "\n  {}: {}", run.target, error_line(run));
    }
    out
}

/// One JSON document: every target's result and its own document.
pub fn json(command: &str, environment: &str, runs: &[TargetRun]) -> serde_json::Value {
    serde_json::json!({
        "command": command,
        "environment": environment,
        "targets": runs.iter().map(|r| serde_json::json!({
            "target": r.target,
            "started": r.started,
            "exit_code": r.exit_code,
            "seconds": r.seconds,
            "result": r.document,
            "error": if r.started && !r.ok() { Some(error_line(r)) } else { None },
        })).collect::<Vec<_>>(),
    })
}
