//! From a playbook environment to a live connection, the way libpq would
//! make it: connection string from the environment variable the playbook
//! names (or `--dsn NAME=...`), `PG*` variables for what it leaves out,
//! `~/.pgpass` for the password, and `sslmode` up to `verify-full`.
//!
//! A [`Target`] can describe itself for messages; that description never
//! includes the password.

mod dsn;
mod pgpass;
mod service;
pub mod tls;

use crate::error::{describe_postgres, Error, Kind, Result};
use crate::playbook::Environment;
use postgres::config::SslMode;
use postgres::{Client, Config};
use std::path::PathBuf;
use std::time::Duration;
pub use tls::Tls;

/// libpq's sslmode, all six of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsMode {
    Disable,
    Allow,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

/// A resolved connection: what to connect to, and how to say so safely.
#[derive(Debug, Clone)]
pub struct Target {
    pub environment: String,
    config: Config,
    tls: TlsMode,
    root_cert: Option<PathBuf>,
    /// The client certificate and its key (sslcert / sslkey, or libpq's
    /// defaults ~/.postgresql/postgresql.crt and .key when both exist).
    client_cert: Option<(PathBuf, PathBuf)>,
    /// `host=.. port=.. dbname=.. user=.. sslmode=..`, never the password.
    pub description: String,
}

/// `--dsn NAME=CONNSTRING` overrides, by environment name.
pub type Overrides = [(String, String)];

