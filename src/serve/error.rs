//! The errors a request can meet, each with its HTTP status and the body its client expects.
//!
//! | kind | status | when |
//! |---|---|---|
//! | `empty` | 400 | no input, or an empty string |
//! | `unauthorized` | 401 | an API key is set and the request's bearer token is missing or wrong |
//! | `not_found` | 404 | the request names a model this server does not hold |
//! | `payload_too_large` | 413 | the body is larger than `serve.payload_limit` |
//! | `validation` | 422 | a body that is not the route's JSON, more inputs than `serve.max_client_batch_size`, an input over the model's max length with `truncate: false`, an unsupported option |
//! | `backend` | 424 | the model failed on an input |
//! | `overloaded` | 429 | accepting the inputs would exceed `serve.max_concurrent_inputs` (answered at once) |
//! | `unhealthy` | 503 | the models are still loading, or the server is stopping |
//! | `timeout` | 504 | the request took longer than `serve.request_timeout` |
//!
//! Text-embeddings-inference routes answer `{"error": …, "error_type": …}` as TEI does; the
//! OpenAI-style routes (`/v1/…`) answer `{"error": {"message", "type", "param", "code"}}`, which
//! the OpenAI SDKs parse. TEI itself answers 413 where this table says 422 for a batch or an
//! input too large: here 413 is kept for the body size alone, so a client can tell "send less
//! bytes" from "send fewer or shorter inputs".

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

/// Which wire format an error body takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flavor {
    /// text-embeddings-inference: `{"error", "error_type"}`.
    Tei,
    /// OpenAI, Cohere and Jina style: `{"error": {"message", "type", "param", "code"}}`.
    OpenAi,
}

/// A request's failure: its kind (status and metric label) and a message naming no input text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub kind: Kind,
    pub message: String,
    /// The request field at fault, where there is one (OpenAI's `param`).
    pub param: Option<&'static str>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Empty,
    Unauthorized,
    NotFound,
    PayloadTooLarge,
    Validation,
    Backend,
    Overloaded,
    Unhealthy,
    Timeout,
}

impl Kind {
    pub fn status(self) -> StatusCode {
        match self {
            Kind::Empty => StatusCode::BAD_REQUEST,
            Kind::Unauthorized => StatusCode::UNAUTHORIZED,
            Kind::NotFound => StatusCode::NOT_FOUND,
            Kind::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Kind::Validation => StatusCode::UNPROCESSABLE_ENTITY,
            Kind::Backend => StatusCode::FAILED_DEPENDENCY,
            Kind::Overloaded => StatusCode::TOO_MANY_REQUESTS,
            Kind::Unhealthy => StatusCode::SERVICE_UNAVAILABLE,
            Kind::Timeout => StatusCode::GATEWAY_TIMEOUT,
        }
    }

    /// The `error_type` / `type` string and the metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Empty => "empty",
            Kind::Unauthorized => "unauthorized",
            Kind::NotFound => "not_found",
            Kind::PayloadTooLarge => "payload_too_large",
            Kind::Validation => "validation",
            Kind::Backend => "backend",
            Kind::Overloaded => "overloaded",
            Kind::Unhealthy => "unhealthy",
            Kind::Timeout => "timeout",
        }
    }
}

impl ApiError {
    pub fn new(kind: Kind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            param: None,
        }
    }

    pub fn validation(message: impl Into<String>) -> Self {
        Self::new(Kind::Validation, message)
    }

    /// The same error, blaming request field `param`.
    pub fn at(mut self, param: &'static str) -> Self {
        self.param = Some(param);
        self
    }

    /// The response in `flavor`'s wire format.
    pub fn into_response_as(self, flavor: Flavor) -> Response {
        let status = self.kind.status();
        let body = match flavor {
            Flavor::Tei => json!({"error": self.message, "error_type": self.kind.as_str()}),
            Flavor::OpenAi => json!({"error": {
                "message": self.message,
                "type": self.kind.as_str(),
                "param": self.param,
                "code": status.as_u16().to_string(),
            }}),
        };
        (status, Json(body)).into_response()
    }
}
