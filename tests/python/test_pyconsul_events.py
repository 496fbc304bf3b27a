"""py-consul's event API (`c.event.fire`, `c.event.list` with blocking) against
`muster agent -dev`, unchanged. Every call goes through py-consul's public API."""

from __future__ import annotations

import threading

from consul.exceptions import BadRequest
import pytest


def test_fire_and_list(c):
    index, events = c.event.list()
    assert events == []

    fired = c.event.fire("deploy", body="v1")
    assert fired["Name"] == "deploy"
    assert fired["Version"] == 1
    assert len(fired["ID"]) == 36

    index, events = c.event.list()
    assert [e["ID"] for e in events] == [fired["ID"]]
    # py-consul decodes the base64 payload.
    assert events[0]["Payload"] == b"v1"
    assert int(index) > 0

    c.event.fire("restart")
    _, events = c.event.list(name="deploy")
    assert [e["Name"] for e in events] == ["deploy"]
    _, events = c.event.list()
    assert [e["Name"] for e in events] == ["deploy", "restart"]
    assert events[1]["Payload"] is None


def test_list_blocks_until_the_next_event(c):
    index, _ = c.event.list(name="wake")
    result = {}

    def blocked():
        result["value"] = c.event.list(name="wake", index=index, wait="20s")

    t = threading.Thread(target=blocked)
    t.start()
    fired = c.event.fire("wake", body="now")
    t.join(timeout=60)
    assert not t.is_alive(), "the blocked list did not return"
    new_index, events = result["value"]
    assert new_index != index
    assert events[-1]["ID"] == fired["ID"]
    assert events[-1]["Payload"] == b"now"


def test_filters_and_bad_input(c):
    c.event.fire("only-here", node=".*")
    c.event.fire("elsewhere", node="^no-such-node$")
    _, events = c.event.list()
    names = [e["Name"] for e in events]
    assert "only-here" in names
    assert "elsewhere" not in names

    with pytest.raises(BadRequest):
        c.event.fire("bad", tag="v1")
