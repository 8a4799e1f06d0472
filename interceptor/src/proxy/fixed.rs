//! Fixed answers (a placeholder or a static route) as responses.

use http::Response;
use http::header::{CONTENT_TYPE, HeaderValue};

use super::body::ProxyBody;
use super::error::ProxyError;
use super::types::ProxyResponse;
use crate::placeholder::{Bodies, PreparedPlaceholder, resolve_body};

/// The answer `p` gives to a request for `path`; a ConfigMap body is read now (see
/// [`resolve_body`]). Unless the response sets a `Content-Type`, a ConfigMap key's extension gives it, else
/// the body's first bytes do ([`crate::sniff`]), as upstream's Go server; an empty body gets none.
pub fn fixed_response(p: &PreparedPlaceholder, path: &str, bodies: &Bodies) -> Result<ProxyResponse, ProxyError> {
    let (body, by_key) = resolve_body(&p.body, path, bodies)?;
    let content_type = by_key.or_else(|| (!body.is_empty()).then(|| crate::sniff::detect(&body)));
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
