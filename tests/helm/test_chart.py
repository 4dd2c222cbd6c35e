"""The Helm chart (charts/scimgate) against the kustomize manifests it stands for.

usage: test_chart.py SCIMGATE_BINARY

Renders and lints the chart offline with Helm's own engine (helm-python-sdk: Helm v4 as a
library, no helm binary) for several sets of values, and for each:

- `lint --strict` (Kubernetes 1.32) passes, and every rendering validates against the
  Kubernetes 1.32 schemas with `kubernetes-validate --strict`, as scripts/test.sh validates the
  overlays;
- the objects equal, structurally, those `kubectl kustomize` renders from the overlay (and
  components) the values stand for — same kinds, names and namespaces, same fields, the
  overlays' labels among the chart's — up to the differences listed in `normalize` and
  `CHART_ONLY`/`OVERLAY_ONLY`;
- monitoring.enabled renders manifests/components/monitoring's PodMonitor, alerts and dashboard
  (the chart's files/monitoring link to that component's files), valid against the Prometheus
  Operator's CRDs as tests/monitoring/validate.py checks them;
- the webhooks' matchConditions and the policy's identity.delegates name the accounts the values
  name (upstream Argo, the argo-workflows Helm chart's, OpenShift Pipelines'), and the rendered
  policy passes `scimgate policy check`;
- `scimgate doctor` reads a cluster holding the chart's objects (served by a small read-only
  Kubernetes API below) and agrees with it: with the argo-workflows Helm chart's accounts in the
  values it finds no mismatch against an Argo installed by that chart, and with the defaults it
  names the five mismatches it names for the kustomize base.

Prints one line per check; exits non-zero at the first failure.
"""

from __future__ import annotations

import contextlib
import copy
import difflib
import http.server
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import helm_python as helm
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "scimgate"
NS = "scimgate"
KUBE = "1.32.0"
VENV_BIN = Path(sys.executable).parent

# The argo-workflows Helm chart, release argo-workflows in argo (tests/it/doctor.rs helm_argo).
ARGO_HELM = {
    "workflowControllers": ["argo:argo-workflows-workflow-controller"],
    "servers": ["argo:argo-workflows-server"],
    "configMap": "argo/argo-workflows-workflow-controller-configmap",
}

# Objects only the overlays have, by (kind, name): what kustomize generates from local files (the
# chart takes the TLS, signing and store Secrets as created beforehand, and the caBundle as a
# value).
OVERLAY_ONLY = {
    ("Secret", "scimgate-tls"),
    ("Secret", "scimgate-signing"),
    ("Secret", "scimgate-store"),
    ("ConfigMap", "scimgate-cabundle"),
}

failures = 0


def check(ok: bool, what: str, detail: str = "") -> None:
    global failures
    if ok:
        print(f"ok    {what}")
        return
    failures += 1
    print(f"FAIL  {what}" + (f"\n{detail}" if detail else ""))
    sys.exit(1)


