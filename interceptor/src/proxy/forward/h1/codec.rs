//! HTTP/1.1 heads on the wire: a request head written, a response head parsed with hyper's client's rules
//! (RFC 9112 §6.3, as `hyper::proto::h1::role::Client` reads it: checked side by side in `tests.rs`).

use std::mem::MaybeUninit;

use bytes::{Bytes, BytesMut};
use http::header::{CONTENT_LENGTH, TRANSFER_ENCODING};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Response, StatusCode, Uri, Version};

/// The most header lines of a response head (hyper's client's default).
pub const MAX_HEADERS: usize = 100;
/// The largest response head, with what may follow it in the buffer (hyper's client's default read bound).
pub const MAX_HEAD: usize = 8192 + 4096 * 100;
/// The header lines an answer's map has room for at least: the map becomes the next request's on its client
/// connection (`server/h1/head.rs`), which then needs no growth for a plain request and its forwarded headers.
const MAP_ROOM: usize = 12;

/// Why a response head was refused.
#[derive(Debug, thiserror::Error)]
pub enum HeadError {
    #[error("invalid response head: {0}")]
    Parse(#[from] httparse::Error),
    #[error("invalid response status code")]
    Status,
    #[error("invalid response header")]
    Header,
    #[error("response head too large")]
    TooLarge,
    #[error("an HTTP/1.0 response with Transfer-Encoding")]
    Http10TransferEncoding,
    #[error("invalid Content-Length in the response")]
    ContentLength,
    #[error("the backend switched protocols (101) for a request that asked for no upgrade")]
    UnexpectedUpgrade,
}

/// How a response's body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    Length(u64),
    Chunked,
    /// Until the backend closes the connection.
    Eof,
}

/// A parsed response head.
#[derive(Debug)]
pub struct Head {
    pub response: Response<()>,
    pub framing: Framing,
    /// Whether the connection may carry another request after this answer.
    pub keep_alive: bool,
}

/// Writes the head of a request without a body: `uri` in origin form, `headers` as they are (in their map's
/// order, names in lower case, as hyper writes them).
pub fn write_request(method: &Method, uri: &Uri, headers: &HeaderMap, dst: &mut Vec<u8>) {
    let target = uri.path_and_query().map_or("/", |pq| pq.as_str());
    dst.reserve(32 + target.len() + headers.len() * 32);
    dst.extend_from_slice(method.as_str().as_bytes());
    dst.push(b' ');
    dst.extend_from_slice(target.as_bytes());
    dst.extend_from_slice(b" HTTP/1.1\r\n");
    for (name, value) in headers {
        dst.extend_from_slice(name.as_str().as_bytes());
        dst.extend_from_slice(b": ");
        dst.extend_from_slice(value.as_bytes());
        dst.extend_from_slice(b"\r\n");
    }
    dst.extend_from_slice(b"\r\n");
}

/// The response head at the start of `buf` and what followed it, both taken out of `buf`, skipping
/// informational (1xx) heads; `None` while the head is incomplete. `method` is the request's (a `HEAD` answer
/// has no body). The head's fields and what follows share the bytes read: nothing is copied.
pub fn parse_response(buf: &mut BytesMut, method: &Method) -> Result<Option<(Head, Bytes)>, HeadError> {
    loop {
        let bytes = buf.split().freeze();
        let Some((head, len)) = parse_head(&bytes, method)? else {
            // Incomplete: the bytes go back in front of the buffer's free room (no copy: they are its own).
            let mut whole = BytesMut::from(bytes);
            whole.unsplit(std::mem::take(buf));
            *buf = whole;
            return Ok(None);
        };
        match head {
            Some(head) => return Ok(Some((head, bytes.slice(len..)))),
            // An informational head, skipped: what follows is parsed next (rare; copied).
            None => buf.extend_from_slice(&bytes[len..]),
        }
        if buf.is_empty() {
            return Ok(None);
        }
    }
}

/// The head at the start of `bytes` (`None` for an informational one) and its length; `None` if incomplete.
fn parse_head(bytes: &Bytes, method: &Method) -> Result<Option<(Option<Head>, usize)>, HeadError> {
    let mut lines = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut parsed = httparse::Response::new(&mut []);
    let len =
        match httparse::ParserConfig::default().parse_response_with_uninit_headers(&mut parsed, bytes, &mut lines)? {
            // hyper's client reads no more than this before the head ends.
            httparse::Status::Complete(len) if len > MAX_HEAD => return Err(HeadError::TooLarge),
            httparse::Status::Complete(len) => len,
            httparse::Status::Partial if bytes.len() >= MAX_HEAD => return Err(HeadError::TooLarge),
            httparse::Status::Partial => return Ok(None),
        };
    let status = parsed.code.and_then(|c| StatusCode::from_u16(c).ok()).ok_or(HeadError::Status)?;
    match status.as_u16() {
        101 => return Err(HeadError::UnexpectedUpgrade),
        100..=199 => return Ok(Some((None, len))),
        _ => {}
    }
    let mut headers = HeaderMap::with_capacity(parsed.headers.len().max(MAP_ROOM));
    let mut said = Said::default();
    for h in parsed.headers.iter() {
        if h.name.eq_ignore_ascii_case("connection") && said.hear(h.value) {
            continue;
        }
        if h.name.eq_ignore_ascii_case("keep-alive") {
            continue;
        }
        let name = HeaderName::from_bytes(h.name.as_bytes()).map_err(|_| HeadError::Header)?;
        let value = HeaderValue::from_maybe_shared(bytes.slice_ref(h.value)).map_err(|_| HeadError::Header)?;
        headers.append(name, value);
    }
    let version = if parsed.version == Some(1) { Version::HTTP_11 } else { Version::HTTP_10 };
    let framing = framing(status, method, version, &headers)?;
    let keep_alive = said.keep_alive(version) && framing != Framing::Eof;
    let mut response = Response::new(());
    *response.status_mut() = status;
    *response.version_mut() = version;
    *response.headers_mut() = headers;
    if let Some(reason) = parsed.reason.filter(|&r| Some(r) != status.canonical_reason())
        && let Ok(phrase) = hyper::ext::ReasonPhrase::try_from(bytes.slice_ref(reason.as_bytes()))
    {
        response.extensions_mut().insert(phrase);
    }
    Ok(Some((Some(Head { response, framing, keep_alive }), len)))
}

