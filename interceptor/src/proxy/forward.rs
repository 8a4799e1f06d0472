//! Layer 5: forwarding. One pooled client per proxy thread (HTTP/1.1, and HTTP/2 cleartext for routes that
//! ask for it). Method, path, query, body and `Host` are preserved; the body streams both ways.
//!
//! A connect that fails (a pod that is ready but not yet accepting, a process still binding its port) is
//! retried every 50 ms, each attempt bounded by `KEDA_HTTP_CONNECT_TIMEOUT`, for up to a minute (or until the
//! request deadline); the request body is never lost to a failed connect. The response-header timeout
//! applies to each attempt. Upgrades (WebSocket) are tunnelled and stay counted until the tunnel closes.
//! With direct pod routing ([`crate::pods`]) each attempt goes to the least-loaded ready pod, and a pod that
//! refuses is skipped for another at once.

use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::uri::Authority;
use http::{Request, StatusCode, Uri, Version};
use httpscale_core::queue::InFlight;
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::time::Instant;
use tower::Service;

use super::body::{AttemptBody, Replayable};
use super::{BoxFuture, ClientAddr, ProxyBody, ProxyError, ProxyResponse, Routed, UseFallback, headers};
use crate::pods::PodRouter;

/// Connect retry cadence and budget (upstream: 50 ms, at most one minute without a request deadline).
const RETRY_INTERVAL: Duration = Duration::from_millis(50);
const RETRY_BUDGET: Duration = Duration::from_secs(60);

/// The forwarder of one proxy thread; cloning it per request costs one reference count.
#[derive(Clone)]
pub struct Forward(Arc<Clients>);

pub struct Clients {
    http1: Client<HttpConnector, AttemptBody>,
    h2c: Client<HttpConnector, AttemptBody>,
    /// Set with direct pod routing.
    pods: Option<Arc<PodRouter>>,
}

impl Forward {
    /// Builds the clients. Call once per proxy thread, inside its runtime.
    pub fn new(connect_timeout: Duration, max_idle_per_host: usize, pods: Option<Arc<PodRouter>>) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(connect_timeout));
        let http1 = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_max_idle_per_host(max_idle_per_host)
            .build(connector.clone());
        let h2c = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(90))
            .http2_only(true)
            .build(connector);
        Self(Arc::new(Clients { http1, h2c, pods }))
    }
}

impl Service<Request<Incoming>> for Forward {
    type Response = ProxyResponse;
    type Error = ProxyError;
    type Future = BoxFuture<Result<ProxyResponse, ProxyError>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Incoming>) -> Self::Future {
        Box::pin(forward(self.clone(), req))
    }
}

