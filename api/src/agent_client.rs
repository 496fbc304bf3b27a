//! Typed calls for service discovery: the agent's local services and checks (register,
//! deregister, maintenance, reload) and the catalog's lists (datacenters, nodes, services), with
//! the parameters Consul's Go client sends (`node-meta=key:value`, `near`, `enable`/`reason`).
//! Thin wrappers over the generic JSON helpers of [`Client`]; no new public types.

use std::collections::BTreeMap;

use serde::de::IgnoredAny;

use crate::catalog::{
    AgentService, CatalogNodeServiceList, CatalogService, HealthCheck, Node, ServiceRegistration,
};
use crate::client::{percent_encode, Client, Error, Param, QueryMeta, QueryOptions};

/// `node-meta=key:value` parameters, one per pair, as Consul's Go client sends them.
fn node_meta_params(node_meta: &BTreeMap<String, String>) -> Vec<Param> {
    node_meta
        .iter()
        .map(|(k, v)| ("node-meta".to_string(), Some(format!("{k}:{v}"))))
        .collect()
}

/// `?near=` when given and non-empty.
fn near_param(near: Option<&str>) -> Option<Param> {
    near.filter(|n| !n.is_empty())
        .map(|n| ("near".to_string(), Some(n.to_string())))
}

impl Client {
    // ---- agent: local services and checks ---------------------------------------------------

    /// `PUT /v1/agent/service/register` with the registration as its JSON body.
    pub async fn agent_service_register(&self, service: &ServiceRegistration) -> Result<(), Error> {
        self.put_json::<_, IgnoredAny>("/v1/agent/service/register", Some(service))
            .await
            .map(|_| ())
    }

    /// `PUT /v1/agent/service/deregister/:id`.
    pub async fn agent_service_deregister(&self, service_id: &str) -> Result<(), Error> {
        let path = format!(
            "/v1/agent/service/deregister/{}",
            percent_encode(service_id)
        );
        self.put_json::<(), IgnoredAny>(&path, None)
            .await
            .map(|_| ())
    }

    /// `GET /v1/agent/services`: the agent's local services by ID (`opts.filter` applies).
    pub async fn agent_services(
        &self,
        opts: &QueryOptions,
    ) -> Result<BTreeMap<String, AgentService>, Error> {
        let (services, _) = self.get_json("/v1/agent/services", opts).await?;
        Ok(services)
    }

    /// `GET /v1/agent/checks`: the agent's local checks by ID (`opts.filter` applies).
    pub async fn agent_checks(
        &self,
        opts: &QueryOptions,
    ) -> Result<BTreeMap<String, HealthCheck>, Error> {
        let (checks, _) = self.get_json("/v1/agent/checks", opts).await?;
        Ok(checks)
    }

    /// `PUT /v1/agent/maintenance?enable=true&reason=...` (enable) or `?enable=false` (disable):
    /// puts the whole node in or out of maintenance. The reason is sent only when enabling, as
    /// Consul's Go client does.
    pub async fn agent_node_maintenance(&self, enable: bool, reason: &str) -> Result<(), Error> {
        let params = maintenance_params(enable, reason);
        self.put_json_with::<(), IgnoredAny>("/v1/agent/maintenance", &params, None)
            .await
            .map(|_| ())
    }

    /// `PUT /v1/agent/service/maintenance/:id?enable=...&reason=...`: one local service in or out
    /// of maintenance.
    pub async fn agent_service_maintenance(
        &self,
        service_id: &str,
        enable: bool,
        reason: &str,
    ) -> Result<(), Error> {
        let path = format!(
            "/v1/agent/service/maintenance/{}",
            percent_encode(service_id)
        );
        let params = maintenance_params(enable, reason);
        self.put_json_with::<(), IgnoredAny>(&path, &params, None)
            .await
            .map(|_| ())
    }

    /// `PUT /v1/agent/reload`: the agent re-reads its configuration files.
    pub async fn agent_reload(&self) -> Result<(), Error> {
        self.put_json::<(), IgnoredAny>("/v1/agent/reload", None)
            .await
            .map(|_| ())
    }

    // ---- catalog ----------------------------------------------------------------------------

