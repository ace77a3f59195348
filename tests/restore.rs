//! `fkctl restore` against a real PostgreSQL: rows come back exactly as the
//! rollback archived them, or the restore is refused before any row moves,
//! naming the columns that cannot come back and why.
//!
//! Each case: the seed table (shaped by the test), a copy of it taken before
//! anything happens, an fkctl drop, a tenth of the parents deleted, an fkctl
//! rollback that archives the orphans, the parents put back, then restore.

mod common;

use common::staged::{present, Setup};
use common::*;
use fkctl::testkit::TestDatabase;
use std::process::Output;

const ORIGINAL_COLUMNS: &str = "id, pipeline_id, chat_name_id, response_url";

struct Case {
    s: Setup,
    run_id: String,
    orphans: i64,
    rows: i64,
}

impl Case {
    /// Shapes the child table with `schema_sql`, copies it to `before_rows`,
    /// then drop, orphans, rollback (archiving them), parents back.
    fn rolled_back(tag: &str, schema_sql: &str) -> Case {
        Case::rolled_back_with(tag, "{ batch_size: 50 }", schema_sql)
    }

    /// As [`Case::rolled_back`], with the playbook's `rollback` settings
    /// (`orphans: nullify` keeps the rows and archives their old keys).
    fn rolled_back_with(tag: &str, rollback: &str, schema_sql: &str) -> Case {
        let nullify = rollback.contains("nullify");
        let s = Setup::with_rollback(tag, "{ lock_timeout: 300ms }", rollback);
        if !schema_sql.is_empty() {
            exec(&s.staging, schema_sql);
        }
        exec(
            &s.staging,
            "CREATE TABLE before_rows AS TABLE ci_pipeline_chat_data",
        );
        let rows = scalar_i64(&s.staging, "SELECT count(*) FROM ci_pipeline_chat_data");
        let out = s.drop(&["--env", "staging", "--yes"]);
        assert!(out.status.success(), "drop: {}", stderr(&out));
        exec(
            &s.staging,
            "CREATE TABLE deleted_parents AS SELECT * FROM chat_names WHERE id % 10 = 0;
             DELETE FROM chat_names WHERE id % 10 = 0;",
        );
        let path = s.playbook.display().to_string();
        let out = s.run(&[
            "rollback", &path, "--env", "staging", "--yes", "--output", "json",
        ]);
        assert!(out.status.success(), "rollback: {}", stderr(&out));
        let summary: serde_json::Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("bad JSON ({e}): {}", stdout(&out)));
        let run_id = summary["run_id"].as_str().unwrap_or_default().to_string();
        assert!(!run_id.is_empty(), "{summary}");
        let orphans = scalar_i64(&s.staging, "SELECT count(*) FROM fkctl.archive");
        assert!(orphans > 100, "{orphans}");
        let kept = scalar_i64(&s.staging, "SELECT count(*) FROM ci_pipeline_chat_data");
        if nullify {
            assert_eq!(kept, rows, "nullify keeps every row");
            assert_eq!(
                scalar_i64(
                    &s.staging,
                    "SELECT count(*) FROM ci_pipeline_chat_data WHERE chat_name_id IS NULL"
                ),
                orphans
            );
        } else {
            assert_eq!(kept + orphans, rows);
        }
        exec(
            &s.staging,
            "INSERT INTO chat_names SELECT * FROM deleted_parents",
        );
        Case {
            s,
            run_id,
            orphans,
            rows,
        }
    }

    fn restore(&self, extra: &[&str]) -> Output {
        let path = self.s.playbook.display().to_string();
        let mut args = vec![
            "restore",
            path.as_str(),
            "--env",
            "staging",
            "--run",
            self.run_id.as_str(),
            "--yes",
        ];
        args.extend_from_slice(extra);
        self.s.run(&args)
    }

    /// `fkctl restore PLAYBOOK --run RUN --yes` with another playbook or run.
    fn restore_run(&self, playbook: &str, run: &str) -> Output {
        self.s.run(&[
            "restore", playbook, "--env", "staging", "--run", run, "--yes",
        ])
    }

    fn archived(&self) -> i64 {
        scalar_i64(&self.s.staging, "SELECT count(*) FROM fkctl.archive")
    }

    fn table_rows(&self) -> i64 {
        scalar_i64(
            &self.s.staging,
            "SELECT count(*) FROM ci_pipeline_chat_data",
        )
    }

    /// Rows that differ between the copy taken at the start and the table
    /// now, over `columns` (both ways, duplicates counted).
    fn differing_rows(&self, columns: &str) -> i64 {
        scalar_i64(
            &self.s.staging,
            &format!(
                "SELECT count(*) FROM ((SELECT {columns} FROM before_rows EXCEPT ALL SELECT {columns} FROM ci_pipeline_chat_data)
                 UNION ALL (SELECT {columns} FROM ci_pipeline_chat_data EXCEPT ALL SELECT {columns} FROM before_rows)) d"
            ),
        )
    }

    /// Nothing moved: every archived row is still in the archive, the table
    /// still lacks them.
    fn assert_nothing_moved(&self) {
        assert_eq!(self.archived(), self.orphans, "the archive is untouched");
        assert_eq!(
            self.table_rows(),
            self.rows - self.orphans,
            "no row went back"
        );
    }

    /// The journal's detail of the restore step that succeeded.
    fn restore_detail(&self) -> String {
        scalar_text(
            &self.s.staging,
            "SELECT s.detail FROM fkctl.steps s JOIN fkctl.runs r USING (run_id)
              WHERE r.operation = 'restore' AND s.step = 'restore-rows' AND s.outcome = 'ok'",
        )
    }
}

