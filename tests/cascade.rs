//! A rollback whose purge sets off other tables' ON DELETE actions: every
//! row the cascade deletes or changes is archived in the batch that purges
//! its child row, and `fkctl restore` puts the whole tree back, level by
//! level. Also what fkctl refuses (nothing changed) and the plan's tree.

mod common;

use common::*;
use fkctl::testkit::TestDatabase;
use std::path::PathBuf;

const CONSTRAINT: &str = "  name: fk_children_parent\n  table: public.children\n  columns: [parent_id]\n  references: { table: public.parents, columns: [id] }\n  on_delete: cascade";

/// 100 parents, 100 children (one each), 3 grandchildren per child hanging
/// off it by ON DELETE CASCADE; no foreign key from children to parents yet.
/// Values jsonb would not keep as they are: a `json` text with its spacing
/// and a repeated key, an array starting at 0, `-0`.
const TREE: &str = r#"
CREATE TABLE parents (id bigint PRIMARY KEY, name text);
CREATE TABLE children (id bigint PRIMARY KEY, parent_id bigint NOT NULL, note text, tags int[], weight float8);
CREATE TABLE grandchildren (id bigint PRIMARY KEY, child_id bigint NOT NULL REFERENCES children (id) ON DELETE CASCADE, body json);
INSERT INTO parents SELECT g, 'p' || g FROM generate_series(1, 100) g;
INSERT INTO children SELECT g, g, 'c' || g, '[0:1]={1,2}', '-0' FROM generate_series(1, 100) g;
INSERT INTO grandchildren SELECT g, 1 + (g - 1) % 100, ('{"n":  ' || g || ', "n": 0}')::json FROM generate_series(1, 300) g;
"#;

struct Tree {
    db: TestDatabase,
    _dir: TempDir,
    playbook: PathBuf,
    /// Tables copied before anything happens, compared after the restore.
    tables: Vec<&'static str>,
}

