//! Who deleted it: every DELETE of a run kind that reaches the deletes webhook is recorded;
//! a person's delete is judged only under `enforceDeletes`; configured controllers pass; the
//! garbage collector and the namespace controller never reach us (the manifests'
//! matchConditions, evaluated by the emulator); a DELETE of an object with finalizers is admitted
//! each time it is asked for;
//! an outage loses the record, never the delete.

use crate::actors::kubectl;
use crate::apiserver::{person, service_account, ApiServer};
use crate::support::{allowed, ours, refused, scimgate, workflow, World, POLICY};
use serde_json::{json, Value};

/// A Workflow with a name (deletes need one) in `ns`.
fn named(name: &str, ns: &str) -> Value {
    let mut wf = workflow(ns);
    let m = wf["metadata"].as_object_mut().expect("metadata");
    m.remove("generateName");
    m.insert("name".into(), json!(name));
    wf
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deletes_are_recorded_and_only_people_and_controllers_reach_us() {
    let w = World::new().await;
    let alice = kubectl(&w.api, "alice@example.com");
    for n in ["a1", "a2", "a3", "a4", "a5"] {
        allowed(alice.create(&named(n, "team-a")).await);
    }
    // A person's delete, by default: recorded, not judged (mallory is in no group).
    let r = allowed(
        kubectl(&w.api, "mallory@example.com")
            .delete(&named("a1", "team-a"))
            .await,
    );
    assert_eq!(ours(&r), 1, "{:?}", r.calls);
    assert!(w.api.stored(&named("a1", "team-a")).is_none());
    allowed(kubectl(&w.api, "bob@example.com").delete(&named("a2", "team-a")).await);
    // A configured controller (the Argo controller's TTL clean-up): passes, recorded.
    let argo = service_account("argo", "argo");
    allowed(w.api.delete(&argo, &named("a3", "team-a")).await);
    // The garbage collector and the namespace controller never reach the webhook.
    for (ns, sa, n) in [
        ("kube-system", "generic-garbage-collector", "a4"),
        ("kube-system", "namespace-controller", "a5"),
    ] {
        let r = allowed(w.api.delete(&service_account(ns, sa), &named(n, "team-a")).await);
        assert_eq!(ours(&r), 0, "{sa}: {:?}", r.calls);
    }

    // An object with finalizers: a DELETE admission each time one is asked for — again while it is
    // pending (k8s.io/apiserver registry/store.go `updateForGracefulDeletionAndFinalizers` calls
    // `deleteValidation` every time) — and none when the last finalizer goes (that is the
    // controller's UPDATE, which the API server turns into the removal).
    let mut guarded = named("guarded", "team-a");
    guarded["metadata"]["finalizers"] = json!(["workflows.argoproj.io/artifact-gc"]);
    allowed(alice.create(&guarded).await);
    let r = allowed(kubectl(&w.api, "bob@example.com").delete(&guarded).await);
    assert_eq!(ours(&r), 1);
    let pending = w.api.stored(&guarded).expect("kept while finalizers remain");
    assert!(pending["metadata"]["deletionTimestamp"].is_string(), "{pending}");
    let again = allowed(kubectl(&w.api, "bob@example.com").delete(&guarded).await);
    assert_eq!(ours(&again), 1, "a repeated DELETE is admitted again");
    assert_eq!(w.api.stored(&guarded), Some(pending.clone()), "and stores nothing new");
    let mut finalized = pending.clone();
    finalized["metadata"]["finalizers"] = json!([]);
    let r = allowed(w.api.update(&argo, finalized).await);
    assert!(
        r.calls.iter().all(|c| c.operation != "DELETE"),
        "the removal was admitted as a delete: {:?}",
        r.calls
    );
    assert!(w.api.stored(&guarded).is_none(), "the emptied object was removed");

    let deletes: Vec<_> = w
        .decisions(15)
        .await
        .into_iter()
        .filter(|d| d.action == "delete")
        .collect();
    let who: Vec<(&str, &str, &str)> = deletes
        .iter()
        .map(|d| (d.name.as_str(), d.requester.as_str(), d.outcome.as_str()))
        .collect();
    assert_eq!(
        who,
        [
            ("a1", "oidc:mallory@example.com", "allowed"),
            ("a2", "oidc:bob@example.com", "allowed"),
            ("a3", "system:serviceaccount:argo:argo", "allowed"),
            ("guarded", "oidc:bob@example.com", "allowed"),
            ("guarded", "oidc:bob@example.com", "allowed"),
        ]
    );
    assert!(deletes[0].reason.contains("recorded only"), "{:?}", deletes[0]);
    assert_eq!(deletes[1].user_id.as_deref(), Some(w.bob.as_str()));
    // Whose run it was: the deleted object's verified submitter, and its stamp.
    assert!(deletes
        .iter()
        .all(|d| d.submitter_id.as_deref() == Some(w.alice.as_str())));
    assert!(deletes.iter().all(|d| d.stamp_id.is_some()));

    // `audit who` on the gone object (read through the emulator's HTTP face: 404) shows who
    // deleted it, from the decision log; `audit query --action delete` lists it.
    let out = crate::support::audit_who(w.s.dir.path(), "team-a/workflow/a1");
    assert!(out.contains("deleted    by oidc:mallory@example.com"), "{out}");
    let dir = w.s.stop().await;
    let data = dir.path().as_os_str();
    let (code, out, err) = scimgate(&[
        "audit".as_ref(),
        "query".as_ref(),
        "--data-dir".as_ref(),
        data,
        "--action".as_ref(),
        "delete".as_ref(),
        "--name".as_ref(),
        "a1".as_ref(),
        "-o".as_ref(),
        "json".as_ref(),
    ]);
    assert_eq!(code, 0, "{err}");
    let rows: Vec<Value> = serde_json::from_str(&out).expect("json");
    assert_eq!(rows.len(), 1, "{out}");
    assert_eq!(rows[0]["requester"], "oidc:mallory@example.com");
}

const ENFORCING: &str = r#"
enforceDeletes: true
rules:
  - name: approvers-delete
    allow: [delete]
    groups: [release-approvers]
    namespaces: ["team-*", "legacy-*"]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enforced_deletes_follow_the_rules_that_allow_delete() {
    let policy = POLICY.replacen("rules:\n", &format!("{}\n", ENFORCING.trim_start()), 1);
    let w = World::with(&policy, "").await;
    let alice = kubectl(&w.api, "alice@example.com");
    allowed(alice.create(&named("keep", "team-a")).await);
    allowed(alice.create(&named("go", "team-a")).await);
    allowed(alice.create(&named("old", "legacy-x")).await);
    let e = refused(
        kubectl(&w.api, "mallory@example.com")
            .delete(&named("keep", "team-a"))
            .await,
    );
    assert_eq!(e.code, 403, "{}", e.message);
    assert!(
        e.message
            .contains("oidc:mallory@example.com may not delete Workflow keep in team-a"),
        "{}",
        e.message
    );
    assert!(w.api.stored(&named("keep", "team-a")).is_some());
    allowed(kubectl(&w.api, "bob@example.com").delete(&named("go", "team-a")).await);
    // A dry-run namespace: let through with a warning, recorded as what would have been denied.
    let r = allowed(
        kubectl(&w.api, "mallory@example.com")
            .delete(&named("old", "legacy-x"))
            .await,
    );
    assert!(!r.warnings.is_empty(), "{:?}", r.warnings);
    // (A refusal names the rule that came closest, as every decision record does.)
    let outcomes: Vec<(String, String, Option<String>)> = w
        .decisions(8)
        .await
        .into_iter()
        .filter(|d| d.action == "delete")
        .map(|d| (d.name, d.outcome, d.rule))
        .collect();
    assert_eq!(
        outcomes,
        [
            ("keep".into(), "denied".into(), Some("approvers-delete".into())),
            ("go".into(), "allowed".into(), Some("approvers-delete".into())),
            ("old".into(), "dry-run-deny".into(), Some("approvers-delete".into())),
        ]
    );

    // The deletes webhook fails open: with scimgate unreachable a delete goes through (only
    // its record is lost), while a create is refused (`failurePolicy: Fail`).
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    drop(listener);
    let down = ApiServer::at(&format!("https://localhost:{port}"), w.s.client.clone());
    let kept = w.api.stored(&named("keep", "team-a")).expect("kept");
    down.put(kept.clone());
    allowed(down.delete(&person("mallory@example.com"), &kept).await);
    assert!(down.stored(&kept).is_none());
    refused(down.create(&person("alice@example.com"), named("new", "team-a")).await);
}

#[test]
fn enforcing_deletes_without_a_rule_that_allows_them_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("policy.yaml");
    std::fs::write(&path, POLICY.replacen("rules:\n", "enforceDeletes: true\nrules:\n", 1)).expect("write");
    let (code, out, err) = scimgate(&["policy".as_ref(), "check".as_ref(), path.as_os_str()]);
    assert_ne!(code, 0, "{out}");
    assert!(err.contains("no rule allows delete"), "{err}");
}
