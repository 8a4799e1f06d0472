//! Host and path matching, the one definition both the routing table (indexed) and a route's own rules
//! (static routes, checked one by one) use.
//!
//! - Hosts compare without their port, without a trailing dot and case-insensitively (RFC 9110 §4.2.3;
//!   upstream #1082 is the bug this fixes). A pattern is an exact host, `*.suffix` (any depth below the
//!   suffix) or the catch-all (`*`, or empty).
//! - Path prefixes match per segment: `/api` matches `/api` and `/api/x`, not `/apix`. Surrounding slashes
//!   are not significant (`/api/` is `/api`, `/` matches everything).
//!
//! Pure, and allocation-free unless a host has upper-case letters or a trailing dot.

use std::borrow::Cow;

/// Removes a `:port` suffix, keeping bracketed IPv6 literals whole.
pub fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host.find(']').map_or(host, |end| &host[..=end]);
    }
    match host.rfind(':') {
        Some(i) if host[..i].find(':').is_none() => &host[..i],
        _ => host,
    }
}

/// The comparable form of a host: port removed, trailing dot removed, lower-case.
pub fn normalize_host(host: &str) -> Cow<'_, str> {
    let h = strip_port(host);
    let h = h.strip_suffix('.').unwrap_or(h);
    if h.bytes().any(|b| b.is_ascii_uppercase()) { Cow::Owned(h.to_ascii_lowercase()) } else { Cow::Borrowed(h) }
}

/// What a host pattern matches.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum HostPattern<'a> {
    /// One host (normalised).
    Exact(Cow<'a, str>),
    /// Every host strictly below this suffix (normalised, without the leading `*.`).
    Below(Cow<'a, str>),
    /// Every host.
    Any,
}

impl<'a> HostPattern<'a> {
    /// Reads a pattern as written in a route (`example.com`, `*.example.com`, `*` or empty).
    pub fn parse(pattern: &'a str) -> Self {
        match pattern {
            "" | "*" => Self::Any,
            p => match p.strip_prefix("*.") {
                Some(suffix) => Self::Below(normalize_host(suffix)),
                None => Self::Exact(normalize_host(p)),
            },
        }
    }

    /// Whether `host` (normalised, see [`normalize_host`]) matches.
    pub fn matches(&self, host: &str) -> bool {
        match self {
            Self::Any => true,
            Self::Exact(h) => h == host,
            Self::Below(suffix) => parent_domains(host).any(|d| d == suffix),
        }
    }
}

/// The domains strictly above `host`, nearest first: `a.b.c` gives `b.c`, then `c`.
pub fn parent_domains(host: &str) -> impl Iterator<Item = &str> {
    host.match_indices('.').map(move |(i, _)| &host[i + 1..])
}

/// A path prefix as the table keys it: surrounding slashes removed (`""` for `/`).
pub fn trim_path(path: &str) -> &str {
    path.trim_matches('/')
}

/// The prefixes that could match `path`, longest first, each trimmed: `/a/b` gives `a/b`, `a`, then `""`.
pub fn path_prefixes(path: &str) -> impl Iterator<Item = &str> {
    let mut next = Some(trim_path(path));
    std::iter::from_fn(move || {
        let current = next?;
        next = (!current.is_empty()).then(|| current.rfind('/').map_or("", |i| &current[..i]));
        Some(current)
    })
}

/// Whether the path prefix `prefix` (as written) matches `path` per segment.
pub fn prefix_matches(prefix: &str, path: &str) -> bool {
    let (prefix, path) = (trim_path(prefix), trim_path(path));
    prefix.is_empty() || path == prefix || path.strip_prefix(prefix).is_some_and(|rest| rest.starts_with('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_dots_and_case_do_not_matter() {
        assert_eq!(strip_port("a.local:8080"), "a.local");
        assert_eq!(strip_port("[::1]:80"), "[::1]");
        assert_eq!(strip_port("::1"), "::1");
        assert_eq!(normalize_host("App.Local.:80"), "app.local");
        assert!(matches!(normalize_host("app.local"), Cow::Borrowed(_)), "no allocation for a normal host");
    }

    #[test]
    fn patterns_match_exact_below_and_any() {
        assert!(HostPattern::parse("App.local").matches("app.local"));
        assert!(!HostPattern::parse("app.local").matches("x.app.local"));
        let below = HostPattern::parse("*.example.com");
        assert!(below.matches("a.example.com") && below.matches("a.b.example.com"));
        assert!(!below.matches("example.com") && !below.matches("aexample.com"));
        assert!(HostPattern::parse("*").matches("anything") && HostPattern::parse("").matches("x"));
    }

    #[test]
    fn prefixes_match_per_segment() {
        assert!(prefix_matches("/api", "/api") && prefix_matches("/api/", "/api/x/y") && prefix_matches("/", "/z"));
        assert!(!prefix_matches("/api", "/apix"));
        assert_eq!(path_prefixes("/a/b/").collect::<Vec<_>>(), ["a/b", "a", ""]);
        assert_eq!(path_prefixes("/").collect::<Vec<_>>(), [""]);
    }
}
