//! Our own HTTP/1.1 exchange with a plain backend, for the requests of the warm path: those without a body
//! and without an upgrade (everything else goes over hyper's client connection, [`super::pool::Http1Pool`]).
//! One connection is a socket and two buffers, driven by the request's own task: no connection task, no
//! channel between them, the head written (usually in one `write`; an answer that comes before the backend
//! has read it all is read meanwhile) and the answer parsed with `httparse` under hyper's client's rules
//! ([`codec`], [`chunked`]; `tests.rs` sends one corpus of answers through both and compares).
//!
//! - **An answer read whole with its head** (the common small answer) is handed on as one buffer, and its
//!   connection goes back to the pool at once; a longer one streams ([`ResponseBody`]) and its connection goes
//!   back when its end has been read.
//! - **Not reused**: a connection whose answer said `Connection: close` (or was HTTP/1.0 without
//!   `keep-alive`), whose body ran until the backend closed, or which holds bytes past the answer.
//! - **A stale connection**: a pooled connection is checked for a close (or stray bytes) before it is lent,
//!   without waiting. A request whose write failed on a reused connection, or whose reused connection closed
//!   before a byte of the answer, is sent again on another connection when its method is idempotent
//!   (RFC 9110 §9.2.2), as Go's and nginx's clients do.

use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker, ready};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::uri::Authority;
use http::{HeaderMap, Method, Response, Uri};
use http_body::{Frame, SizeHint};
use tokio::io::AsyncWrite;
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};

use self::chunked::{Chunk, Chunked};
use self::codec::{Framing, Head, HeadError};
use super::pool::{Pool, Reusable, SendError};
use crate::proxy::body::BoxError;

mod chunked;
mod codec;

/// What a connection reads into at first, and reads at least (hyper's client starts at the same).
const READ_SIZE: usize = 8 * 1024;
/// The most a streamed body's reads grow to.
const MAX_READ_SIZE: usize = 256 * 1024;

/// One upstream connection: the socket, what has been read from it and not yet handed on, the buffer
/// request heads are written from, and the clock of the response-header timeout.
pub struct Conn {
    stream: TcpStream,
    read: BytesMut,
    write: Vec<u8>,
    read_size: usize,
    /// Made at the first request that has a timeout and moved on by each next one: moving a registered
    /// timer later only changes its deadline, where a timer per request is registered with the runtime's
    /// timer wheel and taken out of it again, under its lock, every time.
    timer: Option<Pin<Box<Sleep>>>,
    /// Whether the request under way has a timeout (the timer may be left from an earlier one).
    timed: bool,
}

