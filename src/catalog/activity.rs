//! Other sessions: who holds locks on the tables, who has a long transaction
//! open. A DDL statement queues behind both, and everything queues behind it.

use super::query;
use crate::error::Result;
use crate::model::SessionInfo;
use crate::pg::Cell;
use postgres::GenericClient;

/// Another session's query as fkctl shows and records it: literals and
/// comments replaced by `?` (a password or customer value never lands in
/// fkctl's output or journal), on one line, shortened.
pub fn redact_query(query: &str) -> String {
    let one_line = crate::sql::redact::redact_literals(query);
    if one_line.chars().count() > 160 {
        format!("{}…", one_line.chars().take(160).collect::<String>())
    } else {
        one_line
    }
}

const SESSIONS_SQL: &str = "\
SELECT a.pid, coalesce(a.usename::text, ''), coalesce(a.application_name, ''), coalesce(a.state, ''),
       extract(epoch FROM clock_timestamp() - a.xact_start)::float8,
       ARRAY(SELECT l.mode || CASE WHEN l.granted THEN '' ELSE ' (waiting)' END || ' on ' || l.relation::regclass::text
               FROM pg_locks l
              WHERE l.pid = a.pid AND l.locktype = 'relation' AND l.relation = ANY($1)
              ORDER BY 1),
       coalesce(a.query, '')
  FROM pg_stat_activity a
 WHERE a.pid <> pg_backend_pid()
   AND a.datname = current_database()
   AND (EXISTS (SELECT 1 FROM pg_locks l WHERE l.pid = a.pid AND l.locktype = 'relation' AND l.relation = ANY($1))
        OR a.xact_start < clock_timestamp() - make_interval(secs => $2))
 ORDER BY a.xact_start NULLS LAST";

/// Sessions holding or awaiting locks on `relations`, or with a transaction
/// open longer than `long_transaction_s`.
pub fn sessions(
    client: &mut impl GenericClient,
    relations: &[u32],
    long_transaction_s: f64,
) -> Result<Vec<SessionInfo>> {
    let sql = SESSIONS_SQL;
    query(client, sql, &[&relations, &long_transaction_s])?
        .iter()
        .map(|r| {
            Ok(SessionInfo {
                pid: r.cell(0, sql)?,
                user: r.cell(1, sql)?,
                application: r.cell(2, sql)?,
                state: r.cell(3, sql)?,
                transaction_age_s: r.cell(4, sql)?,
                locks: r.cell(5, sql)?,
                query: redact_query(&r.cell::<String>(6, sql)?),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_in_other_sessions_queries_are_hidden() {
        assert_eq!(
            redact_query("ALTER ROLE app PASSWORD 'x'"),
            "ALTER ROLE app PASSWORD ?"
        );
        assert!(
            !redact_query("SELECT * FROM users WHERE token = 'tok_live_9'").contains("tok_live")
        );
        assert_eq!(redact_query("SELECT  1\n FROM t"), "SELECT ? FROM t");
    }
}
