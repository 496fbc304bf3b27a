//! `PUT /v1/txn`: Consul's transactions. The operations are decoded and checked here (at most
//! `limits.txn_max_ops`, values within the KV limit, known verbs), then applied all or nothing
//! as one Raft entry; a transaction of only reads is answered from the current tables without
//! a Raft entry (and honours `?stale` / `?consistent`). 200 with `Results`, 409 with `Errors`
//! (each naming its `OpIndex`) when anything failed and nothing was applied.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use muster_api::{TxnError as WireError, TxnResponse, TxnResult as WireResult};

use super::acl::Authorizer;
use super::catalog::{check_api, node_api, service_api};
use super::{json, with_meta, HttpError, Params, QueryOptions};
use crate::server::Agent;
use crate::state::{
    CatalogVerb, CheckRow, Command, KvVerb, NodeRow, Response as Applied, ServiceRow, TxnError,
    TxnOp, TxnOutcome, TxnResult,
};

/// Converts one wire operation, or says what is wrong with it.
fn convert(op: muster_api::TxnOp, max_value: usize) -> Result<TxnOp, String> {
    let verb_of = |v: &str| CatalogVerb::parse(v).ok_or_else(|| format!("unknown verb {v:?}"));
    match (op.kv, op.node, op.service, op.check) {
        (Some(kv), None, None, None) => {
            let verb =
                KvVerb::parse(&kv.verb).ok_or_else(|| format!("unknown KV verb {:?}", kv.verb))?;
            let value = kv.value.unwrap_or_default();
            if value.len() > max_value {
                return Err(format!(
                    "value for key {:?} is too large ({} > {max_value} bytes)",
                    kv.key,
                    value.len()
                ));
            }
            if kv.key.is_empty() && !matches!(verb, KvVerb::GetTree | KvVerb::DeleteTree) {
                return Err("missing key".into());
            }
            Ok(TxnOp::Kv {
                verb,
                key: kv.key,
                value: Bytes::from(value),
                flags: kv.flags,
                index: kv.index,
                session: kv.session,
            })
        }
        (None, Some(n), None, None) => Ok(TxnOp::Node {
            verb: verb_of(&n.verb)?,
            node: NodeRow {
                id: n.node.id,
                name: n.node.node,
                address: n.node.address,
                tagged_addresses: n.node.tagged_addresses,
                meta: n.node.meta,
                create_index: n.node.create_index,
                modify_index: n.node.modify_index,
            },
        }),
        (None, None, Some(s), None) => {
            let mut row = ServiceRow::from_api(&s.node, &s.service);
            row.modify_index = s.service.modify_index;
            if row.id.is_empty() {
                return Err("service must have an ID or a name".into());
            }
            Ok(TxnOp::Service {
                verb: verb_of(&s.verb)?,
                node: s.node,
                service: row,
            })
        }
        (None, None, None, Some(c)) => {
            let h = c.check;
            if h.node.is_empty() || h.check_id.is_empty() {
                return Err("check must name its Node and CheckID".into());
            }
            Ok(TxnOp::Check {
                verb: verb_of(&c.verb)?,
                check: CheckRow {
                    node: h.node,
                    name: if h.name.is_empty() {
                        h.check_id.clone()
                    } else {
                        h.name
                    },
                    id: h.check_id,
                    status: h.status,
                    notes: h.notes,
                    output: h.output,
                    service_id: h.service_id,
                    check_type: h.check_type,
                    interval: h.interval,
                    timeout: h.timeout,
                    definition: serde_json::to_string(&h.definition)
                        .unwrap_or_else(|_| "{}".into()),
                    modify_index: h.modify_index,
                    ..CheckRow::default()
                },
            })
        }
        _ => Err("each operation must have exactly one of KV, Node, Service, Check".into()),
    }
}

fn wire_result(r: TxnResult, dc: &str) -> WireResult {
    match r {
        TxnResult::Kv(key, e) => WireResult {
            kv: Some(super::kv::to_pair(key, e)),
            ..WireResult::default()
        },
        TxnResult::Node(n) => WireResult {
            node: Some(node_api(&n, dc)),
            ..WireResult::default()
        },
        TxnResult::Service(s) => WireResult {
            service: Some(service_api(&s, dc)),
            ..WireResult::default()
        },
        TxnResult::Check(c) => WireResult {
            check: Some(check_api(&c)),
            ..WireResult::default()
        },
    }
}

fn reply(outcome: TxnOutcome, dc: &str, pretty: bool) -> Response {
    match outcome {
        Ok(results) => json(
            StatusCode::OK,
            &TxnResponse {
                results: Some(results.into_iter().map(|r| wire_result(r, dc)).collect()),
                errors: None,
            },
            pretty,
        ),
        Err(errors) => json(
            StatusCode::CONFLICT,
            &TxnResponse {
                results: None,
                errors: Some(
                    errors
                        .into_iter()
                        .map(|e| WireError {
                            op_index: e.op_index,
                            what: e.what,
                        })
                        .collect(),
                ),
            },
            pretty,
        ),
    }
}

pub async fn txn(
    State(agent): State<Arc<Agent>>,
    authz: Authorizer,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Result<Response, HttpError> {
    let params = Params::parse(query.as_deref());
    let opts = QueryOptions::parse(&params, &agent)?;
    let wire: Vec<muster_api::TxnOp> = serde_json::from_slice(&body)
        .map_err(|e| HttpError::bad_request(format!("Failed to parse body: {e}")))?;
    let max = agent.config.limits.txn_max_ops;
    if wire.len() > max {
        return Err(HttpError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "Transaction contains too many operations ({} > {max})",
                wire.len()
            ),
        ));
    }
    let max_value = agent.config.limits.kv_max_value_size;
    let mut ops = Vec::with_capacity(wire.len());
    let mut errors = Vec::new();
    for (i, op) in wire.into_iter().enumerate() {
        match convert(op, max_value) {
            Ok(op) => ops.push(op),
            Err(what) => errors.push(TxnError { op_index: i, what }),
        }
    }
    let dc = agent.config.datacenter.clone();
    if !errors.is_empty() {
        return Ok(reply(Err(errors), &dc, opts.pretty));
    }
    for op in &ops {
        match op {
            TxnOp::Kv { verb, key, .. } if verb.is_read() => authz.kv_read(key)?,
            TxnOp::Kv { key, .. } => authz.kv_write(key)?,
            TxnOp::Node { node, .. } => authz.node_write(&node.name)?,
            TxnOp::Service { service, .. } => authz.service_write(&service.name)?,
            TxnOp::Check { check, .. } => authz.node_write(&check.node)?,
        }
    }
    if ops.iter().all(TxnOp::is_read) {
        let meta = agent.read_gate(opts.consistency).await?;
        let tables = agent.store.read();
        let index = tables.kv_max_index().max(1);
        let outcome = tables.txn_read(&ops);
        return Ok(with_meta(reply(outcome, &dc, opts.pretty), index, &meta));
    }
    match agent.write(Command::Txn(ops)).await? {
        Applied::Txn(outcome) => Ok(reply(outcome, &dc, opts.pretty)),
        other => Err(HttpError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("unexpected apply result {other:?}"),
        )),
    }
}
