//! Header rewriting at the proxy boundary, as upstream's Go reverse proxy does it: hop-by-hop headers
//! removed both ways (protocol upgrades and `TE: trailers` kept) and the client's `Host` preserved; the
//! forwarded headers follow [`forwarded`](super::forwarded).

use std::net::IpAddr;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

use super::forwarded::set_forwarded;

static HOP_BY_HOP: [HeaderName; 9] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

fn has_token(headers: &HeaderMap, name: &HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// The protocol a request or response asks to switch to (`Connection: upgrade` + `Upgrade: X`).
pub fn upgrade_of(headers: &HeaderMap) -> Option<HeaderValue> {
    if has_token(headers, &header::CONNECTION, "upgrade") { headers.get(header::UPGRADE).cloned() } else { None }
}

/// Removes hop-by-hop headers, including those the `Connection` header names.
///
/// One pass over the names (comparisons, no hashing) first finds which hop-by-hop headers are present: most
/// messages carry none, or only `Connection: keep-alive`, and each removal from the map hashes its name.
pub fn remove_hop_by_hop(headers: &mut HeaderMap) {
    remove_present(headers, hop_by_hop_present(headers));
}

/// Which of [`HOP_BY_HOP`] are in `headers`, one bit each.
fn hop_by_hop_present(headers: &HeaderMap) -> u16 {
    let mut present = 0u16;
    for name in headers.keys() {
        // A name's text is a table lookup for the standard ones; a match on it compares lengths first.
        let i = match name.as_str() {
            "connection" => 0,
            "keep-alive" => 1,
            "proxy-connection" => 2,
            "proxy-authenticate" => 3,
            "proxy-authorization" => 4,
            "te" => 5,
            "trailer" => 6,
            "transfer-encoding" => 7,
            "upgrade" => 8,
            _ => continue,
        };
        present |= 1 << i;
    }
    present
}

/// Removes the hop-by-hop headers `present` says are there, and those `Connection` names.
fn remove_present(headers: &mut HeaderMap, present: u16) {
    if present == 0 {
        return;
    }
    if headers.contains_key(header::CONNECTION) {
        // Listed hop-by-hop names (`keep-alive`, `upgrade`) are removed below if present; only the others need a
        // removal here, and a name object.
        let listed: Vec<HeaderName> = headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .filter(|t| !HOP_BY_HOP.iter().any(|h| t.eq_ignore_ascii_case(h.as_str())))
            .filter_map(|t| HeaderName::try_from(t).ok())
            .collect();
        for name in listed {
            headers.remove(name);
        }
    }
    for (i, name) in HOP_BY_HOP.iter().enumerate() {
        if present & (1 << i) != 0 {
            headers.remove(name);
        }
    }
}

/// Rewrites a request's headers for the backend. `host` is what the request was routed on; `trusted` says
/// whether the client is a trusted proxy.
pub fn prepare_request(
    headers: &mut HeaderMap,
    client: Option<IpAddr>,
    host: &HeaderValue,
    h2_upstream: bool,
    trusted: bool,
    tls: bool,
) {
    let present = hop_by_hop_present(headers);
    if present != 0 {
        let upgrade = upgrade_of(headers);
        let te_trailers = has_token(headers, &header::TE, "trailers");
        remove_present(headers, present);
        if let Some(protocol) = upgrade {
            headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
            headers.insert(header::UPGRADE, protocol);
        }
        if te_trailers {
            headers.insert(header::TE, HeaderValue::from_static("trailers"));
        }
    }
    set_forwarded(headers, client, host, trusted, tls);
    if h2_upstream {
        // HTTP/2 carries the authority in `:authority`; the original host stays in X-Forwarded-Host.
        headers.remove(header::HOST);
    } else {
        headers.insert(header::HOST, host.clone());
    }
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

    #[test]
    fn each_hop_by_hop_name_is_found_at_its_place_and_no_other_name_is() {
        for (i, name) in HOP_BY_HOP.iter().enumerate() {
            let mut h = map(&[("x-a", "1"), ("content-length", "0")]);
            assert_eq!(hop_by_hop_present(&h), 0);
            h.insert(name.clone(), HeaderValue::from_static("x"));
            assert_eq!(hop_by_hop_present(&h), 1 << i, "{name}");
        }
    }

    #[test]
    fn hop_by_hop_and_connection_listed_headers_are_removed() {
        let mut h = map(&[
            ("connection", "keep-alive, x-secret"),
            ("keep-alive", "timeout=5"),
            ("x-secret", "1"),
            ("transfer-encoding", "chunked"),
            ("proxy-authorization", "basic x"),
            ("te", "gzip"),
            ("x-keep", "yes"),
        ]);
        remove_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
        assert_eq!(h["x-keep"], "yes");
        let mut h =
            map(&[("Connection", "Upgrade, Keep-Alive, X-Other"), ("upgrade", "h2c"), ("x-other", "1"), ("a", "b")]);
        remove_hop_by_hop(&mut h);
        assert_eq!(h.keys().collect::<Vec<_>>(), ["a"], "listed names in any case, hop-by-hop or not");
        let mut h = map(&[("trailer", "x"), ("proxy-connection", "keep-alive"), ("a", "b"), ("a", "c")]);
        remove_hop_by_hop(&mut h);
        assert_eq!(h.get_all("a").iter().collect::<Vec<_>>(), ["b", "c"], "without Connection too");
        assert_eq!(h.len(), 2);
    }

    #[test]
    fn upgrades_and_te_trailers_survive() {
        let host = HeaderValue::from_static("h");
        let mut h = map(&[("connection", "Upgrade"), ("upgrade", "websocket"), ("te", "trailers, deflate")]);
        prepare_request(&mut h, None, &host, false, false, false);
        assert_eq!(
            h["connection"], "Upgrade",
            "as Go spells it (RFC 9110 tokens are case-insensitive; some servers are not)"
        );
        assert_eq!(h["upgrade"], "websocket");
        assert_eq!(h["te"], "trailers");
        let mut h = map(&[("host", "h")]);
        prepare_request(&mut h, None, &host, true, false, false);
        assert!(!h.contains_key("host"), "h2 upstreams get :authority, not Host");
    }
}
