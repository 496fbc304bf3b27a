//! Unit tests of sessions, KV locks, invalidation and transactions in the state machine.

use bytes::Bytes;
use muster_api::HealthStatus;

use super::*;

fn at(time_ms: u64, command: Command) -> Request {
    Request { time_ms, command }
}

fn node(name: &str) -> Command {
    Command::CatalogRegister(Box::new(Registration {
        node: NodeRow {
            name: name.into(),
            address: "10.0.0.1".into(),
            ..NodeRow::default()
        },
        checks: vec![check(name, "serfHealth", HealthStatus::Passing)],
        ..Registration::default()
    }))
}

fn check(node: &str, id: &str, status: HealthStatus) -> CheckRow {
    CheckRow {
        node: node.into(),
        id: id.into(),
        name: id.into(),
        status,
        ..CheckRow::default()
    }
}

fn set_check(node: &str, id: &str, status: HealthStatus) -> Command {
    Command::CatalogRegister(Box::new(Registration {
        node: NodeRow {
            name: node.into(),
            ..NodeRow::default()
        },
        skip_node_update: true,
        checks: vec![check(node, id, status)],
        ..Registration::default()
    }))
}

fn session(id: &str, node: &str, checks: &[&str], behavior: Behavior, delay_ms: u64) -> Command {
    Command::SessionCreate(Box::new(SessionRow {
        id: id.into(),
        node: node.into(),
        node_checks: checks.iter().map(|c| c.to_string()).collect(),
        behavior,
        lock_delay_ms: delay_ms,
        ..SessionRow::default()
    }))
}

fn lock(key: &str, session: &str) -> Command {
    Command::KvLock {
        key: key.into(),
        value: Bytes::from_static(b"v"),
        flags: 0,
        session: session.into(),
        cas: None,
    }
}

fn unlock(key: &str, session: &str) -> Command {
    Command::KvUnlock {
        key: key.into(),
        value: Bytes::new(),
        flags: 0,
        session: session.into(),
        cas: None,
    }
}

/// A store with node `n1` (serfHealth passing) at index 1.
fn store() -> Store {
    let s = Store::default();
    s.apply(1, &at(0, node("n1")));
    s
}

#[test]
fn create_checks_node_and_checks() {
    let s = store();
    let missing_node = s.apply(2, &at(0, session("a", "nope", &[], Behavior::Release, 0)));
    assert!(matches!(missing_node, Response::Session(Err(ref e)) if e.contains("nope")));
    let missing_check = s.apply(2, &at(0, session("a", "n1", &["x"], Behavior::Release, 0)));
    assert!(matches!(missing_check, Response::Session(Err(ref e)) if e.contains("'x'")));
    s.apply(3, &at(0, set_check("n1", "bad", HealthStatus::Critical)));
    let critical = s.apply(
        4,
        &at(0, session("a", "n1", &["bad"], Behavior::Release, 0)),
    );
    assert!(matches!(critical, Response::Session(Err(ref e)) if e.contains("critical")));
    assert!(s.read().sessions.rows.is_empty());
    assert_eq!(
        s.apply(
            5,
            &at(0, session("a", "n1", &["serfHealth"], Behavior::Release, 0))
        ),
        Response::Session(Ok(()))
    );
    let t = s.read();
    assert_eq!(t.sessions_index(), 5);
    assert_eq!(t.node_sessions("n1").len(), 1);
    let dup = s.apply(6, &at(0, session("a", "n1", &[], Behavior::Release, 0)));
    assert!(matches!(dup, Response::Session(Err(_))));
}

#[test]
fn locks_lock_index_and_the_replicated_lock_delay() {
    let s = store();
    s.apply(2, &at(0, session("a", "n1", &[], Behavior::Release, 1_000)));
    s.apply(3, &at(0, session("b", "n1", &[], Behavior::Release, 0)));
    assert_eq!(s.apply(4, &at(0, lock("k", "a"))), Response::Lock(Ok(true)));
    assert_eq!(
        s.apply(5, &at(0, lock("k", "b"))),
        Response::Lock(Ok(false))
    );
    assert_eq!(s.apply(6, &at(0, lock("k", "a"))), Response::Lock(Ok(true)));
    let e = s.read().kv_get("k").1.expect("entry");
    assert_eq!(
        (e.lock_index, e.session.as_deref(), e.modify_index),
        (1, Some("a"), 6)
    );
    assert_eq!(
        s.apply(7, &at(0, unlock("k", "b"))),
        Response::Lock(Ok(false))
    );
    assert!(matches!(
        s.apply(7, &at(0, lock("k", "ghost"))),
        Response::Lock(Err(ref e)) if e.contains("ghost")
    ));

    // Destroying `a` at t=10s releases `k`; `b` may not take it before t=11s.
    s.apply(8, &at(10_000, Command::SessionDestroy { id: "a".into() }));
    let e = s.read().kv_get("k").1.expect("kept");
    assert_eq!((e.session, e.modify_index), (None, 8));
    assert_eq!(
        s.apply(9, &at(10_999, lock("k", "b"))),
        Response::Lock(Ok(false))
    );
    assert_eq!(
        s.apply(10, &at(11_000, lock("k", "b"))),
        Response::Lock(Ok(true))
    );
    assert_eq!(s.read().kv_get("k").1.expect("entry").lock_index, 2);
    // A release is not an invalidation: no delay.
    assert_eq!(
        s.apply(11, &at(11_000, unlock("k", "b"))),
        Response::Lock(Ok(true))
    );
    assert_eq!(
        s.apply(12, &at(11_000, lock("k", "b"))),
        Response::Lock(Ok(true))
    );
}