impl Tree {
    fn new(tag: &str, schema: &str, tables: &[&'static str]) -> Tree {
        let db = database(tag);
        exec(&db, schema);
        for t in tables {
            exec(&db, &format!("CREATE TABLE before_{t} AS TABLE {t}"));
        }
        let dir = TempDir::new(tag);
        let text = format!("{}rollback: {{ batch_size: 3 }}\n", playbook(CONSTRAINT));
        let playbook = dir.write("playbook.yml", &text);
        Tree {
            db,
            _dir: dir,
            playbook,
            tables: tables.to_vec(),
        }
    }

    fn count(&self, sql: &str) -> i64 {
        scalar_i64(&self.db, sql)
    }

    /// Parents 91..100 go: their 10 children become orphans.
    fn orphan(&self) {
        exec(&self.db, "DELETE FROM parents WHERE id > 90");
    }

    fn rollback(&self) -> String {
        let summary = json("rollback", &self.playbook, &self.db, &["--yes"]);
        assert_eq!(summary["outcome"], "restored", "{summary}");
        summary["run_id"].as_str().unwrap_or_default().to_string()
    }

    fn archived(&self, action: &str) -> i64 {
        self.count(&format!(
            "SELECT count(*) FROM fkctl.archive WHERE action = '{action}'"
        ))
    }

    fn restore(&self, run_id: &str) -> std::process::Output {
        run_env(
            "restore",
            &self.playbook,
            &self.db,
            &["--run", run_id, "--yes"],
        )
    }

    /// Parents 91..100 come back, then the restore of `run_id`, which must
    /// succeed; returns what it printed.
    fn bring_back(&self, run_id: &str) -> String {
        exec(
            &self.db,
            "INSERT INTO parents SELECT g, 'p' || g FROM generate_series(91, 100) g",
        );
        let out = self.restore(run_id);
        assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
        stdout(&out)
    }

    /// [`Tree::bring_back`], then every table as before and nothing left
    /// in the archive.
    fn bring_back_all(&self, run_id: &str) {
        self.bring_back(run_id);
        self.assert_as_before();
        assert_eq!(self.count("SELECT count(*) FROM fkctl.archive"), 0);
    }

    /// Every copied table holds exactly the rows it held at the start, each
    /// value's text as it was.
    fn assert_as_before(&self) {
        for t in &self.tables {
            let differ = self.count(&format!(
                "SELECT count(*) FROM ((SELECT r::text FROM {t} r EXCEPT ALL SELECT b::text FROM before_{t} b) UNION ALL (SELECT b::text FROM before_{t} b EXCEPT ALL SELECT r::text FROM {t} r)) d"
            ));
            assert_eq!(differ, 0, "{t} differs from its copy");
        }
    }
}

#[test]
fn grandchildren_deleted_by_the_cascade_are_archived_and_restored_exactly() {
    let t = Tree::new("cascade_grand", TREE, &["children", "grandchildren"]);
    t.orphan();
    let plan = run_env("plan", &t.playbook, &t.db, &["--rollback"]);
    assert!(plan.status.success(), "{}", stderr(&plan));
    let text = stdout(&plan);
    assert!(
        text.contains("Cascade tree below public.children"),
        "{text}"
    );
    assert!(
        text.contains(
            "public.grandchildren via grandchildren_child_id_fkey (child_id) ON DELETE CASCADE"
        ),
        "{text}"
    );
    let out = run_env("rollback", &t.playbook, &t.db, &["--yes"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("- public.grandchildren via grandchildren_child_id_fkey"),
        "{}",
        stdout(&out)
    );
    let run_id = t.count("SELECT count(DISTINCT run_id) FROM fkctl.archive");
    assert_eq!(run_id, 1);
    let run_id = scalar_text(&t.db, "SELECT min(run_id) FROM fkctl.archive");
    assert_eq!(t.count("SELECT count(*) FROM children"), 90);
    assert_eq!(t.count("SELECT count(*) FROM grandchildren"), 270);
    assert_eq!(t.archived("delete"), 10);
    assert_eq!(t.archived("cascade-delete"), 30);
    assert_eq!(
        t.count("SELECT count(*) FROM fkctl.archive WHERE action = 'cascade-delete' AND source_table = 'public.grandchildren' AND (row_data->>'child_id')::int > 90"),
        30
    );
    t.bring_back_all(&run_id);
}

#[test]
fn restore_waits_for_the_parents_and_puts_the_tree_back_in_order() {
    let t = Tree::new("cascade_order", TREE, &["children", "grandchildren"]);
    t.orphan();
    let run_id = t.rollback();
    // No parent back yet: nothing moves, children and grandchildren stay archived.
    let out = t.restore(&run_id);
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    assert!(stderr(&out).contains("cascade"), "{}", stderr(&out));
    assert_eq!(t.count("SELECT count(*) FROM fkctl.archive"), 40);
    // Half the parents back: their children and grandchildren come back, the rest wait.
    exec(
        &t.db,
        "INSERT INTO parents SELECT g, 'p' || g FROM generate_series(91, 95) g",
    );
    let out = t.restore(&run_id);
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    assert_eq!(t.count("SELECT count(*) FROM children"), 95);
    assert_eq!(t.count("SELECT count(*) FROM grandchildren"), 285);
    exec(
        &t.db,
        "INSERT INTO parents SELECT g, 'p' || g FROM generate_series(96, 100) g",
    );
    let out = t.restore(&run_id);
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    t.assert_as_before();
}

#[test]
fn set_null_grandchildren_and_great_grandchildren_come_back_exactly() {
    let schema = format!(
        "{TREE}
CREATE TABLE great_grandchildren (id bigint PRIMARY KEY, grandchild_id bigint NOT NULL REFERENCES grandchildren (id) ON DELETE CASCADE);
INSERT INTO great_grandchildren SELECT g, 1 + (g - 1) % 300 FROM generate_series(1, 600) g;
CREATE TABLE watchers (id bigint PRIMARY KEY, child_id bigint REFERENCES children (id) ON DELETE SET NULL, seen text);
INSERT INTO watchers SELECT g, 1 + (g - 1) % 100, 'w' || g FROM generate_series(1, 200) g;"
    );
    let t = Tree::new(
        "cascade_deep",
        &schema,
        &[
            "children",
            "grandchildren",
            "great_grandchildren",
            "watchers",
        ],
    );
    t.orphan();
    let inspect = run_env("inspect", &t.playbook, &t.db, &[]);
    let text = stdout(&inspect);
    assert!(
        text.contains("Cascade tree below public.children")
            && text.contains(
                "    - public.great_grandchildren via great_grandchildren_grandchild_id_fkey"
            )
            && text.contains(
                "  - public.watchers via watchers_child_id_fkey (child_id) ON DELETE SET NULL"
            ),
        "{text}"
    );
    let run_id = t.rollback();
    assert_eq!(t.archived("cascade-delete"), 30 + 60);
    assert_eq!(t.archived("cascade-set-null"), 20);
    assert_eq!(t.count("SELECT count(*) FROM great_grandchildren"), 540);
    assert_eq!(
        t.count("SELECT count(*) FROM watchers WHERE child_id IS NULL"),
        20
    );
    assert_eq!(
        t.count("SELECT count(*) FROM fkctl.archive WHERE action = 'cascade-set-null' AND identity_columns = ARRAY['id']"),
        20
    );
    // The application sets one watcher's key since: it is reported and left alone.
    exec(&t.db, "UPDATE watchers SET child_id = 1 WHERE id = 100");
    exec(
        &t.db,
        "INSERT INTO parents SELECT g, 'p' || g FROM generate_series(91, 100) g",
    );
    let out = t.restore(&run_id);
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    assert!(stderr(&out).contains("changed since"), "{}", stderr(&out));
    assert_eq!(t.count("SELECT child_id FROM watchers WHERE id = 100"), 1);
    assert_eq!(t.count("SELECT count(*) FROM fkctl.archive"), 1);
    exec(&t.db, "UPDATE watchers SET child_id = 100 WHERE id = 100");
    exec(&t.db, "DELETE FROM fkctl.archived_rows");
    t.assert_as_before();
}

#[test]
fn partitioned_children_and_grandchildren_are_archived_and_restored() {
    let schema = "
CREATE TABLE parents (id bigint PRIMARY KEY, name text);
CREATE TABLE children (id bigint, parent_id bigint NOT NULL, note text, PRIMARY KEY (id)) PARTITION BY RANGE (id);
CREATE TABLE children_low PARTITION OF children FOR VALUES FROM (1) TO (51);
CREATE TABLE children_high PARTITION OF children FOR VALUES FROM (51) TO (1000);
CREATE TABLE grandchildren (id bigint, child_id bigint NOT NULL REFERENCES children (id) ON DELETE CASCADE, body jsonb, PRIMARY KEY (id)) PARTITION BY RANGE (id);
CREATE TABLE grandchildren_a PARTITION OF grandchildren FOR VALUES FROM (1) TO (151);
CREATE TABLE grandchildren_b PARTITION OF grandchildren FOR VALUES FROM (151) TO (1000);
CREATE TABLE watchers (id bigint, child_id bigint REFERENCES children (id) ON DELETE SET NULL, PRIMARY KEY (id)) PARTITION BY HASH (id);
CREATE TABLE watchers_0 PARTITION OF watchers FOR VALUES WITH (MODULUS 2, REMAINDER 0);
CREATE TABLE watchers_1 PARTITION OF watchers FOR VALUES WITH (MODULUS 2, REMAINDER 1);
INSERT INTO parents SELECT g, 'p' || g FROM generate_series(1, 100) g;
INSERT INTO children SELECT g, g, 'c' || g FROM generate_series(1, 100) g;
INSERT INTO grandchildren SELECT g, 1 + (g - 1) % 100, jsonb_build_object('n', g) FROM generate_series(1, 300) g;
INSERT INTO watchers SELECT g, 1 + (g - 1) % 100 FROM generate_series(1, 200) g;
";
    let t = Tree::new(
        "cascade_parts",
        schema,
        &["children", "grandchildren", "watchers"],
    );
    t.orphan();
    let run_id = t.rollback();
    assert_eq!(t.count("SELECT count(*) FROM children"), 90);
    assert_eq!(t.count("SELECT count(*) FROM grandchildren"), 270);
    assert_eq!(t.archived("cascade-delete"), 30);
    assert_eq!(t.archived("cascade-set-null"), 20);
    t.bring_back_all(&run_id);
}

#[test]
fn each_level_is_kept_in_its_own_table_unless_its_types_or_later_columns_forbid() {
    // Reactions hang off the grandchildren and use the application's own
    // type: a table of their shape would depend on it, so they go to the
    // general archive as jsonb. The grandchildren gain a column after the
    // rollback: their table no longer matches, restore files it first.
    let schema = format!(
        "{TREE}
CREATE TYPE mood AS ENUM ('ok', 'sad');
CREATE TABLE reactions (id bigint PRIMARY KEY, grandchild_id bigint NOT NULL REFERENCES grandchildren (id) ON DELETE CASCADE, m mood);
INSERT INTO reactions SELECT g, g, 'sad' FROM generate_series(1, 300) g;"
    );
    let t = Tree::new("cascade_kept", &schema, &["children", "reactions"]);
    t.orphan();
    let run_id = t.rollback();
    let in_general = |source: &str| {
        t.count(&format!(
            "SELECT count(*) FROM fkctl.archived_rows WHERE source_table = '{source}'"
        ))
    };
    assert_eq!(t.archived("cascade-delete"), 30 + 30);
    assert_eq!(
        in_general("public.reactions"),
        30,
        "jsonb: the application's type"
    );
    assert_eq!(
        in_general("public.grandchildren"),
        0,
        "a table of their shape"
    );
    assert_eq!(
        t.count("SELECT count(*) FROM fkctl.cascade_archive_tables WHERE source_table = 'public.grandchildren' AND action = 'cascade-delete'"),
        1
    );
    assert_eq!(
        t.count(
            "SELECT count(*) FROM fkctl.archive_tables WHERE source_table <> 'public.children'"
        ),
        0,
        "an older fkctl takes every table registered here for the child's"
    );
    exec(
        &t.db,
        "ALTER TABLE grandchildren ADD COLUMN extra int DEFAULT 7",
    );
    let said = t.bring_back(&run_id);
    assert!(said.contains("30 archived row(s) filed"), "{said}");
    t.assert_as_before();
    assert_eq!(t.count("SELECT count(*) FROM grandchildren"), 300);
    assert_eq!(
        t.count("SELECT count(*) FROM grandchildren WHERE child_id > 90 AND extra = 7"),
        30,
        "the added column's default"
    );
    assert_eq!(t.count("SELECT count(*) FROM fkctl.archive"), 0);
}

/// An archive an older fkctl made has no registry of cascade levels' tables:
/// restore and prune read it as it is.
#[test]
fn an_archive_without_the_cascade_levels_registry_is_read_as_it_is() {
    let schema = "
CREATE TABLE parents (id bigint PRIMARY KEY, name text);
CREATE TABLE children (id bigint PRIMARY KEY, parent_id bigint NOT NULL, note text);
INSERT INTO parents SELECT g, 'p' || g FROM generate_series(1, 100) g;
INSERT INTO children SELECT g, g, 'c' || g FROM generate_series(1, 100) g;";
    let t = Tree::new("cascade_older", schema, &["children"]);
    t.orphan();
    let run_id = t.rollback();
    exec(&t.db, "DROP TABLE fkctl.cascade_archive_tables");
    let pb = t.playbook.display().to_string();
    let prune = run_env(
        "prune",
        &t.playbook,
        &t.db,
        &["--older-than", "1s", "--dry-run"],
    );
    assert!(prune.status.success(), "{pb}: {}", stderr(&prune));
    t.bring_back_all(&run_id);
}

#[test]
fn what_cannot_be_archived_is_refused_by_table_with_nothing_changed() {
    let schema = format!(
        "{TREE}
CREATE TABLE audit (child_id bigint REFERENCES children (id) ON DELETE SET NULL, what text);
INSERT INTO audit SELECT g, 'a' FROM generate_series(1, 100) g;
CREATE TABLE threads (id bigint PRIMARY KEY, reply_to bigint REFERENCES threads (id) ON DELETE CASCADE, child_id bigint REFERENCES children (id) ON DELETE CASCADE);
CREATE TABLE links (id bigint PRIMARY KEY, a bigint REFERENCES children (id) ON DELETE CASCADE, b bigint REFERENCES children (id) ON DELETE CASCADE);"
    );
    let t = Tree::new(
        "cascade_refused",
        &schema,
        &["children", "grandchildren", "audit"],
    );
    t.orphan();
    let plan = run_env("plan", &t.playbook, &t.db, &["--rollback"]);
    assert!(
        stdout(&plan).contains("refuses to purge"),
        "{}",
        stdout(&plan)
    );
    let out = run_env("rollback", &t.playbook, &t.db, &["--yes"]);
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("public.audit") && err.contains("no primary key"),
        "{err}"
    );
    assert!(
        err.contains("public.threads") && err.contains("references itself"),
        "{err}"
    );
    t.assert_as_before();
    assert_eq!(
        t.count("SELECT count(*) FROM pg_constraint WHERE conname = 'fk_children_parent'"),
        0
    );
}

#[test]
fn a_row_added_under_a_purged_row_fails_the_batch_instead_of_vanishing() {
    // A trigger stands in for a concurrent insert between the batch's read
    // of the grandchildren and the cascade: it adds one more grandchild.
    let schema = format!(
        "{TREE}
CREATE FUNCTION sneak() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN INSERT INTO grandchildren VALUES (1000 + OLD.id, OLD.id, NULL); RETURN OLD; END $$;
CREATE TRIGGER sneak BEFORE DELETE ON children FOR EACH ROW WHEN (OLD.id = 95) EXECUTE FUNCTION sneak();"
    );
    let t = Tree::new("cascade_race", &schema, &["grandchildren"]);
    t.orphan();
    let out = run_env("rollback", &t.playbook, &t.db, &["--yes"]);
    assert_eq!(out.status.code(), Some(6), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(
            "public.grandchildren: 9 row(s) archived but 10 row(s) deleted by the cascade"
        ),
        "{}",
        stderr(&out)
    );
    // The failing batch rolled back: child 95 and its grandchildren are in place.
    assert_eq!(t.count("SELECT count(*) FROM children WHERE id = 95"), 1);
    assert_eq!(
        t.count("SELECT count(*) FROM grandchildren WHERE child_id = 95"),
        3
    );
    let archived = t.count("SELECT count(*) FROM fkctl.archive WHERE action = 'cascade-delete'");
    let gone = 300 - t.count("SELECT count(*) FROM grandchildren");
    assert_eq!(
        archived, gone,
        "every grandchild that left its table is archived"
    );
}

/// Writes fkctl could not archive, refused before any change: a SET NULL
/// level whose key other rows reference with ON UPDATE CASCADE (setting it
/// would rewrite them), and a SET DEFAULT level whose key is part of its
/// primary key (a restore could not find the changed row again).
#[test]
fn a_cascade_that_would_set_off_updates_or_rewrite_row_identity_is_refused() {
    let schema = format!(
        "{TREE}
CREATE TABLE watches (id bigint PRIMARY KEY, child_id bigint REFERENCES children (id) ON DELETE SET NULL, UNIQUE (id, child_id));
CREATE TABLE watch_copies (id bigint PRIMARY KEY, watch_id bigint, child_id bigint, FOREIGN KEY (watch_id, child_id) REFERENCES watches (id, child_id) ON UPDATE CASCADE);
CREATE TABLE slots (child_id bigint DEFAULT 0 REFERENCES children (id) ON DELETE SET DEFAULT, seq int, PRIMARY KEY (child_id, seq));
INSERT INTO children VALUES (0, 1, 'the default');
INSERT INTO watches SELECT g, g FROM generate_series(1, 100) g;
INSERT INTO watch_copies SELECT g, g, g FROM generate_series(1, 100) g;
INSERT INTO slots SELECT g, 1 FROM generate_series(1, 100) g;"
    );
    let t = Tree::new(
        "cascade_updates",
        &schema,
        &[
            "children",
            "grandchildren",
            "watches",
            "watch_copies",
            "slots",
        ],
    );
    t.orphan();
    let out = run_env("rollback", &t.playbook, &t.db, &["--yes"]);
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("public.watch_copies (watch_copies_watch_id_child_id_fkey, ON UPDATE CASCADE referencing public.watches)"),
        "{err}"
    );
    assert!(
        err.contains("public.slots") && err.contains("row identity (child_id, seq)"),
        "{err}"
    );
    t.assert_as_before();
}

