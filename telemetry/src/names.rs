//! The catalogue of every metric DRaaS exports: names, units and help text in one place, so
//! the API, the workers, the alert rules and the dashboard agree on them.
//!
//! Labels are bounded by construction: `platform` (three values), `node` (the worker fleet's
//! nodes), `kind` (the closed `Command` enum), `outcome`, `state` (the instance states),
//! `route` (the router's templates, never a raw path), `method` and `status`. No label ever
//! holds an instance id, an operation id, a tenant or a token.

use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};

// HTTP (API nodes).
/// Requests served, by `route` template, `method` and `status`.
pub const HTTP_REQUESTS: &str = "draas_http_requests_total";
/// Request latency, by `route` template and `method`.
pub const HTTP_DURATION: &str = "draas_http_request_duration_seconds";

// Commands.
/// Commands appended to a stream by an API node, by `platform` and `kind`.
pub const COMMANDS_ISSUED: &str = "draas_commands_issued_total";
/// Commands a worker finished, by `platform`, `kind` and `outcome` (`succeeded`, `failed`).
pub const COMMANDS_COMPLETED: &str = "draas_commands_completed_total";
/// Issue to reply as the issuing API node saw it, by `platform` and `kind`.
pub const COMMAND_LATENCY: &str = "draas_command_duration_seconds";
/// Issue to claim: time the command waited in the stream, by `platform` and `kind`.
pub const COMMAND_QUEUE_WAIT: &str = "draas_command_queue_wait_seconds";
/// Claim to recorded outcome: the command's execution, by `platform` and `kind`.
pub const COMMAND_EXECUTION: &str = "draas_command_execution_seconds";
/// Deliveries of a command that was delivered before (attempt > 1), by `platform`.
pub const REDELIVERIES: &str = "draas_command_redeliveries_total";
/// Entries taken over from a dead or stuck consumer (XAUTOCLAIM), by `platform`.
pub const RECLAIMS: &str = "draas_command_reclaims_total";
/// Commands moved to the dead-letter stream, by `platform`.
pub const DEAD_LETTERS: &str = "draas_dead_letters_total";
/// Writes refused because the caller's fencing token was stale, by `platform`.
pub const FENCING_REFUSALS: &str = "draas_fencing_refusals_total";
/// Commands forwarded to the node that runs the instance, by `platform`.
pub const FORWARDS: &str = "draas_command_forwards_total";

// Streams (read on a timer by API nodes, never per scrape).
/// Entries in a command stream, by `platform` and `node` (empty for the platform stream).
pub const STREAM_LENGTH: &str = "draas_stream_length";
/// Entries delivered but not acknowledged, by `platform` and `node`.
pub const STREAM_PENDING: &str = "draas_stream_pending";
/// Age of the oldest pending entry, by `platform` and `node` (0 when none).
pub const STREAM_OLDEST_PENDING: &str = "draas_stream_oldest_pending_age_seconds";
/// Entries not yet delivered to the consumer group, by `platform` and `node`.
pub const STREAM_LAG: &str = "draas_stream_lag";
/// Entries in the dead-letter stream, by `platform`.
pub const DLQ_LENGTH: &str = "draas_dlq_length";
/// Workers whose heartbeat is within their TTL, by `platform`.
pub const WORKERS_LIVE: &str = "draas_workers_live";
/// Nodes whose heartbeat is within the TTL, by `platform`.
pub const NODES_LIVE: &str = "draas_nodes_live";
/// Time the last read of the streams took; a slow Redis shows here first.
pub const STREAMS_READ: &str = "draas_streams_read_duration_seconds";

// Instances.
/// Instances by `platform` and `state`, from counters kept on every transition.
pub const INSTANCES: &str = "draas_instances";
/// State transitions applied, by `platform`, `from` and `to`.
pub const TRANSITIONS: &str = "draas_instance_transitions_total";
/// Restarts by the restart policy, by `platform`.
pub const RESTARTS: &str = "draas_instance_restarts_total";
/// Start command to ready, by `platform`.
pub const START_TO_READY: &str = "draas_instance_start_to_ready_seconds";
/// Exits nobody asked for, by `platform`.
pub const UNEXPECTED_EXITS: &str = "draas_instance_unexpected_exits_total";

// Redis.
/// Round trip of the API node's Redis connection, by `op` (`ping`: a PING timed with every
/// read of the gauges).
pub const REDIS_LATENCY: &str = "draas_redis_command_duration_seconds";

/// Registers help text and units with the installed recorder (a no-op without one).
pub fn describe() {
    describe_counter!(
        HTTP_REQUESTS,
        "HTTP requests served, by route template, method and status"
    );
    describe_histogram!(HTTP_DURATION, Unit::Seconds, "HTTP request latency");
    describe_counter!(
        COMMANDS_ISSUED,
        "Commands appended to a platform stream by an API node"
    );
    describe_counter!(
        COMMANDS_COMPLETED,
        "Commands finished by a worker, by outcome"
    );
    describe_histogram!(
        COMMAND_LATENCY,
        Unit::Seconds,
        "Command issue to reply, at the API"
    );
    describe_histogram!(COMMAND_QUEUE_WAIT, Unit::Seconds, "Command issue to claim");
    describe_histogram!(COMMAND_EXECUTION, Unit::Seconds, "Command claim to outcome");
    describe_counter!(
        REDELIVERIES,
        "Commands delivered again after an earlier attempt"
    );
    describe_counter!(RECLAIMS, "Pending entries taken over from another consumer");
    describe_counter!(DEAD_LETTERS, "Commands moved to the dead-letter stream");
    describe_counter!(FENCING_REFUSALS, "Writes refused for a stale fencing token");
    describe_counter!(
        FORWARDS,
        "Commands forwarded to the node running the instance"
    );
    describe_gauge!(STREAM_LENGTH, "Entries in a command stream");
    describe_gauge!(STREAM_PENDING, "Entries delivered and not acknowledged");
    describe_gauge!(
        STREAM_OLDEST_PENDING,
        Unit::Seconds,
        "Age of the oldest pending entry"
    );
    describe_gauge!(
        STREAM_LAG,
        "Entries not yet delivered to the consumer group"
    );
    describe_gauge!(DLQ_LENGTH, "Entries in the dead-letter stream");
    describe_gauge!(WORKERS_LIVE, "Workers with a live heartbeat");
    describe_gauge!(NODES_LIVE, "Nodes with a live heartbeat");
    describe_histogram!(
        STREAMS_READ,
        Unit::Seconds,
        "Time one read of the stream gauges took"
    );
    describe_gauge!(INSTANCES, "Instances by platform and state");
    describe_counter!(TRANSITIONS, "Instance state transitions applied");
    describe_counter!(RESTARTS, "Instance restarts by the restart policy");
    describe_histogram!(START_TO_READY, Unit::Seconds, "Instance start to ready");
    describe_counter!(UNEXPECTED_EXITS, "Instance exits nobody asked for");
    describe_histogram!(
        REDIS_LATENCY,
        Unit::Seconds,
        "Redis command and pipeline latency"
    );
}

/// Histogram buckets in seconds: 100 µs to 60 s, so both a Redis round trip and a slow
/// container start land inside the range.
pub const BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0, 30.0, 60.0,
];