def run(*args, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([str(a) for a in args], capture_output=True, text=True, **kw)


# ---------------------------------------------------------------------------------------------
# Rendering


@contextlib.contextmanager
def quiet():
    """Helm's loader says on stderr, at INFO, that it follows the chart's symbolic links (its
    files/monitoring, linked to manifests/components/monitoring), each time: not shown.
    Failures come back as exceptions and lint reports."""
    sys.stderr.flush()
    saved = os.dup(2)
    with open(os.devnull, "w") as null:
        os.dup2(null.fileno(), 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def docs_of(text: str) -> list[dict]:
    return [d for d in yaml.safe_load_all(text) if d]


def render(values: dict | None, namespace: str = NS) -> tuple[list[dict], str]:
    """The chart's objects and NOTES.txt, as `helm template --namespace` renders them."""
    with quiet(), helm.Chart.load(CHART) as chart:
        chart.validate_schema(values)
        out = chart.render(values, name="scimgate", namespace=namespace, is_install=True)
    notes = out.pop("scimgate/templates/NOTES.txt", "")
    text = "\n---\n".join(v for _, v in sorted(out.items()) if v.strip())
    return docs_of(text), notes


def render_error(values: dict) -> str:
    try:
        with quiet(), helm.Chart.load(CHART) as chart:
            chart.render(values, name="scimgate", namespace=NS, is_install=True)
    except helm.HelmError as e:
        return str(e)
    return ""


def schema_error(values: dict) -> str:
    try:
        with quiet(), helm.Chart.load(CHART) as chart:
            chart.validate_schema(values)
    except helm.HelmError as e:
        return str(e)
    return ""


def validate(docs: list[dict], name: str, tmp: Path) -> None:
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump_all(docs, sort_keys=False))
    p = run(VENV_BIN / "kubernetes-validate", "--strict", "--quiet", "--no-warn", "-k", KUBE, path)
    check(p.returncode == 0, f"{name}: {len(docs)} objects valid for Kubernetes {KUBE}", p.stdout + p.stderr)
    # The Prometheus Operator's kinds, which kubernetes-validate passes over: against their CRDs,
    # as scripts/test.sh checks manifests/components/monitoring.
    if any(d["apiVersion"].startswith("monitoring.coreos.com/") for d in docs):
        p = run(sys.executable, ROOT / "tests" / "monitoring" / "validate.py", path)
        check(p.returncode == 0, f"{name}: {p.stdout.strip()}", p.stdout + p.stderr)


def lint(values: dict | None, name: str) -> None:
    with quiet():
        report = helm.lint(CHART, values, strict=True, namespace=NS, kube_version=f"v{KUBE}")
    bad = [m for m in report["messages"] if m["severity"] >= 2] + report.get("errors", [])
    check(not bad, f"{name}: helm lint --strict", json.dumps(report, indent=2))


def kustomize(directory: Path) -> list[dict]:
    p = run("kubectl", "kustomize", directory)
    check(p.returncode == 0, f"kubectl kustomize {directory.name}", p.stderr)
    return docs_of(p.stdout)


# ---------------------------------------------------------------------------------------------
# Comparing


def key(d: dict) -> tuple[str, str, str]:
    return (d["kind"], d["metadata"].get("namespace", ""), d["metadata"]["name"])


def squash(text: str) -> str:
    """A CEL expression with its layout taken out: runs of whitespace as one space, none inside
    brackets' and parentheses' edges."""
    text = re.sub(r"\s+", " ", text).strip()
    return re.sub(r"([\[(]) | ([\])])", r"\1\2", text)


def normalize(d: dict, side: str) -> dict:
    """One object with what is meant to differ taken out: Helm's labels (the overlay's labels are
    checked to be among the chart's before), the chart's config checksum, pull policy and PVC
    keep policy, the whitespace of CEL expressions, the placeholder caBundle cert-manager
    replaces (the chart leaves caBundle to the cainjector), and the policy's YAML text (compared
    parsed)."""
    d = copy.deepcopy(d)
    meta = d["metadata"]
    meta.pop("labels", None)
    annotations = meta.get("annotations", {})
    annotations.pop("helm.sh/resource-policy", None)
    if not annotations:
        meta.pop("annotations", None)
    if d["kind"] == "Deployment":
        tmeta = d["spec"]["template"]["metadata"]
        tmeta.get("annotations", {}).pop("checksum/config", None)
        if not tmeta.get("annotations"):
            tmeta.pop("annotations", None)
        for c in d["spec"]["template"]["spec"]["containers"]:
            c.pop("imagePullPolicy", None)
    for w in d.get("webhooks", []):
        for c in w.get("matchConditions", []):
            c["expression"] = squash(c["expression"])
        if w["clientConfig"].get("caBundle") == "Cg==":
            w["clientConfig"].pop("caBundle")
    if d["kind"] == "ConfigMap" and "policy.yaml" in d.get("data", {}):
        d["data"]["policy.yaml"] = yaml.safe_load(d["data"]["policy.yaml"])
    if d["kind"] == "ConfigMap" and "scimgate.json" in d.get("data", {}):
        d["data"]["scimgate.json"] = json.loads(d["data"]["scimgate.json"])
    if d["kind"] == "ConfigMap" and "config.yaml" in d.get("data", {}):
        d["data"]["config.yaml"] = yaml.safe_load(d["data"]["config.yaml"])
    return d


def compare(chart: list[dict], overlay: list[dict], name: str, adjust=None) -> None:
    """The chart's objects equal the overlay's, but for OVERLAY_ONLY; `adjust(chart_by_key)` may
    first take out what the values add on purpose."""
    c = {key(d): d for d in chart}
    o = {key(d): d for d in overlay if (d["kind"], d["metadata"]["name"]) not in OVERLAY_ONLY}
    check(len(c) == len(chart), f"{name}: no object rendered twice")
    missing, extra = sorted(set(o) - set(c)), sorted(set(c) - set(o))
    check(not missing and not extra, f"{name}: the same {len(o)} objects (kinds, namespaces, names) as the overlay",
          f"only in the overlay: {missing}\nonly in the chart: {extra}")
    lost = {}
    for k in sorted(o):
        have = c[k]["metadata"].get("labels", {})
        want = o[k]["metadata"].get("labels", {})
        lost.update({f"{k[0]}/{k[2]}": {x: v} for x, v in want.items() if have.get(x) != v})
    check(not lost, f"{name}: every object carries the overlay's labels (and Helm's)", json.dumps(lost, indent=2))
    cn = {k: normalize(v, "chart") for k, v in c.items()}
    on = {k: normalize(v, "overlay") for k, v in o.items()}
    if adjust:
        adjust(cn)
    differ = []
    for k in sorted(o):
        if cn[k] != on[k]:
            a = yaml.safe_dump(on[k], sort_keys=True).splitlines()
            b = yaml.safe_dump(cn[k], sort_keys=True).splitlines()
            differ.append(f"{k}:\n" + "\n".join(difflib.unified_diff(a, b, "overlay", "chart", lineterm="")))
    check(not differ, f"{name}: every object equals the overlay's, field by field", "\n".join(differ))


def find(docs: list[dict], kind: str, name: str) -> dict:
    for d in docs:
        if d["kind"] == kind and d["metadata"]["name"] == name:
            return d
    raise AssertionError(f"{kind}/{name} not rendered")


def policy_of(docs: list[dict]) -> dict:
    return yaml.safe_load(find(docs, "ConfigMap", "scimgate-policy")["data"]["policy.yaml"])


def usernames(expression: str) -> list[str]:
    return re.findall(r"'(system:[^']+)'", expression)


def controller_accounts(docs: list[dict]) -> dict[str, list[str]]:
    """webhook/condition → the service accounts (system:serviceaccount:…) it names, in order."""
    out = {}
    for d in docs:
        for w in d.get("webhooks", []):
            for c in w.get("matchConditions", []):
                out[f"{w['name']}/{c['name']}"] = usernames(c["expression"])
    return out


# ---------------------------------------------------------------------------------------------
# `scimgate doctor` against a read-only Kubernetes API holding the chart's objects


class Cluster:
    """GET and LIST of stored objects over plain HTTP, the requests `scimgate doctor` makes
    (src/doctor/read.rs): every Deployment, every Mutating- and ValidatingWebhookConfiguration,
    a ServiceAccount, the policy ConfigMap. Anything else is a 404 Status."""

    PLURALS = {
        "Deployment": ("apps/v1", "deployments"),
        "MutatingWebhookConfiguration": ("admissionregistration.k8s.io/v1", "mutatingwebhookconfigurations"),
        "ValidatingWebhookConfiguration": ("admissionregistration.k8s.io/v1", "validatingwebhookconfigurations"),
        "ServiceAccount": ("v1", "serviceaccounts"),
        "ConfigMap": ("v1", "configmaps"),
    }

    def __init__(self, objects: list[dict], tmp: Path):
        self.objects = [o for o in objects if o["kind"] in self.PLURALS]
        self.requests: list[str] = []
        cluster = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                cluster.requests.append(self.path)
                status, body = cluster.answer(self.path.split("?")[0])
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.kubeconfig = tmp / "kubeconfig"
        port = self.server.server_address[1]
        self.kubeconfig.write_text(yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config", "current-context": "test",
            "clusters": [{"name": "test", "cluster": {"server": f"http://127.0.0.1:{port}"}}],
            "users": [{"name": "test", "user": {"token": "test"}}],
            "contexts": [{"name": "test", "context": {"cluster": "test", "user": "test"}}],
        }))

    def close(self):
        self.server.shutdown()

    def answer(self, path: str):
        m = re.fullmatch(r"/apis?/(?:(?P<group>[^/]+)/)?(?P<version>v1)(?:/namespaces/(?P<ns>[^/]+))?/(?P<plural>[^/]+)(?:/(?P<name>[^/]+))?", path)
        if m:
            api_version = f"{m['group']}/{m['version']}" if m["group"] else m["version"]
            for kind, (av, plural) in self.PLURALS.items():
                if (av, plural) != (api_version, m["plural"]):
                    continue
                items = [
                    dict(o, apiVersion=av)
                    for o in self.objects
                    if o["kind"] == kind
                    and (not m["ns"] or o["metadata"].get("namespace") == m["ns"])
                ]
                if not m["name"]:
                    return 200, {"apiVersion": av, "kind": f"{kind}List", "metadata": {"resourceVersion": "1"}, "items": items}
                for o in items:
                    if o["metadata"]["name"] == m["name"]:
                        return 200, o
        return 404, {"apiVersion": "v1", "kind": "Status", "status": "Failure", "reason": "NotFound",
                     "code": 404, "message": f"{path} not found"}


