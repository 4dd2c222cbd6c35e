#!/usr/bin/env bash
# Groups → access at scale (issue 20): 10,000 users in 500 groups (60 members each, every tenth
# nesting the one before) over 200 namespaces. scimgate (release build) reads and writes the
# cluster through the test suite's emulator and its HTTP face (tests/it/access_bench.rs, a
# debug build). Once the directory is seeded, the emulator side turns access on (the policy file
# the server reloads every second gets 500 grants, each in two namespaces: 1,000 RoleBindings) and
# times the reconcile from empty; then deactivates 100 people one by one over SCIM, each timed from
# the SCIM response until no RoleBinding names them. Not a test: prints figures.
#
#   bash bench/access.sh
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
cargo build --quiet --release --bin scimgate --example scim_load
cargo test --quiet --no-run --test it 2>/dev/null
work=$(mktemp -d)
pid= face=
# (The emulator side ends by itself once it has written its result: killing it may fail.)
trap 'kill $pid $face 2>/dev/null || true; rm -rf "$work"' EXIT
start_emulator "$work" access_bench::ten_thousand_people_in_five_hundred_groups_over_two_hundred_namespaces
cp bench/admission-policy.yaml "$work/policy.yaml"
echo "policyReloadSeconds: 1" >"$work/config.yaml"
POLICY="$work/policy.yaml" start_server "$work" --kubeconfig "$work/kubeconfig" --config "$work/config.yaml"
ca="$work/d/tls/ca.crt"
./target/release/examples/scim_load "$scim" "$token" "$ca" seed-users 0 10000 8
./target/release/examples/scim_load "$scim" "$token" "$ca" seed-groups 500 60 10000 8
printf '%s\n%s\n%s\n%s\n' "$scim" "$token" "$ca" "$work/policy.yaml" >"$work/seeded"
for _ in $(seq 6000); do [[ -s $work/result ]] && break; kill -0 $face 2>/dev/null || break; sleep 0.1; done
[[ -s $work/result ]] || { tail -30 "$work/face.log" >&2; echo "the emulator side did not finish" >&2; exit 1; }
python3 - "$work/result" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
e, l = r["fromEmpty"], r["leavers"]
print(f"from empty: {e['bindings']} RoleBindings written {e['secondsFromPolicyWrite']:.2f} s after the policy file changed "
      f"(reloaded within 1 s), {e['secondsFirstToLastWrite']:.2f} s from the first write to the last; "
      f"{e['writes']} writes, {e['requests']} API requests in all")
print(f"leavers: {l['people']} people, one at a time, out of every binding ({l['bindingsChanged']} in all) "
      f"p50 {l['p50Ms']:.0f} ms, p99 {l['p99Ms']:.0f} ms, max {l['maxMs']:.0f} ms after the SCIM response; "
      f"{l['writes']} writes, {l['requests']} API requests")
PY
