//! The loose replacement on the seed case, against a real PostgreSQL: the
//! drop installs it, `fkctl cleanup` does the foreign key's duty archived,
//! counters add up across runs, concurrent cleanups and a kill -9 lose
//! nothing, the metrics pass `promtool check metrics`, and the rollback
//! leaves no trigger behind.

mod common;

use common::staged::{present, Setup};
use common::{exec, scalar_i64, stderr, stdout, TempDir};
use fkctl::testkit::TestDatabase;
use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

const LOOSE: &str = "{}\nloose: { batch_size: 50, max_runtime: 60s, max_rows_per_run: 1000000 }";

fn setup(tag: &str) -> Setup {
    let s = Setup::with_rollback(tag, "{ lock_timeout: 500ms, lock_retries: 3 }", LOOSE);
    let out = s.drop(&["--env", "staging", "--yes"]);
    assert!(
        out.status.success(),
        "drop: {}{}",
        stdout(&out),
        stderr(&out)
    );
    assert!(!present(&s.staging));
    s
}

fn fkctl_triggers(db: &TestDatabase) -> i64 {
    scalar_i64(
        db,
        "SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'fkctl_loose_%' AND tgrelid = 'public.chat_names'::regclass",
    )
}

/// `count` new parents from id `first`, each with `children` child rows.
fn add_families(db: &TestDatabase, first: i64, count: i64, children: i64) {
    exec(
        db,
        &format!(
            "INSERT INTO chat_names (id, user_id, integration_id, team_id, chat_id) SELECT g, 1, 1, 'T', 'U' || g FROM generate_series({first}, {last}) g;
             INSERT INTO ci_pipeline_chat_data (pipeline_id, chat_name_id, response_url) SELECT 1 + (g % 500), p, 'https://x/' || g FROM generate_series({first}, {last}) p, generate_series(1, {children}) g;",
            last = first + count - 1
        ),
    );
}

fn orphans(db: &TestDatabase) -> i64 {
    scalar_i64(
        db,
        "SELECT count(*) FROM ci_pipeline_chat_data c WHERE NOT EXISTS (SELECT 1 FROM chat_names p WHERE p.id = c.chat_name_id)",
    )
}

fn archived(db: &TestDatabase) -> i64 {
    scalar_i64(
        db,
        "SELECT count(*) FROM fkctl.archived_rows WHERE action = 'delete'",
    )
}

fn cleanup(s: &Setup, extra: &[&str]) -> std::process::Output {
    let pb = s.playbook.display().to_string();
    let mut args = vec!["cleanup", pb.as_str(), "--env", "staging"];
    args.extend_from_slice(extra);
    s.run(&args)
}

/// The value of one sample in exposition text.
fn sample(text: &str, name: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(&format!("{name}{{")))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no sample {name} in:\n{text}"))
}

