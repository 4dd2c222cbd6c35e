//! A report document as each API spells it: OpenReports `Report` / `ClusterReport`
//! (openreports.io/v1alpha1; openreports/reports-api `apis/openreports.io/v1alpha1/
//! report_types.go`) or the policy working group's `PolicyReport` / `ClusterPolicyReport`
//! (wgpolicyk8s.io/v1alpha2; Kyverno's `api/policyreport/v1alpha2`). Their results are alike
//! (`source`, `policy`, `rule`, `result`, `message`, `resources`, `scored`, `timestamp`,
//! `category`, `properties`); only OpenReports has a report-level `source` and
//! `configuration.limits`. Pure.

use super::checks::Finding;
use super::Api;
use serde_json::{json, Value};

/// What every document of ours is named and labelled.
pub const NAME: &str = "scimgate-identity";
pub const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "scimgate");
/// The `source` and `policy` of our results.
pub const SOURCE: &str = "scimgate";
pub const POLICY: &str = "scimgate-identity";
/// Results one document holds at most (a Kubernetes object must stay well under etcd's 1.5 MB):
/// past it, failures are kept first and the summary still counts every check.
pub const MAX_RESULTS: usize = 1000;

/// The object a finding is about, as a report's `resources` names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subject {
    pub api_version: String,
    pub kind: String,
    pub namespace: String,
    pub name: String,
    pub uid: String,
}

/// The report of one namespace (`""`: the cluster-scoped one) with `findings`, at `now` (Unix
/// seconds).
pub fn build(api: Api, namespace: &str, findings: &[(Subject, Finding)], now: i64) -> Value {
    let mut summary = json!({"pass": 0, "fail": 0, "warn": 0, "error": 0, "skip": 0});
    for (_, f) in findings {
        if let Some(n) = summary[f.outcome.as_str()].as_u64() {
            summary[f.outcome.as_str()] = json!(n + 1);
        }
    }
    let mut kept: Vec<&(Subject, Finding)> = findings.iter().collect();
    // Stable: within an outcome, the order found (kind, then the API server's order).
    kept.sort_by_key(|(_, f)| f.outcome);
    kept.truncate(MAX_RESULTS);
    let results: Vec<Value> = kept.into_iter().map(|(s, f)| result(s, f, now)).collect();
    let (kind, cluster_kind) = api.kinds();
    let mut metadata = json!({"name": NAME, "labels": {MANAGED_BY.0: MANAGED_BY.1}});
    if !namespace.is_empty() {
        metadata["namespace"] = json!(namespace);
    }
    let mut doc = json!({
        "apiVersion": api.api_version(),
        "kind": if namespace.is_empty() { cluster_kind } else { kind },
        "metadata": metadata,
        "summary": summary,
        "results": results,
    });
    if api == Api::OpenReports {
        doc["source"] = json!(SOURCE);
        doc["configuration"] = json!({"limits": {"maxResults": MAX_RESULTS}});
    }
    doc
}

fn result(s: &Subject, f: &Finding, now: i64) -> Value {
    let mut resource = json!({"apiVersion": s.api_version, "kind": s.kind, "name": s.name, "uid": s.uid});
    if !s.namespace.is_empty() {
        resource["namespace"] = json!(s.namespace);
    }
    json!({
        "source": SOURCE,
        "policy": POLICY,
        "rule": f.check,
        "category": "Identity",
        "result": f.outcome.as_str(),
        "scored": true,
        "message": f.message,
        "resources": [resource],
        "timestamp": {"seconds": now, "nanos": 0},
    })
}

/// Whether two documents say the same, whenever each was found: results (without their
/// timestamps) and summary.
pub fn same(a: &Value, b: &Value) -> bool {
    let results = |d: &Value| -> Vec<Value> {
        d["results"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|r| {
                let mut r = r.clone();
                r.as_object_mut().map(|m| m.remove("timestamp"));
                r
            })
            .collect()
    };
    a["summary"] == b["summary"] && results(a) == results(b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reports::checks::Outcome;

    fn finding(outcome: Outcome) -> (Subject, Finding) {
        let s = Subject {
            api_version: "argoproj.io/v1alpha1".into(),
            kind: "Workflow".into(),
            namespace: "team-a".into(),
            name: "w".into(),
            uid: "u".into(),
        };
        let f = Finding {
            check: "stamp",
            outcome,
            message: "m".into(),
        };
        (s, f)
    }

    #[test]
    fn a_full_report_keeps_failures_first_and_counts_everything() {
        let mut many: Vec<(Subject, Finding)> = (0..MAX_RESULTS).map(|_| finding(Outcome::Pass)).collect();
        many.push(finding(Outcome::Fail));
        let doc = build(Api::OpenReports, "team-a", &many, 7);
        assert_eq!(doc["summary"]["pass"], MAX_RESULTS);
        assert_eq!(doc["summary"]["fail"], 1);
        assert_eq!(doc["results"].as_array().map(Vec::len), Some(MAX_RESULTS));
        assert_eq!(doc["results"][0]["result"], "fail");
        assert_eq!(doc["kind"], "Report");
        let cluster = build(Api::PolicyReports, "", &many[..1], 7);
        assert_eq!(cluster["kind"], "ClusterPolicyReport");
        assert!(cluster["metadata"].get("namespace").is_none() && cluster.get("source").is_none());
        assert!(same(
            &build(Api::OpenReports, "a", &many, 1),
            &build(Api::OpenReports, "a", &many, 2)
        ));
        assert!(!same(
            &build(Api::OpenReports, "a", &many, 1),
            &build(Api::OpenReports, "a", &many[1..], 1)
        ));
    }
}
