//! Every way a proxied request can fail, classified by where it failed, and the one place each becomes an
//! HTTP answer. Upstream-compatible statuses and bodies (Go's `http.Error`: the status text and a newline,
//! `text/plain; charset=utf-8`, `X-Content-Type-Options: nosniff`) where upstream defines them.

use std::time::Duration;

use http::header::{CONNECTION, CONTENT_TYPE, HeaderValue, RETRY_AFTER, X_CONTENT_TYPE_OPTIONS};
use http::{Response, StatusCode};

use super::body::ProxyBody;

#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    // -- the client's request
    #[error("no route for host {host:?} and path {path:?}")]
    NoRoute { host: String, path: String },
    #[error("request has no Host header or authority")]
    MissingHost,
    #[error("CONNECT is not supported")]
    ConnectMethod,

    // -- holding for a cold start
    #[error("backend {upstream} not ready within {timeout:?}")]
    ReadinessTimeout { upstream: String, timeout: Duration },
    #[error("cold-start queue of route {route} is full ({max} requests held)")]
    HoldQueueFull { route: String, max: usize },
    #[error("interceptor is shutting down")]
    ShuttingDown,
    #[error("cannot resolve the route's upstream: {0}")]
    Unresolvable(String),
    #[error("placeholder body: {0}")]
    PlaceholderBody(String),
    #[error("{0}")]
    BackendFailed(String),
    #[error("{0}")]
    BackendStartTimeout(String),

    // -- the whole exchange
    #[error("request deadline of {0:?} exceeded")]
    RequestTimeout(Duration),

    // -- the backend
    #[error("could not connect to {upstream}: {source}")]
    ConnectFailed { upstream: String, source: hyper_util::client::legacy::Error },
    #[error("no response headers from {upstream} within {timeout:?}")]
    ResponseHeaderTimeout { upstream: String, timeout: Duration },
    #[error("request body to {upstream} was partly sent before the connection failed")]
    BodyLost { upstream: String },
    #[error("backend {upstream} failed: {source}")]
    Upstream { upstream: String, source: hyper_util::client::legacy::Error },
}

/// How long an over-cap client is told to wait before retrying.
pub const RETRY_AFTER_SECS: u64 = 5;

impl ProxyError {
    pub fn status(&self) -> StatusCode {
        match self {
            Self::NoRoute { .. } => StatusCode::NOT_FOUND,
            Self::MissingHost => StatusCode::BAD_REQUEST,
            Self::ConnectMethod => StatusCode::METHOD_NOT_ALLOWED,
            Self::HoldQueueFull { .. } | Self::ShuttingDown => StatusCode::SERVICE_UNAVAILABLE,
            Self::ReadinessTimeout { .. }
            | Self::RequestTimeout(_)
            | Self::ConnectFailed { .. }
            | Self::ResponseHeaderTimeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            Self::Upstream { .. } | Self::BodyLost { .. } | Self::BackendFailed(_) => StatusCode::BAD_GATEWAY,
            Self::BackendStartTimeout(_) => StatusCode::GATEWAY_TIMEOUT,
            Self::Unresolvable(_) | Self::PlaceholderBody(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The answer the client gets, and a log line naming the cause.
    pub fn into_response(self, route: Option<&str>) -> Response<ProxyBody> {
        let status = self.status();
        if status.is_server_error() {
            tracing::warn!(route = route.unwrap_or(""), status = status.as_u16(), cause = %self, "request failed");
        } else {
            tracing::info!(route = route.unwrap_or(""), status = status.as_u16(), cause = %self, "request refused");
        }
        let text = status.canonical_reason().unwrap_or("Error");
        // Upstream-defined errors keep upstream's exact body; our own say why.
        let body = match &self {
            Self::HoldQueueFull { .. }
            | Self::ShuttingDown
            | Self::ConnectMethod
            | Self::MissingHost
            | Self::BackendFailed(_)
            | Self::BackendStartTimeout(_) => {
                format!("{text}: {self}\n")
            }
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
            Self::ShuttingDown => {
                h.insert(CONNECTION, HeaderValue::from_static("close"));
            }
            Self::ConnectMethod => {
                h.insert(http::header::ALLOW, HeaderValue::from_static("GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"));
            }
            _ => {}
        }
        resp
    }
}
