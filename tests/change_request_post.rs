//! `fkctl change-request --post`: a local HTTP server plays GitLab's and
//! GitHub's issue APIs (create, list/search, update) and records every
//! request fkctl sends. Created once, updated in place after the staging
//! drop with staging's evidence; the token never appears in any output.

mod common;

use common::staged::Setup;
use common::*;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

const GITLAB_TOKEN: &str = "glpat-Zq9secretTOKENvalue";
const GITHUB_TOKEN: &str = "ghp_Secret0123456789abcdef";

#[derive(Debug, Clone)]
struct Request {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    body: String,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Api {
    Gitlab,
    Github,
}

#[derive(Default)]
struct State {
    requests: Vec<Request>,
    /// Issues as the tracker stores them: number, title, body, labels.
    issues: Vec<(u64, String, String, Vec<String>)>,
}

struct Mock {
    base: String,
    state: Arc<Mutex<State>>,
}

impl Mock {
    fn start(api: Api) -> Mock {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
        let port = listener.local_addr().map(|a| a.port()).unwrap_or_default();
        let state = Arc::new(Mutex::new(State::default()));
        let shared = Arc::clone(&state);
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                serve(stream, api, &shared);
            }
        });
        let base = match api {
            Api::Gitlab => format!("http://127.0.0.1:{port}/api/v4"),
            Api::Github => format!("http://127.0.0.1:{port}"),
        };
        Mock { base, state }
    }

    fn requests(&self) -> Vec<Request> {
        self.state
            .lock()
            .map(|s| s.requests.clone())
            .unwrap_or_default()
    }

    fn issues(&self) -> Vec<(u64, String, String, Vec<String>)> {
        self.state
            .lock()
            .map(|s| s.issues.clone())
            .unwrap_or_default()
    }
}

fn read_request(stream: &mut TcpStream) -> Option<Request> {
    let mut reader = BufReader::new(stream.try_clone().ok()?);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_string();
    let path = parts.next()?.to_string();
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        reader.read_line(&mut h).ok()?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    let length = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse::<usize>().ok())
        .unwrap_or(0);
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    Some(Request {
        method,
        path,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

fn respond(stream: &mut TcpStream, status: u16, body: &Value) {
    let text = body.to_string();
    let _ = write!(
        stream,
        "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
        text.len()
    );
}

fn query_param(path: &str, name: &str) -> Option<String> {
    let query = path.split_once('?')?.1;
    query.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == name).then(|| {
            let mut out = Vec::new();
            let bytes = v.as_bytes();
            let mut i = 0;
            while i < bytes.len() {
                if bytes[i] == b'%' && i + 2 < bytes.len() + 1 {
                    let hex =
                        std::str::from_utf8(&bytes[i + 1..(i + 3).min(bytes.len())]).unwrap_or("");
                    if let Ok(b) = u8::from_str_radix(hex, 16) {
                        out.push(b);
                        i += 3;
                        continue;
                    }
                }
                out.push(if bytes[i] == b'+' { b' ' } else { bytes[i] });
                i += 1;
            }
            String::from_utf8_lossy(&out).into_owned()
        })
    })
}

