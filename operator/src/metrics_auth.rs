//! Who may read `/metrics` (`--metrics-auth`), as controller-runtime's `WithAuthenticationAndAuthorization`:
//! the request's bearer token is checked by a TokenReview, and the user it names must be allowed the request's
//! verb (the method, lower-cased) on its non-resource path by a SubjectAccessReview. The chart grants that to
//! the `keda-add-ons-http-metrics-reader` ClusterRole. Each refusal maps to one answer in [`Refusal::answer`].

use http::{HeaderMap, Method, StatusCode};
use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec, UserInfo};
use k8s_openapi::api::authorization::v1::{NonResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec};
use kube::api::{Api, PostParams};

/// Why a metrics request is not answered.
#[derive(Debug)]
pub enum Refusal {
    /// No bearer token, or one the API server does not accept.
    Unauthenticated(String),
    /// The TokenReview itself failed.
    AuthenticationFailed(kube::Error),
    /// The user may not read the path.
    Denied { user: String, reason: String },
    /// The SubjectAccessReview itself failed.
    AuthorizationFailed { user: String, cause: kube::Error },
}

impl Refusal {
    /// controller-runtime's status and text for each case.
    pub fn answer(&self) -> (StatusCode, String) {
        match self {
            Self::Unauthenticated(_) => (StatusCode::UNAUTHORIZED, "Unauthorized".into()),
            Self::AuthenticationFailed(_) => (StatusCode::UNAUTHORIZED, "Authentication failed".into()),
            Self::Denied { user, .. } => (StatusCode::FORBIDDEN, format!("Authorization denied for user {user}")),
            Self::AuthorizationFailed { user, .. } => {
                (StatusCode::INTERNAL_SERVER_ERROR, format!("Authorization for user {user} failed"))
            }
        }
    }

    /// One log line naming the cause.
    pub fn log(&self, path: &str) {
        match self {
            Self::Unauthenticated(why) => {
                tracing::info!(path, cause = %why, "metrics request refused: not authenticated")
            }
            Self::AuthenticationFailed(e) => {
                tracing::warn!(path, cause = %e, "metrics request refused: TokenReview failed")
            }
            Self::Denied { user, reason } => {
                tracing::info!(path, user = %user, reason = %reason, "metrics request refused: not authorised")
            }
            Self::AuthorizationFailed { user, cause } => {
                tracing::warn!(path, user = %user, cause = %cause, "metrics request refused: SubjectAccessReview failed")
            }
        }
    }
}

/// Checks metrics requests against the API server.
pub struct MetricsAuth {
    client: kube::Client,
}

impl MetricsAuth {
    pub fn new(client: kube::Client) -> Self {
        Self { client }
    }

    /// `Ok` when the request's token names a user allowed `method` on `path`.
    pub async fn check(&self, method: &Method, path: &str, headers: &HeaderMap) -> Result<(), Refusal> {
        let token = bearer(headers).ok_or_else(|| Refusal::Unauthenticated("no bearer token".into()))?;
        let user = self.authenticate(token).await?;
        self.authorize(user, &method.as_str().to_ascii_lowercase(), path).await
    }

    async fn authenticate(&self, token: &str) -> Result<UserInfo, Refusal> {
        let review = TokenReview {
            spec: TokenReviewSpec { token: Some(token.to_owned()), audiences: None },
            ..Default::default()
        };
        let api: Api<TokenReview> = Api::all(self.client.clone());
        let done = api.create(&PostParams::default(), &review).await.map_err(Refusal::AuthenticationFailed)?;
        let status = done.status.unwrap_or_default();
        match (status.authenticated, status.user) {
            (Some(true), Some(user)) => Ok(user),
            _ => Err(Refusal::Unauthenticated(status.error.unwrap_or_else(|| "token not accepted".into()))),
        }
    }

    async fn authorize(&self, user: UserInfo, verb: &str, path: &str) -> Result<(), Refusal> {
        let name = user.username.clone().unwrap_or_default();
        let review = SubjectAccessReview {
            spec: SubjectAccessReviewSpec {
                user: user.username,
                groups: user.groups,
                uid: user.uid,
                extra: user.extra,
                non_resource_attributes: Some(NonResourceAttributes {
                    path: Some(path.to_owned()),
                    verb: Some(verb.to_owned()),
                }),
                ..Default::default()
            },
            ..Default::default()
        };
        let api: Api<SubjectAccessReview> = Api::all(self.client.clone());
        let done = api
            .create(&PostParams::default(), &review)
            .await
            .map_err(|cause| Refusal::AuthorizationFailed { user: name.clone(), cause })?;
        let status = done.status.unwrap_or_default();
        if status.allowed {
            Ok(())
        } else {
            Err(Refusal::Denied { user: name, reason: status.reason.unwrap_or_default() })
        }
    }
}

/// The token of an `Authorization: Bearer <token>` header.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_bearer_token_counts() {
        let mut h = HeaderMap::new();
        assert_eq!(bearer(&h), None);
        h.insert(http::header::AUTHORIZATION, "Bearer abc.def".parse().unwrap());
        assert_eq!(bearer(&h), Some("abc.def"));
        h.insert(http::header::AUTHORIZATION, "bearer  xyz ".parse().unwrap());
        assert_eq!(bearer(&h), Some("xyz"));
        h.insert(http::header::AUTHORIZATION, "Basic dXNlcjpwdw==".parse().unwrap());
        assert_eq!(bearer(&h), None);
        h.insert(http::header::AUTHORIZATION, "Bearer ".parse().unwrap());
        assert_eq!(bearer(&h), None);
    }

    #[test]
    fn refusals_answer_as_controller_runtime() {
        let denied = Refusal::Denied { user: "system:serviceaccount:keda:x".into(), reason: String::new() };
        assert_eq!(
            denied.answer(),
            (StatusCode::FORBIDDEN, "Authorization denied for user system:serviceaccount:keda:x".into())
        );
        assert_eq!(Refusal::Unauthenticated("no".into()).answer(), (StatusCode::UNAUTHORIZED, "Unauthorized".into()));
    }
}