fn assert_success(out: &Output) {
    assert!(
        out.status.success(),
        "restore failed ({:?}):\n{}\n{}",
        out.status.code(),
        stdout(out),
        stderr(out)
    );
}

/// A stored generated column (and, on 18, a virtual one): PostgreSQL
/// computes it again; the INSERT does not list it.
#[test]
fn a_generated_column_is_computed_again_and_the_rows_come_back_whole() {
    let mut schema = "ALTER TABLE ci_pipeline_chat_data ADD COLUMN url_length integer GENERATED ALWAYS AS (length(response_url)) STORED;".to_string();
    let probe = database("rs_gen_probe");
    let virtual_too = server_version_num(&probe) >= 180000;
    drop(probe);
    if virtual_too {
        schema.push_str("ALTER TABLE ci_pipeline_chat_data ADD COLUMN url_host text GENERATED ALWAYS AS (split_part(response_url, '/', 3)) VIRTUAL;");
    }
    let case = Case::rolled_back("rs_gen", &schema);
    let out = case.restore(&[]);
    assert_success(&out);
    let expected = if virtual_too {
        "Generated column(s) url_length, url_host: PostgreSQL computes them again"
    } else {
        "Generated column(s) url_length: PostgreSQL computes them again"
    };
    assert!(stdout(&out).contains(expected), "{}", stdout(&out));
    assert_eq!(case.archived(), 0);
    assert_eq!(case.table_rows(), case.rows);
    assert_eq!(
        case.differing_rows("*"),
        0,
        "whole rows, generated included"
    );
}

/// An identity ALWAYS primary key: the original ids go back (OVERRIDING
/// SYSTEM VALUE), and the sequence is left alone.
#[test]
fn an_identity_always_key_keeps_its_original_values() {
    let case = Case::rolled_back(
        "rs_ident",
        "ALTER TABLE ci_pipeline_chat_data ALTER COLUMN id DROP DEFAULT;
         DROP SEQUENCE ci_pipeline_chat_data_id_seq;
         ALTER TABLE ci_pipeline_chat_data ALTER COLUMN id ADD GENERATED ALWAYS AS IDENTITY (START WITH 20001);",
    );
    let out = case.restore(&[]);
    assert_success(&out);
    assert!(
        stdout(&out).contains("Identity column(s) id (GENERATED ALWAYS)"),
        "{}",
        stdout(&out)
    );
    assert_eq!(case.archived(), 0);
    assert_eq!(case.differing_rows("*"), 0, "same ids, same rows");
    assert!(case.restore_detail().contains("OVERRIDING SYSTEM VALUE"));
    // The identity sequence did not move: the next row gets the next new id.
    exec(
        &case.s.staging,
        "INSERT INTO ci_pipeline_chat_data (pipeline_id, chat_name_id, response_url) VALUES (1, 1, 'x')",
    );
    assert_eq!(
        scalar_i64(&case.s.staging, "SELECT max(id) FROM ci_pipeline_chat_data"),
        20001
    );
}

/// Columns added after the rollback: restored rows get the column's default
/// (not NULL), the archived columns come back as they were.
#[test]
fn a_column_added_since_gets_its_default() {
    let case = Case::rolled_back("rs_added", "");
    exec(
        &case.s.staging,
        "ALTER TABLE ci_pipeline_chat_data ADD COLUMN origin text NOT NULL DEFAULT 'before';
         ALTER TABLE ci_pipeline_chat_data ALTER COLUMN origin SET DEFAULT 'restored';
         ALTER TABLE ci_pipeline_chat_data ADD COLUMN note text;",
    );
    let out = case.restore(&[]);
    assert_success(&out);
    assert!(
        stdout(&out).contains(
            "Column origin (text) was added since the rollback: restored rows get its default"
        ),
        "{}",
        stdout(&out)
    );
    assert!(
        stdout(&out)
            .contains("Column note (text) was added since the rollback: restored rows get NULL"),
        "{}",
        stdout(&out)
    );
    assert_eq!(case.archived(), 0);
    assert_eq!(case.differing_rows(ORIGINAL_COLUMNS), 0);
    assert_eq!(
        scalar_i64(
            &case.s.staging,
            "SELECT count(*) FROM ci_pipeline_chat_data WHERE origin = 'restored'"
        ),
        case.orphans
    );
}

/// A NOT NULL column with no default added after the rollback: nothing
/// could fill it, so the restore is refused before any row moves.
#[test]
fn a_not_null_column_without_default_added_since_is_refused() {
    let case = Case::rolled_back("rs_notnull", "");
    exec(
        &case.s.staging,
        "ALTER TABLE ci_pipeline_chat_data ADD COLUMN reviewer text NOT NULL DEFAULT 'x';
         ALTER TABLE ci_pipeline_chat_data ALTER COLUMN reviewer DROP DEFAULT;",
    );
    let out = case.restore(&[]);
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("reviewer (text) was added since the rollback, NOT NULL with no default"),
        "{err}"
    );
    case.assert_nothing_moved();
    assert_eq!(
        scalar_i64(
            &case.s.staging,
            "SELECT count(*) FROM fkctl.runs WHERE operation = 'restore'"
        ),
        0,
        "refused before the run started"
    );
}