// Long because it is the whole fake API of two trackers: authentication,
// the project check, then list, create and update for each.
fn serve(mut stream: TcpStream, api: Api, state: &Arc<Mutex<State>>) {
    let Some(request) = read_request(&mut stream) else {
        return;
    };
    let Ok(mut s) = state.lock() else { return };
    s.requests.push(request.clone());
    let (authorized, prefix, base_url) = match api {
        Api::Gitlab => (
            request.header("PRIVATE-TOKEN") == Some(GITLAB_TOKEN),
            "/api/v4/projects/group%2Fapp/issues",
            "http://gitlab.test/group/app/-/issues",
        ),
        Api::Github => (
            request.header("Authorization") == Some(&format!("Bearer {GITHUB_TOKEN}")),
            "/repos/octo/app/issues",
            "https://github.test/octo/app/issues",
        ),
    };
    if !authorized {
        let message = if api == Api::Gitlab {
            "401 Unauthorized"
        } else {
            "Bad credentials"
        };
        return respond(&mut stream, 401, &json!({ "message": message }));
    }
    let Some(rest) = request.path.strip_prefix(prefix) else {
        let message = if api == Api::Gitlab {
            "404 Project Not Found"
        } else {
            "Not Found"
        };
        return respond(&mut stream, 404, &json!({ "message": message }));
    };
    let body_field = if api == Api::Gitlab {
        "description"
    } else {
        "body"
    };
    let show = |(n, title, body, labels): &(u64, String, String, Vec<String>)| match api {
        Api::Gitlab => {
            json!({ "iid": n, "title": title, "description": body, "labels": labels, "web_url": format!("{base_url}/{n}") })
        }
        Api::Github => {
            json!({ "number": n, "title": title, "body": body, "labels": labels.iter().map(|l| json!({ "name": l })).collect::<Vec<_>>(), "html_url": format!("{base_url}/{n}") })
        }
    };
    let labels_of = |v: &Value| -> Vec<String> {
        match &v["labels"] {
            Value::String(s) => s.split(',').map(str::to_string).collect(),
            Value::Array(a) => a
                .iter()
                .filter_map(|l| l.as_str().map(str::to_string))
                .collect(),
            _ => Vec::new(),
        }
    };
    match (request.method.as_str(), rest) {
        ("GET", r) if r.is_empty() || r.starts_with('?') => {
            let listed: Vec<Value> = s
                .issues
                .iter()
                .filter(|(_, _, body, labels)| match api {
                    Api::Gitlab => match query_param(&request.path, "search") {
                        Some(q) => body.to_lowercase().contains(&q.to_lowercase()),
                        None => query_param(&request.path, "labels")
                            .is_some_and(|l| labels.contains(&l)),
                    },
                    Api::Github => {
                        query_param(&request.path, "labels").is_none_or(|l| labels.contains(&l))
                    }
                })
                .map(show)
                .collect();
            respond(&mut stream, 200, &Value::Array(listed));
        }
        ("POST", "") => {
            let v = request.json();
            let n = s.issues.len() as u64 + 1;
            let issue = (
                n,
                v["title"].as_str().unwrap_or_default().to_string(),
                v[body_field].as_str().unwrap_or_default().to_string(),
                labels_of(&v),
            );
            let shown = show(&issue);
            s.issues.push(issue);
            respond(&mut stream, 201, &shown);
        }
        ("PUT", r) | ("PATCH", r) if r.starts_with('/') => {
            let v = request.json();
            let n: u64 = r[1..].parse().unwrap_or(0);
            match s.issues.iter_mut().find(|i| i.0 == n) {
                Some(issue) => {
                    issue.1 = v["title"].as_str().unwrap_or_default().to_string();
                    issue.2 = v[body_field].as_str().unwrap_or_default().to_string();
                    issue.3 = labels_of(&v);
                    let shown = show(issue);
                    respond(&mut stream, 200, &shown);
                }
                None => respond(&mut stream, 404, &json!({ "message": "404 Not found" })),
            }
        }
        _ => respond(
            &mut stream,
            405,
            &json!({ "message": "405 Method Not Allowed" }),
        ),
    }
}

fn post(s: &Setup, mock: &Mock, api: Api, token: &str, project: &str) -> std::process::Output {
    let path = s.playbook.display().to_string();
    let (tracker, var) = match api {
        Api::Gitlab => ("gitlab", "GITLAB_TOKEN"),
        Api::Github => ("github", "GITHUB_TOKEN"),
    };
    let out = s
        .command(&[
            "change-request",
            &path,
            "--post",
            tracker,
            "--project",
            project,
            "--api-url",
            &mock.base,
        ])
        .env(var, token)
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    for text in [stdout(&out), stderr(&out)] {
        assert!(!text.contains(token), "the token leaked:\n{text}");
    }
    out
}

const DROP_SQL: &str =
    r#"ALTER TABLE "public"."ci_pipeline_chat_data" DROP CONSTRAINT "fk_rails_f300456b63";"#;

