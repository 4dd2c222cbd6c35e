//! Identity reports (issue 19 §3) through the emulator's HTTP face, which serves the report kinds
//! only once a test installs their CRDs and validates every write against them
//! (`reports_face`): a valid, a missing and a forged stamp, a deactivated submitter and a
//! distinct approver, each reported as such; the API picked by discovery, said at start, and
//! the reports following a SCIM change without waiting for the interval.

use crate::actors::{argo_controller, kubectl};
use crate::support::{allowed, World};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::Duration;

fn workflow(name: &str) -> Value {
    json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "Workflow", "metadata": {"name": name, "namespace": "team-a"},
        "spec": {"entrypoint": "main", "templates": [{"name": "main", "container": {"image": "busybox"}}]}})
}

/// The results a stored report holds for the object named `name`: rule → (result, message).
fn results_for(doc: &Value, name: &str) -> BTreeMap<String, (String, String)> {
    doc["results"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| r["resources"][0]["name"] == name)
        .map(|r| {
            let t = |k: &str| r[k].as_str().unwrap_or_default().to_string();
            (t("rule"), (t("result"), t("message")))
        })
        .collect()
}

/// The stored report of `kind` in `namespace` (`""`: cluster-scoped), if any.
fn report(w: &World, kind: &str, namespace: &str) -> Option<Value> {
    w.kube
        .reports()
        .all()
        .into_iter()
        .find(|d| d["kind"] == kind && d["metadata"]["namespace"].as_str().unwrap_or_default() == namespace)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_reports_say_which_stamps_hold_who_has_left_and_who_approved() {
    let w = World::with_config("reports:\n  enabled: true\n  api: policyreports\n  intervalSeconds: 1\n").await;
    w.kube.reports().install("wgpolicyk8s.io/v1alpha2");
    let alice = kubectl(&w.api, "alice@example.com");
    allowed(alice.create(&workflow("valid")).await);
    // Unstamped: made before scimgate was installed.
    let mut missing = workflow("missing");
    missing["metadata"]["uid"] = json!(uuid::Uuid::new_v4().to_string());
    w.api.put(missing);
    // Stamped, then its submitter annotation rewritten behind the webhooks' back.
    let forged = allowed(alice.create(&workflow("forged")).await).object;
    let mut forged = w.api.stored(&forged).expect("stored");
    forged["metadata"]["annotations"]["scimgate.io/submitted-by"] = json!("ceo@example.com");
    w.api.put(forged);
    // A PipelineRun alice submitted pending, and bob approved.
    let pr = json!({"apiVersion": "tekton.dev/v1", "kind": "PipelineRun",
        "metadata": {"name": "release-1", "namespace": "team-a"},
        "spec": {"pipelineRef": {"name": "release"}, "status": "PipelineRunPending"}});
    let pr = allowed(alice.create(&pr).await).object;
    let start = json!([{"op": "remove", "path": "/spec/status"}]);
    allowed(kubectl(&w.api, "bob@example.com").patch_json(&pr, start).await);
    // Bob's run; bob leaves.
    allowed(kubectl(&w.api, "bob@example.com").create(&workflow("bobs")).await);
    // A finished run is no live run: not reported.
    let done = allowed(alice.create(&workflow("done")).await).object;
    allowed(argo_controller(&w.api).operate(&done, "Succeeded", None).await);
    // A cluster-scoped template goes to the cluster report.
    let cwt = json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "ClusterWorkflowTemplate", "metadata": {"name": "shared"},
        "spec": {"templates": [{"name": "main", "container": {"image": "busybox"}}]}});
    allowed(alice.create(&cwt).await);
    w.deactivate(&w.bob).await;

    let written = crate::support::until(Duration::from_secs(20), async || {
        report(&w, "PolicyReport", "team-a").is_some_and(|d| {
            results_for(&d, "bobs")
                .get("submitter-active")
                .is_some_and(|(r, _)| r == "fail")
        }) && report(&w, "ClusterPolicyReport", "").is_some()
    })
    .await;
    assert!(written.is_some(), "reports: {:#?}", w.kube.reports().all());
    let team = report(&w, "PolicyReport", "team-a").expect("team-a");
    let r = |name: &str| results_for(&team, name);
    let s = |a: &str, b: &str| (a.to_string(), b.to_string());
    assert_eq!(
        r("valid"),
        BTreeMap::from([
            (
                "stamp".to_string(),
                s("pass", "submit stamp by alice@example.com, valid")
            ),
            ("submitter-active".to_string(), s("pass", "alice@example.com is active")),
            ("approver-distinct".to_string(), s("skip", "not approved (yet)")),
        ])
    );
    let missing = r("missing");
    assert_eq!(missing["stamp"].0, "fail");
    assert!(
        missing["stamp"].1.starts_with("missing: scimgate never admitted it"),
        "{missing:?}"
    );
    assert_eq!(
        missing["submitter-active"],
        s("skip", "no valid submit stamp names a person")
    );
    assert_eq!(
        r("forged")["stamp"],
        s(
            "fail",
            "forged: scimgate.io/submitted-by was altered after submit was stamped"
        )
    );
    assert_eq!(
        r("bobs")["submitter-active"],
        s("fail", "bob@example.com was deactivated through SCIM")
    );
    assert_eq!(
        r("release-1")["approver-distinct"],
        s("pass", "approved by bob@example.com, not its submitter")
    );
    assert!(r("done").is_empty(), "a finished run is not reported");
    for rule in team["results"].as_array().into_iter().flatten() {
        assert_eq!(
            (&rule["source"], &rule["policy"]),
            (&json!("scimgate"), &json!("scimgate-identity"))
        );
    }
    let failing = team["results"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| r["result"] == "fail")
        .count();
    assert_eq!(team["summary"]["fail"], failing);
    assert_eq!(failing, 3, "missing, forged, bob's");
    let cluster = report(&w, "ClusterPolicyReport", "").expect("cluster report");
    assert_eq!(results_for(&cluster, "shared")["stamp"].0, "pass");
    // What was written is what the CRDs accept (the face refuses anything else with 422).
    for doc in w.kube.reports().all() {
        assert_eq!(crate::reports_face::validate(&doc), Ok(()), "{doc:#}");
    }
}