def deployment(namespace: str, name: str, labels: dict, account: str) -> list[dict]:
    return [
        {"apiVersion": "apps/v1", "kind": "Deployment",
         "metadata": {"name": name, "namespace": namespace, "labels": labels},
         "spec": {"selector": {"matchLabels": labels}, "template": {
             "metadata": {"labels": labels},
             "spec": {"serviceAccountName": account, "containers": [{"name": name, "image": "example"}]}}}},
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": account, "namespace": namespace}},
    ]


def helm_argo() -> list[dict]:
    """Argo Workflows as the argo-workflows Helm chart installs it, release argo-workflows in argo
    (argo-helm charts/argo-workflows/templates/_helpers.tpl; tests/it/doctor.rs helm_argo)."""
    def labels(component):
        return {"helm.sh/chart": "argo-workflows-0.45.21", "app.kubernetes.io/name": f"argo-workflows-{component}",
                "app.kubernetes.io/instance": "argo-workflows", "app.kubernetes.io/component": component,
                "app": component, "app.kubernetes.io/managed-by": "Helm", "app.kubernetes.io/part-of": "argo-workflows"}
    return (deployment("argo", "argo-workflows-workflow-controller", labels("workflow-controller"),
                       "argo-workflows-workflow-controller")
            + deployment("argo", "argo-workflows-server", labels("server"), "argo-workflows-server"))


