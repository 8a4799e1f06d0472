//! The forward layer (innermost): one set of pooled clients per proxy thread: plain HTTP/1.1 on our own
//! pool ([`pool`]), over our own exchange for a request without a body or an upgrade ([`h1`]) and hyper's
//! client connection otherwise; HTTP/2 cleartext for routes that ask for it and https (ALPN `h2` then
//! `http/1.1`) on hyper-util's client. Method, path, query, body and `Host` are preserved; the body streams
//! both ways.
//!
//! https ([`Scheme`]): a standalone route's `https://` upstream, or a Kubernetes route's request that arrived
//! on the TLS listener. The certificate is checked for the upstream's host (the Service name, also when
//! direct pod routing connects to a pod address: the name travels to the connector in a task-local). A
//! failed TLS handshake is not retried like a refused connect: it is answered at once with `502`.
//!
//! States of an exchange: *connecting* (a connect that fails, say a pod that is ready but not yet accepting
//! or a process still binding its port, is retried every 50 ms, each attempt bounded by
//! `KEDA_HTTP_CONNECT_TIMEOUT`, for up to a minute or until the request deadline; the request body is never
//! lost to a failed connect), *waiting for headers* (bounded by the response-header timeout, per attempt),
//! then *streaming* or *tunnelled* (an upgrade, such as a WebSocket, stays counted until the tunnel closes).
//! With direct pod routing ([`PodRouter`]) each attempt goes to the least-loaded ready pod, and a pod that
//! refuses is skipped for another at once. A failure the client's own request body caused (a framing error,
//! a body cut short, stalled past `HTTPSCALE_BODY_TIMEOUT` or slower than `HTTPSCALE_BODY_MIN_RATE`) is the
//! client's: `400` or `408`, never `502`.

use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::request::Parts;
use http::uri::Authority;
use http::{HeaderMap, Method, Request, StatusCode, Uri, Version};
use http_body::Body;
use httpscale_core::queue::InFlight;
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::time::Instant;
use tower::Service;

use super::body::{AttemptBody, BoxError, ClientFault, ProxyBody, Replayable};
use super::error::ProxyError;
use super::forwarded::TrustedProxies;
use super::headers;
use super::pace::BodyLimits;
use super::types::{ArrivedOverTls, BoxFuture, ClientAddr, ProxyResponse, Routed, UseFallback};
use crate::cluster::pods::{PodGuard, PodRouter};
use crate::routes::{RouteState, Scheme, Upstream};

mod h1;
mod pool;
mod sni;

pub use pool::{SendError, Unsent};

/// Connect retry cadence and budget (upstream: 50 ms, at most one minute without a request deadline).
const RETRY_INTERVAL: Duration = Duration::from_millis(50);
const RETRY_BUDGET: Duration = Duration::from_secs(60);

/// A request body the forwarder can send (hyper's `Incoming` in the server).
pub trait RequestBody: Body<Data = Bytes, Error: Into<BoxError>> + Send + Unpin + 'static {}

impl<T> RequestBody for T where T: Body<Data = Bytes, Error: Into<BoxError>> + Send + Unpin + 'static {}

/// The forwarder of one proxy thread, for request bodies `B`; cloning it per request costs one reference
/// count.
pub struct Forward<B = Incoming>(Arc<Clients<B>>);

impl<B> Clone for Forward<B> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

pub struct Clients<B> {
    /// Our own connections, for plain HTTP/1.1 requests without a body or an upgrade.
    own: Arc<pool::Pool<h1::Conn>>,
    http1: Arc<pool::Http1Pool<AttemptBody<B>>>,
    h2c: Client<HttpConnector, AttemptBody<B>>,
    https: Client<HttpsConnector<HttpConnector>, AttemptBody<B>>,
    /// Set with direct pod routing.
    pods: Option<Arc<PodRouter>>,
    body: BodyLimits,
    trusted: TrustedProxies,
}

