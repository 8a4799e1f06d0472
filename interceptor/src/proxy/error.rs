//! Every way a proxied request can fail, classified by where it failed (the client's request, holding for a
//! cold start, the whole exchange, the backend, or the interceptor itself), and the HTTP answer each becomes.
//! Upstream-compatible statuses and bodies (Go's `http.Error`: the status text and a newline,
//! `text/plain; charset=utf-8`, `X-Content-Type-Options: nosniff`) where upstream defines them. The one place
//! that turns them into answers is the [`rescue`](super::rescue) layer; a held SSE request whose response head
//! is already sent (the keep-alive) gets the same failure as an SSE `error` event ([`sse_error`]) instead.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{CONNECTION, CONTENT_TYPE, HeaderValue, RETRY_AFTER, X_CONTENT_TYPE_OPTIONS};
use http::{Response, StatusCode};
use httpscale_core::gate::{Refusal, RefusalKind};
use httpscale_core::route::RouteKey;
use httpscale_core::target::TargetError;

use super::body::{BoxError, ProxyBody};
use super::pace::Overrun;
use crate::placeholder::BodyError;
use crate::routes::Unresolvable;

#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    // -- the client's request
    #[error("no route for host {host:?} and path {path:?}")]
    NoRoute { host: String, path: String },
    #[error("no route for model {model:?} on host {host:?} (GET /v1/models lists the models served)")]
    NoModelRoute { host: String, model: String },
    #[error(transparent)]
    Target(#[from] TargetError),
    #[error("CONNECT is not supported")]
    ConnectMethod,
    #[error("request body: {0}")]
    ClientBody(String),
    #[error("request body stalled for {0:?}")]
    BodyTimeout(Duration),
    #[error(transparent)]
    BodyTooSlow(Overrun),
    #[error(
        "the request body is larger than {limit} bytes, the most read to find the model it names (HTTPSCALE_MODEL_BODY_LIMIT)"
    )]
    BodyTooLarge { limit: usize },

    // -- holding for a cold start
    #[error("backend {upstream} not ready within {timeout:?}")]
    ReadinessTimeout { upstream: String, timeout: Duration },
    #[error("cold-start queue of route {route} is full ({max} requests held)")]
    HoldQueueFull { route: RouteKey, max: usize },
    #[error("interceptor is shutting down")]
    ShuttingDown,
    #[error("cannot resolve the route's upstream: {0}")]
    Unresolvable(#[from] Unresolvable),
    #[error("placeholder body: {0}")]
    PlaceholderBody(#[from] BodyError),
    /// The readiness source gave up on the backend (a program that crashed, or did not start in time).
    #[error("{}", .0.reason)]
    BackendRefused(Arc<Refusal>),

    // -- the whole exchange
    #[error("request deadline of {0:?} exceeded")]
    RequestTimeout(Duration),

    // -- the backend
    #[error("could not connect to {upstream}: {source}")]
    ConnectFailed { upstream: String, source: BoxError },
    #[error("no response headers from {upstream} within {timeout:?}")]
    ResponseHeaderTimeout { upstream: String, timeout: Duration },
    #[error("request body to {upstream} was partly sent before the connection failed")]
    BodyLost { upstream: String },
    #[error("TLS handshake with backend {upstream} failed: {cause}")]
    BackendTls { upstream: String, cause: String },
    #[error("backend {upstream} failed: {source}")]
    Upstream { upstream: String, source: BoxError },

    // -- the interceptor itself: never the client's fault
    #[error("internal error: {0}")]
    Internal(&'static str),
}

/// A client's body past a [`pace`](super::pace) bound: `408`.
impl From<Overrun> for ProxyError {
    fn from(overrun: Overrun) -> Self {
        match overrun {
            Overrun::Stalled(t) => Self::BodyTimeout(t),
            slow => Self::BodyTooSlow(slow),
        }
    }
}

/// How long an over-cap client is told to wait before retrying.
pub const RETRY_AFTER_SECS: u64 = 5;

impl ProxyError {
    pub fn status(&self) -> StatusCode {
        match self {
            Self::NoRoute { .. } | Self::NoModelRoute { .. } => StatusCode::NOT_FOUND,
            Self::Target(_) | Self::ClientBody(_) => StatusCode::BAD_REQUEST,
            Self::BodyTimeout(_) | Self::BodyTooSlow(_) => StatusCode::REQUEST_TIMEOUT,
            Self::ConnectMethod => StatusCode::METHOD_NOT_ALLOWED,
            Self::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::HoldQueueFull { .. } | Self::ShuttingDown => StatusCode::SERVICE_UNAVAILABLE,
            Self::ReadinessTimeout { .. }
            | Self::RequestTimeout(_)
            | Self::ConnectFailed { .. }
            | Self::ResponseHeaderTimeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            Self::Upstream { .. } | Self::BodyLost { .. } | Self::BackendTls { .. } => StatusCode::BAD_GATEWAY,
            Self::BackendRefused(r) => match r.kind {
                RefusalKind::Failed => StatusCode::BAD_GATEWAY,
                RefusalKind::TimedOut => StatusCode::GATEWAY_TIMEOUT,
            },
            Self::Unresolvable(_) | Self::PlaceholderBody(_) | Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Logs the failure, naming its cause.
    fn log(&self, route: Option<&RouteKey>) {
        let status = self.status();
        let route = route.map(ToString::to_string).unwrap_or_default();
        if status.is_server_error() {
            tracing::warn!(route, status = status.as_u16(), cause = %self, "request failed");
        } else {
            tracing::info!(route, status = status.as_u16(), cause = %self, "request refused");
        }
    }

    /// The answer the client gets, and a log line naming the cause.
    pub fn into_response(self, route: Option<&RouteKey>) -> Response<ProxyBody> {
        self.log(route);
        let status = self.status();
        let text = status.canonical_reason().unwrap_or("Error");
        if matches!(self, Self::BodyTooLarge { .. } | Self::NoModelRoute { .. }) {
            // Only inference requests meet these: answered as their clients read errors.
            let mut resp = Response::new(ProxyBody::full(error_json(status, &format!("{text}: {self}")).to_string()));
            *resp.status_mut() = status;
            resp.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            return resp;
        }
        // Upstream-defined errors keep upstream's exact body; our own say why.
        let body = match &self {
            Self::HoldQueueFull { .. }
            | Self::ShuttingDown
            | Self::ConnectMethod
            | Self::Target(_)
            | Self::ClientBody(_)
            | Self::BodyTimeout(_)
            | Self::BodyTooSlow(_)
            | Self::BackendRefused(_) => format!("{text}: {self}\n"),
            _ => format!("{text}\n"),
        };
        let mut resp = Response::new(ProxyBody::full(body));
        *resp.status_mut() = status;
        let h = resp.headers_mut();
        h.insert(CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
        h.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
        match self {
            Self::HoldQueueFull { .. } => {
                h.insert(RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
            }
            // The request body's state is unknown: the connection cannot carry another request.
            Self::ShuttingDown | Self::ClientBody(_) | Self::BodyTimeout(_) | Self::BodyTooSlow(_) => {
                h.insert(CONNECTION, HeaderValue::from_static("close"));
            }
            Self::ConnectMethod => {
                h.insert(http::header::ALLOW, HeaderValue::from_static("GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"));
            }
            _ => {}
        }
        resp
    }

    /// The failure as the last event of an SSE stream whose head is already sent, and a log line.
    pub fn into_sse_event(self, route: Option<&RouteKey>) -> Bytes {
        self.log(route);
        let status = self.status();
        sse_error(status, &format!("{}: {self}", status.canonical_reason().unwrap_or("Error")))
    }
}

/// An error as OpenAI's and Anthropic's clients read it (both take `error.message`):
/// `{"type": "error", "error": {"type", "message", "code"}}`.
fn error_json(status: StatusCode, message: &str) -> serde_json::Value {
    serde_json::json!({
        "type": "error",
        "error": {"type": "httpscale_error", "message": message, "code": status.as_u16()},
    })
}

/// An SSE `error` event both OpenAI's and Anthropic's clients raise as an API error: `event: error` and
/// the error as JSON data.
pub fn sse_error(status: StatusCode, message: &str) -> Bytes {
    Bytes::from(format!("event: error\ndata: {}\n\n", error_json(status, message)))
}

/// A failed request and the route it was for, as the route layer hands it to the rescue layer.
#[derive(Debug)]
pub struct Failure {
    pub error: ProxyError,
    pub route: Option<RouteKey>,
}

impl From<ProxyError> for Failure {
    fn from(error: ProxyError) -> Self {
        Self { error, route: None }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_internal_failure_is_a_500_not_the_clients_fault() {
        let resp = ProxyError::Internal("no route on the request").into_response(None);
        assert_eq!(resp.status(), StatusCode::INTERNAL_SERVER_ERROR);
    }

    #[tokio::test]
    async fn an_oversized_body_is_a_413_that_names_the_bound_and_the_setting() {
        let resp = ProxyError::BodyTooLarge { limit: 4096 }.into_response(None);
        assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(resp.headers()[CONTENT_TYPE], "application/json");
        let body: serde_json::Value = serde_json::from_str(&crate::proxy::testing::text(resp).await).unwrap();
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.starts_with("Payload Too Large: ") && message.contains("4096 bytes"), "{message}");
        assert!(message.contains("HTTPSCALE_MODEL_BODY_LIMIT"), "{message}");
    }

    #[test]
    fn a_failure_after_the_head_is_an_sse_error_event() {
        let event =
            ProxyError::ReadinessTimeout { upstream: "u".into(), timeout: Duration::from_secs(1) }.into_sse_event(None);
        let text = std::str::from_utf8(&event).unwrap();
        let data = text.strip_prefix("event: error\ndata: ").and_then(|d| d.strip_suffix("\n\n")).unwrap();
        let v: serde_json::Value = serde_json::from_str(data).unwrap();
        assert_eq!((v["type"].as_str(), v["error"]["code"].as_u64()), (Some("error"), Some(504)));
        assert!(v["error"]["message"].as_str().unwrap().starts_with("Gateway Timeout: backend u not ready"));
    }

    #[test]
    fn a_refusal_keeps_its_kind_and_reason() {
        let refused = |kind| ProxyError::BackendRefused(Arc::new(Refusal { kind, reason: "exited".into() }));
        assert_eq!(refused(RefusalKind::Failed).status(), StatusCode::BAD_GATEWAY);
        assert_eq!(refused(RefusalKind::TimedOut).status(), StatusCode::GATEWAY_TIMEOUT);
        assert_eq!(refused(RefusalKind::Failed).to_string(), "exited");
    }
}
