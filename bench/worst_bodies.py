"""The second security review's slowest bodies (issue 16 §3), and what a small, real review and
/healthz wait behind them. Not a test: prints figures.

    python3 bench/worst_bodies.py ADMISSION_URL OPS_URL CA_FILE

Each hostile kind is sent by two senders in a loop (as in the review) for DURATION seconds while
a third client sends a small real review every INTERVAL and a fourth asks /healthz; each prints
its p50/p99/max. First the same small review alone, for the baseline.
"""

import http.client
import json
import os
import ssl
import statistics
import sys
import threading
import time
import urllib.parse

DURATION = float(os.environ.get("DURATION", "15"))
INTERVAL = float(os.environ.get("INTERVAL", "0.02"))


def review(obj, operation="CREATE", old=None):
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
        "uid": "w-1", "kind": {"group": "argoproj.io", "version": "v1alpha1", "kind": "Workflow"},
        "resource": {"group": "argoproj.io", "version": "v1alpha1", "resource": "workflows"},
        "namespace": "ml-team", "operation": operation, "name": "",
        "userInfo": {"username": "oidc:alice@example.com", "groups": ["system:authenticated"]},
        "object": obj, "oldObject": old, "dryRun": False}}


def workflow(spec, annotations=None):
    meta = {"generateName": "hostile-", "namespace": "ml-team"}
    if annotations is not None:
        meta["annotations"] = annotations
    return {"apiVersion": "argoproj.io/v1alpha1", "kind": "Workflow", "metadata": meta, "spec": spec}


def bodies():
    n = int(os.environ.get("N", "60000"))
    small = review(workflow({"serviceAccountName": "ml-runner", "entrypoint": "main",
                             "templates": [{"name": "main", "container": {"image": "busybox"}}]}))
    annotations = review(workflow({"entrypoint": "main"}, {f"scimgate.io/x{i}": "v" for i in range(n)}))
    accounts = review(workflow({"entrypoint": "t0", "templates": [
        {"name": f"t{i}", "serviceAccountName": f"sa-{i}", "container": {"image": "x"}} for i in range(n // 2)]}))
    refs = review(workflow({"entrypoint": "main", "templates": [{"name": "main", "steps": [
        [{"name": f"s{i}", "templateRef": {"name": f"lib-{i}", "template": "t"}}] for i in range(n // 2)]}]}))
    nodes = {f"n{i}": {"type": "Suspend", "phase": "Running"} for i in range(n // 2)}
    parked = workflow({"entrypoint": "main"})
    parked["metadata"]["name"] = "parked-1"
    parked["status"] = {"nodes": nodes}
    moved = json.loads(json.dumps(parked))
    for i in range(0, n // 2, 2):
        moved["status"]["nodes"][f"n{i}"]["phase"] = "Succeeded"
    gates = review(moved, "UPDATE", parked)
    inline = {"container": {"image": "x"}, "serviceAccountName": "deep"}
    for d in range(15):
        inline = {"steps": [[{"name": f"d{d}", "inline": inline}]]}
    deep = review(workflow({"entrypoint": "main", "templates": [dict(name="main", **inline)]}))
    return small, {
        "60k scimgate.io annotations": annotations,
        "30k distinct service accounts": accounts,
        "30k distinct templateRefs": refs,
        "30k Suspend nodes (update)": gates,
        "inline templates 15 deep": deep,
    }


class Client:
    def __init__(self, url, ca):
        u = urllib.parse.urlparse(url)
        self.path = u.path
        if u.scheme == "https":
            ctx = ssl.create_default_context(cafile=ca)
            self.conn = http.client.HTTPSConnection(u.hostname, u.port, context=ctx, timeout=60)
        else:
            self.conn = http.client.HTTPConnection(u.hostname, u.port, timeout=60)

    def call(self, body=None):
        started = time.perf_counter()
        if body is None:
            self.conn.request("GET", self.path)
        else:
            self.conn.request("POST", self.path, body=body, headers={"content-type": "application/json"})
        r = self.conn.getresponse()
        r.read()
        return time.perf_counter() - started, r.status


def sample(url, ca, body, stop, out):
    c = Client(url, ca)
    while not stop.is_set():
        took, status = c.call(body)
        out.append((took, status))
        time.sleep(INTERVAL)


def hammer(url, ca, body, stop, out):
    c = Client(url, ca)
    while not stop.is_set():
        took, status = c.call(body)
        out.append((took, status))


def ms(xs, q):
    if not xs:
        return float("nan")
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))] * 1000


def summary(samples):
    t = [x for x, _ in samples]
    codes = {}
    for _, c in samples:
        codes[c] = codes.get(c, 0) + 1
    return f"n={len(t)} p50 {ms(t, 0.5):.1f} ms, p99 {ms(t, 0.99):.1f} ms, max {max(t) * 1000:.1f} ms; HTTP {codes}"


def main():
    adm, ops, ca = sys.argv[1], sys.argv[2], sys.argv[3]
    small, hostile = bodies()
    small_b = json.dumps(small).encode()
    validate = adm.rstrip("/") + "/validate"
    healthz = ops.rstrip("/") + "/healthz"
    for name, body in hostile.items():
        print(f"  {name}: {len(json.dumps(body)) // 1024} KiB")
    stop = threading.Event()
    base = []
    t = threading.Thread(target=sample, args=(validate, ca, small_b, stop, base))
    t.start()
    time.sleep(min(DURATION, 5))
    stop.set()
    t.join()
    print(f"alone: small review {summary(base)}")
    for name, body in hostile.items():
        b = json.dumps(body).encode()
        stop = threading.Event()
        heavy, real, health = [], [], []
        threads = [threading.Thread(target=hammer, args=(validate, ca, b, stop, heavy)) for _ in range(2)]
        threads.append(threading.Thread(target=sample, args=(validate, ca, small_b, stop, real)))
        threads.append(threading.Thread(target=sample, args=(healthz, ca, None, stop, health)))
        for th in threads:
            th.start()
        time.sleep(DURATION)
        stop.set()
        for th in threads:
            th.join()
        print(f"== two senders of {name}")
        print(f"   hostile body: {summary(heavy)}")
        print(f"   small review: {summary(real)}")
        print(f"   /healthz:     {summary(health)}")


if __name__ == "__main__":
    main()
