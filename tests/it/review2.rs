//! The second security review (issue 16): each attack it confirmed, reproduced through the
//! API-server emulator, beside the legitimate request its fix must not break.

use crate::actors::{argo_controller, argo_server, claims, kubectl, Claims};
use crate::support::{allowed, ann, policy_with_rules, refused, World};
use serde_json::{json, Value};

/// Pipeline users in `team-a` may run as `runner` only, with any templates.
fn run_as_only() -> String {
    policy_with_rules(
        r#"
rules:
  - name: team-run
    allow: [submit, cancel, update]
    groups: [pipeline-users]
    namespaces: ["team-a"]
    runAs: ["runner"]
  - name: team-approve
    allow: [approve]
    groups: [release-approvers]
    namespaces: ["team-*"]
    distinctApprover: true
"#,
    )
}

/// A Workflow in team-a running as `runner` whose `main` steps are `steps`.
fn wf_with_steps(steps: Value) -> Value {
    json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "Workflow",
        "metadata": {"generateName": "inline-", "namespace": "team-a"},
        "spec": {"serviceAccountName": "runner", "entrypoint": "main", "templates": [
            {"name": "main", "steps": steps}]}})
}

/// Finding 1: a step's or a DAG task's `inline` template, at any depth, names its own account.
/// Before the fix every attack below was admitted (only top-level templates were read).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inline_templates_in_steps_and_dags_at_any_depth_are_judged() {
    let w = World::with(&run_as_only(), "").await;
    let alice = kubectl(&w.api, "alice@example.com");
    let allowed_ref = json!({"name": "ok", "templateRef": {"name": "lib-build", "template": "build"}});
    // Legitimate: inline templates that run as the run's account.
    allowed(
        alice
            .create(&wf_with_steps(json!([[allowed_ref.clone(),
                {"name": "hello", "inline": {"container": {"image": "busybox"}}}]])))
            .await,
    );
    let attacks = [
        // The review's own: beside an allowed templateRef.
        json!([[allowed_ref.clone(),
            {"name": "evil", "inline": {"serviceAccountName": "cluster-admin", "container": {"image": "x"}}}]]),
        // Through a podSpecPatch of the inline template.
        json!([[{"name": "evil", "inline": {"podSpecPatch": "serviceAccountName: cluster-admin", "container": {"image": "x"}}}]]),
        // Inline steps holding an inline template, in a DAG task.
        json!([[{"name": "outer", "inline": {"dag": {"tasks": [
            {"name": "inner", "inline": {"serviceAccountName": "cluster-admin", "script": {"image": "x", "source": "id"}}}]}}}]]),
        // On the executor and on artifact garbage collection.
        json!([[{"name": "e", "inline": {"executor": {"serviceAccountName": "cluster-admin"}, "container": {"image": "x"}}}]]),
        json!([[{"name": "g", "inline": {"container": {"image": "x"},
            "outputs": {"artifacts": [{"name": "o", "path": "/o", "artifactGC": {"serviceAccountName": "cluster-admin"}}]}}}]]),
    ];
    for steps in attacks {
        let r = refused(alice.create(&wf_with_steps(steps.clone())).await);
        assert!(
            r.message.contains("runs as service account '(podSpecPatch") || r.message.contains("'cluster-admin'"),
            "{steps}: {}",
            r.message
        );
    }
    // A DAG task's inline template directly under the spec's templates.
    let mut dag = wf_with_steps(json!([]));
    dag["spec"]["templates"] = json!([{"name": "main", "dag": {"tasks": [
        {"name": "t", "inline": {"serviceAccountName": "cluster-admin", "container": {"image": "x"}}}]}}]);
    let r = refused(alice.create(&dag).await);
    assert!(r.message.contains("'cluster-admin'"), "{}", r.message);
    // And in a CronWorkflow's workflowSpec.
    let cron = json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "CronWorkflow",
        "metadata": {"name": "nightly", "namespace": "team-a"},
        "spec": {"schedule": "0 1 * * *", "workflowSpec": dag["spec"].clone()}});
    let r = refused(alice.create(&cron).await);
    assert!(r.message.contains("'cluster-admin'"), "{}", r.message);
}

