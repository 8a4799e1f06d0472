//! Matching on the model a request names (httpscale extension): the `models` of a routing rule, as written
//! (`llama3:8b` exact, `llama3*` any name with that prefix, `*` any name), and what a lookup knows about the
//! request's model. Pure; the interceptor reads the model from the body and asks the table with it.

use std::fmt;

/// One entry of a rule's `models`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ModelPattern {
    /// This name exactly (case-sensitive, as OpenAI and llama.cpp compare them).
    Exact(String),
    /// Any name starting with this (written with a trailing `*`; `*` alone is the empty prefix).
    Prefix(String),
}

/// Why a model pattern is not one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ModelPatternError {
    #[error("a model pattern cannot be empty")]
    Empty,
    #[error("{0:?} contains whitespace")]
    Whitespace(String),
    #[error("{0:?}: only a trailing * is supported (llama3*)")]
    InnerStar(String),
}

impl ModelPattern {
    /// Parses a pattern: a name, or a name ending in `*`. A `*` anywhere else, whitespace or an empty
    /// pattern is an error (the reason is returned).
    pub fn parse(text: &str) -> Result<Self, ModelPatternError> {
        if text.is_empty() {
            return Err(ModelPatternError::Empty);
        }
        if text.contains(char::is_whitespace) || text.chars().any(char::is_control) {
            return Err(ModelPatternError::Whitespace(text.to_owned()));
        }
        let (stem, prefix) = match text.strip_suffix('*') {
            Some(stem) => (stem, true),
            None => (text, false),
        };
        if stem.contains('*') {
            return Err(ModelPatternError::InnerStar(text.to_owned()));
        }
        Ok(if prefix { Self::Prefix(stem.to_owned()) } else { Self::Exact(stem.to_owned()) })
    }

    pub fn matches(&self, model: &str) -> bool {
        match self {
            Self::Exact(name) => name == model,
            Self::Prefix(stem) => model.starts_with(stem.as_str()),
        }
    }

    /// The name a model list shows for this pattern: exact names only, since a pattern is not a name a client
    /// can send as is.
    pub fn listed_name(&self) -> Option<&str> {
        match self {
            Self::Exact(name) => Some(name),
            Self::Prefix(_) => None,
        }
    }
}

impl fmt::Display for ModelPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Exact(name) => f.write_str(name),
            Self::Prefix(stem) => write!(f, "{stem}*"),
        }
    }
}

/// What a table lookup knows about the request's model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelQuery<'a> {
    /// Not an inference request (say `GET /api/version`): rules with `models` are skipped.
    NotAsked,
    /// An inference request whose body has not been read: a lookup that reaches a rule with `models` stops
    /// and says the model is needed.
    Unknown,
    /// The body was read: the model it names, if any (`None` skips rules with `models`, so the request falls
    /// through to the other rules).
    Known(Option<&'a str>),
}

impl ModelQuery<'_> {
    /// Whether a rule with these (non-empty) `models` matches; `None` when the model must be read first.
    pub fn matches(&self, models: &[ModelPattern]) -> Option<bool> {
        match self {
            Self::NotAsked | Self::Known(None) => Some(false),
            Self::Unknown => None,
            Self::Known(Some(m)) => Some(models.iter().any(|p| p.matches(m))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_prefix_and_any() {
        let p = |s: &str| ModelPattern::parse(s).unwrap();
        assert!(p("llama3:8b").matches("llama3:8b"));
        assert!(!p("llama3:8b").matches("llama3:8b-instruct"));
        assert!(!p("llama3:8b").matches("Llama3:8b"), "case-sensitive");
        assert!(p("llama3*").matches("llama3"));
        assert!(p("llama3*").matches("llama3.1:70b"));
        assert!(!p("llama3*").matches("llama2"));
        assert!(p("*").matches("anything/at:all"));
        assert_eq!(p("llama3*").to_string(), "llama3*");
        assert_eq!(p("qwen2.5:7b").listed_name(), Some("qwen2.5:7b"));
        assert_eq!(p("qwen*").listed_name(), None, "a pattern is not a usable name");
    }

    #[test]
    fn bad_patterns_say_why() {
        for (bad, why) in [("", "empty"), ("a b", "whitespace"), ("*llama", "trailing"), ("l*a", "trailing")] {
            let e = ModelPattern::parse(bad).unwrap_err().to_string();
            assert!(e.contains(why), "{bad:?}: {e}");
        }
    }

    #[test]
    fn a_query_matches_only_once_the_model_is_known() {
        let models = [ModelPattern::parse("a*").unwrap()];
        assert_eq!(ModelQuery::NotAsked.matches(&models), Some(false));
        assert_eq!(ModelQuery::Unknown.matches(&models), None);
        assert_eq!(ModelQuery::Known(None).matches(&models), Some(false));
        assert_eq!(ModelQuery::Known(Some("abc")).matches(&models), Some(true));
        assert_eq!(ModelQuery::Known(Some("b")).matches(&models), Some(false));
    }
}
