//! The metrics listener when `--metrics-secure` or `--metrics-auth` is on (upstream's chart turns both on):
//! HTTPS with the certificate of [`crate::metrics_tls`], and every request checked by
//! [`crate::metrics_auth`] before it is answered. Connections stay within the listener's budget and time
//! limits, as on every other listener; a TLS handshake has 10 s.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use http::header::{CONTENT_TYPE, HeaderValue};
use http::{Request, Response, StatusCode};
use httpscale_core::Shutdown;
use httpscale_core::admin::{self, AdminBody};
use httpscale_core::listener::conn::{ConnState, Guarded, GuardedBody};
use httpscale_core::listener::gate::{Gatekeeper, Permit, Protocol};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use rustls::ServerConfig;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

use crate::metrics::Metrics;
use crate::metrics_auth::MetricsAuth;

const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// What the metrics listener serves and how.
pub struct Secured {
    pub tls: Option<Arc<ServerConfig>>,
    pub auth: Option<MetricsAuth>,
    pub metrics: Arc<Metrics>,
}

/// Serves `/metrics` on `listener` until `stop` fires.
pub async fn serve(listener: TcpListener, gate: Arc<Gatekeeper>, secured: Secured, stop: Shutdown) {
    let secured = Arc::new(secured);
    let tls = secured.tls.clone().map(TlsAcceptor::from);
    loop {
        let (stream, peer, permit) = tokio::select! {
            accepted = gate.accept(&listener) => accepted,
            _ = stop.triggered() => return,
        };
        let (secured, tls, stop, gate) = (secured.clone(), tls.clone(), stop.clone(), gate.clone());
        tokio::spawn(async move {
            let start = tokio::time::Instant::now();
            match tls {
                Some(acceptor) => {
                    let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => tls,
                        Ok(Err(e)) => return tracing::debug!(%peer, cause = %e, "metrics TLS handshake failed"),
                        Err(_) => return tracing::debug!(%peer, "metrics TLS handshake timed out"),
                    };
                    let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
                    let protocol = if h2 { Protocol::Http2 } else { Protocol::Http1 };
                    connection(tls, permit, protocol, start, secured, stop).await;
                }
                None => {
                    let Some(protocol) = gate.protocol(&stream).await else { return };
                    connection::<TcpStream>(stream, permit, protocol, start, secured, stop).await;
                }
            }
        });
    }
}

async fn connection<S>(
    stream: S,
    permit: Permit,
    protocol: Protocol,
    start: tokio::time::Instant,
    secured: Arc<Secured>,
    stop: Shutdown,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let state = ConnState::new(permit, protocol, start);
    let io = TokioIo::new(Guarded::new(stream, state.clone()));
    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
        let (guard, secured) = (state.begin(), secured.clone());
        async move { Ok::<_, Infallible>(answer(&secured, &req).await.map(|b| GuardedBody::new(b, Some(guard)))) }
    });
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).header_read_timeout(None);
    tokio::select! {
        _ = builder.serve_connection(io, service) => {}
        _ = stop.triggered() => {}
    }
}

/// Host checked, then the caller (as controller-runtime, before the path is looked at), then `/metrics`.
async fn answer(secured: &Secured, req: &Request<Incoming>) -> Response<AdminBody> {
    if let Err(e) = httpscale_core::target::request_host(req.version(), req.uri(), req.headers()) {
        tracing::info!(cause = %e, "metrics request refused");
        return admin::text(StatusCode::BAD_REQUEST, "Bad Request: invalid Host\n");
    }
    let path = req.uri().path();
    if let Some(auth) = &secured.auth
        && let Err(refusal) = auth.check(req.method(), path, req.headers()).await
    {
        refusal.log(path);
        let (status, text) = refusal.answer();
        let mut r = Response::new(admin::full(format!("{text}\n")));
        *r.status_mut() = status;
        r.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
        return r;
    }
    match path {
        "/metrics" => admin::metrics(req.headers(), secured.metrics.encode()),
        _ => admin::text(StatusCode::NOT_FOUND, "Not Found\n"),
    }
}