pub fn parse_override(text: &str) -> std::result::Result<(String, String), String> {
    const LIBPQ_KEYWORDS: &[&str] = &[
        "host",
        "hostaddr",
        "port",
        "user",
        "password",
        "dbname",
        "sslmode",
        "sslrootcert",
        "sslcert",
        "sslkey",
        "passfile",
        "connect_timeout",
        "application_name",
        "options",
        "service",
    ];
    let looks_like_a_connection_string = text.starts_with("postgres://")
        || text.starts_with("postgresql://")
        || text
            .split_once('=')
            .is_some_and(|(name, _)| LIBPQ_KEYWORDS.contains(&name.trim()));
    if looks_like_a_connection_string {
        return Err("this is a connection string without the environment's name: write NAME=CONNSTRING, e.g. staging='host=db1 dbname=app'".to_string());
    }
    match text.split_once('=') {
        Some((name, dsn)) if !name.is_empty() && !name.contains(char::is_whitespace) => {
            Ok((name.to_string(), dsn.to_string()))
        }
        _ => Err("expected NAME=CONNSTRING, e.g. staging='host=db1 dbname=app'".to_string()),
    }
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

impl Target {
    /// Resolves the connection for one playbook environment.
    pub fn resolve(environment: &Environment, overrides: &Overrides) -> Result<Target> {
        let overridden = overrides.iter().rev().find(|(n, _)| n == &environment.name);
        if let (None, Some(fleet)) = (overridden, &environment.fleet) {
            let first = fleet.targets.first().map_or("TARGET", |t| t.name.as_str());
            return Err(Error::usage(format!(
                "environment {:?} is a fleet of {} databases, not one database",
                environment.name,
                fleet.targets.len()
            ))
            .next(format!(
                "name one of its databases: --env {}/{first} (drop, rollback, orphans, status and cleanup --once also run across the whole fleet)",
                environment.name
            )));
        }
        let text = match (overridden, &environment.service) {
            (Some((_, dsn)), _) => dsn.clone(),
            // A service name is checked by the playbook: letters, digits, - _ .
            (None, Some(service)) => format!("service={service}"),
            (None, None) => std::env::var(&environment.dsn_env).map_err(|_| {
                Error::usage(format!(
                    "no connection string for environment {:?}: the variable {} is not set",
                    environment.name, environment.dsn_env
                ))
                .next(format!(
                    "export {}='host=... dbname=... user=...' (or a postgresql:// URI), or pass --dsn {}=...",
                    environment.dsn_env, environment.name
                ))
            })?,
        };
        Target::from_dsn(&environment.name, &text).map_err(|e| {
            let e = e.with("environment", environment.name.clone());
            match (overridden, &environment.service) {
                (Some(_), _) => e.with("from", format!("--dsn {}=...", environment.name)),
                (None, Some(service)) => e.with("service", service.clone()),
                (None, None) => e.with("variable", environment.dsn_env.clone()),
            }
        })
    }

    /// Builds a target from a connection string, with libpq's defaults.
    // Long because it is libpq's keyword table and defaults, one after another (issue: keep only the PG*/pgpass/service merging on top of postgres::Config).
    pub fn from_dsn(environment: &str, text: &str) -> Result<Target> {
        let explicit = dsn::parse(text).map_err(Error::usage)?;
        // libpq's order: the connection string, then its service's
        // parameters, then the PG* variables, then the defaults.
        let service = explicit
            .iter()
            .rev()
            .find(|(k, _)| k == "service")
            .map(|(_, v)| v.clone())
            .or_else(|| env("PGSERVICE"));
        let mut pairs = match &service {
            Some(name) => service::lookup(name).map_err(Error::usage)?,
            None => Vec::new(),
        };
        pairs.extend(explicit);
        let mut config = Config::new();
        let mut host = env("PGHOST");
        let mut hostaddr = env("PGHOSTADDR");
        let mut port = env("PGPORT");
        let mut user = env("PGUSER");
        let mut password = env("PGPASSWORD");
        let mut dbname = env("PGDATABASE");
        let mut sslmode = env("PGSSLMODE");
        let mut root_cert = env("PGSSLROOTCERT");
        let mut ssl_cert = env("PGSSLCERT");
        let mut ssl_key = env("PGSSLKEY");
        let mut passfile = None;
        let mut connect_timeout = env("PGCONNECT_TIMEOUT");
        let mut application_name = env("PGAPPNAME");
        for (key, value) in pairs {
            match key.as_str() {
                "host" => host = Some(value),
                "hostaddr" => hostaddr = Some(value),
                "port" => port = Some(value),
                "user" => user = Some(value),
                "password" => password = Some(value),
                "dbname" => dbname = Some(value),
                "sslmode" => sslmode = Some(value),
                "sslrootcert" => root_cert = Some(value),
                "passfile" => passfile = Some(PathBuf::from(value)),
                "connect_timeout" => connect_timeout = Some(value),
                "application_name" => application_name = Some(value),
                "options" => {
                    config.options(&value);
                }
                "service" => {}
                "target_session_attrs" => {
                    let attrs = match value.as_str() {
                        "any" => postgres::config::TargetSessionAttrs::Any,
                        "read-write" => postgres::config::TargetSessionAttrs::ReadWrite,
                        _ => return Err(Error::usage("target_session_attrs must be any or read-write")),
                    };
                    config.target_session_attrs(attrs);
                }
                "keepalives" => {
                    config.keepalives(value != "0");
                }
                "keepalives_idle" | "keepalives_interval" => {
                    let seconds: u64 = value.parse().map_err(|_| {
                        Error::usage(format!("{key} must be a whole number of seconds"))
                    })?;
                    let d = Duration::from_secs(seconds);
                    if key == "keepalives_idle" {
                        config.keepalives_idle(d);
                    } else {
                        config.keepalives_interval(d);
                    }
                }
                "keepalives_count" => {
                    let n: u32 = value
                        .parse()
                        .map_err(|_| Error::usage("keepalives_count must be a whole number"))?;
                    config.keepalives_retries(n);
                }
                "channel_binding" => {
                    config.channel_binding(match value.as_str() {
                        "disable" => postgres::config::ChannelBinding::Disable,
                        "prefer" => postgres::config::ChannelBinding::Prefer,
                        "require" => postgres::config::ChannelBinding::Require,
                        _ => {
                            return Err(Error::usage(
                                "channel_binding must be disable, prefer or require",
                            ))
                        }
                    });
                }
                "sslcert" => ssl_cert = Some(value),
                "sslkey" => ssl_key = Some(value),
                other => {
                    return Err(Error::usage(format!(
                        "unknown connection parameter {other:?}; known: host hostaddr port user password dbname sslmode sslrootcert sslcert sslkey passfile connect_timeout keepalives keepalives_idle keepalives_interval keepalives_count channel_binding application_name options target_session_attrs service"
                    )))
                }
            }
        }
        let host = host.unwrap_or_else(|| "localhost".to_string());
        let hosts: Vec<&str> = host.split(',').collect();
        for h in &hosts {
            if h.starts_with('/') {
                config.host_path(h);
            } else {
                config.host(h);
            }
        }
        if let Some(addr) = &hostaddr {
            for a in addr.split(',') {
                let ip = a
                    .parse()
                    .map_err(|_| Error::usage(format!("hostaddr {a:?} is not an IP address")))?;
                config.hostaddr(ip);
            }
        }
        let ports: Vec<u16> = match &port {
            None => vec![5432],
            Some(p) => p
                .split(',')
                .map(|p| if p.is_empty() { Ok(5432) } else { p.parse() })
                .collect::<std::result::Result<_, _>>()
                .map_err(|_| Error::usage(format!("port {p:?} is not a port number")))?,
        };
        for p in &ports {
            config.port(*p);
        }
        let user = match user.or_else(os_user) {
            Some(u) => u,
            None => {
                return Err(Error::usage(
                    "no user: set user= in the connection string or PGUSER",
                ))
            }
        };
        config.user(&user);
        let dbname = dbname.unwrap_or_else(|| user.clone());
        config.dbname(&dbname);
        if password.is_none() {
            if let Some(file) = passfile.or_else(pgpass::default_path) {
                password = pgpass::lookup(&file, hosts[0], ports[0], &dbname, &user);
            }
        }
        if let Some(p) = &password {
            config.password(p);
        }
        let timeout = match connect_timeout {
            None => 10,
            Some(t) => t
                .parse::<u64>()
                .map_err(|_| Error::usage("connect_timeout must be a whole number of seconds"))?,
        };
        if timeout > 0 {
            config.connect_timeout(Duration::from_secs(timeout));
        }
        config.application_name(application_name.as_deref().unwrap_or("fkctl"));
        let tls = match sslmode.as_deref().unwrap_or("prefer") {
            "disable" => TlsMode::Disable,
            "allow" => TlsMode::Allow,
            "prefer" => TlsMode::Prefer,
            "require" => TlsMode::Require,
            "verify-ca" => TlsMode::VerifyCa,
            "verify-full" => TlsMode::VerifyFull,
            other => {
                return Err(Error::usage(format!(
                    "sslmode {other:?} is not one of disable, allow, prefer, require, verify-ca, verify-full"
                )))
            }
        };
        config.ssl_mode(match tls {
            TlsMode::Disable => SslMode::Disable,
            TlsMode::Allow | TlsMode::Prefer => SslMode::Prefer,
            _ => SslMode::Require,
        });
        let root_cert = root_cert.map(PathBuf::from).or_else(|| {
            let default = PathBuf::from(env("HOME")?).join(".postgresql/root.crt");
            default.exists().then_some(default)
        });
        let client_cert = client_cert(ssl_cert, ssl_key)?;
        if let Some((_, key)) = &client_cert {
            key_is_private(key)?;
        }
        let description = format!(
            "host={} port={} dbname={} user={} sslmode={}",
            host,
            ports
                .iter()
                .map(u16::to_string)
                .collect::<Vec<_>>()
                .join(","),
            dbname,
            user,
            sslmode.as_deref().unwrap_or("prefer")
        );
        Ok(Target {
            environment: environment.to_string(),
            config,
            tls,
            root_cert,
            client_cert,
            description,
        })
    }

    /// The TLS setup for this target (also used to send cancel requests),
    /// built once per process for each (mode, root certificate, client
    /// certificate): reading `sslrootcert=system` or a client key is done once.
    pub fn tls_connector(&self) -> Result<Tls> {
        type Key = (TlsMode, Option<PathBuf>, Option<(PathBuf, PathBuf)>);
        type Cache = Vec<(Key, Tls)>;
        static CACHE: std::sync::Mutex<Cache> = std::sync::Mutex::new(Vec::new());
        let key = (self.tls, self.root_cert.clone(), self.client_cert.clone());
        let mut cache = CACHE
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((_, connector)) = cache.iter().find(|(k, _)| *k == key) {
            return Ok(connector.clone());
        }
        let connector = tls::connector(
            self.tls,
            self.root_cert.as_deref(),
            self.client_cert
                .as_ref()
                .map(|(c, k)| (c.as_path(), k.as_path())),
        )?;
        cache.push((key, connector.clone()));
        Ok(connector)
    }

    /// Connects and prepares the session:
    /// - `standard_conforming_strings`: fkctl's own SQL relies on it;
    /// - `lock_timeout` for every statement, reads included, so that no
    ///   statement of fkctl's ever queues behind another session's lock for
    ///   longer than that (the callers retry with backoff and name the holder);
    /// - `client_connection_check_interval` (PostgreSQL 14+): if fkctl's
    ///   process is killed mid-statement, the server notices within a second
    ///   and ends the statement, releasing its locks and the change's
    ///   advisory lock, instead of running the batch to its end for nobody.
    /// - `search_path` with pg_catalog first: PostgreSQL searches it first
    ///   anyway unless the path names it later, and then an operator or
    ///   function of a schema ahead of it (an `=` for oid or bigint) would
    ///   take the place of the built-in one in fkctl's catalog queries and
    ///   batches. The rest of the path stays, so names print as before.
    pub fn connect(&self, lock_timeout: Duration) -> Result<Client> {
        let tls = self.tls_connector()?;
        let mut client = self.config.connect(tls).map_err(|e| {
            let (kind, said) = describe_postgres(&e);
            let said = self.as_libpq_says(&e).unwrap_or(said);
            let kind = if kind == Kind::Interrupted { kind } else { Kind::Unreachable };
            Error::new(kind, format!("cannot connect to the {} database", self.environment))
                .with("environment", self.environment.clone())
                .with("connection", self.description.clone())
                .with("postgres", said)
                .next("check that the server is up and reachable, and that the connection string, user and password are right")
        })?;
        let setup = session_setup_sql(lock_timeout);
        client
            .batch_execute(&setup)
            .map_err(|e| Error::from_postgres(&e, &setup))?;
        Ok(client)
    }
}

impl Target {
    /// A network failure in libpq's words, with the host and port tried:
    /// "connection refused", "could not translate host name", "timeout
    /// expired". None for an error the server itself sent (it says enough).
    fn as_libpq_says(&self, e: &postgres::Error) -> Option<String> {
        if e.as_db_error().is_some() {
            return None;
        }
        let host = match self.config.get_hosts().first() {
            Some(postgres::config::Host::Tcp(h)) => h.clone(),
            Some(postgres::config::Host::Unix(p)) => p.display().to_string(),
            None => "localhost".to_string(),
        };
        let port = self.config.get_ports().first().copied().unwrap_or(5432);
        let mut source = std::error::Error::source(e);
        while let Some(cause) = source {
            if let Some(io) = cause.downcast_ref::<std::io::Error>() {
                let text = io.to_string();
                return Some(match io.kind() {
                    std::io::ErrorKind::ConnectionRefused => format!(
                        "connection to server at \"{host}\", port {port} failed: Connection refused. Is the server running on that host and accepting TCP/IP connections?"
                    ),
                    std::io::ErrorKind::TimedOut => format!(
                        "connection to server at \"{host}\", port {port} failed: timeout expired"
                    ),
                    _ if text.contains("lookup address") || text.contains("Name or service not known") => format!(
                        "could not translate host name \"{host}\" to address: {}",
                        text.rsplit(": ").next().unwrap_or(&text)
                    ),
                    _ => format!("connection to server at \"{host}\", port {port} failed: {text}"),
                });
            }
            source = cause.source();
        }
        let text = e.to_string();
        text.contains("timeout").then(|| {
            format!("connection to server at \"{host}\", port {port} failed: timeout expired")
        })
    }
}

/// sslcert / sslkey as libpq takes them: both given, or libpq's default
/// files when both exist; one without the other is a mistake.
fn client_cert(cert: Option<String>, key: Option<String>) -> Result<Option<(PathBuf, PathBuf)>> {
    match (cert, key) {
        (Some(c), Some(k)) => Ok(Some((PathBuf::from(c), PathBuf::from(k)))),
        (Some(_), None) | (None, Some(_)) => Err(Error::usage(
            "sslcert and sslkey go together: give the client certificate and its private key",
        )),
        (None, None) => {
            let dir = env("HOME").map(|h| PathBuf::from(h).join(".postgresql"));
            Ok(dir
                .map(|d| (d.join("postgresql.crt"), d.join("postgresql.key")))
                .filter(|(c, k)| c.exists() && k.exists()))
        }
    }
}

/// Like libpq, a key file others can read is refused (checked for every
/// target, before any connection).
fn key_is_private(key: &std::path::Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(key)
        .map_err(|e| Error::usage(format!("cannot read sslkey {}: {e}", key.display())))?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        return Err(Error::usage(format!(
            "private key file {} has group or world access",
            key.display()
        ))
        .next(format!("chmod 0600 {}", key.display())));
    }
    Ok(())
}

