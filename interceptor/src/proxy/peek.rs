//! The request body as the proxy holds it: the client's body, which a layer may read ahead of forwarding
//! (to learn the model an inference request names) and which is then sent on byte for byte.
//!
//! States of a [`PeekBody`]: *untouched* (frames pass straight through; this costs nothing on requests that
//! are never read ahead), *read* (the whole body, at most a bound, is kept as one buffer plus any trailers,
//! and sent first; the client's body has ended) or *too large* (reading stopped past the bound; the request is
//! refused, never forwarded).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};

use super::body::BoxError;
use super::error::ProxyError;
use super::pace::{BodyLimits, Overrun, Pace};

/// How a body is read ahead: at most `limit` bytes (`HTTPSCALE_MODEL_BODY_LIMIT`), within the `pace`
/// bounds (`HTTPSCALE_BODY_TIMEOUT`, `HTTPSCALE_BODY_MIN_RATE`).
#[derive(Debug, Clone, Copy)]
pub struct ReadAhead {
    pub limit: usize,
    pub pace: BodyLimits,
}

impl ReadAhead {
    /// At most `limit` bytes, with no time bound.
    pub fn limit(limit: usize) -> Self {
        Self { limit, pace: BodyLimits::default() }
    }
}

/// Reads `body` ahead (see [`Peek::peek`]); a failure is the client's (`413`, `408` or `400`).
pub async fn read_ahead<B: Peek>(body: &mut B, how: ReadAhead) -> Result<Bytes, ProxyError> {
    body.peek(how).await.map_err(|e| match e {
        PeekError::TooLarge { limit } => ProxyError::BodyTooLarge { limit },
        PeekError::Slow(overrun) => overrun.into(),
        PeekError::Read(e) => ProxyError::ClientBody(e.to_string()),
    })
}

/// Why a body could not be read ahead.
#[derive(Debug, thiserror::Error)]
pub enum PeekError {
    #[error("the request body is larger than {limit} bytes")]
    TooLarge { limit: usize },
    #[error(transparent)]
    Slow(Overrun),
    #[error("reading the request body failed: {0}")]
    Read(BoxError),
}

/// A request body that can be read ahead of forwarding.
pub trait Peek: Send {
    /// Reads the whole body (at most `how.limit` bytes, within the `how.pace` bounds)
    /// and keeps it to be sent on; returns it. A second call returns what the first read.
    fn peek(&mut self, how: ReadAhead) -> impl Future<Output = Result<Bytes, PeekError>> + Send;
}

/// Requests without a body (layer tests).
impl Peek for () {
    async fn peek(&mut self, _how: ReadAhead) -> Result<Bytes, PeekError> {
        Ok(Bytes::new())
    }
}

/// The client's body `B`, possibly read ahead (see the module docs).
#[derive(Debug)]
pub struct PeekBody<B> {
    inner: B,
    /// What was read ahead and is not yet sent on.
    read: Option<Bytes>,
    trailers: Option<HeaderMap>,
    /// The client's body has ended (everything left is in `read` and `trailers`).
    ended: bool,
    /// Set once read ahead, so a second peek answers the same.
    peeked: Option<Bytes>,
}

impl<B> PeekBody<B> {
    pub fn new(inner: B) -> Self {
        Self { inner, read: None, trailers: None, ended: false, peeked: None }
    }
}

impl<B> Peek for PeekBody<B>
where
    B: Body<Data = Bytes, Error: Into<BoxError>> + Send + Unpin,
{
    async fn peek(&mut self, how: ReadAhead) -> Result<Bytes, PeekError> {
        let limit = how.limit;
        if let Some(done) = &self.peeked {
            return Ok(done.clone());
        }
        if self.inner.size_hint().lower() > limit as u64 {
            // A declared Content-Length over the bound: refuse without reading.
            return Err(PeekError::TooLarge { limit });
        }
        let (mut buf, mut pace) = (BytesMut::new(), Pace::new(how.pace));
        while !self.inner.is_end_stream() {
            let inner = &mut self.inner;
            let next = std::future::poll_fn(|cx| pace.poll_frame(inner, cx)).await.map_err(PeekError::Slow)?;
            let Some(frame) = next else { break };
            let frame = frame.map_err(|e| PeekError::Read(e.into()))?;
            match frame.into_data() {
                Ok(data) if buf.len() + data.len() > limit => return Err(PeekError::TooLarge { limit }),
                Ok(data) => buf.extend_from_slice(&data),
                Err(frame) => {
                    // Trailers end the body.
                    self.trailers = frame.into_trailers().ok();
                    break;
                }
            }
        }
        self.ended = true;
        let body = buf.freeze();
        self.read = (!body.is_empty()).then(|| body.clone());
        self.peeked = Some(body.clone());
        Ok(body)
    }
}

