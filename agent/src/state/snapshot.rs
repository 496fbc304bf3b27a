//! Snapshot encoding of the tables: a versioned byte format kept separate from the in-memory
//! types so either can change without breaking the other. Old versions stay decodable.

use serde::{Deserialize, Serialize};

use super::catalog::{Catalog, CheckRow, NodeRow, ServiceRow};
use super::session::{SessionRow, Sessions};
use super::{KvEntry, TableIndex, Tables, Tombstone};
use crate::error::Error;

/// Format version written as the first byte.
const VERSION: u8 = 4;

/// Version 1: KV only.
#[derive(Deserialize)]
struct SnapshotV1 {
    kv: Vec<(String, KvEntry)>,
    tombstones: Vec<(String, Tombstone)>,
    index: TableIndexV1,
    kv_reap_floor: u64,
}

#[derive(Deserialize)]
struct TableIndexV1 {
    kvs: u64,
    tombstones: u64,
}

/// Version 2: KV and the catalog. Secondary indexes are rebuilt on decode, not stored.
#[derive(Serialize, Deserialize)]
struct SnapshotV2 {
    kv: Vec<(String, KvEntry)>,
    tombstones: Vec<(String, Tombstone)>,
    index: TableIndex,
    kv_reap_floor: u64,
    nodes: Vec<NodeRow>,
    services: Vec<ServiceRow>,
    checks: Vec<CheckRow>,
    service_index: Vec<(String, u64)>,
    extinction_index: u64,
}

/// Version 3: version 2 followed by the sessions table and the lock-delays. Written as the
/// version-2 body then this, so decoding shares version 2's code.
#[derive(Serialize, Deserialize)]
struct SessionsV3 {
    sessions: Vec<SessionRow>,
    lock_delay: Vec<(String, u64)>,
    index: u64,
}

/// Version 4: version 3 followed by the cluster's identity.
#[derive(Serialize, Deserialize)]
struct ClusterV4 {
    cluster_id: Option<u128>,
}

/// Serialises every table.
pub fn encode(tables: &Tables) -> Result<Vec<u8>, Error> {
    let c = &tables.catalog;
    let body = SnapshotV2 {
        kv: tables
            .kv
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        tombstones: tables
            .tombstones
            .iter()
            .map(|(k, v)| (k.clone(), *v))
            .collect(),
        index: tables.index,
        kv_reap_floor: tables.kv_reap_floor,
        nodes: c.nodes.values().cloned().collect(),
        services: c.services.values().cloned().collect(),
        checks: c.checks.values().cloned().collect(),
        service_index: c
            .service_index
            .iter()
            .map(|(k, v)| (k.clone(), *v))
            .collect(),
        extinction_index: c.extinction_index,
    };
    let sessions = SessionsV3 {
        sessions: tables.sessions.rows.values().cloned().collect(),
        lock_delay: tables
            .sessions
            .lock_delay
            .iter()
            .map(|(k, v)| (k.clone(), *v))
            .collect(),
        index: tables.sessions.index,
    };
    let encode_err = |e: postcard::Error| Error::Storage(format!("encode snapshot: {e}"));
    let mut out = vec![VERSION];
    let cluster = ClusterV4 {
        cluster_id: tables.cluster_id,
    };
    out.extend_from_slice(&postcard::to_allocvec(&(body, sessions, cluster)).map_err(encode_err)?);
    Ok(out)
}

/// Rebuilds the tables from [`encode`]'s output (any version).
pub fn decode(bytes: &[u8]) -> Result<Tables, Error> {
    let decode_err = |e: postcard::Error| Error::Storage(format!("decode snapshot: {e}"));
    match bytes.split_first() {
        Some((1, body)) => {
            let snap: SnapshotV1 = postcard::from_bytes(body).map_err(decode_err)?;
            Ok(Tables {
                kv: snap.kv.into_iter().collect(),
                tombstones: snap.tombstones.into_iter().collect(),
                index: TableIndex {
                    kvs: snap.index.kvs,
                    tombstones: snap.index.tombstones,
                    ..TableIndex::default()
                },
                kv_reap_floor: snap.kv_reap_floor,
                catalog: Catalog::default(),
                sessions: Sessions::default(),
                cluster_id: None,
            })
        }
        Some((2, body)) => {
            let snap: SnapshotV2 = postcard::from_bytes(body).map_err(decode_err)?;
            Ok(from_v2(snap))
        }
        Some((3, body)) => {
            let (snap, sessions): (SnapshotV2, SessionsV3) =
                postcard::from_bytes(body).map_err(decode_err)?;
            let mut tables = from_v2(snap);
            tables.sessions = sessions_from(&tables, sessions);
            Ok(tables)
        }
        Some((4, body)) => {
            let (snap, sessions, cluster): (SnapshotV2, SessionsV3, ClusterV4) =
                postcard::from_bytes(body).map_err(decode_err)?;
            let mut tables = from_v2(snap);
            tables.sessions = sessions_from(&tables, sessions);
            tables.cluster_id = cluster.cluster_id;
            Ok(tables)
        }
        Some((v, _)) => Err(Error::Storage(format!("unknown snapshot version {v}"))),
        None => Err(Error::Storage("empty snapshot".into())),
    }
}

/// The sessions table with its secondary indexes rebuilt (the held keys from the KV entries).
fn sessions_from(tables: &Tables, snap: SessionsV3) -> Sessions {
    let mut s = Sessions {
        lock_delay: snap.lock_delay.into_iter().collect(),
        index: snap.index,
        ..Sessions::default()
    };
    for row in snap.sessions {
        s.by_node
            .entry(row.node.clone())
            .or_default()
            .insert(row.id.clone());
        for check in row.checks() {
            s.by_check
                .entry((row.node.clone(), check.clone()))
                .or_default()
                .insert(row.id.clone());
        }
        s.rows.insert(row.id.clone(), row);
    }
    for (key, entry) in tables.kv.iter() {
        if let Some(id) = &entry.session {
            s.held.entry(id.clone()).or_default().insert(key.clone());
        }
    }
    s
}

fn from_v2(snap: SnapshotV2) -> Tables {
    {
        {
            let mut catalog = Catalog {
                service_index: snap.service_index.into_iter().collect(),
                extinction_index: snap.extinction_index,
                ..Catalog::default()
            };
            for n in snap.nodes {
                catalog.nodes.insert(n.name.clone(), n);
            }
            for s in snap.services {
                let k = (s.node.clone(), s.id.clone());
                catalog
                    .by_name
                    .entry(s.name.clone())
                    .or_default()
                    .insert(k.clone());
                catalog.services.insert(k, s);
            }
            for c in snap.checks {
                catalog
                    .checks_by_owner
                    .entry((c.node.clone(), c.service_id.clone()))
                    .or_default()
                    .insert(c.id.clone());
                catalog.checks.insert((c.node.clone(), c.id.clone()), c);
            }
            Tables {
                kv: snap.kv.into_iter().collect(),
                tombstones: snap.tombstones.into_iter().collect(),
                index: snap.index,
                kv_reap_floor: snap.kv_reap_floor,
                catalog,
                sessions: Sessions::default(),
                cluster_id: None,
            }
        }
    }
}