/// How the forwarder connects and what it believes.
#[derive(Debug, Clone)]
pub struct ForwardSettings {
    /// Bound of one connect attempt (`KEDA_HTTP_CONNECT_TIMEOUT`).
    pub connect_timeout: Duration,
    pub max_idle_per_host: usize,
    /// How long the client may take over its request body while it is sent (`HTTPSCALE_BODY_TIMEOUT`,
    /// `HTTPSCALE_BODY_MIN_RATE`).
    pub body: BodyLimits,
    /// Peers whose forwarded headers are believed (`HTTPSCALE_TRUSTED_PROXIES`).
    pub trusted: TrustedProxies,
    /// How https backends are reached: the policy, what is trusted, ALPN.
    pub tls: Arc<rustls::ClientConfig>,
}

impl<B: RequestBody> Forward<B> {
    /// Builds the clients. Call once per proxy thread, inside its runtime.
    pub fn new(settings: ForwardSettings, pods: Option<Arc<PodRouter>>) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(settings.connect_timeout));
        let own = pool::Pool::new(settings.connect_timeout, settings.max_idle_per_host);
        let http1 = pool::Http1Pool::new(settings.connect_timeout, settings.max_idle_per_host);
        let h2c = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .pool_idle_timeout(pool::IDLE_TIMEOUT)
            .http2_only(true)
            .build(connector.clone());
        let https = https_client(connector, settings.tls, settings.max_idle_per_host);
        let (body, trusted) = (settings.body, settings.trusted);
        Self(Arc::new(Clients { own, http1, h2c, https, pods, body, trusted }))
    }
}

/// The https client: `tls`, SNI from [`sni`], ALPN `h2` then `http/1.1`.
fn https_client<B: RequestBody>(
    mut connector: HttpConnector,
    tls: Arc<rustls::ClientConfig>,
    max_idle_per_host: usize,
) -> Client<HttpsConnector<HttpConnector>, AttemptBody<B>> {
    connector.enforce_http(false);
    // The builder sets ALPN itself (`h2`, `http/1.1`) and insists on finding it empty.
    let mut config = (*tls).clone();
    config.alpn_protocols.clear();
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(config)
        .https_or_http()
        .with_server_name_resolver(sni::TaskLocal)
        .enable_all_versions()
        .wrap_connector(connector);
    Client::builder(TokioExecutor::new())
        .pool_timer(TokioTimer::new())
        .timer(TokioTimer::new())
        .pool_idle_timeout(pool::IDLE_TIMEOUT)
        .pool_max_idle_per_host(max_idle_per_host)
        .build(connector)
}

impl<B> Clients<B> {
    /// Whether `upstream` is reached over TLS for a request that arrived over TLS or not.
    fn https(upstream: &Upstream, arrived_over_tls: bool) -> bool {
        match upstream.scheme {
            Scheme::Http => false,
            Scheme::Https => true,
            Scheme::AsListener => arrived_over_tls,
        }
    }
}

impl<B: RequestBody> Service<Request<B>> for Forward<B> {
    type Response = ProxyResponse;
    type Error = ProxyError;
    type Future = BoxFuture<Result<ProxyResponse, ProxyError>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        Box::pin(forward(self.clone(), req))
    }
}

/// One request's way to its upstream, built once and reused by every attempt.
struct Exchange<'a, B> {
    clients: &'a Clients<B>,
    route: &'a RouteState,
    upstream: &'a Upstream,
    https: bool,
    /// Over our own HTTP/1.1 exchange ([`h1`]): plain, no body, no upgrade.
    own: bool,
    parts: Parts,
    /// Moved into the request over our own pool, which hands an unsent request back; cloned otherwise.
    headers: Option<HeaderMap>,
    body: Replayable<B>,
}

