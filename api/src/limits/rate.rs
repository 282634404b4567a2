//! The per-caller rate limit: one token bucket (GCRA, governor's keyed limiter) per actor
//! (`Caller::actor`: the token id, or `anonymous`), kept in this node's memory. A request
//! over the limit is a 429 `rate_limited` with `Retry-After` (whole seconds, at least 1).
//!
//! The same middleware hands the caller and the matched route to the audit layer outside
//! it, through the response's extensions ([`Seen`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::extract::{MatchedPath, Request, State};
use axum::http::header::RETRY_AFTER;
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};

use super::RateLimit;
use crate::auth::Caller;
use crate::error::ApiError;

/// Who a request was from and which route it matched, for the audit record.
#[derive(Debug, Clone)]
pub struct Seen {
    pub caller: Option<Caller>,
    pub route: Option<String>,
}

/// The node's limiter; `None` inside when the rate limit is off.
#[derive(Clone)]
pub struct Limiter {
    inner: Option<Arc<DefaultKeyedRateLimiter<String>>>,
    checks: Arc<AtomicU64>,
}

impl Limiter {
    pub fn new(limit: Option<RateLimit>) -> Self {
        let inner = limit.map(|l| {
            let quota = Quota::per_second(l.per_second).allow_burst(l.burst);
            Arc::new(DefaultKeyedRateLimiter::keyed(quota))
        });
        Limiter {
            inner,
            checks: Arc::default(),
        }
    }

    /// `Err(seconds to wait)` when `actor` is over its limit.
    fn check(&self, actor: &str) -> Result<(), u64> {
        let Some(limiter) = &self.inner else {
            return Ok(());
        };
        // Forget idle callers now and then, so the table holds only recent ones.
        if self.checks.fetch_add(1, Ordering::Relaxed) % 4096 == 4095 {
            limiter.retain_recent();
        }
        limiter.check_key(&actor.to_owned()).map_err(|not_until| {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            wait.as_secs() + u64::from(wait.subsec_nanos() > 0)
        })
    }
}

/// The middleware (`from_fn_with_state`), layered inside authentication so the caller is
/// known. Requests without a caller (health probes) are not limited.
pub async fn limit(State(limiter): State<Limiter>, req: Request, next: Next) -> Response {
    let caller = req.extensions().get::<Caller>().cloned();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_owned());
    let refused = caller
        .as_ref()
        .and_then(|c| limiter.check(&c.actor()).err());
    let mut response = match refused {
        Some(seconds) => too_many(seconds.max(1)),
        None => next.run(req).await,
    };
    response.extensions_mut().insert(Seen { caller, route });
    response
}

fn too_many(seconds: u64) -> Response {
    let error = ApiError::Other {
        status: StatusCode::TOO_MANY_REQUESTS,
        code: "rate_limited",
        message: format!("too many requests from this caller; retry in {seconds} s"),
    };
    let mut response = error.into_response();
    response
        .headers_mut()
        .insert(RETRY_AFTER, HeaderValue::from(seconds));
    response
}