/// The Done-when, on either tracker.
// Long because it is the Done-when in order: create, drop on staging,
// update, then every request fkctl sent checked against the tracker's API.
fn created_once_then_updated_in_place(api: Api, tag: &str) {
    let s = Setup::new(tag, "{}");
    let mock = Mock::start(api);
    let (token, project) = match api {
        Api::Gitlab => (GITLAB_TOKEN, "group/app"),
        Api::Github => (GITHUB_TOKEN, "octo/app"),
    };
    let first = post(&s, &mock, api, token, project);
    assert!(first.status.success(), "{}", stderr(&first));
    let url = stdout(&first);
    assert!(url.trim_end().ends_with("/issues/1"), "{url}");
    assert!(stderr(&first).contains("created"), "{}", stderr(&first));
    let issues = mock.issues();
    assert_eq!(issues.len(), 1);
    let marker = format!("<!-- fkctl-change-request: remove-fk-{tag} -->");
    assert!(issues[0].2.contains(&marker), "the hidden marker");
    assert!(issues[0].2.contains("- [ ] staging: not dropped yet"));
    assert!(
        issues[0].3.contains(&"fkctl".to_string()),
        "{:?}",
        issues[0].3
    );

    let out = s.drop(&["--env", "staging", "--yes"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let second = post(&s, &mock, api, token, project);
    assert!(second.status.success(), "{}", stderr(&second));
    assert_eq!(stdout(&second), url, "the same issue");
    assert!(stderr(&second).contains("updated"), "{}", stderr(&second));
    let issues = mock.issues();
    assert_eq!(issues.len(), 1, "updated in place, not a second issue");
    let body = &issues[0].2;
    assert!(body.contains("- [x] staging: dropped at "), "{body}");
    assert!(body.contains("0 orphan(s) found"), "{body}");
    assert!(body.contains("drop-constraint took "), "{body}");
    assert!(
        body.contains("- [ ] production: not dropped yet (constraint valid)"),
        "{body}"
    );
    assert!(body.contains(DROP_SQL), "the exact DROP statement");
    assert!(
        body.contains("```mermaid\nflowchart LR\n"),
        "a mermaid block"
    );
    assert_eq!(body.matches(&marker).count(), 1);

    let requests = mock.requests();
    let summary: Vec<(String, String)> = requests
        .iter()
        .map(|r| {
            (
                r.method.clone(),
                r.path.split('?').next().unwrap_or_default().to_string(),
            )
        })
        .collect();
    let (list, create, update, update_method) = match api {
        Api::Gitlab => (
            "/api/v4/projects/group%2Fapp/issues",
            "/api/v4/projects/group%2Fapp/issues",
            "/api/v4/projects/group%2Fapp/issues/1",
            "PUT",
        ),
        Api::Github => (
            "/repos/octo/app/issues",
            "/repos/octo/app/issues",
            "/repos/octo/app/issues/1",
            "PATCH",
        ),
    };
    // The first post looks twice (the search or labelled issues, then the
    // fallback) and creates; the second finds the issue at once.
    let expected: Vec<(String, String)> = [
        ("GET", list),
        ("GET", list),
        ("POST", create),
        ("GET", list),
        (update_method, update),
    ]
    .iter()
    .map(|(m, p)| (m.to_string(), p.to_string()))
    .collect();
    assert_eq!(summary, expected);
    for r in &requests {
        match api {
            Api::Gitlab => assert_eq!(r.header("PRIVATE-TOKEN"), Some(GITLAB_TOKEN)),
            Api::Github => {
                assert_eq!(
                    r.header("Authorization"),
                    Some(format!("Bearer {GITHUB_TOKEN}").as_str())
                );
                assert_eq!(r.header("Accept"), Some("application/vnd.github+json"));
            }
        }
        assert!(r
            .header("User-Agent")
            .is_some_and(|u| u.starts_with("fkctl/")));
        assert!(!r.path.contains(token), "the token is never in a URL");
    }
    match api {
        Api::Gitlab => {
            assert!(
                requests[0].path.contains("search=remove-fk-"),
                "{}",
                requests[0].path
            );
            assert!(
                requests[1].path.contains("labels=fkctl"),
                "{}",
                requests[1].path
            );
            let created = requests[2].json();
            assert!(created["description"]
                .as_str()
                .is_some_and(|d| d.contains(&marker)));
            assert!(created.get("body").is_none());
            assert_eq!(
                created["labels"],
                "change-request,database,criticality::C1,fkctl"
            );
        }
        Api::Github => {
            assert!(
                requests[0].path.contains("labels=fkctl"),
                "{}",
                requests[0].path
            );
            assert!(
                !requests[1].path.contains("labels="),
                "{}",
                requests[1].path
            );
            let created = requests[2].json();
            assert!(created["body"]
                .as_str()
                .is_some_and(|d| d.contains(&marker)));
            assert!(created.get("description").is_none());
            assert_eq!(
                created["labels"],
                json!(["change-request", "database", "criticality::C1", "fkctl"])
            );
        }
    }
    assert_eq!(requests[4].json()["title"], requests[2].json()["title"]);

    // An incident: staging rolled back; the issue says so.
    let path = s.playbook.display().to_string();
    let out = s.run(&["rollback", &path, "--env", "staging", "--yes"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let third = post(&s, &mock, api, token, project);
    assert!(third.status.success(), "{}", stderr(&third));
    let issues = mock.issues();
    assert_eq!(issues.len(), 1);
    assert!(
        issues[0]
            .2
            .contains("- [x] staging: rolled back: restored at "),
        "{}",
        issues[0].2
    );
}

#[test]
fn gitlab_issue_is_created_once_and_updated_after_the_staging_drop() {
    created_once_then_updated_in_place(Api::Gitlab, "crp_gl");
}

#[test]
fn github_issue_is_created_once_and_updated_after_the_staging_drop() {
    created_once_then_updated_in_place(Api::Github, "crp_gh");
}

#[test]
fn a_refused_token_and_an_unknown_project_say_what_to_do() {
    let s = Setup::new("crp_err", "{}");
    let mock = Mock::start(Api::Gitlab);
    let out = post(
        &s,
        &mock,
        Api::Gitlab,
        "glpat-wrong-token-value",
        "group/app",
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("answered 401: 401 Unauthorized"), "{err}");
    assert!(
        err.contains("the token in GITLAB_TOKEN was refused"),
        "{err}"
    );
    let out = post(&s, &mock, Api::Gitlab, GITLAB_TOKEN, "group/other");
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("answered 404: 404 Project Not Found"), "{err}");
    assert!(err.contains("check --project \"group/other\""), "{err}");
    assert!(mock.issues().is_empty());

    let gh = Mock::start(Api::Github);
    let out = post(&s, &gh, Api::Github, "ghp_wrong", "octo/app");
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("Bad credentials"), "{}", stderr(&out));
    assert!(stderr(&out).contains("GITHUB_TOKEN"), "{}", stderr(&out));
}

#[test]
fn without_a_token_or_with_a_bad_project_nothing_is_sent() {
    let mock = Mock::start(Api::Github);
    let pb = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/playbooks/remove-fk-ci-pipeline-chat-data-chat-names.yml"
    );
    let run = |args: &[&str], env: &[(&str, &str)]| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_fkctl"));
        cmd.args(args)
            .env_remove("GITHUB_TOKEN")
            .env_remove("GITLAB_TOKEN");
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.output().unwrap_or_else(|e| panic!("{e}"))
    };
    let out = run(
        &[
            "change-request",
            pb,
            "--post",
            "github",
            "--project",
            "octo/app",
            "--api-url",
            &mock.base,
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("GITHUB_TOKEN is not set"),
        "{}",
        stderr(&out)
    );
    let out = run(
        &[
            "change-request",
            pb,
            "--post",
            "github",
            "--project",
            "app",
            "--api-url",
            &mock.base,
        ],
        &[("GITHUB_TOKEN", GITHUB_TOKEN)],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("expected OWNER/REPO"),
        "{}",
        stderr(&out)
    );
    let out = run(
        &[
            "change-request",
            pb,
            "--post",
            "gitlab",
            "--project",
            "g/app",
            "--api-url",
            "http://gitlab.example.com/api/v4",
        ],
        &[("GITLAB_TOKEN", GITLAB_TOKEN)],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("unencrypted"), "{}", stderr(&out));
    let out = run(&["change-request", pb, "--project", "octo/app"], &[]);
    assert_eq!(out.status.code(), Some(2), "--project needs --post");
    assert!(mock.requests().is_empty());
}

#[test]
fn an_unreachable_environment_is_skipped_with_a_warning() {
    let s = Setup::new("crp_unreach", "{}");
    let mock = Mock::start(Api::Gitlab);
    let path = s.playbook.display().to_string();
    let out = s
        .command(&[
            "change-request",
            &path,
            "--post",
            "gitlab",
            "--project",
            "group/app",
            "--api-url",
            &mock.base,
            "--dsn",
            "production=host=127.0.0.1 port=1 user=nobody password=hunter2 connect_timeout=2",
        ])
        .env("GITLAB_TOKEN", GITLAB_TOKEN)
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("warning: production: cannot read it"), "{err}");
    assert!(
        !err.contains("hunter2") && !err.contains(GITLAB_TOKEN),
        "{err}"
    );
    let issues = mock.issues();
    assert!(issues[0].2.contains("- [ ] staging: not dropped yet"));
    assert!(issues[0].2.contains("- [ ] production: not read"));
    assert!(!issues[0].2.contains("hunter2"));
}

