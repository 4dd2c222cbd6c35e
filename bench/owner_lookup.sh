#!/usr/bin/env bash
# Admission of a run a controller creates (issue 18 §3): the Argo controller's spawn of alice's
# CronWorkflow, whose submitter scimgate finds through the owner reference — from its watch cache
# of CronWorkflows (a hit), or with one GET to the API server when the cache has not seen that
# owner yet (a miss). The API server and its HTTP face are the test suite's emulator
# (tests/it/owner_bench.rs, run by this script in a debug build: a miss's GET is served by it, so
# the miss figure includes the emulator's answer, as on a cluster it includes kube-apiserver's).
# Same setup as bench/admission.sh otherwise: 10k users and 1k groups, alice in ml-engineers
# through a nested group, HTTP/2 over TLS, ratios from ../shared/bench/compare.sh in one run.
# Not a test: prints figures.
#
#   bash bench/owner_lookup.sh            # HOOKS="mutate validate" MODES="hit miss" by default
set -euo pipefail
cd "$(dirname "$0")/.."
shared=$(cd ../shared && pwd)
source bench/lib.sh
HOOKS=${HOOKS:-mutate validate}
MODES=${MODES:-hit miss}
command -v h2load >/dev/null || apt-get install -y nghttp2-client >/dev/null
cargo build --quiet --release --bin scimgate --example scim_load
cargo test --quiet --no-run --test it 2>/dev/null
work=$(mktemp -d)
pid= face=
trap '[[ -n $pid ]] && kill $pid 2>/dev/null; [[ -n $face ]] && touch "$work/stop"; sleep 1; rm -rf "$work"' EXIT
# The emulator binds its face and writes the kubeconfig scimgate reads owners through.
start_emulator "$work" owner_bench::owner_lookup_bodies
echo "stampMaxAgeSeconds: 86400" >"$work/config.yaml"
start_server "$work" --config "$work/config.yaml" --kubeconfig "$work/kubeconfig"
ca="$work/d/tls/ca.crt"
seed_directory "$scim" "$token" "$ca"
cp "$ca" "$work/ca"
echo "${adm/127.0.0.1/localhost}" >"$work/admission"
for _ in $(seq 1200); do [[ -e $work/ready ]] && break; kill -0 $face 2>/dev/null || break; sleep 0.1; done
[[ -e $work/ready ]] || { cat "$work/face.log" >&2; echo "the emulator did not get the bodies" >&2; exit 1; }
for mode in $MODES; do
  for hook in $HOOKS; do
    curl -sk -X POST --data @"$work/$mode-$hook.json" "$adm/$hook" | grep -q '"allowed":true' \
      || { echo "the $mode $hook request is not allowed: check the setup" >&2; exit 1; }
    before=$(cat "$work/gets")
    floor=patch; [[ $hook == mutate ]] && floor=sign
    echo "== /$hook, owner cache $mode, vs the $floor floor"
    FLOOR=$floor bash "$shared/bench/compare.sh" "$adm/$hook" "$work/$mode-$hook.json"
    sleep 0.5
    echo "GETs of owners during the run: $(( $(cat "$work/gets") - before ))"
  done
done
