"""py-consul, a real Consul client library from PyPI, against `muster agent -dev`: it must work
unchanged. Every call goes through py-consul's public API."""

from __future__ import annotations

import threading
import time

import consul
from consul.exceptions import BadRequest
import pytest


def test_kv_put_get_delete(c):
    assert c.kv.put("py/foo", "bar") is True
    index, data = c.kv.get("py/foo")
    assert int(index) > 0
    assert data["Key"] == "py/foo"
    assert data["Value"] == b"bar"
    assert data["Flags"] == 0
    assert data["CreateIndex"] == data["ModifyIndex"]
    assert c.kv.delete("py/foo") is True
    index2, data = c.kv.get("py/foo")
    assert data is None
    assert int(index2) > int(index)


def test_kv_missing_key_is_none(c):
    index, data = c.kv.get("py/never")
    assert data is None
    assert int(index) > 0


def test_kv_binary_and_empty_values(c):
    blob = bytes(range(256))
    assert c.kv.put("py/bin", blob) is True
    assert c.kv.get("py/bin")[1]["Value"] == blob
    assert c.kv.put("py/none", None) is True
    assert c.kv.get("py/none")[1]["Value"] is None


def test_kv_cas(c):
    assert c.kv.put("py/cas", "v1", cas=0) is True
    assert c.kv.put("py/cas", "v2", cas=0) is False, "cas=0 only creates"
    _, data = c.kv.get("py/cas")
    mi = data["ModifyIndex"]
    assert c.kv.put("py/cas", "v2", cas=mi) is True
    assert c.kv.put("py/cas", "v3", cas=mi) is False, "a stale cas fails"
    assert c.kv.get("py/cas")[1]["Value"] == b"v2"
    _, data = c.kv.get("py/cas")
    assert c.kv.delete("py/cas", cas=data["ModifyIndex"] + 100) is False
    assert c.kv.get("py/cas")[1] is not None
    assert c.kv.delete("py/cas", cas=data["ModifyIndex"]) is True
    assert c.kv.get("py/cas")[1] is None


def test_kv_flags(c):
    assert c.kv.put("py/flags", "v", flags=42) is True
    assert c.kv.get("py/flags")[1]["Flags"] == 42
    assert c.kv.put("py/flags", "v", flags=2**64 - 1) is True
    assert c.kv.get("py/flags")[1]["Flags"] == 2**64 - 1


def test_kv_recurse_keys_and_recursive_delete(c):
    for k in ["py/r/a", "py/r/b", "py/r/c/d", "py/rz"]:
        assert c.kv.put(k, k) is True
    index, items = c.kv.get("py/r/", recurse=True)
    assert [i["Key"] for i in items] == ["py/r/a", "py/r/b", "py/r/c/d"]
    assert all(i["Value"] == i["Key"].encode() for i in items)
    assert int(index) == max(i["ModifyIndex"] for i in items)
    _, keys = c.kv.get("py/r/", keys=True, separator="/")
    assert keys == ["py/r/a", "py/r/b", "py/r/c/"]
    assert c.kv.delete("py/r/", recurse=True) is True
    _, items = c.kv.get("py/r/", recurse=True)
    assert items is None
    assert c.kv.get("py/rz")[1] is not None


def test_blocking_get_woken_by_a_put_from_another_thread(c, muster):
    c.kv.put("py/watch", "v1")
    index, data = c.kv.get("py/watch")
    assert data["Value"] == b"v1"

    def writer():
        time.sleep(0.3)
        consul.Consul(host="127.0.0.1", port=muster.http_port).kv.put("py/watch", "v2")

    t = threading.Thread(target=writer)
    started = time.monotonic()
    t.start()
    new_index, data = c.kv.get("py/watch", index=index, wait="10s")
    elapsed = time.monotonic() - started
    t.join(timeout=30)
    assert int(new_index) > int(index), "woken by the write with a greater index"
    assert data["Value"] == b"v2"
    assert elapsed < 10, f"returned because of the write, before its 10s wait ({elapsed:.2f}s)"


def test_blocking_get_without_a_write_returns_the_same_index(c):
    c.kv.put("py/idle", "v")
    index, _ = c.kv.get("py/idle")
    started = time.monotonic()
    new_index, data = c.kv.get("py/idle", index=index, wait="1s")
    assert time.monotonic() - started >= 0.95, "held for the wait"
    assert new_index == index
    assert data["Value"] == b"v"


def test_agent_self_and_members(c, muster):
    me = c.agent.self()
    cfg = me["Config"]
    assert cfg["Datacenter"] == "dc1"
    assert cfg["Server"] is True
    assert cfg["NodeName"]
    assert cfg["NodeID"]
    assert cfg["Version"].startswith("1.")
    assert me["Member"]["Name"] == cfg["NodeName"]
    names = [m["Name"] for m in c.agent.members()]
    assert cfg["NodeName"] in names


def test_status_leader_and_peers(c, muster):
    assert c.status.leader() == muster.server_addr
    assert c.status.peers() == [muster.server_addr]


def test_bad_request_raises_bad_request(c):
    with pytest.raises(BadRequest):
        # index=abc is a 400: py-consul raises BadRequest (a ConsulException).
        c.kv.get("py/x", index="abc")
