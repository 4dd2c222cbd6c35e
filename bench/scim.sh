#!/usr/bin/env bash
# SCIM benchmarks, side by side where a peer exists. Not a test: prints figures.
#
#   bash bench/scim.sh            # USERS=100000 NGROUPS=10000 CLIENTS=8 BENCH_SECONDS=10
#
# 1. GET /Users?filter=userName eq "…" with 1k users in 100 groups (the same shape as step 3):
#    scimgate vs scim2-server (Python reference, pinned), same load generator, same run.
# 2. POST /Users, durable, 8 clients.
# 3. Provision USERS users + GROUPS groups (20 members each, every tenth nests another group);
#    RSS after; restart time to ready; the filter figure again at that size.
set -euo pipefail
cd "$(dirname "$0")/.."
USERS=${USERS:-100000}
NGROUPS=${NGROUPS:-10000}
CLIENTS=${CLIENTS:-8}
SECONDS_PER_RUN=${BENCH_SECONDS:-10}
cargo build --quiet --release --bin scimgate --example scim_load
load=./target/release/examples/scim_load
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

start_scimgate() { # data dir; sets URL TOKEN PID
  ./target/release/scimgate serve --dev --data-dir "$1" --admission-addr 127.0.0.1:0 --scim-addr 127.0.0.1:0 --ops-addr 127.0.0.1:0 >"$1.out" 2>"$1.err" &
  PID=$!; pids+=("$PID")
  for _ in $(seq 600); do grep -q '^sgt_' "$1.out" 2>/dev/null && break; sleep 0.05; done
  URL=$(sed -n 's/^ *SCIM URL: *//p' "$1.out" | sed 's/127.0.0.1/localhost/')
  TOKEN=$(grep '^sgt_' "$1.out" | tail -1)
}
rss_mb() { awk '/VmRSS/ {printf "%.0f", $2/1024}' "/proc/$1/status"; }

echo "== 1k users: GET filter, scimgate vs scim2-server"
start_scimgate "$work/a"
$load "$URL" "$TOKEN" "$work/a/tls/ca.crt" seed-users 0 1000 "$CLIENTS" >/dev/null
$load "$URL" "$TOKEN" "$work/a/tls/ca.crt" seed-groups 100 20 1000 "$CLIENTS" >/dev/null
ours_1k=$($load "$URL" "$TOKEN" "$work/a/tls/ca.crt" filter 1000 "$SECONDS_PER_RUN" "$CLIENTS")
echo "scimgate     $ours_1k"
if [[ ! -x .venv/bin/scim2-server ]]; then
  python3 -m venv .venv
  .venv/bin/pip install --quiet --disable-pip-version-check scim2-server==0.8.3
fi
.venv/bin/scim2-server --port 18080 --bearer-token bench >/dev/null 2>&1 &
pids+=("$!")
for _ in $(seq 100); do curl -sf -o /dev/null -H 'Authorization: Bearer bench' http://127.0.0.1:18080/ServiceProviderConfig && break; sleep 0.1; done
$load http://127.0.0.1:18080 bench - seed-users 0 1000 "$CLIENTS" >/dev/null
$load http://127.0.0.1:18080 bench - seed-groups 100 20 1000 "$CLIENTS" >/dev/null
theirs_1k=$($load http://127.0.0.1:18080 bench - filter 1000 "$SECONDS_PER_RUN" "$CLIENTS")
echo "scim2-server $theirs_1k"
rate() { sed -n 's/.*= \([0-9]*\) req\/s.*/\1/p' <<<"$1"; }
awk -v a="$(rate "$ours_1k")" -v b="$(rate "$theirs_1k")" 'BEGIN { printf "ratio scimgate/scim2-server: %.1fx\n", a/b }'

echo "== POST /Users, durable, $CLIENTS clients"
$load "$URL" "$TOKEN" "$work/a/tls/ca.crt" post 1000 20000 "$CLIENTS"

echo "== provision $USERS users + $NGROUPS groups"
start_scimgate "$work/b"
t0=$(date +%s.%N)
$load "$URL" "$TOKEN" "$work/b/tls/ca.crt" seed-users 0 "$USERS" "$CLIENTS"
$load "$URL" "$TOKEN" "$work/b/tls/ca.crt" seed-groups "$NGROUPS" 20 "$USERS" "$CLIENTS"
t1=$(date +%s.%N)
awk -v a="$t0" -v b="$t1" 'BEGIN { printf "provisioning took %.1f s\n", b-a }'
echo "RSS after provisioning: $(rss_mb "$PID") MB"
$load "$URL" "$TOKEN" "$work/b/tls/ca.crt" filter "$USERS" "$SECONDS_PER_RUN" "$CLIENTS" | sed "s/^/at $USERS users: /"
kill "$PID"; wait "$PID" 2>/dev/null || true
t0=$(date +%s.%N)
start_scimgate "$work/b"
t1=$(date +%s.%N)
awk -v a="$t0" -v b="$t1" 'BEGIN { printf "restart to serving with that state: %.2f s\n", b-a }'
echo "RSS after restart: $(rss_mb "$PID") MB"
$load "$URL" "$TOKEN" "$work/b/tls/ca.crt" filter "$USERS" "$SECONDS_PER_RUN" "$CLIENTS" | sed "s/^/at $USERS users, after restart: /"