#[test]
fn labels_come_from_the_playbook_and_bad_ones_name_their_line() {
    let s = Setup::new("crp_labels", "{}");
    let text = std::fs::read_to_string(&s.playbook).unwrap_or_default()
        + "change_request:\n  labels: [C2, \"change::scheduled\", fkctl]\n";
    std::fs::write(&s.playbook, text).unwrap_or_else(|e| panic!("{e}"));
    let mock = Mock::start(Api::Gitlab);
    let out = post(&s, &mock, Api::Gitlab, GITLAB_TOKEN, "group/app");
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        mock.requests()[2].json()["labels"],
        "change-request,database,criticality::C1,fkctl,C2,change::scheduled"
    );
    let dir = TempDir::new("crp_badlabels");
    let base = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/playbooks/remove-fk-ci-pipeline-chat-data-chat-names.yml"
    ))
    .unwrap_or_default();
    let lines = base.lines().count() + 2;
    for (labels, column, fragment) in [
        ("[ok, \"a,b\"]", 16, "contains a comma"),
        ("[ok, \"\"]", 16, "cannot be empty"),
        ("[C2, C2]", 16, "listed twice"),
        ("C2", 11, "expected a list"),
    ] {
        let path = dir.write(
            "p.yml",
            &format!("{base}change_request:\n  labels: {labels}\n"),
        );
        let out = fkctl(&["lint", &path.display().to_string()]);
        assert_eq!(out.status.code(), Some(2), "{labels}");
        let at = format!("{}:{lines}:{column}: ", path.display());
        assert!(
            stderr(&out).contains(&at),
            "{labels}: want {at} in {}",
            stderr(&out)
        );
        assert!(
            stderr(&out).contains(fragment),
            "{labels}: {}",
            stderr(&out)
        );
    }
}

