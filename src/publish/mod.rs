//! Posting the change request to an issue tracker (GitLab or GitHub) and
//! keeping one issue per change up to date: the issue is found again by a
//! hidden marker in its body, so a second post updates it instead of
//! opening another. Blocking HTTP (ureq); fkctl stays synchronous.
//!
//! The token is only ever put in a request header: it is not part of any
//! URL, message or error, and any text a server sends back is scrubbed of it
//! before it is shown.

pub mod github;
pub mod gitlab;

use crate::error::{Error, Kind, Result};
use serde_json::Value;
use std::time::Duration;

/// Which tracker to post to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tracker {
    Gitlab,
    Github,
}

impl Tracker {
    pub fn name(self) -> &'static str {
        match self {
            Tracker::Gitlab => "GitLab",
            Tracker::Github => "GitHub",
        }
    }

    pub fn token_variable(self) -> &'static str {
        match self {
            Tracker::Gitlab => "GITLAB_TOKEN",
            Tracker::Github => "GITHUB_TOKEN",
        }
    }

    pub fn default_api_url(self) -> &'static str {
        match self {
            Tracker::Gitlab => "https://gitlab.com/api/v4",
            Tracker::Github => "https://api.github.com",
        }
    }

    /// The most characters an issue's text may have.
    pub fn body_limit(self) -> usize {
        match self {
            Tracker::Gitlab => 1_048_576,
            Tracker::Github => 65_536,
        }
    }

    /// The field holding an issue's text in this tracker's API.
    pub fn body_field(self) -> &'static str {
        match self {
            Tracker::Gitlab => "description",
            Tracker::Github => "body",
        }
    }

    fn token_help(self) -> &'static str {
        match self {
            Tracker::Gitlab => "a GitLab personal, group or project access token with the api scope",
            Tracker::Github => "a GitHub token that can write issues of the repository (fine-grained: Issues read and write)",
        }
    }
}

/// A secret that never prints.
pub struct Token(String);

impl Token {
    /// The token from the tracker's environment variable.
    pub fn from_environment(tracker: Tracker) -> Result<Token> {
        let var = tracker.token_variable();
        match std::env::var(var) {
            Ok(t) if !t.trim().is_empty() => Ok(Token(t.trim().to_string())),
            _ => Err(Error::usage(format!(
                "{var} is not set: --post {} needs a token to create or update the issue",
                tracker.name().to_lowercase()
            ))
            .next(format!(
                "export {var} with {} (fkctl sends it only in a request header and never prints it)",
                tracker.token_help()
            ))),
        }
    }

    /// `text` with every occurrence of the token replaced.
    fn scrub(&self, text: &str) -> String {
        if self.0.is_empty() {
            text.to_string()
        } else {
            text.replace(&self.0, "[token]")
        }
    }
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token([redacted])")
    }
}

/// Where to post.
#[derive(Debug)]
pub struct Target {
    pub tracker: Tracker,
    /// GROUP/NAME (GitLab, any depth of subgroups) or OWNER/REPO (GitHub).
    pub project: String,
    pub api_url: String,
    pub token: Token,
}

/// The issue as fkctl wants it.
#[derive(Debug, Clone)]
pub struct Issue {
    pub title: String,
    pub body: String,
    pub labels: Vec<String>,
}

/// What the tracker did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Posted {
    pub url: String,
    pub number: u64,
    pub created: bool,
}

/// The hidden line that finds this change's issue again.
pub fn marker(change: &str) -> String {
    format!("<!-- fkctl-change-request: {change} -->")
}

/// The body with the marker as its last line (a team's own template need
/// not know about it).
pub fn with_marker(body: &str, change: &str) -> String {
    let marker = marker(change);
    if body.contains(&marker) {
        return body.to_string();
    }
    let mut out = body.trim_end_matches('\n').to_string();
    out.push_str("\n\n");
    out.push_str(&marker);
    out.push('\n');
    out
}

/// The JSON this tracker's create/update API takes (also what
/// `--output gitlab-json` / `github-json` print).
pub fn payload(tracker: Tracker, issue: &Issue) -> Value {
    match tracker {
        Tracker::Gitlab => serde_json::json!({
            "title": issue.title,
            "description": issue.body,
            // GitLab's documented form: one comma-separated string.
            "labels": issue.labels.join(","),
        }),
        Tracker::Github => serde_json::json!({
            "title": issue.title,
            "body": issue.body,
            "labels": issue.labels,
        }),
    }
}

