//! Connection strings as libpq reads them: `key=value` lists and
//! `postgresql://` URIs, parsed into ordered `(key, value)` pairs.

/// Parses either form. Errors never quote the input, since it may hold a password.
pub fn parse(text: &str) -> Result<Vec<(String, String)>, String> {
    let trimmed = text.trim();
    if trimmed.starts_with("postgresql://") || trimmed.starts_with("postgres://") {
        parse_uri(trimmed)
    } else {
        parse_key_values(trimmed)
    }
}

fn parse_key_values(text: &str) -> Result<Vec<(String, String)>, String> {
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    let mut pairs = Vec::new();
    let skip_ws = |i: &mut usize| {
        while *i < chars.len() && chars[*i].is_whitespace() {
            *i += 1;
        }
    };
    loop {
        skip_ws(&mut i);
        if i >= chars.len() {
            return Ok(pairs);
        }
        let start = i;
        while i < chars.len() && !chars[i].is_whitespace() && chars[i] != '=' {
            i += 1;
        }
        let key: String = chars[start..i].iter().collect();
        skip_ws(&mut i);
        if chars.get(i) != Some(&'=') {
            return Err(format!(
                "missing '=' after {key:?} in the connection string"
            ));
        }
        i += 1;
        skip_ws(&mut i);
        let mut value = String::new();
        if chars.get(i) == Some(&'\'') {
            i += 1;
            loop {
                match chars.get(i) {
                    None => {
                        return Err(format!(
                            "unterminated quoted value for {key:?} in the connection string"
                        ))
                    }
                    Some('\\') => {
                        if let Some(&c) = chars.get(i + 1) {
                            value.push(c);
                        }
                        i += 2;
                    }
                    Some('\'') => {
                        i += 1;
                        break;
                    }
                    Some(&c) => {
                        value.push(c);
                        i += 1;
                    }
                }
            }
        } else {
            while let Some(&c) = chars.get(i) {
                if c.is_whitespace() {
                    break;
                }
                if c == '\\' {
                    if let Some(&n) = chars.get(i + 1) {
                        value.push(n);
                    }
                    i += 2;
                    continue;
                }
                value.push(c);
                i += 1;
            }
        }
        pairs.push((key, value));
    }
}

fn percent_decode(text: &str) -> Result<String, String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| "invalid percent-encoding in the connection URI".to_string())?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "the connection URI decodes to invalid UTF-8".to_string())
}

fn parse_uri(text: &str) -> Result<Vec<(String, String)>, String> {
    let rest = text
        .split_once("://")
        .map(|(_, r)| r)
        .ok_or_else(|| "not a connection URI".to_string())?;
    let (before_query, query) = match rest.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (rest, None),
    };
    let (authority, path) = match before_query.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (before_query, None),
    };
    let mut pairs = Vec::new();
    let hosts_part = match authority.rsplit_once('@') {
        Some((userinfo, hosts)) => {
            let (user, password) = match userinfo.split_once(':') {
                Some((u, p)) => (u, Some(p)),
                None => (userinfo, None),
            };
            if !user.is_empty() {
                pairs.push(("user".to_string(), percent_decode(user)?));
            }
            if let Some(p) = password {
                pairs.push(("password".to_string(), percent_decode(p)?));
            }
            hosts
        }
        None => authority,
    };
    let mut hosts = Vec::new();
    let mut ports = Vec::new();
    for spec in hosts_part.split(',').filter(|s| !s.is_empty()) {
        let (host, port) = if let Some(v6) = spec.strip_prefix('[') {
            let (h, after) = v6
                .split_once(']')
                .ok_or_else(|| "unterminated [IPv6] host in the connection URI".to_string())?;
            (h.to_string(), after.strip_prefix(':').map(str::to_string))
        } else {
            match spec.rsplit_once(':') {
                Some((h, p)) => (percent_decode(h)?, Some(p.to_string())),
                None => (percent_decode(spec)?, None),
            }
        };
        hosts.push(host);
        ports.push(port.unwrap_or_default());
    }
    if !hosts.is_empty() {
        pairs.push(("host".to_string(), hosts.join(",")));
        if ports.iter().any(|p| !p.is_empty()) {
            pairs.push(("port".to_string(), ports.join(",")));
        }
    }
    if let Some(db) = path.filter(|p| !p.is_empty()) {
        pairs.push(("dbname".to_string(), percent_decode(db)?));
    }
    if let Some(q) = query {
        for item in q.split('&').filter(|s| !s.is_empty()) {
            let (k, v) = item
                .split_once('=')
                .ok_or_else(|| "a URI parameter without '=' in the connection URI".to_string())?;
            pairs.push((percent_decode(k)?, percent_decode(v)?));
        }
    }
    Ok(pairs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get<'a>(pairs: &'a [(String, String)], key: &str) -> Option<&'a str> {
        pairs
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    #[test]
    fn key_values_with_quotes_and_escapes() {
        let p =
            parse(r"host=db1 port = 5433 password='it\'s a secret' dbname=app").unwrap_or_default();
        assert_eq!(get(&p, "host"), Some("db1"));
        assert_eq!(get(&p, "port"), Some("5433"));
        assert_eq!(get(&p, "password"), Some("it's a secret"));
        assert_eq!(get(&p, "dbname"), Some("app"));
    }

    #[test]
    fn uris_with_credentials_hosts_and_parameters() {
        let p = parse("postgresql://ops:p%40ss@db1:5433,[::1]:5434/my%20db?sslmode=verify-full&application_name=x")
            .unwrap_or_default();
        assert_eq!(get(&p, "user"), Some("ops"));
        assert_eq!(get(&p, "password"), Some("p@ss"));
        assert_eq!(get(&p, "host"), Some("db1,::1"));
        assert_eq!(get(&p, "port"), Some("5433,5434"));
        assert_eq!(get(&p, "dbname"), Some("my db"));
        assert_eq!(get(&p, "sslmode"), Some("verify-full"));
    }

    #[test]
    fn errors_never_echo_the_input() {
        let e = parse("host=db password='secret").err().unwrap_or_default();
        assert!(!e.contains("secret"), "{e}");
        assert!(parse("postgresql://u:secret@h/db?broken")
            .err()
            .is_some_and(|e| !e.contains("secret")));
    }
}
