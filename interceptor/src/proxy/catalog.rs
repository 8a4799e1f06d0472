//! The model lists the interceptor answers itself, from the configured routes, so a client can list what a
//! host serves even while every model is scaled to zero: `GET /v1/models` (OpenAI's list format, with the
//! fields Anthropic's clients read as well) and `GET /api/tags` (Ollama's). Only exact model names are listed
//! (a pattern like `llama3*` is not a name a client can send), each once; a host without model rules is
//! forwarded as before.

use std::time::{SystemTime, UNIX_EPOCH};

use http::header::{CONTENT_TYPE, HeaderValue};
use http::{HeaderMap, Method};
use serde_json::json;

use super::body::ProxyBody;
use super::types::ProxyResponse;
use crate::routes::Routes;

/// Which list a request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Catalog {
    OpenAi,
    Ollama,
}

/// The list a `GET` (or `HEAD`) asks for, if any (after any path prefix, as the inference endpoints).
pub fn catalog_request(method: &Method, path: &str) -> Option<Catalog> {
    if method != Method::GET && method != Method::HEAD {
        return None;
    }
    match path {
        p if p.ends_with("/v1/models") => Some(Catalog::OpenAi),
        p if p.ends_with("/api/tags") => Some(Catalog::Ollama),
        _ => None,
    }
}

/// The answer to a list request for `host`, or `None` when no model rule reaches it (then it is routed as
/// any request).
pub fn answer(routes: &Routes, catalog: Catalog, host: &str, path: &str, headers: &HeaderMap) -> Option<ProxyResponse> {
    let table = routes.table();
    if !table.has_models() {
        return None;
    }
    let names: Vec<&str> = table.models_for(host, path, headers).into_iter().map(|(name, _)| name).collect();
    if names.is_empty() {
        return None;
    }
    let body = match catalog {
        Catalog::OpenAi => openai_list(&names, SystemTime::now()),
        Catalog::Ollama => ollama_tags(&names),
    };
    let mut resp = ProxyResponse::new(ProxyBody::full(body.to_string()));
    resp.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Some(resp)
}

/// OpenAI's `{"object": "list", "data": [...]}`; each entry also has Anthropic's `type`, `display_name`
/// and `created_at`, so either client reads it.
fn openai_list(names: &[&str], now: SystemTime) -> serde_json::Value {
    let created = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let data: Vec<_> = names
        .iter()
        .map(|id| {
            json!({
                "id": id, "object": "model", "created": created, "owned_by": "httpscale",
                "type": "model", "display_name": id, "created_at": "1970-01-01T00:00:00Z",
            })
        })
        .collect();
    json!({
        "object": "list", "data": data,
        "has_more": false, "first_id": names.first(), "last_id": names.last(),
    })
}

/// Ollama's `{"models": [...]}`.
fn ollama_tags(names: &[&str]) -> serde_json::Value {
    let models: Vec<_> = names
        .iter()
        .map(|name| {
            json!({
                "name": name, "model": name, "modified_at": "1970-01-01T00:00:00Z", "size": 0, "digest": "",
                "details": {"format": "", "family": "", "families": null, "parameter_size": "", "quantization_level": ""},
            })
        })
        .collect();
    json!({ "models": models })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::testing::{routes, text};

    const MODELS: &str = "routes:\n  - {name: a, hosts: [m.local], models: [llama3*, 'llama3:8b'], upstream: '127.0.0.1:1'}\n  - {name: b, hosts: [m.local], models: ['qwen2.5:7b', 'llama3:8b'], upstream: '127.0.0.1:2'}\n  - {name: c, hosts: [other.local], upstream: '127.0.0.1:3'}\n";

    #[test]
    fn list_requests_are_gets_of_the_two_paths() {
        assert_eq!(catalog_request(&Method::GET, "/v1/models"), Some(Catalog::OpenAi));
        assert_eq!(catalog_request(&Method::HEAD, "/ollama/api/tags"), Some(Catalog::Ollama));
        assert_eq!(catalog_request(&Method::POST, "/v1/models"), None);
        assert_eq!(catalog_request(&Method::GET, "/v1/models/llama3"), None, "one model's details are forwarded");
    }

    #[tokio::test(start_paused = true)]
    async fn every_listed_id_is_an_exact_name_listed_once() {
        let routes = routes(MODELS);
        let h = HeaderMap::new();
        let resp = answer(&routes, Catalog::OpenAi, "m.local", "/v1/models", &h).unwrap();
        assert_eq!(resp.headers()[CONTENT_TYPE], "application/json");
        let v: serde_json::Value = serde_json::from_str(&text(resp).await).unwrap();
        assert_eq!(v["object"], "list");
        let ids: Vec<_> = v["data"].as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap()).collect();
        assert_eq!(ids, vec!["llama3:8b", "qwen2.5:7b"]);
        assert_eq!(v["data"][0]["object"], "model");
        let resp = answer(&routes, Catalog::Ollama, "m.local", "/api/tags", &h).unwrap();
        let v: serde_json::Value = serde_json::from_str(&text(resp).await).unwrap();
        assert_eq!(v["models"][1]["name"], "qwen2.5:7b");
        assert!(answer(&routes, Catalog::OpenAi, "other.local", "/v1/models", &h).is_none(), "forwarded");
    }
}