/// With `api: auto` the cluster decides: OpenReports where it is served. Until a report API is
/// served nothing is written; a SCIM change makes the reports follow at once, whatever the
/// interval.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_picks_openreports_and_a_scim_change_refreshes_at_once() {
    let w = World::with_config("reports:\n  enabled: true\n").await;
    allowed(kubectl(&w.api, "alice@example.com").create(&workflow("valid")).await);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(w.kube.reports().all().is_empty(), "no report API served yet");
    w.kube.reports().install("wgpolicyk8s.io/v1alpha2");
    w.kube.reports().install("openreports.io/v1alpha1");
    // The interval is the default 300 s: the SCIM change is what brings the report.
    w.deactivate(&w.alice).await;
    let written = crate::support::until(Duration::from_secs(15), async || {
        report(&w, "Report", "team-a").is_some_and(|d| {
            results_for(&d, "valid")
                .get("submitter-active")
                .is_some_and(|(r, _)| r == "fail")
        })
    })
    .await;
    assert!(written.is_some(), "reports: {:#?}", w.kube.reports().all());
    let doc = report(&w, "Report", "team-a").expect("report");
    assert_eq!(doc["apiVersion"], "openreports.io/v1alpha1");
    assert_eq!(
        (&doc["source"], &doc["configuration"]["limits"]["maxResults"]),
        (&json!("scimgate"), &json!(1000))
    );
    assert!(
        w.kube
            .reports()
            .all()
            .iter()
            .all(|d| d["apiVersion"] == "openreports.io/v1alpha1"),
        "one API only"
    );
    assert_eq!(crate::reports_face::validate(&doc), Ok(()));
    // Each report written left its decision record.
    let records: Vec<_> = w
        .decisions(1)
        .await
        .into_iter()
        .filter(|r| r.action == "report")
        .collect();
    assert!(
        records.iter().any(|r| r.hook == "reports"
            && r.kind == "Report"
            && r.namespace == "team-a"
            && r.reason.starts_with("identity checks: ")),
        "{records:#?}"
    );
}