/// `promtool check metrics` on the text: exit 0 and no lint problem.
fn promtool_accepts(text: &str) {
    let mut child = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot run promtool ({e}): install it (Debian: apt install prometheus); .ci/run does")
        });
    child
        .stdin
        .take()
        .map(|mut i| i.write_all(text.as_bytes()))
        .transpose()
        .unwrap_or_else(|e| panic!("{e}"));
    let out = child.wait_with_output().unwrap_or_else(|e| panic!("{e}"));
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "promtool check metrics: {}{}\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_drop_installs_it_cleanup_does_the_cascade_archived_and_counters_add_up() {
    let s = setup("loose_seed");
    let db = &s.staging;
    assert_eq!(fkctl_triggers(db), 2, "the drop installed both triggers");
    let pb = s.playbook.display().to_string();
    let status = s.run(&["status", &pb, "--env", "staging"]);
    assert!(
        stdout(&status).contains("loose:      installed (2 capture triggers)"),
        "{}",
        stdout(&status)
    );
    let request = s.run(&["change-request", &pb]);
    for part in [
        "### The loose replacement",
        "fkctl_loose_pending_deletions",
        "delta(fkctl_loose_pending_deletions",
    ] {
        assert!(
            stdout(&request).contains(part),
            "{part}: {}",
            stdout(&request)
        );
    }
    add_families(db, 100_001, 150, 4);
    let children = scalar_i64(
        db,
        "SELECT count(*) FROM ci_pipeline_chat_data WHERE chat_name_id BETWEEN 100001 AND 100150",
    );
    exec(
        db,
        "DELETE FROM chat_names WHERE id BETWEEN 100001 AND 100150",
    );
    assert_eq!(
        orphans(db),
        children,
        "without the FK the children stay behind"
    );

    let dir = TempDir::new("loose_metrics");
    let file = dir.0.join("fkctl.prom");
    let file_arg = file.display().to_string();
    let out = cleanup(&s, &["--once", "--metrics-file", &file_arg]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert_eq!(orphans(db), 0);
    assert_eq!(archived(db), children, "every removed row is archived");
    let text = std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{e}"));
    promtool_accepts(&text);
    assert_eq!(
        sample(&text, "fkctl_loose_child_rows_deleted_total"),
        children as f64
    );
    assert_eq!(
        sample(&text, "fkctl_loose_processed_deletions_total"),
        150.0
    );
    assert_eq!(sample(&text, "fkctl_loose_pending_deletions"), 0.0);

    // Its JSON summary, with the schema version every document carries.
    let out = cleanup(&s, &["--output", "json"]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    let doc: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", stdout(&out)));
    assert_eq!(doc["schema_version"], 1, "{doc}");
    assert_eq!(doc["keys_done"], 0, "nothing left to do: {doc}");

    // A second run adds to the counters kept in the database.
    add_families(db, 200_001, 10, 3);
    exec(
        db,
        "DELETE FROM chat_names WHERE id BETWEEN 200001 AND 200010",
    );
    let out = cleanup(&s, &["--metrics-file", &file_arg]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    let text = std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        sample(&text, "fkctl_loose_child_rows_deleted_total"),
        (children + 30) as f64
    );
    assert_eq!(
        sample(&text, "fkctl_loose_processed_deletions_total"),
        160.0
    );
    assert_eq!(
        sample(&text, "fkctl_loose_runs_total"),
        3.0,
        "three runs, the JSON one included"
    );

    // The rollback drains, restores the FK, and removes the replacement.
    let out = s.run(&["rollback", &pb, "--env", "staging", "--yes"]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert!(present(db));
    assert_eq!(fkctl_triggers(db), 0, "no fkctl trigger is left");
    assert_eq!(
        scalar_i64(
            db,
            "SELECT count(*) FROM pg_class WHERE relname LIKE 'loose_%_queue'"
        ),
        0
    );
}

#[test]
fn parent_key_updates_and_restrict_are_counted_not_touched() {
    let s = setup("loose_update");
    let db = &s.staging;
    add_families(db, 300_001, 5, 2);
    // ON UPDATE NO ACTION: a key change the FK would have refused.
    exec(
        db,
        "UPDATE chat_names SET id = id + 1000000 WHERE id BETWEEN 300001 AND 300005",
    );
    let out = cleanup(&s, &[]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert_eq!(
        orphans(db),
        10,
        "nothing is deleted for an update under NO ACTION"
    );
    assert!(
        stdout(&out).contains("10 child row(s) still reference"),
        "{}",
        stdout(&out)
    );
    assert_eq!(
        scalar_i64(db, "SELECT count(*) FROM fkctl.archived_rows"),
        0
    );
}

/// Deletes parents in small transactions until `stop`, as an application would.
fn delete_parents_meanwhile(dsn: String, ids: Vec<i64>) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut client =
            postgres::Client::connect(&dsn, postgres::NoTls).unwrap_or_else(|e| panic!("{e}"));
        for chunk in ids.chunks(5) {
            let chunk = chunk.to_vec();
            client
                .execute("DELETE FROM chat_names WHERE id = ANY($1)", &[&chunk])
                .unwrap_or_else(|e| panic!("{e}"));
            std::thread::sleep(Duration::from_millis(20));
        }
    })
}

