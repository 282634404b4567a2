//! When an instance counts as ready, on every platform whose worker can reach it: its API
//! answers `/health` with 200 and every source, query and reaction its config declares
//! reports `Running` through that API (one that the config does not auto-start may be
//! `Stopped`). A component in `Error` fails the start with its own message: drasi-server
//! stays up and healthy with a query that failed to build, so `/health` alone says nothing.

use std::time::Duration;

use draas_protocol::drasi::{DrasiConfig, InstanceConfig};
use serde_json::Value;

/// What an instance's API says about its readiness right now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Readiness {
    Ready,
    /// Not yet: why (kept as the reason when the readiness deadline passes).
    Waiting(String),
    /// Never will be: a component failed.
    Failed(String),
}

/// How long one readiness request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// The wait after the first "not yet" of a starting instance; each later wait doubles, up to
/// [`MAX_PROBE_GAP`]. A runtime that is ready in a few milliseconds is seen within a few more;
/// one that takes half a second is asked about a dozen times, not fifty.
pub const FIRST_PROBE_GAP: Duration = Duration::from_millis(4);
/// The longest wait between two readiness checks.
pub const MAX_PROBE_GAP: Duration = Duration::from_millis(50);

/// Asks the instance at `api` (`http://host:port`) whether everything `config` declares runs.
pub async fn check(http: &reqwest::Client, api: &str, config: &DrasiConfig) -> Readiness {
    let health = format!("{api}/health");
    match http.get(&health).timeout(REQUEST_TIMEOUT).send().await {
        Ok(resp) if resp.status().is_success() => {}
        Ok(resp) => return Readiness::Waiting(format!("{health} answered {}", resp.status())),
        Err(_) => return Readiness::Waiting(format!("no answer from {health}")),
    }
    for (base, instance) in config.addressable_instances() {
        for (kind, declared) in declared(&instance) {
            let url = format!("{api}{base}/{kind}");
            let listed = match list(http, &url).await {
                Ok(listed) => listed,
                Err(reason) => return Readiness::Waiting(reason),
            };
            for (id, auto_start) in declared {
                let item = listed.iter().find(|c| c["id"] == id.as_str());
                let status = item.and_then(|c| c["status"].as_str()).unwrap_or("absent");
                match status {
                    "Running" => {}
                    "Stopped" if !auto_start => {}
                    "Error" => {
                        let message = item
                            .and_then(|c| c["error_message"].as_str())
                            .unwrap_or("no message");
                        return Readiness::Failed(format!(
                            "{} `{id}` failed: {message}",
                            singular(kind)
                        ));
                    }
                    other => {
                        return Readiness::Waiting(format!("{} `{id}` is {other}", singular(kind)));
                    }
                }
            }
        }
    }
    Readiness::Ready
}

/// The components an instance declares, per API collection, with whether each auto-starts.
fn declared(instance: &InstanceConfig) -> [(&'static str, Vec<(String, bool)>); 3] {
    [
        (
            "sources",
            instance
                .sources
                .iter()
                .map(|s| (s.id().to_owned(), s.auto_start()))
                .collect(),
        ),
        (
            "queries",
            instance
                .queries
                .iter()
                .map(|q| (q.id.clone(), q.effective_auto_start()))
                .collect(),
        ),
        (
            "reactions",
            instance
                .reactions
                .iter()
                .map(|r| (r.id().to_owned(), r.auto_start()))
                .collect(),
        ),
    ]
}

fn singular(kind: &str) -> &str {
    match kind {
        "sources" => "source",
        "queries" => "query",
        _ => "reaction",
    }
}

/// The `data` list of a drasi-server envelope at `url`.
async fn list(http: &reqwest::Client, url: &str) -> Result<Vec<Value>, String> {
    let resp = http
        .get(url)
        .timeout(REQUEST_TIMEOUT)
        .send()
        .await
        .map_err(|_| format!("no answer from {url}"))?;
    if !resp.status().is_success() {
        return Err(format!("{url} answered {}", resp.status()));
    }
    let body: Value = resp
        .json()
        .await
        .map_err(|e| format!("{url} answered with a body that is not JSON: {e}"))?;
    Ok(body["data"].as_array().cloned().unwrap_or_default())
}