/// Finding 2: `podSpecPatch` keys Go folds onto `serviceAccountName`, merge keys and tags.
/// Before the fix each was admitted as the run's declared account.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pod_spec_patches_argo_reads_otherwise_are_refused() {
    let w = World::with(&run_as_only(), "").await;
    let alice = kubectl(&w.api, "alice@example.com");
    let with_patch = |patch: &str| {
        let mut wf = wf_with_steps(json!([]));
        wf["spec"]["templates"] = json!([{"name": "main", "container": {"image": "x"}, "podSpecPatch": patch}]);
        wf
    };
    // Legitimate: a patch naming the run's own account exactly, one that sets resources.
    allowed(alice.create(&with_patch("serviceAccountName: runner\n")).await);
    allowed(
        alice
            .create(&with_patch(
                r#"{"containers": [{"name": "main", "resources": {"limits": {"cpu": "1"}}}]}"#,
            ))
            .await,
    );
    for patch in [
        r#"{"ServiceAccountName": "cluster-admin"}"#,
        "SERVICEACCOUNTNAME: cluster-admin\n",
        "serviceaccountname: cluster-admin\n",
        "\u{17f}erviceAccountName: cluster-admin\n",
        "\"\\u017ferviceAccountName\": cluster-admin\n",
        "ServiceAccount: cluster-admin\n",
        "<<: {serviceAccountName: cluster-admin}\n",
        "x: &a {serviceAccountName: cluster-admin}\n<<: *a\n",
        "? !!binary c2VydmljZUFjY291bnROYW1l\n: cluster-admin\n",
        "serviceAccountName: null\n",
    ] {
        let r = refused(alice.create(&with_patch(patch)).await);
        assert!(
            r.message.contains("runs as service account"),
            "{patch:?}: {}",
            r.message
        );
    }
    // Outside a patch, a spec key Go folds onto one of Argo's fields is refused outright.
    let mut folded = wf_with_steps(
        json!([[{"name": "s", "inline": {"ServiceAccountName": "cluster-admin", "container": {"image": "x"}}}]]),
    );
    let r = refused(alice.create(&folded).await);
    assert!(
        r.message.contains("'ServiceAccountName'") && r.message.contains("read by Argo as 'serviceAccountName'"),
        "{}",
        r.message
    );
    folded["spec"]["templates"][0]["steps"][0][0]["inline"] = json!({"container": {"image": "x"}});
    allowed(alice.create(&folded).await);
}

/// Finding 10: Argo's creator and actor labels (and our keys) in the metadata Argo copies onto
/// every run, as labels or `labelsFrom`. Before the fix the Argo labels were admitted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identity_labels_in_copied_metadata_are_refused() {
    let w = World::with(&run_as_only(), "").await;
    let alice = kubectl(&w.api, "alice@example.com");
    let cron = |meta: Value| {
        json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "CronWorkflow",
            "metadata": {"name": format!("c-{}", uuid::Uuid::new_v4().simple()), "namespace": "team-a"},
            "spec": {"schedule": "0 1 * * *", "workflowMetadata": meta,
                "workflowSpec": {"serviceAccountName": "runner", "entrypoint": "main",
                    "templates": [{"name": "main", "container": {"image": "x"}}]}}})
    };
    // Legitimate: labels of the team's own, a labelsFrom of its own.
    let ok = allowed(
        alice
            .create(&cron(json!({"labels": {"team": "ml"},
                "labelsFrom": {"branch": {"expression": "workflow.parameters.branch"}}})))
            .await,
    )
    .object;
    for meta in [
        json!({"labels": {"workflows.argoproj.io/creator": "bob"}}),
        json!({"labels": {"workflows.argoproj.io/creator-email": "bob.at.example.com"}}),
        json!({"labels": {"workflows.argoproj.io/actor": "bob"}}),
        json!({"labelsFrom": {"workflows.argoproj.io/creator-preferred-username": {"expression": "'bob'"}}}),
        json!({"labelsFrom": {"scimgate.io/submitted-by": {"expression": "'bob'"}}}),
    ] {
        let r = refused(alice.create(&cron(meta.clone())).await);
        assert!(r.message.contains("every run started from it"), "{meta}: {}", r.message);
    }
    // Added later by an update: the same.
    let r = refused(
        alice
            .edit(&ok, |o| {
                o["spec"]["workflowMetadata"]["labels"]["workflows.argoproj.io/creator"] = json!("bob")
            })
            .await,
    );
    assert!(
        r.message
            .contains("workflows.argoproj.io/creator in spec.workflowMetadata.labels"),
        "{}",
        r.message
    );
    // A Workflow's own workflowMetadata (copied at its first reconcile).
    let mut wf = wf_with_steps(json!([]));
    wf["spec"]["templates"] = json!([{"name": "main", "container": {"image": "x"}}]);
    wf["spec"]["workflowMetadata"] = json!({"labels": {"workflows.argoproj.io/creator": "bob"}});
    let r = refused(alice.create(&wf).await);
    assert!(r.message.contains("every run started from it"), "{}", r.message);
    wf["spec"]["workflowMetadata"] = json!({"labels": {"team": "ml"}});
    allowed(alice.create(&wf).await);
}

