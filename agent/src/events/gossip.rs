//! User events over LAN gossip: the [`Delivery`] a gossiping agent installs, and the pump that
//! hands gossiped events to [`Events::receive`].
//!
//! Outbound, an event is stamped with this agent's Lamport time, handed to this agent's own
//! [`Events::receive`] at once (so a fire is listed here as soon as it is answered, with the
//! same node/service/tag filters as everywhere), and queued (bounded) for
//! [`Gossip::broadcast_user`]; its copy coming back through gossip is recognised by its ID and
//! ignored (its filters were applied once, at the time it was fired).
//! Inbound, each payload is decoded, its Lamport time witnessed (the clock moves past
//! it, as serf's does), and the event stored. Payloads of another kind or that do not decode are
//! ignored: gossip is shared with whatever else uses the user channel later.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};

use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;

use super::{Delivery, EventError, Events, UserEvent};
use crate::gossip::Gossip;

/// First byte of a gossiped user payload that carries a user event.
const KIND_USER_EVENT: u8 = b'E';

/// Events fired here but not yet handed to gossip; beyond this, firing fails at once.
const QUEUE: usize = 256;

/// IDs of the events this agent fired, remembered to skip their gossip echo.
const OWN_IDS: usize = 1024;

/// The IDs of the last [`OWN_IDS`] events fired here.
type OwnIds = Arc<std::sync::Mutex<std::collections::VecDeque<String>>>;

/// Delivery through gossip.
pub struct GossipDelivery {
    clock: Arc<AtomicU64>,
    queue: mpsc::Sender<Vec<u8>>,
    local: Weak<Events>,
    own: OwnIds,
}

impl Delivery for GossipDelivery {
    fn publish(&self, mut event: UserEvent) -> Result<(), EventError> {
        event.ltime = self.clock.fetch_add(1, Ordering::Relaxed);
        let bytes = encode(&event)?;
        let Some(local) = self.local.upgrade() else {
            return Err(EventError::Delivery("the agent is shutting down".into()));
        };
        if let Ok(mut own) = self.own.lock() {
            if own.len() == OWN_IDS {
                own.pop_front();
            }
            own.push_back(event.id.clone());
        }
        local.receive(event);
        self.queue.try_send(bytes).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => {
                EventError::Delivery("too many user events queued for gossip; try again".into())
            }
            mpsc::error::TrySendError::Closed(_) => {
                EventError::Delivery("the agent is shutting down".into())
            }
        })
    }
}

fn encode(event: &UserEvent) -> Result<Vec<u8>, EventError> {
    let mut bytes = vec![KIND_USER_EVENT];
    let body = postcard::to_allocvec(event)
        .map_err(|e| EventError::Delivery(format!("encoding the event: {e}")))?;
    bytes.extend_from_slice(&body);
    Ok(bytes)
}

fn decode(payload: &[u8]) -> Option<UserEvent> {
    match payload.split_first() {
        Some((&KIND_USER_EVENT, body)) => postcard::from_bytes(body).ok(),
        _ => None,
    }
}

/// Installs gossip delivery on `events` and runs the two pumps until `shutdown`.
pub fn install(events: &Arc<Events>, gossip: Gossip, shutdown: CancellationToken) {
    let clock = Arc::new(AtomicU64::new(0));
    let (queue, mut outbound) = mpsc::channel::<Vec<u8>>(QUEUE);
    let weak: Weak<Events> = Arc::downgrade(events);
    let own = OwnIds::default();
    events.set_delivery(Arc::new(GossipDelivery {
        clock: clock.clone(),
        queue,
        local: weak.clone(),
        own: own.clone(),
    }));
    let mut inbound = gossip.subscribe_user();
    let stop = shutdown.clone();
    tokio::spawn(async move {
        loop {
            let payload = tokio::select! {
                _ = stop.cancelled() => return,
                p = inbound.recv() => p,
            };
            let payload = match payload {
                Ok(p) => p,
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    tracing::warn!(missed = n, "user events: fell behind gossip");
                    continue;
                }
                Err(broadcast::error::RecvError::Closed) => return,
            };
            let Some(event) = decode(&payload) else {
                continue;
            };
            if own.lock().is_ok_and(|own| own.contains(&event.id)) {
                continue; // our own, already received when fired
            }
            // Witness: our next event orders after every one we have seen.
            clock.fetch_max(event.ltime.saturating_add(1), Ordering::Relaxed);
            match weak.upgrade() {
                Some(events) => {
                    events.receive(event);
                }
                None => return,
            }
        }
    });
    tokio::spawn(async move {
        loop {
            let bytes = tokio::select! {
                _ = shutdown.cancelled() => return,
                b = outbound.recv() => match b {
                    Some(b) => b,
                    None => return,
                },
            };
            if let Err(e) = gossip.broadcast_user(bytes).await {
                tracing::warn!(error = %e, "user event not gossiped");
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_round_trip_and_other_payloads_are_ignored() {
        let event = UserEvent {
            id: "6f1c0000-0000-0000-0000-000000000000".into(),
            name: "deploy".into(),
            payload: b"v42".to_vec(),
            node_filter: "web-.*".into(),
            service_filter: String::new(),
            tag_filter: String::new(),
            version: 1,
            ltime: 7,
        };
        let bytes = encode(&event).expect("encodes");
        assert_eq!(decode(&bytes), Some(event));
        assert_eq!(decode(b""), None);
        assert_eq!(decode(b"Xsomething else"), None);
        assert_eq!(decode(&[KIND_USER_EVENT, 0xff, 0xff]), None);
    }
}
