"""py-consul's session, lock (kv acquire/release) and transaction calls against
`muster agent -dev`, unchanged, through py-consul's public API."""

from __future__ import annotations

import base64
import threading

import pytest
from consul.exceptions import ClientError, ConsulException, NotFound


def b64(s: str) -> str:
    return base64.b64encode(s.encode()).decode()


def test_session_create_info_list_node_renew_destroy(c):
    node = c.agent.self()["Config"]["NodeName"]
    sid = c.session.create(name="py-lock", lock_delay=5, ttl=20)
    index, info = c.session.info(sid)
    assert int(index) > 0
    assert info["ID"] == sid
    assert info["Name"] == "py-lock"
    assert info["Node"] == node
    assert info["TTL"] == "20s"
    assert info["LockDelay"] == 5_000_000_000
    assert info["Behavior"] == "release"
    assert info["NodeChecks"] == ["serfHealth"]

    _, sessions = c.session.list()
    assert [s["ID"] for s in sessions] == [sid]
    _, on_node = c.session.node(node)
    assert [s["ID"] for s in on_node] == [sid]

    renewed = c.session.renew(sid)
    assert renewed["ID"] == sid

    assert c.session.destroy(sid) is True
    _, info = c.session.info(sid)
    assert info is None
    with pytest.raises(NotFound):
        c.session.renew(sid)


def test_session_list_blocks_until_a_change(c):
    index, sessions = c.session.list()
    assert sessions == []
    result = {}

    def wait():
        result["value"] = c.session.list(index=index, wait="30s")

    t = threading.Thread(target=wait)
    t.start()
    sid = c.session.create(behavior="delete")
    t.join(timeout=40)
    assert not t.is_alive()
    new_index, sessions = result["value"]
    assert int(new_index) > int(index)
    assert [s["ID"] for s in sessions] == [sid]


def test_kv_acquire_release_and_delete_behavior(c):
    holder = c.session.create()
    other = c.session.create()
    assert c.kv.put("py/lock", "me", acquire=holder) is True
    assert c.kv.put("py/lock", "you", acquire=other) is False
    _, entry = c.kv.get("py/lock")
    assert entry["Session"] == holder
    assert entry["LockIndex"] == 1
    assert c.kv.put("py/lock", "done", release=holder) is True
    _, entry = c.kv.get("py/lock")
    assert "Session" not in entry
    assert entry["Value"] == b"done"

    ephemeral = c.session.create(behavior="delete")
    assert c.kv.put("py/ephemeral", "x", acquire=ephemeral) is True
    assert c.session.destroy(ephemeral) is True
    _, entry = c.kv.get("py/ephemeral")
    assert entry is None

    with pytest.raises(ConsulException):
        c.kv.put("py/lock", "x", acquire="no-such-session")


def test_session_with_a_missing_check_is_refused(c):
    with pytest.raises(ConsulException):
        c.session.create(checks=["serfHealth", "no-such-check"])
    with pytest.raises(Exception):
        c.session.create(ttl=5)


def test_txn_commits_all_or_nothing(c):
    result = c.txn.put(
        [
            {"KV": {"Verb": "set", "Key": "py/txn/a", "Value": b64("1")}},
            {"KV": {"Verb": "set", "Key": "py/txn/b", "Value": b64("2")}},
            {"KV": {"Verb": "get", "Key": "py/txn/a"}},
        ]
    )
    assert result["Errors"] is None
    assert [r["KV"]["Key"] for r in result["Results"]] == ["py/txn/a", "py/txn/b", "py/txn/a"]
    assert result["Results"][2]["KV"]["Value"] == b64("1")
    index = result["Results"][0]["KV"]["ModifyIndex"]
    assert result["Results"][1]["KV"]["ModifyIndex"] == index

    with pytest.raises(ClientError) as err:
        c.txn.put(
            [
                {"KV": {"Verb": "set", "Key": "py/txn/c", "Value": b64("3")}},
                {"KV": {"Verb": "cas", "Key": "py/txn/a", "Value": b64("x"), "Index": index - 1}},
            ]
        )
    assert "409" in str(err.value)
    assert "OpIndex" in str(err.value)
    _, entry = c.kv.get("py/txn/c")
    assert entry is None
    _, entry = c.kv.get("py/txn/a")
    assert entry["Value"] == b"1"


def test_txn_with_too_many_operations_is_refused(c):
    ops = [{"KV": {"Verb": "set", "Key": f"py/many/{i}", "Value": b64("x")}} for i in range(65)]
    with pytest.raises(ClientError) as err:
        c.txn.put(ops)
    assert "413" in str(err.value)
    _, entry = c.kv.get("py/many/0")
    assert entry is None
    assert c.txn.put(ops[:64])["Errors"] is None


def test_txn_lock_and_check_session(c):
    sid = c.session.create()
    result = c.txn.put(
        [
            {"KV": {"Verb": "lock", "Key": "py/txlock", "Value": b64("v"), "Session": sid}},
            {"KV": {"Verb": "check-session", "Key": "py/txlock", "Session": sid}},
        ]
    )
    assert result["Results"][0]["KV"]["Session"] == sid
    assert result["Results"][0]["KV"]["LockIndex"] == 1
    result = c.txn.put([{"KV": {"Verb": "unlock", "Key": "py/txlock", "Session": sid}}])
    assert "Session" not in result["Results"][0]["KV"]
