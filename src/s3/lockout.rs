//! Brute-force resistance: failed authentications (a wrong signature, an
//! unknown access key, on S3 requests and on the operator API) are counted
//! per client address. After `delay_after` failures each further failure is
//! answered more slowly (100 ms, doubling, at most 3 s); after
//! `lockout_after` the address is locked out for `lockout_secs`: every
//! request from it gets `503 SlowDown` with `Retry-After`, before any
//! signature work. A success clears the address; failures older than
//! `lockout_secs` are forgotten. Other addresses are never affected.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The thresholds (`advanced.auth_*`); a reload may change them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LockoutSettings {
    pub delay_after: u32,
    /// 0: never lock out.
    pub lockout_after: u32,
    pub lockout: Duration,
}

#[derive(Debug)]
struct Entry {
    failures: u32,
    last: Instant,
    locked_until: Option<Instant>,
}

/// Addresses tracked at most; beyond it the stalest entries go first.
const MAX_TRACKED: usize = 65_536;

#[derive(Debug, Default)]
pub struct Lockout {
    map: Mutex<HashMap<IpAddr, Entry>>,
}

impl Lockout {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, Entry>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `Err(retry after)` while `ip` is locked out.
    pub fn check(&self, ip: IpAddr, now: Instant) -> Result<(), Duration> {
        match self.map().get(&ip).and_then(|e| e.locked_until) {
            Some(until) if until > now => Err(until - now),
            _ => Ok(()),
        }
    }

    /// Records a failure; returns how long to wait before answering it.
    pub fn failed(&self, ip: IpAddr, s: &LockoutSettings, now: Instant) -> Duration {
        crate::metrics::auth_failed();
        let mut map = self.map();
        if map.len() >= MAX_TRACKED && !map.contains_key(&ip) {
            let horizon = now.checked_sub(s.lockout).unwrap_or(now);
            map.retain(|_, e| e.last > horizon || e.locked_until.is_some_and(|u| u > now));
            if map.len() >= MAX_TRACKED {
                // Still full: the oldest tenth goes.
                let mut ages: Vec<Instant> = map.values().map(|e| e.last).collect();
                ages.sort();
                let cut = ages[ages.len() / 10];
                map.retain(|_, e| e.last > cut);
            }
        }
        let e = map.entry(ip).or_insert(Entry {
            failures: 0,
            last: now,
            locked_until: None,
        });
        let expired = e.locked_until.is_some_and(|u| u <= now);
        if expired || now.duration_since(e.last) > s.lockout {
            e.failures = 0;
            e.locked_until = None;
        }
        e.failures = e.failures.saturating_add(1);
        e.last = now;
        if s.lockout_after > 0 && e.failures >= s.lockout_after {
            if e.locked_until.is_none() {
                tracing::warn!(source = %ip, failures = e.failures, lockout_secs = s.lockout.as_secs(), "too many failed authentications: address locked out");
                crate::metrics::locked_out();
            }
            e.locked_until = Some(now + s.lockout);
        }
        if e.failures > s.delay_after {
            let steps = (e.failures - s.delay_after - 1).min(5);
            Duration::from_millis(100 << steps).min(Duration::from_secs(3))
        } else {
            Duration::ZERO
        }
    }

    /// A successful authentication clears the address.
    pub fn succeeded(&self, ip: IpAddr) {
        let mut map = self.map();
        if map.contains_key(&ip) {
            map.remove(&ip);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delay_then_lockout_then_recovery_per_address() {
        let s = LockoutSettings {
            delay_after: 2,
            lockout_after: 5,
            lockout: Duration::from_secs(60),
        };
        let l = Lockout::default();
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let t0 = Instant::now();
        assert_eq!(l.failed(a, &s, t0), Duration::ZERO);
        assert_eq!(l.failed(a, &s, t0), Duration::ZERO);
        assert_eq!(l.failed(a, &s, t0), Duration::from_millis(100));
        assert_eq!(l.failed(a, &s, t0), Duration::from_millis(200));
        assert!(l.check(a, t0).is_ok());
        l.failed(a, &s, t0);
        assert_eq!(
            l.check(a, t0 + Duration::from_secs(1)),
            Err(Duration::from_secs(59))
        );
        assert!(l.check(b, t0).is_ok(), "other addresses are not affected");
        // After the window: open again, and the count starts over.
        let later = t0 + Duration::from_secs(61);
        assert!(l.check(a, later).is_ok());
        assert_eq!(l.failed(a, &s, later), Duration::ZERO);
        // A success clears the count.
        l.failed(b, &s, t0);
        l.failed(b, &s, t0);
        l.succeeded(b);
        assert_eq!(l.failed(b, &s, t0), Duration::ZERO);
        let off = LockoutSettings {
            lockout_after: 0,
            ..s
        };
        for _ in 0..50 {
            l.failed(b, &off, t0);
        }
        assert!(l.check(b, t0).is_ok());
    }
}
