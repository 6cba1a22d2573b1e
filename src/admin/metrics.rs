//! `GET /_/metrics`: the Prometheus scrape endpoint. It answers requests
//! signed with the admin credential, and unsigned ones from the networks in
//! `advanced.metrics_allow_from`. The event counters come from
//! `crate::metrics`; the gauges here are read at scrape time (process,
//! backends, jobs), and an inventory of stored objects (by key id, logical
//! versus stored bytes per bucket) is refreshed in the background at most
//! every [`INVENTORY_EVERY`], and only while someone scrapes.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::{Request, StatusCode, header};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::s3::S3State;

/// The object inventory walks every backend: not more often than this.
pub const INVENTORY_EVERY: Duration = Duration::from_secs(300);

const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

type Labels = Vec<(String, String)>;
type Gauges = Family<Labels, Gauge<f64, AtomicU64>>;

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// Gauges for one scrape, registered by name as they are first set.
#[derive(Default)]
struct Snapshot {
    registry: Registry,
    families: Vec<(&'static str, Gauges)>,
}

impl Snapshot {
    fn set(&mut self, name: &'static str, help: &str, l: &[(&str, &str)], value: f64) {
        let family = match self.families.iter().find(|(n, _)| *n == name) {
            Some((_, f)) => f.clone(),
            None => {
                let f = Gauges::default();
                self.registry.register(name, help, f.clone());
                self.families.push((name, f.clone()));
                f
            }
        };
        family.get_or_create(&labels(l)).set(value);
    }
}

/// The last inventory, encoded, and when it was taken.
struct Inventory {
    text: Mutex<Option<(Instant, String)>>,
    running: AtomicBool,
}

static INVENTORY: Inventory = Inventory {
    text: Mutex::new(None),
    running: AtomicBool::new(false),
};

fn may_scrape(st: &S3State, req: &Request<Body>) -> Result<(), Box<Response>> {
    let proto = st.protocol.load();
    let source =
        crate::s3::admit::client_addr(req.extensions(), req.headers(), proto.trust_proxy_headers);
    let signed = req.headers().contains_key(header::AUTHORIZATION);
    if !signed && proto.metrics_allow_from.iter().any(|n| n.contains(source)) {
        return Ok(());
    }
    super::require_admin(st, req)
}

pub async fn scrape(State(st): State<Arc<S3State>>, req: Request<Body>) -> Response {
    if let Err(r) = may_scrape(&st, &req) {
        return *r;
    }
    let mut snap = Snapshot::default();
    process_gauges(&st, &mut snap);
    let stores: Vec<_> = st.gateway.load().stores().cloned().collect();
    // Health asks each upstream once, and job state is a file read: off
    // the async workers.
    let snap = tokio::task::spawn_blocking(move || {
        backend_gauges(&stores, &mut snap);
        snap
    })
    .await;
    let Ok(snap) = snap else {
        return super::deny(StatusCode::INTERNAL_SERVER_ERROR, "internal error");
    };
    refresh_inventory(&st);
    let mut out = String::with_capacity(16 * 1024);
    let encoded = crate::metrics::encode_events(&mut out)
        .and_then(|()| prometheus_client::encoding::text::encode_registry(&mut out, &snap.registry))
        .and_then(|()| {
            if let Some((at, text)) = &*INVENTORY.text.lock().unwrap_or_else(|p| p.into_inner()) {
                out.push_str(text);
                writeln!(
                    out,
                    "# HELP dgp_inventory_age_seconds Age of the object inventory (dgp_stored_objects_*, dgp_bucket_*).\n\
                     # TYPE dgp_inventory_age_seconds gauge\n\
                     dgp_inventory_age_seconds {}",
                    at.elapsed().as_secs()
                )?;
            }
            prometheus_client::encoding::text::encode_eof(&mut out)
        });
    if encoded.is_err() {
        return super::deny(
            StatusCode::INTERNAL_SERVER_ERROR,
            "could not encode the metrics",
        );
    }
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], out).into_response()
}

fn process_gauges(st: &S3State, snap: &mut Snapshot) {
    snap.set(
        "dgp_build_info",
        "The running version",
        &[("version", env!("CARGO_PKG_VERSION"))],
        1.0,
    );
    snap.set(
        "dgp_uptime_seconds",
        "Seconds since the server started",
        &[],
        st.started.elapsed().as_secs_f64(),
    );
    let (rss, peak) = super::memory_kib();
    snap.set(
        "dgp_process_resident_memory_bytes",
        "Resident memory of the server process",
        &[],
        (rss * 1024) as f64,
    );
    snap.set(
        "dgp_process_peak_resident_memory_bytes",
        "Peak resident memory of the server process",
        &[],
        (peak * 1024) as f64,
    );
    snap.set(
        "dgp_requests_in_flight",
        "S3 requests being handled now",
        &[],
        st.in_flight.load(Ordering::Relaxed) as f64,
    );
}