/// Finding 3: the review's slowest body — tens of thousands of `scimgate.io/*` annotations on a
/// create — is judged (off the async workers, in linear time) and the stamp replaces them all.
/// Timing is the benchmark's business (bench/hostile.sh); this checks the answer is right.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_of_sixty_thousand_annotations_is_judged_and_stamped() {
    let w = World::with(&run_as_only(), "").await;
    let mut wf = wf_with_steps(json!([]));
    wf["spec"]["templates"] = json!([{"name": "main", "container": {"image": "x"}}]);
    let mut forged = serde_json::Map::new();
    for i in 0..60_000 {
        forged.insert(format!("scimgate.io/forged-{i}"), json!("x"));
    }
    forged.insert("team".into(), json!("ml"));
    wf["metadata"]["annotations"] = Value::Object(forged);
    let stored = allowed(kubectl(&w.api, "alice@example.com").create(&wf).await).object;
    let ann = stored["metadata"]["annotations"].as_object().expect("annotations");
    assert!(
        !ann.keys().any(|k| k.starts_with("scimgate.io/forged")),
        "every forged key is gone"
    );
    assert_eq!(ann["team"], "ml");
    assert_eq!(ann["scimgate.io/submitted-by"], "alice@example.com");
}

/// Finding 7: the person behind an Argo Server request is named by the authoritative claim
/// (email unless the delegate says `claim: subject`), never by a label the user chose alone.
/// Before the fix, labels that fit nobody were passed over, so a `preferred_username` chosen at
/// the IdP made the request someone else's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn argo_server_requests_are_attributed_on_the_authoritative_claim_only() {
    let w = World::new().await;
    let server = argo_server(&w.api);
    let wf = crate::support::workflow("team-a");
    // Legitimate: alice's subject is an IdP id SCIM never saw; her email and username fit her.
    let ok = allowed(server.submit(&claims("00u1abcd", "alice@example.com"), &wf).await).object;
    assert_eq!(ann(&ok, "scimgate.io/submitted-by"), "alice@example.com");
    // The attack: someone the directory does not know (a guest, an unprovisioned account) whose
    // chosen preferred_username is alice's.
    let guest = Claims {
        sub: "00u9zzzz".into(),
        email: "guest@elsewhere.example".into(),
        preferred_username: "alice@example.com".into(),
    };
    let r = refused(server.submit(&guest, &wf).await);
    assert!(
        r.message
            .contains("workflows.argoproj.io/creator-email=guest.at.elsewhere.example names no user"),
        "{}",
        r.message
    );
    // No email claim at all: no one is named.
    let no_email = Claims {
        sub: "00u9zzzz".into(),
        email: String::new(),
        preferred_username: "alice@example.com".into(),
    };
    let r = refused(server.submit(&no_email, &wf).await);
    assert!(
        r.message.contains("sets no workflows.argoproj.io/creator-email label"),
        "{}",
        r.message
    );
    // Labels that fit two different people: refused.
    let mixed = Claims {
        sub: "00u1abcd".into(),
        email: "alice@example.com".into(),
        preferred_username: "bob@example.com".into(),
    };
    let r = refused(server.submit(&mixed, &wf).await);
    assert!(r.message.contains("name different people"), "{}", r.message);
    // On an update: a stop by someone whose token has no email leaves the previous actor's email
    // label in place — it is not theirs, so nobody is named.
    allowed(argo_controller(&w.api).operate(&ok, "Running", None).await);
    allowed(server.suspend(&claims("00u1bbbb", "bob@example.com"), &ok).await);
    let carol = Claims {
        sub: "00u1cccc".into(),
        email: String::new(),
        preferred_username: "carol".into(),
    };
    let r = refused(server.stop(&carol, &ok, "Stop").await);
    assert!(
        r.message.contains("sets no workflows.argoproj.io/actor-email label"),
        "{}",
        r.message
    );
}

