//! The API's half of the data plane: a data request for an instance goes to a worker that
//! owns it (the node of a process instance; any live worker of the platform otherwise), found
//! by the data-plane address workers advertise in their registrations, and the worker's
//! answer comes back streamed. The API never routes to an instance itself.
//!
//! Workers are tried newest heartbeat first; one that cannot be connected to (it died since
//! its last beat) is passed over for the next. A node reuses what it read of the
//! registrations for half a second, and reads them again at once when none of those workers
//! can be connected to. Each request presents the data-plane secret.
//!
//! - [`sse`]: relays a change feed frame by frame, ending it with an `error` event when the
//!   worker's stream breaks.

pub mod sse;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use dashmap::DashMap;

use axum::body::{Body, Bytes};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use draas_bus::store::{DataPlane as Owner, Store};
use draas_protocol::dataplane::{DataRoute, DataSecret, causes};
use draas_protocol::{Instance, Platform};
use serde_json::json;

use crate::error::{ApiError, ApiResult};

/// How long a data request other than a change feed may take end to end.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// This node's way to the workers' data planes.
pub struct Forwarder {
    secret: Option<DataSecret>,
    client: reqwest::Client,
    /// Spreads requests for shared-platform instances over the live workers.
    turn: AtomicUsize,
    /// The owners last read per (platform, node), and when.
    owners_seen: DashMap<(Platform, Option<String>), (Instant, Vec<Owner>)>,
}

/// How long a node routes by what it read of the workers' registrations. A worker that
/// cannot be connected to makes the node read them again at once.
const OWNERS_TTL: Duration = Duration::from_millis(500);

/// What a data request carries on to the worker besides its route.
#[derive(Default)]
pub struct Outgoing {
    /// `snapshot=false`, for change feeds.
    pub query: Option<String>,
    pub last_event_id: Option<HeaderValue>,
    pub content_type: Option<HeaderValue>,
    /// The request body, read (and bounded) once by the guard.
    pub body: Option<Bytes>,
}

impl Forwarder {
    pub fn new(secret: Option<DataSecret>) -> Self {
        let client = reqwest::Client::builder()
            .no_proxy()
            .connect_timeout(Duration::from_secs(2))
            .pool_idle_timeout(Duration::from_secs(30))
            .tcp_nodelay(true)
            .build()
            .unwrap_or_default();
        Forwarder {
            secret,
            client,
            turn: AtomicUsize::new(0),
            owners_seen: DashMap::new(),
        }
    }

    /// Forwards `route` of the (running) `instance` to a worker that owns it; returns the
    /// worker's answer, status and body as the worker sent them.
    pub async fn forward(
        &self,
        store: &Store,
        instance: &Instance,
        route: &DataRoute,
        outgoing: Outgoing,
    ) -> ApiResult<reqwest::Response> {
        let Some(secret) = &self.secret else {
            return Err(ApiError::Data {
                status: StatusCode::SERVICE_UNAVAILABLE,
                code: "data_plane_disabled",
                message: "this API node serves no data plane: start it with a data-plane secret \
                          (--data-secret-file or DRAAS_DATA_SECRET), the same as its workers'"
                    .into(),
                details: json!({}),
            });
        };
        let mut reasons = Vec::new();
        // What this node read of the registrations a moment ago first; when none of those
        // workers can be reached, the registrations as they are now.
        for fresh in [false, true] {
            let owners = self.owners(store, instance, fresh).await?;
            if fresh
                && owners
                    .iter()
                    .all(|o| reasons.iter().any(|r: &String| r.contains(&o.url)))
            {
                break;
            }
            match self
                .attempt(instance, route, &outgoing, secret, &owners, &mut reasons)
                .await
            {
                Some(result) => return result,
                None => continue,
            }
        }
        Err(unreachable(instance, reasons.join("; ")))
    }

