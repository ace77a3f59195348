//! `fkctl rollback` for a unique constraint: the census before any change,
//! archived dedupe batches, `CREATE UNIQUE INDEX CONCURRENTLY` (outside a
//! transaction, retried on lock timeout, an INVALID leftover dropped first),
//! then `ADD CONSTRAINT ... UNIQUE USING INDEX` under the short lock_timeout,
//! after a last duplicate check. Every step reads the catalog: killed
//! anywhere, the next run continues from what the database shows.

use super::{count, refuse_mismatch, run_step, Session};
use crate::error::{Error, Kind, Result};
use crate::execute::lock_wait::{with_lock_retries, Watched};
use crate::execute::{interrupt, BindValues, Executor};
use crate::journal::{Journal, Run};
use crate::kinds::unique::checks;
use crate::kinds::unique::definition::{DuplicatePolicy, UniqueDef};
use crate::kinds::unique::observed::UniqueInspection;
use crate::kinds::unique::plan::{rollback_plan, rollback_state, Observed, RollbackState};
use crate::plan::{Plan, Step, StepKind};
use crate::tui;
use postgres::error::SqlState;
use std::path::Path;

/// Dedupe rounds before fkctl stops: each round removes the duplicates found,
/// and a new one is only needed when the application wrote more meanwhile.
const MAX_ROUNDS: u32 = 3;

pub struct Options {
    pub yes: bool,
    /// `--max-orphans N`: the duplicate limit for this run.
    pub max_duplicates: Option<u64>,
    /// Restore the playbook's definition even when a drop recorded one.
    pub use_playbook_definition: bool,
    /// `--output json`: one summary document on stdout, narration on stderr.
    pub json: bool,
}

/// The rollback's outcome, for `--output json`.
#[derive(Debug, Default, serde::Serialize)]
pub struct Summary {
    pub outcome: &'static str,
    pub constraint: String,
    pub table: String,
    pub definition: String,
    pub duplicates_found: i64,
    pub rows_archived: i64,
    pub rounds: u32,
    pub run_id: Option<String>,
}

pub fn run(path: &Path, env: &str, dsn: &[(String, String)], options: Options) -> Result<()> {
    if options.json {
        super::super::narrate_to_stderr();
    }
    if !options.yes && !tui::interactive() {
        return Err(Error::usage(
            "fkctl rollback asks before it changes anything, but there is no terminal to ask on",
        )
        .next("pass --yes to run without questions"));
    }
    interrupt::install();
    let mut session = Session::open(path, env, dsn)?;
    let env = session.env().to_string();
    let summary = rollback_in(&mut session, &options)
        .map_err(|e| super::super::label(e, &env, "rollback"))?;
    if options.json {
        super::super::write_json(&summary)?;
    }
    Ok(())
}

/// The definition to restore: the one recorded at drop time, else the playbook's.
fn definition(session: &mut Session, playbook_wins: bool) -> Result<(UniqueDef, Option<String>)> {
    if playbook_wins {
        crate::say!(
            "  restoring the playbook's definition (--use-playbook-definition): {}",
            session.spec.def.display_clause()
        );
        return Ok((session.spec.def.clone(), None));
    }
    let journal = Journal::new(&session.playbook.journal_schema);
    let snapshot = journal.snapshot(
        &mut session.client,
        &session.playbook.change,
        &session.playbook.constraint,
    )?;
    match snapshot.and_then(|s| {
        serde_json::from_value::<UniqueDef>(s.definition_json.clone())
            .ok()
            .map(|d| (d, s.definition))
    }) {
        Some((def, text)) => {
            crate::say!("  restoring the definition recorded at drop time: {text}");
            let differences = crate::kinds::unique::plan::drift(&session.spec.def, &def);
            for d in differences {
                crate::say!(
                    "  note: the playbook says {} {}, the snapshot {}; the snapshot wins",
                    d.field,
                    d.playbook,
                    d.database
                );
            }
            Ok((def, Some(text)))
        }
        None => {
            crate::say!(
                "  no snapshot from a drop: restoring the playbook's definition {}",
                session.spec.def.display_clause()
            );
            Ok((session.spec.def.clone(), None))
        }
    }
}