#[test]
fn cas_with_acquire_checks_the_modify_index() {
    let s = store();
    s.apply(2, &at(0, session("a", "n1", &[], Behavior::Release, 0)));
    let with_cas = |cas| Command::KvLock {
        key: "k".into(),
        value: Bytes::new(),
        flags: 0,
        session: "a".into(),
        cas: Some(cas),
    };
    assert_eq!(s.apply(3, &at(0, with_cas(1))), Response::Lock(Ok(false)));
    assert_eq!(s.apply(4, &at(0, with_cas(0))), Response::Lock(Ok(true)));
    assert_eq!(s.apply(5, &at(0, with_cas(0))), Response::Lock(Ok(false)));
    assert_eq!(s.apply(6, &at(0, with_cas(4))), Response::Lock(Ok(true)));
}

#[test]
fn a_critical_check_invalidates_in_the_same_apply_with_release_and_delete() {
    let s = store();
    s.apply(2, &at(0, set_check("n1", "web", HealthStatus::Passing)));
    s.apply(
        3,
        &at(0, session("rel", "n1", &["web"], Behavior::Release, 0)),
    );
    s.apply(
        4,
        &at(0, session("del", "n1", &["web"], Behavior::Delete, 0)),
    );
    s.apply(
        5,
        &at(
            0,
            session("other", "n1", &["serfHealth"], Behavior::Delete, 0),
        ),
    );
    s.apply(6, &at(0, lock("r", "rel")));
    s.apply(7, &at(0, lock("d", "del")));
    s.apply(8, &at(0, lock("o", "other")));
    s.apply(9, &at(0, set_check("n1", "web", HealthStatus::Warning)));
    assert_eq!(s.read().sessions.rows.len(), 3, "warning keeps sessions");
    s.apply(10, &at(5, set_check("n1", "web", HealthStatus::Critical)));
    let t = s.read();
    assert_eq!(t.sessions.rows.keys().collect::<Vec<_>>(), vec!["other"]);
    assert_eq!(t.kv_get("r").1.expect("released").session, None);
    assert!(t.kv_get("d").1.is_none(), "deleted");
    assert_eq!(t.tombstones.get("d").map(|t| t.index), Some(10));
    assert_eq!(t.sessions_index(), 10);
    assert!(t
        .sessions
        .by_check
        .get(&("n1".into(), "web".into()))
        .is_none());
}

#[test]
fn a_failed_node_invalidates_its_default_sessions() {
    let s = store();
    s.apply(
        2,
        &at(0, session("a", "n1", &["serfHealth"], Behavior::Release, 0)),
    );
    s.apply(3, &at(0, lock("leader", "a")));
    // The leader marks a failed member's serfHealth critical (in a group-committed batch).
    s.apply(
        4,
        &at(
            0,
            Command::Batch(vec![
                set_check("n1", "serfHealth", HealthStatus::Critical),
                Command::KvSet {
                    key: "other".into(),
                    value: Bytes::new(),
                    flags: 0,
                },
            ]),
        ),
    );
    let t = s.read();
    assert!(t.sessions.rows.is_empty());
    assert_eq!(t.kv_get("leader").1.expect("kept").session, None);
}

#[test]
fn removing_a_check_or_the_node_invalidates() {
    let s = store();
    s.apply(2, &at(0, set_check("n1", "web", HealthStatus::Passing)));
    s.apply(
        3,
        &at(0, session("a", "n1", &["web"], Behavior::Release, 0)),
    );
    s.apply(4, &at(0, session("b", "n1", &[], Behavior::Delete, 0)));
    s.apply(5, &at(0, lock("kb", "b")));
    s.apply(
        6,
        &at(
            0,
            Command::CatalogDeregister {
                node: "n1".into(),
                service_id: None,
                check_id: Some("web".into()),
            },
        ),
    );
    assert!(s.read().session_get("a").is_none());
    assert!(s.read().session_get("b").is_some());
    s.apply(
        7,
        &at(
            0,
            Command::CatalogDeregister {
                node: "n1".into(),
                service_id: None,
                check_id: None,
            },
        ),
    );
    let t = s.read();
    assert!(t.sessions.rows.is_empty());
    assert!(t.kv_get("kb").1.is_none());
    assert!(t.sessions.by_node.is_empty());
}

