//! The request-target checks every listener makes before it routes or answers (pure, no allocation unless a
//! path has dot segments):
//!
//! - the host: exactly one `Host` (RFC 9112 §3.2: more than one, or an invalid value, is a 400), a valid
//!   `host[:port]` (RFC 3986 §3.2.2 and RFC 9110 §7.2: a reg-name, IPv4 or bracketed IP literal, no userinfo,
//!   path, space or comma, a port of digits up to 65535). An absolute-form target's authority wins over
//!   `Host` (RFC 9112 §3.2.2); over HTTP/2, `:authority` and `Host` must agree when both are sent
//!   (RFC 9113 §8.3.1);
//! - the asterisk-form target (`*`) is for `OPTIONS` only;
//! - dot segments (`.`, `..`, also percent-encoded as `%2e`) are removed from the path (RFC 3986 §5.2.4), and
//!   a path that climbs above the root is refused; for matching, escaped unreserved characters (`%61`) count
//!   as themselves (RFC 3986 §6.2.2.2), while the path is forwarded as received.

use std::borrow::Cow;
use std::net::Ipv6Addr;

use http::header::HOST;
use http::{HeaderMap, Method, Uri, Version};

/// How much of a client's value an error message quotes.
pub const QUOTED: usize = 64;

/// At most [`QUOTED`] bytes of `s` (cut at a character boundary), marked when cut.
pub fn quote(s: &str) -> String {
    if s.len() <= QUOTED {
        return s.to_owned();
    }
    let mut end = QUOTED;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    #[error("request has no Host header or authority")]
    MissingHost,
    #[error("request has more than one Host header")]
    DuplicateHost,
    #[error("invalid host {0:?}")]
    InvalidHost(String),
    #[error("userinfo is not allowed in the request target's authority")]
    Userinfo,
    #[error("Host {host:?} differs from the :authority {authority:?}")]
    HostMismatch { host: String, authority: String },
    #[error("the asterisk-form request target is only for OPTIONS")]
    Asterisk,
    #[error("path {0:?} climbs above the root")]
    AboveRoot(String),
}

/// The host a request is for: the target's authority if it has one, else its `Host`. `Ok(None)` when the
/// request names no host and may not (HTTP/1.0, or HTTP/2 without `:authority` and `Host`).
pub fn request_host<'a>(
    version: Version,
    uri: &'a Uri,
    headers: &'a HeaderMap,
) -> Result<Option<&'a str>, TargetError> {
    let mut hosts = headers.get_all(HOST).iter();
    let header = hosts.next();
    if hosts.next().is_some() {
        return Err(TargetError::DuplicateHost);
    }
    let header = match header {
        Some(v) => {
            let h = v.to_str().map_err(|_| TargetError::InvalidHost(quote(&String::from_utf8_lossy(v.as_bytes()))))?;
            Some(valid_host(h)?)
        }
        None => None,
    };
    match uri.authority().map(|a| a.as_str()) {
        Some(a) => {
            if a.contains('@') {
                return Err(TargetError::Userinfo);
            }
            let a = valid_host(a)?;
            if version == Version::HTTP_2
                && let Some(h) = header
                && !h.eq_ignore_ascii_case(a)
            {
                return Err(TargetError::HostMismatch { host: quote(h), authority: quote(a) });
            }
            Ok(Some(a))
        }
        None if header.is_none() && version == Version::HTTP_11 => Err(TargetError::MissingHost),
        None => Ok(header),
    }
}

/// Refuses `*` as the target of anything but `OPTIONS`; `true` for `OPTIONS *` (answered by the server).
pub fn asterisk(method: &Method, uri: &Uri) -> Result<bool, TargetError> {
    if uri.path() != "*" || uri.authority().is_some() {
        return Ok(false);
    }
    if method == Method::OPTIONS { Ok(true) } else { Err(TargetError::Asterisk) }
}

/// `host` if it is a valid `host[:port]` (see the module docs; empty is valid: RFC 9112 §3.2).
pub fn valid_host(host: &str) -> Result<&str, TargetError> {
    let bad = || TargetError::InvalidHost(quote(host));
    let (name, port) = match host.strip_prefix('[') {
        Some(rest) => {
            let end = rest.find(']').ok_or_else(bad)?;
            let literal = &rest[..end];
            if literal.parse::<Ipv6Addr>().is_err() && !ip_future(literal) {
                return Err(bad());
            }
            match &rest[end + 1..] {
                "" => ("[]", None),
                p => ("[]", Some(p.strip_prefix(':').ok_or_else(bad)?)),
            }
        }
        None => match host.rfind(':') {
            Some(i) => (&host[..i], Some(&host[i + 1..])),
            None => (host, None),
        },
    };
    let port_ok = port.is_none_or(|p| {
        p.is_empty()
            || (p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()) && p.parse::<u32>().is_ok_and(|n| n <= 65_535))
    });
    let name_ok = name == "[]" || (reg_name(name) && (port.is_none() || !name.is_empty()));
    if port_ok && name_ok { Ok(host) } else { Err(bad()) }
}

