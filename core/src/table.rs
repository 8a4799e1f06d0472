//! The routing table: an immutable index from (host, path, headers) to a route, rebuilt as a whole
//! value and published by pointer swap, so a lookup never waits on a writer.
//!
//! Matching is upstream's (`pkg/routing`, reference §3.3): exact host (port stripped), then `*.suffix`
//! wildcards from most to least specific at any depth, then the catch-all (`*`, empty or no hosts). Within a
//! host, path prefixes match per segment (`/api` matches `/api/x`, not `/apix`) and the longest wins;
//! header matchers are AND'ed and a value-less matcher means "present". Entries sharing a host and prefix are
//! ordered: more header matchers, then more valued matchers, then older, then namespace and name descending.
//!
//! Two deliberate improvements over upstream:
//! - hosts compare case-insensitively and ignore a trailing dot (RFC 9110 §4.2.3; upstream #1082);
//! - when no entry at the longest prefix matches the headers, shorter prefixes on the same host are tried
//!   before wildcards and the catch-all (upstream jumps straight to the wildcards and can answer 404).
//!
//! Lookups allocate only when the request's host has upper-case letters or a trailing dot.

use std::borrow::Cow;
use std::cmp::Reverse;
use std::collections::HashMap;
use std::sync::Arc;

use http::HeaderMap;

use crate::route::Route;

#[derive(Debug, Default)]
struct PathIndex {
    /// Path prefix with surrounding slashes trimmed (`""` for `/`) → entries in precedence order.
    prefixes: HashMap<String, Vec<Entry>>,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    route: u32,
    rule: u32,
}

/// An immutable routing table over route values `R` (anything that can show its [`Route`]).
#[derive(Debug)]
pub struct RoutingTable<R> {
    routes: Vec<Arc<R>>,
    exact: HashMap<String, PathIndex>,
    /// Keyed by the suffix after `*.`.
    wildcard: HashMap<String, PathIndex>,
    catch_all: PathIndex,
}

impl<R> Default for RoutingTable<R> {
    fn default() -> Self {
        Self { routes: Vec::new(), exact: HashMap::new(), wildcard: HashMap::new(), catch_all: PathIndex::default() }
    }
}

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

impl<R: AsRef<Route>> RoutingTable<R> {
    pub fn new(routes: Vec<Arc<R>>) -> Self {
        let mut table = RoutingTable { routes, ..Default::default() };
        for (ri, r) in table.routes.iter().enumerate() {
            for (rule_i, rule) in r.as_ref().as_ref().rules.iter().enumerate() {
                let entry = Entry { route: ri as u32, rule: rule_i as u32 };
                let default_hosts = [String::new()];
                let hosts = if rule.hosts.is_empty() { &default_hosts[..] } else { &rule.hosts[..] };
                let default_paths = [String::from("/")];
                let paths = if rule.paths.is_empty() { &default_paths[..] } else { &rule.paths[..] };
                for host in hosts {
                    let index = if host.is_empty() || host == "*" {
                        &mut table.catch_all
                    } else if let Some(suffix) = host.strip_prefix("*.") {
                        table.wildcard.entry(normalize_host(suffix).into_owned()).or_default()
                    } else {
                        table.exact.entry(normalize_host(host).into_owned()).or_default()
                    };
                    for path in paths {
                        index.prefixes.entry(path.trim_matches('/').to_owned()).or_default().push(entry);
                    }
                }
            }
        }
        let routes = &table.routes;
        let sort = |index: &mut PathIndex| {
            for entries in index.prefixes.values_mut() {
                entries.sort_by_key(|e| {
                    let route = routes[e.route as usize].as_ref().as_ref();
                    let headers = &route.rules[e.rule as usize].headers;
                    let valued = headers.iter().filter(|h| h.value.is_some()).count();
                    (
                        Reverse(headers.len()),
                        Reverse(valued),
                        route.order,
                        Reverse(route.key.namespace.clone()),
                        Reverse(route.key.name.clone()),
                    )
                });
            }
        };
        table.exact.values_mut().for_each(sort);
        table.wildcard.values_mut().for_each(sort);
        sort(&mut table.catch_all);
        table
    }

    /// Finds the route for a request. `host` is the Host header or `:authority` (a port is ignored).
    pub fn lookup(&self, host: &str, path: &str, headers: &HeaderMap) -> Option<&Arc<R>> {
        let host = normalize_host(host);
        if let Some(found) = self.exact.get(host.as_ref()).and_then(|idx| self.match_index(idx, path, headers)) {
            return Some(found);
        }
        if !self.wildcard.is_empty() {
            let mut rest: &str = &host;
            while let Some(dot) = rest.find('.') {
                rest = &rest[dot + 1..];
                if let Some(found) = self.wildcard.get(rest).and_then(|idx| self.match_index(idx, path, headers)) {
                    return Some(found);
                }
            }
        }
        self.match_index(&self.catch_all, path, headers)
    }

