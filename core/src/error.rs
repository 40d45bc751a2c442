//! The one error type of the analyses: the input's fault (a 400), missing
//! (a 404) or ours (a 500).

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    BadInput(String),
    #[error("{0:#}")]
    Internal(#[from] anyhow::Error),
}

pub type Result<T> = std::result::Result<T, Error>;

pub fn bad(msg: impl Into<String>) -> Error {
    Error::BadInput(msg.into())
}

/// An error of the science code: the caller's input did not fit.
pub fn bad_input(e: anyhow::Error) -> Error {
    Error::BadInput(format!("{e:#}"))
}

impl From<serde_json::Error> for Error {
    fn from(e: serde_json::Error) -> Error {
        Error::Internal(e.into())
    }
}
