"""py-consul against a real cluster: three `muster agent -server -bootstrap-expect 3` processes
on 127.0.0.1-3 and a client agent on 127.0.0.4, joined through gossip (`-retry-join`), each with
its own -bind, -client, ports and -data-dir. The library sees what it would see against Consul:
members with their roles, the Raft peers, the leader, the `consul` service on the three servers,
and a KV write through the client agent read back from every server (default and stale)."""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import consul
import pytest

from conftest import free_ports, muster_bin

SETTLE = 90.0


class Node:
    """One agent process of the cluster."""

    def __init__(self, workdir: Path, name: str, ip: str, server: bool, join: str | None):
        self.name, self.ip = name, ip
        http, dns, rpc, serf_lan = free_ports(4)
        self.http_port, self.serf_lan_port = http, serf_lan
        data = workdir / name
        data.mkdir()
        args = [muster_bin(), "agent", "-node", name, "-bind", ip, "-client", ip,
                "-data-dir", str(data), "-http-port", str(http), "-dns-port", str(dns),
                "-server-port", str(rpc), "-serf-lan-port", str(serf_lan),
                "-serf-wan-port", "-1", "-retry-interval", "1s"]  # fmt: skip
        if server:
            args += ["-server", "-bootstrap-expect", "3"]
        if join:
            args += ["-retry-join", join]
        self.log = workdir / f"{name}.log"
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(
                args, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip

    @property
    def gossip(self) -> str:
        return f"{self.ip}:{self.serf_lan_port}"

    def client(self) -> consul.Consul:
        return consul.Consul(host=self.ip, port=self.http_port)

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait(timeout=10)


def eventually(what: str, f, timeout: float = SETTLE):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            v = f()
            if v:
                return v
            last = v
        except Exception as e:  # a request to a cluster still forming may fail
            last = e
        time.sleep(0.2)
    pytest.fail(f"{what}: not within {timeout}s (last: {last!r})")


@pytest.fixture
def cluster():
    with tempfile.TemporaryDirectory(prefix="muster-py-cluster-") as d:
        workdir = Path(d)
        nodes: list[Node] = []
        try:
            s1 = Node(workdir, "s1", "127.0.0.1", True, None)
            nodes.append(s1)
            for n in (2, 3):
                nodes.append(Node(workdir, f"s{n}", f"127.0.0.{n}", True, s1.gossip))
            nodes.append(Node(workdir, "c4", "127.0.0.4", False, s1.gossip))
            yield nodes
        finally:
            for n in nodes:
                n.stop()
            # Shown by pytest only when the test failed.
            for n in nodes:
                print(f"----- {n.name} ({n.log}) -----")
                print(n.log.read_text(errors="replace")[-4000:])


def test_a_cluster_through_py_consul(cluster):
    servers, client = cluster[:3], cluster[3]
    c = client.client()

    # Members, as the client agent sees them: three servers and itself, all alive.
    def members():
        m = {x["Name"]: (x["Status"], x["Tags"].get("role")) for x in c.agent.members()}
        want = {"s1": (1, "consul"), "s2": (1, "consul"), "s3": (1, "consul"), "c4": (1, "node")}
        return m == want and m

    eventually("four alive members", members)

    # One leader, three Raft peers, the same on every server.
    leader = eventually("a leader", lambda: c.status.leader())
    peers = eventually("three peers", lambda: len(c.status.peers()) == 3 and c.status.peers())
    assert leader in peers
    for s in servers:
        assert eventually(f"{s.name}'s leader", lambda s=s: s.client().status.leader()) == leader

    # The `consul` service: one instance per server.
    def consul_service():
        _, nodes = c.catalog.service("consul")
        return sorted(n["Node"] for n in nodes) == ["s1", "s2", "s3"] and nodes

    eventually("consul service on the three servers", consul_service)

    # A write through the client agent, read on every server (default, then stale).
    assert c.kv.put("cluster/py", "hello") is True
    for s in servers:
        _, entry = s.client().kv.get("cluster/py")
        assert entry is not None and entry["Value"] == b"hello", s.name

        def stale(s=s):
            _, e = s.client().kv.get("cluster/py", consistency="stale")
            return e is not None and e["Value"] == b"hello"

        eventually(f"stale read on {s.name}", stale)

    # A blocking query through the client agent wakes on a write through a server.
    index, _ = c.kv.get("cluster/py")
    servers[1].client().kv.put("cluster/py", "again")
    index2, entry = c.kv.get("cluster/py", index=index, wait="30s")
    assert int(index2) > int(index) and entry["Value"] == b"again"
