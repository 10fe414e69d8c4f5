//! Authentication (bearer keys), roles and scopes.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use axum::extract::{MatchedPath, Request, State};
use axum::http::header::AUTHORIZATION;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use engine::ResultRow;

use crate::AppState;
use crate::error::ApiError;
use crate::keys::{KeysFile, Role, Scope};

/// Who is asking: the key's name, role and scope.
#[derive(Debug, Clone)]
pub struct Principal {
    pub name: String,
    pub role: Role,
    pub scope: Scope,
}

impl Principal {
    /// 403 unless the key has at least `role`.
    pub fn require(&self, role: Role) -> Result<(), ApiError> {
        if self.role >= role {
            Ok(())
        } else {
            Err(ApiError::forbidden(format!(
                "this route needs the {role} role; key `{}` is a {}",
                self.name, self.role
            )))
        }
    }

    pub fn is_scoped(&self) -> bool {
        !self.scope.is_empty()
    }

    fn describe_scope(&self) -> String {
        crate::keys::describe_scope(&self.scope)
    }

    /// Checks a request for rows grouped `by` a dimension (`None`: the whole
    /// population). A scoped key may only ask for a dimension of its scope.
    pub fn check_by(&self, by: Option<&str>) -> Result<(), ApiError> {
        if !self.is_scoped() {
            return Ok(());
        }
        match by {
            Some(d) if self.scope.contains_key(d) => Ok(()),
            _ => Err(ApiError::forbidden(format!(
                "key `{}` may only see {}; ask with by={}",
                self.name,
                self.describe_scope(),
                self.scope.keys().next().map(String::as_str).unwrap_or("")
            ))),
        }
    }

    /// Whether a result row is visible to this key.
    pub fn sees(&self, r: &ResultRow) -> bool {
        if !self.is_scoped() {
            return true;
        }
        match (&r.dimension, &r.value) {
            (Some(d), Some(v)) => self.scope.get(d).is_some_and(|vs| vs.contains(v)),
            _ => false,
        }
    }

    /// Whether a customer is visible to this key, given its value of each
    /// dimension in the period: in a group of the key's scope.
    pub fn sees_customer(&self, value_of: &dyn Fn(&str) -> Option<String>) -> bool {
        !self.is_scoped() || engine::customers::sees(&self.scope, value_of)
    }

    /// The scope pages of customers are filtered by (`None`: every
    /// customer).
    pub fn customer_scope(&self) -> Option<&crate::keys::Scope> {
        self.is_scoped().then_some(&self.scope)
    }

    /// Checks that a key may see the group `dimension=value`.
    pub fn check_group(&self, dimension: &str, value: &str) -> Result<(), ApiError> {
        if !self.is_scoped()
            || self
                .scope
                .get(dimension)
                .is_some_and(|vs| vs.iter().any(|v| v == value))
        {
            Ok(())
        } else {
            Err(ApiError::forbidden(format!(
                "key `{}` may only see {}",
                self.name,
                self.describe_scope()
            )))
        }
    }

    /// The only group a scoped key sees, when it sees exactly one.
    pub fn single_group(&self) -> Option<(String, String)> {
        let mut it = self
            .scope
            .iter()
            .flat_map(|(d, vs)| vs.iter().map(move |v| (d.clone(), v.clone())));
        let first = it.next()?;
        it.next().is_none().then_some(first)
    }
}

/// What tells that a file changed: its size, modification time and, on
/// Unix, inode and status-change time (which no tool can set back, so a
/// rewrite that restores the modification time is still noticed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileStamp {
    len: u64,
    modified: Option<SystemTime>,
    inode: u64,
    changed: (i64, i64),
}

impl FileStamp {
    pub fn of(path: &std::path::Path) -> Option<FileStamp> {
        let m = std::fs::metadata(path).ok()?;
        #[cfg(unix)]
        let (inode, changed) = {
            use std::os::unix::fs::MetadataExt;
            (m.ino(), (m.ctime(), m.ctime_nsec()))
        };
        #[cfg(not(unix))]
        let (inode, changed) = (0, (0, 0));
        Some(FileStamp {
            len: m.len(),
            modified: m.modified().ok(),
            inode,
            changed,
        })
    }
}

/// The keys file, re-read when it changes (so a revoked key stops working
/// without a restart).
pub struct Keys {
    path: Option<PathBuf>,
    cache: Mutex<Option<(Option<FileStamp>, Arc<KeysFile>)>>,
}

