//! Two databases, staging and production, with the seed case loaded, and a
//! playbook pointing at them.

use super::*;
use fkctl::testkit::TestDatabase;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

const SEED_SQL: &str =
    include_str!("../../examples/schemas/remove-fk-ci-pipeline-chat-data-chat-names.sql");

pub struct Setup {
    pub staging: TestDatabase,
    pub production: TestDatabase,
    _dir: TempDir,
    pub playbook: PathBuf,
}

impl Setup {
    pub fn new(tag: &str, safety: &str) -> Setup {
        Setup::with_rollback(tag, safety, "{}")
    }

    pub fn with_rollback(tag: &str, safety: &str, rollback: &str) -> Setup {
        let staging = database(&format!("{tag}_stg"));
        let production = database(&format!("{tag}_prd"));
        exec(&staging, SEED_SQL);
        exec(&production, SEED_SQL);
        let dir = TempDir::new(tag);
        let text = format!(
            "version: 1\nchange: remove-fk-{tag}\nsummary: test\nconstraint:\n  name: fk_rails_f300456b63\n  table: public.ci_pipeline_chat_data\n  columns: [chat_name_id]\n  references: {{ table: public.chat_names, columns: [id] }}\n  on_delete: cascade\nenvironments:\n  - {{ name: staging, dsn_env: T_STAGING_DSN }}\n  - {{ name: production, dsn_env: T_PRODUCTION_DSN, protected: true }}\nsafety: {safety}\nrollback: {rollback}\n"
        );
        let playbook = dir.write("playbook.yml", &text);
        Setup {
            staging,
            production,
            _dir: dir,
            playbook,
        }
    }

    pub fn env(&self) -> [(&'static str, String); 2] {
        [
            ("T_STAGING_DSN", self.staging.dsn.clone()),
            ("T_PRODUCTION_DSN", self.production.dsn.clone()),
        ]
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_fkctl"));
        cmd.args(args).stdin(Stdio::null());
        for (k, v) in self.env() {
            cmd.env(k, v);
        }
        cmd
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.command(args)
            .output()
            .unwrap_or_else(|e| panic!("{e}"))
    }

    pub fn drop(&self, extra: &[&str]) -> Output {
        let path = self.playbook.display().to_string();
        let mut args = vec!["drop", path.as_str()];
        args.extend_from_slice(extra);
        self.run(&args)
    }
}

pub fn present(db: &TestDatabase) -> bool {
    scalar_i64(
        db,
        "SELECT count(*) FROM pg_constraint WHERE conname = 'fk_rails_f300456b63'",
    ) == 1
}
