//! Fixed answers a route can give without its backend: the cold-start placeholder and static routes, prepared
//! once per table build. A body is inline, or read at request time from a ConfigMap labelled
//! [`BODY_LABEL`]`=true` (Kubernetes mode), found through a [`BodySource`].

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderName, HeaderValue, StatusCode};
use httpscale_core::route::{Placeholder, PlaceholderBody, RouteKey, Rule};
use httpscale_core::spec::ResponseMode;

/// The label a ConfigMap needs to serve placeholder bodies.
pub const BODY_LABEL: &str = "http.keda.sh/response-body";

/// A ConfigMap's data.
pub type ConfigMapData = Arc<BTreeMap<String, String>>;

/// Where ConfigMap bodies are read from.
pub trait BodySource: Send + Sync + 'static {
    /// The data of the labelled ConfigMap `namespace/name`, if there is one.
    fn config_map(&self, namespace: &str, name: &str) -> Option<ConfigMapData>;
}

/// The body sources of this interceptor (none in standalone mode).
pub type Bodies = Option<Arc<dyn BodySource>>;

/// A ready-to-send placeholder or static response.
#[derive(Debug, Clone)]
pub struct PreparedPlaceholder {
    pub status: StatusCode,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub body: PreparedBody,
}

#[derive(Debug, Clone)]
pub enum PreparedBody {
    Inline(Bytes),
    /// Read at request time from a labelled ConfigMap in the route's namespace.
    ConfigMap {
        namespace: String,
        name: String,
        key: Option<String>,
    },
}

/// A static route ready to answer.
#[derive(Debug, Clone)]
pub struct PreparedStatic {
    pub rules: Vec<Rule>,
    pub response: PreparedPlaceholder,
    pub mode: ResponseMode,
}

/// Prepares a route's placeholder or static response.
pub fn prepare(p: &Placeholder, key: &RouteKey) -> PreparedPlaceholder {
    let body = match &p.body {
        PlaceholderBody::Inline(b) => PreparedBody::Inline(Bytes::from(b.clone())),
        PlaceholderBody::ConfigMap { name, key: k } => {
            PreparedBody::ConfigMap { namespace: key.namespace.clone(), name: name.clone(), key: k.clone() }
        }
    };
    PreparedPlaceholder { status: p.status, headers: p.headers.clone(), body }
}

/// Why a ConfigMap body cannot be served (answered as 500, as upstream).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    #[error("ConfigMap {namespace}/{name} labelled {BODY_LABEL}=true not found")]
    NoConfigMap { namespace: String, name: String },
    #[error("ConfigMap {namespace}/{name} has no key {key:?}")]
    NoKey { namespace: String, name: String, key: String },
}

/// A body and, for a ConfigMap key, the `Content-Type` its extension implies.
pub type ResolvedBody = (Bytes, Option<&'static str>);

/// Reads a body now, as upstream: the key is the explicit one, or the request path without its leading `/`
/// (`index.html` for `/`); a missing ConfigMap or explicit key is an error, a missing path-derived key an
/// empty body.
pub fn resolve_body(body: &PreparedBody, path: &str, bodies: &Bodies) -> Result<ResolvedBody, BodyError> {
    let (namespace, name, key) = match body {
        PreparedBody::Inline(b) => return Ok((b.clone(), None)),
        PreparedBody::ConfigMap { namespace, name, key } => (namespace, name, key),
    };
    let data = bodies
        .as_ref()
        .and_then(|b| b.config_map(namespace, name))
        .ok_or_else(|| BodyError::NoConfigMap { namespace: namespace.clone(), name: name.clone() })?;
    let (k, explicit) = match key {
        Some(k) => (k.as_str(), true),
        None => match path.trim_start_matches('/') {
            "" => ("index.html", false),
            p => (p, false),
        },
    };
    match data.get(k) {
        Some(v) => Ok((Bytes::from(v.clone()), crate::sniff::by_extension(k))),
        None if explicit => {
            Err(BodyError::NoKey { namespace: namespace.clone(), name: name.clone(), key: k.to_owned() })
        }
        None => Ok((Bytes::new(), None)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct One(ConfigMapData);
    impl BodySource for One {
        fn config_map(&self, namespace: &str, name: &str) -> Option<ConfigMapData> {
            (namespace == "ns" && name == "page").then(|| self.0.clone())
        }
    }

    #[test]
    fn config_map_bodies_by_explicit_or_path_derived_key() {
        let data = BTreeMap::from([("index.html".to_string(), "<h1>hi</h1>".to_string())]);
        let bodies: Bodies = Some(Arc::new(One(Arc::new(data))));
        let cm = |key: Option<&str>| PreparedBody::ConfigMap {
            namespace: "ns".into(),
            name: "page".into(),
            key: key.map(Into::into),
        };
        assert_eq!(
            resolve_body(&cm(None), "/", &bodies),
            Ok((Bytes::from("<h1>hi</h1>"), Some("text/html; charset=utf-8")))
        );
        assert_eq!(resolve_body(&cm(None), "/missing.txt", &bodies), Ok((Bytes::new(), None)));
        assert!(matches!(resolve_body(&cm(Some("nope")), "/", &bodies), Err(BodyError::NoKey { .. })));
        let other = PreparedBody::ConfigMap { namespace: "ns".into(), name: "gone".into(), key: None };
        assert!(matches!(resolve_body(&other, "/", &bodies), Err(BodyError::NoConfigMap { .. })));
        assert!(matches!(resolve_body(&cm(None), "/", &None), Err(BodyError::NoConfigMap { .. })));
        assert_eq!(resolve_body(&PreparedBody::Inline("x".into()), "/", &None), Ok((Bytes::from("x"), None)));
    }
}