/// Finding 7, the other claim: a delegate configured with `claim: subject` names the person by
/// the subject label, matched against the directory's externalId.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delegate_may_name_people_by_subject() {
    let policy = crate::support::POLICY.replace(
        "      via: argoServer\n",
        "      via: argoServer\n      claim: subject\n",
    );
    assert!(policy.contains("claim: subject"));
    let w = World::with(&policy, "").await;
    let dana =
        w.s.post(
            "/Users",
            json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            "userName": "dana@example.com", "externalId": "00u7dana", "active": true}),
        )
        .await
        .id();
    let group =
        w.s.get(&format!(
            "/Groups?filter={}",
            crate::support::enc("displayName eq \"pipeline-users\"")
        ))
        .await
        .body["Resources"][0]["id"]
            .as_str()
            .unwrap_or_default()
            .to_string();
    w.s.patch(
        &format!("/Groups/{group}"),
        crate::support::ops(json!([{"op": "add", "path": "members", "value": [{"value": dana}]}])),
    )
    .await;
    let server = argo_server(&w.api);
    let wf = crate::support::workflow("team-a");
    let ok = allowed(
        server
            .submit(&claims("00u7dana", "dana.personal@elsewhere.example"), &wf)
            .await,
    )
    .object;
    assert_eq!(ann(&ok, "scimgate.io/submitted-by"), "dana@example.com");
    let r = refused(server.submit(&claims("00u7nobody", "dana@example.com"), &wf).await);
    assert!(
        r.message
            .contains("workflows.argoproj.io/creator=00u7nobody names no user"),
        "{}",
        r.message
    );
}

/// A Workflow of alice's parked at a Running Suspend gate `approve`, and that node's id.
async fn parked_gate(w: &World) -> (Value, String) {
    let wf = json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "Workflow",
        "metadata": {"generateName": "release-", "namespace": "team-a"},
        "spec": {"serviceAccountName": "runner", "entrypoint": "main", "templates": [
            {"name": "main", "steps": [[{"name": "approve", "template": "approve"}], [{"name": "ship", "template": "ship"}]]},
            {"name": "approve", "suspend": {}},
            {"name": "ship", "container": {"image": "busybox"}}]}});
    let wf = allowed(kubectl(&w.api, "alice@example.com").create(&wf).await).object;
    allowed(argo_controller(&w.api).operate(&wf, "Running", Some("approve")).await);
    let node = format!("{}-approve", wf["metadata"]["name"].as_str().unwrap_or_default());
    (w.api.stored(&wf).expect("stored"), node)
}

