//! GitLab's REST API v4: issues of a project (`/projects/:id/issues`), the
//! project given by its path, URL-encoded as one segment.

use super::{encode, merged_labels, payload, Http, Issue, Posted, Target, Tracker, MAX_PAGES};
use crate::error::{Error, Result};
use serde_json::Value;

fn labels_of(issue: &Value) -> Vec<String> {
    issue["labels"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|l| l.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// The project's issue carrying `marker`: searched by the change id (GitLab
/// matches it in descriptions), then among the issues labelled `fkctl` in
/// case the search index missed it; the marker itself confirms a match.
fn find(http: &Http<'_>, project: &str, change: &str, marker: &str) -> Result<Option<Value>> {
    let queries = [
        format!("search={}&in=description", encode(change)),
        "labels=fkctl".to_string(),
    ];
    for query in &queries {
        let mut page = 1;
        for _ in 0..MAX_PAGES {
            let answer = http.call(
                "GET",
                &format!("/projects/{project}/issues?{query}&state=all&per_page=100&page={page}"),
                None,
            )?;
            let issues = answer.json.as_array().cloned().unwrap_or_default();
            if let Some(found) = issues.into_iter().find(|i| {
                i["description"]
                    .as_str()
                    .is_some_and(|d| d.contains(marker))
            }) {
                return Ok(Some(found));
            }
            match answer.next_page {
                Some(next) if next > page => page = next,
                _ => break,
            }
        }
    }
    Ok(None)
}

fn posted(answer: &Value, created: bool) -> Result<Posted> {
    let url = answer["web_url"].as_str().unwrap_or_default().to_string();
    let number = answer["iid"].as_u64().unwrap_or_default();
    if url.is_empty() {
        return Err(Error::internal(
            "GitLab answered without the issue's web_url: is --api-url GitLab's API v4?",
        ));
    }
    Ok(Posted {
        url,
        number,
        created,
    })
}

pub fn post(target: &Target, change: &str, issue: &Issue) -> Result<Posted> {
    let http = Http::new(target, vec![("PRIVATE-TOKEN", target.token.0.clone())]);
    let project = encode(&target.project);
    let marker = super::marker(change);
    match find(&http, &project, change, &marker)? {
        Some(existing) => {
            let iid = existing["iid"]
                .as_u64()
                .ok_or_else(|| Error::internal("GitLab listed an issue without its iid"))?;
            let mut body = payload(Tracker::Gitlab, issue);
            body["labels"] =
                Value::String(merged_labels(&labels_of(&existing), &issue.labels).join(","));
            let answer = http.call(
                "PUT",
                &format!("/projects/{project}/issues/{iid}"),
                Some(&body),
            )?;
            posted(&answer.json, false)
        }
        None => {
            let answer = http.call(
                "POST",
                &format!("/projects/{project}/issues"),
                Some(&payload(Tracker::Gitlab, issue)),
            )?;
            posted(&answer.json, true)
        }
    }
}
