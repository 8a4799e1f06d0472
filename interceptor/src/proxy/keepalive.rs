//! The keep-alive layer (opt-in per route: `coldStart.streamKeepAlive`), for clients that would give up on
//! their own read timeout while a model loads. Only a request that asks for an SSE stream (`stream: true` in
//! an OpenAI or Anthropic body, or `Accept: text/event-stream`; never Ollama's NDJSON, which has no comments)
//! and whose backend is not ready is concerned; every other request passes straight on.
//!
//! States of such a request:
//! - *refused at once*: the request goes on to the cold-start layer; if that answers on its first poll (the
//!   hold was refused: a full queue, a program backing off), that answer is the client's, status and all.
//! - *held, head sent*: otherwise the client gets `200`, `Content-Type: text/event-stream` and an SSE comment
//!   (`: waiting for model`) at once, then another comment every `interval`.
//! - *spliced*: the backend answered 2xx; its body follows the comments as it streams.
//! - *failed*: the hold failed (timeout, refusal, shutdown) or the backend answered an error status; the
//!   stream ends with an SSE `error` event ([`sse_error`]) carrying the status and reason, since the status
//!   line is already sent.
//!
//! The client leaving drops the body, which drops the held request: its place and count are given back.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::future::Either;
use http::header::{CACHE_CONTROL, CONTENT_TYPE, HeaderValue};
use http::{Request, StatusCode};
use http_body::{Body, Frame, SizeHint};
use httpscale_core::route::RouteKey;
use tokio::time::{Instant, Sleep};
use tower::{Layer, Service};

use super::body::{BoxError, ProxyBody};
use super::error::{ProxyError, sse_error};
use super::model::{Api, RequestFields, accepts_sse, inference_api};
use super::peek::{Peek, ReadAhead, read_ahead};
use super::types::{BoxFuture, ProxyResponse, Routed};

/// What the client reads while it waits.
pub const WAITING_COMMENT: &[u8] = b": waiting for model\n\n";
/// How much of a backend's error answer is quoted in the error event.
const ERROR_BODY_QUOTED: usize = 2048;

#[derive(Clone)]
pub struct KeepAliveLayer {
    read_ahead: ReadAhead,
}

impl KeepAliveLayer {
    /// `read_ahead` bounds the body read to learn whether a stream is asked for.
    pub fn new(read_ahead: ReadAhead) -> Self {
        Self { read_ahead }
    }
}

impl<S> Layer<S> for KeepAliveLayer {
    type Service = KeepAliveService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        KeepAliveService { inner, read_ahead: self.read_ahead }
    }
}

#[derive(Clone)]
pub struct KeepAliveService<S> {
    inner: S,
    read_ahead: ReadAhead,
}

/// Whether a request asks for an SSE stream, reading an inference request's body if the route layer has
/// not already.
async fn wants_sse<B: Peek>(req: &mut Request<B>, how: ReadAhead) -> Result<bool, ProxyError> {
    if let Some(fields) = req.extensions().get::<RequestFields>() {
        return Ok(fields.wants_sse(req.headers()));
    }
    match inference_api(req.method(), req.uri().path()) {
        Some(Api::Ollama) => Ok(false),
        None => Ok(accepts_sse(req.headers())),
        Some(api) => {
            let body = read_ahead(req.body_mut(), how).await?;
            let fields = RequestFields::parse(api, &body);
            let sse = fields.wants_sse(req.headers());
            req.extensions_mut().insert(fields);
            Ok(sse)
        }
    }
}

/// Answers with the keep-alive stream at once, unless `answer` is ready on its first poll (a hold refused at
/// once, say a full queue or a program backing off, keeps its real status).
async fn keep_alive(
    answer: BoxFuture<Result<ProxyResponse, ProxyError>>,
    interval: Duration,
    route: RouteKey,
) -> Result<ProxyResponse, ProxyError> {
    let mut answer = answer;
    if let Poll::Ready(quick) = std::future::poll_fn(|cx| Poll::Ready(answer.as_mut().poll(cx))).await {
        return quick;
    }
    tracing::debug!(route = %route, "held SSE request: response head sent, keeping the client alive");
    let tick = Box::pin(tokio::time::sleep(Duration::ZERO));
    let body = KeepAliveBody { phase: Phase::Waiting { answer, tick }, interval, route };
    let mut resp = ProxyResponse::new(ProxyBody::streamed(body));
    let h = resp.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    Ok(resp)
}

