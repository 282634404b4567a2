//! `draas instances list|get|create|start|stop|restart|delete`: one instance named by name or
//! id, read and acted on through the API.
//!
//! Start and stop also keep a stored `desiredState` in step (a merge PATCH: before a start,
//! after a stop), so the reconciler does not undo what was asked imperatively, as `nomad job
//! stop` does for a job; instances without one (made by POST) are left without.

use std::path::PathBuf;

use reqwest::Method;
use serde_json::{Value, json};

use super::apply;
use super::document::Document;
use super::files;
use super::http::{Api, ClientError, segment};
use super::operations::{self, failure, is_terminal};
use super::output::{self, Format};

/// The instance named `name` (or with id `name`).
pub async fn fetch(api: &Api, name: &str) -> Result<Value, ClientError> {
    api.get(&format!("/api/v1/instances/{}", segment(name)))
        .await
}

/// The instance, or `None` when there is none by that name.
pub async fn find(api: &Api, name: &str) -> Result<Option<Value>, ClientError> {
    match fetch(api, name).await {
        Ok(view) => Ok(Some(view)),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e),
    }
}

/// A `k=v[,k=v…]` selector.
pub fn selector(text: &str) -> Result<Vec<(String, String)>, ClientError> {
    text.split(',')
        .filter(|p| !p.trim().is_empty())
        .map(|pair| {
            pair.split_once('=')
                .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
                .filter(|(k, _)| !k.is_empty())
                .ok_or_else(|| ClientError::Usage(format!("selector `{pair}` must be key=value")))
        })
        .collect()
}

/// Every instance the caller sees (matching `selector`), following the cursor to the end.
pub async fn list_all(api: &Api, selector: &[(String, String)]) -> Result<Vec<Value>, ClientError> {
    let mut base = "/api/v1/instances?limit=500".to_owned();
    // The API takes at most 16 label filters; any more are checked here.
    for (k, v) in selector.iter().take(16) {
        base.push_str(&format!("&label={}", segment(&format!("{k}={v}"))));
    }
    let mut items = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("{base}&cursor={}", segment(c)),
            None => base.clone(),
        };
        let page = api.get(&path).await?;
        if let Some(page_items) = page["items"].as_array() {
            items.extend(page_items.iter().cloned());
        }
        match page["nextCursor"].as_str() {
            Some(next) if cursor.as_deref() != Some(next) => cursor = Some(next.to_owned()),
            _ => break,
        }
    }
    // The API filters by every label; an API from before that took one, so check again.
    items.retain(|i| {
        selector
            .iter()
            .all(|(k, v)| i["labels"][k].as_str() == Some(v))
    });
    Ok(items)
}

const HEADERS: [&str; 7] = [
    "NAME",
    "ID",
    "PLATFORM",
    "STATE",
    "DESIRED",
    "GENERATION",
    "AGE",
];

fn row(view: &Value) -> Vec<String> {
    vec![
        output::text(&view["name"]),
        output::text(&view["id"]),
        output::text(&view["platform"]),
        output::text(&view["state"]),
        output::text(&view["desiredState"]),
        output::text(&view["generation"]),
        output::age(view["createdAt"].as_str()),
    ]
}

pub async fn list(
    api: &Api,
    selector: &[(String, String)],
    format: Format,
) -> Result<(), ClientError> {
    let items = list_all(api, selector).await?;
    match format {
        Format::Table if items.is_empty() => eprintln!("No instances found."),
        Format::Table => print!(
            "{}",
            output::table(&HEADERS, &items.iter().map(row).collect::<Vec<_>>())
        ),
        other => output::print_data(&json!({ "items": items }), other)?,
    }
    Ok(())
}

/// `get`: a row; `-o json` the API's view; `-o yaml` the document `apply` accepts.
pub async fn get(api: &Api, name: &str, format: Format) -> Result<(), ClientError> {
    let view = fetch(api, name).await?;
    match format {
        Format::Table => print!("{}", output::table(&HEADERS, &[row(&view)])),
        Format::Json => output::print_json(&view),
        Format::Yaml => print!("{}", Document::of_view(&view)?.to_yaml()?),
    }
    Ok(())
}

