//! Free-port allocation: ask the kernel for an ephemeral port, and never hand out the same
//! port twice within a short window (the instance may not have bound it yet).

use std::collections::VecDeque;
use std::net::TcpListener;
use std::sync::Mutex;

/// How many recently handed-out ports are remembered and skipped.
const RECENT: usize = 1024;

/// Hands out free TCP ports.
#[derive(Default)]
pub struct PortAllocator {
    recent: Mutex<VecDeque<u16>>,
}

impl PortAllocator {
    /// A port that was free on `host` a moment ago and was not handed out recently.
    pub fn allocate(&self, host: &str) -> std::io::Result<u16> {
        for _ in 0..64 {
            let port = TcpListener::bind((host, 0))?.local_addr()?.port();
            let mut recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
            if !recent.contains(&port) {
                if recent.len() == RECENT {
                    recent.pop_front();
                }
                recent.push_back(port);
                return Ok(port);
            }
        }
        Err(std::io::Error::new(
            std::io::ErrorKind::AddrInUse,
            "no free port found in 64 tries",
        ))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn never_repeats_recent_ports() {
        let a = super::PortAllocator::default();
        let mut seen = std::collections::HashSet::new();
        for _ in 0..50 {
            assert!(seen.insert(a.allocate("127.0.0.1").unwrap()));
        }
    }
}
