#!/usr/bin/env bash
# The PostgreSQL store and several replicas: durable SCIM writes, propagation between replicas,
# and admission latency against the do-nothing floor on a PostgreSQL-backed replica. Not a test:
# prints figures. Starts its own throwaway PostgreSQL cluster (scripts/postgres.sh).
#
#   bash bench/ha.sh        # CLIENTS=8 WRITES=20000 SAMPLES=400 ADMISSION=1
set -euo pipefail
cd "$(dirname "$0")/.."
CLIENTS=${CLIENTS:-8}
WRITES=${WRITES:-20000}
SAMPLES=${SAMPLES:-400}
ADMISSION=${ADMISSION:-1}
cargo build --quiet --release --bin scimgate --example scim_load --example propagation
work=$(mktemp -d)
pgdir=$(mktemp -u /tmp/scimgate-bench-pg.XXXXXX)
pgport=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; bash scripts/postgres.sh stop "$pgdir"; rm -rf "$work"; }
trap cleanup EXIT
base=$(bash scripts/postgres.sh start "$pgdir" "$pgport")
psql -q "$base" -c "CREATE DATABASE bench"
STORE=${base%/postgres}/bench
echo "PostgreSQL $(psql -tA "$base" -c 'SHOW server_version') at $STORE (fsync and synchronous_commit on)"

start() { # name; sets SCIM ADM TOKEN CA
  ./target/release/scimgate serve --dev --store "$STORE" --data-dir "$work/$1" \
    --admission-addr 127.0.0.1:0 --scim-addr 127.0.0.1:0 --ops-addr 127.0.0.1:0 >"$work/$1.out" 2>"$work/$1.err" &
  pids+=("$!")
  for _ in $(seq 600); do grep -q '^sgt_' "$work/$1.out" 2>/dev/null && break; sleep 0.05; done
  SCIM=$(sed -n 's/^ *SCIM URL: *//p' "$work/$1.out" | sed 's/127.0.0.1/localhost/')
  ADM=$(sed -n 's/^ *admission: *\(https:[^ ]*\)\/validate.*/\1/p' "$work/$1.out" | sed 's/127.0.0.1/localhost/')
  TOKEN=$(grep '^sgt_' "$work/$1.out" | tail -1)
  CA="$work/$1/tls/ca.crt"
}
start a; A_SCIM=$SCIM; A_TOKEN=$TOKEN; A_CA=$CA
start b; B_SCIM=$SCIM; B_ADM=$ADM; B_TOKEN=$TOKEN; B_CA=$CA
start c

echo "== POST /Users, durable on PostgreSQL, $CLIENTS clients on one replica"
./target/release/examples/scim_load "$A_SCIM" "$A_TOKEN" "$A_CA" post 0 "$WRITES" "$CLIENTS"
echo "== POST /Users, $((CLIENTS / 2)) clients on each of two replicas at once"
./target/release/examples/scim_load "$A_SCIM" "$A_TOKEN" "$A_CA" post 100000 "$((WRITES / 2))" "$((CLIENTS / 2))" &
other=$!
./target/release/examples/scim_load "$B_SCIM" "$B_TOKEN" "$B_CA" post 200000 "$((WRITES / 2))" "$((CLIENTS / 2))"
wait "$other"
echo "== propagation: SCIM ack on A → B's admission answer changes (3 replicas, $((WRITES * 2)) users loaded)"
./target/release/examples/propagation "$A_SCIM" "$A_TOKEN" "$A_CA" "$B_ADM" "$B_CA" "$SAMPLES"

if (( ADMISSION )); then
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  pids=()
  psql -q "$base" -c "CREATE DATABASE admission"
  echo "== admission on a PostgreSQL-backed replica (bench/admission.sh with STORE)"
  STORE=${base%/postgres}/admission SOAK_SECONDS=0 bash bench/admission.sh
fi
