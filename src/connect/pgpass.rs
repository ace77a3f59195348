//! `~/.pgpass` (or `PGPASSFILE`) lookup, with libpq's matching rules.

use std::path::{Path, PathBuf};

pub fn default_path() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("PGPASSFILE") {
        return Some(PathBuf::from(p));
    }
    std::env::var_os("HOME").map(|h| Path::new(&h).join(".pgpass"))
}

/// Splits one line into its five fields, honouring `\:` and `\\`.
fn fields(line: &str) -> Option<[String; 5]> {
    let mut out: Vec<String> = vec![String::new()];
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let Some(n) = chars.next() {
                    out.last_mut()?.push(n);
                }
            }
            ':' if out.len() < 5 => out.push(String::new()),
            c => out.last_mut()?.push(c),
        }
    }
    out.try_into().ok()
}

/// The password for a connection, from the first matching line; `*` matches anything.
/// A host that is a socket directory matches the name `localhost`, as in libpq.
pub fn lookup(file: &Path, host: &str, port: u16, dbname: &str, user: &str) -> Option<String> {
    let text = std::fs::read_to_string(file).ok()?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(file).ok()?.permissions().mode();
        if mode & 0o077 != 0 {
            eprintln!(
                "warning: password file {} has group or world access; ignoring it (chmod 0600 to use it)",
                file.display()
            );
            return None;
        }
    }
    let host = if host.starts_with('/') {
        "localhost"
    } else {
        host
    };
    let port = port.to_string();
    text.lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(fields)
        .find(|[h, p, d, u, _]| {
            let m = |pattern: &str, value: &str| pattern == "*" || pattern == value;
            m(h, host) && m(p, &port) && m(d, dbname) && m(u, user)
        })
        .map(|[_, _, _, _, password]| password)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_with_wildcards_and_escapes() {
        let dir = std::env::temp_dir().join(format!("fkctl-pgpass-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let file = dir.join("pgpass");
        let written = std::fs::write(
            &file,
            "# comment\nother:5432:*:ops:nope\ndb1:*:app:ops:pa\\:ss\n*:*:*:*:fallback\n",
        );
        assert!(written.is_ok());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600));
        }
        assert_eq!(
            lookup(&file, "db1", 5433, "app", "ops").as_deref(),
            Some("pa:ss")
        );
        assert_eq!(
            lookup(&file, "db2", 5432, "app", "ops").as_deref(),
            Some("fallback")
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
