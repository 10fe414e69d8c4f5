//! `croo serve`: the HTTP API and the dashboard over a results store.
//!
//! Reads come from the results store, seen by every data route through
//! the key's scope ([`view`]), and never recompute a score; runs started over HTTP execute in the background ([`runs`]). Data
//! routes need a bearer key ([`auth`], [`keys`]); denials, key changes and
//! runs go to the audit log ([`audit`]). The OpenAPI document is generated
//! from the handlers' annotations ([`routes`], utoipa). Nothing in the
//! workspace depends on this crate but the `croo` binary.

pub mod alerts;
pub mod audit;
pub mod auth;
pub mod config;
pub mod customers;
pub mod dashboard;
pub mod error;
pub mod experiments;
pub mod guard;
pub mod keys;
pub mod metrics;
pub mod routes;
pub mod runs;
pub mod schedules;
pub mod targets;
pub mod view;

pub use error::{ApiError, Error};

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::sensitive_headers::SetSensitiveRequestHeadersLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::{DefaultOnResponse, TraceLayer};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// Everything a request handler can reach.
pub struct AppState {
    pub store: view::store::Store,
    pub keys: auth::Keys,
    pub audit: Arc<audit::AuditLog>,
    pub metrics: metrics::Metrics,
    pub runs: runs::Runs,
    /// Session options of runs started over HTTP.
    pub session: engine::SessionOptions,
    /// Most periods one `POST .../runs` may compute.
    pub max_run_periods: usize,
    /// A request that takes longer gets 408.
    pub request_timeout: Duration,
    /// Quotas, and the counts of denied requests (`guard`).
    pub guard: guard::Guard,
}

/// How `croo serve` was asked to run.
#[derive(Debug, Clone)]
pub struct Config {
    pub results: PathBuf,
    pub formulas: Option<PathBuf>,
    /// `None` only with `insecure` (and then only on loopback).
    pub keys: Option<PathBuf>,
    pub bind: SocketAddr,
    pub insecure: bool,
    pub session: engine::SessionOptions,
    pub request_timeout: Duration,
    pub limits: guard::Limits,
    /// Formulas run at cron times (`schedules`).
    pub schedules: Vec<schedules::Schedule>,
    /// Rules evaluated on every published edition (`alerts`).
    pub alerts: Vec<alerts::Alert>,
}

/// Largest request body accepted (the only body is a run request).
pub const MAX_BODY: usize = 64 * 1024;
/// Longest request URI (path and query) accepted.
pub const MAX_URI: usize = 4096;
/// Most bytes of request headers (names and values) accepted, and most
/// header fields: past them, 431. (The HTTP library itself refuses past
/// 1 MiB of headers or 1000 fields, before croo sees the request.)
pub const MAX_HEADER_BYTES: usize = 16 * 1024;
pub const MAX_HEADERS: usize = 100;

#[derive(OpenApi)]
#[openapi(
    info(title = "croo", description = "Customer Return on Operations: scores, explanations and runs from the croo results store."),
    modifiers(&BearerAuth),
    tags((name = "scores"), (name = "formulas"), (name = "runs"), (name = "audit"), (name = "operations"))
)]
struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("an API key made with `croo keys add`"))
                    .build(),
            ),
        );
    }
}

