#!/usr/bin/env bash
# Hostile input (issue 12 §4): what the webhook holds under it. Not a test: prints figures.
#
#  1. RSS ceiling: 50 concurrent worst-case bodies at /validate (h2load: 50 connections, one
#     stream each, 500 requests per kind), peak RSS (VmHWM) after each kind:
#       flat8  the security review's 8 MiB `[[],[],…]`   (refused on its Content-Length)
#       flat6  6 MiB of `[[],…]`, under the body cap     (read, refused by the shape pre-check)
#       dense  an AdmissionReview at the limits that IS decoded: 6.4 MB, just under MAX_TOKENS (524,288)
#              values (260,000 `{}`) plus a 5.6 MB string
#  2. 2,000 slow connections (bench/slow_clients.py: idle, trickled headers, trickled bodies,
#     reopened when cut) held on the admission listener, and the time curl takes to get the answer
#     to a real /validate request on a new connection (TLS handshake included), 20 samples.
#
#   bash bench/hostile.sh          # SLOW=2000 CONCURRENT=50 to change the counts
set -euo pipefail
cd "$(dirname "$0")/.."
SLOW=${SLOW:-2000}
CONCURRENT=${CONCURRENT:-50}
command -v h2load >/dev/null || apt-get install -y nghttp2-client >/dev/null
cargo build --quiet --release --bin scimgate
work=$(mktemp -d)
pid=
slow=
trap '[[ -n $slow ]] && kill $slow 2>/dev/null; [[ -n $pid ]] && kill $pid 2>/dev/null; rm -rf "$work"' EXIT
ulimit -n "$(ulimit -Hn)"
./target/release/scimgate serve --dev --data-dir "$work/d" --admission-addr 127.0.0.1:0 --scim-addr 127.0.0.1:0 \
  --ops-addr 127.0.0.1:0 >"$work/out" 2>"$work/err" &
pid=$!
for _ in $(seq 600); do grep -q '^sgt_' "$work/out" 2>/dev/null && break; sleep 0.05; done
adm=$(sed -n 's/^ *admission: *\(https:[^ ]*\)\/validate.*/\1/p' "$work/out")
port=${adm##*:}
ca="$work/d/tls/ca.crt"
mb() { awk -v k="$1" '$1 == k":" {printf "%.0f MB", $2/1024}' /proc/$pid/status; }

python3 - "$work" <<'PY'
import json, sys
work = sys.argv[1]
def review(obj):
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
        "uid": "b-1", "kind": {"group": "argoproj.io", "version": "v1alpha1", "kind": "Workflow"},
        "resource": {"group": "argoproj.io", "version": "v1alpha1", "resource": "workflows"},
        "namespace": "team-a", "operation": "CREATE", "name": "",
        "userInfo": {"username": "oidc:alice@example.com", "groups": ["system:authenticated"]},
        "object": obj, "oldObject": None, "dryRun": False}}
open(f"{work}/flat8.json", "wb").write(b"[" + b"[]," * (8 * 1024 * 1024 // 3) + b"[]]")
open(f"{work}/flat6.json", "wb").write(b"[" + b"[]," * (6 * 1024 * 1024 // 3) + b"[]]")
dense = json.dumps(review({"metadata": {"generateName": "x-", "namespace": "team-a"},
                           "spec": {"x": "HOLE", "pad": "p" * 5_600_000}})).encode()
dense = dense.replace(b'"HOLE"', b"[" + b"{}," * 260_000 + b"{}]")
open(f"{work}/dense.json", "wb").write(dense)
real = review({"apiVersion": "argoproj.io/v1alpha1", "kind": "Workflow",
               "metadata": {"generateName": "hello-", "namespace": "team-a"},
               "spec": {"entrypoint": "main", "templates": [{"name": "main", "container": {"image": "busybox"}}]}})
open(f"{work}/real.json", "w").write(json.dumps(real))
PY
ls -l "$work"/*.json | awk '{print "  " $9 ": " $5 " bytes"}' | sed "s|$work/||"

echo "== RSS under $CONCURRENT concurrent worst-case bodies"
echo "idle: RSS $(mb VmRSS)"
for kind in flat8 flat6 dense; do
  h2load -n 500 -c "$CONCURRENT" -m 1 -t 2 -d "$work/$kind.json" -H 'content-type: application/json' "$adm/validate" \
    >"$work/h2load.$kind" 2>&1 || true
  codes=$(grep -E "^status codes:" "$work/h2load.$kind" | sed 's/status codes: //')
  took=$(sed -n 's/^finished in \([^,]*\),.*/\1/p' "$work/h2load.$kind")
  echo "$kind: peak RSS $(mb VmHWM), now $(mb VmRSS); $took; $codes"
done
curl -s --cacert "$ca" -X POST -H 'content-type: application/json' --data @"$work/dense.json" "$adm/validate" | head -c 300 || true; echo

latency() {
  for _ in $(seq 20); do
    curl -s -o /dev/null -w '%{time_total} %{http_code}\n' --cacert "$ca" -X POST -H 'content-type: application/json' \
      --data @"$work/real.json" "$adm/validate"
  done | sort -n | awk '{a[NR]=$1; c[$2]++} END {printf "median %.1f ms, max %.1f ms; HTTP", a[int((NR+1)/2)]*1000, a[NR]*1000; for (k in c) printf " %s×%d", k, c[k]}'
}
echo "== a real /validate with $SLOW slow connections open"
echo "none open: $(latency)"
python3 bench/slow_clients.py 127.0.0.1 "$port" "$SLOW" "$ca" >"$work/slow" 2>&1 &
slow=$!
for _ in $(seq 120); do
  n=$(tail -1 "$work/slow" | awk '{print $2}')
  (( ${n:-0} >= SLOW )) && break
  sleep 1
done
echo "open: $(tail -1 "$work/slow" | awk '{print $2}') slow connections; server RSS $(mb VmRSS), fds $(ls /proc/$pid/fd | wc -l)"
echo "with them: $(latency)"
sleep 35
echo "35 s later (cut and reopened): $(tail -1 "$work/slow" | awk '{print $2}') open; RSS $(mb VmRSS), fds $(ls /proc/$pid/fd | wc -l)"
echo "with them: $(latency)"
grep -m1 "open file limit" "$work/out" "$work/err" | head -1 | cut -c1-300
