//! Our own HTTP/1.1 server half, for the requests of the warm path: a connection's heads are read and its
//! answers written here, in the connection's task, for as long as its requests have no body and nothing
//! unusual ([`head`]); at the first head that does (a body, `Expect`, an upgrade, HTTP/1.0, a head hyper would
//! refuse), the connection is handed to hyper's server with what was read and not served ([`Served::Hyper`]),
//! and hyper serves it from there on, as it serves every connection when this half is off
//! (`HTTPSCALE_HTTP1_SERVER=hyper`).
//!
//! What hyper's server does for such requests, this does too (`tests.rs` sends one corpus through both and
//! compares the bytes): the answer's head as hyper writes it ([`encode`]), `Connection: close` honoured both
//! ways, pipelined requests answered in order, an answer's body streamed frame by frame as it comes, and a
//! client that closes its side while its request waits (or while its answer streams) has left: its request
//! is dropped, as hyper drops it. When the interceptor stops, an idle connection is closed and a request on its
//! way or in flight is answered with `Connection: close`.

use std::convert::Infallible;
use std::io::{self, IoSlice};
use std::pin::pin;
use std::task::Poll;

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, Method, Request, Response};
use http_body::Body;
use http_body_util::BodyExt;
use httpscale_core::Shutdown;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use self::encode::{BodyLength, Framing};
use self::head::Head;
use super::body::ClientBody;
use super::rewind::Rewind;
use crate::proxy::body::BoxError;

mod encode;
mod head;

/// What a connection reads into at first (a head is a few hundred bytes; up to [`head::MAX_HEAD`] is read
/// before a head goes to hyper).
const READ_SIZE: usize = 4096;

/// How a connection left our server half.
pub(super) enum Served<I> {
    /// It ended (closed by either side, or failed): nothing is left to serve.
    Ended,
    /// hyper serves the rest of it, starting with the bytes read and not served.
    Hyper(Rewind<I>),
}

struct Conn<I> {
    io: I,
    read: BytesMut,
    write: Vec<u8>,
    /// The last answer's header map, cleared, for the next request.
    headers: Option<HeaderMap>,
}

/// Serves `io` with `service` while its requests are ours (see the module docs); `quiet` tells whether closing
/// the connection now loses nothing, once `stop` fires.
pub(super) async fn serve<I, S, B>(
    io: I,
    service: &S,
    stop: &Shutdown,
    quiet: impl Fn() -> bool,
) -> io::Result<Served<I>>
where
    I: AsyncRead + AsyncWrite + Unpin,
    S: hyper::service::Service<Request<ClientBody>, Response = Response<B>, Error = Infallible>,
    B: Body<Data = Bytes, Error: Into<BoxError>>,
{
    let mut conn = Conn { io, read: BytesMut::new(), write: Vec::new(), headers: None };
    let mut stopped = pin!(stop.triggered());
    let mut stopping = false;
    loop {
        let (req, mut keep_alive) = loop {
            if !conn.read.is_empty() {
                match head::take(&mut conn.read, &mut conn.headers) {
                    Head::Ours(req, keep_alive) => break (req, keep_alive),
                    Head::Hyper => return Ok(Served::Hyper(conn.rewind())),
                    Head::Partial => {}
                }
            }
            conn.reserve();
            tokio::select! {
                read = conn.io.read_buf(&mut conn.read) => match read? {
                    0 if conn.read.is_empty() => return Ok(Served::Ended),
                    // A head cut short: hyper has its say on it.
                    0 => return Ok(Served::Hyper(conn.rewind())),
                    _ => {}
                },
                () = &mut stopped, if !stopping => {
                    stopping = true;
                    if conn.read.is_empty() && quiet() {
                        return Ok(Served::Ended);
                    }
                }
            }
        };
        keep_alive &= !stopping;
        let method = req.method().clone();
        let mut answer = pin!(service.call(req));
        // hyper watches for the client leaving only while nothing of a next request is read.
        let mut watching = conn.read.is_empty();
        let resp = loop {
            conn.reserve();
            tokio::select! {
                biased;
                resp = &mut answer => break resp.unwrap_or_else(|e| match e {}),
                read = conn.io.read_buf(&mut conn.read), if watching => match read {
                    Ok(0) | Err(_) => return Ok(Served::Ended),
                    Ok(_) => watching = false,
                },
            }
        };
        // Stopped meanwhile: the answer closes the connection (looked at now rather than waited for).
        if stop.is_triggered() {
            (stopping, keep_alive) = (true, false);
        }
        if !conn.answer(resp, &method, &mut keep_alive, &mut watching).await? || !keep_alive {
            conn.io.shutdown().await?;
            return Ok(Served::Ended);
        }
    }
}

impl<I: AsyncRead + AsyncWrite + Unpin> Conn<I> {
    fn reserve(&mut self) {
        if self.read.capacity() - self.read.len() < READ_SIZE / 4 {
            self.read.reserve(READ_SIZE);
        }
    }

    fn rewind(self) -> Rewind<I> {
        Rewind::new(self.read.freeze(), self.io)
    }