/// The face's validation is the CRDs': a result outside the enum, a field no schema knows, a
/// missing `policy` are refused; what scimgate writes passes.
#[test]
fn the_crds_refuse_what_they_do_not_describe() {
    let good = json!({"apiVersion": "openreports.io/v1alpha1", "kind": "Report",
        "metadata": {"name": "x", "namespace": "team-a"}, "source": "scimgate",
        "summary": {"pass": 1, "fail": 0, "warn": 0, "error": 0, "skip": 0},
        "results": [{"policy": "p", "result": "pass", "timestamp": {"seconds": 1, "nanos": 0}}]});
    assert_eq!(crate::reports_face::validate(&good), Ok(()));
    let mut bad_enum = good.clone();
    bad_enum["results"][0]["result"] = json!("ok");
    let mut unknown = good.clone();
    unknown["results"][0]["subjects"] = json!([]);
    let mut no_policy = good.clone();
    no_policy["results"][0].as_object_mut().map(|m| m.remove("policy"));
    let mut wg_source = good.clone();
    wg_source["apiVersion"] = json!("wgpolicyk8s.io/v1alpha2");
    wg_source["kind"] = json!("PolicyReport");
    for bad in [bad_enum, unknown, no_policy, wg_source] {
        assert!(crate::reports_face::validate(&bad).is_err(), "{bad:#}");
    }
}

/// Two replicas on one PostgreSQL database: the first holds the reports' Lease and writes; when
/// it stops, the second takes the Lease over once it runs out (15 s), and the reports follow the
/// next SCIM change through it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_replica_writes_the_reports_and_another_takes_over_when_it_stops() {
    let Some(url) = crate::support::postgres_db("one_replica_writes_the_reports").await else {
        return;
    };
    let mut kube = crate::kube_face::KubeFace::bind().await;
    let deployment =
        crate::support::Deployment::new(&url, "reports:\n  enabled: true\n  intervalSeconds: 3600\n", &kube);
    kube.reports().install("openreports.io/v1alpha1");
    // The first replica takes the Lease before the second starts: the second must wait.
    let a = deployment.replica().await;
    let api = crate::apiserver::ApiServer::new(&a);
    kube.serve(&api);
    let lease = |k: &crate::kube_face::KubeFace| k.reports().lease("scimgate", "scimgate-identity-reports");
    let taken = crate::support::until(Duration::from_secs(10), async || lease(&kube).is_some()).await;
    assert!(taken.is_some(), "the first replica never took the Lease");
    let b = deployment.replica().await;
    let alice = a.create_user("alice@example.com").await;
    let bob = a.create_user("bob@example.com").await;
    a.create_group("pipeline-users", &[&alice, &bob]).await;
    allowed(kubectl(&api, "alice@example.com").create(&workflow("valid")).await);
    allowed(kubectl(&api, "bob@example.com").create(&workflow("bobs")).await);
    // A SCIM change brings the first report (the interval is an hour).
    a.create_user("carol@example.com").await;
    let first = crate::support::until(Duration::from_secs(15), async || {
        report_in(&kube, "team-a").is_some_and(|d| results_for(&d, "bobs").contains_key("stamp"))
    })
    .await;
    assert!(first.is_some(), "reports: {:#?}", kube.reports().all());
    let holder = lease(&kube).expect("the Lease")["spec"]["holderIdentity"].clone();
    assert_eq!(lease(&kube).expect("the Lease")["spec"]["leaseTransitions"], 0);

    // The holder stops. Its Lease runs out after 15 s; the other replica takes it and writes
    // what the next SCIM change says.
    let (survivor, stopped) = (b, a);
    drop(stopped.stop().await);
    let r = survivor
        .patch(
            &format!("/Users/{bob}"),
            crate::support::ops(json!([{"op": "replace", "value": {"active": false}}])),
        )
        .await;
    assert!(r.status.is_success(), "{}", r.body);
    let followed = crate::support::until(Duration::from_secs(30), async || {
        report_in(&kube, "team-a").is_some_and(|d| {
            results_for(&d, "bobs")
                .get("submitter-active")
                .is_some_and(|(r, _)| r == "fail")
        })
    })
    .await;
    assert!(
        followed.is_some(),
        "reports: {:#?}; lease: {:?}",
        kube.reports().all(),
        lease(&kube)
    );
    let now = lease(&kube).expect("the Lease");
    assert_ne!(now["spec"]["holderIdentity"], holder, "{now}");
    assert_eq!(now["spec"]["leaseTransitions"], 1, "{now}");
    drop(survivor);
}

/// The report in `namespace` the face holds, of either API.
fn report_in(kube: &crate::kube_face::KubeFace, namespace: &str) -> Option<Value> {
    kube.reports()
        .all()
        .into_iter()
        .find(|d| d["metadata"]["namespace"] == namespace)
}
