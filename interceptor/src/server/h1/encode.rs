//! An answer's head on the wire, written as hyper's server writes it (`hyper::proto::h1::role::Server`,
//! checked side by side in `tests.rs`): the status line (a kept reason phrase, else the canonical one), the
//! headers in their map's order with names in lower case and the lines of one name's `Connection`,
//! `Transfer-Encoding` or `Trailer` joined, then the framing hyper would add and a cached `Date`.

use std::cell::RefCell;
use std::time::{SystemTime, UNIX_EPOCH};

use http::header::{CONNECTION, CONTENT_LENGTH, DATE, TRAILER, TRANSFER_ENCODING};
use http::response::Parts;
use http::{HeaderValue, Method, StatusCode, Version};

use super::head::has_token;

/// How the answer's body goes on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Framing {
    /// Exactly this many bytes (none for an answer that cannot have a body).
    Length(u64),
    Chunked,
    /// Until the connection closes (an HTTP/1.0 answer of unknown length).
    Close,
}

/// The body's length as the answer's body tells it: `None` when it has ended already.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum BodyLength {
    Known(u64),
    Unknown,
}

/// Why an answer's head could not be written (hyper closes the connection without an answer too).
#[derive(Debug, thiserror::Error)]
pub(super) enum EncodeError {
    #[error("the answer's Content-Length is invalid or contradicts itself")]
    ContentLength,
    #[error("the answer has a Content-Length after its Transfer-Encoding, or the reverse")]
    Framing,
}

/// Writes the head of `parts` into `dst` for a request made with `method`; `keep_alive` is whether the
/// connection stays open after it, and comes back `false` if the answer closes it. Returns the body's framing.
pub(super) fn head(
    parts: &mut Parts,
    method: &Method,
    body: Option<BodyLength>,
    keep_alive: &mut bool,
    dst: &mut Vec<u8>,
) -> Result<Framing, EncodeError> {
    if parts.status.is_informational() && parts.status != StatusCode::SWITCHING_PROTOCOLS {
        // hyper's server answers no 1xx from a service: it writes a bare 500 instead and closes.
        *parts = http::Response::new(()).into_parts().0;
        parts.status = StatusCode::INTERNAL_SERVER_ERROR;
        *keep_alive = false;
        return head(parts, method, None, &mut true, dst);
    }
    if !*keep_alive {
        add_close(&mut parts.headers);
    }
    let allows = Allows::of(method, parts);
    dst.reserve(30 + parts.headers.len() * 32);
    status_line(parts, dst);
    let headers = std::mem::take(&mut parts.headers);
    let written = header_lines(&headers, allows, body, dst);
    parts.headers = headers;
    parts.headers.clear();
    let written = written?;
    let framing = match written.framing {
        Some(_) if !allows.chunked => Framing::Length(0),
        Some(framing) => framing,
        None => implicit_framing(allows, body, dst),
    };
    if !written.date {
        dst.extend_from_slice(b"date: ");
        date(dst);
        dst.extend_from_slice(b"\r\n");
    }
    dst.extend_from_slice(b"\r\n");
    if written.close || parts.status == StatusCode::SWITCHING_PROTOCOLS || framing == Framing::Close {
        *keep_alive = false;
    }
    Ok(framing)
}

/// What an answer may carry, by the request's method and the answer's status and version (hyper's rules).
#[derive(Debug, Clone, Copy)]
struct Allows {
    is_head: bool,
    /// A body at all, and so chunked framing (not for `HEAD`, `204`, `304`).
    chunked: bool,
    /// A `Content-Length` (not for `204`, `304`; for `HEAD`, yes).
    length: bool,
    http10: bool,
}

impl Allows {
    fn of(method: &Method, parts: &Parts) -> Self {
        let is_head = method == Method::HEAD;
        let length = parts.status != StatusCode::NO_CONTENT && parts.status != StatusCode::NOT_MODIFIED;
        Self { is_head, chunked: length && !is_head, length, http10: parts.version == Version::HTTP_10 }
    }
}

