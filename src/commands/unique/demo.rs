//! The demo's UNIQUE chapters: the same story for the second constraint
//! kind, told with the real commands on the demo's sandbox.

use crate::cli::args::Output;
use crate::error::{Error, Result};
use std::path::Path;

const SCHEMA: &str = "
CREATE SCHEMA crm;
CREATE TABLE crm.contacts (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id int NOT NULL,
    email text,
    updated_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT contacts_tenant_email_key UNIQUE (tenant_id, email)
);
INSERT INTO crm.contacts (tenant_id, email, updated_at)
SELECT 1 + g % 20, 'contact' || g || '@example.com', now() - g * interval '1 minute' FROM generate_series(1, 5000) g;
";

const PLAYBOOK: &str = "version: 1
change: relax-unique-contacts-email
summary: Drop the contacts (tenant_id, email) uniqueness during the CRM re-import
constraint: { kind: unique, name: contacts_tenant_email_key, table: crm.contacts, columns: [tenant_id, email] }
environments:
  - { name: staging, dsn_env: FKCTL_STAGING_DSN }
  - { name: production, dsn_env: FKCTL_PRODUCTION_DSN, protected: true }
rollback: { duplicates: archive-delete, keep: { order_by: [-updated_at, id] }, batch_size: 50 }
";

/// The sandbox as the UNIQUE chapters need it.
pub struct Sandbox<'a> {
    pub dir: &'a Path,
    pub staging_dsn: String,
    pub production_dsn: String,
    pub overrides: &'a [(String, String)],
}

fn client(dsn: &str) -> Result<postgres::Client> {
    postgres::Client::connect(dsn, postgres::NoTls).map_err(|e| Error::from_postgres(&e, "connect"))
}

/// Two chapters: drop a UNIQUE constraint and let duplicates in; then the
/// rollback's archived dedupe and concurrent build. `chapter(title, text)`
/// and `command(shown)` are the demo's own narration.
pub fn chapters(
    sandbox: &Sandbox<'_>,
    chapter: &mut dyn FnMut(&str, &str) -> Result<()>,
    command: &dyn Fn(&str),
) -> Result<()> {
    for dsn in [&sandbox.staging_dsn, &sandbox.production_dsn] {
        client(dsn)?
            .batch_execute(SCHEMA)
            .map_err(|e| Error::from_postgres(&e, "load the UNIQUE example"))?;
    }
    let playbook = sandbox.dir.join("unique.yml");
    std::fs::write(&playbook, PLAYBOOK)
        .map_err(|e| Error::internal(format!("cannot write {}: {e}", playbook.display())))?;
    let pb = playbook.display().to_string();
    chapter("A UNIQUE constraint, too", "UNIQUE constraints are fkctl's second kind: crm.contacts has contacts_tenant_email_key. Dropping it (staging, then production) works as for the foreign key; the plan says what the database stops refusing, and that the index goes with it.")?;
    for env in ["staging", "production"] {
        command(&format!("fkctl drop {pb} --env {env} --yes"));
        super::drop::run(
            &playbook,
            Some(env),
            sandbox.overrides,
            super::drop::Options {
                dry_run: false,
                yes: true,
                out_of_order: None,
            },
        )?;
    }
    let inserted = client(&sandbox.production_dsn)?
        .execute(
            "INSERT INTO crm.contacts (tenant_id, email, updated_at) SELECT tenant_id, email, updated_at - interval '1 day' FROM crm.contacts WHERE id % 100 = 0",
            &[],
        )
        .map_err(|e| Error::from_postgres(&e, "INSERT"))?;
    println!("\nMeanwhile a re-import writes {inserted} contacts that already exist.");
    command(&format!(
        "fkctl duplicates {pb} --env production --sample 3"
    ));
    super::read::duplicates(
        &playbook,
        "production",
        sandbox.overrides,
        super::read::CensusOptions {
            sample: 3,
            metrics_file: None,
            output: Output::Text,
        },
    )?;
    chapter("UNIQUE rollback, without blocking writes", "The census, then archived dedupe batches (the most recently updated row of each key stays; each removed row archived in the statement that deletes it), CREATE UNIQUE INDEX CONCURRENTLY (writes go on), and ADD CONSTRAINT ... USING INDEX under a short lock_timeout.")?;
    command(&format!("fkctl rollback {pb} --env production --yes"));
    super::rollback::run(
        &playbook,
        "production",
        sandbox.overrides,
        super::rollback::Options {
            yes: true,
            max_duplicates: None,
            use_playbook_definition: false,
            json: false,
        },
    )
}
