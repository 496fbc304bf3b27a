#!/usr/bin/env bash
# Muster and etcd side by side on this machine.
#
# Installs etcd (Debian's etcd-server) when it is missing, builds release binaries, starts a
# persistent single-server Muster and a single-member etcd with their data directories in one
# temporary directory (same disk; both fsync before acknowledging a write), prints the machine
# and its fsync latency, then runs the scenarios on both alternately (Muster, etcd, Muster,
# etcd, ...) and prints one table with Muster/etcd ratios, then the spawn-to-ready figures.
# With --checks it also runs issue 3's service-discovery figures (Muster alone against its
# targets: etcd has no health checks) on a `muster agent -dev` the bench starts and stops.
# With --grpc the KV scenarios also drive the same etcd natively over gRPC (etcd-client, built
# behind muster-bench's `grpc` feature; installs Debian's protobuf-compiler for its build when
# protoc is missing) and a second table gives the Muster/etcd-gRPC ratios.
# Everything it starts is stopped on exit, whatever happens; all traffic is on loopback.
#
# usage: bench/compare.sh [--quick] [--rounds N] [--duration D] [--warmup D] [--clients N]
#                         [--scenarios LIST] [--spawns N] [--json FILE] [--no-build]
#                         [--no-ready] [--no-ceiling] [--checks] [--checks-services N]
#                         [--checks-measure D] [--grpc] [--grpc-channels N]
#   --quick         short runs (whole script under 2 minutes once built)
#   --scenarios     comma list of kv-put,kv-get,kv-get-consistent,kv-get-stale,kv-mixed,watch
#   --json FILE     also write the comparison rows as JSON to FILE
#   --no-ready      skip the spawn-to-ready measurements at the end
#   --no-ceiling    skip the HTTP ceiling: Debian's nginx (nginx-light, installed when missing)
#                   answering a static `200 true`, GET-loaded like Muster's kv-get, alternately
#   --checks        also run `muster-bench checks` (10,000 HTTP checks at 10s: agent CPU and
#                   RSS, failure-detection time; about 3 minutes); --checks-services and
#                   --checks-measure change its size and window (default 10000, 60s)
#   --grpc          also drive etcd over gRPC in the KV scenarios (Muster, etcd gateway, etcd
#                   gRPC in turn; with --quick only kv-put and kv-get default, to stay under
#                   2 minutes); builds muster-bench with --features grpc
#   --grpc-channels gRPC channels (HTTP/2 connections) the clients share (default 1, as a
#                   real gRPC client); implies --grpc
#   --cluster       three of each instead of one: Muster servers formed by -bootstrap-expect 3
#                   (gossip and server RPC on 127.0.0.1-3) against a three-member etcd cluster
#                   on the same addresses; the load goes to Muster's leader and to etcd's
#                   first member (its gateway forwards to its leader). KV scenarios only; no
#                   ceiling, gRPC or spawn figures in this mode.
set -euo pipefail

ROUNDS=2
DURATION=10s
WARMUP=2s
CLIENTS=64
SCENARIOS=kv-put,kv-get,kv-get-stale,kv-mixed,watch
SPAWNS=20
SETTLE=2s
WATCH_IDLE=3s
JSON_OUT=
BUILD=1
READY=1
CEILING=1
CLUSTER=0
CHECKS=0
CHECKS_SERVICES=10000
CHECKS_MEASURE=60s
GRPC=0
GRPC_CHANNELS=1
GRPC_SCENARIOS=kv-put,kv-get,kv-get-consistent,kv-get-stale,kv-mixed