/// What the header lines said about the rest of the head.
#[derive(Debug, Default)]
struct Written {
    /// The framing a `Content-Length` or `Transfer-Encoding` line set.
    framing: Option<Framing>,
    /// A `Connection` line said `close`.
    close: bool,
    /// The answer has its own `Date`.
    date: bool,
}

/// hyper's answer to a client that asked to close (or when it stops): `close` added to `Connection`, once.
fn add_close(headers: &mut http::HeaderMap) {
    match headers.entry(CONNECTION) {
        http::header::Entry::Occupied(mut e) => {
            if !e.iter().any(|v| has_token(v, "close")) {
                e.append(HeaderValue::from_static("close"));
            }
        }
        http::header::Entry::Vacant(e) => {
            e.insert(HeaderValue::from_static("close"));
        }
    }
}

/// Writes every header line, the values of one name together, and says what they set.
fn header_lines(
    headers: &http::HeaderMap,
    allows: Allows,
    body: Option<BodyLength>,
    dst: &mut Vec<u8>,
) -> Result<Written, EncodeError> {
    let mut written = Written::default();
    let mut lines = headers.iter().peekable();
    while let Some((name, first)) = lines.next() {
        // The other values of this name (a map yields them next); whatever a branch leaves is skipped after it.
        let mut rest = std::iter::from_fn(|| lines.next_if(|(n, _)| *n == name).map(|(_, v)| v));
        match name {
            n if n == CONTENT_LENGTH || n == TRANSFER_ENCODING => {
                if written.framing.is_some() {
                    return Err(EncodeError::Framing);
                }
                written.framing = if n == CONTENT_LENGTH {
                    content_length(first, &mut rest, body, allows.is_head, dst)?
                } else {
                    transfer_encoding(first, &mut rest, allows, dst)
                };
            }
            n if n == CONNECTION => {
                let mut close = has_token(first, "close");
                joined(dst, "connection", first, (&mut rest).inspect(|v| close |= has_token(v, "close")));
                written.close |= close;
            }
            n if n == TRAILER => {
                if !allows.http10 && allows.chunked {
                    joined(dst, "trailer", first, &mut rest);
                }
            }
            n => {
                written.date |= n == DATE;
                std::iter::once(first).chain(&mut rest).for_each(|v| line(dst, n.as_str(), v.as_bytes()));
            }
        }
        rest.for_each(drop);
    }
    Ok(written)
}

/// The `Content-Length` lines: hyper trusts a body of known length, checks the lines of a body of unknown
/// length, keeps them on an answer to `HEAD` and drops them from an answer without a body.
fn content_length<'a>(
    first: &'a HeaderValue,
    rest: &mut impl Iterator<Item = &'a HeaderValue>,
    body: Option<BodyLength>,
    is_head: bool,
    dst: &mut Vec<u8>,
) -> Result<Option<Framing>, EncodeError> {
    let framing = match body {
        Some(BodyLength::Known(len)) => Framing::Length(len),
        Some(BodyLength::Unknown) => {
            let len = parse_length(first).ok_or(EncodeError::ContentLength)?;
            if rest.any(|v| parse_length(v) != Some(len)) {
                return Err(EncodeError::ContentLength);
            }
            Framing::Length(len)
        }
        None if is_head => {
            std::iter::once(first).chain(rest).for_each(|v| line(dst, "content-length", v.as_bytes()));
            return Ok(Some(Framing::Length(0)));
        }
        None => return Ok(None),
    };
    line(dst, "content-length", first.as_bytes());
    Ok(Some(framing))
}

/// The `Transfer-Encoding` lines, joined, completed with `chunked`; dropped where no chunked body may go.
fn transfer_encoding<'a>(
    first: &'a HeaderValue,
    rest: &mut impl Iterator<Item = &'a HeaderValue>,
    allows: Allows,
    dst: &mut Vec<u8>,
) -> Option<Framing> {
    if allows.http10 || !allows.chunked {
        return None;
    }
    if !is_chunked(joined(dst, "transfer-encoding", first, rest)) {
        dst.truncate(dst.len() - 2);
        dst.extend_from_slice(b", chunked\r\n");
    }
    Some(Framing::Chunked)
}