/// A column dropped after the rollback: refused (its archived values would
/// be lost) unless --discard-dropped-columns says to go on; then the rows go
/// back without it and the journal says what was discarded.
#[test]
fn a_dropped_column_is_refused_unless_its_loss_is_accepted() {
    let case = Case::rolled_back("rs_dropped", "");
    exec(
        &case.s.staging,
        "ALTER TABLE ci_pipeline_chat_data DROP COLUMN response_url",
    );
    let out = case.restore(&[]);
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("response_url is in the archived rows but no longer in the table"),
        "{err}"
    );
    assert!(err.contains("would lose their archived values"), "{err}");
    assert!(err.contains("--discard-dropped-columns"), "{err}");
    case.assert_nothing_moved();

    let out = case.restore(&["--discard-dropped-columns"]);
    assert_success(&out);
    assert_eq!(case.archived(), 0);
    assert_eq!(case.table_rows(), case.rows);
    assert_eq!(
        case.differing_rows("id, pipeline_id, chat_name_id"),
        0,
        "the remaining columns come back as they were"
    );
    let detail = case.restore_detail();
    assert!(detail.contains("response_url"), "{detail}");
    assert!(detail.contains("discarded"), "{detail}");
}

/// A column whose type changed so that archived values no longer convert:
/// refused before any row moves, naming the column and its new type.
#[test]
fn a_type_change_that_archived_values_do_not_survive_is_refused_by_name() {
    let case = Case::rolled_back("rs_type", "");
    exec(
        &case.s.staging,
        "ALTER TABLE ci_pipeline_chat_data ALTER COLUMN response_url TYPE integer USING length(response_url)",
    );
    let out = case.restore(&[]);
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("response_url (now integer)"), "{err}");
    assert!(err.contains("22P02"), "{err}");
    assert!(!err.contains("column: pipeline_id"), "{err}");
    case.assert_nothing_moved();
}

/// A trigger that silently skips rows: the batch would take rows out of the
/// archive without putting them into the table, so it fails and rolls back.
#[test]
fn a_batch_the_table_does_not_take_whole_rolls_back() {
    let case = Case::rolled_back("rs_trigger", "");
    exec(
        &case.s.staging,
        "CREATE FUNCTION skip_odd() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN IF NEW.id % 20 = 7 THEN RETURN NULL; END IF; RETURN NEW; END $$;
         CREATE TRIGGER skip_odd BEFORE INSERT ON ci_pipeline_chat_data FOR EACH ROW EXECUTE FUNCTION skip_odd();",
    );
    let skipped = scalar_i64(
        &case.s.staging,
        "SELECT count(*) FROM (SELECT row_data FROM fkctl.archive ORDER BY id LIMIT 50) b WHERE (row_data->>'id')::int8 % 20 = 7",
    );
    assert!(
        skipped > 0 && skipped < 50,
        "the trigger skips some rows of the first batch: {skipped}"
    );
    let out = case.restore(&[]);
    assert_eq!(out.status.code(), Some(6), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains(&format!("a restore batch was refused: 50 archived row(s) left the archive but {} went into the table", 50 - skipped)),
        "{err}"
    );
    assert!(
        stdout(&out).contains("Trigger(s) skip_odd on ci_pipeline_chat_data (BEFORE INSERT)"),
        "{}",
        stdout(&out)
    );
    case.assert_nothing_moved();
}

/// The application has written a row with the primary key of an archived
/// row since the rollback: that row waits in the archive (exit 4, named as
/// such), every other row goes back, and once the live row is gone the same
/// restore finishes, whole rows equal to the originals.
#[test]
fn a_row_whose_key_the_application_reused_waits_and_the_others_go_back() {
    let case = Case::rolled_back("rs_reused", "");
    let reused = scalar_i64(
        &case.s.staging,
        "SELECT min((row_data->>'id')::int8) FROM fkctl.archive",
    );
    exec(
        &case.s.staging,
        &format!("INSERT INTO ci_pipeline_chat_data (id, pipeline_id, chat_name_id, response_url) VALUES ({reused}, 1, 1, 'written since')"),
    );
    let out = case.restore(&[]);
    assert_refused(
        &out,
        4,
        "1 archived row(s) stay in the archive: 1 have an identity a live row has taken since the rollback",
    );
    assert_eq!(case.archived(), 1, "{}", stdout(&out));
    assert_eq!(case.table_rows(), case.rows);
    exec(
        &case.s.staging,
        &format!("DELETE FROM ci_pipeline_chat_data WHERE id = {reused}"),
    );
    assert_success(&case.restore(&[]));
    assert_eq!(case.archived(), 0);
    assert_eq!(
        case.differing_rows("*"),
        0,
        "whole rows equal the originals"
    );
}

