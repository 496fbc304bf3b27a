//! What the DNS server keeps between queries, per catalog snapshot and per worker thread:
//!
//! * the groups of records a service lookup yields (see `lookup::service_groups`), which
//!   depend only on the tables, the settings and the question;
//! * for UDP, a few encoded answers per question: [`VARIANTS`] independently shuffled
//!   encodings, each sent at most [`USES`] times (with the query's ID patched in) before it is
//!   re-shuffled and re-encoded, and one of them picked at random per query. Answers stay in a
//!   random order query after query, while most queries for a hot name cost a copy instead of
//!   an encoding.
//!
//! Everything is dropped when the store publishes new tables, so an answer never outlives the
//! catalog state it was computed from. Per thread, so no lock is shared between workers; keyed
//! by the question exactly as it came on the wire (name case included, since answers carry the
//! asker's spelling); bounded in entries ([`MAX_ENTRIES`]) and bytes ([`MAX_WIRE_BYTES`]),
//! cleared whole when full, so random names cannot grow it. Only a weak reference to the
//! snapshot is held, so the cache never keeps an old snapshot alive.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::{Arc, Weak};

use rand::Rng;

use super::handler::Handler;
use super::lookup::Group;
use crate::state::Tables;

/// Most questions remembered per thread (each table).
pub const MAX_ENTRIES: usize = 4096;
/// Most bytes of encoded answers kept per thread.
pub const MAX_WIRE_BYTES: usize = 16 << 20;
/// Encoded answers kept per UDP question.
pub const VARIANTS: usize = 8;
/// Times one encoded answer is sent before it is shuffled again.
pub const USES: u32 = 8;

type Groups = Option<Arc<Vec<Group>>>;

/// What distinguishes two UDP answers to the same question besides the ID.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct WireKey<'a> {
    /// The question section as received.
    pub question: &'a [u8],
    /// The EDNS payload size echoed, or `None` without EDNS.
    pub payload: Option<u16>,
    pub recursion_desired: bool,
    pub checking_disabled: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct OwnedKey {
    question: Box<[u8]>,
    payload: Option<u16>,
    recursion_desired: bool,
    checking_disabled: bool,
}

impl From<&WireKey<'_>> for OwnedKey {
    fn from(k: &WireKey<'_>) -> Self {
        OwnedKey {
            question: k.question.into(),
            payload: k.payload,
            recursion_desired: k.recursion_desired,
            checking_disabled: k.checking_disabled,
        }
    }
}

#[derive(Default)]
struct Cache {
    /// The handler and snapshot the entries were computed for.
    owner: usize,
    tables: Weak<Tables>,
    groups: HashMap<Box<[u8]>, Groups>,
    wire: HashMap<OwnedKey, Vec<(Vec<u8>, u32)>>,
    wire_bytes: usize,
}

impl Cache {
    /// Empties the cache unless it belongs to this handler and snapshot.
    fn validate(&mut self, owner: usize, tables: &Arc<Tables>) {
        if self.owner != owner || !Weak::ptr_eq(&self.tables, &Arc::downgrade(tables)) {
            self.owner = owner;
            self.tables = Arc::downgrade(tables);
            self.groups.clear();
            self.wire.clear();
            self.wire_bytes = 0;
        }
    }
}

thread_local! {
    static CACHE: RefCell<Cache> = RefCell::new(Cache::default());
}

fn owner(handler: &Handler) -> usize {
    handler as *const Handler as usize
}

/// The groups for `question` (wire bytes) in `tables`, computed by `compute` when not cached.
pub fn groups(
    handler: &Handler,
    tables: &Arc<Tables>,
    question: &[u8],
    compute: impl FnOnce() -> Option<Vec<Group>>,
) -> Groups {
    CACHE.with(|cell| {
        let Ok(mut cache) = cell.try_borrow_mut() else {
            return compute().map(Arc::new);
        };
        cache.validate(owner(handler), tables);
        if let Some(hit) = cache.groups.get(question) {
            return hit.clone();
        }
        let computed = compute().map(Arc::new);
        if cache.groups.len() >= MAX_ENTRIES {
            cache.groups.clear();
        }
        cache.groups.insert(question.into(), computed.clone());
        computed
    })
}

/// What [`pick_wire`] found.
pub enum Pick {
    /// An encoded answer to send (its ID still to be patched).
    Hit(Vec<u8>),
    /// Encode a fresh answer and [`store_wire`] it: in a new slot (`None`) or in place of a
    /// worn-out one.
    Build(Option<usize>),
}

/// One of the encoded answers to `key`, picked at random, or which slot to fill.
pub fn pick_wire(handler: &Handler, tables: &Arc<Tables>, key: &WireKey<'_>) -> Pick {
    CACHE.with(|cell| {
        let Ok(mut cache) = cell.try_borrow_mut() else {
            return Pick::Build(None);
        };
        cache.validate(owner(handler), tables);
        let Some(variants) = cache.wire.get_mut(&OwnedKey::from(key)) else {
            return Pick::Build(None);
        };
        if variants.len() < VARIANTS {
            return Pick::Build(None);
        }
        let i = rand::thread_rng().gen_range(0..variants.len());
        let (bytes, uses) = &mut variants[i];
        if *uses >= USES {
            return Pick::Build(Some(i));
        }
        *uses += 1;
        Pick::Hit(bytes.clone())
    })
}

/// Keeps an encoded answer to `key` (already sent once).
pub fn store_wire(
    handler: &Handler,
    tables: &Arc<Tables>,
    key: &WireKey<'_>,
    slot: Option<usize>,
    bytes: Vec<u8>,
) {
    CACHE.with(|cell| {
        let Ok(mut cache) = cell.try_borrow_mut() else {
            return;
        };
        cache.validate(owner(handler), tables);
        if cache.wire_bytes + bytes.len() > MAX_WIRE_BYTES || cache.wire.len() >= MAX_ENTRIES {
            cache.wire.clear();
            cache.wire_bytes = 0;
        }
        let added = bytes.len();
        let variants = cache.wire.entry(OwnedKey::from(key)).or_default();
        let removed = match slot {
            Some(i) if i < variants.len() => {
                std::mem::replace(&mut variants[i], (bytes, 1)).0.len()
            }
            _ if variants.len() < VARIANTS => {
                variants.push((bytes, 1));
                0
            }
            _ => return,
        };
        cache.wire_bytes = cache.wire_bytes + added - removed;
    })
}