/// Refusals before any change for a constraint that is not there yet.
fn refuse(session: &Session, inspection: &UniqueInspection, def: &UniqueDef) -> Result<()> {
    let env = session.env();
    let missing: Vec<String> = session
        .spec
        .rollback
        .keep_order_by
        .iter()
        .filter(|o| !inspection.columns.iter().any(|c| c == o.column.as_str()))
        .map(|o| o.column.display())
        .collect();
    if !missing.is_empty() {
        return Err(Error::precondition(format!(
            "rollback.keep.order_by names column(s) {} that {} does not have",
            missing.join(", "),
            def.table
        ))
        .with("environment", env)
        .next("fix keep.order_by in the playbook (it says which row of each key stays); nothing was changed"));
    }
    let foreign: Vec<String> = inspection
        .leaves
        .iter()
        .filter(|(_, foreign)| *foreign)
        .map(|(leaf, _)| leaf.display())
        .collect();
    if !foreign.is_empty() {
        return Err(Error::precondition(format!(
            "partitions {} of {} are foreign tables, which cannot have an index: PostgreSQL cannot put a unique constraint on {}",
            foreign.join(", "),
            def.table,
            def.table
        ))
        .with("environment", env)
        .next("nothing was changed"));
    }
    if def.nulls_not_distinct && inspection.server.version_num < 150_000 {
        return Err(Error::precondition(format!(
            "NULLS NOT DISTINCT needs PostgreSQL 15 or later; this server is {}",
            inspection.server.version
        ))
        .with("environment", env)
        .next("restore it without nulls_not_distinct, or on PostgreSQL 15+; nothing was changed"));
    }
    if let Some(index) = &inspection.index {
        if !index.on_table || !index.unique {
            return Err(Error::precondition(format!(
                "an index named {} already exists in schema {} and is not a unique index of {}: {}",
                def.name, def.table.schema, def.table, index.definition
            ))
            .with("environment", env)
            .next("rename or drop that index (it is not fkctl's), then run again; nothing was changed"));
        }
    }
    Ok(())
}

fn rollback_in(session: &mut Session, options: &Options) -> Result<Summary> {
    let (yes, max_duplicates) = (options.yes, options.max_duplicates);
    let env = session.env().to_string();
    crate::say!("\n== {env} ==\n  connected: {}", session.target.description);
    let playbook = session.playbook.clone();
    session.lock_change()?;
    let (def, snapshot) = definition(session, options.use_playbook_definition)?;
    let inspection = session.inspect("pre-checks")?;
    refuse_mismatch(session, &inspection, &def, "to restore")?;
    refuse(session, &inspection, &def)?;
    let observed = Observed {
        environment: &env,
        inspection: &inspection,
    };
    let limit = max_duplicates.unwrap_or(session.spec.rollback.max_duplicates);
    let plan = rollback_plan(&playbook, &session.spec, &def, limit, Some(&observed));
    if rollback_state(Some(&observed)) == RollbackState::Done {
        crate::say!("  {} is in place on {}: nothing to do", def.name, def.table);
        read_back(session, &inspection, &def, snapshot.as_deref())?;
        return Ok(Summary {
            outcome: "already in place",
            constraint: def.name.display(),
            table: def.table.display(),
            definition: inspection
                .live()
                .map(|l| l.definition.clone())
                .unwrap_or_default(),
            ..Summary::default()
        });
    }
    print_pending(&plan);
    if !yes
        && !tui::confirm(&format!(
            "Restore {} on {env} now (dedupe, concurrent build, add)?",
            def.name
        ))?
    {
        return Err(Error::declined(format!(
            "at your request; nothing was changed on {env}"
        )));
    }
    let (done, run_id) = journaled(session, &inspection, &def, &plan, yes)?;
    let after = session.inspect("read back")?;
    read_back(session, &after, &def, snapshot.as_deref())?;
    crate::say!("{env}: {}", done.message());
    Ok(Summary {
        outcome: "restored",
        constraint: def.name.display(),
        table: def.table.display(),
        definition: after
            .live()
            .map(|l| l.definition.clone())
            .unwrap_or_default(),
        duplicates_found: done.found,
        rows_archived: done.archived,
        rounds: done.rounds,
        run_id: Some(run_id),
    })
}

/// The plan's notes and the steps still to run.
fn print_pending(plan: &Plan) {
    for note in &plan.notes {
        crate::say!("  note: {note}");
    }
    for step in plan
        .steps
        .iter()
        .filter(|s| s.status == crate::plan::Status::Pending)
    {
        crate::say!("{}", super::super::step_text(step));
    }
}

