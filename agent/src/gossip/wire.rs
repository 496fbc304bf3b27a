//! What travels in gossip: the member identity foca disseminates (name, address, a renewable
//! incarnation `bump`, and the member's tags, so every member learns every other's role, dc,
//! server port and node id with the member itself) and the custom broadcasts (leave intents,
//! force-leave, opaque user payloads). Wire types only: decoding hostile bytes fails with an
//! error, never a panic.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

/// A member as foca knows it. Two identities with the same address are the same member; the
/// larger `bump` wins (a restarted agent, or one that renewed itself after being declared
/// down).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeIdentity {
    pub name: String,
    pub addr: SocketAddr,
    pub bump: u64,
    pub tags: BTreeMap<String, String>,
}

impl std::fmt::Debug for NodeIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}@{}#{}", self.name, self.addr, self.bump)
    }
}

impl NodeIdentity {
    /// A placeholder for announcing to an address whose member is not known yet (foca accepts
    /// an announce addressed to any identity with its address).
    pub fn probe(addr: SocketAddr) -> NodeIdentity {
        NodeIdentity {
            name: String::new(),
            addr,
            bump: 0,
            tags: BTreeMap::new(),
        }
    }
}

impl foca::Identity for NodeIdentity {
    type Addr = SocketAddr;

    fn renew(&self) -> Option<Self> {
        Some(NodeIdentity {
            bump: self.bump.wrapping_add(1),
            ..self.clone()
        })
    }

    fn addr(&self) -> SocketAddr {
        self.addr
    }

    fn win_addr_conflict(&self, adversary: &Self) -> bool {
        self.bump > adversary.bump
    }
}

/// Custom broadcasts, piggybacked on foca's messages. Variants are only ever appended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Broadcast {
    /// The member `name` (identity `bump`) is leaving on purpose: when it goes down it is
    /// `left`, not `failed`.
    Leave { name: String, bump: u64 },
    /// `force-leave`: a failed member becomes `left` (and with `prune`, is forgotten).
    ForceLeave { name: String, prune: bool, id: u64 },
    /// An opaque payload for the layer above (user events): delivered once to every member.
    User { id: u64, payload: Vec<u8> },
}

impl Broadcast {
    fn key(&self) -> Key {
        match self {
            Broadcast::Leave { name, bump } => Key::Leave(name.clone(), *bump),
            Broadcast::ForceLeave { name, id, .. } => Key::ForceLeave(name.clone(), *id),
            Broadcast::User { id, .. } => Key::User(*id),
        }
    }

    pub fn encode(&self) -> Result<Vec<u8>, postcard::Error> {
        postcard::to_allocvec(self)
    }
}

/// Identifies a broadcast for foca's dissemination backlog: the same key is the same message.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Key {
    Leave(String, u64),
    ForceLeave(String, u64),
    User(u64),
}

impl foca::Invalidates for Key {
    fn invalidates(&self, other: &Self) -> bool {
        self == other
    }
}

/// How many broadcast keys are remembered to recognise repeats.
const SEEN: usize = 4096;

/// Decodes custom broadcasts for foca, passes each new one to the runner through `out`, and
/// tells foca to disseminate only what it had not seen.
pub struct Handler {
    seen: HashMap<Key, ()>,
    order: VecDeque<Key>,
    out: std::sync::mpsc::Sender<Broadcast>,
}

impl Handler {
    pub fn new(out: std::sync::mpsc::Sender<Broadcast>) -> Handler {
        Handler {
            seen: HashMap::new(),
            order: VecDeque::new(),
            out,
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("malformed gossip broadcast: {0}")]
pub struct BadBroadcast(String);

impl foca::BroadcastHandler<NodeIdentity> for Handler {
    type Key = Key;
    type Error = BadBroadcast;

    fn receive_item(
        &mut self,
        data: &[u8],
        _sender: Option<&NodeIdentity>,
    ) -> Result<Option<Key>, BadBroadcast> {
        let msg: Broadcast = postcard::from_bytes(data).map_err(|e| BadBroadcast(e.to_string()))?;
        let key = msg.key();
        if self.seen.contains_key(&key) {
            return Ok(None);
        }
        self.seen.insert(key.clone(), ());
        self.order.push_back(key.clone());
        while self.order.len() > SEEN {
            if let Some(old) = self.order.pop_front() {
                self.seen.remove(&old);
            }
        }
        // The runner drains this after every call into foca; it lives as long as foca.
        let _ = self.out.send(msg);
        Ok(Some(key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use foca::BroadcastHandler;

    #[test]
    fn broadcasts_are_delivered_once_and_garbage_is_an_error() {
        let (tx, rx) = std::sync::mpsc::channel();
        let mut h = Handler::new(tx);
        let msg = Broadcast::Leave {
            name: "a".into(),
            bump: 3,
        };
        let bytes = msg.encode().expect("encode");
        assert!(h.receive_item(&bytes, None).expect("ok").is_some());
        assert!(h.receive_item(&bytes, None).expect("ok").is_none());
        assert_eq!(rx.try_recv().ok(), Some(msg));
        assert!(rx.try_recv().is_err());
        assert!(h.receive_item(&[0xff, 0xff, 0xff], None).is_err());
        assert!(h.receive_item(&[], None).is_err());
    }
}