impl Target {
    /// Checks the project and URL before anything is sent.
    pub fn new(tracker: Tracker, project: &str, api_url: Option<&str>) -> Result<Target> {
        let project = project.trim().trim_matches('/').to_string();
        let parts: Vec<&str> = project.split('/').collect();
        let well_formed = parts.iter().all(|p| !p.is_empty())
            && match tracker {
                Tracker::Gitlab => parts.len() >= 2 || project.chars().all(|c| c.is_ascii_digit()),
                Tracker::Github => parts.len() == 2,
            };
        if !well_formed {
            let shape = match tracker {
                Tracker::Gitlab => "GROUP/NAME (or GROUP/SUBGROUP/NAME, or the numeric project id)",
                Tracker::Github => "OWNER/REPO",
            };
            return Err(Error::usage(format!(
                "--project {project:?} is not a {} project: expected {shape}",
                tracker.name()
            )));
        }
        let api_url = api_url
            .unwrap_or(tracker.default_api_url())
            .trim()
            .trim_end_matches('/')
            .to_string();
        check_url(&api_url)?;
        Ok(Target {
            tracker,
            project,
            api_url,
            token: Token::from_environment(tracker)?,
        })
    }
}

/// https, or http to this machine only: the token is in every request.
/// No credentials in the URL: it is shown in messages.
fn check_url(url: &str) -> Result<()> {
    let authority = url.split_once("://").map_or("", |(_, rest)| {
        rest.split(['/', '?']).next().unwrap_or_default()
    });
    if authority.contains('@') {
        return Err(Error::usage(
            "--api-url has credentials in it (user:password@): fkctl shows this URL in its messages",
        )
        .next("give the URL without them; the token goes in GITLAB_TOKEN or GITHUB_TOKEN"));
    }
    if url.starts_with("https://") {
        return Ok(());
    }
    let Some(rest) = url.strip_prefix("http://") else {
        return Err(Error::usage(format!(
            "--api-url {url:?} is not an http(s) URL"
        ))
        .next("give the API's base URL, e.g. https://gitlab.example.com/api/v4 or https://github.example.com/api/v3"));
    };
    let host = rest.split(['/', '?']).next().unwrap_or_default();
    let host = match host.rsplit_once(':') {
        Some((h, port)) if port.chars().all(|c| c.is_ascii_digit()) => h,
        _ => host,
    };
    if matches!(host, "localhost" | "127.0.0.1" | "[::1]") {
        return Ok(());
    }
    Err(Error::usage(format!(
        "--api-url {url:?} is plain http: the token would cross the network unencrypted"
    ))
    .next("use the https:// URL of the API"))
}

/// One JSON answer, or an error that says what the server said and what to do.
pub(crate) struct Http<'a> {
    agent: ureq::Agent,
    target: &'a Target,
    headers: Vec<(&'static str, String)>,
}

/// The system's root certificates (a self-hosted GitLab is often signed by
/// a company CA installed there); Mozilla's bundled roots when none load.
fn system_roots() -> ureq::tls::RootCerts {
    let found = rustls_native_certs::load_native_certs();
    let certs: Vec<ureq::tls::Certificate<'static>> = found
        .certs
        .iter()
        .map(|c| ureq::tls::Certificate::from_der(c.as_ref()).to_owned())
        .collect();
    if certs.is_empty() {
        ureq::tls::RootCerts::WebPki
    } else {
        ureq::tls::RootCerts::new_with_certs(&certs)
    }
}

/// A response: status, JSON body, and the next page's number when the API gives one.
pub(crate) struct Answer {
    pub json: Value,
    pub next_page: Option<u32>,
}