/// Finding 6: one UPDATE that approves and changes the spec is judged as both. Before the fix
/// bob's approval carried `serviceAccountName: cluster-admin` past a `runAs` rule.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approval_carrying_a_spec_change_is_judged_as_both() {
    let w = World::with(&run_as_only(), "").await;
    let bob = kubectl(&w.api, "bob@example.com");
    let (wf, node) = parked_gate(&w).await;
    let approve_and = |sa: &'static str| {
        let node = node.clone();
        move |o: &mut Value| {
            o["status"]["nodes"][&node]["phase"] = json!("Succeeded");
            o["spec"]["serviceAccountName"] = json!(sa);
        }
    };
    let r = refused(bob.edit(&wf, approve_and("cluster-admin")).await);
    assert!(
        r.message.contains("may not update Workflow") && r.message.contains("'cluster-admin'"),
        "{}",
        r.message
    );
    // Legitimate: an approval with a change bob may make is both, stamped and recorded twice.
    let both = allowed(
        bob.edit(&wf, |o| {
            o["status"]["nodes"][&node]["phase"] = json!("Succeeded");
            o["spec"]["activeDeadlineSeconds"] = json!(3600);
        })
        .await,
    )
    .object;
    assert_eq!(ann(&both, "scimgate.io/approved-by"), "bob@example.com");
    assert_eq!(ann(&both, "scimgate.io/updated-by"), "bob@example.com");
    let v = w.verifier().await;
    let stamps = crate::support::verified_by(&v, &both);
    assert!(
        stamps.contains(&"approve by bob@example.com".to_string())
            && stamps.contains(&"update by bob@example.com".to_string()),
        "{stamps:?}"
    );
    let records = w.decisions(4).await;
    let last: Vec<(&str, &str)> = records
        .iter()
        .rev()
        .take(2)
        .map(|r| (r.action.as_str(), r.outcome.as_str()))
        .collect();
    assert!(
        last.contains(&("approve", "allowed")) && last.contains(&("update", "allowed")),
        "{last:?}"
    );
}

/// Dry-run in `legacy-*`: alice may run as `runner` there.
fn dry_run_legacy() -> String {
    policy_with_rules(
        r#"
dryRunNamespaces: ["legacy-*"]
rules:
  - name: legacy-run
    allow: [submit, update]
    groups: [pipeline-users]
    namespaces: ["legacy-*"]
    runAs: ["runner"]
"#,
    )
}

/// Finding 12: a stamp binds the decision and the spec it was made for. Before the fix the
/// review copied a dry-run `allow` stamp onto a run whose outcome was `dry-run-deny`, and it stood.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stamp_copied_onto_another_run_is_not_kept() {
    let w = World::with(&dry_run_legacy(), "").await;
    let alice = kubectl(&w.api, "alice@example.com");
    let run = |sa: &str| {
        json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "Workflow",
            "metadata": {"generateName": "copy-", "namespace": "legacy-x"},
            "spec": {"serviceAccountName": sa, "entrypoint": "main",
                "templates": [{"name": "main", "container": {"image": "busybox"}}]}})
    };
    let a = allowed(alice.create(&run("runner")).await).object;
    assert_eq!(ann(&a, "scimgate.io/decision"), "allow:legacy-run");
    let copy = |mut b: Value| {
        let ours: serde_json::Map<String, Value> = a["metadata"]["annotations"]
            .as_object()
            .expect("annotations")
            .iter()
            .filter(|(k, _)| k.starts_with("scimgate.io/"))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        b["metadata"]["annotations"] = Value::Object(ours);
        b["metadata"]["labels"] = a["metadata"]["labels"].clone();
        b
    };
    // With the mutating webhook: B gets a stamp of its own decision.
    let b = allowed(alice.create(&copy(run("cluster-admin"))).await).object;
    assert!(
        ann(&b, "scimgate.io/decision")
            .as_str()
            .is_some_and(|d| d.starts_with("dry-run-deny")),
        "{}",
        b["metadata"]["annotations"]
    );
    assert_ne!(ann(&b, "scimgate.io/attestation"), ann(&a, "scimgate.io/attestation"));
    // Without it (only the validating webhook registered): the copy is refused.
    let bare = crate::apiserver::ApiServer::validating_only(&w.s);
    let r = refused(
        kubectl(&bare, "alice@example.com")
            .create(&copy(run("cluster-admin")))
            .await,
    );
    assert!(
        r.message.contains("attests the decision 'allow:legacy-run'") && r.message.contains("dry-run-deny"),
        "{}",
        r.message
    );
    // The same decision on another spec (another image): refused too.
    let mut other = copy(run("runner"));
    other["spec"]["templates"][0]["container"]["image"] = json!("evil:1");
    let r = refused(kubectl(&bare, "alice@example.com").create(&other).await);
    assert!(r.message.contains("made for another spec"), "{}", r.message);
}

