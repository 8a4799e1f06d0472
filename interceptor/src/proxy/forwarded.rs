//! Forwarded headers: what the backend is told about the client. Whether a client's own forwarded headers
//! are believed depends on where the connection comes from ([`TrustedProxies`], `HTTPSCALE_TRUSTED_PROXIES`):
//!
//! - from anyone else (the default: nobody is trusted) `X-Forwarded-Host`, `X-Forwarded-Proto`,
//!   `X-Forwarded-Port`, `X-Real-IP` and `Forwarded` are replaced with the interceptor's own values (the host
//!   routed on, `http`, the client's address), so a client cannot pose as another host or scheme;
//! - from a trusted proxy they are kept (the first line of each when repeated) and completed where missing,
//!   and our element is appended to `Forwarded` (RFC 7239 §4);
//! - `X-Forwarded-For` is always appended to, its repeated lines collapsed into one list.

use std::cell::RefCell;
use std::net::IpAddr;
use std::str::FromStr;
use std::sync::Arc;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_PORT: HeaderName = HeaderName::from_static("x-forwarded-port");
static X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");

/// An address block (`10.0.0.0/8`, `fd00::/8`, or one address).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

/// Why a trusted-proxy entry is not an address block (clap shows it for `HTTPSCALE_TRUSTED_PROXIES`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CidrError {
    #[error("{0:?} is not an address or CIDR block")]
    Address(String),
    #[error("{0:?}: bad prefix length")]
    Prefix(String),
}

impl FromStr for Cidr {
    type Err = CidrError;

    fn from_str(s: &str) -> Result<Self, CidrError> {
        let (addr, prefix) = s.trim().split_once('/').map_or((s.trim(), None), |(a, p)| (a, Some(p)));
        let addr: IpAddr = addr.parse().map_err(|_| CidrError::Address(s.to_owned()))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p.parse::<u8>().ok().filter(|p| *p <= max).ok_or_else(|| CidrError::Prefix(s.to_owned()))?,
        };
        Ok(Self { addr, prefix })
    }
}

impl Cidr {
    pub fn contains(&self, ip: IpAddr) -> bool {
        let bits = |ip: IpAddr| match ip.to_canonical() {
            IpAddr::V4(v4) => (u128::from(u32::from(v4)) << 96, 32),
            IpAddr::V6(v6) => (u128::from(v6), 128),
        };
        let ((net, net_len), (addr, addr_len)) = (bits(self.addr), bits(ip));
        let prefix = u32::from(self.prefix);
        net_len == addr_len && (prefix == 0 || (net ^ addr) >> (128 - prefix) == 0)
    }
}

/// The proxies whose forwarded headers are believed (see the module docs); empty by default.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies(Arc<[Cidr]>);

impl TrustedProxies {
    pub fn new(blocks: Vec<Cidr>) -> Self {
        Self(blocks.into())
    }

    pub fn trusts(&self, peer: Option<IpAddr>) -> bool {
        peer.is_some_and(|ip| self.0.iter().any(|c| c.contains(ip)))
    }
}

/// Replaces `name` with `value`, or (from a trusted proxy) keeps its first line and sets it only if absent.
fn set(headers: &mut HeaderMap, name: &HeaderName, value: impl FnOnce() -> Option<HeaderValue>, keep: bool) {
    let first = if keep { headers.get(name).cloned() } else { None };
    if let Some(v) = first.or_else(value) {
        headers.insert(name, v);
    } else {
        headers.remove(name);
    }
}

/// Sets the forwarded headers of a request from `client`, routed on `host`, that arrived on the plain
/// listener (`http`) or the TLS one (`https`). The client's address is written out once and shared by the
/// headers that carry it; the values are assembled without the formatting machinery (this runs per request).
pub fn set_forwarded(headers: &mut HeaderMap, client: Option<IpAddr>, host: &HeaderValue, trusted: bool, tls: bool) {
    let proto = if tls { "https" } else { "http" };
    let (ip, element) = ours(client, host, tls);
    if let Some(ip) = &ip {
        let value = after_priors(headers, &X_FORWARDED_FOR, ip);
        set(headers, &X_FORWARDED_FOR, || value, false);
    }
    set(headers, &X_FORWARDED_HOST, || Some(host.clone()), trusted);
    set(headers, &X_FORWARDED_PROTO, || Some(HeaderValue::from_static(proto)), trusted);
    set(headers, &X_REAL_IP, || ip, trusted);
    if !trusted {
        headers.remove(&X_FORWARDED_PORT);
    }
    let value = if trusted { after_priors(headers, &header::FORWARDED, &element) } else { Some(element) };
    set(headers, &header::FORWARDED, || value, false);
}

