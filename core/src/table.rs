//! The routing table: an immutable index from (host, path, headers) to a route, rebuilt as a whole
//! value and published by pointer swap, so a lookup never waits on a writer.
//!
//! Matching is upstream's (`pkg/routing`, reference §3.3), built on [`crate::host`]'s primitives: exact host
//! (port stripped), then `*.suffix` wildcards from most to least specific at any depth, then the catch-all
//! (`*`, empty or no hosts). Within a host, path prefixes match per segment (`/api` matches `/api/x`, not
//! `/apix`) and the longest wins;
//! header matchers are AND'ed and a value-less matcher means "present". Entries sharing a host and prefix are
//! ordered: more header matchers, then more valued matchers, then older, then namespace and name descending.
//!
//! Two deliberate improvements over upstream:
//! - hosts compare case-insensitively and ignore a trailing dot (RFC 9110 §4.2.3; upstream #1082);
//! - when no entry at the longest prefix matches the headers, shorter prefixes on the same host are tried
//!   before wildcards and the catch-all (upstream jumps straight to the wildcards and can answer 404).
//!
//! Rules with `models` (httpscale extension) come first in their bucket. A lookup passes what it knows of the
//! request's model ([`ModelQuery`]): such a rule is skipped for requests that are not inference requests or name
//! no model, matches when the model does, and otherwise stops the lookup with [`Lookup::NeedsModel`], so the
//! body is read only when a rule that needs it is next in line.
//!
//! Lookups allocate only when the request's host has upper-case letters or a trailing dot.

use std::cmp::Reverse;
use std::collections::HashMap;
use std::sync::Arc;

use http::HeaderMap;

use crate::host::{HostPattern, normalize_host, parent_domains, path_prefixes, trim_path};
use crate::model::ModelQuery;
use crate::route::{Route, RouteKey};

/// One (route, rule) at a host and path prefix.
#[derive(Debug)]
struct Entry<R> {
    route: Arc<R>,
    rule: u32,
}

impl<R> Clone for Entry<R> {
    fn clone(&self) -> Self {
        Self { route: self.route.clone(), rule: self.rule }
    }
}

/// Entries sharing a host and prefix, in precedence order. Shared between table versions until changed.
type Bucket<R> = Arc<Vec<Entry<R>>>;

#[derive(Debug)]
struct PathIndex<R> {
    /// Path prefix with surrounding slashes trimmed (`""` for `/`) → entries in precedence order.
    prefixes: HashMap<Arc<str>, Bucket<R>>,
}

impl<R> Default for PathIndex<R> {
    fn default() -> Self {
        Self { prefixes: HashMap::new() }
    }
}

impl<R> Clone for PathIndex<R> {
    fn clone(&self) -> Self {
        Self { prefixes: self.prefixes.clone() }
    }
}

/// An immutable routing table over route values `R` (anything that can show its [`Route`]).
///
/// [`RoutingTable::apply`] and [`RoutingTable::delete`] return a new table that differs only in the buckets
/// the changed route occupies; every other bucket is shared with the previous version, so a watch event costs
/// work in proportion to that route, not to the table.
#[derive(Debug)]
pub struct RoutingTable<R> {
    routes: HashMap<RouteKey, Arc<R>>,
    exact: HashMap<Arc<str>, Arc<PathIndex<R>>>,
    /// Keyed by the suffix after `*.`.
    wildcard: HashMap<Arc<str>, Arc<PathIndex<R>>>,
    catch_all: Arc<PathIndex<R>>,
    /// Routes with at least one rule that matches on models.
    model_routes: usize,
}

impl<R> Default for RoutingTable<R> {
    fn default() -> Self {
        Self {
            routes: HashMap::new(),
            exact: HashMap::new(),
            wildcard: HashMap::new(),
            catch_all: Arc::default(),
            model_routes: 0,
        }
    }
}

impl<R> Clone for RoutingTable<R> {
    fn clone(&self) -> Self {
        Self {
            routes: self.routes.clone(),
            exact: self.exact.clone(),
            wildcard: self.wildcard.clone(),
            catch_all: self.catch_all.clone(),
            model_routes: self.model_routes,
        }
    }
}

/// What a lookup found.
#[derive(Debug)]
pub enum Lookup<'a, R> {
    Found(&'a Arc<R>),
    /// A rule with `models` is next in line and the request's model is not known yet.
    NeedsModel,
    NotFound,
}

fn has_models(route: &Route) -> bool {
    route.rules.iter().any(|r| !r.models.is_empty())
}

/// Where a host pattern's entries live.
enum Slot {
    Exact(Arc<str>),
    Wildcard(Arc<str>),
    CatchAll,
}