def tekton(namespace: str) -> list[dict]:
    labels = {"app.kubernetes.io/name": "controller", "app.kubernetes.io/component": "controller",
              "app.kubernetes.io/instance": "default", "app.kubernetes.io/part-of": "tekton-pipelines"}
    return deployment(namespace, "tekton-pipelines-controller", labels, "tekton-pipelines-controller")


def doctor(binary: Path, objects: list[dict], tmp: Path) -> tuple[int, str, list[str]]:
    cluster = Cluster(objects, tmp)
    try:
        p = run(binary, "doctor", "--kubeconfig", cluster.kubeconfig, timeout=60)
    finally:
        cluster.close()
    check(p.returncode in (0, 1), "scimgate doctor ran", p.stdout + p.stderr)
    return p.returncode, p.stdout, cluster.requests


# ---------------------------------------------------------------------------------------------


def prepared(binary: Path, tmp: Path) -> tuple[Path, str]:
    """manifests/ copied and its overlays prepared as scripts/test.sh and docs/deployment.md do."""
    m = tmp / "manifests"
    shutil.copytree(ROOT / "manifests", m)
    embedded = m / "overlays" / "embedded"
    p = run(binary, "certs", "--service", "scimgate", "--namespace", NS, "--out", embedded / "certs")
    check(p.returncode == 0, "scimgate certs", p.stderr)
    ca_bundle = p.stdout.strip()
    (embedded / "cabundle.env").write_text(f"caBundle={ca_bundle}\n")
    ha = m / "overlays" / "ha-postgres"
    shutil.copytree(embedded / "certs", ha / "certs")
    shutil.copy(embedded / "cabundle.env", ha / "cabundle.env")
    (ha / "store.env").write_text("url=postgres://scimgate:secret@postgres.db.svc:5432/scimgate\n")
    return m, ca_bundle


def with_components(m: Path, name: str, overlay: str, components: list[str]) -> Path:
    d = m.parent / name
    d.mkdir()
    (d / "kustomization.yaml").write_text(yaml.safe_dump({
        "apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
        "resources": [f"../manifests/overlays/{overlay}"],
        "components": [f"../manifests/components/{c}" for c in components],
    }))
    return d


