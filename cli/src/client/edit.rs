//! `draas instances edit NAME`: the instance's document in `$EDITOR` (default `vi`), then
//! written back with `If-Match` on the generation it was read at, so a change made by
//! someone else meanwhile is refused (412, exit 4) instead of overwritten. An edit that
//! changes nothing writes nothing; one that does not parse keeps the file and names it.

use std::io::Write;

use super::apply;
use super::document::Document;
use super::http::{Api, ClientError};
use super::instances;

const HEADER: &str = "# Edit the instance below and save to apply it; lines starting with '#' are ignored.\n\
# An empty file cancels the edit.\n";

pub async fn edit(api: &Api, name: &str, wait: bool) -> Result<(), ClientError> {
    let view = instances::fetch(api, name).await?;
    let generation = view["generation"].as_u64();
    let doc = Document::of_view(&view)?;
    let original = doc.to_yaml()?;
    let mut file = tempfile::Builder::new()
        .prefix(&format!("draas-edit-{}-", doc.name()))
        .suffix(".yaml")
        .tempfile()
        .map_err(|e| ClientError::Failed(format!("making the edit file: {e}")))?;
    file.write_all(format!("{HEADER}{original}").as_bytes())
        .and_then(|()| file.flush())
        .map_err(|e| ClientError::Failed(format!("writing the edit file: {e}")))?;
    let path = file.path().to_owned();
    run_editor(&path)?;
    let edited = std::fs::read_to_string(&path)
        .map_err(|e| ClientError::Failed(format!("reading {}: {e}", path.display())))?;
    let body: String = edited
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .map(|l| format!("{l}\n"))
        .collect();
    if body.trim().is_empty() || body == original {
        println!("Edit cancelled, no changes made.");
        return Ok(());
    }
    let parsed = serde_yaml::from_str::<serde_json::Value>(&body)
        .map_err(|e| e.to_string())
        .and_then(Document::from_value)
        .and_then(|d| match d.name() == doc.name() {
            true => Ok(d),
            false => Err(format!(
                "metadata.name: an edit cannot rename `{}` (apply a new document instead)",
                doc.name()
            )),
        });
    let edited = match parsed {
        Ok(d) if d.spec.config_file.is_some() => {
            Err("spec.configFile: give the config itself in an edit".to_owned())
        }
        other => other,
    };
    let edited = match edited {
        Ok(d) => d,
        Err(e) => {
            // Keep the user's work.
            let kept = file.into_temp_path().keep().ok();
            let at = kept.map_or_else(String::new, |p| {
                format!("; your edit is in {}", p.display())
            });
            return Err(ClientError::Failed(format!("{e}{at}")));
        }
    };
    if edited == doc {
        println!("Edit cancelled, no changes made.");
        return Ok(());
    }
    let answer = apply::put(api, &edited, generation, wait)
        .await
        .map_err(|e| e.about(&format!("instance/{}", doc.name())))?;
    let said = match answer.result.as_str() {
        "unchanged" => "unchanged",
        _ => "edited",
    };
    println!("instance/{} {said}", doc.name());
    apply::report_operation(api, doc.name(), answer.operation, wait).await
}

/// Runs `$EDITOR FILE` through the shell (so `EDITOR="code -w"` works) and waits for it.
fn run_editor(path: &std::path::Path) -> Result<(), ClientError> {
    let editor = std::env::var("EDITOR")
        .ok()
        .filter(|e| !e.trim().is_empty())
        .unwrap_or_else(|| "vi".to_owned());
    let status = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("{editor} \"$1\""))
        .arg("sh")
        .arg(path)
        .status()
        .map_err(|e| ClientError::Failed(format!("running the editor `{editor}`: {e}")))?;
    if !status.success() {
        return Err(ClientError::Failed(format!(
            "the editor `{editor}` failed ({status}); nothing changed"
        )));
    }
    Ok(())
}
