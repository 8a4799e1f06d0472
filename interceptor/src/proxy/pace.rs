//! How long a client may take over its request body (`HTTPSCALE_BODY_TIMEOUT`, `HTTPSCALE_BODY_MIN_RATE`).
//!
//! Two bounds, both on the time spent *waiting for the client* (a backend that reads slowly never makes the
//! client's body late): no byte for the body timeout (a stall), and, in the manner of Apache's mod_reqtimeout
//! `MinRate`, no more waiting in all than the body timeout plus one second per `min_rate` bytes received so
//! far (a trickle: one byte every 59 s never stalls, but falls behind at once). Past either the request is the
//! client's `408`.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame};
use tokio::time::{Instant, Sleep};

/// The bounds; no `stall` turns both off (the rate extends the stall allowance, it does not stand alone).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BodyLimits {
    pub stall: Option<Duration>,
    /// Bytes per second.
    pub min_rate: Option<u64>,
}

/// Which bound a client's body passed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Overrun {
    #[error("request body stalled for {0:?}")]
    Stalled(Duration),
    #[error(
        "request body too slow: {received} bytes in {waited:?} of waiting (HTTPSCALE_BODY_MIN_RATE is {min_rate} bytes/s)"
    )]
    TooSlow { received: u64, waited: Duration, min_rate: u64 },
}

/// One body's progress against its [`BodyLimits`].
#[derive(Debug)]
pub struct Pace {
    limits: BodyLimits,
    received: u64,
    /// Time spent waiting for the client in earlier, finished waits.
    waited: Duration,
    /// Set while the client has nothing for us.
    waiting_since: Option<Instant>,
    timer: Option<Pin<Box<Sleep>>>,
}

impl Pace {
    pub fn new(limits: BodyLimits) -> Self {
        Self { limits, received: 0, waited: Duration::ZERO, waiting_since: None, timer: None }
    }

    /// Polls `body` for its next frame, or fails once the client has taken too long.
    pub fn poll_frame<B>(&mut self, body: &mut B, cx: &mut Context<'_>) -> Poll<Result<Option<FrameOf<B>>, Overrun>>
    where
        B: Body<Data = Bytes> + Unpin,
    {
        match Pin::new(body).poll_frame(cx) {
            Poll::Ready(frame) => {
                let len = frame.as_ref().and_then(|f| f.as_ref().ok()).and_then(Frame::data_ref).map_or(0, Bytes::len);
                self.progress(len);
                Poll::Ready(Ok(frame))
            }
            Poll::Pending => match self.waiting(cx) {
                Some(overrun) => Poll::Ready(Err(overrun)),
                None => Poll::Pending,
            },
        }
    }

    fn progress(&mut self, len: usize) {
        if let Some(since) = self.waiting_since.take() {
            self.waited += since.elapsed();
        }
        self.received += len as u64;
    }

    /// The client has nothing for us: the bound it passed, or `None` with `cx` woken at the nearer bound.
    fn waiting(&mut self, cx: &mut Context<'_>) -> Option<Overrun> {
        let stall = self.limits.stall?;
        let since = *self.waiting_since.get_or_insert_with(Instant::now);
        let stall_at = since + stall;
        let slow_at = self.limits.min_rate.filter(|r| *r > 0).map(|rate| {
            let allowance = stall + Duration::from_secs_f64(self.received as f64 / rate as f64);
            since + allowance.saturating_sub(self.waited)
        });
        let at = slow_at.map_or(stall_at, |s| s.min(stall_at));
        let timer = self.timer.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(at)));
        if timer.deadline() != at {
            timer.as_mut().reset(at);
        }
        if timer.as_mut().poll(cx).is_pending() {
            return None;
        }
        let now = Instant::now();
        match (now >= stall_at, self.limits.min_rate) {
            (false, Some(min_rate)) => {
                let waited = self.waited + (now - since);
                let waited = Duration::from_millis(waited.as_millis() as u64);
                Some(Overrun::TooSlow { received: self.received, waited, min_rate })
            }
            _ => Some(Overrun::Stalled(stall)),
        }
    }
}

type FrameOf<B> = Result<Frame<Bytes>, <B as Body>::Error>;

#[cfg(test)]
mod tests {
    use super::*;

    type Chan = http_body_util::StreamBody<
        tokio_stream::wrappers::ReceiverStream<Result<Frame<Bytes>, std::convert::Infallible>>,
    >;

    fn channel() -> (Chan, tokio::sync::mpsc::Sender<Result<Frame<Bytes>, std::convert::Infallible>>) {
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        (http_body_util::StreamBody::new(tokio_stream::wrappers::ReceiverStream::new(rx)), tx)
    }

    async fn next(pace: &mut Pace, body: &mut Chan) -> Result<Option<u64>, Overrun> {
        let frame = std::future::poll_fn(|cx| pace.poll_frame(body, cx)).await?;
        Ok(frame.map(|f| f.unwrap().into_data().map_or(0, |d| d.len() as u64)))
    }

    const LIMITS: BodyLimits = BodyLimits { stall: Some(Duration::from_secs(10)), min_rate: Some(100) };

    #[tokio::test(start_paused = true)]
    async fn a_trickle_that_never_stalls_falls_behind_the_minimum_rate() {
        let (mut body, tx) = channel();
        let feeder = tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(5)).await;
                if tx.send(Ok(Frame::data(Bytes::from_static(b"x")))).await.is_err() {
                    return;
                }
            }
        });
        let (mut pace, started) = (Pace::new(LIMITS), Instant::now());
        let e = loop {
            if let Err(e) = next(&mut pace, &mut body).await {
                break e;
            }
        };
        // Allowed 10 s plus 10 ms per byte; waited 5 s per byte: out after the second byte.
        assert!(matches!(e, Overrun::TooSlow { received: 2, min_rate: 100, .. }), "{e}");
        assert!(started.elapsed() <= Duration::from_secs(11), "{:?}", started.elapsed());
        feeder.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn a_steady_body_passes_and_a_stall_is_a_stall() {
        let (mut body, tx) = channel();
        let mut pace = Pace::new(LIMITS);
        for _ in 0..100 {
            let send = tx.send(Ok(Frame::data(Bytes::from(vec![0u8; 200]))));
            let (sent, got) = tokio::join!(
                async {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    send.await
                },
                next(&mut pace, &mut body)
            );
            sent.unwrap();
            assert_eq!(got, Ok(Some(200)), "200 bytes a second is over 100");
        }
        assert_eq!(next(&mut pace, &mut body).await, Err(Overrun::Stalled(Duration::from_secs(10))));
        let mut off = Pace::new(BodyLimits { stall: None, min_rate: Some(100) });
        assert!(tokio::time::timeout(Duration::from_secs(3600), next(&mut off, &mut body)).await.is_err());
    }
}