fn kv_op(verb: KvVerb, key: &str, index: u64) -> TxnOp {
    TxnOp::Kv {
        verb,
        key: key.into(),
        value: Bytes::from_static(b"x"),
        flags: 0,
        index,
        session: String::new(),
    }
}

#[test]
fn a_failing_txn_changes_nothing() {
    let s = store();
    s.apply(
        2,
        &at(
            0,
            Command::KvSet {
                key: "a".into(),
                value: Bytes::from_static(b"1"),
                flags: 0,
            },
        ),
    );
    let before = s.read();
    let r = s.apply(
        3,
        &at(
            0,
            Command::Txn(vec![
                kv_op(KvVerb::Set, "b", 0),
                kv_op(KvVerb::Delete, "a", 0),
                kv_op(KvVerb::DeleteCas, "zzz", 0),
                kv_op(KvVerb::Get, "missing", 0),
            ]),
        ),
    );
    match r {
        Response::Txn(Err(errors)) => {
            assert_eq!(
                errors.iter().map(|e| e.op_index).collect::<Vec<_>>(),
                vec![3]
            );
        }
        other => panic!("expected errors, got {other:?}"),
    }
    assert_eq!(*s.read(), *before);

    let r = s.apply(
        4,
        &at(
            0,
            Command::Txn(vec![kv_op(KvVerb::Set, "b", 0), kv_op(KvVerb::Get, "b", 0)]),
        ),
    );
    match r {
        Response::Txn(Ok(results)) => {
            assert_eq!(results.len(), 2);
            assert!(matches!(&results[0], TxnResult::Kv(k, e) if k == "b" && e.value.is_empty()));
            assert!(matches!(&results[1], TxnResult::Kv(_, e) if &e.value[..] == b"x"));
        }
        other => panic!("expected results, got {other:?}"),
    }
    // Read-only transactions leave the tables alone.
    let t = s.read();
    assert!(t.txn_read(&[kv_op(KvVerb::GetTree, "", 0)]).is_ok());
    assert!(t.txn_read(&[kv_op(KvVerb::CheckIndex, "b", 1)]).is_err());
    assert_eq!(*s.read(), *t);
}

#[test]
fn snapshot_v3_keeps_sessions_and_lock_delays_and_v2_still_decodes() {
    let s = store();
    s.apply(
        2,
        &at(
            0,
            session("a", "n1", &["serfHealth"], Behavior::Release, 500),
        ),
    );
    s.apply(3, &at(0, session("b", "n1", &[], Behavior::Delete, 0)));
    s.apply(4, &at(0, lock("k", "a")));
    s.apply(5, &at(0, lock("j", "b")));
    s.apply(6, &at(100, Command::SessionDestroy { id: "a".into() }));
    // Released and deleted keys are no longer counted as held.
    s.apply(7, &at(0, lock("gone", "b")));
    s.apply(8, &at(0, lock("tree/x", "b")));
    s.apply(9, &at(0, Command::KvDelete { key: "gone".into() }));
    s.apply(
        10,
        &at(
            0,
            Command::KvDeleteTree {
                prefix: "tree/".into(),
            },
        ),
    );
    let t = s.read();
    assert_eq!(t.sessions.held.get("b").map(|k| k.len()), Some(1));
    assert_eq!(t.sessions.lock_delay.get("k"), Some(&600));
    let bytes = snapshot::encode(&t).expect("encode");
    assert_eq!(bytes[0], 4);
    let back = snapshot::decode(&bytes).expect("decode");
    assert_eq!(back, *t, "secondary indexes and held keys are rebuilt");
    // Version 3 is version 4 without the cluster id (`None`: one zero byte at the end).
    assert_eq!(bytes[bytes.len() - 1], 0);
    let mut v3 = vec![3];
    v3.extend_from_slice(&bytes[1..bytes.len() - 1]);
    assert_eq!(snapshot::decode(&v3).expect("v3"), *t);

    // A version-2 snapshot is the version-3 body without the sessions part.
    let plain = Store::default();
    plain.apply(1, &at(0, node("n1")));
    let tables = plain.read();
    let v4 = snapshot::encode(&tables).expect("encode");
    // Empty sessions, empty lock-delays, index 0, no cluster id: four zero bytes at the end.
    assert_eq!(&v4[v4.len() - 4..], &[0, 0, 0, 0]);
    let mut v2 = vec![2];
    v2.extend_from_slice(&v4[1..v4.len() - 4]);
    assert_eq!(snapshot::decode(&v2).expect("v2"), *tables);
}

#[test]
fn the_first_cluster_id_applied_stays_and_survives_a_snapshot() {
    let s = Store::default();
    assert_eq!(s.read().cluster_id, None);
    s.apply(2, &at(0, Command::ClusterId { id: 7 }));
    s.apply(3, &at(0, Command::ClusterId { id: 9 }));
    let t = s.read();
    assert_eq!(t.cluster_id, Some(7), "a later id never replaces the first");
    let back = snapshot::decode(&snapshot::encode(&t).expect("encode")).expect("decode");
    assert_eq!(back.cluster_id, Some(7));
    assert_eq!(back, *t);
}