impl Reusable for Conn {
    /// Nothing waits in the socket: not a close, not stray bytes. The reactor knows when nothing has come
    /// since the last read drained the socket ([`Conn::poll_fill`]); only otherwise does one non-blocking
    /// read look. Never waits.
    fn reusable(&self) -> bool {
        if !self.read.is_empty() {
            return false;
        }
        match self.stream.poll_read_ready(&mut Context::from_waker(Waker::noop())) {
            Poll::Pending => true,
            Poll::Ready(_) => {
                matches!(self.stream.try_read(&mut [0u8; 1]), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
            }
        }
    }
}

/// Why an exchange failed.
#[derive(Debug, thiserror::Error)]
enum ExchangeError {
    #[error("writing the request failed: {0}")]
    Write(#[source] io::Error),
    #[error("reading the answer failed: {0}")]
    Read(#[source] io::Error),
    #[error("the backend closed (or reset) the connection before an answer")]
    ClosedBeforeAnswer,
    #[error("the backend closed the connection within the answer's head")]
    ClosedInHead,
    #[error("no answer within the response-header timeout")]
    HeaderTimeout,
    #[error(transparent)]
    Head(#[from] HeadError),
}

impl ExchangeError {
    /// Whether nothing of an answer came, so that the request can go again on another connection.
    fn nothing_answered(&self) -> bool {
        matches!(self, Self::Write(_) | Self::ClosedBeforeAnswer)
    }
}

impl Conn {
    fn new(stream: TcpStream) -> Self {
        let read = BytesMut::with_capacity(READ_SIZE);
        Self { stream, read, write: Vec::new(), read_size: READ_SIZE, timer: None, timed: false }
    }

    /// Writes the request's head and reads the answer's, within `timeout` of the start when there is one. An
    /// answer the backend sends before it has read the whole head (refusing it: `431`, say) is read while the
    /// head is written, and is the answer even if the backend then resets the connection; that connection is
    /// not reused.
    async fn round_trip(
        &mut self,
        method: &Method,
        uri: &Uri,
        headers: &HeaderMap,
        timeout: Option<Duration>,
    ) -> Result<(Head, Bytes), ExchangeError> {
        self.timed = timeout.is_some();
        if let Some(timeout) = timeout {
            let deadline = Instant::now() + timeout;
            match &mut self.timer {
                Some(timer) => timer.as_mut().reset(deadline),
                None => self.timer = Some(Box::pin(tokio::time::sleep_until(deadline))),
            }
        }
        self.write.clear();
        codec::write_request(method, uri, headers, &mut self.write);
        let mut written = 0;
        let wrote = poll_fn(|cx| self.poll_write_head(cx, &mut written)).await;
        let answer = self.read_head(method).await;
        // The timer stays registered until its deadline: it lets go of this task's waker now, so that an idle
        // connection neither keeps the task's memory nor wakes it.
        if let Some(timer) = &mut self.timer {
            let _ = timer.as_mut().poll(&mut Context::from_waker(Waker::noop()));
        }
        match (wrote, answer) {
            (_, Err(ExchangeError::HeaderTimeout)) => Err(ExchangeError::HeaderTimeout),
            (Ok(true), answer) => answer,
            (Ok(false) | Err(_), Ok((mut head, rest))) => {
                head.keep_alive = false;
                Ok((head, rest))
            }
            (Err(e), Err(_)) => Err(ExchangeError::Write(e)),
            (Ok(false), Err(e)) => Err(e),
        }
    }

    /// Writes the head from `written` on; `false` if an answer began to arrive while the backend was not
    /// reading (the rest of the head is left unwritten).
    fn poll_write_head(&mut self, cx: &mut Context<'_>, written: &mut usize) -> Poll<io::Result<bool>> {
        while *written < self.write.len() {
            match Pin::new(&mut self.stream).poll_write(cx, &self.write[*written..]) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => *written += n,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => {
                    return match ready!(self.poll_fill_timed(cx)) {
                        Ok(0) => Poll::Ready(Err(io::ErrorKind::BrokenPipe.into())),
                        Ok(_) => Poll::Ready(Ok(false)),
                        Err(e) => Poll::Ready(Err(e)),
                    };
                }
            }
        }
        Poll::Ready(Ok(true))
    }

    /// Reads until the answer's head is complete.
    async fn read_head(&mut self, method: &Method) -> Result<(Head, Bytes), ExchangeError> {
        let mut answered = !self.read.is_empty();
        loop {
            if !self.read.is_empty()
                && let Some(answer) = codec::parse_response(&mut self.read, method)?
            {
                return Ok(answer);
            }
            match poll_fn(|cx| self.poll_fill_timed(cx)).await {
                Ok(0) if answered => return Err(ExchangeError::ClosedInHead),
                Err(e) if e.kind() == io::ErrorKind::TimedOut && self.timed_out() => {
                    return Err(ExchangeError::HeaderTimeout);
                }
                Ok(0) => return Err(ExchangeError::ClosedBeforeAnswer),
                Ok(_) => answered = true,
                Err(e) if !answered && e.kind() == io::ErrorKind::ConnectionReset => {
                    return Err(ExchangeError::ClosedBeforeAnswer);
                }
                Err(e) => return Err(ExchangeError::Read(e)),
            }
        }
    }

    fn timed_out(&self) -> bool {
        self.timed && self.timer.as_ref().is_some_and(|timer| timer.is_elapsed())
    }

    /// [`Self::poll_fill`] until the request's response-header timeout, then `TimedOut`.
    fn poll_fill_timed(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        if self.timed
            && let Some(timer) = &mut self.timer
            && timer.as_mut().poll(cx).is_ready()
        {
            return Poll::Ready(Err(io::ErrorKind::TimedOut.into()));
        }
        self.poll_fill(cx)
    }

    /// Reads what the socket has into the read buffer; `0` at its end.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        if self.read.capacity() - self.read.len() < READ_SIZE / 2 {
            self.read.reserve(self.read_size);
        }
        // tokio's `poll_read` (unlike `try_read`) takes a read that leaves room as proof that the socket is
        // drained: the next read waits for the reactor instead of trying, and `reusable` need not look.
        let n = ready!(tokio_util::io::poll_read_buf(Pin::new(&mut self.stream), cx, &mut self.read))?;
        // A read that filled the room there was: read more at once next time.
        if n >= self.read_size {
            self.read_size = (self.read_size * 2).min(MAX_READ_SIZE);
        }
        Poll::Ready(Ok(n))
    }
}

/// An answer's body: whole when it came with its head, streamed otherwise.
pub enum Answer {
    Whole(Bytes),
    Streaming(ResponseBody),
}

impl Pool<Conn> {
    /// Sends a request without a body (`uri`'s path and query as its target, `headers` with its `Host`) to
    /// `authority` on an idle connection or a new one; `header_timeout` bounds the wait for the answer's head
    /// on that connection. The request is only read: a failed connect leaves it whole to send again.
    pub async fn exchange(
        self: &Arc<Self>,
        authority: &Authority,
        (method, uri, headers): (&Method, &Uri, &HeaderMap),
        header_timeout: Option<Duration>,
    ) -> Result<Response<Answer>, SendError> {
        loop {
            let (mut conn, reused) = match self.checkout(authority) {
                Some(conn) => (conn, true),
                // Boxed: a connect is rare on the warm path, and its future would otherwise size this one.
                None => (Conn::new(Box::pin(self.connect_tcp(authority)).await?), false),
            };
            match conn.round_trip(method, uri, headers, header_timeout).await {
                Ok((head, rest)) => return Ok(self.answer(authority, conn, head, rest)),
                Err(e) if reused && e.nothing_answered() && method.is_idempotent() => {
                    tracing::debug!(upstream = %authority, cause = %e, "a reused connection was closed; sending again");
                }
                Err(ExchangeError::HeaderTimeout) => return Err(SendError::HeaderTimeout),
                Err(e) => return Err(SendError::Exchange(e.into())),
            }
        }
    }

