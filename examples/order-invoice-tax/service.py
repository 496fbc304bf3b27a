#!/usr/bin/env python3
"""One of the walkthrough's three services: order, invoice or tax.

    python3 service.py --service order     # listens on 127.0.0.1:15000
    python3 service.py --service invoice   # 15001
    python3 service.py --service tax       # 15002

order calls invoice, invoice calls tax. Neither knows where the other listens: before each call
it asks the agent (Muster or Consul) for the healthy instances of the service it needs,

    GET http://$CONSUL_HTTP_ADDR/v1/health/service/<name>?passing

and tries them in random order until one answers, so a dead instance costs one refused
connection, not a failed request, and is dropped from the answer once its health check fails.

Every service answers GET /health (200 while the process runs) and its business endpoint:

    GET /tax?amount=100      {"service": "tax", "amount": 100.0, "rate": 0.2, "tax": 20.0, ...}
    GET /invoice?amount=100  {"service": "invoice", "amount": 100.0, "tax": {...}, "total": 120.0, ...}
    GET /order?amount=100    {"service": "order", "amount": 100.0, "invoice": {...}, ...}

Python 3 standard library only. Settings:
    --port N / $PORT                 the port to listen on (default: the service's walkthrough port)
    --bind ADDR / $BIND_ADDR         the address to listen on (default 127.0.0.1)
    $CONSUL_HTTP_ADDR                the agent's HTTP address (default 127.0.0.1:8500)
    $TAX_RATE                        tax's rate (default 0.2)
"""

import argparse
import http.server
import json
import os
import random
import socket
import sys
import urllib.error
import urllib.parse
import urllib.request
import uuid

# The walkthrough's ports, and whom each service calls.
SERVICES = {
    "order": {"port": 15000, "calls": "invoice"},
    "invoice": {"port": 15001, "calls": "tax"},
    "tax": {"port": 15002, "calls": None},
}

# How long one call to the agent or to another service may take.
TIMEOUT = 5.0

# Loopback and the agent are reached directly, never through a proxy the environment names.
OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class ServiceError(Exception):
    """A dependency could not be found or did not answer; becomes a 502 naming it."""


def agent_base_url():
    """`CONSUL_HTTP_ADDR` as a base URL: `127.0.0.1:8500` or `http://127.0.0.1:8500`."""
    addr = os.environ.get("CONSUL_HTTP_ADDR", "").strip() or "127.0.0.1:8500"
    if "://" not in addr:
        addr = "http://" + addr
    return addr.rstrip("/")


def get_json(url):
    """GET `url` and decode its JSON body; raises ServiceError on any failure."""
    try:
        with OPENER.open(url, timeout=TIMEOUT) as resp:
            return json.load(resp)
    except urllib.error.HTTPError as e:
        body = e.read().decode("utf-8", "replace").strip()
        try:
            body = json.loads(body).get("error") or body  # another service's error: its message
        except (ValueError, AttributeError):
            pass
        raise ServiceError(f"GET {url}: HTTP {e.code}: {body}") from e
    except (urllib.error.URLError, OSError, ValueError) as e:
        reason = getattr(e, "reason", e)
        raise ServiceError(f"GET {url}: {reason}") from e


def healthy_instances(name):
    """The passing instances of `name` as (address, port), shuffled.

    The address is the service's own Address, or its node's when the service has none
    (Consul's rule, which DNS follows too)."""
    url = f"{agent_base_url()}/v1/health/service/{urllib.parse.quote(name)}?passing"
    entries = get_json(url)
    found = []
    for entry in entries:
        svc = entry.get("Service") or {}
        node = entry.get("Node") or {}
        address = svc.get("Address") or node.get("Address") or "127.0.0.1"
        found.append((address, svc.get("Port")))
    random.shuffle(found)
    return found


def call(name, path, query):
    """Calls `path` on a healthy instance of `name`, failing over to the next on error."""
    instances = healthy_instances(name)
    if not instances:
        raise ServiceError(f"no healthy instance of {name!r} in the agent's catalog")
    errors = []
    for address, port in instances:
        host = f"[{address}]" if ":" in address else address
        url = f"http://{host}:{port}{path}?{urllib.parse.urlencode(query)}"
        try:
            answer = get_json(url)
        except ServiceError as e:
            log(f"{name} at {address}:{port} failed, trying the next instance: {e}")
            errors.append(str(e))
            continue
        return answer
    raise ServiceError(f"every healthy instance of {name!r} failed: " + "; ".join(errors))


def log(msg):
    print(f"[{SERVICE}] {msg}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------------------
# The business endpoints
# ------------------------------------------------------------------------------------------


def tax(amount):
    rate = float(os.environ.get("TAX_RATE", "0.2"))
    return {"rate": rate, "tax": round(amount * rate, 2)}


def invoice(amount):
    t = call("tax", "/tax", {"amount": amount})
    return {
        "invoice_id": "inv-" + uuid.uuid4().hex[:12],
        "tax": t,
        "total": round(amount + t["tax"], 2),
    }


def order(amount):
    inv = call("invoice", "/invoice", {"amount": amount})
    return {"order_id": "ord-" + uuid.uuid4().hex[:12], "invoice": inv}


BUSINESS = {"order": order, "invoice": invoice, "tax": tax}


class Handler(http.server.BaseHTTPRequestHandler):
    server_version = "order-invoice-tax/1"

    def do_GET(self):
        url = urllib.parse.urlsplit(self.path)
        if url.path == "/health":
            return self.reply(200, {"service": SERVICE, "status": "ok"})
        if url.path != "/" + SERVICE:
            return self.reply(404, {"error": f"no such path {url.path}; try /{SERVICE}?amount=100"})
        params = urllib.parse.parse_qs(url.query)
        try:
            amount = float(params.get("amount", ["100"])[0])
        except ValueError:
            return self.reply(400, {"error": "amount must be a number"})
        try:
            body = BUSINESS[SERVICE](amount)
        except ServiceError as e:
            log(str(e))
            return self.reply(502, {"service": SERVICE, "instance": INSTANCE, "error": str(e)})
        body = {"service": SERVICE, "instance": INSTANCE, "amount": amount, **body}
        self.reply(200, body)

    def reply(self, status, body):
        data = (json.dumps(body) + "\n").encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, fmt, *args):
        log(f"{self.address_string()} {fmt % args}")


def main():
    global SERVICE, INSTANCE
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--service", required=True, choices=sorted(SERVICES))
    p.add_argument("--port", type=int, default=None)
    p.add_argument("--bind", default=os.environ.get("BIND_ADDR", "127.0.0.1"))
    args = p.parse_args()
    SERVICE = args.service
    port = args.port or int(os.environ.get("PORT") or SERVICES[SERVICE]["port"])
    INSTANCE = f"{args.bind}:{port}"

    class Server(http.server.ThreadingHTTPServer):
        address_family = socket.AF_INET6 if ":" in args.bind else socket.AF_INET

    server = Server((args.bind, port), Handler)
    calls = SERVICES[SERVICE]["calls"]
    log(
        f"listening on http://{INSTANCE}"
        + (f", finding {calls} through {agent_base_url()}" if calls else "")
    )
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


SERVICE = ""
INSTANCE = ""

if __name__ == "__main__":
    main()
