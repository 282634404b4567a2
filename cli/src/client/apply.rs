//! `draas apply -f FILE|DIR` and `draas diff -f FILE|DIR`: read the documents, read each
//! instance, print the plan, then write each document with `PUT /api/v1/instances/{name}`
//! and `If-Match` on the generation read (none for a create), so a change made by someone
//! else in between is a 412 (exit 4), never overwritten. The server moves each instance
//! toward its `desiredState` itself. `--prune -l k=v` deletes the selected instances that
//! no document names, after a y/N on a terminal or with `--yes`.

use std::path::PathBuf;

use reqwest::Method;
use serde_json::Value;

use super::document::Document;
use super::files;
use super::http::{Api, ClientError, if_match, segment};
use super::instances::{self, past};
use super::operations::{self, failure, is_terminal};
use super::output;
use super::plan::{self, Plan, Step};

/// Seconds a lifecycle request or write waits on the server with `--wait`.
const WAIT_SECONDS: u32 = 30;

/// The answer of a PUT.
#[derive(Debug)]
pub struct Answer {
    /// `created`, `updated` or `unchanged`.
    pub result: String,
    pub operation: Option<Value>,
}

/// Writes `doc` (with `If-Match: "<generation>"` when given).
pub async fn put(
    api: &Api,
    doc: &Document,
    generation: Option<u64>,
    wait: bool,
) -> Result<Answer, ClientError> {
    let seconds = if wait { WAIT_SECONDS } else { 0 };
    let path = format!("/api/v1/instances/{}?wait={seconds}", segment(doc.name()));
    let mut request = api.request(Method::PUT, &path).json(&doc.wire());
    if let Some(generation) = generation {
        request = request.header("if-match", if_match(generation));
    }
    let body = api.send(request).await?.body;
    Ok(Answer {
        result: body["result"].as_str().unwrap_or("updated").to_owned(),
        operation: Some(body["operation"].clone()).filter(|op| op.is_object()),
    })
}

/// Says how an operation a write started went (followed to its end with `wait`); a failed
/// one is an error.
pub async fn report_operation(
    api: &Api,
    name: &str,
    op: Option<Value>,
    wait: bool,
) -> Result<(), ClientError> {
    let Some(op) = op else { return Ok(()) };
    let command = output::text(&op["command"]);
    let op = operations::settle(api, op, wait, &format!("{command} {name}")).await?;
    if let Some(failed) = failure(&op) {
        return Err(ClientError::Failed(format!("instance/{name}: {failed}")));
    }
    match is_terminal(&op) {
        true => println!("instance/{name} {}", past(&command)),
        false => println!(
            "instance/{name}: {command} {} (operation {})",
            output::text(&op["state"]),
            output::text(&op["id"])
        ),
    }
    Ok(())
}

/// What `apply` was asked.
pub struct Options {
    pub paths: Vec<PathBuf>,
    pub dry_run: bool,
    pub prune: Option<Vec<(String, String)>>,
    pub yes: bool,
    pub wait: bool,
}

/// Reads the documents and the instances, and plans.
async fn make_plan(
    api: &Api,
    paths: &[PathBuf],
    prune: Option<&[(String, String)]>,
) -> Result<Plan, ClientError> {
    let loaded = files::load(paths)?;
    let mut entries = Vec::new();
    for l in loaded {
        let live = instances::find(api, l.doc.name()).await?;
        entries.push(plan::entry(l, live)?);
    }
    let mut doomed = Vec::new();
    if let Some(selector) = prune {
        for view in instances::list_all(api, selector).await? {
            let name = view["name"].as_str().unwrap_or_default();
            if !entries.iter().any(|e| e.name() == name) {
                doomed.push(view);
            }
        }
    }
    Ok(Plan {
        entries,
        prune: doomed,
    })
}

/// `draas diff`: the plan only; exit 1 when it changes anything, as `kubectl diff`, so
/// documents that cannot be read exit 2, not 1.
pub async fn diff(api: &Api, paths: &[PathBuf]) -> Result<(), ClientError> {
    let plan = make_plan(api, paths, None).await.map_err(|e| match e {
        ClientError::Failed(message) => ClientError::Usage(message),
        other => other,
    })?;
    print!("{}", plan::render(&plan, plan::color()));
    match plan.has_changes() {
        true => Err(ClientError::Silent(1)),
        false => Ok(()),
    }
}

/// `draas apply`.
pub async fn apply(api: &Api, options: Options) -> Result<(), ClientError> {
    let plan = make_plan(api, &options.paths, options.prune.as_deref()).await?;
    print!("{}", plan::render(&plan, plan::color()));
    if options.dry_run {
        return Ok(());
    }
    if !plan.prune.is_empty() {
        let question = format!("Delete {} instance(s) not in the files?", plan.prune.len());
        if !output::confirm(&question, options.yes)? {
            eprintln!("Apply cancelled, nothing changed.");
            return Ok(());
        }
    }
    let mut failures = Vec::new();
    let mut started = Vec::new();
    for entry in &plan.entries {
        let name = entry.name();
        match put(api, &entry.loaded.doc, entry.generation(), false).await {
            Ok(answer) => {
                let said = match answer.result.as_str() {
                    "created" => "created",
                    "unchanged" => "unchanged",
                    _ if entry.configures() || entry.live.is_none() => "configured",
                    _ if entry.steps.contains(&Step::Start) => "starting",
                    _ if entry.steps.contains(&Step::Stop) => "stopping",
                    _ => "configured",
                };
                println!("instance/{name} {said}");
                started.push((name.to_owned(), answer.operation));
            }
            Err(e) => {
                let e = e.about(&format!("instance/{name}"));
                eprintln!("error: {e}");
                failures.push(e);
            }
        }
    }
    for (name, op) in started {
        if let Err(e) = report_operation(api, &name, op, options.wait).await {
            eprintln!("error: {e}");
            failures.push(e);
        }
    }
    for view in &plan.prune {
        if let Err(e) = delete(api, view).await {
            eprintln!("error: {e}");
            failures.push(e);
        }
    }
    match failures.first() {
        Some(first) => Err(ClientError::Silent(first.exit_code())),
        None => Ok(()),
    }
}

/// Deletes a pruned instance and waits for the end.
async fn delete(api: &Api, view: &Value) -> Result<(), ClientError> {
    let name = output::text(&view["name"]);
    let id = view["id"].as_str().unwrap_or(&name).to_owned();
    let path = format!("/api/v1/instances/{}?wait={WAIT_SECONDS}", segment(&id));
    let op = api
        .send(api.request(Method::DELETE, &path))
        .await
        .map_err(|e| e.about(&format!("instance/{name}")))?
        .body;
    let op = operations::settle(api, op, true, &format!("delete {name}")).await?;
    if let Some(failed) = failure(&op) {
        return Err(ClientError::Failed(format!("instance/{name}: {failed}")));
    }
    println!("instance/{name} deleted");
    Ok(())
}
