"""The alert rules of manifests/components/monitoring as promtool reads them.

    rules.py extract PROMETHEUSRULE OUT   write the PrometheusRule's spec as a plain rules file
    rules.py covered PROMETHEUSRULE TEST  every alert of the rule has a test case where it fires
                                          and one where it does not (promtool checks only what a
                                          test expects, not that every alert has a test)
"""
import sys

import yaml


def load_rule(path):
    with open(path) as f:
        docs = [d for d in yaml.safe_load_all(f) if d]
    rules = [d for d in docs if d.get("kind") == "PrometheusRule"]
    if len(rules) != 1:
        sys.exit(f"{path}: expected one PrometheusRule, found {len(rules)}")
    return rules[0]


def extract(src, out):
    spec = load_rule(src)["spec"]
    with open(out, "w") as f:
        yaml.safe_dump(spec, f, sort_keys=False)


def covered(src, test):
    alerts = {
        r["alert"]
        for g in load_rule(src)["spec"]["groups"]
        for r in g["rules"]
        if "alert" in r
    }
    with open(test) as f:
        tests = yaml.safe_load(f)
    fires, quiet = set(), set()
    for t in tests["tests"]:
        for case in t.get("alert_rule_test", []):
            (fires if case.get("exp_alerts") else quiet).add(case["alertname"])
    problems = []
    for a in sorted(alerts):
        if a not in fires:
            problems.append(f"{a}: no test case where it fires")
        if a not in quiet:
            problems.append(f"{a}: no test case where it stays quiet")
    for a in sorted((fires | quiet) - alerts):
        problems.append(f"{a}: tested, but no such alert")
    if problems:
        sys.exit("\n".join(problems))
    print(f"{len(alerts)} alerts, each tested firing and quiet")


if __name__ == "__main__":
    cmd, *args = sys.argv[1:]
    {"extract": extract, "covered": covered}[cmd](*args)
