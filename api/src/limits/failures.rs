//! A bound on what unauthenticated clients can cost: per peer address, refused-for-lack-of-
//! credentials answers (401) are counted in a token bucket (governor, keyed by IP); a peer
//! that exhausts it is answered 429 `rate_limited` with `Retry-After` at once, before any
//! body is read, any token is looked up in Redis or any audit entry is written, until the
//! bucket refills. A flood of bogus tokens then costs neither Redis lookups nor the audit
//! trail's real entries (blocked requests are counted and logged, not audited one by one).
//! Well-behaved clients never get near it: only failed authentications count.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::HeaderValue;
use axum::http::StatusCode;
use axum::http::header::{CONNECTION, RETRY_AFTER};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use dashmap::DashMap;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};

use super::RateLimit;
use crate::error::ApiError;

/// The node's failed-authentication buckets and the peers currently blocked.
#[derive(Clone)]
pub struct Failures {
    buckets: Option<Arc<DefaultKeyedRateLimiter<IpAddr>>>,
    blocked: Arc<DashMap<IpAddr, Instant>>,
    suppressed: Arc<AtomicU64>,
}

impl Failures {
    /// Buckets of `limit` (`None`: the bound is off).
    pub fn new(limit: Option<RateLimit>) -> Self {
        Failures {
            buckets: limit.map(|l| {
                let quota = Quota::per_second(l.per_second).allow_burst(l.burst);
                Arc::new(DefaultKeyedRateLimiter::keyed(quota))
            }),
            blocked: Arc::default(),
            suppressed: Arc::default(),
        }
    }
}

impl Failures {
    /// Seconds a blocked peer still has to wait, if it is blocked.
    fn blocked_for(&self, ip: IpAddr) -> Option<u64> {
        let until = *self.blocked.get(&ip)?;
        let left = until.checked_duration_since(Instant::now());
        if left.is_none() {
            self.blocked.remove(&ip);
        }
        left.map(|d| d.as_secs() + u64::from(d.subsec_nanos() > 0))
    }

    /// Counts one failed authentication of `ip`; blocks it when its bucket is empty.
    fn failed(&self, ip: IpAddr) {
        let Some(buckets) = &self.buckets else {
            return;
        };
        if let Err(not_until) = buckets.check_key(&ip) {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            self.blocked
                .insert(ip, Instant::now() + wait.max(Duration::from_secs(1)));
            tracing::warn!(message = "too many failed authentications; peer blocked", peer = %ip, seconds = wait.as_secs_f64());
        }
        if self.blocked.len() > 100_000 {
            self.blocked.retain(|_, until| *until > Instant::now());
            buckets.retain_recent();
        }
    }
}

/// The middleware (`from_fn_with_state`), outermost: it needs the peer address, which the
/// connection server puts on every request (`ConnectInfo`).
pub async fn bound(State(failures): State<Failures>, req: Request, next: Next) -> Response {
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    let Some(ip) = peer else {
        return next.run(req).await;
    };
    if let Some(seconds) = failures.blocked_for(ip) {
        let total = failures.suppressed.fetch_add(1, Ordering::Relaxed) + 1;
        if total.is_power_of_two() {
            tracing::warn!(
                message = "requests of blocked peers refused unaudited",
                total
            );
        }
        return blocked(seconds.max(1));
    }
    let response = next.run(req).await;
    if response.status() == StatusCode::UNAUTHORIZED {
        failures.failed(ip);
    }
    response
}

fn blocked(seconds: u64) -> Response {
    let error = ApiError::Other {
        status: StatusCode::TOO_MANY_REQUESTS,
        code: "rate_limited",
        message: format!("too many failed authentications from this address; retry in {seconds} s"),
    };
    let mut response = error.into_response();
    let headers = response.headers_mut();
    headers.insert(RETRY_AFTER, HeaderValue::from(seconds));
    // The body was not read: the connection cannot be reused.
    headers.insert(CONNECTION, HeaderValue::from_static("close"));
    response
}