#[test]
fn json_for_each_tracker_uses_its_field_name() {
    let pb = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/playbooks/remove-fk-ci-pipeline-chat-data-chat-names.yml"
    );
    let doc = |output: &str| -> Value {
        let out = fkctl(&["change-request", pb, "--output", output]);
        assert!(out.status.success(), "{}", stderr(&out));
        serde_json::from_slice(&out.stdout).unwrap_or_default()
    };
    let gitlab = doc("gitlab-json");
    assert_eq!(gitlab["schema_version"], 1);
    assert!(gitlab["description"]
        .as_str()
        .is_some_and(|d| d.contains("## Rollback")));
    assert!(gitlab.get("body").is_none());
    assert_eq!(
        gitlab["labels"],
        "change-request,database,criticality::C1,fkctl"
    );
    let github = doc("github-json");
    assert!(github["body"]
        .as_str()
        .is_some_and(|d| d.contains("## Rollback")));
    assert!(github.get("description").is_none());
    assert_eq!(
        doc("json")["body"],
        github["body"],
        "--output json stays GitHub-shaped"
    );
}

/// A partitioned child with many partitions makes a request longer than
/// GitHub takes (65,536 characters): the rollback SQL shown beside its psql
/// script is left out, and the issue is still posted.
#[test]
fn a_request_too_long_for_github_is_posted_compact() {
    let db = database("crp_long");
    let mut schema = String::from("CREATE TABLE customer (customer_id int PRIMARY KEY); CREATE TABLE payment (payment_id bigint NOT NULL, customer_id int NOT NULL, paid_at date NOT NULL) PARTITION BY RANGE (paid_at);");
    for month in 1..=12 {
        schema.push_str(&format!(
            "CREATE TABLE payment_2026_{month:02} PARTITION OF payment FOR VALUES FROM ('2026-{month:02}-01') TO ('{}');",
            if month == 12 { "2027-01-01".to_string() } else { format!("2026-{:02}-01", month + 1) }
        ));
    }
    schema.push_str("ALTER TABLE payment ADD CONSTRAINT payment_customer_id_fkey FOREIGN KEY (customer_id) REFERENCES customer (customer_id);");
    exec(&db, &schema);
    let dir = TempDir::new("crp_long");
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/playbooks/payment-customer-partitioned.yml"
    ))
    .unwrap_or_default();
    let path = dir.write("playbook.yml", &text).display().to_string();
    let vars = [
        ("SHOP_STAGING_DSN", db.dsn.as_str()),
        ("SHOP_PRODUCTION_DSN", db.dsn.as_str()),
        ("GITHUB_TOKEN", GITHUB_TOKEN),
    ];
    let full = fkctl_env(
        &[
            "change-request",
            &path,
            "--env",
            "staging",
            "--env",
            "production",
        ],
        &vars,
    );
    assert!(full.status.success(), "{}", stderr(&full));
    let full_size = stdout(&full).chars().count();
    let mock = Mock::start(Api::Github);
    let out = fkctl_env(
        &[
            "change-request",
            &path,
            "--post",
            "github",
            "--project",
            "octo/app",
            "--api-url",
            &mock.base,
        ],
        &vars,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let body = mock
        .issues()
        .first()
        .map(|i| i.2.clone())
        .unwrap_or_default();
    assert!(body.chars().count() <= 65_536, "{}", body.chars().count());
    if full_size > 65_536 {
        assert!(
            stderr(&out).contains("left to its psql script"),
            "{}",
            stderr(&out)
        );
        assert!(body.contains("left out to fit the tracker's size limit"));
        assert!(!body.contains("<details>"));
    }
    assert!(body.contains("\\set ON_ERROR_STOP on"), "the scripts stay");
}