/// RFC 3986 reg-name (which includes IPv4 addresses), less the comma (a list sign in a header).
fn reg_name(name: &str) -> bool {
    let b = name.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if b.len() > i + 2 && b[i + 1].is_ascii_hexdigit() && b[i + 2].is_ascii_hexdigit() => i += 3,
            c if c.is_ascii_alphanumeric() || b"-._~!$&'()*+;=".contains(&c) => i += 1,
            _ => return false,
        }
    }
    true
}

/// RFC 3986 IPvFuture: `v` 1*HEXDIG `.` 1*( unreserved / sub-delims / `:` ).
fn ip_future(s: &str) -> bool {
    let Some(rest) = s.strip_prefix(['v', 'V']) else { return false };
    let Some((version, addr)) = rest.split_once('.') else { return false };
    !version.is_empty()
        && version.bytes().all(|b| b.is_ascii_hexdigit())
        && !addr.is_empty()
        && addr.bytes().all(|c| c.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:".contains(&c))
}

/// 1 for `.`, 2 for `..` (each dot may be written `%2e` or `%2E`), 0 for any other segment.
fn dots(segment: &str) -> usize {
    let b = segment.as_bytes();
    let (mut i, mut n) = (0, 0);
    while i < b.len() {
        if b[i] == b'.' {
            i += 1;
        } else if b.len() >= i + 3 && b[i] == b'%' && b[i + 1] == b'2' && b[i + 2] | 0x20 == b'e' {
            i += 3;
        } else {
            return 0;
        }
        n += 1;
    }
    if n <= 2 { n } else { 0 }
}

/// `path` with its dot segments removed (RFC 3986 §5.2.4), or `None` when it has none (the common case,
/// without allocating). A `..` that would climb above the root is an error, not silently dropped.
pub fn normalize_path(path: &str) -> Result<Option<String>, TargetError> {
    let Some(rest) = path.strip_prefix('/') else { return Ok(None) };
    if !rest.split('/').any(|s| dots(s) > 0) {
        return Ok(None);
    }
    let mut kept: Vec<&str> = Vec::new();
    let mut trailing_slash = false;
    for segment in rest.split('/') {
        trailing_slash = true;
        match dots(segment) {
            1 => {}
            2 => {
                kept.pop().ok_or_else(|| TargetError::AboveRoot(quote(path)))?;
            }
            _ => {
                kept.push(segment);
                trailing_slash = false;
            }
        }
    }
    let mut out = String::with_capacity(path.len());
    for segment in &kept {
        out.push('/');
        out.push_str(segment);
    }
    if trailing_slash || out.is_empty() {
        out.push('/');
    }
    Ok(Some(out))
}

/// `path` with percent-encoded unreserved characters decoded (`%61` → `a`; RFC 3986 §6.2.2.2 makes the two
/// spellings equivalent), for matching only; borrowed, without allocating, when there is nothing to decode.
/// Other escapes stay as they are: `%2F` is not a path separator.
pub fn matching_path(path: &str) -> Cow<'_, str> {
    let b = path.as_bytes();
    let unreserved_at = |i: usize| {
        let hex = |c: u8| (c as char).to_digit(16);
        let byte = hex(*b.get(i + 1)?)? * 16 + hex(*b.get(i + 2)?)?;
        let c = byte as u8;
        (c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'~')).then_some(c)
    };
    let Some(first) = (0..b.len()).find(|&i| b[i] == b'%' && unreserved_at(i).is_some()) else {
        return Cow::Borrowed(path);
    };
    let mut out = Vec::with_capacity(b.len());
    out.extend_from_slice(&b[..first]);
    let mut i = first;
    while i < b.len() {
        match (b[i], unreserved_at(i)) {
            (b'%', Some(c)) => {
                out.push(c);
                i += 3;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    // Only ASCII bytes were replaced by ASCII bytes: the result is as valid UTF-8 as `path`.
    Cow::Owned(String::from_utf8(out).unwrap_or_else(|_| path.to_owned()))
}

#[cfg(test)]
mod tests;
