//! The request's authorizer. Every handler takes one, so ACLs later are a policy here rather
//! than a change to every handler. Until ACLs exist it allows everything; the token a client
//! sends (`X-Consul-Token`, `Authorization: Bearer`, `?token=`) is read and carried already.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;

use super::{HttpError, Params};

/// What the request's token may do.
#[derive(Debug, Clone)]
pub struct Authorizer {
    /// The token presented, if any.
    pub token: Option<String>,
}

impl Authorizer {
    pub fn kv_read(&self, _key: &str) -> Result<(), HttpError> {
        Ok(())
    }
    pub fn kv_write(&self, _key: &str) -> Result<(), HttpError> {
        Ok(())
    }
    pub fn agent_read(&self) -> Result<(), HttpError> {
        Ok(())
    }
    pub fn agent_write(&self) -> Result<(), HttpError> {
        Ok(())
    }
    pub fn node_read(&self) -> Result<(), HttpError> {
        Ok(())
    }
    pub fn node_write(&self, _node: &str) -> Result<(), HttpError> {
        Ok(())
    }
    pub fn service_read(&self) -> Result<(), HttpError> {
        Ok(())
    }
    pub fn service_write(&self, _service: &str) -> Result<(), HttpError> {
        Ok(())
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Authorizer {
    type Rejection = HttpError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let header = |name: &str| {
            parts
                .headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let token = header("X-Consul-Token")
            .or_else(|| {
                header("Authorization")
                    .and_then(|a| a.strip_prefix("Bearer ").map(|t| t.trim().to_string()))
            })
            .or_else(|| {
                Params::parse(parts.uri.query())
                    .get("token")
                    .map(str::to_string)
            });
        Ok(Authorizer { token })
    }
}