/// `create -f`: the documents' instances, refusing names that exist (exit 4).
pub async fn create(api: &Api, paths: &[PathBuf], wait: bool) -> Result<(), ClientError> {
    let loaded = files::load(paths)?;
    let mut first_error = None;
    for l in &loaded {
        let name = l.doc.name();
        let outcome = async {
            if find(api, name).await?.is_some() {
                return Err(ClientError::Conflict(format!(
                    "instance/{name} already exists; use `draas apply` to change it"
                )));
            }
            let answer = apply::put(api, &l.doc, None, wait).await?;
            println!("instance/{name} created");
            apply::report_operation(api, name, answer.operation, wait).await
        }
        .await;
        if let Err(e) = outcome {
            eprintln!("error: {e}");
            first_error.get_or_insert(e);
        }
    }
    match first_error {
        Some(e) => Err(ClientError::Silent(e.exit_code())),
        None => Ok(()),
    }
}

/// `start`, `stop`, `restart` or `delete` of one instance, followed with `wait`.
pub async fn lifecycle(
    api: &Api,
    name: &str,
    command: &str,
    wait: bool,
) -> Result<(), ClientError> {
    let view = fetch(api, name).await?;
    let id = view["id"].as_str().unwrap_or(name).to_owned();
    let shown = view["name"].as_str().unwrap_or(name).to_owned();
    if command == "start" {
        keep_desired(api, &view, "running").await?;
    }
    let seconds = if wait { 30 } else { 0 };
    let (method, path) = match command {
        "delete" => (
            Method::DELETE,
            format!("/api/v1/instances/{}?wait={seconds}", segment(&id)),
        ),
        c => (
            Method::POST,
            format!("/api/v1/instances/{}/{c}?wait={seconds}", segment(&id)),
        ),
    };
    let op = api.send(api.request(method, &path)).await?.body;
    let op = operations::settle(api, op, wait, &format!("{command} {shown}")).await?;
    if command == "stop" && op["state"] != "failed" {
        keep_desired(api, &view, "stopped").await?;
    }
    if let Some(failed) = failure(&op) {
        return Err(ClientError::Failed(format!("instance/{shown}: {failed}")));
    }
    match is_terminal(&op) {
        true => println!("instance/{shown} {}", past(command)),
        false => println!(
            "instance/{shown}: {command} accepted (operation {}; `draas operations get {} --wait` follows it)",
            output::text(&op["id"]),
            output::text(&op["id"]),
        ),
    }
    Ok(())
}

/// Sets a stored `desiredState` that differs from `wanted`.
async fn keep_desired(api: &Api, view: &Value, wanted: &str) -> Result<(), ClientError> {
    let Some(stored) = view["desiredState"].as_str() else {
        return Ok(());
    };
    if stored == wanted {
        return Ok(());
    }
    let id = view["id"].as_str().unwrap_or_default();
    let request = api
        .request(Method::PATCH, &format!("/api/v1/instances/{}", segment(id)))
        .header("content-type", "application/merge-patch+json")
        .body(json!({ "desiredState": wanted }).to_string());
    api.send(request).await?;
    Ok(())
}

pub fn past(command: &str) -> &'static str {
    match command {
        "start" => "started",
        "stop" => "stopped",
        "restart" => "restarted",
        "delete" => "deleted",
        "applyConfig" => "reconfigured",
        _ => "done",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors_are_key_value_pairs() {
        assert_eq!(
            selector("app=x, tier=web").unwrap(),
            vec![("app".into(), "x".into()), ("tier".into(), "web".into())]
        );
        assert_eq!(selector("app=").unwrap(), vec![("app".into(), "".into())]);
        assert_eq!(selector("app").unwrap_err().exit_code(), 2);
        assert_eq!(selector("=x").unwrap_err().exit_code(), 2);
    }
}
