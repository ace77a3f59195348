//! The change request: snapshots of the default template, the SQL it shows
//! being exactly fkctl's plan, custom and broken templates, and JSON.

mod common;

use common::staged::Setup;
use common::*;
use std::collections::BTreeSet;

const SEED: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/playbooks/remove-fk-ci-pipeline-chat-data-chat-names.yml"
);

/// Every statement inside the ```sql blocks of a markdown document, in
/// order, but those of the by-hand psql scripts (checked on their own).
fn sql_statements(markdown: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut in_sql = false;
    let mut first = false;
    for line in markdown.lines() {
        if line.starts_with("```") {
            in_sql = line.ends_with("sql");
            first = in_sql;
            continue;
        }
        if first && line.starts_with("\\set ON_ERROR_STOP") {
            in_sql = false;
        }
        first = false;
        if in_sql
            && !line.starts_with("--")
            && line != "BEGIN;"
            && line != "COMMIT;"
            && !line.is_empty()
        {
            out.push(line.strip_suffix(';').unwrap_or(line).to_string());
        }
    }
    out
}

/// Every statement and check query of a `fkctl plan --output json` document.
fn plan_statements(plan: &serde_json::Value) -> BTreeSet<String> {
    let mut set = BTreeSet::new();
    for step in plan["steps"].as_array().cloned().unwrap_or_default() {
        for s in step["statements"].as_array().cloned().unwrap_or_default() {
            set.insert(s.as_str().unwrap_or_default().to_string());
        }
        for key in ["before", "after"] {
            if let Some(sql) = step[key]["sql"].as_str() {
                set.insert(sql.to_string());
            }
        }
    }
    set
}

fn filters() -> Vec<(&'static str, &'static str)> {
    vec![
        (r"\d{8}T\d{6}\.\d{3}Z-[a-z]+-[0-9a-f]{4}", "[run id]"),
        (r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z", "[time]"),
        (r" in \d+ ms", " in [n] ms"),
        (r"- PostgreSQL \d+[^;]*;", "- PostgreSQL [version];"),
        (r"PostgreSQL \d+\.\d+( \([^)]*\))?", "PostgreSQL [version]"),
        (r"by [^ ]+@[^ ]+ at", "by [operator] at"),
        (r"by [^ ]+@[^ ]+ \(run", "by [operator] (run"),
        (r"took \d+ ms", "took [n] ms"),
        (r"whole run \d+ ms", "whole run [n] ms"),
        (r"\d+(\.\d+)? (B|kB|MB|GB)\b", "[size]"),
        (r"about \d+ (s|min)\b", "about [n] s"),
        (r"(/[^ `/]+)+/playbook\.yml", "[dir]/playbook.yml"),
        // Statistics the server keeps on its own schedule.
        (
            r"Rows deleted from (`[^`]+`): .*",
            "Rows deleted from $1: [deletes]",
        ),
        (
            r"at the measured delete rate of .*",
            "at the measured delete rate: [deletes]",
        ),
    ]
}

#[test]
fn the_default_template_offline() {
    let out = fkctl(&["change-request", SEED]);
    assert!(out.status.success(), "{}", stderr(&out));
    let body = stdout(&out).replace(env!("CARGO_MANIFEST_DIR"), "[repo]");
    insta::assert_snapshot!("seed_offline", body);
}

/// A UNIQUE constraint's change request, offline (the shipped example).
#[test]
fn a_unique_constraint_offline() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/playbooks/unique-contacts-tenant-external-ref.yml"
    );
    let out = fkctl(&["change-request", path]);
    assert!(out.status.success(), "{}", stderr(&out));
    let body = stdout(&out).replace(env!("CARGO_MANIFEST_DIR"), "[repo]");
    assert!(
        body.contains("UNIQUE NULLS NOT DISTINCT (tenant_id, external_ref)"),
        "{body}"
    );
    insta::assert_snapshot!("unique_offline", body);
}

