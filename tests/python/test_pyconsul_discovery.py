"""py-consul's service-discovery API (agent services and checks, catalog, health) against
`muster agent -dev`, unchanged. Every call goes through py-consul's public API."""

from __future__ import annotations

import http.server
import threading
import time

import consul
from consul.exceptions import ConsulException
import pytest


def wait_for(predicate, timeout=15.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    pytest.fail(f"timed out after {timeout}s waiting for {what}")


def instance_ids(c, name, **kwargs):
    _, entries = c.health.service(name, **kwargs)
    return sorted(e["Service"]["ID"] for e in entries)


def test_register_ttl_service_and_find_it(c):
    assert c.agent.service.register(
        "web", service_id="web1", port=8080, tags=["v1"], meta={"env": "prod"}, check=consul.Check.ttl("30s")
    )
    services = c.agent.services()
    assert services["web1"]["Service"] == "web"
    assert services["web1"]["Tags"] == ["v1"]
    assert services["web1"]["Meta"] == {"env": "prod"}
    assert services["web1"]["Port"] == 8080

    # Anti-entropy copies it into the catalog; the TTL check starts critical.
    wait_for(lambda: "web" in c.catalog.services()[1], what="web in the catalog")
    assert instance_ids(c, "web") == ["web1"]
    assert instance_ids(c, "web", passing=True) == []

    assert c.agent.check.ttl_pass("service:web1", "all good")
    wait_for(lambda: instance_ids(c, "web", passing=True) == ["web1"], what="web1 passing")
    checks = c.agent.checks()
    assert checks["service:web1"]["Status"] == "passing"
    assert checks["service:web1"]["Output"] == "all good"

    _, entries = c.health.service("web", tag="v1")
    assert [e["Service"]["ID"] for e in entries] == ["web1"]
    _, entries = c.health.service("web", tag="v2")
    assert entries == []

    assert c.agent.service.deregister("web1")
    assert "web1" not in c.agent.services()
    wait_for(lambda: "web" not in c.catalog.services()[1], what="web gone from the catalog")


def test_blocking_health_query_wakes_on_status_change(c):
    c.agent.service.register("api", service_id="api1", check=consul.Check.ttl("30s"))
    wait_for(lambda: instance_ids(c, "api") == ["api1"], what="api1 in the catalog")
    index, _ = c.health.service("api")
    result = {}

    def watch():
        result["value"] = c.health.service("api", index=index, wait="20s", passing=True)

    t = threading.Thread(target=watch)
    started = time.monotonic()
    t.start()
    time.sleep(0.3)
    c.agent.check.ttl_pass("service:api1")
    t.join(timeout=25)
    assert not t.is_alive()
    new_index, entries = result["value"]
    assert int(new_index) > int(index)
    assert [e["Service"]["ID"] for e in entries] == ["api1"]
    assert time.monotonic() - started < 15, "woke on the change, not at the wait timeout"


def test_http_check_follows_a_real_server(c):
    class Handler(http.server.BaseHTTPRequestHandler):
        status = 500

        def do_GET(self):  # noqa: N802 (http.server's naming)
            self.send_response(Handler.status)
            self.end_headers()
            self.wfile.write(b"hello")

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/health"
        c.agent.service.register("apache", port=server.server_port, check=consul.Check.http(url, "1s"))
        wait_for(lambda: c.agent.checks().get("service:apache", {}).get("Status") == "critical", what="critical")
        assert instance_ids(c, "apache", passing=True) == []
        Handler.status = 200
        wait_for(lambda: instance_ids(c, "apache", passing=True) == ["apache"], what="apache passing")
        output = c.agent.checks()["service:apache"]["Output"]
        assert "200 OK" in output and "hello" in output
        Handler.status = 429
        wait_for(lambda: c.agent.checks()["service:apache"]["Status"] == "warning", what="warning")
    finally:
        server.shutdown()
        server.server_close()


def test_standalone_check_and_maintenance(c):
    assert c.agent.check.register("disk", check=consul.Check.ttl("30s"), check_id="disk", notes="root fs")
    checks = c.agent.checks()
    assert checks["disk"]["Name"] == "disk"
    assert checks["disk"]["Notes"] == "root fs"
    assert c.agent.check.ttl_warn("disk", "80% full")
    assert c.agent.checks()["disk"]["Status"] == "warning"
    assert c.agent.check.deregister("disk")
    assert "disk" not in c.agent.checks()

    c.agent.service.register("db", check=consul.Check.ttl("30s"))
    c.agent.check.ttl_pass("service:db")
    assert c.agent.service.maintenance("db", True, "upgrading")
    maint = c.agent.checks()["_service_maintenance:db"]
    assert maint["Status"] == "critical" and maint["Notes"] == "upgrading"
    assert c.agent.service.maintenance("db", False)
    assert "_service_maintenance:db" not in c.agent.checks()

    assert c.agent.maintenance(True, "patching")
    assert c.agent.checks()["_node_maintenance"]["Notes"] == "patching"
    wait_for(lambda: instance_ids(c, "db") == ["db"], what="db in catalog")
    wait_for(lambda: instance_ids(c, "db", passing=True) == [], what="node maintenance hides db")
    assert c.agent.maintenance(False)
    wait_for(lambda: instance_ids(c, "db", passing=True) == ["db"], what="db back")


def test_catalog_register_nodes_and_filter(c):
    assert c.catalog.register(
        "ext-node",
        "10.1.2.3",
        service={"Service": "redis", "ID": "redis1", "Tags": ["primary"], "Port": 6379},
        check={"Node": "ext-node", "CheckID": "redis-alive", "Name": "redis alive", "Status": "passing", "ServiceID": "redis1"},
    )
    _, nodes = c.catalog.nodes()
    names = {n["Node"]: n for n in nodes}
    assert names["ext-node"]["Address"] == "10.1.2.3"
    _, svc = c.catalog.service("redis")
    assert svc[0]["ServiceID"] == "redis1" and svc[0]["ServicePort"] == 6379
    _, node = c.catalog.node("ext-node")
    assert "redis1" in node["Services"]
    _, checks = c.health.node("ext-node")
    assert [ch["CheckID"] for ch in checks] == ["redis-alive"]
    _, passing = c.health.state("passing")
    assert any(ch["CheckID"] == "redis-alive" for ch in passing)
    _, filtered = c.health.service("redis", filter_expr='"primary" in Service.Tags and Checks.Status == passing')
    assert len(filtered) == 1
    _, filtered = c.catalog.nodes(filter_expr='Address == "10.1.2.3"')
    assert [n["Node"] for n in filtered] == ["ext-node"]
    with pytest.raises(ConsulException):
        c.catalog.nodes(filter_expr="Meta.rack ==")
    assert c.catalog.deregister("ext-node")
    _, nodes = c.catalog.nodes()
    assert "ext-node" not in {n["Node"] for n in nodes}
    assert c.catalog.datacenters() == ["dc1"]


def test_bad_registrations_are_refused(c):
    with pytest.raises(ConsulException):
        c.agent.service.register("scripted", check=consul.Check.script(["true"], "10s"))
    assert "scripted" not in c.agent.services()
    # 404 for an unknown check: py-consul reports it as False.
    assert c.agent.check.ttl_pass("no-such-check") is False
