//! An outside observer of instance processes: samples the process table (`/proc`) every few
//! milliseconds, independently of every worker, and records per instance the distinct copies
//! seen and the most copies alive at once. Instance processes are recognised by their command
//! line naming `<root>/…/instances/<id>/config.yaml`; a copy is a process group (the process
//! driver launches each copy in a group of its own, led by the launched process).

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// What was seen of one instance.
#[derive(Debug, Default, Clone)]
pub struct Seen {
    /// The copies seen, by process group (the pid the copy was launched as).
    pub pids: HashSet<i32>,
    pub max_live: usize,
    /// The copies (process groups) of the first sample that saw more than one alive.
    pub overlap: Vec<i32>,
}

/// A sampling thread; [`Observer::finish`] stops it and returns what it saw.
pub struct Observer {
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<HashMap<String, Seen>>>,
    samples: Arc<Mutex<usize>>,
    thread: Option<JoinHandle<()>>,
    root: PathBuf,
}

impl Observer {
    pub fn start(root: &Path) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(Mutex::new(HashMap::<String, Seen>::new()));
        let samples = Arc::new(Mutex::new(0));
        let thread = {
            let (stop, seen, samples, root) = (
                Arc::clone(&stop),
                Arc::clone(&seen),
                Arc::clone(&samples),
                root.to_path_buf(),
            );
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    let live = live_instances(&root);
                    let mut seen = seen.lock().unwrap();
                    for (id, pids) in live {
                        let entry = seen.entry(id).or_default();
                        if pids.len() > 1 && entry.overlap.is_empty() {
                            entry.overlap = pids.clone();
                        }
                        entry.max_live = entry.max_live.max(pids.len());
                        entry.pids.extend(pids);
                    }
                    *samples.lock().unwrap() += 1;
                    drop(seen);
                    std::thread::sleep(Duration::from_millis(5));
                }
            })
        };
        Observer {
            stop,
            seen,
            samples,
            thread: Some(thread),
            root: root.to_path_buf(),
        }
    }

    /// Stops sampling; returns what was seen per instance and the number of samples.
    pub fn finish(mut self) -> (HashMap<String, Seen>, usize) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        let seen = self.seen.lock().unwrap().clone();
        let samples = *self.samples.lock().unwrap();
        (seen, samples)
    }

    /// The instance processes alive right now, by instance id.
    pub fn live_now(&self) -> HashMap<String, Vec<i32>> {
        live_instances(&self.root)
    }
}

impl Drop for Observer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// The copies of each instance alive under `root` now, by instance id, each named by its
/// process group. The process driver launches every copy in a group of its own, so whatever a
/// copy forks (the launcher script's `sleep`, which shows the script's command line until it
/// execs) belongs to that copy, even after its parent died and it was re-parented: a stop's
/// signal can end the script between its fork and the child's exec.
pub fn live_instances(root: &Path) -> HashMap<String, Vec<i32>> {
    let mut copies: HashMap<String, HashSet<i32>> = HashMap::new();
    for (pid, id) in instance_processes(root) {
        // No stat any more: the process ended since its command line was read.
        if let Some(group) = group_of(pid) {
            copies.entry(id).or_default().insert(group);
        }
    }
    copies
        .into_iter()
        .map(|(id, groups)| (id, groups.into_iter().collect()))
        .collect()
}

/// The process group, from `/proc/<pid>/stat` (the third field after the parenthesised name:
/// state, parent, group).
fn group_of(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 1..];
    after.split_whitespace().nth(2)?.parse().ok()
}

/// Every process under `root` whose command line names an instance's config.
fn instance_processes(root: &Path) -> Vec<(i32, String)> {
    let root = root.to_string_lossy().into_owned();
    let mut live = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return live;
    };
    for entry in entries.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        // A zombie has an empty command line: it no longer runs.
        let id = cmdline
            .split(|b| *b == 0)
            .map(String::from_utf8_lossy)
            .find_map(|arg| instance_of(&arg, &root));
        if let Some(id) = id {
            live.push((pid, id));
        }
    }
    live
}

/// `<root>/…/instances/<id>/config.yaml` → `<id>`.
fn instance_of(arg: &str, root: &str) -> Option<String> {
    let rest = arg.strip_prefix(root)?;
    let path = rest.strip_suffix("/config.yaml")?;
    let (before, id) = path.rsplit_once('/')?;
    before.ends_with("/instances").then(|| id.to_owned())
}
