//! User events (`/v1/event/*`, `muster event`): not replicated state but messages each agent
//! keeps in a ring of the last [`BUFFER_SIZE`], as Consul keeps serf user events in `eventBuf`.
//!
//! Two directions, kept apart so that gossip plugs in without touching the rest:
//! * outbound: [`Events::fire`] validates a request, stamps ID and version, checks Consul's size
//!   limit and hands the event to the agent's [`Delivery`] (today [`LocalDelivery`], which only
//!   reaches this agent; the cluster's gossip replaces it with [`Events::set_delivery`]);
//! * inbound: every delivered event — this agent's own or one gossiped from another node —
//!   enters through [`Events::receive`], which applies the node/service/tag filters against this
//!   agent's node name and local services, stores it and wakes blocked `event/list` readers.
//!
//! The list's index is not a Raft index: it is [`muster_api::event::id_to_index`] of the last
//! listed event's ID (1 when there is none), compared for equality only, as Consul does.
//! Knows nothing about HTTP.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::Duration;

use regex::Regex;
use serde::{Deserialize, Serialize};

/// How many events an agent remembers (Consul's `eventBuf`).
pub const BUFFER_SIZE: usize = 256;

/// Serf's default `UserEventSizeLimit`: the gossip message's name plus its encoded event.
pub const SIZE_LIMIT: usize = 512;

/// The user-event protocol version this agent writes and understands.
pub const VERSION: i64 = 1;

/// Serf event names of Consul's user events carry this prefix.
const SERF_NAME_PREFIX: &str = "consul:event:";

/// One user event, as delivered between agents.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserEvent {
    pub id: String,
    pub name: String,
    pub payload: Vec<u8>,
    pub node_filter: String,
    pub service_filter: String,
    pub tag_filter: String,
    pub version: i64,
    /// The Lamport time the delivery stamped (0 until delivered).
    pub ltime: u64,
}

impl UserEvent {
    /// The wire (JSON) shape.
    pub fn to_api(&self) -> muster_api::UserEvent {
        muster_api::UserEvent {
            id: self.id.clone(),
            name: self.name.clone(),
            payload: (!self.payload.is_empty()).then(|| self.payload.clone()),
            node_filter: self.node_filter.clone(),
            service_filter: self.service_filter.clone(),
            tag_filter: self.tag_filter.clone(),
            version: self.version,
            ltime: self.ltime,
        }
    }

    /// Bytes of this event as Consul encodes it for serf (msgpack of the `UserEvent` struct:
    /// `ID`, `n`, `v` always, `p`, `nf`, `sf`, `tf` when non-empty), for the size limit.
    fn encoded_len(&self) -> usize {
        // msgpack's old raw format: fixraw up to 31 bytes, raw16 up to 65535, raw32 beyond.
        fn raw(len: usize) -> usize {
            len + match len {
                0..=31 => 1,
                32..=65535 => 3,
                _ => 5,
            }
        }
        let mut n = 1 + raw(2) + raw(self.id.len()) + raw(1) + raw(self.name.len()) + raw(1) + 1;
        for (key, value) in [
            (1, self.payload.len()),
            (2, self.node_filter.len()),
            (2, self.service_filter.len()),
            (2, self.tag_filter.len()),
        ] {
            if value > 0 {
                n += raw(key) + raw(value);
            }
        }
        n
    }
}

/// What `PUT /v1/event/fire/:name` (or `muster event`) asks for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FireRequest {
    pub name: String,
    pub payload: Vec<u8>,
    pub node_filter: String,
    pub service_filter: String,
    pub tag_filter: String,
}

/// Why an event was not fired.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    /// A bad name or filter (Consul's messages).
    #[error("{0}")]
    Invalid(String),
    /// Above serf's user-event size limit.
    #[error("{0}")]
    TooLarge(String),
    /// The delivery could not take the event.
    #[error("{0}")]
    Delivery(String),
}