impl<B> Body for PeekBody<B>
where
    B: Body<Data = Bytes> + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = &mut *self;
        if let Some(data) = this.read.take() {
            return Poll::Ready(Some(Ok(Frame::data(data))));
        }
        if let Some(trailers) = this.trailers.take() {
            return Poll::Ready(Some(Ok(Frame::trailers(trailers))));
        }
        if this.ended {
            return Poll::Ready(None);
        }
        Pin::new(&mut this.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.read.is_none() && self.trailers.is_none() && (self.ended || self.inner.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        match (self.ended, &self.read) {
            (true, read) => SizeHint::with_exact(read.as_ref().map_or(0, |b| b.len() as u64)),
            (false, _) => self.inner.size_hint(),
        }
    }
}

#[cfg(test)]
mod tests {
    use http_body_util::BodyExt;

    use super::*;
    use crate::proxy::testing::chunks;

    #[tokio::test(start_paused = true)]
    async fn a_body_read_ahead_is_sent_on_byte_for_byte_with_its_trailers() {
        let mut trailers = HeaderMap::new();
        trailers.insert("x-sum", "1".parse().unwrap());
        let mut body = PeekBody::new(chunks(&[b"{\"model\":", b"\"a\"", b"}"], Some(trailers.clone())));
        assert_eq!(body.peek(ReadAhead::limit(1024)).await.unwrap(), "{\"model\":\"a\"}");
        assert_eq!(
            body.peek(ReadAhead::limit(1024)).await.unwrap(),
            "{\"model\":\"a\"}",
            "a second read answers the same"
        );
        assert_eq!(body.size_hint().exact(), Some(13));
        let sent = body.collect().await.unwrap();
        assert_eq!(sent.trailers(), Some(&trailers));
        assert_eq!(sent.to_bytes(), "{\"model\":\"a\"}");
    }

    #[tokio::test(start_paused = true)]
    async fn an_untouched_body_passes_through_and_an_empty_one_stays_empty() {
        let body = PeekBody::new(chunks(&[b"ab", b"cd"], None));
        assert_eq!(body.collect().await.unwrap().to_bytes(), "abcd");
        let mut empty = PeekBody::new(http_body_util::Empty::<Bytes>::new());
        assert_eq!(empty.peek(ReadAhead::limit(10)).await.unwrap(), "");
        assert!(empty.is_end_stream());
    }

    #[tokio::test(start_paused = true)]
    async fn reading_stops_past_the_bound_declared_or_streamed() {
        let mut declared = PeekBody::new(http_body_util::Full::new(Bytes::from_static(b"0123456789")));
        assert!(matches!(declared.peek(ReadAhead::limit(9)).await, Err(PeekError::TooLarge { limit: 9 })));
        let mut streamed = PeekBody::new(chunks(&[b"01234", b"56789", b"never read"], None));
        assert!(matches!(streamed.peek(ReadAhead::limit(9)).await, Err(PeekError::TooLarge { limit: 9 })));
        let mut exact = PeekBody::new(chunks(&[b"01234", b"5678"], None));
        assert_eq!(exact.peek(ReadAhead::limit(9)).await.unwrap(), "012345678", "exactly the bound is fine");
    }

    #[tokio::test(start_paused = true)]
    async fn a_stalled_body_fails_after_the_stall_bound() {
        let never = futures_util::stream::pending::<Result<Frame<Bytes>, std::convert::Infallible>>();
        let mut stalled = PeekBody::new(http_body_util::StreamBody::new(never));
        let pace = BodyLimits { stall: Some(std::time::Duration::from_secs(60)), min_rate: Some(500) };
        let how = ReadAhead { limit: 1024, pace };
        let started = tokio::time::Instant::now();
        let e = read_ahead(&mut stalled, how).await.unwrap_err();
        assert!(matches!(e, ProxyError::BodyTimeout(t) if t.as_secs() == 60), "{e:?}");
        assert_eq!(started.elapsed().as_secs(), 60);
    }
}