while [ $# -gt 0 ]; do
    case "$1" in
        --quick) DURATION=2s; WARMUP=1s; SPAWNS=5; SETTLE=1s; WATCH_IDLE=1s
                 GRPC_SCENARIOS=kv-put,kv-get ;;
        --rounds) ROUNDS=$2; shift ;;
        --duration) DURATION=$2; shift ;;
        --warmup) WARMUP=$2; shift ;;
        --clients) CLIENTS=$2; shift ;;
        --scenarios) SCENARIOS=$2; shift ;;
        --spawns) SPAWNS=$2; shift ;;
        --json) JSON_OUT=$2; shift ;;
        --no-build) BUILD=0 ;;
        --no-ready) READY=0 ;;
        --no-ceiling) CEILING=0 ;;
        --cluster) CLUSTER=1 ;;
        --checks) CHECKS=1 ;;
        --checks-services) CHECKS=1; CHECKS_SERVICES=$2; shift ;;
        --checks-measure) CHECKS=1; CHECKS_MEASURE=$2; shift ;;
        --grpc) GRPC=1 ;;
        --grpc-channels) GRPC=1; GRPC_CHANNELS=$2; shift ;;
        -h|--help) sed -n '2,34p' "$0"; exit 0 ;;
        *) echo "compare.sh: unknown argument $1" >&2; exit 2 ;;
    esac
    shift
done

cd "$(dirname "$0")/.."
ROOT=$(pwd)

if ! command -v etcd >/dev/null 2>&1; then
    echo "== etcd not found: installing Debian's etcd-server" >&2
    SUDO=
    if [ "$(id -u)" != 0 ]; then SUDO=sudo; fi
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq etcd-server >/dev/null
fi

if [ "$CEILING" = 1 ] && ! command -v nginx >/dev/null 2>&1 && [ ! -x /usr/sbin/nginx ]; then
    echo "== nginx not found: installing Debian's nginx-light" >&2
    SUDO=
    if [ "$(id -u)" != 0 ]; then SUDO=sudo; fi
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq nginx-light >/dev/null
fi

if [ "$GRPC" = 1 ] && [ "$BUILD" = 1 ] && ! command -v protoc >/dev/null 2>&1; then
    echo "== protoc not found (etcd-client's build needs it): installing Debian's protobuf-compiler" >&2
    SUDO=
    if [ "$(id -u)" != 0 ]; then SUDO=sudo; fi
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq protobuf-compiler >/dev/null
fi

if [ "$BUILD" = 1 ]; then
    echo "== building release binaries" >&2
    if [ "$GRPC" = 1 ]; then
        # Two invocations, so the agent is built with exactly the features a plain build has
        # (etcd-client's dependencies don't unify into it).
        cargo build --release -q -p muster-agent
        cargo build --release -q -p muster-bench --features grpc
    else
        cargo build --release -q -p muster-agent -p muster-bench
    fi
fi
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
MUSTER=$TARGET_DIR/release/muster
BENCH=$TARGET_DIR/release/muster-bench

