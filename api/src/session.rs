//! Sessions (`/v1/session/*`): wire types with Consul's field names and the typed client calls.

use serde::{Deserialize, Serialize};

use crate::client::{Client, Error, QueryMeta, QueryOptions};

/// A service check a session is tied to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct ServiceCheck {
    #[serde(rename = "ID")]
    pub id: String,
    pub namespace: String,
}

/// A session as `/v1/session/info`, `/node`, `/list` and `/renew` return it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct SessionEntry {
    #[serde(rename = "ID")]
    pub id: String,
    pub name: String,
    pub node: String,
    /// Nanoseconds.
    pub lock_delay: u64,
    pub behavior: String,
    #[serde(rename = "TTL")]
    pub ttl: String,
    /// Deprecated (Consul 1.7): the node checks, left out when only `serfHealth`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checks: Option<Vec<String>>,
    pub node_checks: Option<Vec<String>>,
    pub service_checks: Option<Vec<ServiceCheck>>,
    pub create_index: u64,
    pub modify_index: u64,
}

/// The body of `PUT /v1/session/create`. `None` fields are left out (the agent's defaults:
/// its own node, the `serfHealth` check, a 15s lock-delay, `release`, no TTL).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "PascalCase")]
pub struct SessionRequest {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// A Go duration ("15s").
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lock_delay: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub behavior: Option<String>,
    #[serde(rename = "TTL", skip_serializing_if = "Option::is_none")]
    pub ttl: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node_checks: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service_checks: Option<Vec<ServiceCheck>>,
}

#[derive(Deserialize)]
struct Created {
    #[serde(rename = "ID")]
    id: String,
}

impl Client {
    /// `PUT /v1/session/create`: the new session's ID.
    pub async fn session_create(&self, req: &SessionRequest) -> Result<String, Error> {
        let created: Created = self
            .put_json_with("/v1/session/create", &[], Some(req))
            .await?;
        Ok(created.id)
    }

    /// `PUT /v1/session/destroy/:id`.
    pub async fn session_destroy(&self, id: &str) -> Result<bool, Error> {
        let path = format!("/v1/session/destroy/{}", crate::client::percent_encode(id));
        self.put_json_with::<(), bool>(&path, &[], None).await
    }

    /// `PUT /v1/session/renew/:id`: the session, or `None` when it is gone (404).
    pub async fn session_renew(&self, id: &str) -> Result<Option<SessionEntry>, Error> {
        let path = format!("/v1/session/renew/{}", crate::client::percent_encode(id));
        match self
            .put_json_with::<(), Vec<SessionEntry>>(&path, &[], None)
            .await
        {
            Ok(list) => Ok(list.into_iter().next()),
            Err(e) if e.status() == Some(404) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `GET /v1/session/info/:id`.
    pub async fn session_info(
        &self,
        id: &str,
        opts: &QueryOptions,
    ) -> Result<(Option<SessionEntry>, QueryMeta), Error> {
        let path = format!("/v1/session/info/{}", crate::client::percent_encode(id));
        let (list, meta) = self
            .get_json_optional::<Vec<SessionEntry>>(&path, &[], opts)
            .await?;
        Ok((list.and_then(|l| l.into_iter().next()), meta))
    }

    /// `GET /v1/session/list`.
    pub async fn session_list(
        &self,
        opts: &QueryOptions,
    ) -> Result<(Vec<SessionEntry>, QueryMeta), Error> {
        let (list, meta) = self
            .get_json_optional::<Vec<SessionEntry>>("/v1/session/list", &[], opts)
            .await?;
        Ok((list.unwrap_or_default(), meta))
    }

    /// `GET /v1/session/node/:node`.
    pub async fn session_node(
        &self,
        node: &str,
        opts: &QueryOptions,
    ) -> Result<(Vec<SessionEntry>, QueryMeta), Error> {
        let path = format!("/v1/session/node/{}", crate::client::percent_encode(node));
        let (list, meta) = self
            .get_json_optional::<Vec<SessionEntry>>(&path, &[], opts)
            .await?;
        Ok((list.unwrap_or_default(), meta))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_decode_consuls_json_and_requests_leave_out_unset_fields() {
        let s: SessionEntry = serde_json::from_str(
            r#"{"ID":"adf4238a-882b-9ddc-4a9d-5b6758e4159e","Name":"test-session",
                "Node":"raja-laptop-02","LockDelay":15000000000,"Behavior":"release",
                "TTL":"30s","NodeChecks":["serfHealth"],"ServiceChecks":null,
                "CreateIndex":1086449,"ModifyIndex":1086449}"#,
        )
        .expect("decode");
        assert_eq!(s.lock_delay, 15_000_000_000);
        assert_eq!(s.node_checks, Some(vec!["serfHealth".to_string()]));
        let body = serde_json::to_value(SessionRequest {
            ttl: Some("15s".into()),
            ..Default::default()
        })
        .expect("encode");
        assert_eq!(body, serde_json::json!({"TTL": "15s"}));
    }
}
