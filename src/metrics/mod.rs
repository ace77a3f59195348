//! Prometheus metrics in the text exposition format (0.0.4), the format
//! node_exporter's textfile collector reads and `promtool check metrics`
//! lints. Written here rather than with prometheus-client, whose OpenMetrics
//! output names a counter's family without `_total` in its TYPE line, which
//! promtool and the textfile collector read as a different metric.

pub mod serve;

use crate::error::{Error, Result};
use crate::model::LooseState;
use std::fmt::Write;
use std::path::Path;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricType {
    Counter,
    Gauge,
}

/// One metric family: name, help, type, and its samples (labels, value).
#[derive(Debug, Clone)]
pub struct Family {
    pub name: &'static str,
    pub help: &'static str,
    pub kind: MetricType,
    pub samples: Vec<(Vec<(&'static str, String)>, f64)>,
}

fn escape_label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn number(value: f64) -> String {
    if value.is_nan() {
        "NaN".to_string()
    } else if value.is_infinite() {
        if value > 0.0 { "+Inf" } else { "-Inf" }.to_string()
    } else if value.fract() == 0.0 && value.abs() < 1e15 {
        format!("{}", value as i64)
    } else {
        format!("{value}")
    }
}

/// The families as exposition text.
pub fn encode(families: &[Family]) -> String {
    let mut out = String::new();
    for family in families {
        let kind = match family.kind {
            MetricType::Counter => "counter",
            MetricType::Gauge => "gauge",
        };
        let _ = writeln!(out, "# HELP {} {}", family.name, family.help);
        let _ = writeln!(out, "# TYPE {} {kind}", family.name);
        for (labels, value) in &family.samples {
            let labels = labels
                .iter()
                .map(|(k, v)| format!("{k}=\"{}\"", escape_label(v)))
                .collect::<Vec<_>>()
                .join(",");
            let _ = writeln!(out, "{}{{{labels}}} {}", family.name, number(*value));
        }
    }
    out
}

fn family(
    name: &'static str,
    help: &'static str,
    kind: MetricType,
    labels: &[(&'static str, String)],
    value: f64,
) -> Family {
    Family {
        name,
        help,
        kind,
        samples: vec![(labels.to_vec(), value)],
    }
}

// Long because it lists the loose replacement's metrics, one family each, in the order the README documents them.
/// The loose replacement's metrics for one change in one environment.
pub fn loose_families(change: &str, env: &str, state: &LooseState) -> Vec<Family> {
    use MetricType::{Counter, Gauge};
    let labels = [("change", change.to_string()), ("env", env.to_string())];
    let c = state.counters.clone().unwrap_or_default();
    let mut out = vec![
        family(
            "fkctl_loose_installed",
            "1 when every capture trigger of the loose replacement is on the parent and the queue exists.",
            Gauge,
            &labels,
            if state.fully_installed() { 1.0 } else { 0.0 },
        ),
        family(
            "fkctl_loose_pending_deletions",
            "Queued parent keys whose child rows the cleanup has not handled yet.",
            Gauge,
            &labels,
            state.pending as f64,
        ),
        family(
            "fkctl_loose_violating_child_rows",
            "Child rows still referencing queued keys the cleanup must not touch (ON DELETE RESTRICT / NO ACTION).",
            Gauge,
            &labels,
            state.violating_child_rows as f64,
        ),
        family(
            "fkctl_loose_processed_deletions_total",
            "Queued parent keys the cleanup has handled.",
            Counter,
            &labels,
            c.processed_deletions as f64,
        ),
        family(
            "fkctl_loose_child_rows_deleted_total",
            "Child rows the cleanup deleted (each archived).",
            Counter,
            &labels,
            c.child_rows_deleted as f64,
        ),
        family(
            "fkctl_loose_child_rows_nullified_total",
            "Child rows whose key the cleanup set to NULL or its default (each archived).",
            Counter,
            &labels,
            c.child_rows_nullified as f64,
        ),
        family(
            "fkctl_loose_rescheduled_total",
            "Queued keys put back with a back-off after failing on their own.",
            Counter,
            &labels,
            c.rescheduled as f64,
        ),
        family(
            "fkctl_loose_runs_total",
            "Cleanup runs.",
            Counter,
            &labels,
            c.runs as f64,
        ),
    ];
    if let Some(t) = c.last_success_epoch_s {
        out.push(family(
            "fkctl_loose_last_success_timestamp_seconds",
            "When the last cleanup run without an error ended (Unix time).",
            Gauge,
            &labels,
            t,
        ));
    }
    if let Some(d) = c.last_run_seconds {
        out.push(family(
            "fkctl_loose_run_duration_seconds",
            "How long the last cleanup run took.",
            Gauge,
            &labels,
            d,
        ));
    }
    out
}

/// `fkctl_orphan_rows`: the census's result.
pub fn orphan_families(change: &str, env: &str, constraint: &str, orphans: i64) -> Vec<Family> {
    vec![family(
        "fkctl_orphan_rows",
        "Child rows that reference no parent row (rows VALIDATE would reject), as last counted.",
        MetricType::Gauge,
        &[
            ("change", change.to_string()),
            ("env", env.to_string()),
            ("constraint", constraint.to_string()),
        ],
        orphans as f64,
    )]
}

/// Writes `text` to `path` atomically: a temporary file beside it, then a
/// rename, so that a collector never reads half a file.
pub fn write_file(path: &Path, text: &str) -> Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or_else(|| Path::new("."));
    let name = path.file_name().ok_or_else(|| {
        Error::usage(format!(
            "--metrics-file {}: not a file name",
            path.display()
        ))
    })?;
    let temp = dir.join(format!(
        ".{}.{}.tmp",
        name.to_string_lossy(),
        std::process::id()
    ));
    let fail = |e: std::io::Error, what: &str| {
        Error::usage(format!(
            "--metrics-file {}: cannot {what}: {e}",
            path.display()
        ))
    };
    std::fs::write(&temp, text).map_err(|e| fail(e, "write the temporary file"))?;
    std::fs::rename(&temp, path).map_err(|e| {
        let _ = std::fs::remove_file(&temp);
        fail(e, "rename the temporary file over it")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped_and_numbers_plain() {
        let f = family(
            "fkctl_x_total",
            "X.",
            MetricType::Counter,
            &[("change", "a\"b\\c\nd".to_string())],
            3.0,
        );
        let text = encode(&[f]);
        assert!(
            text.contains("fkctl_x_total{change=\"a\\\"b\\\\c\\nd\"} 3\n"),
            "{text}"
        );
        assert_eq!(number(0.25), "0.25");
        assert_eq!(number(f64::NAN), "NaN");
    }

    #[test]
    fn counters_end_in_total_and_every_family_has_help_and_type() {
        let state = LooseState::default();
        for f in loose_families("c", "staging", &state) {
            assert_eq!(
                f.kind == MetricType::Counter,
                f.name.ends_with("_total"),
                "{}",
                f.name
            );
            assert!(!f.help.is_empty());
        }
    }
}