/// alice submits; pipeline users update; only alice may submit.
fn submit_alice_update_team() -> String {
    policy_with_rules(
        r#"
rules:
  - name: alice-submits
    allow: [submit]
    users: [alice@example.com]
    namespaces: ["team-a"]
  - name: team-edits
    allow: [update]
    groups: [pipeline-users]
    namespaces: ["team-a"]
"#,
    )
}

/// Finding 11: a CronWorkflow's runs belong to whoever last changed what it runs, and the stamp
/// names the submitter too. Before the fix bob's rewrite ran as alice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schedules_runs_are_the_last_spec_authors() {
    let w = World::with(&submit_alice_update_team(), "").await;
    let cron = json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "CronWorkflow",
        "metadata": {"name": "nightly", "namespace": "team-a"},
        "spec": {"schedule": "0 1 * * *", "workflowSpec": {"entrypoint": "main",
            "templates": [{"name": "main", "container": {"image": "busybox"}}]}}});
    let cron = allowed(kubectl(&w.api, "alice@example.com").create(&cron).await).object;
    let bob = kubectl(&w.api, "bob@example.com");
    let ctl = argo_controller(&w.api);
    // bob changes when it runs, not what: the runs are still alice's.
    allowed(bob.edit(&cron, |o| o["spec"]["schedule"] = json!("0 2 * * *")).await);
    let stored = w.api.stored(&cron).expect("stored");
    let run = allowed(ctl.spawn(&stored, chrono::Utc::now()).await).object;
    assert_eq!(ann(&run, "scimgate.io/submitted-by"), "alice@example.com");
    assert!(ann(&run, "scimgate.io/owner-submitted-by").is_null());
    // bob changes what it runs: its next run is bob's, and bob may not submit.
    allowed(
        bob.edit(&stored, |o| {
            o["spec"]["workflowSpec"]["templates"][0]["container"]["image"] = json!("bobs:1")
        })
        .await,
    );
    let stored = w.api.stored(&cron).expect("stored");
    let r = refused(
        ctl.spawn(&stored, chrono::Utc::now() + chrono::Duration::minutes(1))
            .await,
    );
    assert!(
        r.message.contains("bob@example.com") && r.message.contains("may not submit"),
        "{}",
        r.message
    );
    // Under a policy that lets bob submit, the run is his and names alice's schedule too.
    let w2 = World::with(&run_as_only(), "").await;
    let cron2 = allowed(
        kubectl(&w2.api, "alice@example.com")
            .create(&{
                let mut c = cron.clone();
                for k in [
                    "uid",
                    "resourceVersion",
                    "creationTimestamp",
                    "generation",
                    "annotations",
                    "labels",
                ] {
                    c["metadata"].as_object_mut().map(|m| m.remove(k));
                }
                c["spec"].as_object_mut().map(|s| s.remove("workflowMetadata"));
                c["spec"]["workflowSpec"]["serviceAccountName"] = json!("runner");
                c
            })
            .await,
    )
    .object;
    allowed(
        kubectl(&w2.api, "bob@example.com")
            .edit(&cron2, |o| {
                o["spec"]["workflowSpec"]["templates"][0]["container"]["image"] = json!("bobs:1")
            })
            .await,
    );
    let stored = w2.api.stored(&cron2).expect("stored");
    let run = allowed(argo_controller(&w2.api).spawn(&stored, chrono::Utc::now()).await).object;
    assert_eq!(ann(&run, "scimgate.io/submitted-by"), "bob@example.com");
    assert_eq!(ann(&run, "scimgate.io/owner-submitted-by"), "alice@example.com");
}

