//! GitHub's REST API: issues of a repository (`/repos/:owner/:repo/issues`).
//! fkctl's issues carry its `fkctl` label, so the search for the marker
//! lists those first (not the search API: it indexes with a delay, and a
//! second post right after the first could miss the issue and open another).

use super::{encode, merged_labels, payload, Http, Issue, Posted, Target, Tracker, MAX_PAGES};
use crate::error::{Error, Result};
use serde_json::Value;

fn labels_of(issue: &Value) -> Vec<String> {
    issue["labels"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|l| l["name"].as_str().or(l.as_str()).map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

fn repo_path(project: &str) -> String {
    project.split('/').map(encode).collect::<Vec<_>>().join("/")
}

/// The repository's issue carrying `marker`: among the issues labelled
/// `fkctl` first, then among all (GitHub drops the labels of an issue
/// created by someone without push access).
fn find(http: &Http<'_>, repo: &str, marker: &str) -> Result<Option<Value>> {
    for filter in ["&labels=fkctl", ""] {
        for page in 1..=MAX_PAGES {
            let answer = http.call(
                "GET",
                &format!("/repos/{repo}/issues?state=all{filter}&per_page=100&page={page}"),
                None,
            )?;
            let issues = answer.json.as_array().cloned().unwrap_or_default();
            let count = issues.len();
            if let Some(found) = issues.into_iter().find(|i| {
                i.get("pull_request").is_none()
                    && i["body"].as_str().is_some_and(|b| b.contains(marker))
            }) {
                return Ok(Some(found));
            }
            if count < 100 {
                break;
            }
        }
    }
    Ok(None)
}

fn posted(answer: &Value, created: bool) -> Result<Posted> {
    let url = answer["html_url"].as_str().unwrap_or_default().to_string();
    if url.is_empty() {
        return Err(Error::internal(
            "GitHub answered without the issue's html_url: is --api-url GitHub's REST API?",
        ));
    }
    Ok(Posted {
        url,
        number: answer["number"].as_u64().unwrap_or_default(),
        created,
    })
}

pub fn post(target: &Target, change: &str, issue: &Issue) -> Result<Posted> {
    let http = Http::new(
        target,
        vec![
            ("Authorization", format!("Bearer {}", target.token.0)),
            ("Accept", "application/vnd.github+json".to_string()),
            ("X-GitHub-Api-Version", "2022-11-28".to_string()),
        ],
    );
    let repo = repo_path(&target.project);
    let marker = super::marker(change);
    let mut body = payload(Tracker::Github, issue);
    match find(&http, &repo, &marker)? {
        Some(existing) => {
            let number = existing["number"]
                .as_u64()
                .ok_or_else(|| Error::internal("GitHub listed an issue without its number"))?;
            body["labels"] = serde_json::json!(merged_labels(&labels_of(&existing), &issue.labels));
            let answer = http.call(
                "PATCH",
                &format!("/repos/{repo}/issues/{number}"),
                Some(&body),
            )?;
            posted(&answer.json, false)
        }
        None => {
            let answer = http.call("POST", &format!("/repos/{repo}/issues"), Some(&body))?;
            posted(&answer.json, true)
        }
    }
}