fn backend_gauges(stores: &[Arc<crate::engine::ObjectStore>], snap: &mut Snapshot) {
    for s in stores {
        let name = s.name.as_str();
        let b = [("backend", name)];
        let up = s.health().is_ok();
        snap.set(
            "dgp_backend_up",
            "1 when the backend answers (an upstream's ListBuckets, a data directory's free-space check)",
            &[("backend", name), ("kind", s.backend_kind())],
            if up { 1.0 } else { 0.0 },
        );
        if let Ok((total, free)) = s.space() {
            snap.set(
                "dgp_backend_disk_total_bytes",
                "Size of a filesystem backend's data filesystem",
                &b,
                total as f64,
            );
            snap.set(
                "dgp_backend_disk_free_bytes",
                "Free space on a filesystem backend's data filesystem",
                &b,
                free as f64,
            );
        }
        snap.set(
            "dgp_backend_writes_held",
            "1 while writes to the backend are refused (its keys are not checked yet, or failed the check)",
            &b,
            if s.writes_held().is_some() { 1.0 } else { 0.0 },
        );
        let job = s.pending_reencrypt();
        snap.set(
            "dgp_reencrypt_job_running",
            "1 while a re-encrypt job runs on the backend",
            &b,
            if job.is_some() { 1.0 } else { 0.0 },
        );
        if let Some(j) = job {
            for (state, n) in [
                ("rewritten", j.rewritten),
                ("unchanged", j.skipped),
                ("failed", j.failed),
            ] {
                snap.set(
                    "dgp_reencrypt_job_objects",
                    "Objects the running re-encrypt job has handled, by outcome",
                    &[("backend", name), ("state", state)],
                    n as f64,
                );
            }
        }
        for m in s.migrations() {
            let l = [
                ("bucket", m.bucket.as_str()),
                ("to_backend", m.to_backend.as_str()),
            ];
            snap.set(
                "dgp_migrate_job_objects_copied",
                "Objects a bucket migration has copied and verified",
                &l,
                m.copied as f64,
            );
            snap.set(
                "dgp_migrate_job_bytes_copied",
                "Bytes a bucket migration has copied and verified",
                &l,
                m.bytes as f64,
            );
            snap.set(
                "dgp_migrate_job_done",
                "1 when the bucket migration has finished",
                &l,
                if m.phase == crate::engine::migrate::Phase::Done {
                    1.0
                } else {
                    0.0
                },
            );
        }
    }
}

/// Starts an inventory in the background when the last one is missing or
/// older than [`INVENTORY_EVERY`]; a scrape never waits for it.
fn refresh_inventory(st: &S3State) {
    let stale = INVENTORY
        .text
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .as_ref()
        .is_none_or(|(at, _)| at.elapsed() >= INVENTORY_EVERY);
    if !stale || INVENTORY.running.swap(true, Ordering::AcqRel) {
        return;
    }
    let gw = st.gateway.load_full();
    tokio::task::spawn_blocking(move || {
        let started = Instant::now();
        match inventory(&gw) {
            Ok(text) => {
                tracing::debug!(
                    took_ms = started.elapsed().as_millis() as u64,
                    "metrics inventory taken"
                );
                *INVENTORY.text.lock().unwrap_or_else(|p| p.into_inner()) =
                    Some((Instant::now(), text));
            }
            Err(e) => tracing::warn!(error = %e, "metrics inventory failed; the last one stays"),
        }
        INVENTORY.running.store(false, Ordering::Release);
    });
}

fn inventory(gw: &crate::gateway::Gateway) -> anyhow::Result<String> {
    let mut snap = Snapshot::default();
    for s in gw.stores() {
        let e = s.encryption_status()?;
        let name = e.backend.as_str();
        snap.set(
            "dgp_stored_objects_plaintext",
            "Objects on a backend stored in plaintext",
            &[("backend", name)],
            e.census.plaintext as f64,
        );
        for (id, n) in &e.census.key_ids {
            snap.set(
                "dgp_stored_objects_encrypted",
                "Objects on a backend sealed by the proxy, by key id",
                &[("backend", name), ("key_id", id)],
                *n as f64,
            );
        }
        snap.set(
            "dgp_stored_objects_undecryptable",
            "Encrypted objects whose key id is not configured or whose data key does not unwrap",
            &[("backend", name)],
            e.census.undecryptable as f64,
        );
    }
    for b in gw.stats_blocking(None)?.unwrap_or_default() {
        let l = [("bucket", b.bucket.as_str())];
        snap.set(
            "dgp_bucket_objects",
            "Objects in a bucket",
            &l,
            b.objects as f64,
        );
        snap.set(
            "dgp_bucket_logical_bytes",
            "Bytes clients would read back from a bucket",
            &l,
            b.logical_bytes as f64,
        );
        snap.set(
            "dgp_bucket_stored_bytes",
            "Bytes a bucket takes on its backend after delta compression",
            &l,
            b.stored_bytes as f64,
        );
    }
    let mut text = String::new();
    prometheus_client::encoding::text::encode_registry(&mut text, &snap.registry)?;
    Ok(text)
}