/// The rollback's steps under a journal run, which records how they ended;
/// returns what they did and the run's id.
fn journaled(
    session: &mut Session,
    inspection: &UniqueInspection,
    def: &UniqueDef,
    plan: &Plan,
    yes: bool,
) -> Result<(Done, String)> {
    let env = session.env().to_string();
    let playbook = session.playbook.clone();
    let journal = Journal::new(&playbook.journal_schema);
    journal.ensure(&mut session.client)?;
    let run = journal.start_run(
        &mut session.client,
        &playbook.change,
        "rollback",
        &env,
        &playbook.constraint,
    )?;
    let result = Rollback {
        session,
        inspection,
        def,
        plan,
        run: &run,
        yes,
    }
    .steps();
    let (outcome, message) = match &result {
        Ok(done) => ("restored", Some(done.message())),
        Err(e) => ("failed", Some(e.to_string())),
    };
    let finished = run.finish(&mut session.client, outcome, message.as_deref());
    let done = result?;
    finished?;
    Ok((done, run.id.clone()))
}

/// What the rollback's steps did.
struct Done {
    found: i64,
    archived: i64,
    rounds: u32,
    run_id: String,
}

impl Done {
    fn message(&self) -> String {
        format!(
            "restored in {} round(s); duplicates found {}, rows archived {} (run {})",
            self.rounds, self.found, self.archived, self.run_id
        )
    }
}

/// The constraint is there, as recorded, and no invalid index is left.
fn read_back(
    session: &mut Session,
    inspection: &UniqueInspection,
    def: &UniqueDef,
    snapshot: Option<&str>,
) -> Result<()> {
    let env = session.env().to_string();
    let live = inspection.live().ok_or_else(|| {
        Error::new(
            Kind::FailedMidway,
            format!("{} is not on {} after the rollback", def.name, def.table),
        )
        .with("environment", &env)
        .next("run the same command again: it continues from what the catalog shows")
    })?;
    if let Some(recorded) = snapshot {
        if live.definition != recorded {
            return Err(Error::new(Kind::FailedMidway, format!(
                "the restored constraint reads {} but the snapshot recorded {recorded}",
                live.definition
            ))
            .with("environment", &env)
            .next("compare with fkctl inspect; the constraint is in place, so no duplicate can be written meanwhile"));
        }
    }
    let sql = checks::invalid_index_sql(def);
    let invalid: i64 = crate::pg::query_scalar(&mut session.client, &sql, &[])?;
    if invalid > 0 {
        return Err(Error::new(
            Kind::FailedMidway,
            format!(
                "an invalid index named {} is still in schema {}",
                def.name, def.table.schema
            ),
        )
        .with("environment", &env)
        .with("sql", sql));
    }
    crate::say!(
        "  read back: {} {} on {}, valid; no invalid index left",
        def.name,
        live.definition,
        def.table
    );
    Ok(())
}

struct Rollback<'a> {
    session: &'a mut Session,
    inspection: &'a UniqueInspection,
    def: &'a UniqueDef,
    plan: &'a Plan,
    run: &'a Run,
    /// `--yes`: no question before the dedupe.
    yes: bool,
}

/// The three steps that put one index and its constraint in place.
struct Target {
    drop_invalid: Step,
    build: Step,
    add: Step,
}

/// How a concurrent build ended.
enum Build {
    Built,
    /// A duplicate reached the table during the build: the index was left INVALID.
    Duplicates,
}

