//! Every malformed playbook in tests/malformed gives exit code 2 and an
//! error naming file:line:column, with no panic. Expected positions were
//! checked by hand against each file.

mod common;

use common::{fkctl, stderr};

const CORPUS: &[(&str, u64, u64, &str)] = &[
    ("01-unknown-top-level-key", 14, 1, "unknown field `rollbak`"),
    (
        "02-unknown-constraint-key",
        9,
        3,
        "unknown field `on_delet`",
    ),
    ("03-duplicate-key", 8, 3, "duplicate mapping key: table"),
    ("04-retries-not-a-number", 13, 70, "expected a whole number"),
    ("05-columns-not-a-list", 7, 12, "expected a list"),
    ("06-missing-constraint-name", 8, 3, "missing field `name`"),
    (
        "07-missing-environments",
        10,
        1,
        "missing field `environments`",
    ),
    ("08-duration-without-unit", 13, 25, "has no unit"),
    (
        "09-duration-unknown-unit",
        13,
        25,
        "unknown unit \"parsecs\"",
    ),
    ("10-zero-statement-timeout", 13, 51, "0 means no timeout"),
    ("11-identifier-too-long", 5, 9, "64 bytes long"),
    (
        "12-unterminated-quoted-name",
        6,
        10,
        "unterminated quoted name",
    ),
    (
        "13-three-part-table-name",
        6,
        10,
        "found 3 dot-separated parts",
    ),
    ("14-column-count-mismatch", 8, 52, "must pair up one to one"),
    ("15-unknown-on-delete", 9, 14, "unknown action \"destroy\""),
    ("16-match-partial", 10, 10, "MATCH PARTIAL"),
    (
        "17-initially-deferred-not-deferrable",
        10,
        23,
        "deferrable: true",
    ),
    (
        "18-duplicate-environment",
        12,
        13,
        "\"staging\" appears twice",
    ),
    (
        "19-dsn-instead-of-variable",
        11,
        31,
        "not an environment variable name",
    ),
    (
        "20-unsupported-version",
        1,
        10,
        "version: 2 is not supported",
    ),
    ("21-empty-column-list", 7, 12, "at least one column"),
    (
        "22-duplicate-column",
        7,
        27,
        "column chat_name_id is listed twice",
    ),
    ("23-yaml-syntax-error", 8, 13, "':'"),
    (
        "24-zero-batch-size",
        14,
        50,
        "batch_size: must be between 1 and 1000000",
    ),
    (
        "25-unknown-orphan-policy",
        14,
        22,
        "unknown policy \"delete\"",
    ),
    ("26-empty-file", 1, 1, "empty"),
    ("27-top-level-list", 1, 1, "expected a mapping"),
    ("28-lock-timeout-over-a-minute", 13, 25, "over a minute"),
    (
        "29-zero-length-quoted-name",
        5,
        9,
        "zero-length quoted name",
    ),
    (
        "30-name-starting-with-digit",
        5,
        9,
        "cannot start an unquoted name",
    ),
    ("31-negative-retries", 13, 70, "expected a whole number"),
    ("32-no-environments", 10, 15, "at least one environment"),
    ("33-not-utf8", 3, 14, "not valid UTF-8"),
    (
        "34-version-quoted",
        1,
        10,
        "version must be a number, not the text \"1\"",
    ),
    ("35-two-documents", 16, 1, "a playbook is one YAML document"),
    ("36-nested-too-deep", 2, 263, "too deeply nested"),
    (
        "37-loose-batch-size-zero",
        13,
        22,
        "loose.batch_size: must be between",
    ),
    ("38-loose-unknown-key", 15, 3, "unknown field `max_runtim`"),
    (
        "39-unique-with-references",
        9,
        15,
        "a unique constraint has no references",
    ),
    (
        "40-unique-with-on-delete",
        9,
        14,
        "a unique constraint has no on_delete",
    ),
    (
        "41-unique-with-match",
        9,
        10,
        "a unique constraint has no match",
    ),
    (
        "42-unknown-duplicate-policy",
        11,
        25,
        "unknown policy \"merge\"; expected archive-delete or abort",
    ),
    (
        "43-unique-without-keep",
        11,
        11,
        "rollback.keep: say which row",
    ),
    (
        "44-keep-column-twice",
        11,
        36,
        "order_by: column id is listed twice",
    ),
    (
        "45-unknown-constraint-kind",
        5,
        9,
        "unknown kind \"primary_key\"",
    ),
    (
        "46-duplicates-on-a-foreign-key",
        11,
        25,
        "only a unique constraint (kind: unique) has duplicates",
    ),
    (
        "47-orphans-on-a-unique",
        11,
        22,
        "a unique constraint has no orphans",
    ),
    (
        "48-foreign-key-without-references",
        5,
        3,
        "missing field `references`",
    ),
    (
        "49-rollback-vacuum-unknown",
        15,
        11,
        "rollback.vacuum: unknown value \"sometimes\"",
    ),
];