    /// The answer to hand on, `rest` being what was read past its head: whole (the connection back in the
    /// pool) when its body is all there.
    fn answer(self: &Arc<Self>, authority: &Authority, mut conn: Conn, head: Head, rest: Bytes) -> Response<Answer> {
        let Head { response, framing, keep_alive } = head;
        if let Framing::Length(n) = framing
            && let Ok(n) = usize::try_from(n)
            && n <= rest.len()
        {
            if keep_alive && n == rest.len() {
                self.put(authority.as_str(), conn);
            }
            return response.map(|()| Answer::Whole(rest.slice(..n)));
        }
        // Streamed: the body's first bytes are read from the buffer first.
        conn.read.extend_from_slice(&rest);
        let decode = match framing {
            Framing::Length(n) => Decode::Length(n),
            Framing::Chunked => Decode::Chunked(Chunked::default()),
            Framing::Eof => Decode::Eof,
        };
        let home = keep_alive.then(|| (self.clone(), authority.clone()));
        response.map(|()| Answer::Streaming(ResponseBody { conn: Some(conn), decode, home }))
    }
}

enum Decode {
    Length(u64),
    Chunked(Chunked),
    Eof,
}

/// A streamed answer's body, read from its connection as the client takes it; the connection goes back to
/// the pool when the end has been read (and is closed if the body is dropped before).
pub struct ResponseBody {
    /// `None` once the body ended.
    conn: Option<Conn>,
    decode: Decode,
    /// Where the connection goes back to, when it may.
    home: Option<(Arc<Pool<Conn>>, Authority)>,
}

#[derive(Debug, thiserror::Error)]
#[error("the backend closed the connection before the body's end")]
struct Truncated;

impl ResponseBody {
    fn end(&mut self) {
        if let (Some(conn), Some((pool, authority))) = (self.conn.take(), self.home.take())
            && conn.read.is_empty()
        {
            pool.put(authority.as_str(), conn);
        }
    }

    /// The next frame from what has been read, `Ok(None)` at the end, or `Err(None)` for more bytes.
    fn next(&mut self, conn: &mut Conn) -> Result<Option<Frame<Bytes>>, Option<BoxError>> {
        let buf = &mut conn.read;
        match &mut self.decode {
            Decode::Length(0) => Ok(None),
            Decode::Length(_) | Decode::Eof if buf.is_empty() => Err(None),
            Decode::Length(left) => {
                let n = buf.len().min(usize::try_from(*left).unwrap_or(usize::MAX));
                *left -= n as u64;
                Ok(Some(Frame::data(buf.split_to(n).freeze())))
            }
            Decode::Eof => Ok(Some(Frame::data(buf.split().freeze()))),
            Decode::Chunked(chunked) => match chunked.decode(buf) {
                Ok(Some(Chunk::Data(data))) => Ok(Some(Frame::data(data))),
                Ok(Some(Chunk::Trailers(trailers))) => Ok(Some(Frame::trailers(trailers))),
                Ok(Some(Chunk::End)) => Ok(None),
                Ok(None) => Err(None),
                Err(e) => Err(Some(e.into())),
            },
        }
    }
}

impl http_body::Body for ResponseBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        loop {
            let Some(mut conn) = this.conn.take() else { return Poll::Ready(None) };
            let next = this.next(&mut conn);
            this.conn = Some(conn);
            match next {
                Ok(Some(frame)) => {
                    if this.is_end_stream() {
                        this.end();
                    }
                    return Poll::Ready(Some(Ok(frame)));
                }
                Ok(None) => {
                    this.end();
                    return Poll::Ready(None);
                }
                Err(Some(e)) => {
                    this.conn = None;
                    return Poll::Ready(Some(Err(e)));
                }
                Err(None) => {}
            }
            let Some(conn) = this.conn.as_mut() else { return Poll::Ready(None) };
            match ready!(conn.poll_fill(cx)) {
                Ok(0) if matches!(this.decode, Decode::Eof) => {
                    this.conn = None;
                    return Poll::Ready(None);
                }
                Ok(0) => {
                    this.conn = None;
                    return Poll::Ready(Some(Err(Box::new(Truncated))));
                }
                Ok(_) => {}
                Err(e) => {
                    this.conn = None;
                    return Poll::Ready(Some(Err(e.into())));
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.conn.is_none() || matches!(self.decode, Decode::Length(0))
    }

    fn size_hint(&self) -> SizeHint {
        match self.decode {
            Decode::Length(n) => SizeHint::with_exact(n),
            _ if self.conn.is_none() => SizeHint::with_exact(0),
            _ => SizeHint::default(),
        }
    }
}

#[cfg(test)]
mod tests;