#[test]
fn two_cleanups_beside_the_application_lose_nothing_and_do_nothing_twice() {
    let s = setup("loose_concurrent");
    let db = &s.staging;
    add_families(db, 400_001, 400, 3);
    let children = 1200;
    exec(
        db,
        "DELETE FROM chat_names WHERE id BETWEEN 400001 AND 400100",
    );
    let app = delete_parents_meanwhile(db.dsn.clone(), (400_101..=400_400).collect());
    let pb = s.playbook.display().to_string();
    let spawn = || {
        s.command(&["cleanup", &pb, "--env", "staging"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("{e}"))
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while !app.is_finished() && Instant::now() < deadline {
        let (a, b) = (spawn(), spawn());
        for child in [a, b] {
            let out = child.wait_with_output().unwrap_or_else(|e| panic!("{e}"));
            assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
        }
    }
    app.join()
        .unwrap_or_else(|_| panic!("the application thread failed"));
    let out = cleanup(&s, &[]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert_eq!(orphans(db), 0, "no orphan is left");
    assert_eq!(archived(db), children, "each removed row archived once");
    assert_eq!(
        scalar_i64(
            db,
            "SELECT count(DISTINCT row_data->>'id') FROM fkctl.archived_rows"
        ),
        children,
        "no row archived twice"
    );
    assert_eq!(
        scalar_i64(db, "SELECT child_rows_deleted FROM fkctl.loose_counters"),
        children
    );
    assert_eq!(
        scalar_i64(db, "SELECT processed_deletions FROM fkctl.loose_counters"),
        400
    );
}

#[test]
fn a_cleanup_killed_mid_batch_loses_nothing() {
    let s = setup("loose_kill");
    let db = &s.staging;
    add_families(db, 500_001, 100, 4);
    exec(
        db,
        "DELETE FROM chat_names WHERE id BETWEEN 500001 AND 500100",
    );
    // Each child row takes 10 ms to delete: a batch of 50 keys (200 rows)
    // takes 2 s, long enough to be killed in the middle of one.
    exec(
        db,
        "CREATE FUNCTION slow() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN PERFORM pg_sleep(0.01); RETURN OLD; END $$;
         CREATE TRIGGER slow BEFORE DELETE ON ci_pipeline_chat_data FOR EACH ROW EXECUTE FUNCTION slow();",
    );
    let pb = s.playbook.display().to_string();
    let mut child: Child = s
        .command(&["cleanup", &pb, "--env", "staging"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("{e}"));
    std::thread::sleep(Duration::from_millis(3000));
    child.kill().unwrap_or_else(|e| panic!("{e}"));
    let _ = child.wait();
    // The server ends the dead client's backend (client_connection_check_interval),
    // rolling its open batch back; wait for that.
    let deadline = Instant::now() + Duration::from_secs(20);
    while scalar_i64(
        db,
        "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'WITH batch AS%' AND pid <> pg_backend_pid()",
    ) > 0
    {
        assert!(Instant::now() < deadline, "the killed cleanup's backend did not end");
        std::thread::sleep(Duration::from_millis(200));
    }
    let gone = 400 - scalar_i64(
        db,
        "SELECT count(*) FROM ci_pipeline_chat_data WHERE chat_name_id BETWEEN 500001 AND 500100",
    );
    assert!(gone < 400, "the kill came before the last batch");
    assert_eq!(archived(db), gone, "every row gone is archived, no more");
    assert_eq!(
        scalar_i64(db, "SELECT child_rows_deleted FROM fkctl.loose_counters"),
        gone
    );
    exec(db, "DROP TRIGGER slow ON ci_pipeline_chat_data");
    let out = cleanup(&s, &[]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert_eq!(orphans(db), 0);
    assert_eq!(archived(db), 400);
    assert_eq!(
        scalar_i64(
            db,
            "SELECT count(DISTINCT row_data->>'id') FROM fkctl.archived_rows"
        ),
        400
    );
    assert_eq!(
        scalar_i64(db, "SELECT processed_deletions FROM fkctl.loose_counters"),
        100
    );
}

/// GET /metrics over a plain socket.
fn scrape(addr: &str) -> String {
    let mut stream = std::net::TcpStream::connect(addr).unwrap_or_else(|e| panic!("{e}"));
    stream
        .write_all(format!("GET /metrics HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
        .unwrap_or_else(|e| panic!("{e}"));
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .unwrap_or_else(|e| panic!("{e}"));
    let (head, body) = response
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no HTTP body in {response:?}"));
    assert!(
        head.starts_with("HTTP/1.") && head.contains(" 200 "),
        "{head}"
    );
    assert!(head.contains("text/plain; version=0.0.4"), "{head}");
    body.to_string()
}

#[test]
fn watch_serves_metrics_that_promtool_accepts() {
    let s = setup("loose_listen");
    let db = &s.staging;
    add_families(db, 600_001, 20, 2);
    exec(
        db,
        "DELETE FROM chat_names WHERE id BETWEEN 600001 AND 600020",
    );
    let pb = s.playbook.display().to_string();
    let mut child = s
        .command(&[
            "cleanup",
            &pb,
            "--env",
            "staging",
            "--watch",
            "1s",
            "--listen",
            "127.0.0.1:0",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{e}"));
    let mut lines = BufReader::new(child.stderr.take().unwrap_or_else(|| panic!("no stderr")));
    let mut first = String::new();
    lines
        .read_line(&mut first)
        .unwrap_or_else(|e| panic!("{e}"));
    let addr = first
        .trim()
        .strip_prefix("serving metrics at http://")
        .and_then(|r| r.strip_suffix("/metrics"))
        .unwrap_or_else(|| panic!("unexpected first line: {first}"))
        .to_string();
    let deadline = Instant::now() + Duration::from_secs(20);
    let body = loop {
        let body = scrape(&addr);
        if body.contains("fkctl_loose_child_rows_deleted_total") {
            break body;
        }
        assert!(Instant::now() < deadline, "no metrics served: {body}");
        std::thread::sleep(Duration::from_millis(200));
    };
    let _ = child.kill();
    let _ = child.wait();
    promtool_accepts(&body);
    assert_eq!(sample(&body, "fkctl_loose_child_rows_deleted_total"), 40.0);
    assert_eq!(sample(&body, "fkctl_loose_installed"), 1.0);
}

#[test]
fn a_partitioned_parent_is_watched_on_every_partition() {
    let db = common::database("loose_partitioned");
    exec(
        &db,
        "CREATE TABLE account (id int, region int, PRIMARY KEY (id, region)) PARTITION BY LIST (region);
         CREATE TABLE account_eu PARTITION OF account FOR VALUES IN (1);
         CREATE TABLE account_us PARTITION OF account FOR VALUES IN (2) PARTITION BY RANGE (id);
         CREATE TABLE account_us_low PARTITION OF account_us FOR VALUES FROM (0) TO (1000);
         CREATE TABLE account_us_high PARTITION OF account_us FOR VALUES FROM (1000) TO (MAXVALUE);
         CREATE TABLE note (id serial PRIMARY KEY, account_id int, region int, body text);
         CREATE INDEX ON note (account_id, region);
         ALTER TABLE note ADD CONSTRAINT note_account_fk FOREIGN KEY (account_id, region) REFERENCES account (id, region) ON DELETE SET NULL;
         INSERT INTO account SELECT g, 1 + g % 2 FROM generate_series(1, 2000) g;
         INSERT INTO note (account_id, region, body) SELECT g, 1 + g % 2, 'n' FROM generate_series(1, 2000) g, generate_series(1, 2);",
    );
    let dir = TempDir::new("loose_partitioned");
    let text = common::playbook(
        "  name: note_account_fk\n  table: public.note\n  columns: [account_id, region]\n  references: { table: public.account, columns: [id, region] }\n  on_delete: set_null",
    ) + "loose: { batch_size: 100 }\n";
    let pb = dir.write("p.yml", &text);
    let out = common::run_env("drop", &pb, &db, &["--yes"]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    // Root, two partitioned tables below it... every table of the tree: 5 tables, 2 triggers each.
    assert_eq!(
        scalar_i64(
            &db,
            "SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'fkctl_loose_%'"
        ),
        10
    );
    // Deleted through the root, through a leaf, and through a middle partitioned table.
    exec(
        &db,
        "DELETE FROM account WHERE id <= 10;
         DELETE FROM account_eu WHERE id BETWEEN 11 AND 20;
         DELETE FROM account_us WHERE id BETWEEN 1001 AND 1010;",
    );
    let out = common::run_env("cleanup", &pb, &db, &[]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    let dangling = "SELECT count(*) FROM note n WHERE n.account_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM account a WHERE a.id = n.account_id AND a.region = n.region)";
    assert_eq!(scalar_i64(&db, dangling), 0, "{}", stdout(&out));
    let nullified = scalar_i64(&db, "SELECT count(*) FROM note WHERE account_id IS NULL");
    // account_eu holds the even ids, account_us the odd ones: 10 + 5 + 5 parents.
    assert_eq!(
        nullified,
        2 * (10 + 5 + 5),
        "ON DELETE SET NULL, as the FK did"
    );
    assert_eq!(
        scalar_i64(
            &db,
            "SELECT count(*) FROM fkctl.archived_rows WHERE action = 'nullify' AND identity_columns = ARRAY['id']"
        ),
        nullified,
        "each nullified row archived with its identity"
    );
}

#[test]
fn a_key_that_keeps_failing_is_put_back_with_a_back_off_and_the_others_go_on() {
    let s = setup("loose_retry");
    let db = &s.staging;
    add_families(db, 700_001, 20, 2);
    // The application refuses to lose the children of one parent.
    exec(
        db,
        "CREATE FUNCTION keep() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN IF OLD.chat_name_id = 700007 THEN RAISE EXCEPTION 'kept by the application'; END IF; RETURN OLD; END $$;
         CREATE TRIGGER keep BEFORE DELETE ON ci_pipeline_chat_data FOR EACH ROW EXECUTE FUNCTION keep();
         DELETE FROM chat_names WHERE id BETWEEN 700001 AND 700020;",
    );
    let out = cleanup(&s, &[]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert!(stdout(&out).contains("1 rescheduled"), "{}", stdout(&out));
    assert_eq!(orphans(db), 2, "only the refused parent's children stay");
    assert_eq!(archived(db), 38);
    let queue = fkctl::kinds::foreign_key::loose::LooseObjects::new(
        &fkctl::sql::ident::Ident::from_catalog("fkctl"),
        &format!("remove-fk-{}", "loose_retry"),
    )
    .queue()
    .quoted();
    assert_eq!(
        scalar_i64(
            db,
            &format!("SELECT count(*) FROM {queue} WHERE id = 700007 AND fkctl_attempts = 1 AND fkctl_next_attempt_at > now() AND fkctl_last_error LIKE '%kept by the application%'")
        ),
        1,
        "the failing key waits, with its error"
    );
    assert_eq!(
        scalar_i64(db, "SELECT rescheduled FROM fkctl.loose_counters"),
        1
    );
    // The next run does not try it again before its back-off is over.
    let out = cleanup(&s, &[]);
    assert!(stdout(&out).contains("0 rescheduled"), "{}", stdout(&out));
}