/// The application: every route with its layers, and the OpenAPI document.
pub fn app(state: Arc<AppState>) -> Router {
    let timeout = state.request_timeout;
    let guarded = Arc::clone(&state);
    let (data, mut doc) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(routes::list_formulas))
        .routes(routes!(routes::get_formula))
        .routes(routes!(routes::scores))
        .routes(routes!(routes::period_scores))
        .routes(routes!(routes::editions))
        .routes(routes!(routes::explain))
        .routes(routes!(targets::status))
        .routes(routes!(customers::customers))
        .routes(routes!(customers::customer))
        .routes(routes!(experiments::experiments))
        .routes(routes!(experiments::experiment))
        .routes(routes!(routes::start_run))
        .routes(routes!(routes::list_runs))
        .routes(routes!(routes::get_run))
        .routes(routes!(routes::audit))
        .split_for_parts();
    let data = data.route_layer(middleware::from_fn_with_state(
        Arc::clone(&state),
        auth::require_key,
    ));
    let (public, public_doc) = OpenApiRouter::new()
        .routes(routes!(routes::healthz))
        .routes(routes!(routes::readyz))
        .routes(routes!(routes::metrics))
        .split_for_parts();
    doc.merge(public_doc);
    doc.info.version = env!("CARGO_PKG_VERSION").to_string();
    let doc = Arc::new(doc);

    Router::new()
        .merge(data)
        .merge(public)
        .route(
            "/openapi.json",
            axum::routing::get(move || {
                let doc = Arc::clone(&doc);
                async move { axum::Json(doc.as_ref().clone()) }
            }),
        )
        .merge(dashboard::routes())
        .fallback(|| async { error::for_status(StatusCode::NOT_FOUND) })
        .method_not_allowed_fallback(|| async { error::for_status(StatusCode::METHOD_NOT_ALLOWED) })
        .layer(middleware::from_fn_with_state(Arc::clone(&state), observe))
        .with_state(state)
        // Innermost first: each `.layer` wraps everything above it.
        .layer(RequestBodyLimitLayer::new(MAX_BODY))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            timeout,
        ))
        .layer(middleware::from_fn_with_state(guarded, json_errors))
        .layer(CatchPanicLayer::custom(|_| {
            error::for_status(StatusCode::INTERNAL_SERVER_ERROR).into_response()
        }))
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(
            TraceLayer::new_for_http()
                // The method and the path, never the query string (a key
                // put in a URL must not reach a log) nor any header.
                .make_span_with(|req: &Request| {
                    tracing::info_span!("request", method = %req.method(), path = %req.uri().path())
                })
                .on_response(DefaultOnResponse::new().level(tracing::Level::INFO)),
        )
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
        .layer(SetSensitiveRequestHeadersLayer::new([
            header::AUTHORIZATION,
        ]))
}

/// Bare error statuses from layers (timeout, body limit) become JSON
/// errors; over-long URIs and headers are refused, and so is a key put in
/// a URL (on every route, before anything reads or logs it).
async fn json_errors(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    if req.uri().to_string().len() > MAX_URI {
        return error::for_status(StatusCode::URI_TOO_LONG).into_response();
    }
    let header_bytes: usize = req
        .headers()
        .iter()
        .map(|(n, v)| n.as_str().len() + v.len())
        .sum();
    if header_bytes > MAX_HEADER_BYTES || req.headers().len() > MAX_HEADERS {
        return error::for_status(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE).into_response();
    }
    if guard::key_in_query(req.uri().query()) {
        let address = req
            .extensions()
            .get::<axum::extract::ConnectInfo<SocketAddr>>()
            .map_or(guard::UNKNOWN_ADDRESS, |c| c.0.ip());
        state.guard.deny(
            address,
            None,
            400,
            &format!("{} {}", req.method(), req.uri().path()),
            &state.audit,
        );
        return error::ApiError::bad_request(
            "a key goes in the Authorization header (Authorization: Bearer <key>), never in a URL: URLs end up in logs; revoke this key and make a new one",
        )
        .into_response();
    }
    let response = next.run(req).await;
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if (status.is_client_error() || status.is_server_error()) && !is_json {
        return error::for_status(status).into_response();
    }
    response
}

/// Counts requests and their latency per route (the matched route
/// template, not the raw path, so labels stay few).
async fn observe(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let method = req.method().to_string();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_string())
        .unwrap_or_else(|| "unmatched".into());
    let start = Instant::now();
    let response = next.run(req).await;
    let status = response.status().as_u16();
    state
        .metrics
        .requests
        .get_or_create(&metrics::RequestLabels {
            method: method.clone(),
            route: route.clone(),
            status,
        })
        .inc();
    state
        .metrics
        .latency
        .get_or_create(&metrics::RouteLabels { method, route })
        .observe(start.elapsed().as_secs_f64());
    response
}