async fn forward(Forward(clients): Forward, mut req: Request<Incoming>) -> Result<ProxyResponse, ProxyError> {
    let Some(routed) = req.extensions_mut().remove::<Routed>() else {
        return Err(ProxyError::MissingHost);
    };
    let route = &routed.route;
    let upstream = match (req.extensions().get::<UseFallback>(), &route.fallback) {
        (Some(_), Some(fallback)) => fallback,
        _ => &route.upstream,
    };
    let upstream = upstream.as_ref().map_err(|reason| ProxyError::Unresolvable(reason.clone()))?;
    let client_ip = req.extensions().get::<ClientAddr>().map(|a| a.0.ip());
    let client_upgrade: Option<OnUpgrade> = headers::upgrade_of(req.headers()).map(|_| hyper::upgrade::on(&mut req));

    let client_version = req.version();
    let (parts, body) = req.into_parts();
    let mut headers = parts.headers;
    headers::prepare_request(&mut headers, client_ip, &routed.host, upstream.h2c);
    let version = if upstream.h2c { Version::HTTP_2 } else { Version::HTTP_11 };
    let client = if upstream.h2c { &clients.h2c } else { &clients.http1 };
    let body = Replayable::new(body);
    let pods = clients.pods.as_ref().zip(upstream.service.as_ref());
    let retry_until = Instant::now() + RETRY_BUDGET;
    // Pods that refused this request's connection, skipped until every ready pod has been tried.
    let mut tried: Vec<String> = Vec::new();

    let (mut resp, pod) = loop {
        let (authority, pod) = match pods.and_then(|(router, (svc, port))| router.pick(svc, port, &tried)) {
            Some((addr, guard)) => match addr.parse::<Authority>() {
                Ok(a) => (a, Some((addr, guard))),
                Err(_) => (upstream.authority.clone(), None),
            },
            None => (upstream.authority.clone(), None),
        };
        let name = || authority.to_string();
        let mut uri = Uri::builder().scheme("http").authority(authority.clone());
        if let Some(pq) = parts.uri.path_and_query() {
            uri = uri.path_and_query(pq.clone());
        }
        let uri = uri.build().map_err(|_| ProxyError::MissingHost)?;
        // Only a connect failure loops, and a failed connect never touches the body.
        let Some(attempt) = body.attempt() else {
            return Err(ProxyError::BodyLost { upstream: name() });
        };
        let mut out = Request::new(attempt);
        *out.method_mut() = parts.method.clone();
        *out.uri_mut() = uri;
        *out.version_mut() = version;
        *out.headers_mut() = headers.clone();
        let sent = client.request(out);
        let result = match route.response_header_timeout {
            None => sent.await,
            Some(timeout) => tokio::time::timeout(timeout, sent)
                .await
                .map_err(|_| ProxyError::ResponseHeaderTimeout { upstream: name(), timeout })?,
        };
        match result {
            Ok(resp) => break (resp, pod.and_then(|(_, g)| g)),
            Err(source) if source.is_connect() => {
                route.gate.nudge();
                if let Some((addr, _)) = pod {
                    // Another ready pod may take it at once.
                    tracing::debug!(pod = %addr, cause = %source, "pod refused the connection; trying another");
                    tried.push(addr);
                    if pods.is_some_and(|(router, (svc, port))| router.pick(svc, port, &tried).is_some()) {
                        continue;
                    }
                    tried.clear();
                }
                if Instant::now() + RETRY_INTERVAL >= retry_until {
                    return Err(ProxyError::ConnectFailed { upstream: name(), source });
                }
                tracing::debug!(upstream = %authority, cause = %source, "connect failed; retrying");
                tokio::time::sleep(RETRY_INTERVAL).await;
            }
            Err(source) => return Err(ProxyError::Upstream { upstream: name(), source }),
        }
    };

    if resp.status() == StatusCode::SWITCHING_PROTOCOLS
        && let Some(client_side) = client_upgrade
    {
        let upstream_side = hyper::upgrade::on(&mut resp);
        tokio::spawn(tunnel(client_side, upstream_side, route.counters.hold()));
    } else {
        headers::remove_hop_by_hop(resp.headers_mut());
    }
    // The client's protocol, not the backend's, decides how the answer is framed.
    *resp.version_mut() = client_version;
    let mut resp = resp.map(ProxyBody::upstream);
    if let Some(guard) = pod {
        resp.body_mut().keep(Box::new(guard));
    }
    Ok(resp)
}

/// Copies bytes both ways between an upgraded client and backend until either side closes.
async fn tunnel(client: OnUpgrade, upstream: OnUpgrade, _counted: InFlight) {
    let (client, upstream) = match tokio::try_join!(client, upstream) {
        Ok(pair) => pair,
        Err(e) => {
            tracing::warn!(cause = %e, "protocol upgrade failed");
            return;
        }
    };
    let (mut c, mut u) = (TokioIo::new(client), TokioIo::new(upstream));
    if let Err(e) = tokio::io::copy_bidirectional(&mut c, &mut u).await {
        tracing::debug!(cause = %e, "upgraded connection ended with an error");
    }
}