/// rollback -> restore on a table with many types, NULLs, a quoted column
/// name, an identity ALWAYS key and a generated column: the table ends
/// exactly as it started, whole rows compared.
#[test]
fn a_rollback_then_restore_gives_back_the_original_rows() {
    let case = Case::rolled_back(
        "rs_round",
        r#"ALTER TABLE ci_pipeline_chat_data ALTER COLUMN id DROP DEFAULT;
           DROP SEQUENCE ci_pipeline_chat_data_id_seq;
           ALTER TABLE ci_pipeline_chat_data ALTER COLUMN id ADD GENERATED ALWAYS AS IDENTITY (START WITH 20001);
           ALTER TABLE ci_pipeline_chat_data
             ADD COLUMN "Mixed Case" text,
             ADD COLUMN amount numeric(12,4),
             ADD COLUMN ratio double precision,
             ADD COLUMN seen_at timestamptz,
             ADD COLUMN day date,
             ADD COLUMN tags text[],
             ADD COLUMN payload jsonb,
             ADD COLUMN blob bytea,
             ADD COLUMN flag boolean,
             ADD COLUMN wait interval,
             ADD COLUMN url_length integer GENERATED ALWAYS AS (length(response_url)) STORED;
           UPDATE ci_pipeline_chat_data SET
             "Mixed Case" = CASE WHEN id % 3 = 0 THEN NULL ELSE 'it''s "quoted" ' || id END,
             amount = id / 7.0,
             ratio = CASE WHEN id % 11 = 0 THEN 'NaN'::float8 ELSE id / 3.0 END,
             seen_at = '2024-03-01 12:00:00.123456+02'::timestamptz + id * interval '1 minute',
             day = date '2024-01-01' + (id % 400)::int,
             tags = CASE WHEN id % 5 = 0 THEN NULL ELSE ARRAY['a', NULL, 'b,' || id] END,
             payload = jsonb_build_object('n', id, 'nested', jsonb_build_array(1, 'two', NULL)),
             blob = decode(md5(id::text), 'hex'),
             flag = CASE WHEN id % 7 = 0 THEN NULL ELSE id % 2 = 0 END,
             wait = id * interval '1.5 seconds';"#,
    );
    let out = case.restore(&[]);
    assert_success(&out);
    assert_eq!(case.archived(), 0);
    assert_eq!(case.table_rows(), case.rows);
    assert_eq!(
        case.differing_rows("*"),
        0,
        "whole rows equal the originals"
    );
    let detail = case.restore_detail();
    assert!(
        detail.starts_with(&format!("{} row(s) restored", case.orphans)),
        "{detail}"
    );
}

/// Values jsonb would rewrite come back as they were: a `json` column's
/// text (spacing, key order, a repeated key), an array whose lower bound is
/// not 1, a floating-point `-0`. The rows stay in the rollback's table of
/// the child's shape until they go back: a restore refused (no parent back
/// yet) leaves them there, the general archive empty.
#[test]
fn values_jsonb_would_rewrite_come_back_as_they_were() {
    let case = Case::rolled_back(
        "rs_exact",
        r#"ALTER TABLE ci_pipeline_chat_data
             ADD COLUMN doc json, ADD COLUMN from_zero int[], ADD COLUMN minus_zero float8;
           UPDATE ci_pipeline_chat_data SET
             doc = '{"b" : 1,   "a": [1.50, 2e3], "a": "\u0041"}',
             from_zero = '[0:2]={7,8,9}',
             minus_zero = '-0';"#,
    );
    let archive_rows = "SELECT count(*) FROM fkctl.archived_rows";
    let typed_rows = || {
        typed_tables(&case.s.staging)
            .iter()
            .map(|t| t.1)
            .sum::<i64>()
    };
    assert_eq!(typed_rows(), case.orphans);
    exec(
        &case.s.staging,
        "DELETE FROM chat_names WHERE id IN (SELECT id FROM deleted_parents)",
    );
    let out = case.restore(&[]);
    assert_refused(&out, 4, "has its parent back");
    assert_eq!(
        typed_rows(),
        case.orphans,
        "still in the table of the child's shape"
    );
    assert_eq!(
        scalar_i64(&case.s.staging, archive_rows),
        0,
        "nothing filed"
    );
    exec(
        &case.s.staging,
        "INSERT INTO chat_names SELECT * FROM deleted_parents",
    );
    assert_success(&case.restore(&[]));
    assert_eq!(case.archived(), 0);
    assert_eq!(scalar_i64(&case.s.staging, archive_rows), 0);
    assert_eq!(case.table_rows(), case.rows);
    assert_eq!(
        case.differing_rows("id, doc::text, from_zero::text, minus_zero::text"),
        0,
        "every value's text as it was"
    );
    assert_eq!(
        scalar_i64(
            &case.s.staging,
            "SELECT count(*) FROM ci_pipeline_chat_data WHERE minus_zero::text = '-0' AND array_lower(from_zero, 1) = 0 AND doc::text LIKE '%\\u0041%'"
        ),
        case.rows
    );
}

/// Whole batches whose rows must all wait (their parent is missing again)
/// do not end the restore: every batch of the list is taken, every row
/// that can go back does, the others stay archived, exit 4 with the count.
/// Deleted rows (copied back from the table of the child's shape) and
/// nullified keys (found by identity in the jsonb archive) alike.
#[test]
fn batches_whose_rows_all_wait_do_not_end_the_restore() {
    for (tag, rollback, schema) in [
        ("rs_wait_rows", "{ batch_size: 50 }", ""),
        (
            "rs_wait_keys",
            "{ orphans: nullify, batch_size: 50 }",
            NULLABLE_KEY,
        ),
    ] {
        let case = Case::rolled_back_with(tag, rollback, schema);
        // The parents of the first three batches' rows (in the order
        // restore lists them) go missing again.
        let nullify = rollback.contains("nullify");
        let first_rows = if nullify {
            "SELECT (row_data->>'chat_name_id')::int8 FROM fkctl.archived_rows ORDER BY id LIMIT 150".to_string()
        } else {
            let table = quote(&typed_tables(&case.s.staging)[0].0);
            format!("SELECT chat_name_id FROM fkctl.{table} ORDER BY ctid LIMIT 150")
        };
        exec(
            &case.s.staging,
            &format!("DELETE FROM chat_names WHERE id IN ({first_rows})"),
        );
        let waiting = scalar_i64(
            &case.s.staging,
            "SELECT count(*) FROM fkctl.archive a WHERE NOT EXISTS (SELECT FROM chat_names WHERE id = (a.row_data->>'chat_name_id')::int8)",
        );
        assert!(
            waiting >= 150 && waiting < case.orphans,
            "{waiting} of {}",
            case.orphans
        );
        let out = case.restore(&[]);
        // "N still lack their parent row" / "N row(s): their parent row is still missing"
        assert_refused(&out, 4, &format!("{waiting} "));
        assert!(stderr(&out).contains("parent row"), "{}", stderr(&out));
        assert_eq!(
            case.archived(),
            waiting,
            "{tag}: only the rows that wait stay"
        );
        if nullify {
            assert_eq!(
                scalar_i64(
                    &case.s.staging,
                    "SELECT count(*) FROM ci_pipeline_chat_data WHERE chat_name_id IS NULL"
                ),
                waiting,
                "{tag}"
            );
        } else {
            assert_eq!(case.table_rows(), case.rows - waiting, "{tag}");
        }
    }
}

