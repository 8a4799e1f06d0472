//! A request head read by our own HTTP/1.1 server half, under hyper's server's rules for the heads it takes:
//! HTTP/1.1, no body (no `Content-Length`, no `Transfer-Encoding`), no `Expect`, no `Upgrade`, no `TE`, not
//! `CONNECT`, within the head limits. Anything else, a head hyper would refuse included, is left to hyper,
//! which answers it as it always has.

use std::mem::MaybeUninit;

use bytes::{Bytes, BytesMut};
use http::header::{CONNECTION, CONTENT_LENGTH, EXPECT, TE, TRANSFER_ENCODING, UPGRADE};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Uri, Version};

use crate::server::body::ClientBody;

/// The most header lines a head we take may have (more, up to the listener's limit, go to hyper; the limit is
/// at least this).
const MAX_HEADERS: usize = 100;
/// The largest head we take (a larger one, up to the listener's limit, goes to hyper; the limit is at least
/// this).
pub(super) const MAX_HEAD: usize = 8192;
/// The header lines the pipeline adds to a request on its way (`X-Forwarded-*`, `Forwarded`, `X-Real-IP`).
const FORWARDED_ROOM: usize = 6;

/// What the start of the read buffer holds.
#[expect(clippy::large_enum_variant, reason = "moved once into the pipeline; a box would be an allocation per request")]
pub(super) enum Head {
    /// Not yet a whole head.
    Partial,
    /// A head we serve: the request, and whether the client keeps the connection open after it.
    Ours(Request<ClientBody>, bool),
    /// A head hyper serves (see the module docs). The buffer is left as it was.
    Hyper,
}

/// The head at the start of `buf`; a head we serve is taken out of it (its fields share its bytes), the
/// bytes after it stay. `headers` is a map to fill (the last answer's, cleared: no allocation).
pub(super) fn take(buf: &mut BytesMut, headers: &mut Option<HeaderMap>) -> Head {
    let bytes = buf.split().freeze();
    let (head, len) = match parse(&bytes, headers) {
        Ok(parsed) => parsed,
        Err(partial) => {
            // The bytes go back in front of the buffer's free room (no copy: they are its own).
            let mut whole = BytesMut::from(bytes);
            whole.unsplit(std::mem::take(buf));
            *buf = whole;
            return if partial && buf.len() < MAX_HEAD { Head::Partial } else { Head::Hyper };
        }
    };
    if len < bytes.len() {
        // Pipelined bytes after the head (rare): copied, so the head's bytes are not kept by the next read.
        buf.extend_from_slice(&bytes[len..]);
    }
    head
}

/// The head in `bytes` and its length; `Err(true)` while incomplete, `Err(false)` for a head hyper serves.
fn parse(bytes: &Bytes, headers: &mut Option<HeaderMap>) -> Result<(Head, usize), bool> {
    let mut lines = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut []);
    let len = match httparse::ParserConfig::default().parse_request_with_uninit_headers(&mut parsed, bytes, &mut lines)
    {
        Ok(httparse::Status::Complete(len)) if len <= MAX_HEAD => len,
        Ok(httparse::Status::Partial) => return Err(true),
        _ => return Err(false),
    };
    if parsed.version != Some(1) {
        return Err(false);
    }
    let method = parsed.method.and_then(|m| Method::from_bytes(m.as_bytes()).ok()).ok_or(false)?;
    if method == Method::CONNECT {
        return Err(false);
    }
    let uri = parsed.path.and_then(|p| Uri::from_maybe_shared(bytes.slice_ref(p.as_bytes())).ok()).ok_or(false)?;
    let mut map = headers.take().unwrap_or_default();
    // Room for the forwarded headers the pipeline adds, so that the map does not grow again.
    map.reserve(parsed.headers.len() + FORWARDED_ROOM);
    let mut keep_alive = true;
    for h in parsed.headers.iter() {
        let Ok(name) = HeaderName::from_bytes(h.name.as_bytes()) else { return Err(false) };
        if [CONTENT_LENGTH, TRANSFER_ENCODING, EXPECT, UPGRADE, TE].contains(&name) {
            return Err(false);
        }
        let Ok(value) = HeaderValue::from_maybe_shared(bytes.slice_ref(h.value)) else { return Err(false) };
        if name == CONNECTION && has_token(&value, "close") {
            keep_alive = false;
        }
        map.append(name, value);
    }
    let mut req = Request::new(ClientBody::Empty);
    *req.method_mut() = method;
    *req.uri_mut() = uri;
    *req.version_mut() = Version::HTTP_11;
    *req.headers_mut() = map;
    Ok((Head::Ours(req, keep_alive), len))
}

/// Whether a comma-separated header value lists `token` (case-insensitive), as hyper reads `Connection`.
pub(super) fn has_token(value: &HeaderValue, token: &str) -> bool {
    value.to_str().is_ok_and(|s| s.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
}
