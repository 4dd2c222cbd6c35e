#!/usr/bin/env bash
# Admission latency against the do-nothing floor (../shared/bench/compare.sh), with 10k users
# and 1k groups loaded and alice entitled through a nested group. Not a test: prints figures.
# The bodies are the ones the API-server emulator of the test suite sends for a Workflow create
# (tests/it/apiserver.rs `bench_bodies`): /mutate gets the object as sent (generateName, no
# name), /validate the final object with the stamp the server made and the generated name. The
# server is restarted before measuring, so /validate verifies the stamp for real (not from the
# memory of what it signed); stampMaxAgeSeconds is raised so the stamp stays this request's for
# the length of the run. /mutate is compared with the floor that signs one JWS (FLOOR=sign).
#
#   bash bench/admission.sh               # SOAK_SECONDS=300 for the RSS-over-time run (0 skips it),
#                                         # COMPARE=0 skips the latency comparison,
#                                         # STORE=postgres://… runs on PostgreSQL (bench/ha.sh does)
set -euo pipefail
cd "$(dirname "$0")/.."
here=$PWD
shared=$(cd ../shared && pwd)
source bench/lib.sh
SOAK_SECONDS=${SOAK_SECONDS:-300}
COMPARE=${COMPARE:-1}
command -v h2load >/dev/null || apt-get install -y nghttp2-client >/dev/null
cargo build --quiet --release --bin scimgate --example scim_load
work=$(mktemp -d)
pid=
trap '[[ -n $pid ]] && kill $pid 2>/dev/null; rm -rf "$work"' EXIT
echo "stampMaxAgeSeconds: 86400" >"$work/config.yaml"
start_server "$work" ${STORE:+--store "$STORE"} --config "$work/config.yaml"
ca="$work/d/tls/ca.crt"
seed_directory "$scim" "$token" "$ca"
SCIMGATE_BENCH_ADMISSION=${adm/127.0.0.1/localhost} SCIMGATE_BENCH_CA="$ca" SCIMGATE_BENCH_OUT="$work" \
  cargo test --quiet --test it -- --ignored --exact apiserver::bench_bodies >/dev/null
kill "$pid"; wait "$pid" 2>/dev/null || true
start_server "$work" ${STORE:+--store "$STORE"} --config "$work/config.yaml"
for hook in mutate validate; do
  curl -sk -X POST --data @"$work/$hook.json" "$adm/$hook" | grep -q '"allowed":true' \
    || { echo "the benchmark's $hook request is not allowed: check the setup" >&2; exit 1; }
done
if (( COMPARE )); then
  echo "== /validate vs floor"
  bash "$shared/bench/compare.sh" "$adm/validate" "$work/validate.json"
  echo "== /mutate vs the signing floor"
  FLOOR=sign bash "$shared/bench/compare.sh" "$adm/mutate" "$work/mutate.json"
fi
if (( SOAK_SECONDS > 0 )); then
  echo "== RSS under ${SOAK_SECONDS}s of sustained load on /mutate (8 connections x 4 streams)"
  h2load -D "$SOAK_SECONDS" -c 8 -m 4 -t 1 -d "$work/mutate.json" -H 'content-type: application/json' "$adm/mutate" >"$work/soak" 2>&1 &
  load=$!
  for t in $(seq 0 30 "$SOAK_SECONDS"); do
    echo "t=${t}s RSS $(awk '/VmRSS/ {printf "%.0f MB", $2/1024}' /proc/$pid/status)"
    sleep 30
  done
  wait $load || true
  grep -E "^requests:|^finished in" "$work/soak"
  echo "after: RSS $(awk '/VmRSS/ {printf "%.0f MB", $2/1024}' /proc/$pid/status)"
fi
cd "$here"