async fn forward<B: RequestBody>(
    Forward(clients): Forward<B>,
    mut req: Request<B>,
) -> Result<ProxyResponse, ProxyError> {
    // The route layer always sets it; its absence is our bug, not the client's.
    let Some(routed) = req.extensions_mut().remove::<Routed>() else {
        return Err(ProxyError::Internal("the request reached the forwarder without a route"));
    };
    let route = &routed.route;
    let upstream = match (req.extensions().get::<UseFallback>(), &route.fallback) {
        (Some(_), Some(fallback)) => fallback,
        _ => &route.upstream,
    };
    let upstream = upstream.as_ref().map_err(|e| ProxyError::Unresolvable(e.clone()))?;
    let client_ip = req.extensions().get::<ClientAddr>().map(|a| a.0.ip());
    let over_tls = req.extensions().get::<ArrivedOverTls>().is_some();
    let https = Clients::<B>::https(upstream, over_tls);
    let client_upgrade: Option<OnUpgrade> = headers::upgrade_of(req.headers()).map(|_| hyper::upgrade::on(&mut req));
    let client_version = req.version();
    let (mut parts, body) = req.into_parts();
    let mut headers = std::mem::take(&mut parts.headers);
    let trusted = clients.trusted.trusts(client_ip);
    let h2c = upstream.h2c && !https;
    headers::prepare_request(&mut headers, client_ip, &routed.host, h2c, trusted, over_tls);
    let body = Replayable::new(body, clients.body);
    let own = !https && !h2c && body.is_empty() && client_upgrade.is_none() && parts.method != Method::CONNECT;
    let mut exchange = Exchange { clients: &clients, route, upstream, https, own, parts, headers: Some(headers), body };
    let sent = exchange.send_with_connect_retry().await;
    let (mut resp, pod) = sent.map_err(|e| exchange.blame(e))?;

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
    if let Some(guard) = pod {
        resp.body_mut().keep(Box::new(guard));
    }
    Ok(resp)
}

