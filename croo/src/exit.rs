//! How a command fails: the message to print and the exit code (1 for the
//! user's mistakes, 2 for failures), mapped from the libraries' errors.

use std::io::IsTerminal;

use engine::{Class, Error};

use crate::render;

/// A failure to report, with its exit code.
pub struct Failure {
    pub code: u8,
    pub message: String,
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        let code = match e.class() {
            Class::User => 1,
            Class::Failure => 2,
        };
        let message = match &e {
            Error::Formula { file, diagnostics } => diagnostics
                .iter()
                .map(|d| render::diagnostic(file, d, color()))
                .collect::<Vec<_>>()
                .join("\n"),
            other => format!("error: {other}"),
        };
        Failure { code, message }
    }
}

impl From<api::Error> for Failure {
    fn from(e: api::Error) -> Self {
        Failure {
            code: if e.is_user_error() { 1 } else { 2 },
            message: format!("error: {e}"),
        }
    }
}

/// The user's mistake (exit code 1).
pub fn user(message: impl Into<String>) -> Failure {
    Failure {
        code: 1,
        message: format!("error: {}", message.into()),
    }
}

/// A failure of the system (exit code 2).
pub fn failure(message: impl Into<String>) -> Failure {
    Failure {
        code: 2,
        message: format!("error: {}", message.into()),
    }
}

/// Whether stderr takes colours (a terminal, and `NO_COLOR` unset).
pub fn color() -> bool {
    std::env::var_os("NO_COLOR").is_none() && std::io::stderr().is_terminal()
}