/// Builds the state from a configuration, refusing to run without keys
/// unless `insecure` on loopback.
pub fn state(config: &Config) -> Result<Arc<AppState>, Error> {
    match (&config.keys, config.insecure) {
        (None, false) => {
            return Err(Error::Invalid(
                "no keys file: give --keys FILE (make keys with `croo keys add`), or --insecure to serve without keys on loopback".into(),
            ));
        }
        (None, true) if !config.bind.ip().is_loopback() => {
            return Err(Error::Invalid(format!(
                "--insecure serves without keys and only on loopback, not on {}",
                config.bind
            )));
        }
        (Some(k), _) => {
            let f = keys::KeysFile::read(k)?;
            if !k.exists() {
                return Err(Error::Invalid(format!(
                    "keys file {} does not exist; make one with `croo keys add --file {}`",
                    k.display(),
                    k.display()
                )));
            }
            if f.active().next().is_none() {
                tracing::warn!(file = %k.display(), "the keys file has no active key: every data request will get 401");
            }
        }
        _ => {}
    }
    if let Some(dir) = &config.formulas
        && !dir.is_dir()
    {
        return Err(Error::Invalid(format!(
            "--formulas {} is not a folder",
            dir.display()
        )));
    }
    // One name, one formula: a folder where two files claim one name is
    // refused at start (and, if it comes to that later, both are left out).
    if let Some(dir) = &config.formulas {
        let files = engine::folder::formula_files(dir).unwrap_or_default();
        let loaded: Vec<engine::Loaded> =
            files.iter().filter_map(|p| engine::load(p).ok()).collect();
        if let Some(clash) = engine::folder::clashes(&loaded).first() {
            return Err(Error::Invalid(format!(
                "--formulas {}: {clash}",
                dir.display()
            )));
        }
    }
    engine::leftovers::clean_store(&config.results);
    engine::leftovers::clean_temp();
    std::fs::create_dir_all(&config.results).map_err(|source| Error::Io {
        context: format!("creating {}", config.results.display()),
        source,
    })?;
    let audit = Arc::new(audit::AuditLog::new(&config.results));
    Ok(Arc::new(AppState {
        store: view::store::Store::new(
            config.results.clone(),
            config.formulas.clone(),
            Arc::clone(&audit),
        ),
        keys: auth::Keys::new(config.keys.clone()),
        audit,
        metrics: metrics::Metrics::default(),
        runs: runs::Runs::default(),
        session: config.session.clone(),
        max_run_periods: 120,
        request_timeout: config.request_timeout,
        guard: guard::Guard::new(config.limits),
    }))
}

/// Serves until SIGTERM or Ctrl-C, then finishes in-flight requests.
/// `ready` is told the bound address (useful with port 0).
///
/// The connections are served by hyper directly (not `axum::serve`) so
/// that its limits sit above croo's: headers up to 1 MiB and 1000 fields
/// reach the application, which answers past its own limits with a JSON
/// 431 like every other error; a client that sends its headers slower
/// than 10 s is dropped.
pub async fn serve(config: Config, ready: impl FnOnce(SocketAddr)) -> Result<(), Error> {
    use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
    use hyper_util::service::TowerToHyperService;

    let state = state(&config)?;
    let listener = tokio::net::TcpListener::bind(config.bind)
        .await
        .map_err(|source| Error::Io {
            context: format!("binding {}", config.bind),
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| Error::Io {
        context: "reading the bound address".into(),
        source,
    })?;
    ready(addr);
    tracing::info!(%addr, results = %config.results.display(), "serving");
    let app = app(Arc::clone(&state));
    let scheduled = schedules::spawn(&state, config.schedules.clone());
    let watcher = alerts::spawn(&state, config.alerts.clone());
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(10))
        .max_buf_size(1 << 20)
        .max_headers(1000);
    builder.http2().max_header_list_size(1 << 20);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown_signal());
    // Denials of the minute that is over go to the audit log even when no
    // new one comes to flush them.
    let flusher = {
        let state = Arc::clone(&state);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(15));
            loop {
                tick.tick().await;
                let minute = chrono::Utc::now().timestamp().div_euclid(60);
                state.guard.flush(&state.audit, Some(minute));
            }
        })
    };
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // Out of file descriptors and the like: wait, go on.
                        tracing::warn!(error = %e, "accepting a connection failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let svc = tower::ServiceExt::map_request(
                    app.clone(),
                    move |mut r: axum::http::Request<hyper::body::Incoming>| {
                        r.extensions_mut().insert(axum::extract::ConnectInfo(peer));
                        r
                    },
                );
                let conn = builder
                    .serve_connection_with_upgrades(TokioIo::new(stream), TowerToHyperService::new(svc))
                    .into_owned();
                let conn = graceful.watch(conn);
                tokio::spawn(async move {
                    let _ = conn.await;
                });
            }
            _ = &mut shutdown => break,
        }
    }
    drop(listener);
    // In-flight requests finish (bounded: a run started over HTTP goes on
    // in its own thread and is not waited for here).
    if tokio::time::timeout(
        config.request_timeout + Duration::from_secs(5),
        graceful.shutdown(),
    )
    .await
    .is_err()
    {
        tracing::warn!("some connections were still open at shutdown");
    }
    flusher.abort();
    for s in scheduled {
        s.abort();
    }
    if let Some(w) = watcher {
        w.abort();
    }
    state.guard.flush(&state.audit, None);
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutting down: finishing in-flight requests");
}