WORK=$(mktemp -d "${TMPDIR:-/tmp}/muster-compare.XXXXXX")
PIDS=()
cleanup() {
    local p
    for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for _ in $(seq 50); do
        local alive=0
        for p in "${PIDS[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
        [ "$alive" = 0 ] && break
        sleep 0.1
    done
    for p in "${PIDS[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

read -r M_HTTP M_SERVER M_SERF E_CLIENT E_PEER <<<"$("$BENCH" ports 5 | tr '\n' ' ')"
M_HOST=127.0.0.1

if [ "$CLUSTER" = 1 ]; then
    # Three of each on 127.0.0.1-3: the same ports on each address, as on three hosts.
    CEILING=0; READY=0; GRPC=0; CHECKS=0
    SCENARIOS=$(echo "$SCENARIOS" | tr ',' '\n' | grep -v '^watch$' | paste -sd, -)
    INITIAL=
    for i in 1 2 3; do
        INITIAL="${INITIAL:+$INITIAL,}e$i=http://127.0.0.$i:$E_PEER"
    done
    for i in 1 2 3; do
        JOIN=()
        if [ "$i" != 1 ]; then JOIN=(-retry-join "127.0.0.1:$M_SERF" -retry-interval 1s); fi
        "$MUSTER" agent -server -bootstrap-expect 3 -data-dir "$WORK/muster$i" -node "m$i" \
            -bind "127.0.0.$i" -client "127.0.0.$i" -http-port "$M_HTTP" -server-port "$M_SERVER" \
            -serf-lan-port "$M_SERF" -dns-port -1 -serf-wan-port -1 -log-level warn "${JOIN[@]}" \
            >"$WORK/muster$i.log" 2>&1 &
        PIDS+=("$!")
        etcd --name "e$i" --data-dir "$WORK/etcd$i" \
            --listen-client-urls "http://127.0.0.$i:$E_CLIENT" \
            --advertise-client-urls "http://127.0.0.$i:$E_CLIENT" \
            --listen-peer-urls "http://127.0.0.$i:$E_PEER" \
            --initial-advertise-peer-urls "http://127.0.0.$i:$E_PEER" \
            --initial-cluster "$INITIAL" --initial-cluster-state new \
            --log-level warn >"$WORK/etcd$i.log" 2>&1 &
        PIDS+=("$!")
    done
    # Muster's leader: the address /v1/status/leader names ("127.0.0.N:SERVER_PORT").
    LEADER=
    for _ in $(seq 300); do
        LEADER=$(curl -s --noproxy '*' "http://127.0.0.1:$M_HTTP/v1/status/leader" 2>/dev/null |
            tr -d '"' | cut -d: -f1)
        [ -n "$LEADER" ] && break
        sleep 0.1
    done
    if [ -z "$LEADER" ]; then
        echo "compare.sh: the Muster cluster elected no leader" >&2
        tail -20 "$WORK"/muster*.log >&2; exit 1
    fi
    M_HOST=$LEADER
    M_PID=$(pgrep -f -- "-data-dir $WORK/muster${LEADER##*.} " | head -1)
    E_PID=$(pgrep -f -- "--name e1 --data-dir $WORK/etcd1" | head -1)
else
    "$MUSTER" agent -server -bootstrap -data-dir "$WORK/muster" -node bench \
        -bind 127.0.0.1 -client 127.0.0.1 -http-port "$M_HTTP" -server-port "$M_SERVER" \
        -dns-port -1 -serf-lan-port -1 -serf-wan-port -1 -log-level warn \
        >"$WORK/muster.log" 2>&1 &
    M_PID=$!
    PIDS+=("$M_PID")

    etcd --name bench --data-dir "$WORK/etcd" \
        --listen-client-urls "http://127.0.0.1:$E_CLIENT" \
        --advertise-client-urls "http://127.0.0.1:$E_CLIENT" \
        --listen-peer-urls "http://127.0.0.1:$E_PEER" \
        --initial-advertise-peer-urls "http://127.0.0.1:$E_PEER" \
        --initial-cluster "bench=http://127.0.0.1:$E_PEER" \
        --log-level warn >"$WORK/etcd.log" 2>&1 &
    E_PID=$!
    PIDS+=("$E_PID")
fi

if ! "$BENCH" wait --target muster --addr "$M_HOST:$M_HTTP" --timeout 30s; then
    tail -20 "$WORK"/muster*.log >&2; exit 1
fi
if ! "$BENCH" wait --target etcd --addr "127.0.0.1:$E_CLIENT" --timeout 30s; then
    tail -20 "$WORK"/etcd*.log >&2; exit 1
fi

echo "== machine"
echo "date:   $(date -u +%Y-%m-%dT%H:%M:%SZ)"
echo "cpu:    $(nproc) x $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
echo "memory: $(free -h | awk '/^Mem:/ {print $2}')"
echo "disk:   $(df -h "$WORK" | awk 'NR==2 {print $1, $2, "(" $5 " used)"}'), data dirs in $WORK"
echo "kernel: $(uname -r)"
echo "muster: $("$MUSTER" version 2>/dev/null | head -1 || echo '?')   etcd: $(etcd --version | head -1)"
echo "load:   $(cut -d' ' -f1-3 /proc/loadavg)"
"$BENCH" fsync --dir "$WORK" --time 1s --block-size 4096

echo
WHAT="one server each"
if [ "$CLUSTER" = 1 ]; then WHAT="three servers each (Muster's leader $M_HOST, etcd member 1)"; fi
echo "== muster (pid $M_PID) vs etcd (pid $E_PID), $WHAT: $CLIENTS clients, 256-byte values, 1000 keys, $DURATION per run after $WARMUP warm-up, $ROUNDS rounds"
EXTRA_ARGS=()
if [ -n "$JSON_OUT" ]; then EXTRA_ARGS=(--json-out "$JSON_OUT"); fi
if [ "$GRPC" = 1 ]; then
    EXTRA_ARGS+=(--etcd-grpc --grpc-channels "$GRPC_CHANNELS" --grpc-scenarios "$GRPC_SCENARIOS")
fi
"$BENCH" compare --muster-addr "$M_HOST:$M_HTTP" --muster-pid "$M_PID" \
    --etcd-addr "127.0.0.1:$E_CLIENT" --etcd-pid "$E_PID" \
    --rounds "$ROUNDS" --scenarios "$SCENARIOS" --clients "$CLIENTS" \
    --duration "$DURATION" --warmup "$WARMUP" --idle "$WATCH_IDLE" --value-size 256 --keys 1000 \
    "${EXTRA_ARGS[@]}"

if [ "$CEILING" = 1 ]; then
    NGINX=$(command -v nginx || echo /usr/sbin/nginx)
    N_HTTP=$("$BENCH" ports 1)
    mkdir -p "$WORK/nginx/logs" "$WORK/nginx/tmp"
    # Two workers (one per core, like Muster's runtime), keep-alive without a request cap,
    # no logging: the cheapest answer an HTTP server on this machine can give.
    cat >"$WORK/nginx/nginx.conf" <<NGINX
worker_processes 2;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/logs/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    keepalive_requests 1000000;
    client_body_temp_path $WORK/nginx/tmp;
    proxy_temp_path $WORK/nginx/tmp;
    fastcgi_temp_path $WORK/nginx/tmp;
    uwsgi_temp_path $WORK/nginx/tmp;
    scgi_temp_path $WORK/nginx/tmp;
    server {
        listen 127.0.0.1:$N_HTTP;
        default_type text/plain;
        location / { return 200 "true"; }
    }
}
NGINX
    "$NGINX" -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf" -g 'daemon off;' \
        >"$WORK/nginx/stdout.log" 2>&1 &
    N_PID=$!
    PIDS+=("$N_PID")
    if ! "$BENCH" wait --target muster --addr "127.0.0.1:$N_HTTP" --timeout 10s; then
        cat "$WORK/nginx/logs/error.log" "$WORK/nginx/stdout.log" >&2; exit 1
    fi
    echo
    echo "== HTTP ceiling: Muster kv-get (default) vs nginx's static '200 true' ($CLIENTS clients, $DURATION per run, $ROUNDS rounds, alternately)"
    ops() { python3 -c 'import json,sys; print(round(json.load(sys.stdin)["ops_per_sec"]))'; }
    for r in $(seq "$ROUNDS"); do
        m=$("$BENCH" kv-get --addr "127.0.0.1:$M_HTTP" --clients "$CLIENTS" --duration "$DURATION" \
            --warmup "$WARMUP" --keys 1000 --value-size 256 --json | ops)
        n=$("$BENCH" kv-get --addr "127.0.0.1:$N_HTTP" --clients "$CLIENTS" --duration "$DURATION" \
            --warmup "$WARMUP" --keys 1000 --value-size 256 --no-preload --json | ops)
        python3 -c "import sys; m,n=int(sys.argv[1]),int(sys.argv[2]); print(f'round {sys.argv[3]}: muster {m:,} GET/s, nginx {n:,} req/s: muster/nginx {m/n:.2f} (target >= 0.40)')" "$m" "$n" "$r"
    done
fi

if [ "$READY" = 1 ]; then
    echo
    echo "== time from spawn to ready, and idle RSS ($SPAWNS spawns each)"
    "$BENCH" ready --target muster --bin "$MUSTER" --spawns "$SPAWNS" --settle "$SETTLE"
    "$BENCH" ready --target etcd --spawns "$SPAWNS" --settle "$SETTLE"
fi

if [ "$CHECKS" = 1 ]; then
    echo
    echo "== service discovery (issue 3): $CHECKS_SERVICES HTTP checks at 10s on muster agent -dev, Muster alone"
    "$BENCH" checks --agent --bin "$MUSTER" --services "$CHECKS_SERVICES" --interval 10s \
        --measure "$CHECKS_MEASURE" --failures 20
fi