impl Rollback<'_> {
    fn step(&self, kind: StepKind) -> Result<&Step> {
        self.plan
            .steps
            .iter()
            .find(|s| s.kind == kind)
            .ok_or_else(|| Error::internal(format!("the rollback plan has no {} step", kind.id())))
    }

    fn run_step(
        &mut self,
        exec: &Executor<'_>,
        step: &Step,
    ) -> Result<crate::execute::StepOutcome> {
        let binds = BindValues {
            run_id: &self.run.id,
            change: &self.session.playbook.change,
            constraint_name: self.def.name.as_str(),
            restore_run_id: None,
        };
        run_step(&mut self.session.client, exec, Some(self.run), step, &binds)
    }

    /// The plan's builds, one per index: the table's, or each leaf's.
    fn targets(&self) -> Result<Vec<Target>> {
        let builds: Vec<&Step> = self
            .plan
            .steps
            .iter()
            .filter(|s| {
                matches!(
                    s.kind,
                    StepKind::DropInvalidIndex | StepKind::BuildIndex | StepKind::AddUsingIndex
                )
            })
            .collect();
        builds
            .chunks(3)
            .map(|c| match c {
                [d, b, a] => Ok(Target {
                    drop_invalid: (*d).clone(),
                    build: (*b).clone(),
                    add: (*a).clone(),
                }),
                _ => Err(Error::internal(
                    "the rollback plan's build steps do not come in threes",
                )),
            })
            .collect()
    }

    // Long because it is the rollback's loop: dedupe rounds around the
    // concurrent builds, each ending in a check, then the final ADD.
    fn steps(&mut self) -> Result<Done> {
        let (target, env) = self.session.engine();
        let exec = super::executor(
            &target,
            &env,
            self.inspection,
            self.session.playbook.safety.lock_retries,
            &self.session.playbook.journal_schema,
        )?;
        let state = rollback_state(Some(&Observed {
            environment: self.session.env(),
            inspection: self.inspection,
        }));
        let targets = self.targets()?;
        let mut found = 0;
        let mut archived = 0;
        let mut rounds = 0;
        loop {
            rounds += 1;
            if state != RollbackState::IndexBuilt {
                let (f, a) = self.dedupe_round(&exec, rounds == 1)?;
                found += f;
                archived += a;
            }
            match self.build_all(&exec, &targets)? {
                Build::Built => break,
                Build::Duplicates if rounds < MAX_ROUNDS => {
                    crate::say!("  new duplicates reached the table during a build: the index was left INVALID and is dropped; deduping again (round {} of {MAX_ROUNDS})", rounds + 1);
                }
                Build::Duplicates => return Err(self.keep_appearing(rounds)),
            }
        }
        if let Ok(attach) = self.step(StepKind::AttachConstraint) {
            let attach = attach.clone();
            let outcome = self.run_step(&exec, &attach)?;
            crate::say!(
                "{}. {}: added in {} ms ({} lock retries)",
                attach.number,
                attach.title,
                outcome.elapsed.as_millis(),
                outcome.retries
            );
        }
        Ok(Done {
            found,
            archived,
            rounds,
            run_id: self.run.id.clone(),
        })
    }

    /// Each index in turn, from what the catalog shows: a target whose
    /// constraint is there is done; else an INVALID leftover is dropped, the
    /// index is built unless a valid one is there, and the constraint added.
    fn build_all(&mut self, exec: &Executor<'_>, targets: &[Target]) -> Result<Build> {
        for t in targets {
            if self.measured(exec, &t.add, &t.add.after)? > 0 {
                continue;
            }
            if self.measured(exec, &t.drop_invalid, &t.drop_invalid.after)? > 0 {
                self.drop_invalid(exec, t)?;
            }
            if self.measured(exec, &t.build, &t.build.after)? == 0 {
                let result = self.outside_transaction(exec, &t.build, Some(&t.drop_invalid))?;
                let _ = self.session.client.batch_execute("RESET statement_timeout");
                if result == Some(SqlState::UNIQUE_VIOLATION) {
                    self.drop_invalid(exec, t)?;
                    return Ok(Build::Duplicates);
                }
                if let Some(check) = &t.build.after {
                    exec.check_after(&mut self.session.client, check, &t.build)?;
                }
                crate::say!("{}. {}: built, valid", t.build.number, t.build.title);
            }
            let outcome = self.run_step(exec, &t.add)?;
            crate::say!(
                "{}. {}: added in {} ms ({} lock retries)",
                t.add.number,
                t.add.title,
                outcome.elapsed.as_millis(),
                outcome.retries
            );
        }
        Ok(Build::Built)
    }

    /// The value of a step's catalog check (0 when it has none).
    fn measured(
        &mut self,
        exec: &Executor<'_>,
        step: &Step,
        check: &Option<crate::plan::Check>,
    ) -> Result<i64> {
        match check {
            Some(c) => Ok(count(exec.measure(&mut self.session.client, c, step)?)),
            None => Ok(0),
        }
    }

    fn keep_appearing(&self, rounds: u32) -> Error {
        Error::new(Kind::FailedMidway, format!(
            "new duplicates kept appearing: {rounds} rounds each removed the duplicates found, and each concurrent build met new ones; fkctl stops instead of looping"
        ))
        .with("environment", self.session.env())
        .with("constraint", format!("{} on {}", self.def.name, self.def.table))
        .next("the application is writing rows with equal keys right now: stop or fix that writer (every removed row is archived, see fkctl status), then run the same command again")
    }

    /// Deleting duplicates would fire other tables' ON DELETE actions,
    /// changing rows the dedupe does not archive: refused before any delete.
    fn refuse_cascades(&self, listed: i64) -> Result<()> {
        let cascading = &self.inspection.cascading;
        if cascading.is_empty() {
            return Ok(());
        }
        let mut e = Error::precondition(format!(
            "deleting the {listed} duplicate row(s) of {} would fire the ON DELETE actions of {} foreign key(s), changing rows in other tables that the dedupe does not archive; nothing was deleted",
            self.def.table,
            cascading.len()
        ))
        .with("environment", self.session.env());
        for fk in cascading {
            e = e.with(
                "fires",
                format!("{} on {}: {}", fk.name, fk.table, fk.definition),
            );
        }
        Err(e.next("remove the duplicates by hand, deciding what happens to the rows that reference them, then run the rollback again (the census will find none); or set duplicates: abort"))
    }

    /// With `duplicates: abort`, the census: any duplicate stops the rollback.
    fn refuse_any(&mut self, exec: &Executor<'_>) -> Result<()> {
        let census = self.step(StepKind::RefuseDuplicates)?.clone();
        let check = census
            .before
            .clone()
            .ok_or_else(|| Error::internal("census without a check"))?;
        let found = count(exec.measure(&mut self.session.client, &check, &census)?);
        crate::say!(
            "{}. {}: {found} duplicate row(s)",
            census.number,
            census.title
        );
        exec.judge(&check, &census, crate::execute::Value::Count(found))
            .map(|_| ())
            .map_err(|e| self.too_many(e, found))
    }

    /// The census (the collecting scan), then archived batches and the
    /// check, until none is left or `MAX_ROUNDS` lists did not catch up.
    /// Returns (duplicates found by the first census, rows archived).
    fn dedupe_round(&mut self, exec: &Executor<'_>, first: bool) -> Result<(i64, i64)> {
        if self.session.spec.rollback.duplicates == DuplicatePolicy::Abort {
            self.refuse_any(exec)?;
            return Ok((0, 0));
        }
        let mut found = None;
        let mut archived = 0;
        for listed_round in 1..=MAX_ROUNDS {
            let listed = self.collect(exec, first && listed_round == 1)?;
            found.get_or_insert(listed);
            if listed == 0 {
                return Ok((found.unwrap_or(0), archived));
            }
            self.refuse_cascades(listed)?;
            if !self.yes
                && listed_round == 1
                && !tui::confirm(&format!(
                    "Delete {listed} duplicate row(s) of {} (each archived; the first of each key by keep.order_by stays)?",
                    self.def.table
                ))?
            {
                return Err(Error::declined(format!(
                    "before the dedupe; nothing was deleted and {} is still absent",
                    self.def.name
                )));
            }
            let archive = self.step(StepKind::PrepareArchive)?.clone();
            self.run_step(exec, &archive)?;
            archived += self.batches(exec)?;
            let verify = self.step(StepKind::VerifyNoDuplicates)?.clone();
            let check = verify
                .before
                .clone()
                .ok_or_else(|| Error::internal("verify without a check"))?;
            let left = count(exec.measure(&mut self.session.client, &check, &verify)?);
            crate::say!(
                "{}. {}: {archived} row(s) archived and deleted; {left} duplicate row(s) left",
                verify.number,
                verify.title
            );
            if left == 0 {
                return Ok((found.unwrap_or(0), archived));
            }
        }
        Err(self.keep_appearing(MAX_ROUNDS))
    }

    /// Lists the duplicate rows; the list's length is the census, judged
    /// against rollback.max_duplicates before anything changes (`limit`).
    fn collect(&mut self, exec: &Executor<'_>, limit: bool) -> Result<i64> {
        let mut collect = self.step(StepKind::CollectDuplicates)?.clone();
        // The limit is a precondition (exit 4, nothing changed), judged
        // here rather than as an after-check (which means "failed part-way").
        let check = collect
            .after
            .take()
            .ok_or_else(|| Error::internal("the list without its limit"))?;
        self.run_step(exec, &collect)?;
        let listed = count(exec.measure(&mut self.session.client, &check, &collect)?);
        crate::say!(
            "{}. {}: {listed} duplicate row(s)",
            collect.number,
            collect.title
        );
        if limit {
            if let Err(e) = exec.judge(&check, &collect, crate::execute::Value::Count(listed)) {
                return Err(self.too_many(e, listed));
            }
        }
        Ok(listed)
    }

    fn too_many(&self, e: Error, found: i64) -> Error {
        let abort = self.session.spec.rollback.duplicates == DuplicatePolicy::Abort;
        let mut e = e.with("duplicates", found.to_string());
        e.message = if abort {
            format!(
                "{found} duplicate row(s) and rollback.duplicates is abort; nothing was changed"
            )
        } else {
            format!("{found} duplicate row(s), over rollback.max_duplicates; nothing was changed")
        };
        e.next(if abort {
            "look at them with fkctl orphans (it lists duplicate keys for a unique playbook) and decide; set duplicates: archive-delete to remove all but the first by keep.order_by"
        } else {
            "look at them with fkctl orphans; if removing them (archived) is right, raise the limit with --max-orphans N"
        })
    }

    /// The dedupe batches until the list is empty; returns the rows archived.
    fn batches(&mut self, exec: &Executor<'_>) -> Result<i64> {
        let step = self.step(StepKind::DedupeRows)?.clone();
        let before = self.archived()?;
        loop {
            let outcome = self.run_step(exec, &step)?;
            if outcome.returned.as_deref().is_none_or(|t| t == "0") {
                break;
            }
        }
        let after = self.archived()?;
        Ok(after - before)
    }

    fn archived(&mut self) -> Result<i64> {
        let sql = format!(
            "SELECT count(*) FROM {} WHERE run_id = $1 AND action = '{}'",
            crate::kinds::foreign_key::repair::archive_table(&self.session.playbook.journal_schema)
                .quoted(),
            crate::kinds::unique::repair::ACTION
        );
        crate::pg::query_scalar(&mut self.session.client, &sql, &[&self.run.id])
    }

    fn drop_invalid(&mut self, exec: &Executor<'_>, t: &Target) -> Result<()> {
        self.outside_transaction(exec, &t.drop_invalid, None)?;
        if let Some(check) = &t.drop_invalid.after {
            exec.check_after(&mut self.session.client, check, &t.drop_invalid)?;
        }
        crate::say!(
            "{}. {}: dropped the INVALID index a failed or killed build left",
            t.drop_invalid.number,
            t.drop_invalid.title
        );
        Ok(())
    }

    /// Runs a step's statements one by one outside any transaction (CREATE
    /// and DROP INDEX CONCURRENTLY refuse one), retried on lock timeout with
    /// the holders named. A build that timed out leaves an INVALID index,
    /// dropped before the next attempt. Returns the SQLSTATE of a unique
    /// violation, which the caller answers with another dedupe round.
    fn outside_transaction(
        &mut self,
        exec: &Executor<'_>,
        step: &Step,
        leftover: Option<&Step>,
    ) -> Result<Option<SqlState>> {
        let env = self.session.env().to_string();
        let watched = exec.watched.clone();
        let retries = step.lock_retries.unwrap_or(exec.read_retries);
        let tls = exec.tls().clone();
        crate::journal::record_step(&mut self.session.client, Some(self.run), step, |client| {
            let (violation, waited) = with_lock_retries(
                client,
                &env,
                &step.title,
                retries,
                Watched::Relations(&watched),
                |c| {
                    if let Some(drop) = leftover {
                        let check = drop
                            .after
                            .as_ref()
                            .map(|c| c.sql.as_str())
                            .unwrap_or("SELECT 0::int8");
                        let invalid: i64 = crate::pg::query_scalar(c, check, &[])?;
                        for sql in drop.statements.iter().filter(|_| invalid > 0) {
                            c.batch_execute(sql)
                                .map_err(|e| Error::from_postgres(&e, sql))?;
                        }
                    }
                    // Ctrl-C cancels the build: the INVALID index it leaves
                    // is dropped by the next run.
                    let _running = interrupt::Running::start(c.cancel_token(), tls.clone());
                    for sql in &step.statements {
                        if let Err(e) = c.batch_execute(sql) {
                            if e.code() == Some(&SqlState::UNIQUE_VIOLATION) {
                                return Ok(Some(SqlState::UNIQUE_VIOLATION));
                            }
                            if interrupt::interrupted() {
                                return Err(Error::new(Kind::Interrupted, "interrupted: the statement was cancelled")
                                    .with("environment", env.as_str())
                                    .with("step", format!("{}. {}", step.number, step.title))
                                    .next("run the same command again: an INVALID index the cancelled build left is dropped first"));
                            }
                            return Err(Error::from_postgres(&e, sql)
                                .with("environment", env.as_str())
                                .with("step", format!("{}. {}", step.number, step.title)));
                        }
                    }
                    Ok(None)
                },
            )?;
            Ok((violation, waited.retries, waited.blockers, None))
        })
    }
}
