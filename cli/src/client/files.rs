//! Reading DrasiInstance documents from `-f`: a file (YAML with any number of `---`
//! documents, or JSON), `-` for stdin, or a directory (its `*.yaml`, `*.yml` and `*.json`
//! files, sorted by name, not recursing). `spec.configFile` is read relative to the
//! document's file and sent as `config`; a directory's files that other documents name as
//! their `configFile` are not documents themselves. Errors name the file and the document's
//! index (from 1).

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::Value;

use super::document::Document;
use super::http::ClientError;

/// A document read from a file, with its `configFile` read in.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub doc: Document,
    /// `FILE` or `FILE (document N)`.
    pub source: String,
}

/// One file's parsed documents (or why it did not parse).
struct Raw {
    path: PathBuf,
    /// Found in a directory (not named by `-f`).
    listed: bool,
    docs: Result<Vec<Value>, String>,
}

/// Every document under `paths`, in order; names must be unique.
pub fn load(paths: &[PathBuf]) -> Result<Vec<Loaded>, ClientError> {
    let mut raws = Vec::new();
    for path in paths {
        if path.as_os_str() == "-" {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .map_err(|e| ClientError::Failed(format!("reading stdin: {e}")))?;
            raws.push(Raw {
                path: path.clone(),
                listed: false,
                docs: parse(&text, false),
            });
        } else if path.is_dir() {
            for file in listing(path)? {
                raws.push(read(file, true));
            }
        } else {
            raws.push(read(path.clone(), false));
        }
    }
    let referenced = config_files(&raws);
    let mut loaded = Vec::new();
    for raw in raws {
        if raw.listed && canonical(&raw.path).is_some_and(|p| referenced.contains(&p)) {
            continue;
        }
        let docs = raw
            .docs
            .map_err(|e| ClientError::Failed(format!("{}: {e}", raw.path.display())))?;
        let count = docs.len();
        for (i, value) in docs.into_iter().enumerate() {
            let source = match count {
                1 => raw.path.display().to_string(),
                _ => format!("{} (document {})", raw.path.display(), i + 1),
            };
            let fail = |e: String| ClientError::Failed(format!("{source}: {e}"));
            let mut doc = Document::from_value(value).map_err(fail)?;
            if let Some(file) = doc.spec.config_file.take() {
                let at = base_dir(&raw.path).join(&file);
                let config =
                    read_config(&at).map_err(|e| fail(format!("spec.configFile `{file}`: {e}")))?;
                doc.spec.config = Some(config);
            }
            loaded.push(Loaded { doc, source });
        }
    }
    let mut seen: BTreeMap<String, String> = BTreeMap::new();
    for l in &loaded {
        if let Some(first) = seen.insert(l.doc.name().to_owned(), l.source.clone()) {
            return Err(ClientError::Failed(format!(
                "instance `{}` is in {first} and again in {}",
                l.doc.name(),
                l.source
            )));
        }
    }
    Ok(loaded)
}

/// A directory's document files, sorted.
fn listing(dir: &Path) -> Result<Vec<PathBuf>, ClientError> {
    let entries = std::fs::read_dir(dir)
        .map_err(|e| ClientError::Failed(format!("reading {}: {e}", dir.display())))?;
    let mut files: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .filter(|p| {
            p.extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| matches!(e, "yaml" | "yml" | "json"))
        })
        .collect();
    files.sort();
    Ok(files)
}

fn read(path: PathBuf, listed: bool) -> Raw {
    let docs = std::fs::read_to_string(&path)
        .map_err(|e| format!("cannot read it: {e}"))
        .and_then(|text| parse(&text, is_json(&path)));
    Raw { path, listed, docs }
}

fn is_json(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "json")
}

/// The documents of a file's text: one JSON value, or YAML documents (empty ones skipped).
fn parse(text: &str, json: bool) -> Result<Vec<Value>, String> {
    if json {
        return serde_json::from_str(text)
            .map(|v| vec![v])
            .map_err(|e| format!("not JSON: {e}"));
    }
    let mut docs = Vec::new();
    for (i, de) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let value = Value::deserialize(de).map_err(|e| format!("document {}: {e}", i + 1))?;
        if !value.is_null() {
            docs.push(value);
        }
    }
    Ok(docs)
}

