//! The chunked transfer coding (RFC 9112 §7.1) of a response body, decoded from a connection's read buffer
//! as its bytes arrive: data without a copy, the trailer fields at the end. As strict as hyper's decoder
//! (checked side by side in `tests.rs`): CRLF line ends, at least one hex digit, no overflow, bounded
//! extensions and trailers.

use bytes::{Buf, Bytes, BytesMut};
use http::HeaderMap;

use super::codec::{HeadError, parse_trailers};

/// The most bytes of chunk extensions a body may carry in all.
const MAX_EXTENSIONS: u64 = 16 * 1024;
/// The largest trailer section.
const MAX_TRAILERS: usize = 16 * 1024;

/// What the next bytes of a chunked body gave.
#[derive(Debug)]
pub enum Chunk {
    Data(Bytes),
    Trailers(HeaderMap),
    End,
}

#[derive(Debug, thiserror::Error)]
#[error("invalid chunked body from the backend: {0}")]
pub struct ChunkError(&'static str);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// The first hex digit of a size line.
    Start,
    Size,
    /// Spaces after the size.
    Space,
    Extension,
    SizeLf,
    Data,
    DataCr,
    DataLf,
    /// After the last chunk: the empty line, or trailer fields.
    EndCr,
    EndLf,
    Trailers,
    Done,
}

/// A chunked body's decoding state.
#[derive(Debug)]
pub struct Chunked {
    state: State,
    size: u64,
    extensions: u64,
}

impl Default for Chunked {
    fn default() -> Self {
        Self { state: State::Start, size: 0, extensions: 0 }
    }
}

impl Chunked {
    /// The next piece of the body from `buf` (consumed), or `None` until more bytes arrive.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Chunk>, ChunkError> {
        loop {
            match self.state {
                State::Done => return Ok(Some(Chunk::End)),
                State::Data => {
                    if buf.is_empty() {
                        return Ok(None);
                    }
                    let n = buf.len().min(usize::try_from(self.size).unwrap_or(usize::MAX));
                    self.size -= n as u64;
                    if self.size == 0 {
                        self.state = State::DataCr;
                    }
                    return Ok(Some(Chunk::Data(buf.split_to(n).freeze())));
                }
                State::Trailers => return self.trailers(buf),
                _ => {}
            }
            let Some(&byte) = buf.first() else { return Ok(None) };
            self.state = self.step(byte)?;
            if self.state != State::Trailers {
                buf.advance(1);
            }
        }
    }

    /// One byte of a size line, of the line end after data, or of the end.
    fn step(&mut self, byte: u8) -> Result<State, ChunkError> {
        let digit = |b: u8| (b as char).to_digit(16).map(u64::from);
        Ok(match (self.state, byte) {
            (State::Start | State::Size, b) if let Some(d) = digit(b) => {
                self.size =
                    self.size.checked_mul(16).and_then(|s| s.checked_add(d)).ok_or(ChunkError("size overflow"))?;
                State::Size
            }
            (State::Start, _) => return Err(ChunkError("missing size digit")),
            (State::Size | State::Space, b' ' | b'\t') => State::Space,
            (State::Size | State::Space, b';') => State::Extension,
            (State::Size | State::Space | State::Extension, b'\r') => State::SizeLf,
            (State::Extension, b'\n') => return Err(ChunkError("newline in a chunk extension")),
            (State::Extension, _) => {
                self.extensions += 1;
                if self.extensions >= MAX_EXTENSIONS {
                    return Err(ChunkError("chunk extensions over the limit"));
                }
                State::Extension
            }
            (State::SizeLf, b'\n') if self.size == 0 => State::EndCr,
            (State::SizeLf, b'\n') => State::Data,
            (State::DataCr, b'\r') => State::DataLf,
            (State::DataLf, b'\n') => {
                self.size = 0;
                State::Start
            }
            (State::EndCr, b'\r') => State::EndLf,
            (State::EndCr, _) => State::Trailers,
            (State::EndLf, b'\n') => State::Done,
            _ => return Err(ChunkError("invalid size line or chunk end")),
        })
    }

    /// The trailer section, once its empty line has arrived.
    fn trailers(&mut self, buf: &mut BytesMut) -> Result<Option<Chunk>, ChunkError> {
        let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
            return if buf.len() > MAX_TRAILERS { Err(ChunkError("trailers too large")) } else { Ok(None) };
        };
        if end + 4 > MAX_TRAILERS {
            return Err(ChunkError("trailers too large"));
        }
        let block = buf.split_to(end + 4);
        let trailers = parse_trailers(&block).map_err(|_: HeadError| ChunkError("invalid trailer field"))?;
        self.state = State::Done;
        Ok(Some(Chunk::Trailers(trailers)))
    }
}
