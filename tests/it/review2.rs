//! The second security review (issue 16): each attack it confirmed, reproduced through the
//! API-server emulator, beside the legitimate request its fix must not break.

use crate::actors::kubectl;
use crate::support::{allowed, policy_with_rules, refused, World};
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