    /// Writes `resp` as the answer to a `method` request; `false` if the connection cannot carry another
    /// request after it (the answer's body ended early, or the client left while it streamed).
    async fn answer<B>(
        &mut self,
        resp: Response<B>,
        method: &Method,
        keep_alive: &mut bool,
        watching: &mut bool,
    ) -> io::Result<bool>
    where
        B: Body<Data = Bytes, Error: Into<BoxError>>,
    {
        let (mut parts, body) = resp.into_parts();
        let length =
            (!body.is_end_stream()).then(|| body.size_hint().exact().map_or(BodyLength::Unknown, BodyLength::Known));
        self.write.clear();
        let framing = encode::head(&mut parts, method, length, keep_alive, &mut self.write).map_err(|e| {
            tracing::warn!(cause = %e, "an answer could not be written; the connection is closed");
            io::Error::other(e)
        })?;
        self.headers = Some(std::mem::take(&mut parts.headers));
        if framing == Framing::Length(0) {
            drop(body);
            write_all(&mut self.io, &mut [IoSlice::new(&self.write)]).await?;
            return Ok(true);
        }
        self.stream(pin!(body), framing, watching).await
    }

    /// Writes the head waiting in the write buffer and then `body` framed as `framing`, frame by frame as each
    /// comes (the head goes with the first frame when that is there at once).
    async fn stream<B>(
        &mut self,
        mut body: std::pin::Pin<&mut B>,
        framing: Framing,
        watching: &mut bool,
    ) -> io::Result<bool>
    where
        B: Body<Data = Bytes, Error: Into<BoxError>>,
    {
        let mut remaining = match framing {
            Framing::Length(n) => n,
            Framing::Chunked | Framing::Close => u64::MAX,
        };
        let mut head_sent = false;
        loop {
            let frame = if head_sent {
                self.reserve();
                tokio::select! {
                    biased;
                    frame = body.frame() => frame,
                    read = self.io.read_buf(&mut self.read), if *watching => match read {
                        Ok(0) | Err(_) => return Ok(false),
                        Ok(_) => {
                            *watching = false;
                            continue;
                        }
                    },
                }
            } else {
                match std::future::poll_fn(|cx| Poll::Ready(body.as_mut().poll_frame(cx))).await {
                    Poll::Ready(frame) => frame,
                    Poll::Pending => {
                        write_all(&mut self.io, &mut [IoSlice::new(&self.write)]).await?;
                        head_sent = true;
                        continue;
                    }
                }
            };
            let head: &[u8] = if head_sent { &[] } else { &self.write };
            head_sent = true;
            let data = match frame {
                None => {
                    // The body ended: the chunked end, or a body shorter than its length (the connection
                    // cannot go on, as with hyper).
                    let end: &[u8] = if framing == Framing::Chunked { b"0\r\n\r\n" } else { b"" };
                    write_all(&mut self.io, &mut [IoSlice::new(head), IoSlice::new(end)]).await?;
                    return Ok(framing == Framing::Chunked);
                }
                Some(Err(e)) => {
                    // A head not sent yet is not sent at all (as with hyper): the client sees the connection
                    // close, not an answer cut short.
                    let e: BoxError = e.into();
                    tracing::debug!(cause = %e, "an answer's body failed; the connection is closed");
                    return Ok(false);
                }
                // Trailers are sent only to a client that asked for them (`TE: trailers`): those go to hyper.
                Some(Ok(frame)) => frame.into_data().unwrap_or_default(),
            };
            let data = data.slice(..usize::try_from(remaining).map_or(data.len(), |r| r.min(data.len())));
            remaining -= data.len() as u64;
            let ended = remaining == 0 || (framing == Framing::Chunked && body.is_end_stream());
            let mut size = [0u8; 18];
            let (size, tail): (&[u8], &[u8]) = match framing {
                Framing::Chunked if data.is_empty() => (&[], if ended { b"0\r\n\r\n" } else { b"" }),
                Framing::Chunked => (chunk_size(data.len(), &mut size), if ended { b"\r\n0\r\n\r\n" } else { b"\r\n" }),
                Framing::Length(_) | Framing::Close => (&[], &[]),
            };
            let mut bufs = [IoSlice::new(head), IoSlice::new(size), IoSlice::new(&data), IoSlice::new(tail)];
            write_all(&mut self.io, &mut bufs).await?;
            if ended {
                return Ok(true);
            }
        }
    }
}

/// `len` in hex with its line end, as a chunk's size line.
fn chunk_size(len: usize, buf: &mut [u8; 18]) -> &[u8] {
    let digits = (usize::BITS - len.leading_zeros()).div_ceil(4).max(1) as usize;
    for (i, b) in buf[..digits].iter_mut().enumerate() {
        *b = b"0123456789ABCDEF"[(len >> (4 * (digits - 1 - i))) & 0xf];
    }
    buf[digits..digits + 2].copy_from_slice(b"\r\n");
    &buf[..digits + 2]
}

/// Writes every byte of `bufs` (in as few writes as the socket takes).
async fn write_all<W: AsyncWrite + Unpin>(io: &mut W, mut bufs: &mut [IoSlice<'_>]) -> io::Result<()> {
    IoSlice::advance_slices(&mut bufs, 0);
    while !bufs.is_empty() {
        match io.write_vectored(bufs).await? {
            0 => return Err(io::ErrorKind::WriteZero.into()),
            n => IoSlice::advance_slices(&mut bufs, n),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
