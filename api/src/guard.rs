//! The server's guard against abuse: requests without a valid key cost
//! little and cannot slow the clients that have one.
//!
//! - Denied requests (401, 403, and keys put in a URL) are counted per
//!   source address and minute, and the audit log gets one line per
//!   address and minute with the counts ([`Guard::deny`], flushed when the
//!   minute is over), not one synced line per request: writing and syncing
//!   a line per 401 under a lock was what slowed authorised clients.
//! - An address that keeps being denied (more than `denied_per_second`,
//!   with a burst of `denied_burst`) is answered 429 after a pause of a
//!   second ([`TARPIT`]): a client that retries at once makes one request
//!   a second, and no thread of the server waits on it.
//! - Each key may make `key_per_second` requests a second (a burst of
//!   `key_burst`); past that, 429 with `Retry-After`.
//!
//! Quotas come from `croo serve`'s flags; the defaults are far above what
//! a dashboard or a scheduler asks (`docs/api.md`).

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::audit::{AuditEvent, AuditLog};

/// Request quotas.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Requests a second one key may make (sustained).
    pub key_per_second: u32,
    /// Requests one key may make at once.
    pub key_burst: u32,
    /// Denied requests a second one address may make before 429s.
    pub denied_per_second: u32,
    /// Denied requests one address may make at once.
    pub denied_burst: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            key_per_second: 10_000,
            key_burst: 20_000,
            denied_per_second: 10,
            denied_burst: 50,
        }
    }
}

/// Denials of one address in one minute, for one key (403) or none.
#[derive(Debug, Default, Clone)]
struct Counts {
    by_status: BTreeMap<u16, u64>,
    routes: BTreeMap<String, u64>,
    rate_limited: u64,
}

type Slot = (i64, IpAddr, Option<String>);

/// The guard (see the module documentation).
pub struct Guard {
    per_address: DefaultKeyedRateLimiter<IpAddr>,
    per_key: DefaultKeyedRateLimiter<String>,
    denials: Mutex<BTreeMap<Slot, Counts>>,
}

fn quota(per_second: u32, burst: u32) -> Quota {
    let one = NonZeroU32::MIN;
    Quota::per_second(NonZeroU32::new(per_second).unwrap_or(one))
        .allow_burst(NonZeroU32::new(burst).unwrap_or(one))
}

/// The current minute, as minutes since the epoch.
fn minute_now() -> i64 {
    chrono::Utc::now().timestamp().div_euclid(60)
}

/// How long a request over its address's denial quota waits before its
/// 429.
pub const TARPIT: Duration = Duration::from_secs(1);

/// What stands for the address of a request without one (in-process
/// tests).
pub const UNKNOWN_ADDRESS: IpAddr = IpAddr::V4(Ipv4Addr::UNSPECIFIED);

impl Guard {
    pub fn new(limits: Limits) -> Self {
        Guard {
            per_address: RateLimiter::keyed(quota(limits.denied_per_second, limits.denied_burst)),
            per_key: RateLimiter::keyed(quota(limits.key_per_second, limits.key_burst)),
            denials: Mutex::new(BTreeMap::new()),
        }
    }

    /// `None` when `key` may make a request now, else how long to wait.
    pub fn key_over(&self, key: &str) -> Option<Duration> {
        self.per_key
            .check_key(&key.to_string())
            .err()
            .map(|not_until| not_until.wait_time_from(DefaultClock::default().now()))
    }

    /// `None` when `address` may be denied once more now, else how long
    /// until it may.
    pub fn denied_over(&self, address: IpAddr) -> Option<Duration> {
        self.per_address
            .check_key(&address)
            .err()
            .map(|not_until| not_until.wait_time_from(DefaultClock::default().now()))
    }

    /// Counts a denied request (`status` 401, 403, 400 for a key in a URL,
    /// 429 when over the quota); writes the counts of minutes that are
    /// over to the audit log.
    pub fn deny(
        &self,
        address: IpAddr,
        key: Option<&str>,
        status: u16,
        route: &str,
        audit: &AuditLog,
    ) {
        let minute = minute_now();
        {
            let mut d = self.denials.lock().unwrap_or_else(|p| p.into_inner());
            let c = d
                .entry((minute, address, key.map(str::to_string)))
                .or_default();
            if status == 429 {
                c.rate_limited += 1;
            } else {
                *c.by_status.entry(status).or_default() += 1;
            }
            *c.routes.entry(route.to_string()).or_default() += 1;
        }
        self.flush(audit, Some(minute));
    }

    /// Writes the counts of minutes before `before` (every minute when
    /// `None`: at shutdown) to the audit log, one line per address, key and
    /// minute.
    pub fn flush(&self, audit: &AuditLog, before: Option<i64>) {
        let done: Vec<(Slot, Counts)> = {
            let mut d = self.denials.lock().unwrap_or_else(|p| p.into_inner());
            let keys: Vec<Slot> = d
                .keys()
                .filter(|(m, _, _)| before.is_none_or(|b| *m < b))
                .cloned()
                .collect();
            keys.into_iter()
                .filter_map(|k| d.remove(&k).map(|c| (k, c)))
                .collect()
        };
        for (slot, c) in &done {
            audit.record(&event_of(slot, c, false));
        }
        self.per_address.retain_recent();
        self.per_key.retain_recent();
    }

