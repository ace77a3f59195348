//! Reading fkctl's archive whichever table holds a row: the general
//! archive (`archived_rows`, jsonb) or a change's table of deleted rows in
//! the child's own shape (`kinds::foreign_key::repair::typed`).

use crate::error::{Error, Kind, Result};
use crate::kinds::foreign_key::repair::{archive_table, typed};
use crate::pg::Cell;
use crate::sql::ident::{Ident, QualifiedName};
use postgres::Client;

/// What to count archived rows in: the view over every archive table when
/// a rollback has made one, else the general archive, else nothing (no
/// rollback archived anything here).
pub fn readable(client: &mut Client, schema: &Ident) -> Result<Option<String>> {
    for table in [typed::view(schema), archive_table(schema)] {
        let quoted = table.quoted();
        if crate::pg::relation_exists(client, &quoted)? {
            return Ok(Some(quoted));
        }
    }
    Ok(None)
}

/// A table of one change's deleted rows, as the registry describes it.
pub struct TypedTable {
    pub table: QualifiedName,
    /// The table whose rows it keeps, as a name PostgreSQL reads.
    pub source: String,
    /// Their action in the archive (`delete`, `cascade-delete`).
    pub action: String,
}

impl TypedTable {
    /// Whether it keeps the rows of `source` that had `action`.
    pub fn keeps(&self, source: &QualifiedName, action: &str) -> bool {
        self.source == source.display() && self.action == action
    }
}

/// The tables that keep the deleted rows of a change and constraint: the
/// child's and its cascade levels' (more than one for a table whose columns
/// changed between rollbacks).
pub fn typed_tables(
    client: &mut Client,
    schema: &Ident,
    change: &str,
    constraint: &Ident,
) -> Result<Vec<TypedTable>> {
    let mut tables = Vec::new();
    // The cascade levels' registry is missing from archives an older fkctl made.
    for (registry, action) in typed::registries(schema) {
        if !crate::pg::relation_exists(client, &registry.quoted())? {
            continue;
        }
        let sql = typed::tables_sql(schema, &registry, &action);
        for r in client
            .query(sql.as_str(), &[&change, &constraint.as_str()])
            .map_err(|e| Error::from_postgres(&e, &sql))?
        {
            tables.push(TypedTable {
                table: QualifiedName::new(
                    schema.clone(),
                    Ident::from_catalog(r.cell::<String>(0, &sql)?),
                ),
                source: r.cell(1, &sql)?,
                action: r.cell(2, &sql)?,
            });
        }
    }
    Ok(tables)
}

/// Files the rows of the change's typed tables whose columns no longer
/// match their table's (it changed since the rollback) into the
/// general archive, one transaction per table: a restore converts them from
/// jsonb there, column by column. The rows that left must be the rows that
/// arrived, and the table must be empty after, or nothing moves. A table
/// that still matches stays: restore copies its rows back as they are,
/// which jsonb would not (a `json` column's text, an array's bounds, `-0`).
/// Returns the rows filed.
pub fn file_typed(client: &mut Client, playbook: &crate::playbook::Playbook) -> Result<i64> {
    let (schema, change, constraint) = (
        &playbook.journal_schema,
        playbook.change.as_str(),
        &playbook.constraint.name,
    );
    // The playbook's short lock wait; no statement timeout: the move takes
    // as long as the archive is big.
    let settings = format!(
        "SET LOCAL lock_timeout = '{}'; SET LOCAL statement_timeout = 0",
        crate::playbook::duration::human(playbook.safety.lock_timeout)
    );
    let mut filed = 0;
    let same_shape = typed::same_shape_sql();
    for TypedTable {
        table,
        source,
        action,
    } in typed_tables(client, schema, change, constraint)?
    {
        let matches: bool =
            crate::pg::query_scalar(client, &same_shape, &[&table.quoted(), &source])?;
        if matches {
            continue;
        }
        let sql = typed::file_sql(schema, &table);
        let mut tx = client
            .transaction()
            .map_err(|e| Error::from_postgres(&e, "BEGIN"))?;
        tx.batch_execute(&settings)
            .map_err(|e| Error::from_postgres(&e, &settings))?;
        let row = tx
            .query_one(sql.as_str(), &[&change, &constraint.as_str(), &action])
            .map_err(|e| Error::from_postgres(&e, &sql))?;
        let (left, arrived): (i64, i64) = (row.cell(0, &sql)?, row.cell(1, &sql)?);
        let count = format!("SELECT count(*) FROM {}", table.quoted());
        let still: i64 = crate::pg::query_scalar(&mut tx, count.as_str(), &[])?;
        if left != arrived || still != 0 {
            return Err(Error::new(
                Kind::Internal,
                format!("filing the rows of {table} into {}: {left} row(s) left, {arrived} arrived, {still} still there; rolled back, nothing moved", archive_table(schema)),
            )
            .next("run the same command again; if it says the same, compare the two tables by hand"));
        }
        tx.commit()
            .map_err(|e| Error::from_postgres(&e, "COMMIT"))?;
        filed += arrived;
    }
    Ok(filed)
}

/// The run whose archived rows a restore puts back. `latest`: the newest
/// run of this change and constraint with rows still archived, None when
/// there is none. A run named explicitly is refused when
/// its rows belong to another change or constraint: putting them back would
/// write another table's rows, or another column's keys, here.
pub fn resolve_run(
    client: &mut Client,
    schema: &Ident,
    change: &str,
    constraint: &Ident,
    run_id: &str,
) -> Result<Option<String>> {
    // Every archive table, the change's own typed tables included: another
    // change's deleted rows may still be in theirs.
    let Some(archive) = readable(client, schema)? else {
        return Ok((run_id != "latest").then(|| run_id.to_string()));
    };
    if run_id == "latest" {
        let sql = format!(
            "SELECT run_id FROM {archive} WHERE change = $1 AND constraint_name = $2 GROUP BY run_id ORDER BY max(archived_at) DESC LIMIT 1"
        );
        return client
            .query(sql.as_str(), &[&change, &constraint.as_str()])
            .map_err(|e| Error::from_postgres(&e, &sql))?
            .first()
            .map(|r| r.cell::<String>(0, &sql))
            .transpose();
    }
    let sql = format!(
            "SELECT change, constraint_name, count(*) FROM {archive} WHERE run_id = $1 AND NOT (change = $2 AND constraint_name = $3) GROUP BY 1, 2 ORDER BY 3 DESC LIMIT 1"
        );
    let rows = client
        .query(sql.as_str(), &[&run_id, &change, &constraint.as_str()])
        .map_err(|e| Error::from_postgres(&e, &sql))?;
    if let Some(row) = rows.first() {
        let (other, other_constraint, count): (String, String, i64) =
            (row.cell(0, &sql)?, row.cell(1, &sql)?, row.cell(2, &sql)?);
        return Err(Error::precondition(format!(
                "run {run_id} archived {count} row(s) of change {other:?} (constraint {other_constraint}), not of this playbook's change {change:?} (constraint {constraint}); nothing was restored"
            ))
            .next("restore that run with its own change's playbook; --run latest takes this change's newest archived run, and fkctl status lists the runs"));
    }
    Ok(Some(run_id.to_string()))
}
