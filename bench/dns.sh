#!/usr/bin/env bash
# DNS figure of issue 4: Muster's UDP answers for web.service.consul (A and SRV, 10 healthy
# instances) side by side with NSD serving the same records from a static zone, both driven
# by dnsperf on loopback. Prints queries/s, the Muster/NSD ratio, and p50/p99 at a fixed rate.
#
# Usage: bash bench/dns.sh [--duration SECONDS] [--rate QPS] [--no-edns]
# Installs Debian's dnsperf and nsd when missing; builds muster in release mode.
set -euo pipefail

DUR=10
RATE=10000
EDNS=-e   # both servers send the full answer (10 A / 10 SRV + additionals) to EDNS clients
while [ $# -gt 0 ]; do
  case "$1" in
    --duration) DUR="$2"; shift 2 ;;
    --rate) RATE="$2"; shift 2 ;;
    --no-edns) EDNS=; shift ;;
    *) echo "unknown option: $1" >&2; exit 2 ;;
  esac
done

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
need=()
command -v dnsperf >/dev/null || need+=(dnsperf)
[ -x /usr/sbin/nsd ] || need+=(nsd)
command -v dig >/dev/null || need+=(dnsutils)
command -v curl >/dev/null || need+=(curl)
if [ ${#need[@]} -gt 0 ]; then
  echo "installing ${need[*]}" >&2
  SUDO=; [ "$(id -u)" -ne 0 ] && SUDO=sudo
  $SUDO apt-get update -qq && $SUDO DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
(cd "$ROOT" && cargo build --release --bin muster -q)
MUSTER="$ROOT/target/release/muster"

WORK="$(mktemp -d)"
MPID=; NPID=
cleanup() {
  [ -n "$MPID" ] && kill "$MPID" 2>/dev/null || true
  [ -n "$NPID" ] && kill "$NPID" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
HTTP=$(free_port); DNS=$(free_port); SRV=$(free_port); LAN=$(free_port); WAN=$(free_port); NSDP=$(free_port)

"$MUSTER" agent -dev -log-level warn -http-port "$HTTP" -dns-port "$DNS" -server-port "$SRV" \
  -serf-lan-port "$LAN" -serf-wan-port "$WAN" > "$WORK/muster.log" 2>&1 &
MPID=$!
for _ in $(seq 1 100); do
  curl -sf "http://127.0.0.1:$HTTP/v1/status/leader" | grep -q 127 && break
  sleep 0.1
done

{
  echo '$ORIGIN consul.'
  echo '$TTL 0'
  echo '@ IN SOA ns.consul. hostmaster.consul. 1 3600 600 86400 0'
  echo '@ IN NS ns.consul.'
  echo 'ns IN A 127.0.0.1'
} > "$WORK/consul.zone"
for i in $(seq 1 10); do
  curl -sf -X PUT "http://127.0.0.1:$HTTP/v1/catalog/register" -d "{\"Node\":\"web-$i\",\"Address\":\"127.0.11.$i\",
    \"Service\":{\"ID\":\"web\",\"Service\":\"web\",\"Port\":80},
    \"Check\":{\"CheckID\":\"web\",\"Name\":\"alive\",\"Status\":\"passing\",\"ServiceID\":\"web\"}}" > /dev/null
  echo "web.service IN A 127.0.11.$i" >> "$WORK/consul.zone"
  echo "web.service IN SRV 1 1 80 web-$i.node.dc1.consul." >> "$WORK/consul.zone"
  echo "web-$i.node.dc1 IN A 127.0.11.$i" >> "$WORK/consul.zone"
done
cat > "$WORK/nsd.conf" <<EOF
server:
  ip-address: 127.0.0.1@$NSDP
  do-ip6: no
  username: ""
  chroot: ""
  zonesdir: "$WORK"
  database: ""
  pidfile: "$WORK/nsd.pid"
  logfile: "$WORK/nsd.log"
  xfrdfile: "$WORK/xfrd.state"
  zonelistfile: "$WORK/zone.list"
  server-count: 1
  verbosity: 0
  rrl-ratelimit: 0
  rrl-whitelist-ratelimit: 0
remote-control:
  control-enable: no
zone:
  name: "consul"
  zonefile: "consul.zone"
EOF
/usr/sbin/nsd -d -c "$WORK/nsd.conf" > "$WORK/nsd.out" 2>&1 &
NPID=$!
echo "web.service.consul A" > "$WORK/a.txt"
echo "web.service.consul SRV" > "$WORK/srv.txt"
for _ in $(seq 1 50); do dig @127.0.0.1 -p "$NSDP" +short +time=1 +tries=1 ns.consul > /dev/null 2>&1 && break; sleep 0.1; done
echo "instances answered: muster $(dig @127.0.0.1 -p "$DNS" +short web.service.consul | wc -l), nsd $(dig @127.0.0.1 -p "$NSDP" +short web.service.consul | wc -l)"
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); $(date -u +%FT%TZ); commit $(cd "$ROOT" && git rev-parse --short HEAD)"

qps() { dnsperf -s 127.0.0.1 -p "$1" -d "$2" -l "$DUR" -c 4 -q 200 $EDNS 2>&1 | awk '/Queries per second/ {print $4}'; }
lat() {
  dnsperf -s 127.0.0.1 -p "$1" -d "$2" -l 5 -c 4 -Q "$RATE" $EDNS -v 2>/dev/null \
    | awk '/^> NOERROR/ {print $NF}' | sort -g > "$WORK/lat.txt"
  local n; n=$(wc -l < "$WORK/lat.txt")
  [ "$n" -gt 0 ] || { echo "n/a"; return; }
  echo "p50 $(sed -n "$(( (n+1)/2 ))p" "$WORK/lat.txt")s p99 $(sed -n "$(( (n*99+99)/100 ))p" "$WORK/lat.txt")s"
}

printf '%-6s %14s %14s %7s   %s\n' type "muster q/s" "nsd q/s" ratio "latency at $RATE q/s (muster | nsd)"
for t in a srv; do
  m=$(qps "$DNS" "$WORK/$t.txt"); n=$(qps "$NSDP" "$WORK/$t.txt")
  ratio=$(awk -v m="$m" -v n="$n" 'BEGIN { if (n > 0) printf "%.0f%%", 100*m/n; else print "n/a" }')
  printf '%-6s %14s %14s %7s   %s | %s\n' "$t" "$m" "$n" "$ratio" "$(lat "$DNS" "$WORK/$t.txt")" "$(lat "$NSDP" "$WORK/$t.txt")"
done