impl<B: RequestBody> Exchange<'_, B> {
    /// A failure the client's own request body caused is the client's, whatever the upstream client says.
    fn blame(&self, error: ProxyError) -> ProxyError {
        match self.body.client_fault() {
            Some(ClientFault::Slow(overrun)) => overrun.into(),
            Some(ClientFault::Malformed(cause)) => ProxyError::ClientBody(cause),
            None => error,
        }
    }

    /// Where this attempt goes: the least-loaded ready pod not yet `tried` (direct pod routing), or the
    /// upstream.
    fn pick_authority(&self, tried: &[String]) -> (Authority, Option<(String, Option<PodGuard>)>) {
        let pods = self.clients.pods.as_ref().zip(self.upstream.service.as_ref());
        match pods.and_then(|(router, (svc, port))| router.pick(svc, port, tried)) {
            Some((addr, guard)) => match addr.parse::<Authority>() {
                Ok(a) => (a, Some((addr, guard))),
                Err(_) => (self.upstream.authority.clone(), None),
            },
            None => (self.upstream.authority.clone(), None),
        }
    }

    /// Whether another ready pod than those `tried` is there to take the request.
    fn another_pod(&self, tried: &[String]) -> bool {
        let pods = self.clients.pods.as_ref().zip(self.upstream.service.as_ref());
        pods.is_some_and(|(router, (svc, port))| router.pick(svc, port, tried).is_some())
    }

    /// Whether the attempt goes over our own plain HTTP/1.1 pool (hyper-util's client otherwise).
    fn plain_http1(&self) -> bool {
        !self.https && !self.upstream.h2c
    }

    /// The request for one attempt at `authority`, or `None` once the body was partly sent.
    fn build_request(&mut self, authority: &Authority) -> Result<Option<Request<AttemptBody<B>>>, ProxyError> {
        let uri = if self.plain_http1() {
            pool::origin_form(&self.parts.uri)
        } else {
            let scheme = if self.https { "https" } else { "http" };
            let mut uri = Uri::builder().scheme(scheme).authority(authority.clone());
            if let Some(pq) = self.parts.uri.path_and_query() {
                uri = uri.path_and_query(pq.clone());
            }
            uri.build().map_err(|_| ProxyError::Internal("cannot build the upstream URI"))?
        };
        // Only a connect failure loops, and a failed connect never touches the body.
        let Some(attempt) = self.body.attempt() else { return Ok(None) };
        let mut out = Request::new(attempt);
        *out.method_mut() = self.parts.method.clone();
        *out.uri_mut() = uri;
        *out.version_mut() = if self.h2c() { Version::HTTP_2 } else { Version::HTTP_11 };
        let headers = if self.plain_http1() { self.headers.take() } else { self.headers.clone() };
        *out.headers_mut() = headers.ok_or(ProxyError::Internal("the request's headers were already sent"))?;
        Ok(Some(out))
    }

    /// HTTP/2 cleartext: only on a plain connection (over TLS, ALPN decides).
    fn h2c(&self) -> bool {
        self.upstream.h2c && !self.https
    }

    /// One attempt over our own exchange, for the warm path (plain HTTP/1.1, no body, no upgrade): the
    /// request is only read, so a failed connect leaves it whole for the next attempt.
    async fn send_own(&self, authority: &Authority) -> Result<ProxyResponse, SendError> {
        let Some(headers) = &self.headers else {
            return Err(SendError::Exchange("the request's headers were already sent".into()));
        };
        let message = (&self.parts.method, &self.parts.uri, headers);
        let resp = self.clients.own.exchange(authority, message, self.route.response_header_timeout).await?;
        Ok(resp.map(|answer| match answer {
            h1::Answer::Whole(bytes) => ProxyBody::full(bytes),
            h1::Answer::Streaming(body) => ProxyBody::streamed(body),
        }))
    }

    /// One attempt over hyper's clients (a body or an upgrade, HTTP/2 cleartext, https), within the
    /// response-header timeout.
    async fn send_other(
        &self,
        authority: &Authority,
        out: Request<AttemptBody<B>>,
    ) -> Result<ProxyResponse, Unsent<AttemptBody<B>>> {
        let sent = self.send_over_hyper(authority, out);
        match self.route.response_header_timeout {
            None => sent.await,
            Some(timeout) => tokio::time::timeout(timeout, sent)
                .await
                .unwrap_or(Err(Unsent { error: SendError::HeaderTimeout, request: None })),
        }
    }

    async fn send_over_hyper(
        &self,
        authority: &Authority,
        out: Request<AttemptBody<B>>,
    ) -> Result<ProxyResponse, Unsent<AttemptBody<B>>> {
        let legacy = if self.https {
            // The certificate is checked for the upstream's host, whichever address the attempt goes to.
            let name = self.upstream.authority.host().to_owned();
            sni::SERVER_NAME.scope(name, self.clients.https.request(out)).await
        } else if self.h2c() {
            self.clients.h2c.request(out).await
        } else {
            return Ok(self.clients.http1.send(authority, out).await?.map(ProxyBody::upstream));
        };
        legacy.map(|resp| resp.map(ProxyBody::upstream)).map_err(|e| {
            let error = if e.is_connect() { SendError::Connect(e.into()) } else { SendError::Exchange(e.into()) };
            Unsent { error, request: None }
        })
    }

    /// Sends the request, retrying failed connects (see the module docs); the answer and the pod's place.
    async fn send_with_connect_retry(&mut self) -> Result<(ProxyResponse, Option<PodGuard>), ProxyError> {
        let retry_until = Instant::now() + RETRY_BUDGET;
        // Pods that refused this request's connection, skipped until every ready pod has been tried.
        let mut tried: Vec<String> = Vec::new();
        // A request a failed connect handed back, sent as it is by the next attempt.
        let mut unsent = None;
        loop {
            let (authority, pod) = self.pick_authority(&tried);
            let name = || authority.to_string();
            let sent = if self.own {
                self.send_own(&authority).await
            } else {
                let out = match unsent.take() {
                    Some(out) => out,
                    None => self.build_request(&authority)?.ok_or_else(|| ProxyError::BodyLost { upstream: name() })?,
                };
                // Boxed, so that this future is only as large as the warm path's.
                Box::pin(self.send_other(&authority, out)).await.map_err(|Unsent { error, request }| {
                    unsent = request;
                    error
                })
            };
            let error = match sent {
                Ok(resp) => return Ok((resp, pod.and_then(|(_, g)| g))),
                Err(error) => error,
            };
            match error {
                _ if let Some(cause) = self.https.then(|| sni::tls_failure(&error)).flatten() => {
                    return Err(ProxyError::BackendTls { upstream: name(), cause });
                }
                SendError::Connect(source) => {
                    self.route.gate.nudge();
                    if let Some((addr, _)) = pod {
                        // Another ready pod may take it at once.
                        tracing::debug!(pod = %addr, cause = %source, "pod refused the connection; trying another");
                        tried.push(addr);
                        if self.another_pod(&tried) {
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
                SendError::Exchange(source) => return Err(ProxyError::Upstream { upstream: name(), source }),
                SendError::HeaderTimeout => {
                    let timeout = self.route.response_header_timeout.unwrap_or_default();
                    return Err(ProxyError::ResponseHeaderTimeout { upstream: name(), timeout });
                }
            }
        }
    }
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

#[cfg(test)]
mod tests;
