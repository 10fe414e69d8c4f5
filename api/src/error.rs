//! The crate's error ([`Error`]: a bad configuration or keys file, or
//! failed I/O), and every error answer of the HTTP API ([`ApiError`]: JSON
//! `{"error": {"code", "message"}}` with a stable code, never a stack
//! trace).

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// Why the server did not start, or a keys file could not be read or
/// written.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad input from the user: a configuration, a keys file, a key name
    /// (exit code 1).
    #[error("{0}")]
    Invalid(String),
    /// A file or socket failed (exit code 2).
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
}

impl Error {
    /// Whether the user can fix it (exit code 1), not the system (2).
    pub fn is_user_error(&self) -> bool {
        matches!(self, Error::Invalid(_))
    }
}

/// An error answer of the HTTP API.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

/// The body of every error response.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// Stable, machine-readable: `unauthorized`, `forbidden`, `not_found`,
    /// `bad_request`, `conflict`, `payload_too_large`, `timeout`,
    /// `unavailable`, `internal`.
    pub code: String,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    /// A file the server was given does not check (422).
    pub fn unprocessable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, "unprocessable", message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }

    /// An engine error: the user's (400) or the server's (500).
    pub fn from_engine(e: engine::Error) -> Self {
        match e.class() {
            engine::Class::User => Self::bad_request(e.to_string()),
            engine::Class::Failure => {
                tracing::error!(error = %e, "engine failure");
                Self::internal("the results store could not be read; see the server log")
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code.to_string(),
                message: self.message,
            },
        };
        (self.status, Json(body)).into_response()
    }
}

/// The JSON error for a bare status produced by a layer (timeout, body
/// limit, panic) or by routing (404, 405).
pub fn for_status(status: StatusCode) -> ApiError {
    let (code, message) = match status {
        StatusCode::NOT_FOUND => ("not_found", "no such route"),
        StatusCode::METHOD_NOT_ALLOWED => {
            ("method_not_allowed", "method not allowed on this route")
        }
        StatusCode::PAYLOAD_TOO_LARGE => ("payload_too_large", "request body too large"),
        StatusCode::URI_TOO_LONG => ("uri_too_long", "request URI too long"),
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE => (
            "headers_too_large",
            "request headers too large (at most 16 KiB and 100 fields)",
        ),
        StatusCode::TOO_MANY_REQUESTS => ("rate_limited", "too many requests; slow down"),
        StatusCode::REQUEST_TIMEOUT => ("timeout", "request timed out"),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => {
            ("unsupported_media_type", "expected application/json")
        }
        s if s.is_server_error() => ("internal", "internal error; see the server log"),
        _ => ("bad_request", "bad request"),
    };
    ApiError::new(status, code, message)
}