    /// Tries `owners` in order: the first answer, an error that must not be retried, or
    /// `None` when none could be connected to (the reasons are added to `reasons`).
    async fn attempt(
        &self,
        instance: &Instance,
        route: &DataRoute,
        outgoing: &Outgoing,
        secret: &DataSecret,
        owners: &[Owner],
        reasons: &mut Vec<String>,
    ) -> Option<ApiResult<reqwest::Response>> {
        for owner in owners {
            let mut url = format!(
                "{}{}",
                owner.url.trim_end_matches('/'),
                route.worker_path(instance.id)
            );
            if let Some(query) = &outgoing.query {
                url = format!("{url}?{query}");
            }
            let mut request = if route.is_post() {
                self.client.post(&url)
            } else {
                self.client.get(&url)
            };
            request = request.header(header::AUTHORIZATION, secret.bearer());
            if !matches!(route, DataRoute::Changes(_)) {
                request = request.timeout(REQUEST_TIMEOUT);
            }
            if let Some(v) = &outgoing.last_event_id {
                request = request.header("last-event-id", v.clone());
            }
            if let Some(v) = &outgoing.content_type {
                request = request.header(header::CONTENT_TYPE, v.clone());
            }
            if let Some(body) = &outgoing.body {
                // Bytes: a cheap clone, so the next worker can be tried with the same body.
                request = request.body(body.clone());
            }
            match request.send().await {
                Ok(response) if response.status() == StatusCode::UNAUTHORIZED => {
                    reasons.push(format!(
                        "worker {} refused this API node's data-plane secret; API nodes and \
                         workers need the same secret",
                        owner.consumer
                    ));
                }
                Ok(response) => return Some(Ok(response)),
                // Not connected: the request never reached the worker, so another may take it.
                Err(e) if e.is_connect() => {
                    reasons.push(format!(
                        "worker {} at {}: {}",
                        owner.consumer,
                        owner.url,
                        causes(&e)
                    ));
                }
                Err(e) => {
                    return Some(Err(unreachable(
                        instance,
                        format!(
                            "worker {} at {} did not answer: {}",
                            owner.consumer,
                            owner.url,
                            causes(&e)
                        ),
                    )));
                }
            }
        }
        None
    }

    /// The live workers that own `instance`, in the order to try them: as read within the
    /// last [`OWNERS_TTL`] unless `fresh`.
    async fn owners(
        &self,
        store: &Store,
        instance: &Instance,
        fresh: bool,
    ) -> ApiResult<Vec<Owner>> {
        let platform = instance.spec.platform;
        let node = match platform {
            // A process instance is reachable only on its node's loopback.
            Platform::Process => Some(
                instance
                    .runtime
                    .node
                    .as_deref()
                    .ok_or_else(|| unreachable(instance, "its node is not recorded".into()))?,
            ),
            _ => None,
        };
        let key = (platform, node.map(str::to_owned));
        let cached = (!fresh)
            .then(|| self.owners_seen.get(&key))
            .flatten()
            .filter(|seen| seen.0.elapsed() < OWNERS_TTL && !seen.1.is_empty())
            .map(|seen| seen.1.clone());
        let mut owners = match cached {
            Some(owners) => owners,
            None => {
                let owners = store.data_planes(platform, node).await?;
                self.owners_seen
                    .insert(key, (Instant::now(), owners.clone()));
                owners
            }
        };
        if owners.is_empty() {
            let whose = match node {
                Some(node) => format!("node {node}"),
                None => format!("the {platform} platform"),
            };
            return Err(unreachable(
                instance,
                format!(
                    "no live worker of {whose} serves the data plane (workers need --data-listen)"
                ),
            ));
        }
        if node.is_none() {
            let turn = self.turn.fetch_add(1, Ordering::Relaxed) % owners.len();
            owners.rotate_left(turn);
        }
        Ok(owners)
    }
}

/// 502 `instance_unreachable`, with the reason.
pub fn unreachable(instance: &Instance, reason: String) -> ApiError {
    ApiError::Data {
        status: StatusCode::BAD_GATEWAY,
        code: "instance_unreachable",
        message: format!("instance {} cannot be reached: {reason}", instance.id),
        details: json!({"instance": instance.id, "reason": reason}),
    }
}

/// The worker's answer as this node's response, its body streamed through.
pub fn passthrough(response: reqwest::Response) -> Response {
    let status =
        StatusCode::from_u16(response.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    let media = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| HeaderValue::from_bytes(v.as_bytes()).ok());
    let mut out = Response::new(Body::from_stream(response.bytes_stream()));
    *out.status_mut() = status;
    if let Some(media) = media {
        out.headers_mut().insert(header::CONTENT_TYPE, media);
    }
    out
}
