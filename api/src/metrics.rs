//! Prometheus metrics (`prometheus-client`, the Prometheus project's Rust
//! client): request counts and latencies per route, runs by outcome.

use std::sync::Mutex;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub method: String,
    pub route: String,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub method: String,
    pub route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RunLabels {
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ScheduleLabels {
    pub schedule: String,
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FormulaLabels {
    pub formula: String,
}

type Seconds = Gauge<f64, std::sync::atomic::AtomicU64>;

pub struct Metrics {
    registry: Mutex<Registry>,
    pub requests: Family<RequestLabels, Counter>,
    pub latency: Family<RouteLabels, Histogram>,
    pub runs: Family<RunLabels, Counter>,
    pub scheduled: Family<ScheduleLabels, Counter>,
    pub last_success: Family<FormulaLabels, Seconds>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("croo");
        let requests = Family::<RequestLabels, Counter>::default();
        let latency = Family::<RouteLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.0005, 2.0, 16))
        });
        let runs = Family::<RunLabels, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests by method, route and status",
            requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "HTTP request latency by method and route",
            latency.clone(),
        );
        registry.register(
            "runs",
            "Runs started over HTTP or by a schedule, by outcome",
            runs.clone(),
        );
        let scheduled = Family::<ScheduleLabels, Counter>::default();
        registry.register(
            "scheduled_runs",
            "Runs started by a schedule, by schedule and outcome",
            scheduled.clone(),
        );
        let last_success = Family::<FormulaLabels, Seconds>::default();
        registry.register(
            "last_success_timestamp_seconds",
            "When the last successful run of each formula ended (Unix time)",
            last_success.clone(),
        );
        Self {
            registry: Mutex::new(registry),
            requests,
            latency,
            runs,
            scheduled,
            last_success,
        }
    }
}

impl Metrics {
    /// The Prometheus text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        let registry = self.registry.lock().unwrap_or_else(|p| p.into_inner());
        if prometheus_client::encoding::text::encode(&mut out, &registry).is_err() {
            out.clear();
        }
        out
    }

    /// A scheduled run ended (or could not start).
    pub fn scheduled(&self, schedule: &str, outcome: &str) {
        self.scheduled
            .get_or_create(&ScheduleLabels {
                schedule: schedule.to_string(),
                outcome: outcome.to_string(),
            })
            .inc();
    }

    /// A run of `formula` succeeded now.
    pub fn succeeded(&self, formula: &str) {
        self.last_success
            .get_or_create(&FormulaLabels {
                formula: formula.to_string(),
            })
            .set(chrono::Utc::now().timestamp_millis() as f64 / 1000.0);
    }

    pub fn run_outcome(&self, outcome: &str) {
        self.runs
            .get_or_create(&RunLabels {
                outcome: outcome.to_string(),
            })
            .inc();
    }
}
