#!/usr/bin/env bash
# The second security review's slowest bodies (issue 16 §3) against a release build: the time
# each takes, and the p50/p99 of a small real review and of /healthz sent meanwhile
# (bench/worst_bodies.py). Not a test: prints figures.
#
#   bash bench/worst_bodies.sh        # DURATION=15 seconds per kind, N=60000 (keys/values per body)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --quiet --release --bin scimgate
work=$(mktemp -d)
pid=
trap '[[ -n $pid ]] && kill $pid 2>/dev/null; rm -rf "$work"' EXIT
./target/release/scimgate serve --dev --data-dir "$work/d" --admission-addr 127.0.0.1:0 --scim-addr 127.0.0.1:0 \
  --ops-addr 127.0.0.1:0 --log-format=json >"$work/out" 2>"$work/err" &
pid=$!
for _ in $(seq 600); do grep -q '^sgt_' "$work/out" 2>/dev/null && break; sleep 0.05; done
adm=$(sed -n 's/^ *admission: *\(https:[^ ]*\)\/validate.*/\1/p' "$work/out" | sed 's/127.0.0.1/localhost/')
scim=$(sed -n 's/^ *SCIM URL: *//p' "$work/out" | sed 's/127.0.0.1/localhost/')
token=$(grep '^sgt_' "$work/out" | tail -1)
ca="$work/d/tls/ca.crt"
# The operations address is logged, not printed.
for _ in $(seq 100); do grep -q '"ops_addr"' "$work/err" && break; sleep 0.05; done
ops="http://$(grep -o '"ops_addr":"[^"]*"' "$work/err" | head -1 | cut -d'"' -f4)"
auth=(-H "Authorization: Bearer $token" -H 'content-type: application/scim+json' --cacert "$ca" -s)
alice=$(curl "${auth[@]}" "$scim/Users" -d '{"userName":"alice@example.com"}' | sed 's/.*"id":"\([^"]*\)".*/\1/')
curl "${auth[@]}" "$scim/Groups" -d "{\"displayName\":\"ml-engineers\",\"members\":[{\"value\":\"$alice\"}]}" >/dev/null
echo "== $(nproc) cores; scimgate $(git rev-parse --short HEAD)"
python3 bench/worst_bodies.py "$adm" "$ops" "$ca"
