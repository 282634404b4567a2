//! The node's stable identity: created once, kept in `<data dir>/node-id`, reused by every
//! worker that starts on the same data directory. Consumer names are new on every start.

use std::path::Path;

use uuid::Uuid;

const FILE: &str = "node-id";

/// Reads the node id from `data_dir`, creating it on first use.
pub fn identity(data_dir: &Path) -> std::io::Result<String> {
    std::fs::create_dir_all(data_dir)?;
    let path = data_dir.join(FILE);
    match std::fs::read_to_string(&path) {
        Ok(id) if !id.trim().is_empty() => return Ok(id.trim().to_owned()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let host = hostname();
    let id = format!("{host}-{}", &Uuid::new_v4().simple().to_string()[..8]);
    let tmp = data_dir.join(format!("{FILE}.tmp"));
    std::fs::write(&tmp, &id)?;
    std::fs::rename(&tmp, &path)?;
    Ok(id)
}

/// A consumer name unique to this start: node, pid and a random suffix.
pub fn consumer_name(node: &str) -> String {
    format!(
        "{node}-{}-{}",
        std::process::id(),
        &Uuid::new_v4().simple().to_string()[..6]
    )
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty() && h.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'))
        .unwrap_or_else(|| "node".to_owned())
}

#[cfg(test)]
mod tests {
    #[test]
    fn identity_is_stable_across_calls() {
        let dir = std::env::temp_dir().join(format!("draas-node-{}", uuid::Uuid::new_v4()));
        let a = super::identity(&dir).unwrap();
        let b = super::identity(&dir).unwrap();
        assert_eq!(a, b);
        assert_ne!(super::consumer_name(&a), super::consumer_name(&a));
        std::fs::remove_dir_all(dir).unwrap();
    }
}