/// The operating-system user fkctl runs as, as libpq takes it when no user
/// is given: the effective uid's name in the password database (not $USER,
/// which `sudo` and `su` may leave pointing at someone else).
pub fn os_user() -> Option<String> {
    let mut buf = vec![0u8; 4096];
    // SAFETY: an all-zero passwd is valid to pass for getpwuid_r to fill.
    let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
    let mut found: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: every pointer is valid for the call and buf outlives it;
    // getpwuid_r writes only within buf's stated length.
    let rc = unsafe {
        libc::getpwuid_r(
            libc::geteuid(),
            &mut pwd,
            buf.as_mut_ptr().cast(),
            buf.len(),
            &mut found,
        )
    };
    if rc != 0 || found.is_null() || pwd.pw_name.is_null() {
        return None;
    }
    // SAFETY: pw_name points into buf, NUL-terminated by getpwuid_r.
    let name = unsafe { std::ffi::CStr::from_ptr(pwd.pw_name) };
    name.to_str()
        .ok()
        .map(str::to_string)
        .filter(|n| !n.is_empty())
}

/// The settings every fkctl session starts with (see [`Target::connect`]).
pub fn session_setup_sql(lock_timeout: Duration) -> String {
    format!(
        "SET standard_conforming_strings = on; SET lock_timeout = '{}ms'; \
         SELECT set_config('client_connection_check_interval', '1000', false) \
          WHERE current_setting('server_version_num')::int >= 140000; \
         SELECT set_config('search_path', CASE WHEN current_setting('search_path') = '' THEN 'pg_catalog' \
          ELSE 'pg_catalog, ' || current_setting('search_path') END, false)",
        lock_timeout.as_millis().max(1)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn description_never_contains_the_password() {
        let t = Target::from_dsn(
            "staging",
            "host=db1 user=ops password=hunter2 dbname=app sslmode=disable",
        );
        let t = t.ok();
        let d = t
            .as_ref()
            .map(|t| t.description.clone())
            .unwrap_or_default();
        assert!(d.contains("host=db1") && d.contains("dbname=app"), "{d}");
        assert!(!d.contains("hunter2"));
        assert!(!format!("{:?}", t.map(|t| t.description)).contains("hunter2"));
    }

    #[test]
    fn unknown_sslmode_is_a_usage_error() {
        let e = Target::from_dsn("x", "host=db1 user=u sslmode=sometimes").err();
        assert_eq!(e.map(|e| e.kind), Some(Kind::Usage));
    }

    #[test]
    fn overrides_parse() {
        assert_eq!(
            parse_override("staging=host=db1 dbname=x"),
            Ok(("staging".to_string(), "host=db1 dbname=x".to_string()))
        );
        assert!(parse_override("=x").is_err());
        assert!(parse_override("host=db1 dbname=x").is_err());
        assert!(parse_override("postgresql://db1/app").is_err());
    }
}
