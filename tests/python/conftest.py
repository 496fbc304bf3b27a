"""Fixtures for the py-consul end-to-end tests: a real `muster agent -dev` on free loopback
ports per test, waited for until it has a leader, killed afterwards. Its command line and output
are printed when a test fails (pytest shows a failing test's captured output)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT = 20.0

# Loopback only: never through a proxy the environment may name.
os.environ["NO_PROXY"] = "127.0.0.1,localhost"
os.environ["no_proxy"] = "127.0.0.1,localhost"
for var in ("CONSUL_HTTP_ADDR", "CONSUL_HTTP_TOKEN", "CONSUL_HTTP_SSL"):
    os.environ.pop(var, None)


def muster_bin() -> str:
    path = os.environ.get("MUSTER_BIN") or str(ROOT / "target" / "debug" / "muster")
    if not os.access(path, os.X_OK):
        pytest.fail(f"no muster binary at {path}: build it first (cargo build) or set MUSTER_BIN")
    return path


def free_ports(n: int) -> list[int]:
    """`n` distinct ports free for TCP and UDP on 127.0.0.1."""
    held, ports = [], []
    while len(ports) < n:
        tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        tcp.bind(("127.0.0.1", 0))
        port = tcp.getsockname()[1]
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            udp.bind(("127.0.0.1", port))
        except OSError:
            tcp.close()
            udp.close()
            continue
        held += [tcp, udp]
        ports.append(port)
    for s in held:
        s.close()
    return ports


class MusterAgent:
    """One `muster agent -dev` process; with `https`, also serving HTTPS on `https_port` (the
    certificate comes from `extra_args`, e.g. `-hcl`)."""

    def __init__(self, workdir: Path, extra_args: list[str] | None = None, https: bool = False):
        self.workdir = workdir
        http, dns, server, serf_lan, serf_wan, https_port = free_ports(6)
        self.http_port, self.server_port, self.serf_lan_port = http, server, serf_lan
        self.https_port = https_port if https else None
        self.args = [
            muster_bin(), "agent", "-dev",
            "-http-port", str(http), "-dns-port", str(dns), "-server-port", str(server),
            "-serf-lan-port", str(serf_lan), "-serf-wan-port", str(serf_wan),
        ]  # fmt: skip
        if https:
            self.args += ["-https-port", str(https_port)]
        self.args += extra_args or []
        self.stdout_path = workdir / "agent.stdout"
        self.stderr_path = workdir / "agent.stderr"
        with open(self.stdout_path, "wb") as out, open(self.stderr_path, "wb") as err:
            self.proc = subprocess.Popen(
                self.args, stdin=subprocess.DEVNULL, stdout=out, stderr=err, start_new_session=True
            )

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def server_addr(self) -> str:
        return f"127.0.0.1:{self.server_port}"

    def wait_for_leader(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        last = "no answer yet"
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"agent exited with {self.proc.returncode} before it was ready")
            try:
                with urllib.request.urlopen(self.base_url + "/v1/status/leader", timeout=2) as r:
                    body = r.read()
                    if r.status == 200 and json.loads(body):
                        return
                    last = f"{r.status} {body!r}"
            except (OSError, ValueError, urllib.error.URLError) as e:
                last = repr(e)
            time.sleep(0.05)
        raise RuntimeError(f"no leader within {START_TIMEOUT}s; last: {last}")

    def port_in_use(self) -> bool:
        text = (self.stderr_path.read_text(errors="replace") + self.stdout_path.read_text(errors="replace")).lower()
        return "address already in use" in text or "os error 98" in text

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass

    def report(self) -> str:
        return (
            "===== muster agent (fixture report) =====\n"
            f"command: {' '.join(self.args)}\n"
            f"exit: {self.proc.poll()}\n"
            f"--- stdout ---\n{self.stdout_path.read_text(errors='replace')}\n"
            f"--- stderr ---\n{self.stderr_path.read_text(errors='replace')}\n"
            "===== end =====\n"
        )


@contextlib.contextmanager
def running_agent(workdir: Path, **kwargs):
    """A `MusterAgent(workdir, **kwargs)` with a leader (other ports are chosen when one was
    taken meanwhile); killed on exit, its report printed (pytest shows it when the test failed)."""
    agent = None
    for attempt in range(5):
        agent = MusterAgent(workdir, **kwargs)
        try:
            agent.wait_for_leader()
            break
        except RuntimeError as e:
            agent.kill()
            if attempt < 4 and agent.port_in_use():
                continue
            pytest.fail(f"agent did not start: {e}\n{agent.report()}")
    try:
        yield agent
    finally:
        agent.kill()
        print(agent.report())


@pytest.fixture
def muster():
    """A running `muster agent -dev` with a leader; killed after the test."""
    with tempfile.TemporaryDirectory(prefix="muster-py-") as d:
        with running_agent(Path(d)) as agent:
            yield agent


@pytest.fixture
def c(muster):
    """A py-consul client of the agent."""
    import consul

    return consul.Consul(host="127.0.0.1", port=muster.http_port)
