#!/usr/bin/env bash
# The whole test suite, as CI runs it: lints, unit and integration tests (with a throwaway
# PostgreSQL cluster on loopback for the store and HA tests), then scim2-tester against a real
# `scimgate serve --dev`. Installs what it needs (a Python venv in .venv; Debian's postgresql,
# prometheus (promtool), chromium and chromium-driver packages when missing and running as root).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

echo "== lint"
cargo fmt --check
cargo clippy --all-targets --quiet -- -D warnings

echo "== PostgreSQL for the store conformance and HA tests"
pgdir=$(mktemp -u /tmp/scimgate-test-pg.XXXXXX)
pgport=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
cleanup_pg() { bash scripts/postgres.sh stop "$pgdir" || true; }
trap cleanup_pg EXIT
SCIMGATE_TEST_POSTGRES=$(bash scripts/postgres.sh start "$pgdir" "$pgport")
export SCIMGATE_TEST_POSTGRES
echo "cluster at $SCIMGATE_TEST_POSTGRES"

echo "== chromium and chromedriver for the console's browser tests"
if [[ ! -x /usr/bin/chromium || ! -x /usr/bin/chromedriver ]]; then
  if [[ $(id -u) == 0 ]]; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null
  else
    echo "chromium and chromium-driver are not installed (apt-get install chromium chromium-driver, as root): the browser tests will be skipped"
  fi
fi

echo "== cargo test"
cargo test --all-targets
cleanup_pg
trap - EXIT

if [[ ! -x .venv/bin/python ]]; then
  python3 -m venv .venv
fi
.venv/bin/pip install --quiet --disable-pip-version-check -r tests/requirements.txt
cargo build --quiet --bin scimgate
bin="${CARGO_TARGET_DIR:-target}/debug/scimgate"

echo "== manifests: render every overlay the way docs/deployment.md does, validate against Kubernetes 1.32 schemas"
m=$(mktemp -d)
cp -r manifests "$m/"
"$bin" certs --service scimgate --namespace scimgate --out "$m/manifests/overlays/embedded/certs" >"$m/cabundle" 2>/dev/null
echo "caBundle=$(cat "$m/cabundle")" >"$m/manifests/overlays/embedded/cabundle.env"
cp -r "$m/manifests/overlays/embedded/certs" "$m/manifests/overlays/ha-postgres/certs"
cp "$m/manifests/overlays/embedded/cabundle.env" "$m/manifests/overlays/ha-postgres/"
echo "url=postgres://scimgate:secret@postgres.db.svc:5432/scimgate" >"$m/manifests/overlays/ha-postgres/store.env"
for overlay in embedded cert-manager ha-postgres managed; do
  kubectl kustomize "$m/manifests/overlays/$overlay" >"$m/$overlay.yaml"
  .venv/bin/kubernetes-validate --strict --quiet --no-warn -k 1.32.0 "$m/$overlay.yaml"
  echo "$overlay: $(grep -c '^kind:' "$m/$overlay.yaml") objects valid"
done
# The optional components, all at once on top of the embedded overlay.
mkdir "$m/hardened"
cat >"$m/hardened/kustomization.yaml" <<'EOF'
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources: [../manifests/overlays/embedded]
components:
  - ../manifests/components/control-plane-only
  - ../manifests/components/enforce-deletes
  - ../manifests/components/offboarding
  - ../manifests/components/identity-reports
  - ../manifests/components/access
  - ../manifests/components/monitoring
EOF
kubectl kustomize "$m/hardened" >"$m/hardened.yaml"
# kubernetes-validate knows Kubernetes' own kinds and passes over custom ones (with --no-warn,
# silently): the Prometheus Operator's PodMonitor and PrometheusRule are checked against their
# CRDs (tests/fixtures/monitoring-crds) instead.
.venv/bin/kubernetes-validate --strict --quiet --no-warn -k 1.32.0 "$m/hardened.yaml"
.venv/bin/python tests/monitoring/validate.py "$m/hardened.yaml"
grep -q -- '--admission-client-ca=/etc/scimgate/tls/ca.crt' "$m/hardened.yaml"
if grep -q -- '--admission-client' "$m/managed.yaml"; then echo "overlays/managed must turn caller authentication off"; exit 1; fi
grep -q 'cidr: 192.0.2.0/24' "$m/hardened.yaml"
echo "embedded + every optional component: $(grep -c '^kind:' "$m/hardened.yaml") objects valid"
rm -rf "$m"

echo "== alerts: promtool test rules, every alert firing and quiet (Debian's prometheus package, installed when missing and root)"
bash tests/monitoring/run.sh .venv/bin/python

echo "== Helm chart: rendered and linted by Helm's own engine, validated against Kubernetes 1.32, compared with the overlays, checked by scimgate doctor"
.venv/bin/python tests/helm/test_chart.py "$bin"

echo "== scim2-tester"
data=$(mktemp -d)
out=$data/serve.out
"$bin" serve --dev --data-dir "$data" --admission-addr 127.0.0.1:0 --scim-addr 127.0.0.1:0 --ops-addr 127.0.0.1:0 >"$out" 2>"$data/serve.err" &
pid=$!
trap 'kill $pid 2>/dev/null || true; rm -rf "$data"' EXIT
for _ in $(seq 100); do grep -q '^sgt_' "$out" && break; sleep 0.1; done
url=$(sed -n 's/^ *SCIM URL: *//p' "$out" | sed 's/127.0.0.1/localhost/')
token=$(grep '^sgt_' "$out" | tail -1 || true)
[[ -n $url && -n $token ]] || { echo "scimgate did not start:"; cat "$data/serve.err"; exit 1; }
.venv/bin/python tests/scim2_tester/run.py "$url" "$token" "$data/tls/ca.crt"
cd "$root"