fn slot(host: &str) -> Slot {
    match HostPattern::parse(host) {
        HostPattern::Any => Slot::CatchAll,
        HostPattern::Below(suffix) => Slot::Wildcard(suffix.into()),
        HostPattern::Exact(h) => Slot::Exact(h.into()),
    }
}

/// Every (host slot, trimmed prefix, rule index) a route occupies.
fn placements(route: &Route) -> Vec<(Slot, Arc<str>, u32)> {
    let mut out = Vec::new();
    for (i, rule) in route.rules.iter().enumerate() {
        let default_hosts = [String::new()];
        let hosts = if rule.hosts.is_empty() { &default_hosts[..] } else { &rule.hosts[..] };
        let default_paths = [String::from("/")];
        let paths = if rule.paths.is_empty() { &default_paths[..] } else { &rule.paths[..] };
        for host in hosts {
            for path in paths {
                out.push((slot(host), trim_path(path).into(), i as u32));
            }
        }
    }
    out
}

/// Precedence among entries of one bucket: rules with models, more header matchers, more valued matchers,
/// older, then namespace and name descending (upstream's order).
fn sort_bucket<R: AsRef<Route>>(entries: &mut [Entry<R>]) {
    entries.sort_by_key(|e| {
        let route = e.route.as_ref().as_ref();
        let rule = &route.rules[e.rule as usize];
        let headers = &rule.headers;
        let valued = headers.iter().filter(|h| h.value.is_some()).count();
        (
            rule.models.is_empty(),
            Reverse(headers.len()),
            Reverse(valued),
            route.order,
            Reverse(route.key.namespace.clone()),
            Reverse(route.key.name.clone()),
        )
    });
}

impl<R: AsRef<Route>> RoutingTable<R> {
    pub fn new(routes: Vec<Arc<R>>) -> Self {
        let mut table = RoutingTable::default();
        for r in routes {
            table.insert(r);
        }
        table
    }

    /// This table with `route` added, or replacing the route of the same key.
    pub fn apply(&self, route: Arc<R>) -> Self {
        let mut next = self.clone();
        next.insert(route);
        next
    }

    /// This table without the route `key` (unchanged if absent).
    pub fn delete(&self, key: &RouteKey) -> Self {
        let mut next = self.clone();
        next.remove(key);
        next
    }

    fn index_mut(&mut self, slot: &Slot) -> &mut PathIndex<R> {
        let arc = match slot {
            Slot::Exact(h) => self.exact.entry(h.clone()).or_default(),
            Slot::Wildcard(h) => self.wildcard.entry(h.clone()).or_default(),
            Slot::CatchAll => &mut self.catch_all,
        };
        Arc::make_mut(arc)
    }

    fn insert(&mut self, route: Arc<R>) {
        let key = route.as_ref().as_ref().key.clone();
        self.remove(&key);
        for (slot, prefix, rule) in placements(route.as_ref().as_ref()) {
            let index = self.index_mut(&slot);
            let bucket = index.prefixes.entry(prefix).or_default();
            let entries = Arc::make_mut(bucket);
            entries.push(Entry { route: route.clone(), rule });
            sort_bucket(entries);
        }
        self.model_routes += usize::from(has_models(route.as_ref().as_ref()));
        self.routes.insert(key, route);
    }

    fn remove(&mut self, key: &RouteKey) {
        let Some(old) = self.routes.remove(key) else { return };
        self.model_routes -= usize::from(has_models(old.as_ref().as_ref()));
        for (slot, prefix, _) in placements(old.as_ref().as_ref()) {
            let index = self.index_mut(&slot);
            if let Some(bucket) = index.prefixes.get_mut(&prefix) {
                let entries = Arc::make_mut(bucket);
                entries.retain(|e| &e.route.as_ref().as_ref().key != key);
                if entries.is_empty() {
                    index.prefixes.remove(&prefix);
                }
            }
            let empty = index.prefixes.is_empty();
            match slot {
                Slot::Exact(h) if empty => {
                    self.exact.remove(&h);
                }
                Slot::Wildcard(h) if empty => {
                    self.wildcard.remove(&h);
                }
                _ => {}
            }
        }
    }

    /// Finds the route for a request that is not matched on a model (rules with `models` are skipped).
    /// `host` is the Host header or `:authority` (a port is ignored).
    pub fn lookup(&self, host: &str, path: &str, headers: &HeaderMap) -> Option<&Arc<R>> {
        match self.lookup_model(host, path, headers, ModelQuery::NotAsked) {
            Lookup::Found(route) => Some(route),
            Lookup::NeedsModel | Lookup::NotFound => None,
        }
    }

