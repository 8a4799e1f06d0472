//! Inference requests as the proxy sees them: which requests carry a `model` in a JSON body, in which API's
//! dialect, and the fields the proxy reads from that body (the model, for routing; whether an SSE stream is
//! asked for, for the keep-alive). Pure: the route and keep-alive layers read the body and call these.

use http::header::ACCEPT;
use http::{HeaderMap, Method};
use serde::Deserialize;

/// The API family of an inference request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    /// `/v1/chat/completions`, `/v1/completions`, `/v1/embeddings`, `/v1/responses`: streams are SSE.
    OpenAi,
    /// `/api/generate`, `/api/chat`, `/api/embed`: streams are NDJSON (no comments, so no keep-alive).
    Ollama,
    /// `/v1/messages`: streams are SSE.
    Anthropic,
}

const ENDPOINTS: [(&str, Api); 8] = [
    ("/v1/chat/completions", Api::OpenAi),
    ("/v1/completions", Api::OpenAi),
    ("/v1/embeddings", Api::OpenAi),
    ("/v1/responses", Api::OpenAi),
    ("/api/generate", Api::Ollama),
    ("/api/chat", Api::Ollama),
    ("/api/embed", Api::Ollama),
    ("/v1/messages", Api::Anthropic),
];

/// The API of a `POST` to one of the inference endpoints (after any path prefix: `/ollama/api/chat` too).
pub fn inference_api(method: &Method, path: &str) -> Option<Api> {
    if method != Method::POST {
        return None;
    }
    ENDPOINTS.iter().find(|(endpoint, _)| path.ends_with(endpoint)).map(|(_, api)| *api)
}

/// What the proxy read from an inference request's body; a request extension once read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestFields {
    pub api: Api,
    /// The top-level `model` string, if the body is a JSON object that has one.
    pub model: Option<String>,
    /// The top-level `stream` is `true`.
    pub stream: bool,
}

impl RequestFields {
    /// Reads `model` and `stream` from a JSON body; anything else (not JSON, not an object, other types)
    /// reads as neither.
    pub fn parse(api: Api, body: &[u8]) -> Self {
        #[derive(Deserialize)]
        struct Fields {
            model: Option<serde_json::Value>,
            stream: Option<serde_json::Value>,
        }
        let fields = serde_json::from_slice::<Fields>(body).ok();
        let model = fields.as_ref().and_then(|f| f.model.as_ref()?.as_str().map(str::to_owned));
        let stream = fields.and_then(|f| f.stream?.as_bool()).unwrap_or(false);
        Self { api, model, stream }
    }

    /// Whether the client asked for an SSE stream: `stream: true` or `Accept: text/event-stream`, in an API
    /// whose streams are SSE.
    pub fn wants_sse(&self, headers: &HeaderMap) -> bool {
        self.api != Api::Ollama && (self.stream || accepts_sse(headers))
    }
}

/// `Accept` lists `text/event-stream`.
pub fn accepts_sse(headers: &HeaderMap) -> bool {
    headers.get_all(ACCEPT).iter().any(|v| v.to_str().is_ok_and(|v| v.contains("text/event-stream")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inference_endpoints_by_api_after_any_prefix_and_only_for_post() {
        assert_eq!(inference_api(&Method::POST, "/v1/chat/completions"), Some(Api::OpenAi));
        assert_eq!(inference_api(&Method::POST, "/openai/v1/embeddings"), Some(Api::OpenAi));
        assert_eq!(inference_api(&Method::POST, "/api/chat"), Some(Api::Ollama));
        assert_eq!(inference_api(&Method::POST, "/v1/messages"), Some(Api::Anthropic));
        assert_eq!(inference_api(&Method::GET, "/v1/chat/completions"), None);
        assert_eq!(inference_api(&Method::POST, "/api/version"), None);
        assert_eq!(inference_api(&Method::POST, "/v1/chat/completionsx"), None);
    }

    #[test]
    fn model_and_stream_are_read_leniently() {
        let f =
            RequestFields::parse(Api::OpenAi, br#"{"messages":[{"role":"user"}],"model":"llama3:8b","stream":true}"#);
        assert_eq!((f.model.as_deref(), f.stream), (Some("llama3:8b"), true));
        for body in [&b""[..], b"not json", b"[1]", br#"{"model":7}"#, br#"{"prompt":"x"}"#] {
            let f = RequestFields::parse(Api::Ollama, body);
            assert_eq!((f.model, f.stream), (None, false), "{}", String::from_utf8_lossy(body));
        }
        let f = RequestFields::parse(Api::OpenAi, br#"{"model":"m","stream":"yes"}"#);
        assert_eq!((f.model.as_deref(), f.stream), (Some("m"), false), "a non-boolean stream is not a stream");
    }

    #[test]
    fn sse_is_asked_by_body_or_accept_header_but_never_in_ollamas_ndjson() {
        let sse: HeaderMap = [(ACCEPT, "application/json, text/event-stream".parse().unwrap())].into_iter().collect();
        let none = HeaderMap::new();
        let fields = |api, stream| RequestFields { api, model: None, stream };
        assert!(fields(Api::OpenAi, true).wants_sse(&none));
        assert!(fields(Api::Anthropic, false).wants_sse(&sse));
        assert!(!fields(Api::OpenAi, false).wants_sse(&none));
        assert!(!fields(Api::Ollama, true).wants_sse(&sse), "NDJSON has no comments");
    }
}
