//! The dashboard's recent history: every `STEP` the request totals
//! (`metrics::TOTALS`) are sampled, and the last `KEEP` steps are kept as
//! rates: requests per second, the share of 4xx and 5xx answers, and the
//! mean latency. `GET /_/api/status` returns them as `history`.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::Ordering;
use std::time::Duration;

use serde::Serialize;

use crate::metrics::TOTALS;

pub const STEP: Duration = Duration::from_secs(10);
/// Ten minutes.
const KEEP: usize = 60;

#[derive(Debug, Clone, Copy, Serialize)]
pub struct Sample {
    /// Unix time (seconds) at the end of the step.
    pub t: u64,
    pub requests_per_sec: f64,
    pub client_error_ratio: f64,
    pub server_error_ratio: f64,
    pub mean_latency_ms: f64,
}

static SAMPLES: Mutex<VecDeque<Sample>> = Mutex::new(VecDeque::new());

fn totals() -> [u64; 4] {
    [
        TOTALS.requests.load(Ordering::Relaxed),
        TOTALS.client_errors.load(Ordering::Relaxed),
        TOTALS.server_errors.load(Ordering::Relaxed),
        TOTALS.latency_us.load(Ordering::Relaxed),
    ]
}

/// The sample of the step from `before` to `now`, `secs` long.
fn sample(before: [u64; 4], now: [u64; 4], secs: f64, t: u64) -> Sample {
    let d: Vec<f64> = (0..4)
        .map(|i| now[i].saturating_sub(before[i]) as f64)
        .collect();
    let per = |x: f64| if d[0] > 0.0 { x / d[0] } else { 0.0 };
    Sample {
        t,
        requests_per_sec: d[0] / secs,
        client_error_ratio: per(d[1]),
        server_error_ratio: per(d[2]),
        mean_latency_ms: per(d[3]) / 1000.0,
    }
}

/// Starts the sampler (once per process).
pub fn spawn_sampler() {
    tokio::spawn(async {
        let mut tick = tokio::time::interval(STEP);
        tick.tick().await;
        let mut before = totals();
        loop {
            tick.tick().await;
            let now = totals();
            let t = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            let s = sample(before, now, STEP.as_secs_f64(), t);
            before = now;
            let mut q = SAMPLES.lock().unwrap_or_else(|p| p.into_inner());
            if q.len() == KEEP {
                q.pop_front();
            }
            q.push_back(s);
        }
    });
}

/// The kept samples, oldest first.
pub fn samples() -> Vec<Sample> {
    SAMPLES
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .copied()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_step_becomes_rates() {
        let s = sample([10, 1, 0, 5_000], [30, 3, 1, 25_000], 10.0, 7);
        assert_eq!(s.requests_per_sec, 2.0);
        assert_eq!(s.client_error_ratio, 0.1);
        assert_eq!(s.server_error_ratio, 0.05);
        assert_eq!(s.mean_latency_ms, 1.0);
        let idle = sample([5, 0, 0, 9], [5, 0, 0, 9], 10.0, 8);
        assert_eq!((idle.requests_per_sec, idle.mean_latency_ms), (0.0, 0.0));
    }
}