/// How an event reaches the agents of the datacenter. Implementations stamp the Lamport time
/// and hand every event — including the one sent — to the receiving agents' [`Events::receive`].
pub trait Delivery: Send + Sync {
    fn publish(&self, event: UserEvent) -> Result<(), EventError>;
}

/// Delivery without gossip: the event reaches this agent only.
pub struct LocalDelivery {
    clock: AtomicU64,
    inbound: Weak<Events>,
}

impl LocalDelivery {
    pub fn new(inbound: Weak<Events>) -> Self {
        LocalDelivery {
            clock: AtomicU64::new(0),
            inbound,
        }
    }
}

impl Delivery for LocalDelivery {
    fn publish(&self, mut event: UserEvent) -> Result<(), EventError> {
        event.ltime = self.clock.fetch_add(1, Ordering::Relaxed);
        match self.inbound.upgrade() {
            Some(events) => {
                events.receive(event);
                Ok(())
            }
            None => Err(EventError::Delivery("the agent is shutting down".into())),
        }
    }
}

/// A local service as the event filters see it: its name and tags.
pub type ServiceView = (String, Vec<String>);

/// This agent's services, read when an event with a service filter arrives.
pub type LocalServices = Arc<dyn Fn() -> Vec<ServiceView> + Send + Sync>;

/// The agent's user events: the ring buffer, its notifier and the delivery.
pub struct Events {
    node_name: String,
    services: LocalServices,
    buffer: Mutex<VecDeque<UserEvent>>,
    /// Bumped on every stored event; blocked readers wait for a change.
    changed: tokio::sync::watch::Sender<u64>,
    delivery: RwLock<Arc<dyn Delivery>>,
}

impl Events {
    /// Events for the node `node_name` whose local services `services` lists, delivered
    /// locally until [`Events::set_delivery`] installs another delivery.
    pub fn new(node_name: String, services: LocalServices) -> Arc<Events> {
        Arc::new_cyclic(|weak| Events {
            node_name,
            services,
            buffer: Mutex::new(VecDeque::with_capacity(BUFFER_SIZE)),
            changed: tokio::sync::watch::Sender::new(0),
            delivery: RwLock::new(Arc::new(LocalDelivery::new(weak.clone()))),
        })
    }

    /// Replaces how events leave this agent (the cluster's gossip).
    pub fn set_delivery(&self, delivery: Arc<dyn Delivery>) {
        *self.delivery.write().unwrap_or_else(|e| e.into_inner()) = delivery;
    }

    /// Validates `req`, gives it an ID and hands it to the delivery; the answer is the event as
    /// Consul's fire endpoint returns it (LTime 0: the delivery stamps its own copy).
    pub fn fire(&self, req: FireRequest) -> Result<UserEvent, EventError> {
        validate(&req)?;
        let event = UserEvent {
            id: uuid::Uuid::new_v4().to_string(),
            name: req.name,
            payload: req.payload,
            node_filter: req.node_filter,
            service_filter: req.service_filter,
            tag_filter: req.tag_filter,
            version: VERSION,
            ltime: 0,
        };
        let size = SERF_NAME_PREFIX.len() + event.name.len() + event.encoded_len();
        if size > SIZE_LIMIT {
            return Err(EventError::TooLarge(format!(
                "user event exceeds configured limit of {SIZE_LIMIT} bytes before encoding \
                 (this one is {size} bytes: name, filters and a {}-byte payload)",
                event.payload.len()
            )));
        }
        let delivery = self
            .delivery
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        delivery.publish(event.clone())?;
        Ok(event)
    }