    /// `GET /v1/catalog/datacenters`: the known datacenters, nearest first.
    pub async fn catalog_datacenters(&self) -> Result<Vec<String>, Error> {
        let (dcs, _) = self
            .get_json("/v1/catalog/datacenters", &QueryOptions::default())
            .await?;
        Ok(dcs)
    }

    /// `GET /v1/catalog/nodes`, filtered by node metadata (`node-meta`), sorted by round-trip
    /// time from `near` when given; `opts.filter` applies.
    pub async fn catalog_nodes(
        &self,
        node_meta: &BTreeMap<String, String>,
        near: Option<&str>,
        opts: &QueryOptions,
    ) -> Result<(Vec<Node>, QueryMeta), Error> {
        let mut params = node_meta_params(node_meta);
        params.extend(near_param(near));
        let (nodes, meta): (Option<Vec<Node>>, QueryMeta) = self
            .get_json_with("/v1/catalog/nodes", &params, opts)
            .await?;
        Ok((nodes.unwrap_or_default(), meta))
    }

    /// `GET /v1/catalog/services`: every service name with the union of its instances' tags,
    /// restricted to nodes with the given metadata.
    pub async fn catalog_services(
        &self,
        node_meta: &BTreeMap<String, String>,
        opts: &QueryOptions,
    ) -> Result<(BTreeMap<String, Vec<String>>, QueryMeta), Error> {
        let params = node_meta_params(node_meta);
        let (services, meta): (Option<BTreeMap<String, Vec<String>>>, QueryMeta) = self
            .get_json_with("/v1/catalog/services", &params, opts)
            .await?;
        Ok((services.unwrap_or_default(), meta))
    }

    /// `GET /v1/catalog/service/:name`: the instances of a service joined with their nodes.
    pub async fn catalog_service(
        &self,
        service: &str,
        node_meta: &BTreeMap<String, String>,
        near: Option<&str>,
        opts: &QueryOptions,
    ) -> Result<(Vec<CatalogService>, QueryMeta), Error> {
        let path = format!("/v1/catalog/service/{}", percent_encode(service));
        let mut params = node_meta_params(node_meta);
        params.extend(near_param(near));
        let (instances, meta): (Option<Vec<CatalogService>>, QueryMeta) =
            self.get_json_with(&path, &params, opts).await?;
        Ok((instances.unwrap_or_default(), meta))
    }

    /// `GET /v1/catalog/node-services/:node`: a node and its services; `None` when the catalog
    /// does not know the node (a 404, or Consul's `null`).
    pub async fn catalog_node_services(
        &self,
        node: &str,
        node_meta: &BTreeMap<String, String>,
        opts: &QueryOptions,
    ) -> Result<(Option<CatalogNodeServiceList>, QueryMeta), Error> {
        let path = format!("/v1/catalog/node-services/{}", percent_encode(node));
        let params = node_meta_params(node_meta);
        let (value, meta): (Option<serde_json::Value>, QueryMeta) =
            self.get_json_optional(&path, &params, opts).await?;
        let mut value = match value {
            Some(v @ serde_json::Value::Object(_)) => v,
            // A 404 or a bare `null`.
            _ => return Ok((None, meta)),
        };
        // Consul answers an unknown node with `{"Node": null, "Services": null}`.
        if value.get("Node").is_none_or(serde_json::Value::is_null) {
            return Ok((None, meta));
        }
        if let Some(services) = value.get_mut("Services") {
            if services.is_null() {
                *services = serde_json::Value::Array(Vec::new());
            }
        }
        let list = serde_json::from_value(value).map_err(|e| Error::Decode(e.to_string()))?;
        Ok((Some(list), meta))
    }
}