impl Keys {
    pub fn new(path: Option<PathBuf>) -> Self {
        Self {
            path,
            cache: Mutex::new(None),
        }
    }

    /// Whether the server runs without keys (insecure, loopback only).
    pub fn is_open(&self) -> bool {
        self.path.is_none()
    }

    pub fn file(&self) -> Result<Arc<KeysFile>, ApiError> {
        let Some(path) = &self.path else {
            return Ok(Arc::new(KeysFile::default()));
        };
        let m = FileStamp::of(path);
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((seen, f)) = &*cache
            && *seen == m
        {
            return Ok(Arc::clone(f));
        }
        let f = Arc::new(KeysFile::read(path).map_err(|e| {
            tracing::error!(error = %e, "cannot read the keys file");
            ApiError::internal("the keys file cannot be read; see the server log")
        })?);
        *cache = Some((m, Arc::clone(&f)));
        Ok(f)
    }
}

fn route_of(req: &Request) -> String {
    let path = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_string())
        .unwrap_or_else(|| req.uri().path().to_string());
    format!("{} {path}", req.method())
}

/// The client's address (from the connection; unknown in-process).
fn address_of(req: &Request) -> std::net::IpAddr {
    req.extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map_or(crate::guard::UNKNOWN_ADDRESS, |c| c.0.ip())
}

/// A 429 answer that says when to come back.
fn too_many(wait: std::time::Duration, message: &str) -> Response {
    let mut r = ApiError::new(
        axum::http::StatusCode::TOO_MANY_REQUESTS,
        "rate_limited",
        message,
    )
    .into_response();
    let secs = wait.as_secs_f64().ceil().max(1.0) as u64;
    if let Ok(v) = axum::http::HeaderValue::from_str(&secs.to_string()) {
        r.headers_mut().insert(axum::http::header::RETRY_AFTER, v);
    }
    r
}

/// Middleware on every data route: a valid bearer key or 401, within the
/// key's quota or 429. Denials are counted per address and minute in the
/// audit log (`guard`); an address denied too often is slowed, then 429.
pub async fn require_key(
    State(state): State<Arc<AppState>>,
    mut req: Request,
    next: Next,
) -> Response {
    let route = route_of(&req);
    let address = address_of(&req);
    let principal = if state.keys.is_open() {
        Ok(Principal {
            name: "insecure".into(),
            role: Role::Admin,
            scope: Scope::new(),
        })
    } else {
        let presented = req
            .headers()
            .get(AUTHORIZATION)
            .and_then(|h| h.to_str().ok())
            .and_then(|h| {
                // The scheme is case-insensitive (RFC 9110).
                let (scheme, key) = h.split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then_some(key.trim())
            });
        match presented {
            None => Err(ApiError::unauthorized(
                "this route needs a key: Authorization: Bearer <key>",
            )),
            Some(k) => match state.keys.file() {
                Err(e) => return e.into_response(),
                Ok(file) => file
                    .verify(k)
                    .map(|r| Principal {
                        name: r.name.clone(),
                        role: r.role,
                        scope: r.scope.clone(),
                    })
                    .ok_or_else(|| ApiError::unauthorized("unknown or revoked key")),
            },
        }
    };
    let principal = match principal {
        Ok(p) => p,
        Err(e) => {
            if let Some(wait) = state.guard.denied_over(address) {
                // Slow down a client that keeps being denied: it waits a
                // second (no thread does), then hears 429; a client that
                // retries at once makes one request a second.
                tokio::time::sleep(crate::guard::TARPIT).await;
                state.guard.deny(address, None, 429, &route, &state.audit);
                return too_many(
                    wait,
                    "too many requests without a valid key from this address",
                );
            }
            state.guard.deny(address, None, 401, &route, &state.audit);
            return e.into_response();
        }
    };
    if let Some(wait) = state.guard.key_over(&principal.name) {
        state
            .guard
            .deny(address, Some(&principal.name), 429, &route, &state.audit);
        return too_many(wait, "this key made too many requests; slow down");
    }
    req.extensions_mut().insert(principal.clone());
    let response = next.run(req).await;
    if response.status() == axum::http::StatusCode::FORBIDDEN {
        state
            .guard
            .deny(address, Some(&principal.name), 403, &route, &state.audit);
    }
    response
}