    /// The counts of the minute still running, as audit events marked
    /// `outcome: "denied (minute in progress)"`: what the audit route shows
    /// before the minute is over and written.
    pub fn pending(&self) -> Vec<AuditEvent> {
        let d = self.denials.lock().unwrap_or_else(|p| p.into_inner());
        d.iter().map(|(slot, c)| event_of(slot, c, true)).collect()
    }
}

/// The audit line of one address's (and key's) denials in one minute.
fn event_of((minute, address, key): &Slot, c: &Counts, pending: bool) -> AuditEvent {
    let total: u64 = c.by_status.values().sum::<u64>() + c.rate_limited;
    let outcome = if pending {
        "denied (minute in progress)"
    } else {
        "denied"
    };
    let mut ev = AuditEvent::new("auth.denied", outcome);
    ev.time = chrono::DateTime::from_timestamp(minute * 60, 0)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    ev.key = key.clone();
    ev.address = Some(address.to_string());
    ev.count = Some(total);
    // The single route, when all the minute's denials were on one.
    if c.routes.len() == 1 {
        ev.route = c.routes.keys().next().cloned();
    }
    // The single status likewise (429 when all were over the quota).
    ev.status = match (c.by_status.len(), c.rate_limited) {
        (1, 0) => c.by_status.keys().next().copied(),
        (0, n) if n > 0 => Some(429),
        _ => None,
    };
    ev.detail = Some(format!(
        "in the minute from {}: {}{}; routes: {}",
        ev.time,
        c.by_status
            .iter()
            .map(|(s, n)| format!("{n} x {s}"))
            .collect::<Vec<_>>()
            .join(", "),
        if c.rate_limited > 0 {
            format!(", {} x 429 (over the quota)", c.rate_limited)
        } else {
            String::new()
        },
        c.routes
            .iter()
            .map(|(r, n)| format!("{r} ({n})"))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    ev
}

/// Names of query parameters that would carry a key in a URL: refused
/// (keys in URLs end up in proxies' and browsers' logs).
const KEY_PARAMETERS: [&str; 6] = ["key", "token", "api_key", "apikey", "access_token", "auth"];

/// Whether a query string carries a key-like parameter.
pub fn key_in_query(query: Option<&str>) -> bool {
    query.is_some_and(|q| {
        q.split('&').any(|pair| {
            let name = pair.split('=').next().unwrap_or("").to_ascii_lowercase();
            let name = name.replace("%5f", "_");
            KEY_PARAMETERS.contains(&name.as_str())
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_in_urls_are_recognised() {
        for q in [
            "key=x",
            "a=1&token=x",
            "API_KEY=x",
            "access_token",
            "api%5Fkey=1",
            "auth=1",
        ] {
            assert!(key_in_query(Some(q)), "{q}");
        }
        for q in ["by=segment", "keys=1", "from=2026-01-01&to=2026-02-01"] {
            assert!(!key_in_query(Some(q)), "{q}");
        }
        assert!(!key_in_query(None));
    }

    #[test]
    fn denials_are_one_audit_line_per_address_and_minute() {
        let dir = tempfile::tempdir().unwrap();
        let audit = AuditLog::new(dir.path());
        let g = Guard::new(Limits::default());
        let a: IpAddr = "10.0.0.7".parse().unwrap();
        let b: IpAddr = "10.0.0.8".parse().unwrap();
        for _ in 0..500 {
            g.deny(a, None, 401, "GET /v1/formulas", &audit);
        }
        g.deny(b, Some("smb-lead"), 403, "GET /v1/audit", &audit);
        // Nothing is written while the minute runs (unless the minute
        // turned during the test: then one line per address so far).
        let written = audit.read(100).unwrap().len();
        assert!(written <= 2, "{written}");
        g.flush(&audit, None);
        let events = audit.read(100).unwrap();
        let total: u64 = events.iter().filter_map(|e| e.count).sum();
        assert_eq!(total, 501);
        assert!(events.len() <= 4, "{events:?}");
        let by_a: u64 = events
            .iter()
            .filter(|e| e.address.as_deref() == Some("10.0.0.7"))
            .filter_map(|e| e.count)
            .sum();
        assert_eq!(by_a, 500);
        assert!(events.iter().any(|e| e.key.as_deref() == Some("smb-lead")));
    }

    #[test]
    fn quotas_refuse_past_the_burst() {
        let g = Guard::new(Limits {
            key_per_second: 1,
            key_burst: 3,
            denied_per_second: 1,
            denied_burst: 2,
        });
        let a: IpAddr = "10.0.0.9".parse().unwrap();
        assert!(g.denied_over(a).is_none());
        assert!(g.denied_over(a).is_none());
        let wait = g
            .denied_over(a)
            .expect("the third denial is over the burst");
        assert!(wait <= Duration::from_secs(1), "{wait:?}");
        for _ in 0..3 {
            assert!(g.key_over("k").is_none());
        }
        assert!(g.key_over("k").is_some());
        assert!(g.key_over("other").is_none());
    }
}