def main() -> None:
    binary = Path(sys.argv[1]).resolve()
    tmp = Path(tempfile.mkdtemp(prefix="scimgate-helm-"))
    try:
        tests(binary, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"chart: every check passed")


def tests(binary: Path, tmp: Path) -> None:
    m, ca_bundle = prepared(binary, tmp)
    secret_tls = {"certManager": {"enabled": False}, "tls": {"caBundle": ca_bundle}}
    all_components = ["control-plane-only", "enforce-deletes", "offboarding", "identity-reports", "access", "monitoring"]
    default_policy = yaml.safe_load((CHART / "values.yaml").read_text())["policy"]
    deleters = {"name": "deleters", "allow": ["delete"], "groups": ["ml-engineers"], "namespaces": ["ml-*"]}
    everything = {
        "enforceDeletes": True,
        # enforceDeletes needs a rule that allows delete (`scimgate policy check`).
        "policy": {"rules": default_policy["rules"] + [deleters]},
        "offboarding": {"mode": "act"},
        "identityReports": {"enabled": True},
        "access": {"enabled": True},
        "networkPolicy": {"controlPlaneCIDRs": ["192.0.2.0/24"]},
        "monitoring": {"enabled": True},
    }

    def chart_enforces_deletes(c):
        p = c[("ConfigMap", NS, "scimgate-policy")]["data"]["policy.yaml"]
        check(p.pop("enforceDeletes") is True and p["rules"].pop() == deleters,
              "all options: the policy says enforceDeletes: true, with the values' rule allowing delete")

    # (name, values, overlay directory or None, adjust)
    cases = [
        ("defaults", None, None, None),
        ("cert-manager", {"namespace": {"create": True}}, m / "overlays" / "cert-manager", None),
        ("embedded", {"namespace": {"create": True}, **secret_tls}, m / "overlays" / "embedded", None),
        ("managed", {"namespace": {"create": True}, "apiServerClientAuth": {"enabled": False}, **secret_tls},
         m / "overlays" / "managed", None),
        ("ha-postgres", {"namespace": {"create": True}, "store": {"type": "postgres"}, **secret_tls},
         m / "overlays" / "ha-postgres", None),
        ("all options", {"namespace": {"create": True}, **secret_tls, **everything},
         with_components(m, "hardened", "embedded", all_components), chart_enforces_deletes),
        ("argo-helm accounts", {"controllers": {"argo": ARGO_HELM}, **secret_tls}, None, None),
        ("ha-postgres with cert-manager", {"store": {"type": "postgres"}}, None, None),
    ]
    rendered = {}
    for name, values, overlay, adjust in cases:
        docs, notes = render(values)
        rendered[name] = docs
        lint(values, name)
        validate(docs, name.replace(" ", "-"), tmp)
        check("kubectl -n scimgate port-forward svc/scimgate-scim 9443:443" in notes
              and "port-forward svc/scimgate-metrics 9090:9090" in notes, f"{name}: NOTES.txt shows the port-forwards")
        policy_file = tmp / "policy.yaml"
        policy_file.write_text(find(docs, "ConfigMap", "scimgate-policy")["data"]["policy.yaml"])
        p = run(binary, "policy", "check", policy_file)
        check(p.returncode == 0, f"{name}: scimgate policy check accepts the rendered policy", p.stdout + p.stderr)
        if overlay is not None:
            compare(docs, kustomize(overlay), name, adjust)

    defaults = rendered["defaults"]
    check(not any(d["kind"] == "Namespace" for d in defaults), "defaults: no Namespace (helm install --create-namespace)")
    check(all(d["metadata"].get("annotations", {}).get("cert-manager.io/inject-ca-from") == f"{NS}/scimgate-serving"
              and all("caBundle" not in w["clientConfig"] for w in d["webhooks"])
              for d in defaults if "webhooks" in d),
          "defaults: caBundle left to cert-manager's cainjector (inject-ca-from, no caBundle)")
    embedded = rendered["embedded"]
    check(all(w["clientConfig"]["caBundle"] == ca_bundle and not d["metadata"].get("annotations")
              for d in embedded for w in d.get("webhooks", [])),
          "embedded: every webhook's caBundle is tls.caBundle, nothing for cert-manager")
    rules = find(rendered["all options"], "PrometheusRule", "scimgate")["spec"]
    component = yaml.safe_load((ROOT / "manifests" / "components" / "monitoring" / "prometheusrule.yaml").read_text())
    check(rules == component["spec"] and rules["groups"][0]["rules"],
          "all options: the alerts are manifests/components/monitoring's, {{ $labels }} and all")

    # The accounts: one list in the values, the same in every matchCondition and in the delegates.
    tekton_sa = "system:serviceaccount:tekton-pipelines:tekton-pipelines-controller"
    got = controller_accounts(defaults)
    check(got["stamp.scimgate.io/new-work-or-a-persons-change"] == [
        "system:serviceaccount:argo:argo", tekton_sa, "system:serviceaccount:kube-system:generic-garbage-collector",
        "system:kube-controller-manager", tekton_sa],
          "defaults: the webhooks name upstream Argo's and Tekton's controllers", json.dumps(got, indent=2))
    helm_docs = rendered["argo-helm accounts"]
    got = controller_accounts(helm_docs)
    argo_ctl = "system:serviceaccount:argo:argo-workflows-workflow-controller"
    for cond in ["stamp.scimgate.io/new-work-or-a-persons-change", "running.stamp.scimgate.io/admitted-work",
                 "policy.scimgate.io/new-work-or-a-persons-change"]:
        check(argo_ctl in got[cond] and "system:serviceaccount:argo:argo" not in got[cond],
              f"argo-helm accounts: {cond} names {argo_ctl}", json.dumps(got, indent=2))
    delegates = policy_of(helm_docs)["identity"]["delegates"]
    check(delegates == [
        {"serviceAccount": "argo:argo-workflows-server", "via": "argoServer"},
        {"serviceAccount": "argo:argo-workflows-workflow-controller", "via": "ownerStamp", "whenOwnerOffboarded": "stop"},
        {"serviceAccount": "tekton-pipelines:tekton-pipelines-controller", "via": "ownerStamp", "whenOwnerOffboarded": "continue"},
    ], "argo-helm accounts: the policy's delegates are the values' accounts", json.dumps(delegates, indent=2))
    reader = find(helm_docs, "ClusterRole", "scimgate-argo-defaults-reader")
    config = yaml.safe_load(find(helm_docs, "ConfigMap", "scimgate-config")["data"]["config.yaml"])
    check(reader["rules"][0]["resourceNames"] == ["argo-workflows-workflow-controller-configmap"]
          and config == {"argo": {"controllerConfigMap": "argo/argo-workflows-workflow-controller-configmap"}}
          and "--config=/etc/scimgate/config/config.yaml" in find(helm_docs, "Deployment", "scimgate")["spec"]["template"]["spec"]["containers"][0]["args"],
          "argo-helm accounts: the chart's workflow-controller ConfigMap is read (RBAC) and named (config file)")

    # Several installs of a controller, and OpenShift Pipelines' namespace.
    many = {"controllers": {
        "argo": {"workflowControllers": ["argo:argo", "team-a:argo"], "servers": []},
        "tekton": {"controllers": ["openshift-pipelines:tekton-pipelines-controller"], "whenOwnerOffboarded": ""},
        "extraDelegates": [{"serviceAccount": "argo:ml", "via": "argoServer"}],
    }}
    docs, _ = render(many)
    validate(docs, "several-installs", tmp)
    got = controller_accounts(docs)
    openshift = "system:serviceaccount:openshift-pipelines:tekton-pipelines-controller"
    check(got["running.policy.scimgate.io/a-child-of-admitted-work"] == [openshift]
          and got["stamp.scimgate.io/new-work-or-a-persons-change"][:3] == [
              "system:serviceaccount:argo:argo", "system:serviceaccount:team-a:argo", openshift],
          "several installs: every workflow-controller and OpenShift's Tekton in the matchConditions", json.dumps(got, indent=2))
    check(policy_of(docs)["identity"]["delegates"] == [
        {"serviceAccount": "argo:argo", "via": "ownerStamp", "whenOwnerOffboarded": "stop"},
        {"serviceAccount": "team-a:argo", "via": "ownerStamp", "whenOwnerOffboarded": "stop"},
        {"serviceAccount": "openshift-pipelines:tekton-pipelines-controller", "via": "ownerStamp"},
        {"serviceAccount": "argo:ml", "via": "argoServer"},
    ], "several installs: every account a delegate, extraDelegates after them")

    # Another namespace: everything follows .Release.Namespace.
    docs, _ = render({"namespace": {"create": True}, **everything}, namespace="platform-sec")
    validate(docs, "namespace-platform-sec", tmp)
    text = json.dumps(docs)
    namespaced = [d for d in docs if d["kind"] not in {
        "Namespace", "ClusterRole", "ClusterRoleBinding", "MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"}]
    check(all(d["metadata"].get("namespace") == "platform-sec" for d in namespaced)
          and find(docs, "Namespace", "platform-sec")
          and '"scimgate"]' not in text and "scimgate/scimgate-serving" not in text
          and "scimgate.platform-sec.svc" in text
          and all(s["namespace"] == "platform-sec" for d in docs for s in d.get("subjects", []))
          and all(w["clientConfig"]["service"]["namespace"] == "platform-sec"
                  and w["namespaceSelector"]["matchExpressions"][0]["values"] == ["kube-system", "platform-sec"]
                  for d in docs for w in d.get("webhooks", [])),
          "release namespace platform-sec: objects, Service references, dnsNames, inject-ca-from, RBAC subjects, namespaceSelector")

    # What the values refuse.
    for values, needle, what in [
        ({"bogus": 1}, "additional properties 'bogus' not allowed", "an unknown value"),
        ({"store": {"type": "sqlite"}}, "/store/type", "an unknown store"),
        ({"controllers": {"argo": {"workflowControllers": ["argo"]}}}, "/controllers/argo/workflowControllers/0",
         "an account without its namespace"),
        ({"policy": {"apiVersion": "scimgate.io/v1", "kind": "Policy", "rules": [],
                     "identity": {"delegates": [{"serviceAccount": "a:b", "via": "ownerStamp"}]}}},
         "/policy/identity", "delegates in the policy rather than controllers"),
        ({"policy": {"apiVersion": "scimgate.io/v1", "kind": "Policy", "rules": [], "enforceDeletes": True}},
         "/policy", "enforceDeletes in the policy rather than the value"),
    ]:
        err = schema_error(values)
        check(needle in err, f"values.schema.json refuses {what}", err or "(accepted)")
    err = render_error({"certManager": {"enabled": False}})
    check("tls.caBundle is empty" in err, "without cert-manager and without tls.caBundle, rendering fails and says why", err)
    err = render_error({"policy": {"access": {"bindings": []}}})
    check("access.enabled is false" in err, "a policy access: section without access.enabled fails and says why", err)

    # scimgate doctor against a cluster holding what the chart installs.
    code, out, requests = doctor(binary, helm_argo() + tekton("tekton-pipelines") + helm_docs, tmp)
    check(code == 0 and "the policy, scimgate's webhook configurations and the cluster agree" in out
          and not any(l.startswith("MISMATCH") for l in out.splitlines()),
          "doctor: the chart with the argo-workflows chart's accounts agrees with an Argo that chart installed", out)
    check(any("/configmaps/scimgate-policy" in r for r in requests),
          "doctor: it read the policy from the chart's ConfigMap scimgate-policy", "\n".join(requests))
    check("ok       webhook  stamp.scimgate.io: its matchConditions name the controllers as the cluster runs them "
          "(argo/argo-workflows-workflow-controller, tekton-pipelines/tekton-pipelines-controller)" in out, "doctor: names the controllers it found in the chart's webhooks", out)
    upstream_defaults, _ = render(secret_tls)
    code, out, _ = doctor(binary, helm_argo() + tekton("tekton-pipelines") + upstream_defaults, tmp)
    mismatches = [l for l in out.splitlines() if l.startswith("MISMATCH")]
    check(code == 1 and len(mismatches) == 5
          and sum("replace 'system:serviceaccount:argo:argo' with 'system:serviceaccount:argo:argo-workflows-workflow-controller'" in l
                  for l in mismatches) == 3,
          "doctor: the chart's defaults against that Argo: the five mismatches it names for manifests/base", out)
    code, out, _ = doctor(binary, helm_argo() + tekton("tekton-pipelines") + defaults, tmp)
    check(code == 1 and all("caBundle" in l for l in out.splitlines() if l.startswith("MISMATCH webhook  caBundle"))
          and "cert-manager's cainjector has not filled it from Certificate scimgate/scimgate-serving" in out,
          "doctor: a cert-manager install before the cainjector ran is named as such", out)


if __name__ == "__main__":
    main()
