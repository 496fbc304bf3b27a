use std::sync::Arc;
use std::time::Duration;

use super::*;

fn events_with(services: Vec<(&str, Vec<&str>)>) -> Arc<Events> {
    let services: Vec<ServiceView> = services
        .into_iter()
        .map(|(n, t)| (n.to_string(), t.into_iter().map(str::to_string).collect()))
        .collect();
    Events::new("web-1".into(), Arc::new(move || services.clone()))
}

fn fire(name: &str) -> FireRequest {
    FireRequest {
        name: name.into(),
        ..Default::default()
    }
}

#[test]
fn fired_events_are_listed_oldest_first_with_ids_and_ltimes() {
    let ev = events_with(vec![]);
    let (index, list) = ev.snapshot(None);
    assert_eq!((index, list.len()), (1, 0), "an empty list answers index 1");
    let a = ev.fire(fire("deploy")).expect("fire");
    assert_eq!(a.version, 1);
    assert_eq!(a.ltime, 0, "the fire answer carries no LTime, as Consul's");
    let b = ev
        .fire(FireRequest {
            payload: b"v2".to_vec(),
            ..fire("restart")
        })
        .expect("fire");
    let (index, list) = ev.snapshot(None);
    assert_eq!(
        list.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(),
        [a.id.as_str(), b.id.as_str()]
    );
    assert_eq!(list[0].ltime, 0);
    assert_eq!(list[1].ltime, 1);
    assert_eq!(Some(index), muster_api::event::id_to_index(&b.id));
    let (index, list) = ev.snapshot(Some("deploy"));
    assert_eq!(list.len(), 1);
    assert_eq!(Some(index), muster_api::event::id_to_index(&a.id));
}

#[test]
fn the_ring_keeps_the_last_256() {
    let ev = events_with(vec![]);
    let mut ids = Vec::new();
    for i in 0..BUFFER_SIZE + 10 {
        ids.push(ev.fire(fire(&format!("e{i}"))).expect("fire").id);
    }
    let (_, list) = ev.snapshot(None);
    assert_eq!(list.len(), BUFFER_SIZE);
    assert_eq!(list[0].id, ids[10]);
    assert_eq!(list[BUFFER_SIZE - 1].id, ids[BUFFER_SIZE + 9]);
}

#[test]
fn validation_is_consuls() {
    let ev = events_with(vec![]);
    let err = |r: FireRequest| ev.fire(r).expect_err("refused").to_string();
    assert_eq!(err(fire("")), "User event missing name");
    assert_eq!(
        err(FireRequest {
            tag_filter: "v1".into(),
            ..fire("x")
        }),
        "Cannot provide tag filter without service filter"
    );
    assert!(err(FireRequest {
        node_filter: "(".into(),
        ..fire("x")
    })
    .starts_with("Invalid node filter: "));
    let big = ev.fire(FireRequest {
        payload: vec![b'x'; 600],
        ..fire("x")
    });
    assert!(matches!(big, Err(EventError::TooLarge(_))), "{big:?}");
    // Roughly 430 bytes of payload fit with a short name and no filters.
    ev.fire(FireRequest {
        payload: vec![b'x'; 400],
        ..fire("x")
    })
    .expect("400 bytes fit");
    assert_eq!(ev.snapshot(None).1.len(), 1, "refused events are not kept");
}

#[test]
fn filters_apply_to_this_node_and_its_services() {
    let ev = events_with(vec![("web", vec!["v1", "blue"]), ("db", vec![])]);
    let kept = |r: FireRequest| {
        let id = ev.fire(r).expect("fire").id;
        ev.snapshot(None).1.iter().any(|e| e.id == id)
    };
    assert!(kept(FireRequest {
        node_filter: "^web-".into(),
        ..fire("a")
    }));
    assert!(!kept(FireRequest {
        node_filter: "^db-".into(),
        ..fire("a")
    }));
    assert!(kept(FireRequest {
        service_filter: "^we".into(),
        ..fire("a")
    }));
    assert!(!kept(FireRequest {
        service_filter: "^api$".into(),
        ..fire("a")
    }));
    assert!(kept(FireRequest {
        service_filter: "web".into(),
        tag_filter: "^bl".into(),
        ..fire("a")
    }));
    assert!(!kept(FireRequest {
        service_filter: "db".into(),
        tag_filter: "v1".into(),
        ..fire("a")
    }));
}

#[test]
fn an_event_delivered_twice_is_kept_once() {
    let ev = events_with(vec![]);
    let event = UserEvent {
        id: uuid::Uuid::new_v4().to_string(),
        name: "x".into(),
        payload: b"p".to_vec(),
        node_filter: String::new(),
        service_filter: String::new(),
        tag_filter: String::new(),
        version: 1,
        ltime: 4,
    };
    assert!(ev.receive(event.clone()));
    assert!(!ev.receive(event));
    assert_eq!(ev.snapshot(None).1.len(), 1);
}

#[test]
fn an_inbound_event_with_a_bad_filter_is_dropped() {
    let ev = events_with(vec![]);
    let kept = ev.receive(UserEvent {
        id: uuid::Uuid::new_v4().to_string(),
        name: "x".into(),
        payload: Vec::new(),
        node_filter: "(".into(),
        service_filter: String::new(),
        tag_filter: String::new(),
        version: 1,
        ltime: 9,
    });
    assert!(!kept);
}

#[test]
fn a_replaced_delivery_carries_fired_events() {
    struct Capture(Mutex<Vec<UserEvent>>);
    impl Delivery for Capture {
        fn publish(&self, event: UserEvent) -> Result<(), EventError> {
            self.0.lock().unwrap_or_else(|e| e.into_inner()).push(event);
            Ok(())
        }
    }
    let ev = events_with(vec![]);
    let capture = Arc::new(Capture(Mutex::new(Vec::new())));
    ev.set_delivery(capture.clone());
    let fired = ev.fire(fire("x")).expect("fire");
    let sent = capture.0.lock().unwrap_or_else(|e| e.into_inner()).clone();
    assert_eq!(sent, vec![fired]);
    assert!(
        ev.snapshot(None).1.is_empty(),
        "only the delivery brings events in"
    );
}

#[tokio::test(start_paused = true)]
async fn list_blocks_until_the_index_changes_or_the_wait_ends() {
    let ev = events_with(vec![]);
    let first = ev.fire(fire("deploy")).expect("fire");
    let (index, _) = ev.snapshot(None);
    // Same index: held until the wait ends, then the same answer.
    let (i, list) = ev.list(None, index, Duration::from_secs(5)).await;
    assert_eq!((i, list.len()), (index, 1));
    // Another name's event wakes the reader but does not change its index: still held.
    let waiter = {
        let ev = ev.clone();
        tokio::spawn(async move {
            ev.list(Some("deploy"), index, Duration::from_secs(60))
                .await
        })
    };
    tokio::task::yield_now().await;
    ev.fire(fire("other")).expect("fire");
    tokio::task::yield_now().await;
    assert!(!waiter.is_finished());
    let second = ev.fire(fire("deploy")).expect("fire");
    let (i, list) = waiter.await.expect("join");
    assert_eq!(Some(i), muster_api::event::id_to_index(&second.id));
    assert_eq!(
        list.iter().map(|e| e.id.clone()).collect::<Vec<_>>(),
        [first.id, second.id]
    );
}
