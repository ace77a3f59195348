use crate::report::OrphanReport;
use std::fmt::Write;

pub fn text(r: &OrphanReport) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} orphaned row(s) in {} referencing missing {} rows ({}, constraint {} {}, counted in {} ms)",
        super::count(r.orphan_count),
        r.table,
        r.references,
        r.environment,
        r.constraint,
        r.state.label(),
        r.elapsed_ms
    );
    let _ = writeln!(out, "query: {}", r.sql);
    if !r.sample.is_empty() {
        let _ = writeln!(out, "sample ({} row(s)):", r.sample.len());
        for s in &r.sample {
            let _ = writeln!(out, "  {}: {}", s.relation, s.row);
        }
    }
    out
}