/// `enable=true&reason=...` or `enable=false`.
fn maintenance_params(enable: bool, reason: &str) -> Vec<Param> {
    let mut params = vec![("enable".to_string(), Some(enable.to_string()))];
    if enable {
        params.push(("reason".to_string(), Some(reason.to_string())));
    }
    params
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::ClientConfig;

    use crate::client::tests::fake_agent;

    const EMPTY_200: &str = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";

    fn first_line(head: &str) -> &str {
        head.lines().next().unwrap_or_default()
    }

    #[tokio::test]
    async fn register_sends_pascal_case_json() {
        let (addr, rx) = fake_agent(EMPTY_200).await;
        let client = Client::new(ClientConfig::new(addr)).expect("client");
        let reg = ServiceRegistration {
            name: "web".into(),
            port: 80,
            tags: vec!["a".into()],
            ..Default::default()
        };
        client.agent_service_register(&reg).await.expect("register");
        let (head, body) = rx.await.expect("request");
        assert_eq!(first_line(&head), "PUT /v1/agent/service/register HTTP/1.1");
        let sent: serde_json::Value = serde_json::from_slice(&body).expect("json body");
        assert_eq!(
            sent,
            serde_json::json!({"Name": "web", "Port": 80, "Tags": ["a"]})
        );
    }

    #[tokio::test]
    async fn deregister_encodes_the_id() {
        let (addr, rx) = fake_agent(EMPTY_200).await;
        let client = Client::new(ClientConfig::new(addr)).expect("client");
        client
            .agent_service_deregister("web 1/x")
            .await
            .expect("deregister");
        let (head, _) = rx.await.expect("request");
        assert_eq!(
            first_line(&head),
            "PUT /v1/agent/service/deregister/web%201%2Fx HTTP/1.1"
        );
    }

    #[tokio::test]
    async fn maintenance_parameters() {
        let (addr, rx) = fake_agent(EMPTY_200).await;
        let client = Client::new(ClientConfig::new(addr)).expect("client");
        client
            .agent_node_maintenance(true, "new kernel")
            .await
            .expect("enable");
        let (head, _) = rx.await.expect("request");
        assert_eq!(
            first_line(&head),
            "PUT /v1/agent/maintenance?enable=true&reason=new%20kernel HTTP/1.1"
        );

        let (addr, rx) = fake_agent(EMPTY_200).await;
        let client = Client::new(ClientConfig::new(addr)).expect("client");
        client
            .agent_service_maintenance("redis", false, "ignored")
            .await
            .expect("disable");
        let (head, _) = rx.await.expect("request");
        assert_eq!(
            first_line(&head),
            "PUT /v1/agent/service/maintenance/redis?enable=false HTTP/1.1"
        );
    }

    #[tokio::test]
    async fn nodes_send_node_meta_and_filter() {
        let (addr, rx) = fake_agent(
            "HTTP/1.1 200 OK\r\nX-Consul-Index: 7\r\nContent-Length: 4\r\n\
             Connection: close\r\n\r\nnull",
        )
        .await;
        let client = Client::new(ClientConfig::new(addr)).expect("client");
        let meta: BTreeMap<String, String> = [("rack".to_string(), "r1".to_string())].into();
        let opts = QueryOptions {
            filter: Some("Node == a".into()),
            ..Default::default()
        };
        let (nodes, qm) = client
            .catalog_nodes(&meta, Some("_agent"), &opts)
            .await
            .expect("nodes");
        assert!(nodes.is_empty());
        assert_eq!(qm.last_index, 7);
        let (head, _) = rx.await.expect("request");
        assert_eq!(
            first_line(&head),
            "GET /v1/catalog/nodes?filter=Node%20%3D%3D%20a&node-meta=rack%3Ar1&near=_agent HTTP/1.1"
        );
    }

    #[tokio::test]
    async fn unknown_node_is_none() {
        let (addr, _rx) = fake_agent(
            "HTTP/1.1 200 OK\r\nContent-Length: 29\r\nConnection: close\r\n\r\n\
             {\"Node\":null,\"Services\":null}",
        )
        .await;
        let client = Client::new(ClientConfig::new(addr)).expect("client");
        let (list, _) = client
            .catalog_node_services("nope", &BTreeMap::new(), &QueryOptions::default())
            .await
            .expect("node services");
        assert_eq!(list, None);
    }

    #[tokio::test]
    async fn errors_carry_status_and_body() {
        let (addr, _rx) = fake_agent(
            "HTTP/1.1 400 Bad Request\r\nContent-Length: 22\r\nConnection: close\r\n\r\n\
             Missing service name\r\n",
        )
        .await;
        let client = Client::new(ClientConfig::new(addr)).expect("client");
        let err = client
            .agent_service_register(&ServiceRegistration::default())
            .await
            .expect_err("400");
        assert_eq!(err.status(), Some(400));
        assert_eq!(
            err.to_string(),
            "Unexpected response code: 400 (Missing service name)"
        );
    }
}
