//! Fixed answers (a placeholder or a static route) as responses.

use http::Response;
use http::header::{CONTENT_TYPE, HeaderValue};

use super::body::ProxyBody;
use super::error::ProxyError;
use super::types::ProxyResponse;
use crate::placeholder::{Bodies, PreparedPlaceholder, resolve_body};

/// The answer `p` gives to a request for `path`; a ConfigMap body is read now (see
/// [`resolve_body`]), and its key's extension sets `Content-Type` unless the response sets one; otherwise the
/// body's first bytes do, as Go's `http.DetectContentType` does for upstream's answers.
pub fn fixed_response(p: &PreparedPlaceholder, path: &str, bodies: &Bodies) -> Result<ProxyResponse, ProxyError> {
    let (body, inferred) = resolve_body(&p.body, path, bodies)?;
    let content_type = inferred.or_else(|| sniff(&body));
    let mut resp = Response::new(ProxyBody::full(body));
    *resp.status_mut() = p.status;
    for (k, v) in &p.headers {
        resp.headers_mut().insert(k.clone(), v.clone());
    }
    if !resp.headers().contains_key(CONTENT_TYPE)
        && let Some(ct) = content_type
    {
        resp.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static(ct));
    }
    Ok(resp)
}

/// The subset of Go's content sniffing (`net/http` sniff.go) a placeholder page needs: HTML by its leading tag,
/// XML, other text, or binary. `None` for an empty body (Go sets no type then).
fn sniff(body: &[u8]) -> Option<&'static str> {
    const HTML: [&[u8]; 17] = [
        b"<!DOCTYPE HTML",
        b"<HTML",
        b"<HEAD",
        b"<SCRIPT",
        b"<IFRAME",
        b"<H1",
        b"<DIV",
        b"<FONT",
        b"<TABLE",
        b"<A",
        b"<STYLE",
        b"<TITLE",
        b"<B",
        b"<BODY",
        b"<BR",
        b"<P",
        b"<!--",
    ];
    let text = body.trim_ascii_start();
    if body.is_empty() {
        return None;
    }
    let tagged = |sig: &[u8]| {
        text.len() > sig.len() && text[..sig.len()].eq_ignore_ascii_case(sig) && matches!(text[sig.len()], b' ' | b'>')
    };
    if HTML.iter().any(|sig| tagged(sig)) {
        return Some("text/html; charset=utf-8");
    }
    if text.starts_with(b"<?xml") {
        return Some("text/xml; charset=utf-8");
    }
    let binary = |b: &u8| matches!(b, 0x00..=0x08 | 0x0B | 0x0E..=0x1A | 0x1C..=0x1F);
    Some(if body.iter().take(512).any(binary) { "application/octet-stream" } else { "text/plain; charset=utf-8" })
}

#[cfg(test)]
mod tests {
    use super::sniff;

    #[test]
    fn placeholder_bodies_without_a_content_type_are_sniffed_as_go_does() {
        assert_eq!(sniff(b"teapot"), Some("text/plain; charset=utf-8"), "the Go add-on's answer to a bare body");
        assert_eq!(sniff(b"  <h1>Loading...</h1>"), Some("text/html; charset=utf-8"));
        assert_eq!(sniff(b"<!doctype html><p>x"), Some("text/html; charset=utf-8"));
        assert_eq!(sniff(b"<?xml version=\"1.0\"?><a/>"), Some("text/xml; charset=utf-8"));
        assert_eq!(sniff(b"{\"status\": \"warming\"}"), Some("text/plain; charset=utf-8"), "Go has no JSON rule");
        assert_eq!(sniff(b"\x00\x01binary"), Some("application/octet-stream"));
        assert_eq!(sniff(b""), None);
    }
}
