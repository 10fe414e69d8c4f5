//! The append-only audit log: `audit.jsonl` in the results store, one JSON
//! object per line. Lines are only ever appended (one `write` of a whole
//! line on a file opened in append mode, under a lock), never rewritten.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

/// File name of the audit log inside the results store.
pub const AUDIT_FILE: &str = "audit.jsonl";

/// One audit record. Never holds a key, only its name.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AuditEvent {
    /// RFC 3339 time.
    pub time: String,
    /// `run.started`, `run.finished`, `run.failed`, `key.created`,
    /// `key.revoked`, or `auth.denied`: the denied requests (401, 403, 429,
    /// a key in a URL) of one address (and key) in one minute, `count` of
    /// them.
    pub event: String,
    /// Name of the key that acted, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// `METHOD /route`, for HTTP events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route: Option<String>,
    /// `ok`, `denied`, `succeeded`, `failed`, ...
    pub outcome: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// The client's address, for denials (counted per address and minute).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// How many requests the line stands for (denials are counted, not
    /// written one by one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u64>,
}

impl AuditEvent {
    pub fn new(event: &str, outcome: &str) -> Self {
        Self {
            time: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            event: event.to_string(),
            outcome: outcome.to_string(),
            ..Self::default()
        }
    }
}

/// The audit log of one results store.
#[derive(Debug)]
pub struct AuditLog {
    path: PathBuf,
    lock: Mutex<()>,
}

impl AuditLog {
    pub fn new(results: &Path) -> Self {
        Self {
            path: results.join(AUDIT_FILE),
            lock: Mutex::new(()),
        }
    }

    /// Appends one event. A failure to write is logged, not raised: the
    /// request it describes has already been answered.
    pub fn record(&self, event: &AuditEvent) {
        if let Err(e) = self.append(event) {
            tracing::error!(path = %self.path.display(), error = %e, "cannot write the audit log");
        }
    }

    /// Appends one event, reporting failure.
    pub fn append(&self, event: &AuditEvent) -> std::io::Result<()> {
        let mut line = serde_json::to_vec(event).map_err(std::io::Error::other)?;
        line.push(b'\n');
        let _guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(parent) = self.path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let mut f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        f.write_all(&line)?;
        f.sync_data()
    }

    /// The last `limit` events, oldest first. Lines that do not parse (a
    /// torn write after a crash) are skipped.
    pub fn read(&self, limit: usize) -> std::io::Result<Vec<AuditEvent>> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let all: Vec<AuditEvent> = text
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect();
        let skip = all.len().saturating_sub(limit);
        Ok(all.into_iter().skip(skip).collect())
    }
}