/// `ours` after the lines of `name` already there, as one comma-separated list.
fn after_priors(headers: &HeaderMap, name: &HeaderName, ours: &HeaderValue) -> Option<HeaderValue> {
    let mut list = String::new();
    for prior in headers.get_all(name).iter().filter_map(|v| v.to_str().ok()) {
        list.push_str(prior);
        list.push_str(", ");
    }
    if list.is_empty() {
        return Some(ours.clone());
    }
    list.push_str(ours.to_str().unwrap_or_default());
    HeaderValue::try_from(list).ok()
}

/// What we say of a client reached at a host: its address as text, and our `Forwarded` element.
struct Ours {
    client: Option<IpAddr>,
    /// Our own copy (not a slice of a connection's read buffer, which it would keep alive).
    host: HeaderValue,
    tls: bool,
    ip: Option<HeaderValue>,
    element: HeaderValue,
}

thread_local! {
    /// The values this thread made last: the requests of one connection, and of one client's connections,
    /// share them (a reference-counted copy each) instead of formatting them anew.
    static LAST: RefCell<Option<Ours>> = const { RefCell::new(None) };
}

/// The client's address as text and our `Forwarded` element, made anew only when they differ from the last.
fn ours(client: Option<IpAddr>, host: &HeaderValue, tls: bool) -> (Option<HeaderValue>, HeaderValue) {
    LAST.with_borrow_mut(|last| {
        let ours = match last.take() {
            Some(o) if o.client == client && o.tls == tls && o.host == host => o,
            _ => Ours::new(client, host, tls),
        };
        let values = (ours.ip.clone(), ours.element.clone());
        *last = Some(ours);
        values
    })
}

impl Ours {
    fn new(client: Option<IpAddr>, host: &HeaderValue, tls: bool) -> Self {
        let ip = client.map(ip_text);
        let text = host.to_str().unwrap_or_default();
        let mut element = String::with_capacity(64 + text.len());
        match (client, &ip) {
            (Some(IpAddr::V6(_)), Some(ip)) => element.extend(["for=\"[", ip, "]\";"]),
            (Some(IpAddr::V4(_)), Some(ip)) => element.extend(["for=", ip, ";"]),
            _ => {}
        }
        element.extend(["host=\"", text, "\";proto=", if tls { "https" } else { "http" }]);
        let shared = |s: String| HeaderValue::from_maybe_shared(Bytes::from(s)).ok();
        Self {
            client,
            host: HeaderValue::from_bytes(host.as_bytes()).unwrap_or_else(|_| HeaderValue::from_static("")),
            tls,
            ip: ip.and_then(shared),
            element: shared(element).unwrap_or_else(|| HeaderValue::from_static("")),
        }
    }
}