impl<S, B> Service<Request<B>> for KeepAliveService<S>
where
    S: Service<Request<B>, Response = ProxyResponse, Error = ProxyError> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Peek + 'static,
{
    type Response = ProxyResponse;
    type Error = ProxyError;
    /// Unboxed unless the request may wait with a keep-alive stream.
    type Future = Either<S::Future, BoxFuture<Result<ProxyResponse, ProxyError>>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let route = req.extensions().get::<Routed>().map(|r| r.route.clone());
        let Some((route, interval)) = route.and_then(|r| r.route.stream_keep_alive.map(|i| (r, i))) else {
            return Either::Left(self.inner.call(req));
        };
        if route.gate.is_open() {
            return Either::Left(self.inner.call(req));
        }
        let fresh = self.inner.clone();
        let mut ready = std::mem::replace(&mut self.inner, fresh);
        let how = self.read_ahead;
        Either::Right(Box::pin(async move {
            if !wants_sse(&mut req, how).await? {
                return ready.call(req).await;
            }
            keep_alive(Box::pin(ready.call(req)), interval, route.route.key.clone()).await
        }))
    }
}

enum Phase {
    /// The request is held; a comment is due at `tick`.
    Waiting {
        answer: BoxFuture<Result<ProxyResponse, ProxyError>>,
        tick: Pin<Box<Sleep>>,
    },
    /// The backend answered an error status: its body is read (a little of it) for the error event.
    Failing {
        status: StatusCode,
        body: ProxyBody,
        quoted: BytesMut,
    },
    /// The backend's body, passed on.
    Spliced(ProxyBody),
    Done,
}

/// The stream a kept-alive client reads (see the module docs).
struct KeepAliveBody {
    phase: Phase,
    interval: Duration,
    route: RouteKey,
}

/// The error event for a backend's error answer, quoting the start of its body.
fn backend_failed(route: &RouteKey, status: StatusCode, quoted: &[u8]) -> Bytes {
    tracing::warn!(route = %route, status = status.as_u16(), "backend answered a held SSE request with an error");
    let text = String::from_utf8_lossy(quoted);
    sse_error(status, &format!("the backend answered {status}: {}", text.trim()))
}

impl Body for KeepAliveBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        loop {
            match &mut this.phase {
                Phase::Waiting { answer, tick } => match answer.as_mut().poll(cx) {
                    Poll::Ready(Ok(resp)) if resp.status().is_success() => {
                        this.phase = Phase::Spliced(resp.into_body());
                    }
                    Poll::Ready(Ok(resp)) => {
                        let (status, body) = (resp.status(), resp.into_body());
                        this.phase = Phase::Failing { status, body, quoted: BytesMut::new() };
                    }
                    Poll::Ready(Err(e)) => {
                        this.phase = Phase::Done;
                        return Poll::Ready(Some(Ok(Frame::data(e.into_sse_event(Some(&this.route))))));
                    }
                    Poll::Pending => {
                        if tick.as_mut().poll(cx).is_pending() {
                            return Poll::Pending;
                        }
                        tick.as_mut().reset(Instant::now() + this.interval);
                        return Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(WAITING_COMMENT)))));
                    }
                },
                Phase::Failing { status, body, quoted } => {
                    let more = match Pin::new(body).poll_frame(cx) {
                        Poll::Pending => return Poll::Pending,
                        Poll::Ready(Some(Ok(frame))) => frame.into_data().ok(),
                        Poll::Ready(_) => None,
                    };
                    if let Some(data) = &more {
                        quoted.extend_from_slice(&data[..data.len().min(ERROR_BODY_QUOTED - quoted.len())]);
                    }
                    if more.is_none() || quoted.len() >= ERROR_BODY_QUOTED {
                        let event = backend_failed(&this.route, *status, quoted);
                        this.phase = Phase::Done;
                        return Poll::Ready(Some(Ok(Frame::data(event))));
                    }
                }
                Phase::Spliced(body) => return Pin::new(body).poll_frame(cx),
                Phase::Done => return Poll::Ready(None),
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.phase {
            Phase::Spliced(body) => body.is_end_stream(),
            Phase::Done => true,
            Phase::Waiting { .. } | Phase::Failing { .. } => false,
        }
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}

#[cfg(test)]
mod tests;
