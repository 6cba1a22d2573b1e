//! Event metrics: counters and histograms that the request path, the
//! engine and the backends bump as things happen, kept in one process-wide
//! registry (like the audit log, they are observed from deep inside layers
//! that share no state). `GET /_/metrics` (see `admin::metrics`) encodes
//! them with the gauges it reads at scrape time, in the Prometheus text
//! format (OpenMetrics 1.0). The `prometheus-client` crate does the
//! encoding and the atomic bookkeeping.

use std::sync::LazyLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    /// `s3` or `admin`.
    api: &'static str,
    operation: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OperationLabels {
    api: &'static str,
    operation: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ApiLabels {
    api: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BackendLabels {
    backend: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct UpstreamLabels {
    backend: String,
    /// The HTTP status, or `none` when no response came (connection error, timeout).
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KeyLabels {
    backend: String,
    key_id: String,
}

type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

/// Request latency bounds, seconds: 1 ms to 1 min.
fn latency() -> Histogram {
    Histogram::new([
        0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
    ])
}

struct Events {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    duration: Histograms<OperationLabels>,
    received: Family<ApiLabels, Counter>,
    sent: Family<ApiLabels, Counter>,
    auth_failures: Counter,
    lockouts: Counter,
    delta_encodes: Histogram,
    delta_reconstructs: Histogram,
    ref_cache: Family<OutcomeLabels, Counter>,
    written: Family<OutcomeLabels, Counter>,
    logical_written: Counter,
    stored_written: Counter,
    sealed: Family<KeyLabels, Counter>,
    upstream: Histograms<BackendLabels>,
    upstream_responses: Family<UpstreamLabels, Counter>,
}

static EVENTS: LazyLock<Events> = LazyLock::new(|| {
    let mut r = Registry::default();
    let e = Events {
        registry: Registry::default(),
        requests: Family::default(),
        duration: Family::new_with_constructor(latency),
        received: Family::default(),
        sent: Family::default(),
        auth_failures: Counter::default(),
        lockouts: Counter::default(),
        delta_encodes: latency(),
        delta_reconstructs: latency(),
        ref_cache: Family::default(),
        written: Family::default(),
        logical_written: Counter::default(),
        stored_written: Counter::default(),
        sealed: Family::default(),
        upstream: Family::new_with_constructor(latency),
        upstream_responses: Family::default(),
    };
    r.register(
        "dgp_requests",
        "Requests answered, by API (s3, admin), operation and HTTP status",
        e.requests.clone(),
    );
    r.register_with_unit(
        "dgp_request_duration",
        "Time from a request's arrival to its response head, by API and operation",
        Unit::Seconds,
        e.duration.clone(),
    );
    r.register_with_unit(
        "dgp_received",
        "Request body bytes received (as announced by Content-Length)",
        Unit::Bytes,
        e.received.clone(),
    );
    r.register_with_unit(
        "dgp_sent",
        "Response body bytes sent (as announced by Content-Length)",
        Unit::Bytes,
        e.sent.clone(),
    );
    r.register(
        "dgp_auth_failures",
        "Failed authentications (wrong signature, unknown access key)",
        e.auth_failures.clone(),
    );
    r.register(
        "dgp_auth_lockouts",
        "Client addresses locked out after too many failed authentications",
        e.lockouts.clone(),
    );
    r.register_with_unit(
        "dgp_delta_encode_duration",
        "Delta encodings against a reference, and how long each took",
        Unit::Seconds,
        e.delta_encodes.clone(),
    );
    r.register_with_unit(
        "dgp_delta_reconstruct_duration",
        "Delta objects rebuilt for a read (reference + delta, SHA-256 checked)",
        Unit::Seconds,
        e.delta_reconstructs.clone(),
    );
    r.register(
        "dgp_delta_reference_cache",
        "Reference lookups by outcome (hit: from memory; miss: read and verified)",
        e.ref_cache.clone(),
    );
    r.register(
        "dgp_objects_written",
        "Object bodies published, by how they were stored (delta, reference, whole, passthrough)",
        e.written.clone(),
    );
    r.register_with_unit(
        "dgp_logical_written",
        "Bytes of object content published (what clients wrote)",
        Unit::Bytes,
        e.logical_written.clone(),
    );
    r.register_with_unit(
        "dgp_stored_written",
        "Bytes those objects took on their backends (after delta compression)",
        Unit::Bytes,
        e.stored_written.clone(),
    );
    r.register(
        "dgp_encryption_sealed",
        "Objects, references and parts sealed by the proxy, by backend and key id",
        e.sealed.clone(),
    );
    r.register_with_unit(
        "dgp_upstream_request_duration",
        "Attempts at requests to S3 upstream backends (each retry too), by backend",
        Unit::Seconds,
        e.upstream.clone(),
    );
    r.register(
        "dgp_upstream_responses",
        "Attempts at requests to S3 upstream backends, by backend and HTTP status",
        e.upstream_responses.clone(),
    );
    Events { registry: r, ..e }
});

/// One answered request (`api` is `s3` or `admin`).
/// Running totals over every request (both APIs), for the dashboard's
/// history (`admin::history` samples them).
#[derive(Debug, Default)]
pub struct Totals {
    pub requests: AtomicU64,
    pub client_errors: AtomicU64,
    pub server_errors: AtomicU64,
    pub latency_us: AtomicU64,
}

pub static TOTALS: Totals = Totals {
    requests: AtomicU64::new(0),
    client_errors: AtomicU64::new(0),
    server_errors: AtomicU64::new(0),
    latency_us: AtomicU64::new(0),
};

pub fn request(
    api: &'static str,
    operation: &str,
    status: u16,
    took: Duration,
    bytes_in: u64,
    bytes_out: u64,
) {
    TOTALS.requests.fetch_add(1, Ordering::Relaxed);
    match status {
        400..=499 => TOTALS.client_errors.fetch_add(1, Ordering::Relaxed),
        500.. => TOTALS.server_errors.fetch_add(1, Ordering::Relaxed),
        _ => 0,
    };
    TOTALS
        .latency_us
        .fetch_add(took.as_micros() as u64, Ordering::Relaxed);
    let e = &*EVENTS;
    e.requests
        .get_or_create(&RequestLabels {
            api,
            operation: operation.to_owned(),
            status,
        })
        .inc();
    e.duration
        .get_or_create(&OperationLabels {
            api,
            operation: operation.to_owned(),
        })
        .observe(took.as_secs_f64());
    e.received
        .get_or_create(&ApiLabels { api })
        .inc_by(bytes_in);
    e.sent.get_or_create(&ApiLabels { api }).inc_by(bytes_out);
}

pub fn auth_failed() {
    EVENTS.auth_failures.inc();
}

pub fn locked_out() {
    EVENTS.lockouts.inc();
}

pub fn delta_encoded(took: Duration) {
    EVENTS.delta_encodes.observe(took.as_secs_f64());
}

pub fn delta_reconstructed(took: Duration) {
    EVENTS.delta_reconstructs.observe(took.as_secs_f64());
}

pub fn reference_cache(hit: bool) {
    let outcome = if hit { "hit" } else { "miss" };
    EVENTS
        .ref_cache
        .get_or_create(&OutcomeLabels { outcome })
        .inc();
}

/// An object body published: `outcome` is how it was stored.
pub fn written(outcome: &'static str, logical: u64, stored: u64) {
    let e = &*EVENTS;
    e.written.get_or_create(&OutcomeLabels { outcome }).inc();
    e.logical_written.inc_by(logical);
    e.stored_written.inc_by(stored);
}

pub fn sealed(backend: &str, key_id: &str) {
    EVENTS
        .sealed
        .get_or_create(&KeyLabels {
            backend: backend.to_owned(),
            key_id: key_id.to_owned(),
        })
        .inc();
}

/// One attempt at a request to an S3 upstream, and its HTTP status.
pub fn upstream(backend: &str, took: Duration, status: Option<u16>) {
    EVENTS
        .upstream
        .get_or_create(&BackendLabels {
            backend: backend.to_owned(),
        })
        .observe(took.as_secs_f64());
    EVENTS
        .upstream_responses
        .get_or_create(&UpstreamLabels {
            backend: backend.to_owned(),
            status: status.map_or("none".to_owned(), |s| s.to_string()),
        })
        .inc();
}

/// Appends the event metrics (without the final `# EOF`).
pub fn encode_events(out: &mut String) -> std::fmt::Result {
    prometheus_client::encoding::text::encode_registry(out, &EVENTS.registry)
}
