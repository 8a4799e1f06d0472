use super::*;
use http::HeaderValue;

fn headers(hosts: &[&str]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for v in hosts {
        h.append(HOST, HeaderValue::from_str(v).unwrap());
    }
    h
}

fn host_of(version: Version, uri: &str, hosts: &[&str]) -> Result<Option<String>, TargetError> {
    let uri: Uri = uri.parse().unwrap();
    request_host(version, &uri, &headers(hosts)).map(|h| h.map(str::to_owned))
}

#[test]
fn valid_hosts_pass_as_written() {
    for h in [
        "app.local",
        "App.Local:8080",
        "127.0.0.1",
        "[::1]:80",
        "[v1.fe]",
        "a_b-c.~x",
        "h:",
        "xn--bcher-kva.example",
        "%41.example",
        "",
    ] {
        assert_eq!(valid_host(h), Ok(h), "{h}");
    }
}

#[test]
fn invalid_hosts_are_refused() {
    for h in [
        "a b",
        "a,b",
        "a.local, b.local",
        "user@a",
        "a/b",
        "a:abc",
        "a:99999",
        "a:-1",
        ":80",
        "[::1",
        "[zz]",
        "a:b:c",
        "a%zz",
        "a\\b",
        "[::1]x",
        "a:123456",
    ] {
        assert!(matches!(valid_host(h), Err(TargetError::InvalidHost(_))), "{h}");
    }
}

#[test]
fn exactly_one_host_and_the_authority_wins_in_absolute_form() {
    assert_eq!(host_of(Version::HTTP_11, "/", &["a.local"]), Ok(Some("a.local".into())));
    assert_eq!(host_of(Version::HTTP_11, "/", &["a.local", "b.local"]), Err(TargetError::DuplicateHost));
    assert_eq!(host_of(Version::HTTP_11, "/", &[]), Err(TargetError::MissingHost));
    assert_eq!(host_of(Version::HTTP_10, "/", &[]), Ok(None));
    assert_eq!(host_of(Version::HTTP_11, "http://a.local/x", &["other"]), Ok(Some("a.local".into())));
    assert!(matches!(host_of(Version::HTTP_11, "http://a.local/x", &["bad host"]), Err(TargetError::InvalidHost(_))));
    assert_eq!(host_of(Version::HTTP_11, "http://u:p@a.local/x", &["a.local"]), Err(TargetError::Userinfo));
}

#[test]
fn over_http2_authority_and_host_must_agree() {
    assert_eq!(host_of(Version::HTTP_2, "http://a.local/", &["A.LOCAL"]), Ok(Some("a.local".into())));
    assert!(matches!(host_of(Version::HTTP_2, "http://a.local/", &["b.local"]), Err(TargetError::HostMismatch { .. })));
    assert_eq!(host_of(Version::HTTP_2, "/", &["b.local"]), Ok(Some("b.local".into())));
    assert_eq!(host_of(Version::HTTP_2, "/", &[]), Ok(None));
}

#[test]
fn asterisk_form_is_for_options_only() {
    let star: Uri = "*".parse().unwrap();
    assert_eq!(asterisk(&Method::OPTIONS, &star), Ok(true));
    assert_eq!(asterisk(&Method::GET, &star), Err(TargetError::Asterisk));
    assert_eq!(asterisk(&Method::GET, &"/x".parse().unwrap()), Ok(false));
}

#[test]
fn dot_segments_are_removed_and_climbing_above_the_root_is_refused() {
    for (path, want) in [
        ("/api/../secret", "/secret"),
        ("/api/%2e%2e/secret", "/secret"),
        ("/api/.%2E/secret", "/secret"),
        ("/a/./b", "/a/b"),
        ("/a/%2E/b/", "/a/b/"),
        ("/a/b/..", "/a/"),
        ("/a/b/.", "/a/b/"),
        ("/a/..", "/"),
        ("/a//../b", "/a/b"),
    ] {
        assert_eq!(normalize_path(path), Ok(Some(want.to_owned())), "{path}");
    }
    for untouched in ["/", "/a/b", "/index.html", "/a/.../b", "/.well-known/x", "/a/%2e%2e%2e", "*"] {
        assert_eq!(normalize_path(untouched), Ok(None), "{untouched}");
    }
    for above in ["/..", "/../x", "/a/../../x", "/%2e%2e/x"] {
        assert!(matches!(normalize_path(above), Err(TargetError::AboveRoot(_))), "{above}");
    }
}

#[test]
fn escaped_unreserved_characters_match_as_themselves_and_other_escapes_stay() {
    for (path, want) in [("/%61pi", "/api"), ("/%41%7e%2D%5f%2e", "/A~-_."), ("/a%2Fb", "/a%2Fb"), ("/%", "/%")] {
        assert_eq!(matching_path(path), want, "{path}");
    }
    for untouched in ["/api", "/a%2Fb/%20", "/%zz", "/%6"] {
        assert!(matches!(matching_path(untouched), Cow::Borrowed(_)), "{untouched}");
    }
}

#[test]
fn quotes_are_short() {
    let long = "x".repeat(1_000_000);
    assert_eq!(quote(&long).len(), QUOTED + "…".len());
    assert_eq!(quote("short"), "short");
    assert!(quote(&"é".repeat(100)).ends_with('…'));
}