/// An address as `Display` writes it; IPv4 (the usual client) digit by digit.
fn ip_text(ip: IpAddr) -> String {
    let IpAddr::V4(v4) = ip else { return ip.to_string() };
    let mut s = String::with_capacity(15);
    for (i, octet) in v4.octets().into_iter().enumerate() {
        if i > 0 {
            s.push('.');
        }
        if octet >= 100 {
            s.push(char::from(b'0' + octet / 100));
        }
        if octet >= 10 {
            s.push(char::from(b'0' + octet / 10 % 10));
        }
        s.push(char::from(b'0' + octet % 10));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.append(HeaderName::try_from(*k).unwrap(), HeaderValue::from_str(v).unwrap());
        }
        m
    }

    const SPOOFED: &[(&str, &str)] = &[
        ("x-forwarded-for", "10.0.0.1"),
        ("x-forwarded-for", "10.0.0.2"),
        ("x-forwarded-host", "evil.example"),
        ("x-forwarded-host", "evil2.example"),
        ("x-forwarded-proto", "https"),
        ("x-forwarded-port", "443"),
        ("x-real-ip", "1.2.3.4"),
        ("forwarded", "for=1.2.3.4;proto=https"),
    ];

    #[test]
    fn an_untrusted_clients_values_are_replaced_and_xff_appended() {
        let mut h = map(SPOOFED);
        set_forwarded(
            &mut h,
            Some("127.0.0.1".parse().unwrap()),
            &HeaderValue::from_static("app.local:8080"),
            false,
            false,
        );
        assert_eq!(h.get_all("x-forwarded-for").iter().collect::<Vec<_>>(), ["10.0.0.1, 10.0.0.2, 127.0.0.1"]);
        assert_eq!(h.get_all("x-forwarded-host").iter().collect::<Vec<_>>(), ["app.local:8080"]);
        assert_eq!(h["x-forwarded-proto"], "http");
        assert_eq!(h["x-real-ip"], "127.0.0.1");
        assert!(!h.contains_key("x-forwarded-port"));
        assert_eq!(
            h.get_all("forwarded").iter().collect::<Vec<_>>(),
            ["for=127.0.0.1;host=\"app.local:8080\";proto=http"]
        );
    }

    #[test]
    fn a_trusted_proxys_values_are_kept_first_line_only() {
        let mut h = map(SPOOFED);
        let ip: IpAddr = "::1".parse().unwrap();
        set_forwarded(&mut h, Some(ip), &HeaderValue::from_static("app.local"), true, false);
        assert_eq!(h.get_all("x-forwarded-host").iter().collect::<Vec<_>>(), ["evil.example"]);
        assert_eq!(h["x-forwarded-proto"], "https");
        assert_eq!(h["x-forwarded-port"], "443");
        assert_eq!(h["x-real-ip"], "1.2.3.4");
        assert_eq!(h["forwarded"], "for=1.2.3.4;proto=https, for=\"[::1]\";host=\"app.local\";proto=http");
        let mut h = HeaderMap::new();
        set_forwarded(&mut h, Some(ip), &HeaderValue::from_static("app.local"), true, false);
        assert_eq!((h["x-forwarded-host"].to_str().unwrap(), h["x-real-ip"].to_str().unwrap()), ("app.local", "::1"));
    }

    #[test]
    fn values_made_for_a_client_and_host_are_shared_until_either_changes() {
        let forwarded = |ip: &str, host: &'static str, tls: bool| {
            let mut h = HeaderMap::new();
            set_forwarded(&mut h, Some(ip.parse().unwrap()), &HeaderValue::from_static(host), false, tls);
            (h["x-forwarded-for"].clone(), h["forwarded"].clone())
        };
        let first = forwarded("10.0.0.1", "a.local", false);
        let again = forwarded("10.0.0.1", "a.local", false);
        assert_eq!(first, again);
        assert_eq!(first.1.as_bytes().as_ptr(), again.1.as_bytes().as_ptr(), "the same bytes, not made anew");
        assert_eq!(first.0.as_bytes().as_ptr(), again.0.as_bytes().as_ptr());
        let cases = [
            ("10.0.0.2", "a.local", false, "for=10.0.0.2;host=\"a.local\";proto=http"),
            ("10.0.0.2", "b.local", false, "for=10.0.0.2;host=\"b.local\";proto=http"),
            ("10.0.0.2", "b.local", true, "for=10.0.0.2;host=\"b.local\";proto=https"),
            ("::1", "b.local", true, "for=\"[::1]\";host=\"b.local\";proto=https"),
            ("10.0.0.1", "a.local", false, "for=10.0.0.1;host=\"a.local\";proto=http"),
        ];
        for (ip, host, tls, element) in cases {
            assert_eq!(
                forwarded(ip, host, tls),
                (HeaderValue::from_str(ip).unwrap(), HeaderValue::from_static(element))
            );
        }
    }

    #[test]
    fn addresses_are_written_as_display_writes_them() {
        for ip in ["0.0.0.0", "127.0.0.1", "10.20.100.255", "255.255.255.255", "1.10.100.9", "::1", "fd00::ab:1"] {
            let ip: IpAddr = ip.parse().unwrap();
            assert_eq!(ip_text(ip), ip.to_string());
        }
    }

    #[test]
    fn cidr_blocks_match_their_addresses_only() {
        let trusted = TrustedProxies::new(vec![
            "10.0.0.0/8".parse().unwrap(),
            "fd00::/8".parse().unwrap(),
            "127.0.0.1".parse().unwrap(),
        ]);
        for yes in ["10.1.2.3", "fd12::1", "127.0.0.1", "::ffff:10.0.0.1"] {
            assert!(trusted.trusts(Some(yes.parse().unwrap())), "{yes}");
        }
        for no in ["11.0.0.1", "fe80::1", "127.0.0.2", "::1"] {
            assert!(!trusted.trusts(Some(no.parse().unwrap())), "{no}");
        }
        assert!(!TrustedProxies::default().trusts(Some("10.0.0.1".parse().unwrap())));
        assert!("0.0.0.0/0".parse::<Cidr>().unwrap().contains("8.8.8.8".parse().unwrap()));
        assert!("10.0.0.0/33".parse::<Cidr>().is_err() && "nope".parse::<Cidr>().is_err());
    }
}