/// An issue whose fkctl label was dropped (GitHub drops labels set by
/// someone without push access) is still found by its marker, and the
/// labels people gave it stay.
#[test]
fn an_unlabelled_issue_is_found_by_its_marker_and_keeps_its_labels() {
    let s = Setup::new("crp_unlab", "{}");
    let mock = Mock::start(Api::Github);
    if let Ok(mut state) = mock.state.lock() {
        state
            .issues
            .push((1, "other".into(), "another change".into(), vec![]));
        state.issues.push((
            2,
            "old title".into(),
            "old text\n<!-- fkctl-change-request: remove-fk-crp_unlab -->\n".into(),
            vec!["team::db".into()],
        ));
    }
    let out = post(&s, &mock, Api::Github, GITHUB_TOKEN, "octo/app");
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).trim_end().ends_with("/issues/2"),
        "{}",
        stdout(&out)
    );
    let issues = mock.issues();
    assert_eq!(issues.len(), 2, "no new issue");
    assert_eq!(
        issues[0].2, "another change",
        "the other issue is untouched"
    );
    assert!(issues[1].2.contains("## Rollback"));
    assert_eq!(
        issues[1].3,
        [
            "team::db",
            "change-request",
            "database",
            "criticality::C1",
            "fkctl"
        ]
    );
    let methods: Vec<String> = mock.requests().iter().map(|r| r.method.clone()).collect();
    assert_eq!(methods, ["GET", "GET", "PATCH"]);
}