impl<'a> Http<'a> {
    pub(crate) fn new(target: &'a Target, headers: Vec<(&'static str, String)>) -> Http<'a> {
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(60)))
            .user_agent(format!("fkctl/{}", env!("CARGO_PKG_VERSION")))
            .tls_config(
                ureq::tls::TlsConfig::builder()
                    .provider(ureq::tls::TlsProvider::Rustls)
                    .root_certs(system_roots())
                    .build(),
            )
            .build();
        Http {
            agent: ureq::Agent::new_with_config(config),
            target,
            headers,
        }
    }

    pub(crate) fn call(&self, method: &str, path: &str, body: Option<&Value>) -> Result<Answer> {
        let url = format!("{}{}", self.target.api_url, path);
        let what = format!("{method} {url}");
        let sent = match (method, body) {
            ("GET", _) => {
                let mut r = self.agent.get(&url);
                for (k, v) in &self.headers {
                    r = r.header(*k, v.as_str());
                }
                r.call()
            }
            (_, body) => {
                let mut r = match method {
                    "POST" => self.agent.post(&url),
                    "PUT" => self.agent.put(&url),
                    _ => self.agent.patch(&url),
                };
                for (k, v) in &self.headers {
                    r = r.header(*k, v.as_str());
                }
                let text = body.map(Value::to_string).unwrap_or_default();
                r.content_type("application/json").send(text.as_str())
            }
        };
        let tracker = self.target.tracker;
        let mut response = sent.map_err(|e| {
            Error::new(
                Kind::Unreachable,
                format!(
                    "cannot reach {} at {}: {}",
                    tracker.name(),
                    self.target.api_url,
                    self.target.token.scrub(&e.to_string())
                ),
            )
            .next("check --api-url, the network and any proxy; nothing was posted")
        })?;
        let status = response.status().as_u16();
        let next_page = response
            .headers()
            .get("x-next-page")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse().ok());
        let text = response.body_mut().read_to_string().map_err(|e| {
            Error::new(
                Kind::Unreachable,
                format!("{what}: cannot read {}'s answer: {e}", tracker.name()),
            )
        })?;
        if !(200..300).contains(&status) {
            return Err(self.refused(&what, status, &text));
        }
        let json = serde_json::from_str(&text).map_err(|e| {
            Error::new(
                Kind::Unreachable,
                format!(
                    "{what}: {} answered {status} with something that is not JSON ({e})",
                    tracker.name()
                ),
            )
            .next("check that --api-url is the API's base URL, not the web site's")
        })?;
        Ok(Answer { json, next_page })
    }

    /// What the server said, and what to do about it.
    fn refused(&self, what: &str, status: u16, text: &str) -> Error {
        let target = self.target;
        let tracker = target.tracker;
        let said = serde_json::from_str::<Value>(text)
            .ok()
            .and_then(|v| {
                v.get("message")
                    .or_else(|| v.get("error"))
                    .map(|m| match m {
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    })
            })
            .unwrap_or_else(|| text.chars().take(300).collect());
        let said = target.token.scrub(&said);
        let var = tracker.token_variable();
        let (kind, next) = match status {
            401 => (
                Kind::Usage,
                format!("the token in {var} was refused: it is wrong, expired or revoked; create {} and export it as {var}", tracker.token_help()),
            ),
            403 => (
                Kind::Usage,
                format!("the token in {var} may not do this: it needs {} (and the project must allow issues)", tracker.token_help()),
            ),
            404 => (
                Kind::Usage,
                format!("check --project {:?} ({}), --api-url {}, and that the token's user can see the project (a private project answers 404 to others)", target.project, match tracker { Tracker::Gitlab => "GROUP/NAME", Tracker::Github => "OWNER/REPO" }, target.api_url),
            ),
            422 | 400 => (
                Kind::Usage,
                "the tracker refused the issue's fields (labels, title or body): see its message above".to_string(),
            ),
            _ => (
                Kind::Unreachable,
                format!("{} had a problem: try again later; nothing was changed by this request", tracker.name()),
            ),
        };
        Error::new(
            kind,
            format!("{what}: {} answered {status}: {said}", tracker.name()),
        )
        .next(next)
    }
}

/// Posts `issue`: updates the issue whose body carries the marker of
/// `change`, or creates one.
pub fn post(target: &Target, change: &str, issue: &Issue) -> Result<Posted> {
    let issue = Issue {
        body: with_marker(&issue.body, change),
        ..issue.clone()
    };
    match target.tracker {
        Tracker::Gitlab => gitlab::post(target, change, &issue),
        Tracker::Github => github::post(target, change, &issue),
    }
}

/// Percent-encodes a path segment or query value (RFC 3986 unreserved kept).
pub(crate) fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The labels to send on update: the issue's own (people add some) and fkctl's.
pub(crate) fn merged_labels(existing: &[String], ours: &[String]) -> Vec<String> {
    let mut out = existing.to_vec();
    for l in ours {
        if !out.contains(l) {
            out.push(l.clone());
        }
    }
    out
}

/// At most this many pages of issues are read looking for the marker.
pub(crate) const MAX_PAGES: u32 = 20;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_marker_is_added_once() {
        let once = with_marker("body\n", "c1");
        assert_eq!(once, "body\n\n<!-- fkctl-change-request: c1 -->\n");
        assert_eq!(with_marker(&once, "c1"), once);
    }

    #[test]
    fn project_paths_are_encoded_as_one_segment() {
        assert_eq!(encode("group/sub/my.project"), "group%2Fsub%2Fmy.project");
    }

    #[test]
    fn plain_http_only_to_this_machine() {
        assert!(check_url("http://127.0.0.1:8080/api/v4").is_ok());
        assert!(check_url("https://gitlab.example.com/api/v4").is_ok());
        assert!(check_url("http://gitlab.example.com/api/v4").is_err());
        assert!(check_url("ftp://x").is_err());
        assert!(check_url("https://me:secret@gitlab.example.com/api/v4").is_err());
    }

    #[test]
    fn a_token_never_prints() {
        let t = Token("s3cret".into());
        assert_eq!(format!("{t:?}"), "Token([redacted])");
        assert_eq!(t.scrub("bad s3cret"), "bad [token]");
    }
}
