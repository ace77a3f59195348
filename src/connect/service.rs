//! libpq's connection service file: `service=NAME` (or `PGSERVICE`) names a
//! `[NAME]` section of `pg_service.conf` whose `key=value` lines fill in
//! what the connection string leaves out. Looked up as libpq does: the
//! user's file (`PGSERVICEFILE`, else `~/.pg_service.conf`) first, then the
//! system's (`PGSYSCONFDIR/pg_service.conf`); the first file that has the
//! section wins, whole.

use std::path::PathBuf;

/// The parameters of service `name`, or why there are none.
pub fn lookup(name: &str) -> Result<Vec<(String, String)>, String> {
    let mut searched = Vec::new();
    for path in candidate_files() {
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        searched.push(path.display().to_string());
        if let Some(params) = section(&text, name)? {
            return Ok(params);
        }
    }
    Err(if searched.is_empty() {
        format!("service {name:?}: no service file found (PGSERVICEFILE, ~/.pg_service.conf or PGSYSCONFDIR/pg_service.conf)")
    } else {
        format!(
            "service {name:?} is not defined in {}",
            searched.join(" or ")
        )
    })
}

fn candidate_files() -> Vec<PathBuf> {
    let var = |n: &str| std::env::var(n).ok().filter(|v| !v.is_empty());
    let mut files = Vec::new();
    match var("PGSERVICEFILE") {
        Some(file) => files.push(PathBuf::from(file)),
        None => {
            if let Some(home) = var("HOME") {
                files.push(PathBuf::from(home).join(".pg_service.conf"));
            }
        }
    }
    if let Some(dir) = var("PGSYSCONFDIR") {
        files.push(PathBuf::from(dir).join("pg_service.conf"));
    }
    files
}

/// The `key=value` lines of `[name]` in a service file's text, if it has one.
fn section(text: &str, name: &str) -> Result<Option<Vec<(String, String)>>, String> {
    let mut inside = false;
    let mut found = false;
    let mut params = Vec::new();
    for (number, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(header) = line.strip_prefix('[') {
            let header = header.strip_suffix(']').ok_or_else(|| {
                format!(
                    "service file line {}: a section header must end with ']'",
                    number + 1
                )
            })?;
            if found && inside {
                break;
            }
            inside = header == name;
            found |= inside;
            continue;
        }
        if !inside {
            continue;
        }
        let (key, value) = line
            .split_once('=')
            .ok_or_else(|| format!("service file line {}: expected key=value", number + 1))?;
        let key = key.trim();
        if key == "service" {
            return Err(format!(
                "service {name:?}: a service definition cannot name another service"
            ));
        }
        params.push((key.to_string(), value.trim().to_string()));
    }
    Ok(found.then_some(params))
}

#[cfg(test)]
mod tests {
    use super::section;

    const FILE: &str =
        "# shards\n[shard-01]\nhost=db1\nport = 6432\ndbname=app\n\n[shard-02]\nhost=db2\n";

    #[test]
    fn a_section_gives_its_lines_and_stops_at_the_next() {
        let params = section(FILE, "shard-01").ok().flatten().unwrap_or_default();
        assert_eq!(
            params,
            [
                ("host".to_string(), "db1".to_string()),
                ("port".to_string(), "6432".to_string()),
                ("dbname".to_string(), "app".to_string())
            ]
        );
        assert_eq!(section(FILE, "shard-03").ok().flatten(), None);
    }

    #[test]
    fn malformed_files_and_nested_services_are_refused() {
        assert!(section("[a\nhost=x\n", "a").is_err());
        assert!(section("[a]\nhost\n", "a").is_err());
        assert!(section("[a]\nservice=b\n", "a").is_err());
    }
}