/// A run named with `--run` belongs to one change: another playbook's
/// restore of it is refused before any row moves (it would put rows back
/// by that playbook's table and keys), and the right playbook still can.
#[test]
fn another_change_s_run_is_refused_and_stays_archived() {
    let case = Case::rolled_back("rs_other", "");
    let text = std::fs::read_to_string(&case.s.playbook).unwrap_or_else(|e| panic!("{e}"));
    let other = case.s.playbook.with_file_name("other-change.yml");
    let renamed = text.replacen("change: ", "change: other-", 1);
    assert_ne!(renamed, text, "the playbook names its change");
    std::fs::write(&other, renamed).unwrap_or_else(|e| panic!("{e}"));
    let out = case.restore_run(&other.display().to_string(), &case.run_id);
    assert_refused(&out, 4, "not of this playbook's change");
    case.assert_nothing_moved();
    assert_success(&case.restore(&[]));
    assert_eq!(case.differing_rows("*"), 0);
}

/// `--output json`: the run's archive before and after, on stdout alone.
#[test]
fn restore_reports_what_went_back_as_json() {
    let case = Case::rolled_back("rs_json", "");
    let out = case.restore(&["--output", "json"]);
    assert_success(&out);
    let doc: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", stdout(&out)));
    assert_eq!(doc["schema_version"], 1);
    assert_eq!(doc["outcome"], "restored");
    assert_eq!(doc["archived_before"], case.orphans);
    assert_eq!(doc["restored"], case.orphans);
    assert_eq!(doc["archived_after"], 0);
    assert_eq!(case.archived(), 0);
}

/// A partitioned child with a generated column: every row goes back into
/// the partition it came from, whole.
#[test]
fn a_partitioned_child_gets_its_rows_back_in_their_partitions() {
    let db = database("rs_part");
    exec(
        &db,
        r#"CREATE SCHEMA shop;
           CREATE TABLE shop.customer (id int PRIMARY KEY);
           INSERT INTO shop.customer SELECT g FROM generate_series(1, 500) g;
           CREATE TABLE shop.payment (id bigint NOT NULL, customer_id int, amount numeric(10,2) NOT NULL, paid_on date NOT NULL,
                                      amount_cents bigint GENERATED ALWAYS AS ((amount * 100)::bigint) STORED)
               PARTITION BY RANGE (paid_on);
           CREATE TABLE shop.payment_2025 PARTITION OF shop.payment FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
           CREATE TABLE shop."Payment 2026" PARTITION OF shop.payment FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
           ALTER TABLE shop.payment ADD CONSTRAINT payment_customer_fk FOREIGN KEY (customer_id) REFERENCES shop.customer (id);
           INSERT INTO shop.payment (id, customer_id, amount, paid_on)
           SELECT g, CASE WHEN g % 17 = 0 THEN NULL ELSE 1 + g % 500 END, g / 3.0, date '2025-06-01' + (g % 400)
             FROM generate_series(1, 5000) g;
           CREATE TABLE before_rows AS SELECT tableoid::regclass::text AS part, * FROM shop.payment;"#,
    );
    let dir = TempDir::new("rs_part");
    let path = dir.write(
        "payment.yml",
        &format!(
            "{}rollback: {{ batch_size: 100 }}\n",
            playbook("  name: payment_customer_fk\n  table: shop.payment\n  columns: [customer_id]\n  references: { table: shop.customer, columns: [id] }")
        ),
    );
    let out = run_env("drop", &path, &db, &["--yes"]);
    assert!(out.status.success(), "drop: {}", stderr(&out));
    exec(
        &db,
        "CREATE TABLE gone AS SELECT * FROM shop.customer WHERE id % 10 = 0; DELETE FROM shop.customer WHERE id % 10 = 0;",
    );
    let summary = json("rollback", &path, &db, &["--yes"]);
    let run_id = summary["run_id"].as_str().unwrap_or_default().to_string();
    let archived = scalar_i64(&db, "SELECT count(*) FROM fkctl.archive");
    assert!(archived > 100, "{archived}");
    assert!(
        scalar_i64(
            &db,
            "SELECT count(DISTINCT source_table) FROM fkctl.archive"
        ) == 2,
        "orphans in both partitions"
    );
    exec(&db, "INSERT INTO shop.customer SELECT * FROM gone");
    let out = run_env("restore", &path, &db, &["--run", &run_id, "--yes"]);
    assert_success(&out);
    assert_eq!(scalar_i64(&db, "SELECT count(*) FROM fkctl.archive"), 0);
    assert_eq!(
        scalar_i64(
            &db,
            "SELECT count(*) FROM ((TABLE before_rows EXCEPT ALL SELECT tableoid::regclass::text, * FROM shop.payment)
              UNION ALL (SELECT tableoid::regclass::text, * FROM shop.payment EXCEPT ALL TABLE before_rows)) d"
        ),
        0,
        "whole rows, each in its partition"
    );
}

