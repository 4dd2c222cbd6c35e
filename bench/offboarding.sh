#!/usr/bin/env bash
# The offboarding sweep over 10,000 stamped objects of one person (issue 19): scimgate (release
# build) reads and writes the cluster through the test suite's emulator and its HTTP face
# (tests/it/sweep_bench.rs, a debug build, which also answers every Event POST). The server is
# restarted once the objects exist, so no stamp is in its memory of what it signed: each is
# verified. Prints the time from the SCIM deactivation to the 10,000th Event and to the
# 10,000th record in the decision log, and the API calls made. The objects are pending runs:
# with MODE=act each is cancelled, a PATCH through the emulator's admission chain (scimgate's
# webhooks included) before its Event. Not a test: prints figures.
#
#   bash bench/offboarding.sh            # MODE=report (the default): nothing changed
#   MODE=act bash bench/offboarding.sh
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${MODE:-report}
source bench/lib.sh
cargo build --quiet --release --bin scimgate --example scim_load
cargo test --quiet --no-run --test it 2>/dev/null
work=$(mktemp -d)
pid= face=
trap '[[ -n $pid ]] && kill $pid 2>/dev/null; [[ -n $face ]] && touch "$work/stop"; sleep 1; rm -rf "$work"' EXIT
start_emulator "$work" sweep_bench::ten_thousand_objects_of_one_person
start_server "$work" --kubeconfig "$work/kubeconfig"
ca="$work/d/tls/ca.crt"
seed_directory "$scim" "$token" "$ca"
cp "$ca" "$work/ca"
echo "${adm/127.0.0.1/localhost}" >"$work/admission"
for _ in $(seq 6000); do [[ -e $work/ready ]] && break; kill -0 $face 2>/dev/null || break; sleep 0.1; done
[[ -e $work/ready ]] || { cat "$work/face.log" >&2; echo "the emulator did not store the objects" >&2; exit 1; }
n=$(cat "$work/ready")
kill "$pid"; wait "$pid" 2>/dev/null || true
start_server "$work" --kubeconfig "$work/kubeconfig" --offboarding-mode "$mode"
echo "${adm/127.0.0.1/localhost}" >"$work/admission2"
for _ in $(seq 100); do [[ -e $work/moved ]] && break; sleep 0.1; done
# Nobody has departed yet: nothing to sweep at start.
sleep 2
lists_before=$(cut -d" " -f2 "$work/counters")
alice=$(curl -s -H "Authorization: Bearer $token" --cacert "$ca" "$scim/Users?filter=userName%20eq%20%22alice@example.com%22" |
  sed 's/.*"id":"\([^"]*\)".*/\1/')
t0=$(date +%s.%N)
curl -s -o /dev/null -X PATCH -H "Authorization: Bearer $token" -H 'content-type: application/scim+json' --cacert "$ca" \
  "$scim/Users/$alice" -d '{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"replace","value":{"active":false}}]}'
for _ in $(seq 12000); do (( $(cut -d' ' -f1 "$work/counters") >= n )) && break; sleep 0.05; done
t1=$(date +%s.%N)
events=$(cut -d" " -f1 "$work/counters"); lists=$(cut -d" " -f2 "$work/counters"); patches=$(cut -d" " -f3 "$work/counters")
records=0
for _ in $(seq 1200); do
  records=$(./target/release/scimgate audit offboarding alice@example.com --data-dir "$work/d" -o json 2>/dev/null |
    python3 -c 'import json,sys; print(len(json.load(sys.stdin)["objects"]))' || echo 0)
  (( records >= n )) && break
  sleep 0.2
done
t2=$(date +%s.%N)
awk -v n="$n" -v a="$t0" -v b="$t1" -v c="$t2" -v e="$events" -v r="$records" -v l="$((lists - lists_before))" -v p="$patches" -v m="$mode" 'BEGIN {
  printf "mode %s, objects: %d; Events: %d in %.2f s after the deactivation (%.0f/s); records: %d within %.2f s\n", m, n, e, b-a, e/(b-a), r, c-a
  printf "API calls: %d LISTs (label scimgate.io/submitted-by-id=<id>, pages of 500, six kinds), %d PATCHes, %d Event POSTs\n", l, p, e }'