/// The files the parsed documents name as `spec.configFile`, canonical.
fn config_files(raws: &[Raw]) -> BTreeSet<PathBuf> {
    let mut out = BTreeSet::new();
    for raw in raws {
        let Ok(docs) = &raw.docs else { continue };
        for doc in docs {
            if let Some(file) = doc.pointer("/spec/configFile").and_then(Value::as_str)
                && let Some(path) = canonical(&base_dir(&raw.path).join(file))
            {
                out.insert(path);
            }
        }
    }
    out
}

fn canonical(path: &Path) -> Option<PathBuf> {
    std::fs::canonicalize(path).ok()
}

/// What a document's relative `configFile` is relative to: its file's directory (stdin: the
/// working directory).
fn base_dir(file: &Path) -> PathBuf {
    match file.as_os_str() == "-" {
        true => PathBuf::from("."),
        false => file.parent().map(Path::to_owned).unwrap_or_default(),
    }
}

/// A config file: JSON by its extension, else YAML (drasi-server's own format).
fn read_config(path: &Path) -> Result<Value, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read it: {e}"))?;
    let value: Value = match is_json(path) {
        true => serde_json::from_str(&text).map_err(|e| format!("not JSON: {e}"))?,
        false => serde_yaml::from_str(&text).map_err(|e| format!("not YAML: {e}"))?,
    };
    match value {
        Value::Object(_) => Ok(value),
        _ => Err("a config is a mapping (sources, queries, reactions …)".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch() -> PathBuf {
        let dir = std::env::temp_dir().join(format!("draas-files-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn instance(name: &str, config: &str) -> String {
        format!(
            "apiVersion: draas.io/v1\nkind: DrasiInstance\nmetadata:\n  name: {name}\n\
             spec:\n  platform: process\n  {config}\n"
        )
    }

    #[test]
    fn a_directory_gives_every_document_sorted_with_config_files_read() {
        let dir = scratch();
        let two = format!(
            "{}---\n{}",
            instance("b", "config: {sources: []}"),
            instance("c", "configFile: ./c-config.yaml")
        );
        std::fs::write(dir.join("2-bc.yaml"), two).unwrap();
        std::fs::write(
            dir.join("c-config.yaml"),
            "sources:\n  - {kind: http, id: s}\n",
        )
        .unwrap();
        std::fs::write(
            dir.join("1-a.json"),
            r#"{"apiVersion":"draas.io/v1","kind":"DrasiInstance","metadata":{"name":"a"},
                "spec":{"platform":"process","config":{}}}"#,
        )
        .unwrap();
        std::fs::write(dir.join("notes.txt"), "not a document").unwrap();
        let loaded = load(std::slice::from_ref(&dir)).unwrap();
        let names: Vec<_> = loaded.iter().map(|l| l.doc.name().to_owned()).collect();
        assert_eq!(names, ["a", "b", "c"]);
        assert!(loaded[2].source.ends_with("2-bc.yaml (document 2)"));
        assert_eq!(
            loaded[2].doc.spec.config.as_ref().unwrap()["sources"][0]["id"],
            "s"
        );
        assert!(loaded[2].doc.spec.config_file.is_none());
        assert!(loaded[2].doc.wire()["spec"].get("configFile").is_none());
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn errors_name_the_file_and_the_document() {
        let dir = scratch();
        let file = dir.join("x.yaml");
        let text = format!(
            "{}---\n{}",
            instance("a", "config: {}"),
            instance("b", "config: {}").replace("DrasiInstance", "Pod")
        );
        std::fs::write(&file, text).unwrap();
        let error = load(std::slice::from_ref(&file)).unwrap_err().to_string();
        assert!(error.contains("x.yaml (document 2): kind"), "{error}");

        std::fs::write(&file, instance("a", "configFile: missing.yaml")).unwrap();
        let error = load(std::slice::from_ref(&file)).unwrap_err().to_string();
        assert!(
            error.contains("x.yaml: spec.configFile `missing.yaml`"),
            "{error}"
        );

        let dup = format!(
            "{}---\n{}",
            instance("a", "config: {}"),
            instance("a", "config: {}")
        );
        std::fs::write(&file, dup).unwrap();
        let error = load(std::slice::from_ref(&file)).unwrap_err().to_string();
        assert!(error.contains("instance `a` is in"), "{error}");

        std::fs::write(&file, "a: [unclosed").unwrap();
        let error = load(std::slice::from_ref(&file)).unwrap_err().to_string();
        assert!(error.contains("x.yaml: document 1"), "{error}");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