// ------------------------------------------------------- nullified keys

const NULLABLE_KEY: &str =
    "ALTER TABLE ci_pipeline_chat_data ALTER COLUMN chat_name_id DROP NOT NULL;";

impl Case {
    fn archived_of_run(&self) -> i64 {
        scalar_i64(
            &self.s.staging,
            &format!(
                "SELECT count(*) FROM fkctl.archive WHERE run_id = '{}'",
                self.run_id
            ),
        )
    }

    /// The archived nullified row with the `n`-th smallest id: (id, old key).
    fn nullified_row(&self, n: i64) -> (i64, i64) {
        let sql = format!(
            "SELECT (row_data->>'id')::int8, (row_data->>'chat_name_id')::int8 FROM fkctl.archive ORDER BY (row_data->>'id')::int8 OFFSET {n} LIMIT 1"
        );
        let mut client = self.s.staging.connect().unwrap_or_else(|e| panic!("{e}"));
        let row = client
            .query_one(sql.as_str(), &[])
            .unwrap_or_else(|e| panic!("{e}\n{sql}"));
        (row.get(0), row.get(1))
    }
}

/// An application transaction updates a nullified row (another column)
/// and commits while the restore waits for that row: the restore still
/// puts its key back (it locks the batch's rows first, then updates them as
/// the application left them), and the application's change stays.
#[test]
fn a_row_the_application_updates_during_the_restore_still_gets_its_key_back() {
    let case = Case::rolled_back_with(
        "rs_null_busy",
        "{ orphans: nullify, batch_size: 50 }",
        NULLABLE_KEY,
    );
    let busy: i64 = scalar_i64(
        &case.s.staging,
        "SELECT min(id) FROM ci_pipeline_chat_data WHERE chat_name_id IS NULL",
    );
    let mut app = case.s.staging.connect().unwrap_or_else(|e| panic!("{e}"));
    let mut tx = app.transaction().unwrap_or_else(|e| panic!("{e}"));
    tx.execute(
        "UPDATE ci_pipeline_chat_data SET response_url = response_url || '#seen' WHERE id = $1",
        &[&busy],
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let path = case.s.playbook.display().to_string();
    let restore = case
        .s
        .command(&[
            "restore",
            &path,
            "--env",
            "staging",
            "--run",
            &case.run_id,
            "--yes",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{e}"));
    // Once the restore waits for the row (within the playbook's lock
    // timeout), the application commits.
    let mut watch = case.s.staging.connect().unwrap_or_else(|e| panic!("{e}"));
    let started = std::time::Instant::now();
    loop {
        let waiting: i64 = watch
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'",
                &[],
            )
            .unwrap_or_else(|e| panic!("{e}"))
            .get(0);
        if waiting > 0 {
            break;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(20),
            "the restore never waited for the row"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    tx.commit().unwrap_or_else(|e| panic!("{e}"));
    let out = restore.wait_with_output().unwrap_or_else(|e| panic!("{e}"));
    assert_success(&out);
    assert_eq!(case.archived_of_run(), 0, "{}", stdout(&out));
    assert_eq!(
        case.differing_rows("id, pipeline_id, chat_name_id"),
        0,
        "every key is back"
    );
    assert_eq!(
        scalar_i64(
            &case.s.staging,
            &format!("SELECT count(*) FROM ci_pipeline_chat_data WHERE id = {busy} AND response_url LIKE '%#seen'")
        ),
        1,
        "the application's change stays"
    );
}

/// rollback with nullify -> parents back -> restore: every key goes back
/// into its row, found by the primary key recorded at rollback time, and
/// the table ends exactly as it started, whole rows compared.
#[test]
fn nullified_keys_go_back_and_every_row_equals_its_original() {
    let case = Case::rolled_back_with(
        "rs_null",
        "{ orphans: nullify, batch_size: 50 }",
        NULLABLE_KEY,
    );
    assert_eq!(
        scalar_i64(
            &case.s.staging,
            "SELECT count(*) FROM fkctl.archive WHERE action = 'nullify' AND identity_columns = ARRAY['id']"
        ),
        case.orphans,
        "each nullified row is archived with the columns that find it again"
    );
    assert_eq!(case.differing_rows("*"), 2 * case.orphans);
    let out = case.restore(&[]);
    assert_success(&out);
    assert_eq!(case.archived_of_run(), 0, "{}", stdout(&out));
    assert_eq!(case.table_rows(), case.rows);
    assert_eq!(
        case.differing_rows("*"),
        0,
        "whole rows equal the originals"
    );
    assert!(present(&case.s.staging));
    let detail = scalar_text(
        &case.s.staging,
        "SELECT s.detail FROM fkctl.steps s JOIN fkctl.runs r USING (run_id)
          WHERE r.operation = 'restore' AND s.step = 'restore-keys' AND s.outcome = 'ok'",
    );
    assert!(
        detail.starts_with(&format!("{} row(s) restored", case.orphans)),
        "{detail}"
    );
}

/// A row the application gave a key since the nullify keeps that key (and
/// its old one stays archived), as do a row deleted since and rows whose
/// parent is missing again; every other row gets its key back. Exit 4, with
/// the counts.
#[test]
fn a_row_the_application_changed_since_stays_archived_and_unchanged() {
    let case = Case::rolled_back_with(
        "rs_null_chg",
        "{ orphans: nullify, batch_size: 50 }",
        NULLABLE_KEY,
    );
    let (changed, _) = case.nullified_row(0);
    let (gone, _) = case.nullified_row(1);
    let (_, missing_parent) = case.nullified_row(2);
    exec(
        &case.s.staging,
        &format!(
            "UPDATE ci_pipeline_chat_data SET chat_name_id = 1 WHERE id = {changed};
             DELETE FROM ci_pipeline_chat_data WHERE id = {gone};
             DELETE FROM chat_names WHERE id = {missing_parent};"
        ),
    );
    let orphaned_again = scalar_i64(
        &case.s.staging,
        &format!("SELECT count(*) FROM fkctl.archive WHERE (row_data->>'chat_name_id')::int8 = {missing_parent} AND (row_data->>'id')::int8 NOT IN ({changed}, {gone})"),
    );
    assert!(orphaned_again > 0);
    let out = case.restore(&[]);
    assert_eq!(
        out.status.code(),
        Some(4),
        "{}\n{}",
        stdout(&out),
        stderr(&out)
    );
    let err = stderr(&out);
    assert!(
        err.contains("1 row(s): the application has set their key"),
        "{err}"
    );
    assert!(
        err.contains("1 row(s): no row of the table has their identity"),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "{orphaned_again} row(s): their parent row is still missing"
        )),
        "{err}"
    );
    assert_eq!(case.archived_of_run(), 2 + orphaned_again);
    assert_eq!(
        scalar_i64(
            &case.s.staging,
            &format!("SELECT chat_name_id FROM ci_pipeline_chat_data WHERE id = {changed}")
        ),
        1,
        "the application's value stays"
    );
    assert_eq!(
        scalar_i64(
            &case.s.staging,
            &format!("SELECT count(*) FROM fkctl.archive WHERE (row_data->>'id')::int8 IN ({changed}, {gone})")
        ),
        2,
        "their old keys stay archived"
    );
    assert_eq!(
        scalar_i64(
            &case.s.staging,
            "SELECT count(*) FROM ci_pipeline_chat_data t JOIN before_rows b USING (id)
              WHERE (t.*)::text IS DISTINCT FROM (b.*)::text
                AND t.id NOT IN (SELECT (row_data->>'id')::int8 FROM fkctl.archive)"
        ),
        0,
        "every row that left the archive equals its original"
    );
}

/// Without a primary key, a unique index on NOT NULL columns finds the rows.
#[test]
fn a_unique_index_on_not_null_columns_serves_as_the_row_identity() {
    let case = Case::rolled_back_with(
        "rs_null_uq",
        "{ orphans: nullify, batch_size: 50 }",
        "ALTER TABLE ci_pipeline_chat_data ALTER COLUMN chat_name_id DROP NOT NULL, DROP CONSTRAINT ci_pipeline_chat_data_pkey;
         CREATE UNIQUE INDEX by_pipeline ON ci_pipeline_chat_data (pipeline_id);",
    );
    assert_eq!(
        scalar_i64(
            &case.s.staging,
            "SELECT count(*) FROM fkctl.archive WHERE identity_columns = ARRAY['pipeline_id']"
        ),
        case.orphans
    );
    let out = case.restore(&[]);
    assert_success(&out);
    assert_eq!(case.archived_of_run(), 0);
    assert_eq!(case.differing_rows("*"), 0);
}

/// No primary key, no replica-identity index, and only unique indexes that
/// cannot identify a row (partial, on an expression, on a nullable column):
/// the nullify rollback is refused before any change, naming the table.
#[test]
fn nullify_without_a_row_identity_is_refused_before_any_change() {
    let s = Setup::with_rollback(
        "rs_null_noid",
        "{ lock_timeout: 300ms }",
        "{ orphans: nullify }",
    );
    exec(
        &s.staging,
        "ALTER TABLE ci_pipeline_chat_data ALTER COLUMN chat_name_id DROP NOT NULL, DROP CONSTRAINT ci_pipeline_chat_data_pkey;
         CREATE UNIQUE INDEX partial_id ON ci_pipeline_chat_data (id) WHERE id > 0;
         CREATE UNIQUE INDEX by_url ON ci_pipeline_chat_data (lower(response_url));
         CREATE UNIQUE INDEX by_key ON ci_pipeline_chat_data (id, chat_name_id);
         CREATE TABLE before_rows AS TABLE ci_pipeline_chat_data;",
    );
    let out = s.drop(&["--env", "staging", "--yes"]);
    assert!(out.status.success(), "drop: {}", stderr(&out));
    exec(&s.staging, "DELETE FROM chat_names WHERE id % 10 = 0");
    let path = s.playbook.display().to_string();
    let out = s.run(&["rollback", &path, "--env", "staging", "--yes"]);
    assert_eq!(
        out.status.code(),
        Some(4),
        "{}\n{}",
        stdout(&out),
        stderr(&out)
    );
    let err = stderr(&out);
    assert!(
        err.contains("public.ci_pipeline_chat_data has no primary key"),
        "{err}"
    );
    assert!(!present(&s.staging), "no ADD NOT VALID");
    assert_eq!(
        scalar_i64(
            &s.staging,
            "SELECT count(*) FROM ci_pipeline_chat_data WHERE chat_name_id IS NULL"
        ),
        0
    );
    assert_eq!(
        scalar_i64(
            &s.staging,
            "SELECT count(*) FROM (TABLE before_rows EXCEPT ALL TABLE ci_pipeline_chat_data) d"
        ),
        0,
        "no row changed"
    );
    assert_eq!(
        scalar_i64(
            &s.staging,
            "SELECT count(*) FROM pg_class WHERE relname = 'archived_rows'"
        ),
        0,
        "no archive written"
    );
}

/// The tables of a change's deleted rows (`fkctl.archive_tables`), oldest
/// first, each with its row count.
fn typed_tables(db: &TestDatabase) -> Vec<(String, i64)> {
    let mut client = db.connect().unwrap_or_else(|e| panic!("{e}"));
    let names: Vec<String> = client
        .query(
            "SELECT table_name FROM fkctl.archive_tables ORDER BY created_at, table_name",
            &[],
        )
        .unwrap_or_else(|e| panic!("{e}"))
        .iter()
        .map(|r| r.get(0))
        .collect();
    names
        .into_iter()
        .map(|n| {
            let rows = scalar_i64(db, &format!("SELECT count(*) FROM fkctl.{}", quote(&n)));
            (n, rows)
        })
        .collect()
}

fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Deleted rows are kept in a table of the child's own columns. When the
/// child's columns change between two rollbacks, the rows of the first
/// stay in their own table (renamed, still registered), the second gets a
/// new one, and restore files and puts back both runs exactly; an emptied
/// table of the old shape is dropped and made again instead.
#[test]
fn deleted_rows_keep_their_own_shape_across_a_change_of_the_child_s_columns() {
    let case = Case::rolled_back("rs_typed_shape", "");
    let first = typed_tables(&case.s.staging);
    assert_eq!(first.len(), 1, "{first:?}");
    assert_eq!(
        first[0].1, case.orphans,
        "the run's rows are in the table of the child's shape"
    );
    assert_eq!(
        scalar_i64(&case.s.staging, "SELECT count(*) FROM fkctl.archived_rows"),
        0,
        "nothing in the general archive"
    );
    // The child gains a column; a second drop and rollback orphan other rows.
    exec(
        &case.s.staging,
        "ALTER TABLE ci_pipeline_chat_data ADD COLUMN note text NOT NULL DEFAULT 'kept';
         ALTER TABLE before_rows ADD COLUMN note text NOT NULL DEFAULT 'kept';",
    );
    let out = case.s.drop(&["--env", "staging", "--yes"]);
    assert!(out.status.success(), "second drop: {}", stderr(&out));
    exec(
        &case.s.staging,
        "CREATE TABLE deleted_again AS SELECT * FROM chat_names WHERE id % 10 = 3;
         DELETE FROM chat_names WHERE id % 10 = 3;",
    );
    let path = case.s.playbook.display().to_string();
    let out = case.s.run(&[
        "rollback", &path, "--env", "staging", "--yes", "--output", "json",
    ]);
    assert!(out.status.success(), "second rollback: {}", stderr(&out));
    let summary: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}"));
    let second_run = summary["run_id"].as_str().unwrap_or_default().to_string();
    let tables = typed_tables(&case.s.staging);
    assert_eq!(tables.len(), 2, "{tables:?}");
    assert!(
        tables[0].0.starts_with(&format!("{}_", first[0].0)),
        "the first table was renamed and kept: {tables:?}"
    );
    assert_eq!(tables[0].1, case.orphans, "with the first run's rows");
    assert_eq!(
        tables[1].0, first[0].0,
        "the second run has a new table under the name"
    );
    let second = tables[1].1;
    assert!(second > 0);
    assert_eq!(
        scalar_i64(
            &case.s.staging,
            &format!(
                "SELECT count(*) FROM fkctl.{} WHERE note = 'kept'",
                quote(&tables[1].0)
            )
        ),
        second,
        "the new table has the new column"
    );
    assert_eq!(
        case.archived(),
        case.orphans + second,
        "the view shows both"
    );
    // Parents back; both runs restored.
    exec(
        &case.s.staging,
        "INSERT INTO chat_names SELECT * FROM deleted_again",
    );
    assert_success(&case.restore(&[]));
    let out = case.restore_run(&path, &second_run);
    assert_success(&out);
    assert_eq!(case.archived(), 0);
    assert_eq!(case.table_rows(), case.rows);
    assert_eq!(
        case.differing_rows("id, pipeline_id, chat_name_id, response_url, note"),
        0,
        "every row as it was"
    );
    // Emptied tables of the old shape: the next rollback drops and makes it again.
    exec(
        &case.s.staging,
        "ALTER TABLE ci_pipeline_chat_data DROP COLUMN note",
    );
    let out = case.s.drop(&["--env", "staging", "--yes"]);
    assert!(out.status.success(), "third drop: {}", stderr(&out));
    exec(&case.s.staging, "DELETE FROM chat_names WHERE id % 10 = 3");
    let out = case
        .s
        .run(&["rollback", &path, "--env", "staging", "--yes"]);
    assert!(out.status.success(), "third rollback: {}", stderr(&out));
    let tables = typed_tables(&case.s.staging);
    assert_eq!(tables.len(), 2, "{tables:?}");
    assert_eq!(
        tables[1],
        (first[0].0.clone(), second),
        "same name, the old shape's table dropped and made again"
    );
    assert_eq!(
        scalar_i64(&case.s.staging, &format!("SELECT count(*) FROM information_schema.columns WHERE table_schema = 'fkctl' AND table_name = '{}' AND column_name = 'note'", tables[1].0)),
        0,
        "without the dropped column"
    );
}
