"""Validate the Prometheus Operator objects of a rendered manifest against their CRDs.

    validate.py RENDERED.yaml

kubernetes-validate checks Kubernetes' own kinds and passes over custom ones; this checks every
monitoring.coreos.com object against the CRD schema in tests/fixtures/monitoring-crds, refusing
fields the schema does not list (the API server would prune them) and any such kind without a
CRD there.
"""
import pathlib
import sys

import jsonschema
import yaml

CRDS = pathlib.Path(__file__).resolve().parent.parent / "fixtures" / "monitoring-crds"
GROUP = "monitoring.coreos.com"


def closed(schema):
    """Objects listing their properties take no others (metadata is the API server's)."""
    if isinstance(schema, dict):
        if (
            "properties" in schema
            and "additionalProperties" not in schema
            and not schema.get("x-kubernetes-preserve-unknown-fields")
        ):
            schema["additionalProperties"] = False
        for k, v in schema.items():
            if k == "properties":
                for name, sub in v.items():
                    if name != "metadata":
                        closed(sub)
            else:
                closed(v)
    elif isinstance(schema, list):
        for s in schema:
            closed(s)
    return schema


def schemas():
    out = {}
    for f in sorted(CRDS.glob("*.yaml")):
        for crd in yaml.safe_load_all(f.read_text()):
            if not crd or crd.get("kind") != "CustomResourceDefinition":
                continue
            spec = crd["spec"]
            for v in spec["versions"]:
                schema = closed(v["schema"]["openAPIV3Schema"])
                out[(f"{spec['group']}/{v['name']}", spec["names"]["kind"])] = schema
    return out


def main(path):
    known = schemas()
    checked, problems = 0, []
    for doc in yaml.safe_load_all(pathlib.Path(path).read_text()):
        if not doc or not str(doc.get("apiVersion", "")).startswith(GROUP + "/"):
            continue
        key = (doc["apiVersion"], doc["kind"])
        where = f"{doc['kind']} {doc.get('metadata', {}).get('name')}"
        if key not in known:
            problems.append(f"{where}: no CRD for {key} in {CRDS}")
            continue
        for e in jsonschema.Draft7Validator(known[key]).iter_errors(doc):
            problems.append(f"{where}: {'/'.join(map(str, e.absolute_path))}: {e.message}")
        checked += 1
    if problems:
        sys.exit("\n".join(problems))
    print(f"{checked} {GROUP} objects valid against their CRDs")


if __name__ == "__main__":
    main(*sys.argv[1:])