/// Nullified keys that other tables reference with an ON UPDATE action:
/// setting them to NULL would change those tables' rows, so the nullify is
/// refused before any change (archive-delete archives what deleting sets
/// off instead).
#[test]
fn a_nullify_that_would_set_off_update_actions_is_refused() {
    let schema = "
CREATE TABLE parents (id bigint PRIMARY KEY, name text);
CREATE TABLE children (id bigint PRIMARY KEY, parent_id bigint, note text, UNIQUE (id, parent_id));
CREATE TABLE copies (id bigint PRIMARY KEY, child_id bigint, parent_id bigint, FOREIGN KEY (child_id, parent_id) REFERENCES children (id, parent_id) ON UPDATE SET NULL);
INSERT INTO parents SELECT g, 'p' || g FROM generate_series(1, 100) g;
INSERT INTO children SELECT g, g, 'c' || g FROM generate_series(1, 100) g;
INSERT INTO copies SELECT g, g, g FROM generate_series(1, 100) g;";
    let t = Tree::new("nullify_updates", schema, &["children", "copies"]);
    let text = std::fs::read_to_string(&t.playbook).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(
        &t.playbook,
        text.replace(
            "rollback: { batch_size: 3 }",
            "rollback: { batch_size: 3, orphans: nullify }",
        ),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    t.orphan();
    let plan = run_env("plan", &t.playbook, &t.db, &["--rollback"]);
    assert!(
        stdout(&plan).contains("ON UPDATE SET NULL"),
        "{}",
        stdout(&plan)
    );
    let out = run_env("rollback", &t.playbook, &t.db, &["--yes"]);
    assert_refused(
        &out,
        4,
        "public.copies (copies_child_id_parent_id_fkey, ON UPDATE SET NULL referencing public.children)",
    );
    t.assert_as_before();
}

/// A foreign key with ON DELETE CASCADE added below the child after fkctl
/// read the (empty) cascade tree: the first batch's delete sets it off, the
/// batch's check sees the new key, and the batch rolls back with every row
/// in place; the next rollback plans the new tree and archives it all.
#[test]
fn a_cascade_added_during_the_rollback_rolls_the_batch_back_and_the_rerun_archives_it() {
    let schema = TREE.replace(
        "child_id bigint NOT NULL REFERENCES children (id) ON DELETE CASCADE",
        "child_id bigint NOT NULL",
    );
    let t = Tree::new("cascade_late", &schema, &["children", "grandchildren"]);
    // A first rollback (nothing to purge) puts the key in place and makes
    // fkctl's journal; fkctl drops it again, as in production.
    t.rollback();
    let out = run_env("drop", &t.playbook, &t.db, &["--yes"]);
    assert!(out.status.success(), "{}", stderr(&out));
    // When fkctl records the purge's start, after it read the tree.
    exec(
        &t.db,
        "CREATE FUNCTION public.add_cascade() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    IF NEW.step = 'purge-orphans' THEN
        ALTER TABLE public.grandchildren ADD FOREIGN KEY (child_id) REFERENCES public.children (id) ON DELETE CASCADE;
    END IF;
    RETURN NEW;
END $fn$;
CREATE TRIGGER add_cascade AFTER INSERT ON fkctl.steps FOR EACH ROW EXECUTE FUNCTION public.add_cascade();",
    );
    t.orphan();
    let out = run_env("rollback", &t.playbook, &t.db, &["--yes"]);
    assert_refused(
        &out,
        6,
        "grandchildren_child_id_fkey on public.grandchildren is new",
    );
    assert_eq!(
        t.count("SELECT count(*) FROM children"),
        100,
        "the batch rolled back"
    );
    assert_eq!(t.count("SELECT count(*) FROM grandchildren"), 300);
    exec(&t.db, "DROP TRIGGER add_cascade ON fkctl.steps");
    t.rollback();
    assert_eq!(t.count("SELECT count(*) FROM grandchildren"), 270);
    assert_eq!(t.archived("delete"), 10);
    assert_eq!(t.archived("cascade-delete"), 30);
}

#[test]
fn the_change_request_shows_the_cascade_tree_with_the_live_evidence() {
    let schema = format!(
        "{TREE}
CREATE TABLE great_grandchildren (id bigint PRIMARY KEY, grandchild_id bigint NOT NULL REFERENCES grandchildren (id) ON DELETE CASCADE);"
    );
    let t = Tree::new("cascade_cr", &schema, &[]);
    let out = run_env("change-request", &t.playbook, &t.db, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("- public.grandchildren via grandchildren\\_child\\_id\\_fkey (child\\_id) ON DELETE CASCADE"),
        "{text}"
    );
    assert!(
        text.contains(
            "  - public.great\\_grandchildren via great\\_grandchildren\\_grandchild\\_id\\_fkey"
        ),
        "{text}"
    );
    assert!(!text.contains("The rollback purge is refused"), "{text}");
}

#[test]
fn set_default_grandchildren_get_their_keys_back_where_the_default_is_still_there() {
    let schema = format!(
        "{TREE}
CREATE TABLE subscriptions (id bigint PRIMARY KEY, child_id bigint NOT NULL DEFAULT 1 REFERENCES children (id) ON DELETE SET DEFAULT, plan text);
INSERT INTO subscriptions SELECT g, 1 + (g - 1) % 100, 'plan' || g FROM generate_series(1, 200) g;"
    );
    let t = Tree::new(
        "cascade_default",
        &schema,
        &["children", "grandchildren", "subscriptions"],
    );
    t.orphan();
    let run_id = t.rollback();
    assert_eq!(t.archived("cascade-set-default"), 20);
    assert_eq!(
        t.count("SELECT count(*) FROM fkctl.archived_rows WHERE action = 'cascade-set-default' AND written_keys = '{\"child_id\": 1}'"),
        20
    );
    assert_eq!(
        t.count("SELECT count(*) FROM subscriptions WHERE child_id = 1"),
        22
    );
    // The application moves one of them on since: reported, left alone.
    exec(
        &t.db,
        "UPDATE subscriptions SET child_id = 2 WHERE id = 100",
    );
    exec(
        &t.db,
        "INSERT INTO parents SELECT g, 'p' || g FROM generate_series(91, 100) g",
    );
    let out = t.restore(&run_id);
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    assert!(stderr(&out).contains("changed since"), "{}", stderr(&out));
    assert_eq!(
        t.count("SELECT child_id FROM subscriptions WHERE id = 100"),
        2
    );
    assert_eq!(t.count("SELECT count(*) FROM fkctl.archive"), 1);
    exec(
        &t.db,
        "UPDATE subscriptions SET child_id = 100 WHERE id = 100",
    );
    t.assert_as_before();
}