    fn match_index(&self, index: &PathIndex, path: &str, headers: &HeaderMap) -> Option<&Arc<R>> {
        if index.prefixes.is_empty() {
            return None;
        }
        let mut prefix = path.trim_matches('/');
        loop {
            if let Some(entries) = index.prefixes.get(prefix) {
                for e in entries {
                    let route = &self.routes[e.route as usize];
                    let rule = &route.as_ref().as_ref().rules[e.rule as usize];
                    if rule.headers.iter().all(|h| h.matches(headers)) {
                        return Some(route);
                    }
                }
            }
            if prefix.is_empty() {
                return None;
            }
            prefix = prefix.rfind('/').map_or("", |i| &prefix[..i]);
        }
    }

    pub fn routes(&self) -> &[Arc<R>] {
        &self.routes
    }

    pub fn len(&self) -> usize {
        self.routes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::route::{HeaderMatcher, RouteKey, RouteTimeouts, Rule, Scaling, Target};
    use crate::spec::Overflow;

    struct R(Route);
    impl AsRef<Route> for R {
        fn as_ref(&self) -> &Route {
            &self.0
        }
    }

    fn route(name: &str, order: i64, rules: Vec<Rule>) -> Arc<R> {
        Arc::new(R(Route {
            key: RouteKey::new("default", name),
            rules,
            target: Target::Address(format!("{name}:80")),
            fallback: None,
            placeholder: None,
            timeouts: RouteTimeouts::default(),
            max_pending: None,
            overflow: Overflow::Reject,
            scaling: Scaling {
                concurrency_target: Some(100.0),
                rate: None,
                from_http_scaled_object: false,
                fallback_target: 100.0,
            },
            h2c: false,
            statics: Vec::new(),
            order,
        }))
    }

    fn rule(hosts: &[&str], paths: &[&str], headers: &[(&str, Option<&str>)]) -> Rule {
        Rule {
            hosts: hosts.iter().map(|s| s.to_string()).collect(),
            paths: paths.iter().map(|s| s.to_string()).collect(),
            headers: headers
                .iter()
                .map(|(n, v)| HeaderMatcher { name: n.parse().unwrap(), value: v.map(|v| v.parse().unwrap()) })
                .collect(),
        }
    }

    fn hdrs(pairs: &[(&str, &str)]) -> HeaderMap {
        pairs.iter().map(|(k, v)| (k.parse().unwrap(), v.parse().unwrap())).collect()
    }

    fn find<'a>(t: &'a RoutingTable<R>, host: &str, path: &str, h: &HeaderMap) -> Option<&'a str> {
        t.lookup(host, path, h).map(|r| r.0.key.name.as_str())
    }

    #[test]
    fn exact_host_strips_port_and_ignores_case_and_trailing_dot() {
        let t = RoutingTable::new(vec![route("a", 0, vec![rule(&["Example.com:8080"], &[], &[])])]);
        let h = HeaderMap::new();
        for host in ["example.com", "example.com:80", "EXAMPLE.com", "example.com.", "Example.COM.:443"] {
            assert_eq!(find(&t, host, "/", &h), Some("a"), "{host}");
        }
        assert_eq!(find(&t, "other.com", "/", &h), None);
        assert_eq!(find(&t, "sub.example.com", "/", &h), None);
    }

    #[test]
    fn wildcards_any_depth_most_specific_first_then_catch_all() {
        let t = RoutingTable::new(vec![
            route("com", 0, vec![rule(&["*.com"], &[], &[])]),
            route("example", 0, vec![rule(&["*.example.com"], &[], &[])]),
            route("exact", 0, vec![rule(&["api.example.com"], &[], &[])]),
            route("any", 0, vec![rule(&[], &[], &[])]),
        ]);
        let h = HeaderMap::new();
        assert_eq!(find(&t, "api.example.com", "/", &h), Some("exact"));
        assert_eq!(find(&t, "a.b.example.com", "/", &h), Some("example"));
        assert_eq!(find(&t, "x.other.com", "/", &h), Some("com"));
        assert_eq!(find(&t, "example.com", "/", &h), Some("com"), "*.example.com does not match example.com");
        assert_eq!(find(&t, "localhost", "/", &h), Some("any"));
        assert_eq!(find(&t, "", "/", &h), Some("any"));
    }

    #[test]
    fn star_host_is_catch_all() {
        let t = RoutingTable::new(vec![route("star", 0, vec![rule(&["*"], &[], &[])])]);
        assert_eq!(find(&t, "whatever.io", "/x", &HeaderMap::new()), Some("star"));
    }

    #[test]
    fn path_prefixes_match_per_segment_and_longest_wins() {
        let t = RoutingTable::new(vec![
            route("root", 0, vec![rule(&["h"], &[], &[])]),
            route("api", 0, vec![rule(&["h"], &["/api"], &[])]),
            route("v1", 0, vec![rule(&["h"], &["/api/v1/"], &[])]),
        ]);
        let h = HeaderMap::new();
        assert_eq!(find(&t, "h", "/api", &h), Some("api"));
        assert_eq!(find(&t, "h", "/api/", &h), Some("api"));
        assert_eq!(find(&t, "h", "/api/v1/models", &h), Some("v1"));
        assert_eq!(find(&t, "h", "/api/v2", &h), Some("api"));
        assert_eq!(find(&t, "h", "/apix", &h), Some("root"), "prefixes are per segment");
        assert_eq!(find(&t, "h", "/", &h), Some("root"));
    }

    #[test]
    fn headers_are_anded_valueless_means_presence_and_more_specific_first() {
        let t = RoutingTable::new(vec![
            route("presence", 0, vec![rule(&["h"], &[], &[("x-tenant", None)])]),
            route("blue", 1, vec![rule(&["h"], &[], &[("x-tenant", Some("blue"))])]),
            route("blue-canary", 2, vec![rule(&["h"], &[], &[("x-tenant", Some("blue")), ("x-canary", None)])]),
        ]);
        assert_eq!(find(&t, "h", "/", &hdrs(&[("x-tenant", "blue"), ("x-canary", "1")])), Some("blue-canary"));
        assert_eq!(find(&t, "h", "/", &hdrs(&[("x-tenant", "blue")])), Some("blue"), "valued beats presence");
        assert_eq!(find(&t, "h", "/", &hdrs(&[("x-tenant", "red")])), Some("presence"));
        assert_eq!(find(&t, "h", "/", &HeaderMap::new()), None, "a header rule needs the header");
    }

    #[test]
    fn older_route_wins_then_namespace_and_name_descending() {
        let t = RoutingTable::new(vec![
            route("young", 5, vec![rule(&["h"], &[], &[])]),
            route("old", 1, vec![rule(&["h"], &[], &[])]),
        ]);
        assert_eq!(find(&t, "h", "/", &HeaderMap::new()), Some("old"));
        let t = RoutingTable::new(vec![
            route("a", 1, vec![rule(&["h"], &[], &[])]),
            route("b", 1, vec![rule(&["h"], &[], &[])]),
        ]);
        assert_eq!(find(&t, "h", "/", &HeaderMap::new()), Some("b"), "name descending among equals, as upstream");
    }

    /// Improvement over upstream (which goes straight to wildcards here and can 404).
    #[test]
    fn shorter_prefix_on_same_host_is_tried_before_wildcards() {
        let t = RoutingTable::new(vec![
            route("api-blue", 0, vec![rule(&["h.example.com"], &["/api"], &[("x-tenant", Some("blue"))])]),
            route("host-root", 0, vec![rule(&["h.example.com"], &[], &[])]),
            route("wild", 0, vec![rule(&["*.example.com"], &[], &[])]),
        ]);
        assert_eq!(find(&t, "h.example.com", "/api/x", &HeaderMap::new()), Some("host-root"));
        assert_eq!(find(&t, "h.example.com", "/api/x", &hdrs(&[("x-tenant", "blue")])), Some("api-blue"));
        assert_eq!(find(&t, "z.example.com", "/api/x", &HeaderMap::new()), Some("wild"));
    }

    #[test]
    fn several_rules_and_hosts_reach_one_route_and_routes_without_rules_never_match() {
        let t = RoutingTable::new(vec![
            route("multi", 0, vec![rule(&["a", "b"], &[], &[]), rule(&["c"], &["/only"], &[])]),
            route("none", 0, vec![]),
        ]);
        let h = HeaderMap::new();
        assert_eq!(find(&t, "a", "/", &h), Some("multi"));
        assert_eq!(find(&t, "b", "/x", &h), Some("multi"));
        assert_eq!(find(&t, "c", "/only/1", &h), Some("multi"));
        assert_eq!(find(&t, "c", "/other", &h), None);
        assert_eq!(t.len(), 2);
    }

    #[test]
    fn ipv6_ports_strip_cleanly() {
        assert_eq!(strip_port("[::1]:8080"), "[::1]");
        assert_eq!(strip_port("::1"), "::1");
        assert_eq!(strip_port("a.b:1"), "a.b");
    }
}