    /// An event delivered to this agent: kept when it passes the filters and is not already
    /// kept (same ID), and blocked readers woken. Returns whether it was kept.
    pub fn receive(&self, event: UserEvent) -> bool {
        if event.version > VERSION {
            tracing::warn!(
                version = event.version,
                name = %event.name,
                "event version may have unsupported features"
            );
        }
        if !self.should_process(&event) {
            return false;
        }
        {
            let mut buf = self.buffer.lock().unwrap_or_else(|e| e.into_inner());
            // Gossip may deliver an event more than once; it is kept once.
            if buf.iter().any(|e| e.id == event.id) {
                return false;
            }
            tracing::debug!(name = %event.name, id = %event.id, "new event");
            if buf.len() == BUFFER_SIZE {
                buf.pop_front();
            }
            buf.push_back(event);
        }
        self.changed.send_modify(|n| *n = n.wrapping_add(1));
        true
    }

    /// Consul's `shouldProcessUserEvent`: the node filter against this node's name; the service
    /// filter (and tag filter) against this agent's services. A filter that does not compile
    /// drops the event.
    fn should_process(&self, event: &UserEvent) -> bool {
        let compile = |what: &str, pattern: &str| match Regex::new(pattern) {
            Ok(re) => Some(re),
            Err(e) => {
                tracing::error!(filter = pattern, name = %event.name, error = %e,
                    "failed to parse {what} filter of an event");
                None
            }
        };
        if !event.node_filter.is_empty() {
            match compile("node", &event.node_filter) {
                Some(re) if re.is_match(&self.node_name) => {}
                _ => return false,
            }
        }
        if !event.service_filter.is_empty() {
            let Some(service_re) = compile("service", &event.service_filter) else {
                return false;
            };
            let tag_re = if event.tag_filter.is_empty() {
                None
            } else {
                match compile("tag", &event.tag_filter) {
                    Some(re) => Some(re),
                    None => return false,
                }
            };
            let found = (self.services)().iter().any(|(name, tags)| {
                service_re.is_match(name)
                    && tag_re
                        .as_ref()
                        .is_none_or(|re| tags.iter().any(|t| re.is_match(t)))
            });
            if !found {
                return false;
            }
        }
        true
    }

    /// The events kept, oldest first, with `name` only when given, and the list's index.
    pub fn snapshot(&self, name: Option<&str>) -> (u64, Vec<UserEvent>) {
        let list: Vec<UserEvent> = self
            .buffer
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|e| name.is_none_or(|n| e.name == n))
            .cloned()
            .collect();
        let index = list
            .last()
            .and_then(|e| muster_api::event::id_to_index(&e.id))
            .filter(|i| *i != 0)
            .unwrap_or(1);
        (index, list)
    }

    /// A blocking list (Consul's `EventList`): with `min_index` 0 at once; otherwise as soon as
    /// the list's index differs from `min_index` (it is not ordered), or after `wait`.
    pub async fn list(
        &self,
        name: Option<&str>,
        min_index: u64,
        wait: Duration,
    ) -> (u64, Vec<UserEvent>) {
        let mut rx = self.changed.subscribe();
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            rx.borrow_and_update();
            let (index, list) = self.snapshot(name);
            if min_index == 0 || index != min_index {
                return (index, list);
            }
            tokio::select! {
                changed = rx.changed() => {
                    if changed.is_err() {
                        return (index, list);
                    }
                }
                _ = tokio::time::sleep_until(deadline) => return (index, list),
            }
        }
    }
}

/// Consul's `validateUserEventParams`.
fn validate(req: &FireRequest) -> Result<(), EventError> {
    if req.name.is_empty() {
        return Err(EventError::Invalid("User event missing name".into()));
    }
    if !req.tag_filter.is_empty() && req.service_filter.is_empty() {
        return Err(EventError::Invalid(
            "Cannot provide tag filter without service filter".into(),
        ));
    }
    for (what, pattern) in [
        ("node", &req.node_filter),
        ("service", &req.service_filter),
        ("tag", &req.tag_filter),
    ] {
        if !pattern.is_empty() {
            Regex::new(pattern)
                .map_err(|e| EventError::Invalid(format!("Invalid {what} filter: {e}")))?;
        }
    }
    Ok(())
}

pub mod gossip;

#[cfg(test)]
mod tests;
