//! Forwarded headers: what the backend is told about the client. Whether a client's own forwarded headers
//! are believed depends on where the connection comes from ([`TrustedProxies`], `HTTPSCALE_TRUSTED_PROXIES`):
//!
//! - from anyone else (the default: nobody is trusted) `X-Forwarded-Host`, `X-Forwarded-Proto`,
//!   `X-Forwarded-Port`, `X-Real-IP` and `Forwarded` are replaced with the interceptor's own values (the host
//!   routed on, `http`, the client's address), so a client cannot pose as another host or scheme;
//! - from a trusted proxy they are kept (the first line of each when repeated) and completed where missing,
//!   and our element is appended to `Forwarded` (RFC 7239 §4);
//! - `X-Forwarded-For` is always appended to, its repeated lines collapsed into one list.

use std::net::IpAddr;
use std::str::FromStr;
use std::sync::Arc;

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
    let ip = client.map(ip_text);
    let ip_value = ip.as_deref().and_then(|ip| HeaderValue::from_str(ip).ok());
    if let Some(ip) = &ip {
        let mut xff = String::new();
        for prior in headers.get_all(&X_FORWARDED_FOR).iter().filter_map(|v| v.to_str().ok()) {
            xff.push_str(prior);
            xff.push_str(", ");
        }
        let value = if xff.is_empty() {
            ip_value.clone()
        } else {
            xff.push_str(ip);
            HeaderValue::try_from(xff).ok()
        };
        set(headers, &X_FORWARDED_FOR, || value, false);
    }
    set(headers, &X_FORWARDED_HOST, || Some(host.clone()), trusted);
    set(headers, &X_FORWARDED_PROTO, || Some(HeaderValue::from_static(proto)), trusted);
    set(headers, &X_REAL_IP, || ip_value, trusted);
    if !trusted {
        headers.remove(&X_FORWARDED_PORT);
    }
    let host = host.to_str().unwrap_or_default();
    // `for="[v6]";host="…";proto=https`: sized once, no reallocation.
    let mut forwarded = String::with_capacity(64 + host.len());
    if trusted {
        for prior in headers.get_all(header::FORWARDED).iter().filter_map(|v| v.to_str().ok()) {
            forwarded.push_str(prior);
            forwarded.push_str(", ");
        }
    }
    match (client, &ip) {
        (Some(IpAddr::V6(_)), Some(ip)) => forwarded.extend(["for=\"[", ip, "]\";"]),
        (Some(IpAddr::V4(_)), Some(ip)) => forwarded.extend(["for=", ip, ";"]),
        _ => {}
    }
    // The host was validated (no quote or backslash), so it can be quoted as it is.
    forwarded.extend(["host=\"", host, "\";proto=", proto]);
    set(headers, &header::FORWARDED, || HeaderValue::try_from(forwarded).ok(), false);
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
