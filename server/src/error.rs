//! One error type for the whole API: a status and a JSON `{"error": …}`.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use zfvis_core::engine;

#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    /// The request id a server error was logged under, once it has been.
    logged: Option<String>,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
            logged: None,
        }
    }
    pub fn bad(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, message)
    }
    pub fn busy() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "the server is busy; retry in a second",
        )
    }
}

impl From<engine::Error> for ApiError {
    fn from(e: engine::Error) -> Self {
        match e {
            engine::Error::NotFound(m) => Self::not_found(m),
            engine::Error::BadInput(m) => Self::bad(m),
            engine::Error::Internal(e) => Self::internal(format!("{e:#}")),
        }
    }
}

impl From<zfvis_core::preprocess::ImageError> for ApiError {
    fn from(e: zfvis_core::preprocess::ImageError) -> Self {
        use zfvis_core::preprocess::ImageError as E;
        let status = match &e {
            E::TooLarge(..) => StatusCode::PAYLOAD_TOO_LARGE,
            E::StoreFull => StatusCode::INSUFFICIENT_STORAGE,
            // Logged with a request id by `into_response`.
            E::Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
            E::Empty => StatusCode::BAD_REQUEST,
            // Corrupt, truncated or unknown: refused before anything is stored.
            E::Format | E::Decode(_) => StatusCode::UNPROCESSABLE_ENTITY,
        };
        Self::new(status, e.to_string())
    }
}

impl From<zfvis_core::store::SetError> for ApiError {
    fn from(e: zfvis_core::store::SetError) -> Self {
        use zfvis_core::store::{SetError, StoreError};
        match e {
            SetError::Invalid(m) => Self::bad(m),
            SetError::Store(StoreError::Full) => {
                Self::new(StatusCode::INSUFFICIENT_STORAGE, e.to_string())
            }
            SetError::Store(StoreError::Io(io)) => {
                Self::internal(format!("cannot store the set: {io}"))
            }
        }
    }
}

impl ApiError {
    /// A server error's full text goes to the log under a new request id;
    /// None for errors whose message is for the client.
    fn logged_id(&self) -> Option<String> {
        if let Some(id) = &self.logged {
            return Some(id.clone());
        }
        let plain = self.status.is_server_error()
            && self.status != StatusCode::SERVICE_UNAVAILABLE
            && self.status != StatusCode::INSUFFICIENT_STORAGE;
        plain.then(|| {
            let id = format!("{:08x}", rand::random::<u32>());
            tracing::error!(request_id = %id, status = self.status.as_u16(), "{}", self.message);
            id
        })
    }

    fn internal_message(id: &str) -> String {
        format!("internal error; the server's log has the details under request id {id}")
    }

    /// Log a server error now (once), keeping its request id for every
    /// later answer of it (a failed job's progress and GET).
    pub fn logged(mut self) -> ApiError {
        self.logged = self.logged_id();
        self
    }

    /// The message a client may see: its own for a 4xx, a short one and
    /// the request id for a server error.
    pub fn public_message(&self) -> String {
        match self.logged_id() {
            Some(id) => Self::internal_message(&id),
            None => self.message.clone(),
        }
    }
}

impl IntoResponse for ApiError {
    /// A 4xx names what was wrong with the request (the client's own input).
    /// A server error (but 503 busy and 507 full, which say what to do)
    /// answers a short message and a request id; the full error goes to the
    /// log under that id, so nothing internal (paths, library messages)
    /// reaches a client.
    fn into_response(self) -> Response {
        let body = match self.logged_id() {
            Some(id) => serde_json::json!({
                "error": Self::internal_message(&id),
                "request_id": id,
            }),
            None => serde_json::json!({ "error": self.message }),
        };
        let mut res = (self.status, Json(body)).into_response();
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            res.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        res
    }
}
