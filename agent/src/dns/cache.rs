//! Service answers computed once per catalog snapshot: the groups of records a service lookup
//! yields (see `lookup::service_groups`) depend only on the tables, the settings and the
//! question, so each worker thread keeps them until the store publishes new tables. Queries
//! for a hot name then only shuffle, trim and encode.
//!
//! Per thread (no lock is shared between workers); keyed by the question exactly as it came on
//! the wire (name case included, since answers carry the asker's spelling); bounded at
//! [`MAX_ENTRIES`] (cleared whole when full, so random names cannot grow it); holds only a
//! weak reference to the snapshot, so an old snapshot is never kept alive by the cache.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::{Arc, Weak};

use super::handler::Handler;
use super::lookup::Group;
use crate::state::Tables;

/// Most questions remembered per thread.
pub const MAX_ENTRIES: usize = 4096;

type Groups = Option<Arc<Vec<Group>>>;

#[derive(Default)]
struct Cache {
    /// The handler and snapshot the entries were computed for.
    owner: usize,
    tables: Weak<Tables>,
    entries: HashMap<Box<[u8]>, Groups>,
}

thread_local! {
    static CACHE: RefCell<Cache> = RefCell::new(Cache::default());
}

/// The groups for `question` (wire bytes) in `tables`, computed by `compute` when not cached.
pub fn groups(
    handler: &Handler,
    tables: &Arc<Tables>,
    question: &[u8],
    compute: impl FnOnce() -> Option<Vec<Group>>,
) -> Groups {
    let owner = handler as *const Handler as usize;
    CACHE.with(|cell| {
        let Ok(mut cache) = cell.try_borrow_mut() else {
            return compute().map(Arc::new);
        };
        if cache.owner != owner || !Weak::ptr_eq(&cache.tables, &Arc::downgrade(tables)) {
            cache.owner = owner;
            cache.tables = Arc::downgrade(tables);
            cache.entries.clear();
        }
        if let Some(hit) = cache.entries.get(question) {
            return hit.clone();
        }
        let computed = compute().map(Arc::new);
        if cache.entries.len() >= MAX_ENTRIES {
            cache.entries.clear();
        }
        cache.entries.insert(question.into(), computed.clone());
        computed
    })
}