/// The framing hyper adds when no header line set one, by what the body says of its length.
fn implicit_framing(allows: Allows, body: Option<BodyLength>, dst: &mut Vec<u8>) -> Framing {
    let framing = match body {
        Some(BodyLength::Unknown) if allows.http10 || !allows.chunked => Framing::Close,
        Some(BodyLength::Unknown) => {
            dst.extend_from_slice(b"transfer-encoding: chunked\r\n");
            Framing::Chunked
        }
        None | Some(BodyLength::Known(0)) => {
            if allows.length && !allows.is_head {
                dst.extend_from_slice(b"content-length: 0\r\n");
            }
            Framing::Length(0)
        }
        Some(BodyLength::Known(len)) if allows.length => {
            line(dst, "content-length", itoa::Buffer::new().format(len).as_bytes());
            Framing::Length(len)
        }
        Some(BodyLength::Known(_)) => Framing::Length(0),
    };
    if allows.chunked { framing } else { Framing::Length(0) }
}

fn status_line(parts: &Parts, dst: &mut Vec<u8>) {
    let reason = parts.extensions.get::<hyper::ext::ReasonPhrase>();
    if parts.version == Version::HTTP_11 && parts.status == StatusCode::OK && reason.is_none() {
        dst.extend_from_slice(b"HTTP/1.1 200 OK\r\n");
        return;
    }
    dst.extend_from_slice(if parts.version == Version::HTTP_10 { b"HTTP/1.0 " } else { b"HTTP/1.1 " });
    dst.extend_from_slice(parts.status.as_str().as_bytes());
    dst.push(b' ');
    match reason {
        Some(reason) => dst.extend_from_slice(reason.as_bytes()),
        None => dst.extend_from_slice(parts.status.canonical_reason().unwrap_or("<none>").as_bytes()),
    }
    dst.extend_from_slice(b"\r\n");
}

fn line(dst: &mut Vec<u8>, name: &str, value: &[u8]) {
    dst.extend_from_slice(name.as_bytes());
    dst.extend_from_slice(b": ");
    dst.extend_from_slice(value);
    dst.extend_from_slice(b"\r\n");
}

/// One line for all the values of a name, comma-separated; returns the last value.
fn joined<'a>(
    dst: &mut Vec<u8>,
    name: &str,
    first: &'a HeaderValue,
    rest: impl Iterator<Item = &'a HeaderValue>,
) -> &'a HeaderValue {
    dst.extend_from_slice(name.as_bytes());
    dst.extend_from_slice(b": ");
    dst.extend_from_slice(first.as_bytes());
    let mut last = first;
    for v in rest {
        dst.extend_from_slice(b", ");
        dst.extend_from_slice(v.as_bytes());
        last = v;
    }
    dst.extend_from_slice(b"\r\n");
    last
}

/// A `Content-Length` value as hyper reads it: digits only.
fn parse_length(value: &HeaderValue) -> Option<u64> {
    let v = value.as_bytes();
    if v.is_empty() || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(v).ok()?.parse().ok()
}

/// Whether a `Transfer-Encoding` value's last coding is `chunked` (hyper's `is_chunked_`).
fn is_chunked(value: &HeaderValue) -> bool {
    value
        .to_str()
        .ok()
        .and_then(|s| s.rsplit(',').next())
        .is_some_and(|last| last.trim().eq_ignore_ascii_case("chunked"))
}

/// The current time as an HTTP date, formatted once a second per thread.
fn date(dst: &mut Vec<u8>) {
    thread_local! {
        static CACHED: RefCell<(u64, [u8; 29])> = const { RefCell::new((u64::MAX, [0; 29])) };
    }
    let now = SystemTime::now();
    let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    CACHED.with_borrow_mut(|(at, text)| {
        if *at != secs {
            let formatted = httpdate::fmt_http_date(now);
            if formatted.len() == text.len() {
                text.copy_from_slice(formatted.as_bytes());
                *at = secs;
            }
        }
        dst.extend_from_slice(text);
    });
}