/// Finding 9: a stamp made for a caller that did not prove to be the API server says so, and
/// `audit verify` shows it (the authenticated twin is in `caller.rs`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stamp_minted_without_caller_authentication_says_so() {
    let w = World::new().await;
    let run = allowed(
        kubectl(&w.api, "alice@example.com")
            .create(&crate::support::workflow("team-a"))
            .await,
    )
    .object;
    let v = w.verifier().await;
    let claims = scimgate::stamp::object::verified(&v, &run, scimgate::stamp::Entry::SUBMIT)
        .expect("stamped")
        .expect("valid");
    assert_eq!(claims.authenticated, Some(false));
    let line = scimgate::audit::verify::line(&scimgate::audit::verify::verify_object(&v, &run));
    assert!(line.contains("minted without caller authentication"), "{line}");
}

/// Deletes judged: only alice may delete; pipeline users may submit and update.
fn enforced_deletes() -> String {
    policy_with_rules(
        r#"
enforceDeletes: true
rules:
  - name: team-run
    allow: [submit, update]
    groups: [pipeline-users]
    namespaces: ["team-a"]
  - name: alice-deletes
    allow: [delete]
    users: [alice@example.com]
    namespaces: ["team-a"]
"#,
    )
}

/// Finding 8: adding an owner that is gone (or not the person's) makes the garbage collector
/// delete the object with no webhook call, so such an update is judged as a delete too. Before the
/// fix bob's dangling ownerReference was an update, and alice's run would have been collected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_owner_added_that_is_gone_or_not_theirs_is_a_delete() {
    let w = World::with(&enforced_deletes(), "").await;
    let alice = kubectl(&w.api, "alice@example.com");
    let bob = kubectl(&w.api, "bob@example.com");
    let run = allowed(alice.create(&crate::support::workflow("team-a")).await).object;
    let cron = json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "CronWorkflow",
        "metadata": {"name": "alices", "namespace": "team-a"},
        "spec": {"schedule": "0 1 * * *", "workflowSpec": {"entrypoint": "main",
            "templates": [{"name": "main", "container": {"image": "busybox"}}]}}});
    let cron = allowed(alice.create(&cron).await).object;
    let owner = |kind: &str, api: &str, name: &str, uid: &str| json!({"apiVersion": api, "kind": kind, "name": name, "uid": uid});
    let adopt = |r: Value| move |o: &mut Value| o["metadata"]["ownerReferences"] = json!([r]);
    for r in [
        owner(
            "CronWorkflow",
            "argoproj.io/v1alpha1",
            "ghost",
            "9d2c6f1e-0000-4000-8000-000000000000",
        ),
        owner("ConfigMap", "v1", "anything", "9d2c6f1e-0000-4000-8000-000000000001"),
        owner(
            "CronWorkflow",
            "argoproj.io/v1alpha1",
            "alices",
            cron["metadata"]["uid"].as_str().unwrap_or_default(),
        ),
    ] {
        let m = refused(bob.edit(&run, adopt(r.clone())).await);
        assert!(
            m.message.contains("may not delete Workflow") && m.message.contains("adds the owner"),
            "{r}: {}",
            m.message
        );
    }
    // Legitimate: alice makes her own CronWorkflow the owner of her own run.
    let mine = owner(
        "CronWorkflow",
        "argoproj.io/v1alpha1",
        "alices",
        cron["metadata"]["uid"].as_str().unwrap_or_default(),
    );
    let adopted = allowed(alice.edit(&run, adopt(mine)).await).object;
    assert_eq!(adopted["metadata"]["ownerReferences"][0]["name"], "alices");
    // Where deletes are not enforced, bob's dangling owner is let through and recorded as a delete.
    let w2 = World::new().await;
    let run2 = allowed(
        kubectl(&w2.api, "alice@example.com")
            .create(&crate::support::workflow("team-a"))
            .await,
    )
    .object;
    allowed(
        kubectl(&w2.api, "bob@example.com")
            .edit(
                &run2,
                adopt(owner(
                    "CronWorkflow",
                    "argoproj.io/v1alpha1",
                    "ghost",
                    "9d2c6f1e-0000-4000-8000-000000000002",
                )),
            )
            .await,
    );
    let records = w2.decisions(2).await;
    assert!(
        records
            .iter()
            .any(|r| r.action == "delete" && r.reason.contains("adds the owner CronWorkflow team-a/ghost")),
        "{records:?}"
    );
}
