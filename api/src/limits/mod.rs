//! What one client can cost a node: a per-caller rate limit ([`rate`]) and a server that
//! disconnects slow clients ([`conn`]: a header read timeout; the guard bounds body reads).
//!
//! - [`rate`]: the keyed rate limiter (governor) and its middleware: 429 `rate_limited` with
//!   `Retry-After`. Per API node: N nodes together allow up to N times the rate.
//! - [`conn`]: accepting connections with hyper's header read timeout, graceful shutdown.
//! - [`failures`]: a per-peer bound on failed authentications, so unauthenticated floods
//!   cost no Redis lookups and no audit entries.

pub mod conn;
pub mod failures;
pub mod rate;

use std::num::NonZeroU32;
use std::str::FromStr;

/// A rate limit: a sustained `per_second` with bursts of up to `burst` requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    pub per_second: NonZeroU32,
    pub burst: NonZeroU32,
}

impl RateLimit {
    /// The default: generous enough for any well-behaved client and for the benchmarks.
    pub const DEFAULT: RateLimit = RateLimit {
        per_second: NonZeroU32::new(50).unwrap(),
        burst: NonZeroU32::new(100).unwrap(),
    };

    /// Failed authentications per peer address: plenty for a person mistyping a token, far
    /// below a flood.
    pub const FAILED_AUTH: RateLimit = RateLimit {
        per_second: NonZeroU32::new(10).unwrap(),
        burst: NonZeroU32::new(50).unwrap(),
    };
}

/// A rate given as `N/s` (or plain `N`), N ≥ 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PerSecond(pub NonZeroU32);

impl FromStr for PerSecond {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let number = text.trim().strip_suffix("/s").unwrap_or(text.trim());
        number
            .parse::<NonZeroU32>()
            .map(PerSecond)
            .map_err(|_| format!("`{text}` is not a rate: expected N/s with N ≥ 1, e.g. 50/s"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_parse() {
        assert_eq!("50/s".parse::<PerSecond>().unwrap().0.get(), 50);
        assert_eq!("7".parse::<PerSecond>().unwrap().0.get(), 7);
        assert!("0/s".parse::<PerSecond>().is_err());
        assert!("fast".parse::<PerSecond>().is_err());
        assert!("5/m".parse::<PerSecond>().is_err());
    }
}