/// RFC 9112 §6.3, in hyper's client's order.
fn framing(status: StatusCode, method: &Method, version: Version, headers: &HeaderMap) -> Result<Framing, HeadError> {
    if matches!(status.as_u16(), 204 | 304) || method == Method::HEAD {
        return Ok(Framing::Length(0));
    }
    if headers.contains_key(TRANSFER_ENCODING) {
        return match version {
            Version::HTTP_10 => Err(HeadError::Http10TransferEncoding),
            _ if chunked_last(headers) => Ok(Framing::Chunked),
            _ => Ok(Framing::Eof),
        };
    }
    if !headers.contains_key(CONTENT_LENGTH) {
        return Ok(Framing::Eof);
    }
    content_length(headers).map(Framing::Length).ok_or(HeadError::ContentLength)
}

/// Whether `chunked` is the last coding of the last `Transfer-Encoding` line.
fn chunked_last(headers: &HeaderMap) -> bool {
    let last = headers.get_all(TRANSFER_ENCODING).into_iter().next_back();
    last.and_then(|v| v.to_str().ok())
        .and_then(|v| v.rsplit(',').next())
        .is_some_and(|coding| coding.trim().eq_ignore_ascii_case("chunked"))
}

/// Every `Content-Length` value (lines and comma-separated lists) the same number of digits, or `None`.
fn content_length(headers: &HeaderMap) -> Option<u64> {
    let mut length = None;
    for line in &headers.get_all(CONTENT_LENGTH) {
        for v in line.to_str().ok()?.split(',') {
            let v = v.trim();
            if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            let n = v.parse::<u64>().ok()?;
            if length.is_some_and(|l| l != n) {
                return None;
            }
            length = Some(n);
        }
    }
    length
}

/// What the `Connection` lines of a response said of its connection.
///
/// The head handed on leaves out what the forwarder would remove as hop-by-hop anyway (RFC 9110 §7.6.1):
/// the `Keep-Alive` lines and the `Connection` lines that say only `keep-alive`. A `Connection` line that
/// names anything else stays, for the forwarder to remove with the headers it names.
#[derive(Default)]
struct Said {
    close: bool,
    keep_alive: bool,
}

impl Said {
    /// Takes in one `Connection` line; `true` if it says only `keep-alive` (so the head can leave it out).
    fn hear(&mut self, line: &[u8]) -> bool {
        // As `HeaderValue::to_str` reads it: a line with other than visible ASCII says nothing.
        let Some(line) = line.iter().all(|&b| b == b'\t' || (b' '..0x7f).contains(&b)).then_some(line) else {
            return false;
        };
        let mut only_keep_alive = true;
        for token in line.split(|&b| b == b',').map(<[u8]>::trim_ascii) {
            let keep_alive = token.eq_ignore_ascii_case(b"keep-alive");
            self.keep_alive |= keep_alive;
            self.close |= token.eq_ignore_ascii_case(b"close");
            only_keep_alive &= keep_alive;
        }
        only_keep_alive
    }

    /// HTTP/1.1 unless `Connection: close`; HTTP/1.0 only with `Connection: keep-alive`.
    fn keep_alive(&self, version: Version) -> bool {
        match version {
            Version::HTTP_11 => !self.close,
            _ => self.keep_alive,
        }
    }
}

/// The trailer fields of a chunked body (the lines after the last chunk, the empty line included).
pub fn parse_trailers(block: &[u8]) -> Result<HeaderMap, HeadError> {
    let mut lines = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let Ok(httparse::Status::Complete((_, fields))) = httparse::parse_headers(block, &mut lines) else {
        return Err(HeadError::Header);
    };
    let mut trailers = HeaderMap::with_capacity(fields.len());
    for f in fields {
        let name = HeaderName::from_bytes(f.name.as_bytes()).map_err(|_| HeadError::Header)?;
        let value = HeaderValue::from_maybe_shared(Bytes::copy_from_slice(f.value)).map_err(|_| HeadError::Header)?;
        trailers.append(name, value);
    }
    Ok(trailers)
}