    /// Finds the route for a request, given what is known of its model (see the module docs).
    pub fn lookup_model(&self, host: &str, path: &str, headers: &HeaderMap, model: ModelQuery<'_>) -> Lookup<'_, R> {
        let host = normalize_host(host);
        if let Some(idx) = self.exact.get(host.as_ref()) {
            match self.match_index(idx, path, headers, model) {
                Lookup::NotFound => {}
                found => return found,
            }
        }
        if !self.wildcard.is_empty() {
            for suffix in parent_domains(&host) {
                if let Some(idx) = self.wildcard.get(suffix) {
                    match self.match_index(idx, path, headers, model) {
                        Lookup::NotFound => {}
                        found => return found,
                    }
                }
            }
        }
        self.match_index(&self.catch_all, path, headers, model)
    }

    fn match_index<'a>(
        &'a self,
        index: &'a PathIndex<R>,
        path: &str,
        headers: &HeaderMap,
        model: ModelQuery<'_>,
    ) -> Lookup<'a, R> {
        if index.prefixes.is_empty() {
            return Lookup::NotFound;
        }
        for entries in path_prefixes(path).filter_map(|prefix| index.prefixes.get(prefix)) {
            for e in entries.iter() {
                let rule = &e.route.as_ref().as_ref().rules[e.rule as usize];
                if !rule.headers.iter().all(|h| h.matches(headers)) {
                    continue;
                }
                if rule.models.is_empty() {
                    return Lookup::Found(&e.route);
                }
                match model.matches(&rule.models) {
                    None => return Lookup::NeedsModel,
                    Some(true) => return Lookup::Found(&e.route),
                    Some(false) => {}
                }
            }
        }
        Lookup::NotFound
    }

    /// Whether any route matches on models (else no request body is ever read for routing).
    pub fn has_models(&self) -> bool {
        self.model_routes > 0
    }

    /// The exact model names a request for `host`, `path` and `headers` can name, sorted, each with the
    /// oldest route that lists it (the model list endpoints).
    pub fn models_for(&self, host: &str, path: &str, headers: &HeaderMap) -> Vec<(&str, &Arc<R>)> {
        let mut out: Vec<(&str, &Arc<R>)> = Vec::new();
        for r in self.routes.values() {
            for rule in r.as_ref().as_ref().rules.iter().filter(|rule| rule.matches(host, path, headers)) {
                out.extend(rule.models.iter().filter_map(|m| m.listed_name()).map(|name| (name, r)));
            }
        }
        out.sort_by(|a, b| a.0.cmp(b.0).then_with(|| a.1.as_ref().as_ref().order.cmp(&b.1.as_ref().as_ref().order)));
        out.dedup_by(|later, first| later.0 == first.0);
        out
    }

    /// Every route, in no particular order.
    pub fn routes(&self) -> impl Iterator<Item = &Arc<R>> {
        self.routes.values()
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
    use crate::host::strip_port;
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
            max_concurrent_per_pod: None,
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
            stream_keep_alive: None,
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
            models: Vec::new(),
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
    fn watch_events_update_the_table_incrementally_and_share_the_rest() {
        let t0 = RoutingTable::new(vec![
            route("a", 0, vec![rule(&["a.local"], &[], &[])]),
            route("b", 0, vec![rule(&["b.local"], &["/api"], &[])]),
        ]);
        let h = HeaderMap::new();
        // Apply: a new route.
        let t1 = t0.apply(route("c", 0, vec![rule(&["*.local"], &[], &[])]));
        assert_eq!(find(&t1, "x.local", "/", &h), Some("c"));
        assert_eq!(find(&t0, "x.local", "/", &h), None, "the old snapshot is untouched");
        assert!(Arc::ptr_eq(&t0.exact["a.local"], &t1.exact["a.local"]), "unchanged buckets are shared");
        // Apply: a changed route moves.
        let t2 = t1.apply(route("b", 0, vec![rule(&["b.local"], &["/v2"], &[])]));
        assert_eq!(find(&t2, "b.local", "/api", &h), Some("c"), "old placement gone (wildcard answers)");
        assert_eq!(find(&t2, "b.local", "/v2/x", &h), Some("b"));
        assert_eq!(t2.len(), 3);
        // Delete.
        let t3 = t2.delete(&RouteKey::new("default", "b"));
        assert_eq!(find(&t3, "b.local", "/v2/x", &h), Some("c"));
        assert!(!t3.exact.contains_key("b.local"), "empty hosts are dropped");
        assert_eq!(t3.len(), 2);
        assert_eq!(t3.delete(&RouteKey::new("default", "nope")).len(), 2);
        // Re-list: a fresh table from the same routes answers the same.
        let relisted = RoutingTable::new(t3.routes().cloned().collect());
        for (host, path) in [("a.local", "/"), ("x.local", "/"), ("b.local", "/v2")] {
            assert_eq!(find(&relisted, host, path, &h), find(&t3, host, path, &h));
        }
    }

    fn model_rule(hosts: &[&str], headers: &[(&str, Option<&str>)], models: &[&str]) -> Rule {
        Rule {
            models: models.iter().map(|m| crate::model::ModelPattern::parse(m).unwrap()).collect(),
            ..rule(hosts, &[], headers)
        }
    }

    fn find_model<'a>(t: &'a RoutingTable<R>, host: &str, model: ModelQuery<'_>) -> Result<&'a str, &'static str> {
        match t.lookup_model(host, "/v1/chat/completions", &HeaderMap::new(), model) {
            Lookup::Found(r) => Ok(r.0.key.name.as_str()),
            Lookup::NeedsModel => Err("needs model"),
            Lookup::NotFound => Err("not found"),
        }
    }

    #[test]
    fn model_rules_come_first_need_the_model_and_let_other_requests_fall_through() {
        let t = RoutingTable::new(vec![
            route("rest", 0, vec![rule(&["m.local"], &[], &[])]),
            route("llama", 1, vec![model_rule(&["m.local"], &[], &["llama3*"])]),
            route("qwen", 2, vec![model_rule(&["m.local"], &[], &["qwen2.5:7b", "qwen"])]),
            route("other", 3, vec![rule(&["o.local"], &[], &[])]),
        ]);
        assert!(t.has_models());
        assert_eq!(find_model(&t, "m.local", ModelQuery::NotAsked), Ok("rest"), "not an inference request");
        assert_eq!(find_model(&t, "m.local", ModelQuery::Unknown), Err("needs model"), "older, but no models");
        assert_eq!(find_model(&t, "m.local", ModelQuery::Known(Some("llama3.1:8b"))), Ok("llama"));
        assert_eq!(find_model(&t, "m.local", ModelQuery::Known(Some("qwen"))), Ok("qwen"));
        assert_eq!(find_model(&t, "m.local", ModelQuery::Known(Some("mistral"))), Ok("rest"), "unknown model");
        assert_eq!(find_model(&t, "m.local", ModelQuery::Known(None)), Ok("rest"), "no model in the body");
        assert_eq!(find_model(&t, "o.local", ModelQuery::Unknown), Ok("other"), "no model rule, no body read");
        let listed: Vec<_> = t
            .models_for("m.local", "/v1/models", &HeaderMap::new())
            .into_iter()
            .map(|(m, r)| (m, r.0.key.name.as_str()))
            .collect();
        assert_eq!(listed, vec![("qwen", "qwen"), ("qwen2.5:7b", "qwen")], "patterns are not listed");
        assert!(t.models_for("o.local", "/v1/models", &HeaderMap::new()).is_empty());
        let t = t.delete(&RouteKey::new("default", "llama")).delete(&RouteKey::new("default", "qwen"));
        assert!(!t.has_models());
        assert_eq!(find_model(&t, "m.local", ModelQuery::Unknown), Ok("rest"));
    }

    #[test]
    fn a_model_rule_whose_headers_do_not_match_never_asks_for_the_body() {
        let t = RoutingTable::new(vec![
            route("tenant", 0, vec![model_rule(&["m.local"], &[("x-tenant", Some("blue"))], &["a"])]),
            route("all", 1, vec![model_rule(&["*"], &[], &["b"])]),
            route("rest", 2, vec![rule(&["m.local"], &[], &[])]),
        ]);
        assert_eq!(find_model(&t, "m.local", ModelQuery::Unknown), Ok("rest"), "exact host first; tenant skipped");
        assert_eq!(find_model(&t, "x.local", ModelQuery::Unknown), Err("needs model"));
        assert_eq!(find_model(&t, "x.local", ModelQuery::Known(Some("b"))), Ok("all"));
        assert_eq!(find_model(&t, "x.local", ModelQuery::Known(Some("a"))), Err("not found"));
        let blue: HeaderMap = hdrs(&[("x-tenant", "blue")]);
        assert!(matches!(t.lookup_model("m.local", "/", &blue, ModelQuery::Unknown), Lookup::NeedsModel));
    }

    #[test]
    fn ipv6_ports_strip_cleanly() {
        assert_eq!(strip_port("[::1]:8080"), "[::1]");
        assert_eq!(strip_port("::1"), "::1");
        assert_eq!(strip_port("a.b:1"), "a.b");
    }
}
