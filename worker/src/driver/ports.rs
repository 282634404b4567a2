//! Port allocation: host ports for instances that listen on the host (processes,
//! host-networked containers), and fixed ports for instances with a network namespace of
//! their own (bridged or named-network containers, Kubernetes pods): see [`fixed`].
//!
//! Ports come from a range below the kernel's ephemeral range (32768–60999 by default), so an
//! outbound connection can never take a port between its allocation and the instance binding
//! it. Every port handed out is reserved host-wide for a short while with an exclusively
//! created file under `<tmp>/draas-ports/`, so two workers on one host never hand out the
//! same port at once; a candidate must also be bindable right now.

use std::net::TcpListener;

use draas_protocol::drasi::{DrasiConfig, Endpoint};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, SystemTime};

/// The default range: below the ephemeral range.
pub const DEFAULT_RANGE: (u16, u16) = (20_000, 32_000);

/// How long a reservation holds: ample for an instance to bind its ports.
const RESERVATION: Duration = Duration::from_secs(120);

/// Hands out free TCP ports from a range, reserving each host-wide for a while.
pub struct PortAllocator {
    range: (u16, u16),
    next: AtomicU16,
    reservations: PathBuf,
}

impl Default for PortAllocator {
    fn default() -> Self {
        Self::new(DEFAULT_RANGE, std::env::temp_dir().join("draas-ports"))
    }
}

impl PortAllocator {
    /// An allocator over `range` (inclusive start, exclusive end), keeping its reservations in
    /// `reservations`. It starts at a point derived from its process id, so workers spread out.
    pub fn new(range: (u16, u16), reservations: PathBuf) -> Self {
        let span = u32::from(range.1 - range.0).max(1);
        let start = range.0 + (std::process::id().wrapping_mul(2_654_435_761) % span) as u16;
        PortAllocator {
            range,
            next: AtomicU16::new(start),
            reservations,
        }
    }

    /// A port that is bindable on `host` now and reserved for this caller.
    pub fn allocate(&self, host: &str) -> std::io::Result<u16> {
        std::fs::create_dir_all(&self.reservations)?;
        let span = self.range.1 - self.range.0;
        for _ in 0..span {
            let port = self.candidate();
            if self.reserve(port) && TcpListener::bind((host, port)).is_ok() {
                return Ok(port);
            }
        }
        Err(std::io::Error::new(
            std::io::ErrorKind::AddrInUse,
            format!("no free port in {}..{}", self.range.0, self.range.1),
        ))
    }

    fn candidate(&self) -> u16 {
        let span = self.range.1 - self.range.0;
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        self.range.0 + (n.wrapping_sub(self.range.0)) % span
    }

    /// Creates the port's reservation file, taking over one that has expired.
    fn reserve(&self, port: u16) -> bool {
        let path = self.reservations.join(port.to_string());
        let create = || {
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)
                .is_ok()
        };
        if create() {
            return true;
        }
        let expired = std::fs::metadata(&path)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| SystemTime::now().duration_since(t).ok())
            .is_some_and(|age| age > RESERVATION);
        expired && std::fs::remove_file(&path).is_ok() && create()
    }
}

/// Assigns consecutive ports from `first` on `0.0.0.0` (the instance has a network namespace
/// of its own) and returns the endpoints as reached at `reach` (a container or service name).
pub fn fixed(config: &mut DrasiConfig, first: u16, reach: &str) -> Vec<Endpoint> {
    let mut next = first;
    let mut inner = || {
        let port = next;
        next += 1;
        Ok(port)
    };
    let endpoints = config
        .assign_ports("0.0.0.0", &mut inner)
        .expect("fixed port assignment cannot fail");
    endpoints
        .into_iter()
        .map(|e| {
            let port = port_of(&e.url).unwrap_or(first);
            Endpoint {
                url: format!("http://{reach}:{port}"),
                ..e
            }
        })
        .collect()
}

/// The port of an `http://host:port` URL.
pub fn port_of(url: &str) -> Option<u16> {
    url.rsplit(':').next()?.trim_end_matches('/').parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_allocators_on_one_host_never_share_a_port() {
        let dir = std::env::temp_dir().join(format!("draas-ports-test-{}", uuid::Uuid::new_v4()));
        let a = PortAllocator::new((24_000, 24_100), dir.clone());
        let b = PortAllocator::new((24_000, 24_100), dir.clone());
        let mut seen = std::collections::HashSet::new();
        for _ in 0..40 {
            assert!(seen.insert(a.allocate("127.0.0.1").unwrap()));
            assert!(seen.insert(b.allocate("127.0.0.1").unwrap()));
        }
        assert!(seen.iter().all(|p| (24_000..24_100).contains(p)));
        std::fs::remove_dir_all(dir).unwrap();
    }
}
