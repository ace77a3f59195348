//! The read commands against a real PostgreSQL: inspect, orphans, plan,
//! and how each one fails.

mod common;

use common::*;
use fkctl::testkit::TestDatabase;
use std::path::PathBuf;

const SEED_SQL: &str =
    include_str!("../examples/schemas/remove-fk-ci-pipeline-chat-data-chat-names.sql");
const SEED_PLAYBOOK: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/playbooks/remove-fk-ci-pipeline-chat-data-chat-names.yml"
);

fn seed(prefix: &str) -> TestDatabase {
    let db = database(prefix);
    exec(&db, SEED_SQL);
    db
}

/// The seed playbook with its environments pointed at the `test` environment.
fn seed_playbook(dir: &TempDir) -> PathBuf {
    let text = std::fs::read_to_string(SEED_PLAYBOOK).unwrap_or_else(|e| panic!("{e}"));
    let text = text.replace(
        "name: staging, dsn_env: FKCTL_STAGING_DSN",
        "name: test, dsn_env: FKCTL_TEST_ONLY_DSN",
    );
    dir.write("seed.yml", &text)
}

fn run(args: &[&str]) -> std::process::Output {
    fkctl(args)
}

#[test]
fn inspect_shows_the_live_constraint_and_what_dropping_it_changes() {
    let db = seed("inspect");
    let dir = TempDir::new("inspect");
    let path = seed_playbook(&dir);
    let report = json("inspect", &path, &db, &[]);
    assert_eq!(report["state"], "valid");
    assert_eq!(report["drift"], serde_json::json!([]));
    assert_eq!(report["live"]["definition"]["on_delete"], "cascade");
    assert_eq!(report["child"]["row_estimate"], 20000);
    let indexes = report["child_indexes"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(
        indexes.iter().any(|i| i["covers_foreign_key"] == true),
        "{indexes:?}"
    );
    let stops = report["impact"]["stops_enforcing"].to_string();
    assert!(stops.contains("ON DELETE CASCADE"), "{stops}");

    let text = run_env("inspect", &path, &db, &[]);
    assert!(text.status.success(), "{}", stderr(&text));
    let text = stdout(&text);
    assert!(text.contains("state:    present, VALID"), "{text}");
    assert!(text.contains("drift:    none"), "{text}");
}

#[test]
fn drift_is_shown_field_by_field_and_fails_with_exit_4() {
    let db = seed("drift");
    exec(&db, "ALTER TABLE ci_pipeline_chat_data DROP CONSTRAINT fk_rails_f300456b63;
               ALTER TABLE ci_pipeline_chat_data ADD CONSTRAINT fk_rails_f300456b63 FOREIGN KEY (chat_name_id) REFERENCES chat_names (id) ON DELETE SET NULL DEFERRABLE;");
    let dir = TempDir::new("drift");
    let path = seed_playbook(&dir);
    let out = run_env("inspect", &path, &db, &["--output", "json"]);
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    let fields: Vec<String> = report["drift"]
        .as_array()
        .map(|d| {
            d.iter()
                .map(|x| x["field"].as_str().unwrap_or_default().to_string())
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(fields, ["on_delete", "deferrable"]);
    assert_eq!(report["drift"][0]["database"], "set_null");
    let err = stderr(&out);
    assert!(
        err.contains("differs from the playbook in 2 field(s): on_delete, deferrable"),
        "{err}"
    );
    assert!(
        err.contains("seed.yml:13:14"),
        "points at the first field that differs (on_delete's value): {err}"
    );
    // The drop plan says it will stop.
    let plan = json("plan", &path, &db, &[]);
    assert!(
        plan["notes"]
            .to_string()
            .contains("differs from the playbook"),
        "{plan}"
    );
}

#[test]
fn a_missing_table_or_column_names_its_playbook_line() {
    let db = seed("missing");
    let dir = TempDir::new("missing");
    let table = dir.write("table.yml", &playbook("  name: fk\n  table: public.no_such_table\n  columns: [chat_name_id]\n  references: { table: chat_names, columns: [id] }"));
    let out = run_env("inspect", &table, &db, &[]);
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("table public.no_such_table does not exist"),
        "{err}"
    );
    assert!(err.contains("table.yml:6:10"), "{err}");

    let column = dir.write("column.yml", &playbook("  name: fk\n  table: ci_pipeline_chat_data\n  columns: ['\"Chat_Name_Id\"']\n  references: { table: chat_names, columns: [id] }"));
    let out = run_env("orphans", &column, &db, &[]);
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains(
            "column \"Chat_Name_Id\" does not exist in table public.ci_pipeline_chat_data"
        ),
        "{err}"
    );
    assert!(err.contains("column.yml:7:13"), "{err}");
}

#[test]
fn a_constraint_of_another_kind_is_refused() {
    let db = seed("notfk");
    exec(&db, "ALTER TABLE ci_pipeline_chat_data DROP CONSTRAINT fk_rails_f300456b63;
               ALTER TABLE ci_pipeline_chat_data ADD CONSTRAINT fk_rails_f300456b63 CHECK (chat_name_id > 0);");
    let dir = TempDir::new("notfk");
    let path = seed_playbook(&dir);
    let out = run_env("inspect", &path, &db, &[]);
    assert_eq!(out.status.code(), Some(4));
    assert!(
        stderr(&out).contains("not a foreign key"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn an_unreachable_database_exits_3_without_showing_the_password() {
    let dir = TempDir::new("unreachable");
    let path = seed_playbook(&dir);
    let out = run(&[
        "inspect",
        &path.display().to_string(),
        "--env",
        "test",
        "--dsn",
        "test=host=127.0.0.1 port=1 user=ops password=hunter2 dbname=app connect_timeout=2",
    ]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("cannot connect to the test database"), "{err}");
    assert!(
        err.contains("host=127.0.0.1 port=1 dbname=app user=ops"),
        "{err}"
    );
    assert!(!err.contains("hunter2"), "{err}");
    assert!(!stdout(&out).contains("hunter2"));
}

#[test]
fn a_missing_database_exits_3() {
    let server = fkctl::testkit::server().unwrap_or_else(|e| panic!("{e}"));
    let dir = TempDir::new("nodb");
    let path = seed_playbook(&dir);
    let dsn = format!("test={}", server.dsn_for("fkctl_no_such_database"));
    let out = run(&[
        "orphans",
        &path.display().to_string(),
        "--env",
        "test",
        "--dsn",
        &dsn,
    ]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(stderr(&out).contains("3D000"), "{}", stderr(&out));
}

#[test]
fn connection_and_environment_mistakes_are_usage_errors() {
    let dir = TempDir::new("usage");
    let path = seed_playbook(&dir);
    let p = path.display().to_string();
    let out = run(&["inspect", &p, "--env", "test"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("the variable FKCTL_TEST_ONLY_DSN is not set"),
        "{}",
        stderr(&out)
    );
    let out = run(&["inspect", &p, "--env", "qa"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("environment \"qa\" is not in"),
        "{}",
        stderr(&out)
    );
    let out = run(&[
        "orphans",
        &p,
        "--env",
        "test",
        "--dsn",
        "test=host=x sslmode=sometimes",
    ]);
    assert_eq!(out.status.code(), Some(2));
    // The error names where the bad string came from: the flag, not the variable.
    assert!(
        stderr(&out).contains("from: --dsn test="),
        "{}",
        stderr(&out)
    );
    assert!(
        !stderr(&out).contains("FKCTL_TEST_ONLY_DSN"),
        "{}",
        stderr(&out)
    );
    let out = run(&["plan", &p, "--dsn", "no-equals-sign"]);
    assert_eq!(out.status.code(), Some(2));
    // A connection string without NAME= is not taken for an environment "host".
    let out = run(&[
        "orphans",
        &p,
        "--env",
        "test",
        "--dsn",
        "host=127.0.0.1 dbname=x",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("without the environment's name"),
        "{}",
        stderr(&out)
    );
    // An environment the playbook lacks is named, not ignored.
    let out = run(&[
        "orphans",
        &p,
        "--env",
        "test",
        "--dsn",
        "stg=host=127.0.0.1",
        "--dsn",
        "test=host=127.0.0.1",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("--dsn stg=...: the playbook"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn the_connection_string_can_come_from_the_environment_variable() {
    let db = seed("envvar");
    let dir = TempDir::new("envvar");
    let path = seed_playbook(&dir);
    let out = fkctl_env(
        &[
            "orphans",
            &path.display().to_string(),
            "--env",
            "test",
            "--output",
            "json",
        ],
        &[("FKCTL_TEST_ONLY_DSN", &db.dsn)],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    assert_eq!(report["orphan_count"], 0);
}

#[test]
fn sessions_holding_locks_are_reported_and_secrets_in_their_queries_hidden() {
    let db = seed("sessions");
    let mut holder = db.connect().unwrap_or_else(|e| panic!("{e}"));
    holder
        .batch_execute(
            "BEGIN; LOCK TABLE chat_names IN ROW EXCLUSIVE MODE; SELECT 'password=hunter2'",
        )
        .unwrap_or_else(|e| panic!("{e}"));
    let pid: i32 = holder
        .query_one("SELECT pg_backend_pid()", &[])
        .map(|r| r.get(0))
        .unwrap_or_else(|e| panic!("{e}"));
    let dir = TempDir::new("sessions");
    let path = seed_playbook(&dir);
    let report = json("inspect", &path, &db, &[]);
    let sessions = report["sessions"].as_array().cloned().unwrap_or_default();
    let mine = sessions
        .iter()
        .find(|s| s["pid"] == pid)
        .unwrap_or_else(|| panic!("pid {pid} not in {sessions:?}"));
    assert!(
        mine["locks"]
            .to_string()
            .contains("RowExclusiveLock on public.chat_names")
            || mine["locks"]
                .to_string()
                .contains("RowExclusiveLock on chat_names"),
        "{mine}"
    );
    assert!(!report.to_string().contains("hunter2"));
    assert!(report["impact"]["warnings"]
        .to_string()
        .contains(&format!("pid {pid}")));
    drop(holder);
}

#[test]
fn foreign_keys_hanging_off_the_child_are_shown_and_archived_by_the_purge() {
    let db = seed("grandchild");
    exec(&db, "CREATE TABLE chat_data_notes (id serial PRIMARY KEY, chat_data_id bigint REFERENCES ci_pipeline_chat_data (id) ON DELETE CASCADE, note text);");
    let dir = TempDir::new("grandchild");
    let path = seed_playbook(&dir);
    let report = json("inspect", &path, &db, &[]);
    let sets_off = report["impact"]["purge_sets_off"].to_string();
    assert!(
        sets_off.contains("chat_data_notes") && sets_off.contains("deletes the referencing rows"),
        "{sets_off}"
    );
    assert!(
        report["impact"]["cascade_tree"]
            .to_string()
            .contains("public.chat_data_notes via chat_data_notes_chat_data_id_fkey"),
        "{report}"
    );
    let plan = json("plan", &path, &db, &["--rollback"]);
    let notes = plan["notes"].to_string();
    assert!(
        notes.contains("Cascade tree below public.ci_pipeline_chat_data")
            && notes.contains("chat_data_notes")
            && !notes.contains("refuses to purge"),
        "{plan}"
    );
}

fn step<'a>(plan: &'a serde_json::Value, id: &str) -> &'a serde_json::Value {
    plan["steps"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["id"] == id))
        .unwrap_or_else(|| panic!("no step {id} in {plan}"))
}

fn ids(plan: &serde_json::Value) -> Vec<String> {
    plan["steps"]
        .as_array()
        .map(|s| {
            s.iter()
                .map(|s| s["id"].as_str().unwrap_or_default().to_string())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn plans_follow_the_live_state() {
    let db = seed("planstate");
    let dir = TempDir::new("planstate");
    let path = seed_playbook(&dir);
    let offline = run(&["plan", &path.display().to_string(), "--output", "json"]);
    assert!(offline.status.success());
    let offline: serde_json::Value = serde_json::from_slice(&offline.stdout).unwrap_or_default();
    assert_eq!(
        ids(&offline),
        [
            "verify-definition",
            "count-orphans",
            "snapshot-definition",
            "drop-constraint"
        ]
    );
    assert_eq!(
        step(&offline, "drop-constraint")["status"]["state"],
        "unknown"
    );

    let live = json("plan", &path, &db, &[]);
    assert_eq!(step(&live, "drop-constraint")["status"]["state"], "pending");
    let rollback = json("plan", &path, &db, &["--rollback"]);
    assert_eq!(
        step(&rollback, "validate-constraint")["status"]["state"],
        "already_done"
    );

    exec(
        &db,
        "ALTER TABLE ci_pipeline_chat_data DROP CONSTRAINT fk_rails_f300456b63",
    );
    let live = json("plan", &path, &db, &[]);
    assert_eq!(
        step(&live, "drop-constraint")["status"]["state"],
        "already_done"
    );
    let rollback = json("plan", &path, &db, &["--rollback"]);
    assert_eq!(
        step(&rollback, "add-not-valid")["status"]["state"],
        "pending"
    );

    // The drop's SQL is the same bytes whether planned offline or live.
    assert_eq!(
        step(&offline, "drop-constraint")["statements"],
        step(&live, "drop-constraint")["statements"]
    );
}

/// Runs the rollback plan's own SQL by hand, as a DBA following the change
/// request would: the constraint comes back validated, and every removed row
/// is in the archive.
#[test]
fn the_rollback_plan_sql_restores_the_constraint_and_archives_every_orphan() {
    let db = seed("planrun");
    exec(&db, "ALTER TABLE ci_pipeline_chat_data DROP CONSTRAINT fk_rails_f300456b63; DELETE FROM chat_names WHERE id % 10 = 0;");
    let orphans_before = scalar_i64(&db, "SELECT count(*) FROM ci_pipeline_chat_data d WHERE NOT EXISTS (SELECT 1 FROM chat_names c WHERE c.id = d.chat_name_id)");
    let rows_before = scalar_i64(&db, "SELECT count(*) FROM ci_pipeline_chat_data");
    assert!(orphans_before > 0);
    let dir = TempDir::new("planrun");
    let path = seed_playbook(&dir);
    let plan = json("plan", &path, &db, &["--rollback"]);
    assert_eq!(
        ids(&plan),
        [
            "collect-orphans",
            "count-orphans",
            "add-not-valid",
            "prepare-archive",
            "purge-orphans",
            "vacuum-child",
            "validate-constraint"
        ]
    );
    let mut client = db.connect().unwrap_or_else(|e| panic!("{e}"));
    let check = |client: &mut postgres::Client, step: &serde_json::Value, key: &str| {
        let sql = step[key]["sql"]
            .as_str()
            .unwrap_or_else(|| panic!("no {key} check"));
        let row = client
            .query_one(sql, &[])
            .unwrap_or_else(|e| panic!("{e}: {sql}"));
        let expect = &step[key]["expect"];
        match expect["kind"].as_str() {
            Some("equals") => assert_eq!(
                Some(row.get::<_, i64>(0)),
                expect["value"].as_i64(),
                "{sql}"
            ),
            Some("at_most") => assert!(
                Some(row.get::<_, i64>(0)) <= expect["value"].as_i64(),
                "{sql}"
            ),
            Some("is_true") => assert!(row.get::<_, bool>(0), "{sql}"),
            Some("is_false") => assert!(!row.get::<_, bool>(0), "{sql}"),
            other => panic!("unknown expectation {other:?}"),
        }
    };
    for id in [
        "add-not-valid",
        "collect-orphans",
        "count-orphans",
        "prepare-archive",
        "purge-orphans",
        "vacuum-child",
        "validate-constraint",
    ] {
        let s = step(&plan, id);
        if !s["before"].is_null() {
            check(&mut client, s, "before");
        }
        let statements: Vec<String> = s["statements"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|x| x.as_str().unwrap_or_default().to_string())
                    .collect()
            })
            .unwrap_or_default();
        if id == "vacuum-child" {
            // VACUUM refuses a transaction.
            for sql in &statements {
                client
                    .batch_execute(sql)
                    .unwrap_or_else(|e| panic!("{id}: {e}\n{sql}"));
            }
            continue;
        }
        let repeat = !s["repeat"].is_null();
        loop {
            let mut tx = client.transaction().unwrap_or_else(|e| panic!("{e}"));
            let mut taken = 0;
            for sql in &statements {
                // A batch statement returns how many rows it took off the
                // list, as text; the loop ends when one takes none.
                // $1 run id, $2 change, $3 constraint: as many as it names.
                let binds: [&(dyn postgres::types::ToSql + Sync); 3] = [
                    &"run-1",
                    &"remove-fk-ci-pipeline-chat-data-chat-names",
                    &"fk_rails_f300456b63",
                ];
                let named = (1..=3).filter(|i| sql.contains(&format!("${i}"))).count();
                let rows = tx.query(sql.as_str(), &binds[..named]).unwrap_or_else(|e| {
                    panic!("{id}: {}\n{sql}", fkctl::error::describe_postgres(&e).1)
                });
                taken = rows
                    .first()
                    .and_then(|r| r.try_get::<_, String>(0).ok())
                    .and_then(|t| t.parse::<u64>().ok())
                    .unwrap_or(0);
            }
            tx.commit().unwrap_or_else(|e| panic!("{e}"));
            if !repeat || taken == 0 {
                break;
            }
        }
        if id == "verify-no-orphans" {
            check(&mut client, s, "before");
        }
        if !s["after"].is_null() {
            check(&mut client, s, "after");
        }
    }
    let archived = scalar_i64(
        &db,
        "SELECT count(*) FROM fkctl.archive WHERE run_id = 'run-1'",
    );
    assert_eq!(archived, orphans_before);
    assert_eq!(
        scalar_i64(&db, "SELECT count(*) FROM ci_pipeline_chat_data") + archived,
        rows_before
    );
    assert_eq!(scalar_i64(&db, "SELECT count(*) FROM pg_constraint WHERE conname = 'fk_rails_f300456b63' AND convalidated"), 1);
}

#[test]
fn completions_and_man_page() {
    let out = run(&["completions", "bash"]);
    assert!(out.status.success());
    assert!(stdout(&out).contains("fkctl"));
    let out = run(&["man"]);
    assert!(out.status.success());
    assert!(stdout(&out).contains(".TH fkctl"), "{}", stdout(&out));
}

/// `fkctl man --dir` writes every page the top page refers to, each with the
/// EXIT STATUS and ENVIRONMENT sections.
#[test]
fn man_pages_exist_for_every_command_they_refer_to() {
    let dir = TempDir::new("man");
    let out = run(&["man", "--dir", &dir.0.display().to_string()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let top = std::fs::read_to_string(dir.0.join("fkctl.1")).unwrap_or_default();
    let referred: Vec<String> = top
        .split("fkctl\\-")
        .skip(1)
        .filter_map(|rest| {
            rest.split_once("(1)")
                .map(|(name, _)| name.replace("\\-", "-"))
        })
        .collect();
    assert!(referred.len() >= 10, "{top}");
    for name in referred
        .iter()
        .map(|n| format!("fkctl-{n}.1"))
        .chain(["fkctl.1".to_string()])
    {
        let page = std::fs::read_to_string(dir.0.join(&name))
            .unwrap_or_else(|e| panic!("{name} is referred to but missing: {e}"));
        assert!(page.contains(".SH \"EXIT STATUS\""), "{name}");
        assert!(page.contains(".SH ENVIRONMENT"), "{name}");
    }
}

/// `service=NAME` (or PGSERVICE) reads the `[NAME]` section of the service
/// file (PGSERVICEFILE here), as libpq does; what the connection string says
/// wins over the service.
#[test]
fn a_service_file_names_the_database() {
    let db = seed("service");
    let dir = TempDir::new("service");
    let path = seed_playbook(&dir);
    let p = path.display().to_string();
    // The test database's own keyword=value parameters, one per line.
    let lines: Vec<String> = db.dsn.split_whitespace().map(str::to_string).collect();
    let file = dir.write(
        "pg_service.conf",
        &format!(
            "# fleets\n[other]\nhost=nowhere.invalid\n\n[fkctl-test]\n{}\n",
            lines.join("\n")
        ),
    );
    let file = file.display().to_string();
    let out = fkctl_env(
        &["orphans", &p, "--env", "test", "--output", "json"],
        &[
            ("FKCTL_TEST_ONLY_DSN", "service=fkctl-test"),
            ("PGSERVICEFILE", &file),
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    assert_eq!(report["orphan_count"], 0);
    // PGSERVICE with an empty connection string.
    let out = fkctl_env(
        &["orphans", &p, "--env", "test"],
        &[
            ("FKCTL_TEST_ONLY_DSN", " "),
            ("PGSERVICE", "fkctl-test"),
            ("PGSERVICEFILE", &file),
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    // An unknown service is a usage error naming the file searched.
    let out = fkctl_env(
        &["orphans", &p, "--env", "test"],
        &[
            ("FKCTL_TEST_ONLY_DSN", "service=nope"),
            ("PGSERVICEFILE", &file),
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("service \"nope\" is not defined in"),
        "{}",
        stderr(&out)
    );
}