/// A connection string written where a variable name belongs is not echoed:
/// it may carry a password.
#[test]
fn a_connection_string_in_the_wrong_place_is_not_echoed() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/malformed");
    let out = fkctl(&["lint", &format!("{dir}/19-dsn-instead-of-variable.yml")]);
    let err = stderr(&out);
    assert!(
        err.contains("19-dsn-instead-of-variable.yml:11:31"),
        "{err}"
    );
    assert!(
        !err.contains("host=db1"),
        "the value written there is shown: {err}"
    );
}

/// The YAML library's own words (its function and type names) never reach the user.
#[test]
fn no_library_internals_in_messages() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/malformed");
    for (name, ..) in CORPUS {
        let out = fkctl(&["lint", &format!("{dir}/{name}.yml")]);
        let err = stderr(&out);
        for internal in ["from_str", "Nodes {", "budget", "Options", "serde"] {
            assert!(!err.contains(internal), "{name}: {err}");
        }
    }
}

#[test]
fn every_malformed_playbook_is_refused_with_its_position() {
    assert!(CORPUS.len() >= 20);
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/malformed");
    let on_disk = std::fs::read_dir(dir).map(|d| d.count()).unwrap_or(0);
    assert_eq!(
        on_disk,
        CORPUS.len(),
        "every file in tests/malformed has an expectation"
    );
    for (name, line, column, fragment) in CORPUS {
        let path = format!("{dir}/{name}.yml");
        let out = fkctl(&["lint", &path]);
        let err = stderr(&out);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{name}: exit code; stderr:\n{err}"
        );
        let at = format!("{path}:{line}:{column}: ");
        assert!(
            err.contains(&at),
            "{name}: expected position {at} in:\n{err}"
        );
        assert!(
            err.contains(fragment),
            "{name}: expected {fragment:?} in:\n{err}"
        );
        assert!(
            !err.contains("panicked") && !err.contains("internal error"),
            "{name}: {err}"
        );
    }
}

#[test]
fn commands_that_read_a_playbook_refuse_it_the_same_way() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/malformed/15-unknown-on-delete.yml"
    );
    for args in [
        vec!["plan", path],
        vec!["inspect", path, "--env", "staging"],
        vec!["orphans", path, "--env", "staging"],
    ] {
        let out = fkctl(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(
            stderr(&out).contains(":9:14: "),
            "{args:?}: {}",
            stderr(&out)
        );
    }
}

#[test]
fn shipped_playbooks_all_pass_lint() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/playbooks");
    let mut paths: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(|e| e.ok().map(|e| e.path().display().to_string()))
                .collect()
        })
        .unwrap_or_default();
    paths.sort();
    assert!(paths.len() >= 4);
    let mut args = vec!["lint"];
    args.extend(paths.iter().map(String::as_str));
    let out = fkctl(&args);
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn a_missing_file_is_a_usage_error() {
    let out = fkctl(&["lint", "/nonexistent/playbook.yml"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("/nonexistent/playbook.yml: cannot read the playbook"));
}

/// `lint --output json`: rule ids, severities and positions; `--output
/// gitlab`: a Code Quality report whose fingerprints do not change between runs.
#[test]
fn lint_reports_rules_as_json_and_as_gitlab_code_quality() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/malformed");
    let bad = format!("{dir}/37-loose-batch-size-zero.yml");
    let good = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/playbooks/remove-fk-ci-pipeline-chat-data-chat-names.yml"
    );
    let out = fkctl(&["lint", &bad, good, "--output", "json"]);
    assert_eq!(out.status.code(), Some(2));
    let doc: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(doc["schema_version"], 1);
    assert_eq!(doc["failed"], 1);
    let problem = &doc["files"][0]["problems"][0];
    assert_eq!(problem["rule"], "loose.batch_size");
    assert_eq!(problem["severity"], "error");
    assert_eq!(
        (problem["line"].as_u64(), problem["column"].as_u64()),
        (Some(13), Some(22))
    );
    assert_eq!(doc["files"][1]["ok"], true);

    let report = |path: &str| -> serde_json::Value {
        let out = fkctl(&["lint", path, good, "--output", "gitlab"]);
        assert_eq!(out.status.code(), Some(2));
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}"))
    };
    let first = report(&bad);
    let issues = first
        .as_array()
        .unwrap_or_else(|| panic!("not an array: {first}"));
    assert_eq!(issues.len(), 1);
    assert_eq!(issues[0]["check_name"], "fkctl/loose.batch_size");
    assert_eq!(issues[0]["location"]["path"], bad.as_str());
    assert_eq!(issues[0]["location"]["lines"]["begin"], 13);
    assert_eq!(issues[0]["severity"], "blocker");
    assert_eq!(report(&bad)[0]["fingerprint"], issues[0]["fingerprint"]);
}