/// A fleet environment, offline: its rollout (canary, then waves) in the
/// change steps.
#[test]
fn a_fleet_offline() {
    let dir = TempDir::new("cr_fleet");
    let text = std::fs::read_to_string(SEED)
        .unwrap_or_else(|e| panic!("{e}"))
        .replace(
            "  - { name: production, dsn_env: FKCTL_PRODUCTION_DSN, protected: true }",
            "  - name: production\n    protected: true\n    rollout: { canary: 1, concurrency: 4 }\n    targets:\n      - { name: shard-01, dsn_env: SHARD_01_DSN }\n      - { name: shard-02, dsn_env: SHARD_02_DSN }\n      - { name: shard-03, service: shard03 }",
        );
    assert!(
        text.contains("shard-03"),
        "the seed playbook's production line changed"
    );
    let path = dir.write("fleet.yml", &text);
    let out = fkctl(&["change-request", &path.display().to_string()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let raw = dir.0.display().to_string();
    // The path appears as written and escaped for markdown.
    let body = stdout(&out)
        .replace(&raw, "[dir]")
        .replace(&raw.replace('_', "\\_"), "[dir]");
    assert!(
        body.contains("production is a fleet of 3 databases"),
        "{body}"
    );
    insta::assert_snapshot!("fleet_offline", body);
}

#[test]
fn the_default_template_with_live_evidence_after_a_staging_drop() {
    let s = Setup::new("cr_live", "{}");
    let out = s.drop(&["--env", "staging", "--yes"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let path = s.playbook.display().to_string();
    let out = s.run(&[
        "change-request",
        &path,
        "--env",
        "staging",
        "--env",
        "production",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let body = stdout(&out);
    assert!(body.contains("### Live evidence from staging"));
    assert!(
        body.contains("drop-constraint: ok in"),
        "staging's measured run is shown"
    );
    assert!(body.contains("Orphaned rows now: **0**"));
    insta::with_settings!({ filters => filters() }, {
        insta::assert_snapshot!("seed_live", body);
    });
}

/// Every SQL statement in the request is byte for byte a statement of
/// `fkctl plan` (drop per environment, and rollback), and none is missing.
#[test]
fn the_sql_in_the_request_is_the_sql_fkctl_runs() {
    let s = Setup::new("cr_sql", "{ lock_timeout: 250ms }");
    let path = s.playbook.display().to_string();
    let request = s.run(&["change-request", &path, "--env", "production"]);
    assert!(request.status.success(), "{}", stderr(&request));
    let shown = sql_statements(&stdout(&request));
    assert!(shown.len() > 15, "{shown:?}");
    let plan = |args: &[&str]| -> serde_json::Value {
        let out = s.run(args);
        assert!(out.status.success(), "{}", stderr(&out));
        serde_json::from_slice(&out.stdout).unwrap_or_default()
    };
    let mut planned = plan_statements(&plan(&["plan", &path, "--output", "json"]));
    planned.extend(plan_statements(&plan(&[
        "plan",
        &path,
        "--env",
        "production",
        "--output",
        "json",
    ])));
    planned.extend(plan_statements(&plan(&[
        "plan",
        &path,
        "--env",
        "production",
        "--rollback",
        "--output",
        "json",
    ])));
    // staging was not read: its rollback is planned from the playbook.
    planned.extend(plan_statements(&plan(&[
        "plan",
        &path,
        "--rollback",
        "--output",
        "json",
    ])));
    for statement in &shown {
        assert!(
            planned.contains(statement),
            "not a statement of fkctl plan:\n{statement}"
        );
    }
    let shown: BTreeSet<String> = shown.into_iter().collect();
    for statement in &planned {
        assert!(
            shown.contains(statement),
            "missing from the request:\n{statement}"
        );
    }
}

#[test]
fn a_custom_template_renders_and_a_broken_one_names_its_line() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/templates");
    let out = fkctl(&[
        "change-request",
        SEED,
        "--template",
        &format!("{dir}/custom.md.j2"),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let body = stdout(&out);
    assert!(
        body.contains("Criticality C1; rollback with `fkctl rollback"),
        "{body}"
    );
    assert!(body.contains("- production: 4 steps"), "{body}");
    let out = fkctl(&[
        "change-request",
        SEED,
        "--template",
        &format!("{dir}/broken.md.j2"),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("broken.md.j2:3: template error"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn the_playbook_can_name_the_template_next_to_it() {
    let dir = TempDir::new("cr_key");
    let text = std::fs::read_to_string(SEED).unwrap_or_default()
        + "change_request: { template: team.md.j2 }\n";
    let path = dir.write("p.yml", &text);
    dir.write("team.md.j2", "Team template for {{ change }}\n");
    let out = fkctl(&["change-request", &path.display().to_string()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        "Team template for remove-fk-ci-pipeline-chat-data-chat-names\n"
    );
}

#[test]
fn json_format_and_out_file() {
    let dir = TempDir::new("cr_json");
    let file = dir.0.join("request.json");
    let out = fkctl(&[
        "change-request",
        SEED,
        "--output",
        "json",
        "--out",
        &file.display().to_string(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    // The old flag name still works.
    let old = fkctl(&["change-request", SEED, "--format", "json"]);
    assert!(old.status.success(), "{}", stderr(&old));
    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&file).unwrap_or_default())
            .unwrap_or_default();
    assert_eq!(doc["schema_version"], 1);
    assert_eq!(doc["title"], "Change request: Remove the chat_names -> ci_pipeline_chat_data foreign key (fk_rails_f300456b63 on public.ci_pipeline_chat_data)");
    assert!(doc["body"]
        .as_str()
        .unwrap_or_default()
        .contains("## Rollback"));
    assert_eq!(
        doc["labels"],
        serde_json::json!(["change-request", "database", "criticality::C1", "fkctl"])
    );
}

#[test]
fn names_that_markdown_would_misread_are_escaped() {
    let dir = TempDir::new("cr_escape");
    let path = dir.write(
        "p.yml",
        "version: 1\nchange: weird\nsummary: 'Drop *the* <b>[link](x)</b> | key'\nconstraint:\n  name: '\"fk_*bold*\"'\n  table: '\"my_table|x\"'\n  columns: ['\"a`b\"']\n  references: { table: parent, columns: [id] }\nenvironments: [{ name: staging, dsn_env: X }]\n",
    );
    let out = fkctl(&["change-request", &path.display().to_string()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let body = stdout(&out);
    assert!(
        body.contains(r"Drop \*the\* \<b\>\[link\](x)\</b\> \| key"),
        "{body}"
    );
    assert!(!body.contains("<b>"), "no raw HTML from values");
    // SQL keeps the names exactly, in a fence longer than the backtick in the column name.
    assert!(body.contains(r#"fk."a`b" IS NOT NULL"#), "{body}");
}

/// The statements and checks of a `fkctl plan --output json` document, in
/// the order the request shows them.
fn plan_in_order(plan: &serde_json::Value) -> Vec<String> {
    let mut out = Vec::new();
    for step in plan["steps"].as_array().cloned().unwrap_or_default() {
        let text = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_string();
        if let Some(sql) = step["before"]["sql"].as_str() {
            out.push(sql.to_string());
        }
        for s in step["statements"].as_array().cloned().unwrap_or_default() {
            out.push(text(&s));
        }
        if let Some(sql) = step["after"]["sql"].as_str() {
            out.push(sql.to_string());
        }
    }
    out
}

/// One environment's rollback section: (the SQL shown as fkctl's, the psql script).
fn rollback_section(body: &str, env: &str) -> (Vec<String>, String) {
    let start = body
        .find(&format!("### Rollback on {env}\n"))
        .unwrap_or_else(|| panic!("no rollback section for {env}"));
    let section = &body[start..];
    let end = section.find("</details>").unwrap_or(section.len());
    let shown = sql_statements(&section[..end]);
    let script_start = section[end..].find("\\set ON_ERROR_STOP").map(|i| end + i);
    let script = script_start
        .map(|i| {
            let rest = &section[i..];
            rest[..rest.find("\n```").unwrap_or(rest.len())].to_string()
        })
        .unwrap_or_default();
    (shown, script)
}

/// Every environment's rollback in the request is, statement for statement
/// and byte for byte, what `fkctl plan --rollback --env E` plans there; its
/// psql script holds each of them as a line (but the drain's, which it
/// leaves to `fkctl cleanup`).
fn check_rollbacks(body: &str, envs: &[&str], plan: impl Fn(&str) -> serde_json::Value) {
    for env in envs {
        let planned = plan(env);
        let (shown, script) = rollback_section(body, env);
        let expected: Vec<String> = plan_in_order(&planned)
            .into_iter()
            .map(|s| s.strip_suffix(';').unwrap_or(&s).to_string())
            .collect();
        assert_eq!(
            shown, expected,
            "{env}: the rollback SQL differs from fkctl plan"
        );
        let lines: BTreeSet<&str> = script.lines().collect();
        for step in planned["steps"].as_array().cloned().unwrap_or_default() {
            if step["kind"] == "drain_loose" {
                continue;
            }
            // A step with parameters runs its statements inside the
            // script's batch loop, each a line of its own, without a semicolon.
            let in_batch_loop = step["binds"].as_array().is_some_and(|b| !b.is_empty());
            let statements: BTreeSet<String> = step["statements"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect();
            let mut one = serde_json::json!({ "steps": [step] });
            for sql in plan_in_order(&one.take()) {
                let line = if in_batch_loop && statements.contains(&sql) {
                    sql.clone()
                } else {
                    format!("{sql};")
                };
                assert!(
                    lines.contains(line.as_str()),
                    "{env}: the psql script lacks:\n{line}"
                );
            }
        }
        assert!(!script.contains("repeat per"), "{env}");
    }
}

#[test]
fn every_environments_rollback_is_its_plan_with_the_loose_replacement() {
    let s = Setup::new("cr_rb_envs", "{}");
    let text =
        std::fs::read_to_string(&s.playbook).unwrap_or_default() + "loose: { batch_size: 500 }\n";
    std::fs::write(&s.playbook, text).unwrap_or_else(|e| panic!("{e}"));
    let out = s.drop(&["--env", "staging", "--yes"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let path = s.playbook.display().to_string();
    let out = s.run(&[
        "change-request",
        &path,
        "--env",
        "staging",
        "--env",
        "production",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let body = stdout(&out);
    assert!(
        body.contains("Drain the loose replacement"),
        "drain step shown"
    );
    assert!(
        body.contains("Remove the loose replacement"),
        "removal step shown"
    );
    check_rollbacks(&body, &["staging", "production"], |env| {
        let out = s.run(&[
            "plan",
            &path,
            "--rollback",
            "--env",
            env,
            "--output",
            "json",
        ]);
        assert!(out.status.success(), "{}", stderr(&out));
        serde_json::from_slice(&out.stdout).unwrap_or_default()
    });
}

/// The shipped partitioned playbook on its example schema, staging dropped:
/// on PostgreSQL before 18 staging's rollback goes partition by partition.
#[test]
fn the_partitioned_child_with_live_evidence() {
    let root = env!("CARGO_MANIFEST_DIR");
    let schema = std::fs::read_to_string(format!(
        "{root}/examples/schemas/payment-customer-partitioned.sql"
    ))
    .unwrap_or_default();
    let (staging, production) = (database("cr_part_stg"), database("cr_part_prd"));
    exec(&staging, &schema);
    exec(&production, &schema);
    let dir = TempDir::new("cr_part");
    let text =
        std::fs::read_to_string(format!("{root}/playbooks/payment-customer-partitioned.yml"))
            .unwrap_or_default();
    let path = dir.write("playbook.yml", &text).display().to_string();
    let vars = [
        ("SHOP_STAGING_DSN", staging.dsn.as_str()),
        ("SHOP_PRODUCTION_DSN", production.dsn.as_str()),
    ];
    let out = fkctl_env(&["drop", &path, "--env", "staging", "--yes"], &vars);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = fkctl_env(
        &[
            "change-request",
            &path,
            "--env",
            "staging",
            "--env",
            "production",
        ],
        &vars,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let body = stdout(&out);
    let major = scalar_i64(
        &staging,
        "SELECT current_setting('server_version_num')::int8 / 10000",
    );
    if major < 18 {
        assert!(
            body.contains("Add the constraint NOT VALID on partition"),
            "per-leaf path"
        );
    }
    check_rollbacks(&body, &["staging", "production"], |env| {
        let out = fkctl_env(
            &[
                "plan",
                &path,
                "--rollback",
                "--env",
                env,
                "--output",
                "json",
            ],
            &vars,
        );
        assert!(out.status.success(), "{}", stderr(&out));
        serde_json::from_slice(&out.stdout).unwrap_or_default()
    });
    // The snapshot differs by the server's path: one per major version.
    let name = format!(
        "partitioned_live_pg{}",
        if major < 18 { "15" } else { "18" }
    );
    insta::with_settings!({ filters => filters() }, {
        insta::assert_snapshot!(name, body);
    });
}

/// The by-hand script runs as written in psql: the purge archives every row
/// under a by-hand run id, the constraint is validated, and fkctl restore
/// puts the rows back with that id.
#[test]
fn the_by_hand_script_runs_in_psql_and_fkctl_restore_takes_its_run() {
    let psql = std::env::var("FKCTL_PG_BIN")
        .map(|b| format!("{b}/psql"))
        .unwrap_or_else(|_| "psql".into());
    if std::process::Command::new(&psql)
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("skipped: no psql at {psql}");
        return;
    }
    let db = database("cr_byhand");
    exec(
        &db,
        include_str!("../examples/schemas/remove-fk-ci-pipeline-chat-data-chat-names.sql"),
    );
    exec(&db, "ALTER TABLE ci_pipeline_chat_data DROP CONSTRAINT fk_rails_f300456b63; CREATE TABLE gone AS SELECT * FROM chat_names WHERE id % 7 = 0; DELETE FROM chat_names WHERE id % 7 = 0;");
    let orphans = scalar_i64(&db, "SELECT count(*) FROM ci_pipeline_chat_data c WHERE NOT EXISTS (SELECT 1 FROM chat_names p WHERE p.id = c.chat_name_id)");
    assert!(orphans > 1000, "more than one batch: {orphans}");
    let dir = TempDir::new("cr_byhand");
    let text = std::fs::read_to_string(SEED).unwrap_or_default().replacen(
        "- { name: staging,",
        "- { name: test,",
        1,
    );
    let pb = dir.write("p.yml", &text);
    let out = run_env("change-request", &pb, &db, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let (_, script) = rollback_section(&stdout(&out), "test");
    let file = dir.write("rollback.sql", &script);
    let ran = std::process::Command::new(&psql)
        .args([
            "-X",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-f",
            &file.display().to_string(),
            &db.dsn,
        ])
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(ran.status.success(), "{}", stderr(&ran));
    assert!(
        stderr(&ran).contains(&format!("{orphans} row(s) handled so far")),
        "{}",
        stderr(&ran)
    );
    assert_eq!(scalar_i64(&db, "SELECT count(*) FROM pg_constraint WHERE conname = 'fk_rails_f300456b63' AND convalidated"), 1);
    assert_eq!(scalar_i64(&db, "SELECT count(*) FROM fkctl.archive WHERE run_id LIKE 'by-hand-%' AND action = 'delete'"), orphans);
    let mut client = db.connect().unwrap_or_else(|e| panic!("{e}"));
    let run_id: String = client
        .query_one("SELECT min(run_id) FROM fkctl.archive", &[])
        .map(|r| r.get(0))
        .unwrap_or_else(|e| panic!("{e}"));
    exec(&db, "INSERT INTO chat_names SELECT * FROM gone");
    let out = run_env("restore", &pb, &db, &["--run", &run_id, "--yes"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(scalar_i64(&db, "SELECT count(*) FROM fkctl.archive"), 0);
}

/// The criticality counts what the drop turns off at the rate this database
/// deletes parents (its cumulative statistics since a reset).
#[test]
fn the_criticality_names_the_measured_delete_rate() {
    let db = database("cr_rate");
    exec(
        &db,
        include_str!("../examples/schemas/remove-fk-ci-pipeline-chat-data-chat-names.sql"),
    );
    exec(&db, "SELECT pg_stat_reset()");
    exec(&db, "DELETE FROM chat_names WHERE id <= 40");
    // Statistics reach the shared view when the deleting session flushes them.
    let mut deleted = 0;
    for _ in 0..50 {
        deleted = scalar_i64(
            &db,
            "SELECT coalesce(n_tup_del, 0) FROM pg_stat_user_tables WHERE relid = 'public.chat_names'::regclass",
        );
        if deleted >= 40 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(deleted, 40);
    let dir = TempDir::new("cr_rate");
    let text = std::fs::read_to_string(SEED).unwrap_or_default().replacen(
        "- { name: staging,",
        "- { name: test,",
        1,
    );
    let pb = dir.write("p.yml", &text);
    let out = run_env("change-request", &pb, &db, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let body = stdout(&out);
    assert!(
        body.contains("at the measured delete rate of public.chat\\_names: test: \\~"),
        "{body}"
    );
    assert!(
        body.contains("(40 since the statistics were reset "),
        "{body}"
    );
}
