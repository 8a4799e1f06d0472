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
        // hyper's answer to a client that asked to close (or when it stops): `close` added, once.
        match parts.headers.entry(CONNECTION) {
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
    let is_head = method == Method::HEAD;
    let status = parts.status;
    let can_chunk = !is_head && status != StatusCode::NO_CONTENT && status != StatusCode::NOT_MODIFIED;
    let can_length = status != StatusCode::NO_CONTENT && status != StatusCode::NOT_MODIFIED;
    let http10 = parts.version == Version::HTTP_10;
    let mut last = status == StatusCode::SWITCHING_PROTOCOLS || !*keep_alive;
    dst.reserve(30 + parts.headers.len() * 32);
    status_line(parts, dst);
    let (mut framing, mut wrote_len, mut wrote_date) = (Framing::Length(0), false, false);
    let headers = std::mem::take(&mut parts.headers);
    let mut lines = headers.iter().peekable();
    while let Some((name, first)) = lines.next() {
        // The other values of this name (a map yields them next); every branch takes them all.
        let mut rest = std::iter::from_fn(|| lines.next_if(|(n, _)| *n == name).map(|(_, v)| v));
        match name {
            n if n == CONTENT_LENGTH => {
                if wrote_len {
                    return Err(EncodeError::Framing);
                }
                match body {
                    Some(BodyLength::Known(len)) => {
                        rest.for_each(drop);
                        framing = Framing::Length(len);
                        line(dst, "content-length", first.as_bytes());
                    }
                    Some(BodyLength::Unknown) => {
                        let len = parse_length(first).ok_or(EncodeError::ContentLength)?;
                        if rest.any(|v| parse_length(v) != Some(len)) {
                            return Err(EncodeError::ContentLength);
                        }
                        framing = Framing::Length(len);
                        line(dst, "content-length", first.as_bytes());
                    }
                    None if is_head => {
                        std::iter::once(first).chain(rest).for_each(|v| line(dst, "content-length", v.as_bytes()));
                    }
                    None => {
                        rest.for_each(drop);
                        continue;
                    }
                }
                wrote_len = true;
            }
            n if n == TRANSFER_ENCODING => {
                if wrote_len {
                    return Err(EncodeError::Framing);
                }
                if http10 || !can_chunk {
                    rest.for_each(drop);
                    continue;
                }
                wrote_len = true;
                framing = Framing::Chunked;
                let last = joined(dst, "transfer-encoding", first, rest);
                if !is_chunked(last) {
                    dst.truncate(dst.len() - 2);
                    dst.extend_from_slice(b", chunked\r\n");
                }
            }
            n if n == CONNECTION => {
                let mut close = has_token(first, "close");
                joined(dst, "connection", first, rest.inspect(|v| close |= has_token(v, "close")));
                last |= close;
            }
            n if n == TRAILER => {
                if !http10 && can_chunk {
                    joined(dst, "trailer", first, rest);
                } else {
                    rest.for_each(drop);
                }
            }
            n => {
                wrote_date |= n == DATE;
                std::iter::once(first).chain(rest).for_each(|v| line(dst, n.as_str(), v.as_bytes()));
            }
        }
    }
    parts.headers = headers;
    parts.headers.clear();
    if !wrote_len {
        framing = match body {
            Some(BodyLength::Unknown) if http10 || !can_chunk => Framing::Close,
            Some(BodyLength::Unknown) => {
                dst.extend_from_slice(b"transfer-encoding: chunked\r\n");
                Framing::Chunked
            }
            None | Some(BodyLength::Known(0)) => {
                if can_length && !is_head {
                    dst.extend_from_slice(b"content-length: 0\r\n");
                }
                Framing::Length(0)
            }
            Some(BodyLength::Known(len)) if can_length => {
                line(dst, "content-length", itoa::Buffer::new().format(len).as_bytes());
                Framing::Length(len)
            }
            Some(BodyLength::Known(_)) => Framing::Length(0),
        };
    }
    if !can_chunk {
        framing = Framing::Length(0);
    }
    if !wrote_date {
        dst.extend_from_slice(b"date: ");
        date(dst);
        dst.extend_from_slice(b"\r\n");
    }
    dst.extend_from_slice(b"\r\n");
    if last || framing == Framing::Close {
        *keep_alive = false;
    }
    Ok(framing)
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
