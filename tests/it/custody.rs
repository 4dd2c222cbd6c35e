//! Chain of custody through the Argo Server: its actions are attributed to the person who acted
//! (its `actor*` labels, as argo-workflows `workflow/creator/creator.go` writes them), names are
//! matched the way Argo rewrites them, and Argo's identity labels are nobody else's to edit.
//! A controller-created run belongs to its owner as the cluster stores it (read by scimgate
//! through the emulator's HTTP face), and what becomes of it when that owner's submitter is
//! offboarded is the policy's.

use crate::actors::{argo_controller, argo_server, claims, kubectl, tekton_controller, Claims};
use crate::support::{allowed, ann, refused, verified_by, World, POLICY};
use serde_json::{json, Value};

fn suspending_workflow() -> Value {
    json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "Workflow",
        "metadata": {"generateName": "release-", "namespace": "team-a"},
        "spec": {"entrypoint": "main", "templates": [
            {"name": "main", "steps": [[{"name": "approve", "template": "approve"}]]},
            {"name": "approve", "suspend": {}}]}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn argo_server_actions_belong_to_the_person_who_acted() {
    let w = World::new().await;
    let v = w.verifier().await;
    let server = argo_server(&w.api);
    let ctl = argo_controller(&w.api);
    let alice = claims("alice-sub", "alice@example.com");
    let bob = Claims {
        sub: "bob-sub".into(),
        email: "bob@example.com".into(),
        // Bob's token has no preferred_username: a merge patch leaves alice's in place.
        preferred_username: String::new(),
    };
    let run = allowed(server.submit(&alice, &suspending_workflow()).await).object;
    assert_eq!(ann(&run, "scimgate.io/submitted-by"), "alice@example.com");
    allowed(ctl.operate(&run, "Running", Some("approve")).await);
    // alice may not approve her own run, even through the UI.
    let own = refused(server.resume(&alice, &run).await);
    assert!(own.message.contains("four eyes"), "{}", own.message);
    // bob resumes it in the UI: the Argo Server updates it under its own account with bob's
    // actor labels; the creator labels still say alice.
    let resumed = allowed(server.resume(&bob, &run).await).object;
    assert_eq!(ann(&resumed, "scimgate.io/approved-by"), "bob@example.com");
    assert_eq!(
        resumed["metadata"]["labels"]["workflows.argoproj.io/creator"],
        w.alice.as_str()
    );
    // alice acts once more (a suspend), then bob stops it: only the labels bob's request set count.
    allowed(server.suspend(&alice, &run).await);
    let stopped = allowed(server.stop(&bob, &run, "Stop").await).object;
    assert_eq!(
        stopped["metadata"]["labels"]["workflows.argoproj.io/actor-preferred-username"], "alice",
        "the merge patch left alice's preferred username"
    );
    assert_eq!(ann(&stopped, "scimgate.io/cancelled-by"), "bob@example.com");
    assert_eq!(
        verified_by(&v, &stopped),
        vec![
            "submit by alice@example.com",
            "approve by bob@example.com",
            "cancel by bob@example.com",
            "update by alice@example.com"
        ]
    );
    // An Argo Server in auth-mode=server names its own service account: nobody to attribute to.
    let server_mode = Claims {
        sub: "system:serviceaccount:argo:argo-server".into(),
        email: String::new(),
        preferred_username: String::new(),
    };
    let other = allowed(server.submit(&alice, &suspending_workflow()).await).object;
    let r = refused(server.suspend(&server_mode, &other).await);
    assert!(
        r.message.contains("sets no workflows.argoproj.io/actor-email label"),
        "{}",
        r.message
    );
    // A write through its account that names no actor at all.
    let r = refused(
        w.api
            .update(&server.user, {
                let mut o = w.api.stored(&other).expect("stored");
                o["spec"]["suspend"] = json!(true);
                o
            })
            .await,
    );
    assert!(r.message.contains("without naming who acted"), "{}", r.message);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_are_matched_the_way_argo_rewrites_them() {
    let w = World::new().await;
    let pu =
        w.s.get(&format!(
            "/Groups?filter={}",
            crate::support::enc("displayName eq \"pipeline-users\"")
        ))
        .await;
    let group = pu.body["Resources"][0]["id"].as_str().unwrap_or_default().to_string();
    let long = format!(
        "{}@example.com",
        "a-very-long-mailbox-name-for-a-service-team".repeat(2)
    );
    let mut ids = Vec::new();
    for name in [
        "carol+ci@example.com",
        long.as_str(),
        "dave+ci@example.com",
        "dave-ci@example.com",
    ] {
        ids.push(w.s.create_user(name).await);
    }
    let members: Vec<Value> = ids.iter().map(|id| json!({"value": id})).collect();
    w.s.patch(
        &format!("/Groups/{group}"),
        crate::support::ops(json!([{"op": "add", "path": "members", "value": members}])),
    )
    .await;
    let server = argo_server(&w.api);
    let wf = crate::support::workflow("team-a");
    // '+' becomes '-' in the label.
    let r = allowed(server.submit(&claims("c1", "carol+ci@example.com"), &wf).await).object;
    assert_eq!(
        r["metadata"]["labels"]["workflows.argoproj.io/creator-email"],
        "carol-ci.at.example.com"
    );
    assert_eq!(ann(&r, "scimgate.io/submitted-by"), "carol+ci@example.com");
    // Past 63 characters Argo keeps the last 63.
    let r = allowed(server.submit(&claims("l1", &long), &wf).await).object;
    assert_eq!(ann(&r, "scimgate.io/submitted-by"), long.as_str());
    // Two people whose emails Argo rewrites to the same label: refused, naming both.
    let r = refused(server.submit(&claims("d1", "dave-ci@example.com"), &wf).await);
    assert!(
        r.message.contains("dave+ci@example.com")
            && r.message.contains("dave-ci@example.com")
            && r.message.contains("must name one person"),
        "{}",
        r.message
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn argo_identity_labels_are_nobody_elses_to_edit() {
    let w = World::new().await;
    let alice = kubectl(&w.api, "alice@example.com");
    let run = allowed(alice.create(&crate::support::workflow("team-a")).await).object;
    // A metadata-only edit of the creator label: denied, in every mode.
    let r = refused(
        alice
            .edit(&run, |o| {
                o["metadata"]["labels"]["workflows.argoproj.io/creator"] = json!("bob")
            })
            .await,
    );
    assert!(
        r.message
            .contains("may not change the label workflows.argoproj.io/creator"),
        "{}",
        r.message
    );
    // Actor labels naming someone else too, unless the Argo Server writes them…
    let r = refused(
        kubectl(&w.api, "bob@example.com")
            .patch_merge(
                &run,
                json!({"metadata": {"labels": {"workflows.argoproj.io/actor-email": "alice.at.example.com"}}}),
            )
            .await,
    );
    assert!(r.message.contains("workflows.argoproj.io/actor-email"), "{}", r.message);
    // …but a person naming themselves is what the Argo Server in client mode writes with their
    // own token (issue 17 §1): theirs to write.
    allowed(
        kubectl(&w.api, "bob@example.com")
            .patch_merge(
                &run,
                json!({"metadata": {"labels": {"workflows.argoproj.io/actor-email": "bob.at.example.com"}}}),
            )
            .await,
    );
    // Other labels are anyone's who may update.
    allowed(
        alice
            .patch_merge(&run, json!({"metadata": {"labels": {"team": "ml"}}}))
            .await,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stamp_pasted_where_argo_copies_it_into_runs_is_refused() {
    let w = World::new().await;
    let cron = |name: &str| {
        json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "CronWorkflow", "metadata": {"name": name, "namespace": "team-a"},
            "spec": {"schedule": "0 1 * * *", "workflowSpec": {"entrypoint": "main", "templates": [{"name": "main", "container": {"image": "busybox"}}]}}})
    };
    let alices = allowed(kubectl(&w.api, "alice@example.com").create(&cron("alices")).await).object;
    let stamp = alices["spec"]["workflowMetadata"].clone();
    assert_eq!(stamp["annotations"]["scimgate.io/submitted-by"], "alice@example.com");
    let bob = kubectl(&w.api, "bob@example.com");
    let bobs = allowed(bob.create(&cron("bobs")).await).object;
    // Pasting alice's stamp into bob's CronWorkflow: its runs would act as alice.
    let r = refused(
        bob.patch_merge(&bobs, json!({"spec": {"workflowMetadata": stamp}}))
            .await,
    );
    assert!(
        r.message
            .contains("in spec.workflowMetadata.annotations was not written by scimgate"),
        "{}",
        r.message
    );
    // On create it is stripped, wherever Argo would copy it from.
    let mut wf = crate::support::workflow("team-a");
    wf["spec"]["workflowMetadata"] = stamp.clone();
    let created = allowed(bob.create(&wf).await).object;
    let kept = created["spec"]["workflowMetadata"]["annotations"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    assert!(kept.keys().all(|k| !k.starts_with("scimgate.io/")), "{kept:?}");
    let mut nested = cron("nested");
    nested["spec"]["workflowSpec"]["workflowMetadata"] = stamp;
    let created = allowed(bob.create(&nested).await).object;
    assert_eq!(
        created["spec"]["workflowMetadata"]["annotations"]["scimgate.io/submitted-by"], "bob@example.com",
        "the CronWorkflow's own stamp"
    );
    let inner = created["spec"]["workflowSpec"]["workflowMetadata"]["annotations"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    assert!(inner.keys().all(|k| !k.starts_with("scimgate.io/")), "{inner:?}");
    // Removing its own stamp from spec.workflowMetadata only loses the inheritance: allowed.
    allowed(
        bob.patch_merge(&bobs, json!({"spec": {"workflowMetadata": null}}))
            .await,
    );
}

fn cron(name: &str) -> Value {
    json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "CronWorkflow", "metadata": {"name": name, "namespace": "team-a"},
        "spec": {"schedule": "0 1 * * *", "workflowSpec": {"entrypoint": "main", "templates": [{"name": "main", "container": {"image": "busybox"}}]}}})
}

/// A run as the Argo controller writes it (`workflow/cron/operator.go`), carrying `annotations`
/// and naming `owner` as its controller.
fn run_of(name: &str, annotations: &Value, owner: Value) -> Value {
    json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "Workflow",
        "metadata": {"name": name, "namespace": "team-a", "annotations": annotations,
            "ownerReferences": [owner]},
        "spec": {"entrypoint": "main", "templates": [{"name": "main", "container": {"image": "busybox"}}]}})
}

fn controller_ref(api_version: &str, kind: &str, name: &str, uid: &Value) -> Value {
    json!({"apiVersion": api_version, "kind": kind, "name": name, "uid": uid, "controller": true, "blockOwnerDeletion": true})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_belongs_to_the_owner_the_cluster_stores_not_to_the_stamp_it_carries() {
    let w = World::new().await;
    let ctl = argo_controller(&w.api);
    let alices = allowed(kubectl(&w.api, "alice@example.com").create(&cron("alices")).await).object;
    let bobs = allowed(kubectl(&w.api, "bob@example.com").create(&cron("bobs")).await).object;
    // A run carrying alice's stamp (what her CronWorkflow copies into its runs) whose controller
    // reference names bob's CronWorkflow: it is bob's run.
    let alice_stamp = &alices["spec"]["workflowMetadata"]["annotations"];
    assert_eq!(alice_stamp["scimgate.io/submitted-by"], "alice@example.com");
    let wf = run_of(
        "bobs-1",
        alice_stamp,
        controller_ref("argoproj.io/v1alpha1", "CronWorkflow", "bobs", &bobs["metadata"]["uid"]),
    );
    let run = allowed(w.api.create(&ctl.user, wf).await).object;
    assert_eq!(ann(&run, "scimgate.io/submitted-by"), "bob@example.com");
    assert_eq!(
        verified_by(&w.verifier().await, &run),
        vec!["submit by bob@example.com"]
    );

    // An ownerReference whose uid is not the stored CronWorkflow's (a deleted and re-created
    // name, or a made-up reference): denied.
    let wf = run_of(
        "alices-1",
        alice_stamp,
        controller_ref(
            "argoproj.io/v1alpha1",
            "CronWorkflow",
            "alices",
            &json!(uuid::Uuid::new_v4().to_string()),
        ),
    );
    let r = refused(w.api.create(&ctl.user, wf).await);
    assert!(
        r.message.contains("the stored CronWorkflow of that name has uid")
            && r.message.contains(alices["metadata"]["uid"].as_str().unwrap_or("?")),
        "{}",
        r.message
    );
    // No such owner.
    let wf = run_of(
        "gone-1",
        alice_stamp,
        controller_ref(
            "argoproj.io/v1alpha1",
            "CronWorkflow",
            "gone",
            &alices["metadata"]["uid"],
        ),
    );
    let r = refused(w.api.create(&ctl.user, wf).await);
    assert!(
        r.message.contains("its owner CronWorkflow team-a/gone does not exist"),
        "{}",
        r.message
    );
    // An owner of a kind the controller starts no runs for.
    let wf = run_of(
        "tpl-1",
        alice_stamp,
        controller_ref(
            "argoproj.io/v1alpha1",
            "WorkflowTemplate",
            "alices",
            &alices["metadata"]["uid"],
        ),
    );
    let r = refused(w.api.create(&ctl.user, wf).await);
    assert!(
        r.message
            .contains("names a WorkflowTemplate (argoproj.io/v1alpha1), but a Workflow is created for a CronWorkflow"),
        "{}",
        r.message
    );
    // A stored owner whose stamp was made for another CronWorkflow (alice's, copied whole into
    // one stored without scimgate): its stamp counts for nothing there.
    let mut copy = alices.clone();
    copy["metadata"]["name"] = json!("copy");
    copy["metadata"]["uid"] = json!(uuid::Uuid::new_v4().to_string());
    w.api.put(copy.clone());
    let wf = run_of(
        "copy-1",
        alice_stamp,
        controller_ref("argoproj.io/v1alpha1", "CronWorkflow", "copy", &copy["metadata"]["uid"]),
    );
    let r = refused(w.api.create(&ctl.user, wf).await);
    assert!(
        r.message
            .contains("the stamp on its owner CronWorkflow team-a/copy does not belong to it"),
        "{}",
        r.message
    );
    // The controller's own spawn, through the watch cache: alice's.
    let spawned = allowed(ctl.spawn(&alices, chrono::Utc::now()).await).object;
    assert_eq!(ann(&spawned, "scimgate.io/submitted-by"), "alice@example.com");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_pipeline_runs_from_one_generate_name_each_child_to_its_own_submitter() {
    let w = World::new().await;
    let pr = json!({"apiVersion": "tekton.dev/v1", "kind": "PipelineRun",
        "metadata": {"generateName": "build-", "namespace": "team-a"},
        "spec": {"pipelineRef": {"name": "build"}}});
    let alices = allowed(kubectl(&w.api, "alice@example.com").create(&pr).await).object;
    let bobs = allowed(kubectl(&w.api, "bob@example.com").create(&pr).await).object;
    assert_ne!(alices["metadata"]["name"], bobs["metadata"]["name"]);
    let ctl = tekton_controller(&w.api);
    let a = allowed(
        ctl.create_task_run(&alices, "compile", json!({"name": "compile"}))
            .await,
    )
    .object;
    let b = allowed(ctl.create_task_run(&bobs, "compile", json!({"name": "compile"})).await).object;
    assert_eq!(ann(&a, "scimgate.io/submitted-by"), "alice@example.com");
    assert_eq!(ann(&b, "scimgate.io/submitted-by"), "bob@example.com");
    // Both stamps are signed for generateName `build-`; a child of bob's run that carries alice's
    // run's annotations is still bob's: the owner the cluster stores decides.
    let bobs_name = bobs["metadata"]["name"].as_str().unwrap_or_default();
    let tr = json!({"apiVersion": "tekton.dev/v1", "kind": "TaskRun",
        "metadata": {"name": format!("{bobs_name}-test"), "namespace": "team-a",
            "annotations": alices["metadata"]["annotations"],
            "ownerReferences": [controller_ref("tekton.dev/v1", "PipelineRun", bobs_name, &bobs["metadata"]["uid"])]},
        "spec": {"taskRef": {"name": "test"}}});
    let c = allowed(w.api.create(&ctl.user, tr).await).object;
    assert_eq!(ann(&c, "scimgate.io/submitted-by"), "bob@example.com");
    assert_eq!(verified_by(&w.verifier().await, &c), vec!["submit by bob@example.com"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offboarded_mid_run_a_pipeline_run_finishes_a_schedule_stops() {
    let w = World::new().await;
    let alice = kubectl(&w.api, "alice@example.com");
    let pr = json!({"apiVersion": "tekton.dev/v1", "kind": "PipelineRun", "metadata": {"name": "release-1", "namespace": "team-a"},
        "spec": {"pipelineRef": {"name": "release"}}});
    let pr = allowed(alice.create(&pr).await).object;
    let cron = allowed(alice.create(&cron("nightly")).await).object;
    let tekton = tekton_controller(&w.api);
    allowed(tekton.create_task_run(&pr, "compile", json!({"name": "compile"})).await);
    w.deactivate(&w.alice).await;
    // Her PipelineRun was admitted: its next TaskRun still is, for her, and the record says why.
    let next = allowed(tekton.create_task_run(&pr, "test", json!({"name": "test"})).await).object;
    assert_eq!(ann(&next, "scimgate.io/submitted-by"), "alice@example.com");
    let records = w.decisions(4).await;
    let rec = records
        .iter()
        .find(|r| r.name == "release-1-test")
        .expect("the TaskRun's decision");
    assert_eq!(rec.outcome, "allowed");
    assert!(
        rec.reason
            .contains("alice@example.com, who submitted its owner PipelineRun team-a/release-1, is deactivated")
            && rec.reason.contains("whenOwnerOffboarded is continue"),
        "{}",
        rec.reason
    );
    // Her CronWorkflow starts no new run.
    let r = refused(argo_controller(&w.api).spawn(&cron, chrono::Utc::now()).await);
    assert!(
        r.message
            .contains("alice@example.com, who submitted its owner CronWorkflow team-a/nightly, is deactivated")
            && r.message.contains("whenOwnerOffboarded is stop"),
        "{}",
        r.message
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offboarded_mid_run_the_other_way_round_when_the_policy_says_so() {
    // Globally stop; the Argo controller's own choice (continue) overrides it.
    let policy = POLICY
        .replace(
            "  rewriteArgoCreatorLabels: true\n",
            "  rewriteArgoCreatorLabels: true\n  whenOwnerOffboarded: stop\n",
        )
        .replace(
            "    - serviceAccount: argo:argo\n      via: ownerStamp\n",
            "    - serviceAccount: argo:argo\n      via: ownerStamp\n      whenOwnerOffboarded: continue\n",
        );
    assert!(policy.contains("whenOwnerOffboarded: stop") && policy.contains("whenOwnerOffboarded: continue"));
    let w = World::with(&policy, "").await;
    let alice = kubectl(&w.api, "alice@example.com");
    let pr = json!({"apiVersion": "tekton.dev/v1", "kind": "PipelineRun", "metadata": {"name": "release-1", "namespace": "team-a"},
        "spec": {"pipelineRef": {"name": "release"}}});
    let pr = allowed(alice.create(&pr).await).object;
    let cron = allowed(alice.create(&cron("nightly")).await).object;
    let tekton = tekton_controller(&w.api);
    allowed(tekton.create_task_run(&pr, "compile", json!({"name": "compile"})).await);
    w.deactivate(&w.alice).await;
    let r = refused(tekton.create_task_run(&pr, "test", json!({"name": "test"})).await);
    assert!(
        r.message.contains("is deactivated") && r.message.contains("whenOwnerOffboarded is stop"),
        "{}",
        r.message
    );
    let run = allowed(argo_controller(&w.api).spawn(&cron, chrono::Utc::now()).await).object;
    assert_eq!(ann(&run, "scimgate.io/submitted-by"), "alice@example.com");
}
