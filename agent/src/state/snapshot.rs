//! Snapshot encoding of the tables: a versioned, self-describing byte format kept separate
//! from the in-memory types so either can change without breaking the other.

use serde::{Deserialize, Serialize};

use super::{KvEntry, TableIndex, Tables, Tombstone};
use crate::error::Error;

/// Format version written as the first byte.
const VERSION: u8 = 1;

#[derive(Serialize, Deserialize)]
struct SnapshotV1 {
    kv: Vec<(String, KvEntry)>,
    tombstones: Vec<(String, Tombstone)>,
    index: TableIndex,
    kv_reap_floor: u64,
}

/// Serialises every table.
pub fn encode(tables: &Tables) -> Result<Vec<u8>, Error> {
    let body = SnapshotV1 {
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
    };
    let mut out = vec![VERSION];
    let encoded = postcard::to_allocvec(&body)
        .map_err(|e| Error::Storage(format!("encode snapshot: {e}")))?;
    out.extend_from_slice(&encoded);
    Ok(out)
}

/// Rebuilds the tables from [`encode`]'s output.
pub fn decode(bytes: &[u8]) -> Result<Tables, Error> {
    match bytes.split_first() {
        Some((&VERSION, body)) => {
            let snap: SnapshotV1 = postcard::from_bytes(body)
                .map_err(|e| Error::Storage(format!("decode snapshot: {e}")))?;
            Ok(Tables {
                kv: snap.kv.into_iter().collect(),
                tombstones: snap.tombstones.into_iter().collect(),
                index: snap.index,
                kv_reap_floor: snap.kv_reap_floor,
            })
        }
        Some((v, _)) => Err(Error::Storage(format!("unknown snapshot version {v}"))),
        None => Err(Error::Storage("empty snapshot".into())),
    }
}
