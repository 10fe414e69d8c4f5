//! The engine's error type and how each error is classed.

use datafusion::error::DataFusionError;
use formulas::{Diagnostic, SourceFile};

/// Whether an error is the user's to fix or a failure of the system.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// Bad formula, bad arguments, missing data: exit code 1.
    User,
    /// I/O or engine failure: exit code 2.
    Failure,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The formula file has errors; the diagnostics say where.
    #[error("{} has {} error(s)", file.path, diagnostics.iter().filter(|d| d.is_error()).count())]
    Formula {
        file: Box<SourceFile>,
        diagnostics: Vec<Diagnostic>,
    },
    /// Bad input that is not a formula diagnostic (arguments, data).
    #[error("{0}")]
    User(String),
    #[error(transparent)]
    Connector(#[from] connectors::Error),
    /// DataFusion failed while planning or running.
    #[error("{context}: {error}")]
    Engine {
        context: String,
        #[source]
        error: Box<DataFusionError>,
    },
    #[error("{context}: {error}")]
    Io {
        context: String,
        #[source]
        error: std::io::Error,
    },
    /// Two runs want the same results store lock and the wait timed out.
    #[error("{0}")]
    Busy(String),
}

impl Error {
    pub fn class(&self) -> Class {
        match self {
            // A busy store is the operator's to resolve (wait, or raise
            // CROO_LOCK_TIMEOUT), not a fault of croo.
            Error::Formula { .. } | Error::User(_) | Error::Busy(_) => Class::User,
            Error::Connector(e) if e.is_user_error() => Class::User,
            Error::Engine { error, .. } if is_user_datafusion_error(error) => Class::User,
            _ => Class::Failure,
        }
    }

    pub fn engine(context: impl Into<String>) -> impl FnOnce(DataFusionError) -> Error {
        let context = context.into();
        move |error| Error::Engine {
            context,
            error: Box::new(error),
        }
    }

    pub fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
        let context = context.into();
        move |error| Error::Io { context, error }
    }
}

/// Planning and schema errors come from what the user wrote (a SQL feature
/// DataFusion does not implement included); execution
/// errors (I/O, resources) are failures. Arrow cast, parse and CSV/JSON
/// reader errors come from the data. The whole chain of causes is looked
/// at: a reader's error reaches the plan wrapped (in a stream, an `Arc`, a
/// context).
fn is_user_datafusion_error(e: &DataFusionError) -> bool {
    use datafusion::arrow::error::ArrowError;
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cause {
        if let Some(
            DataFusionError::Plan(_)
            | DataFusionError::SchemaError(..)
            | DataFusionError::SQL(..)
            | DataFusionError::NotImplemented(_),
        ) = err.downcast_ref::<DataFusionError>()
        {
            return true;
        }
        if let Some(
            ArrowError::CastError(_)
            | ArrowError::ParseError(_)
            | ArrowError::CsvError(_)
            | ArrowError::JsonError(_),
        ) = err.downcast_ref::<ArrowError>()
        {
            return true;
        }
        cause = err.source();
    }
    false
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
