//! Runs through their lives as people and controllers drive them on a cluster, every write through
//! the API-server emulator: each stamp must survive the API server's way of calling us, compose
//! with the earlier ones, and verify at the end.

use crate::actors::{argo_cd, argo_controller, argo_server, claims, kubectl, tekton_controller};
use crate::apiserver::person;
use crate::support::{allowed, ann, ours, refused, verified_by, waited_on, workflow, World, POLICY};
use serde_json::{json, Value};

fn suspending_workflow() -> Value {
    json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "Workflow",
        "metadata": {"generateName": "release-", "namespace": "team-a"},
        "spec": {"entrypoint": "main", "templates": [
            {"name": "main", "steps": [[{"name": "approve", "template": "approve"}], [{"name": "ship", "template": "ship"}]]},
            {"name": "approve", "suspend": {}},
            {"name": "ship", "container": {"image": "busybox"}}]}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workflow_submit_suspend_resume_stop() {
    let w = World::new().await;
    let v = w.verifier().await;
    let alice = kubectl(&w.api, "alice@example.com");
    let bob = kubectl(&w.api, "bob@example.com");
    let created = allowed(alice.create(&suspending_workflow()).await);
    let wf = created.object;
    let name = wf["metadata"]["name"].as_str().unwrap_or_default().to_string();
    assert!(
        name.starts_with("release-") && name.len() == "release-".len() + 5,
        "{name}"
    );
    // The mutating calls saw no name yet; the validating call saw the generated one; all allowed,
    // each with a uid of its own.
    let seen: Vec<(&str, &str, &str, bool)> = created
        .calls
        .iter()
        .filter(|c| c.webhook.ends_with(".scimgate.io"))
        .map(|c| (c.webhook.as_str(), c.operation.as_str(), c.name.as_str(), c.allowed))
        .collect();
    assert_eq!(
        seen,
        vec![
            ("stamp.scimgate.io", "CREATE", "", true),
            ("stamp.scimgate.io", "CREATE", "", true),
            ("policy.scimgate.io", "CREATE", name.as_str(), true)
        ]
    );
    // The controller starts it and parks it at the Suspend node: full Updates of the Workflow under
    // its own account, which never wait on us (its label changes reach the fail-open webhook).
    let ctl = argo_controller(&w.api);
    let running = allowed(ctl.operate(&wf, "Running", Some("approve")).await);
    assert_eq!(waited_on(&running), 0, "{:?}", running.calls);
    // alice suspends the whole run: a spec change, an update.
    let suspended = allowed(alice.patch_merge(&wf, json!({"spec": {"suspend": true}})).await).object;
    assert_eq!(ann(&suspended, "scimgate.io/updated-by"), "alice@example.com");
    // She may not resume her own run under four eyes; bob may.
    let own = refused(alice.patch_merge(&wf, json!({"spec": {"suspend": null}})).await);
    assert!(own.message.contains("four eyes"), "{}", own.message);
    let resumed = allowed(bob.patch_merge(&wf, json!({"spec": {"suspend": null}})).await).object;
    assert_eq!(ann(&resumed, "scimgate.io/approved-by"), "bob@example.com");
    // The Suspend node is approved the kubectl way too: the node marked Succeeded by hand.
    let node = format!("{name}-approve");
    let own = refused(
        alice
            .edit(&wf, |o| o["status"]["nodes"][&node]["phase"] = json!("Succeeded"))
            .await,
    );
    assert!(own.message.contains("four eyes"), "{}", own.message);
    let node_approved = allowed(
        bob.edit(&wf, |o| o["status"]["nodes"][&node]["phase"] = json!("Succeeded"))
            .await,
    )
    .object;
    assert_ne!(
        ann(&node_approved, "scimgate.io/approval-attestation"),
        ann(&resumed, "scimgate.io/approval-attestation"),
        "a second approval is a new stamp"
    );
    allowed(ctl.operate(&wf, "Running", None).await);
    // alice stops it: a merge patch of spec.shutdown, a cancel.
    let stopped = allowed(alice.patch_merge(&wf, json!({"spec": {"shutdown": "Stop"}})).await).object;
    assert_eq!(ann(&stopped, "scimgate.io/cancelled-by"), "alice@example.com");
    assert_eq!(
        verified_by(&v, &w.api.stored(&wf).expect("stored")),
        vec![
            "submit by alice@example.com",
            "approve by bob@example.com",
            "cancel by alice@example.com",
            "update by alice@example.com"
        ]
    );
    // Through the Argo Server: alice submits and terminates a run in the UI.
    let server = argo_server(&w.api);
    let c = claims("alice-sub", "alice@example.com");
    let run = allowed(server.submit(&c, &workflow("team-a")).await).object;
    assert_eq!(
        run["metadata"]["labels"]["workflows.argoproj.io/creator"],
        w.alice.as_str(),
        "rewritten to the verified person"
    );
    let ended = allowed(server.stop(&c, &run, "Terminate").await).object;
    assert_eq!(ended["metadata"]["labels"]["workflows.argoproj.io/action"], "Terminate");
    assert_eq!(
        verified_by(&v, &ended),
        vec!["submit by alice@example.com", "cancel by alice@example.com"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workflow_template_edits_by_the_owner_argo_cd_and_others() {
    let w = World::new().await;
    let v = w.verifier().await;
    let manifest = |image: &str| {
        json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "WorkflowTemplate",
            "metadata": {"name": "build", "namespace": "team-a"},
            "spec": {"entrypoint": "main", "templates": [{"name": "main", "container": {"image": image}}]}})
    };
    let alice = kubectl(&w.api, "alice@example.com");
    let created = allowed(alice.apply(&manifest("busybox:1")).await).object;
    assert_eq!(ann(&created, "scimgate.io/submitted-by"), "alice@example.com");
    // `kubectl apply` of a changed spec: a three-way merge patch, an UPDATE.
    let edited = allowed(alice.apply(&manifest("busybox:2")).await).object;
    assert_eq!(edited["spec"]["templates"][0]["container"]["image"], "busybox:2");
    assert_eq!(ann(&edited, "scimgate.io/updated-by"), "alice@example.com");
    assert_eq!(edited["metadata"]["generation"], 2);
    // Again within a second: a new update stamp, not the last one kept.
    let again = allowed(alice.apply(&manifest("busybox:3")).await).object;
    assert_ne!(
        ann(&again, "scimgate.io/update-attestation"),
        ann(&edited, "scimgate.io/update-attestation")
    );
    assert_eq!(
        verified_by(&v, &again),
        vec!["submit by alice@example.com", "update by alice@example.com"]
    );
    // Someone in no group may not change it.
    let mallory = refused(kubectl(&w.api, "mallory@example.com").apply(&manifest("evil:1")).await);
    assert!(
        mallory.message.contains("may not update WorkflowTemplate"),
        "{}",
        mallory.message
    );
    // Argo CD syncs the template from git.
    let synced = allowed(argo_cd(&w.api).apply(&manifest("busybox:4")).await).object;
    assert_eq!(
        ann(&synced, "scimgate.io/updated-by"),
        "system:serviceaccount:argocd:argocd-application-controller"
    );
    assert_eq!(
        verified_by(&v, &synced),
        vec![
            "submit by alice@example.com",
            "update by system:serviceaccount:argocd:argocd-application-controller"
        ]
    );
    // A metadata-only apply (a label) is no action: nothing of ours changes.
    let mut labelled = manifest("busybox:4");
    labelled["metadata"]["labels"] = json!({"team": "ml"});
    let l = allowed(alice.apply(&labelled).await).object;
    assert_eq!(
        ann(&l, "scimgate.io/update-attestation"),
        ann(&synced, "scimgate.io/update-attestation")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cron_workflow_edit_and_runs_long_after_the_stamp() {
    // Stamps count as this request's for one second only: the runs come later than that.
    let w = World::with_config("stampMaxAgeSeconds: 1\n").await;
    let v = w.verifier().await;
    let alice = kubectl(&w.api, "alice@example.com");
    let cron = json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "CronWorkflow", "metadata": {"name": "nightly", "namespace": "team-a"},
        "spec": {"schedule": "0 1 * * *", "workflowSpec": {"entrypoint": "main", "templates": [{"name": "main", "container": {"image": "busybox"}}]}}});
    let cron = allowed(alice.create(&cron).await).object;
    let edited = allowed(
        alice
            .patch_merge(&cron, json!({"spec": {"schedule": "0 2 * * *"}}))
            .await,
    )
    .object;
    assert_eq!(ann(&edited, "scimgate.io/updated-by"), "alice@example.com");
    // The cron operator writes back with merge patches, spec untouched: not ours to judge.
    let ctl = argo_controller(&w.api);
    let status = allowed(
        w.api
            .patch(
                &ctl.user,
                &cron,
                crate::apiserver::Patch::Merge(json!({"status": {"phase": "Active", "lastScheduledTime": "2026-12-01T02:00:00Z"},
                    "metadata": {"annotations": {"cronworkflows.argoproj.io/last-used-schedule": "CRON_TZ= 0 2 * * *"}}})),
            )
            .await,
    );
    assert_eq!(waited_on(&status), 0);
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    let run = allowed(ctl.spawn(&cron, chrono::Utc::now()).await).object;
    assert_eq!(ann(&run, "scimgate.io/submitted-by"), "alice@example.com");
    assert_eq!(ann(&run, "scimgate.io/submitted-by-id"), w.alice.as_str());
    assert_eq!(verified_by(&v, &run), vec!["submit by alice@example.com"]);
    // alice copying the CronWorkflow's (old) stamp onto a Workflow of her own gets a new one.
    let mut copy = workflow("team-a");
    copy["metadata"]["annotations"] = cron["spec"]["workflowMetadata"]["annotations"].clone();
    let own = allowed(alice.create(&copy).await).object;
    assert_ne!(
        ann(&own, "scimgate.io/attestation"),
        ann(&cron, "scimgate.io/attestation")
    );
    assert_eq!(verified_by(&v, &own), vec!["submit by alice@example.com"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipeline_run_pending_approved_children_and_cancel() {
    let w = World::new().await;
    let v = w.verifier().await;
    let alice = kubectl(&w.api, "alice@example.com");
    let pr = json!({"apiVersion": "tekton.dev/v1", "kind": "PipelineRun",
        "metadata": {"name": "deploy-7", "namespace": "team-a"},
        "spec": {"pipelineRef": {"name": "deploy"}, "status": "PipelineRunPending",
                 "taskRunTemplate": {"serviceAccountName": "deployer"}}});
    let pr = allowed(alice.create(&pr).await).object;
    assert_eq!(
        pr["spec"]["timeouts"]["pipeline"], "1h0m0s",
        "Tekton's defaulting webhook ran"
    );
    let ctl = tekton_controller(&w.api);
    let pending = allowed(
        ctl.set_status(
            &pr,
            json!({"conditions": [{"type": "Succeeded", "status": "Unknown", "reason": "PipelineRunPending"}]}),
        )
        .await,
    );
    assert_eq!(ours(&pending), 0, "status writes do not reach us");
    let approved = allowed(
        kubectl(&w.api, "bob@example.com")
            .patch_json(&pr, json!([{"op": "remove", "path": "/spec/status"}]))
            .await,
    )
    .object;
    assert_eq!(ann(&approved, "scimgate.io/approved-by"), "bob@example.com");
    allowed(ctl.set_status(&pr, json!({"conditions": [{"type": "Succeeded", "status": "Unknown", "reason": "Running"}], "startTime": "2026-12-01T00:00:00Z"})).await);
    assert_eq!(waited_on(&allowed(ctl.sync_metadata(&pr).await)), 0);
    let mut children = Vec::new();
    for task in ["build", "push"] {
        let tr = allowed(ctl.create_task_run(&pr, task, json!({"name": task})).await).object;
        assert_eq!(tr["metadata"]["name"], format!("deploy-7-{task}"));
        assert_eq!(ann(&tr, "scimgate.io/submitted-by"), "alice@example.com");
        assert_eq!(tr["metadata"]["ownerReferences"][0]["kind"], "PipelineRun");
        assert_eq!(verified_by(&v, &tr), vec!["submit by alice@example.com"]);
        let status = allowed(
            ctl.set_status(&tr, json!({"podName": format!("deploy-7-{task}-pod")}))
                .await,
        );
        assert_eq!(ours(&status), 0);
        children.push(tr);
    }
    // alice cancels; the controller then patches every child's spec.status (a JSON Patch).
    let cancelled = allowed(alice.patch_merge(&pr, json!({"spec": {"status": "Cancelled"}})).await).object;
    assert_eq!(ann(&cancelled, "scimgate.io/cancelled-by"), "alice@example.com");
    for tr in &children {
        let c = allowed(ctl.cancel_child(tr).await);
        assert!(
            ours(&c) > 0 && waited_on(&c) == 0,
            "a spec change by the controller reaches us, and does not wait on us: {:?}",
            c.calls
        );
        assert_eq!(c.object["spec"]["status"], "TaskRunCancelled");
        assert_eq!(
            verified_by(&v, &c.object),
            vec!["submit by alice@example.com"],
            "the child's stamp is kept"
        );
    }
    assert_eq!(
        verified_by(&v, &w.api.stored(&pr).expect("stored")),
        vec![
            "submit by alice@example.com",
            "approve by bob@example.com",
            "cancel by alice@example.com"
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copied_stamp_never_survives_create() {
    let v_world = World::new().await;
    let original = allowed(
        kubectl(&v_world.api, "alice@example.com")
            .create(&workflow("team-a"))
            .await,
    )
    .object;
    let copied = |ns: &str| {
        let mut wf = workflow(ns);
        wf["metadata"]["generateName"] = json!("copy-");
        wf["metadata"]["annotations"] = original["metadata"]["annotations"].clone();
        wf["metadata"]["labels"] = original["metadata"]["labels"].clone();
        wf
    };
    let check = |obj: &Value, who: &str| {
        assert_eq!(ann(obj, "scimgate.io/submitted-by"), who);
        assert_ne!(
            ann(obj, "scimgate.io/attestation"),
            ann(&original, "scimgate.io/attestation")
        );
    };
    // Enforce: bob may submit, and the object says bob.
    let bob = allowed(kubectl(&v_world.api, "bob@example.com").create(&copied("team-a")).await).object;
    check(&bob, "bob@example.com");
    // Enforce, someone not allowed: denied, nothing stored.
    refused(
        kubectl(&v_world.api, "mallory@example.com")
            .create(&copied("team-a"))
            .await,
    );
    // A dry-run namespace: allowed with a warning, and the stamp names mallory.
    let dry_ns = allowed(
        kubectl(&v_world.api, "mallory@example.com")
            .create(&copied("legacy-billing"))
            .await,
    )
    .object;
    check(&dry_ns, "mallory@example.com");
    // A policy in dry-run mode.
    let dry = World::with(&POLICY.replace("mode: enforce", "mode: dry-run"), "").await;
    let mut onto = copied("team-a");
    onto["metadata"]["annotations"]["scimgate.io/submitted-by-id"] = json!(dry.alice);
    let m = allowed(kubectl(&dry.api, "mallory@example.com").create(&onto).await).object;
    check(&m, "mallory@example.com");
    assert!(ann(&m, "scimgate.io/decision")
        .as_str()
        .is_some_and(|d| d.starts_with("dry-run-deny")));
    // Someone unknown to the IdP, in dry-run: nothing of ours is kept (there is no one to name).
    let unknown = crate::apiserver::User {
        username: "oidc:contractor@example.com".into(),
        groups: vec!["system:authenticated".into()],
    };
    let u = allowed(dry.api.create(&unknown, copied("team-a")).await).object;
    assert!(
        u["metadata"]["annotations"]
            .as_object()
            .into_iter()
            .flatten()
            .all(|(k, _)| !k.starts_with("scimgate.io/")),
        "{}",
        u["metadata"]
    );
    assert!(u["metadata"]["labels"]
        .as_object()
        .into_iter()
        .flatten()
        .all(|(k, _)| !k.starts_with("scimgate.io/")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stamp_older_than_the_limit_is_replaced_on_a_new_create() {
    let w = World::with_config("stampMaxAgeSeconds: 1\n").await;
    let alice = kubectl(&w.api, "alice@example.com");
    let mut wf = workflow("team-a");
    wf["metadata"].as_object_mut().map(|m| m.remove("generateName"));
    wf["metadata"]["name"] = json!("train-1");
    let first = allowed(alice.create(&wf).await).object;
    // A backup restored later: `kubectl get -o yaml`, delete, and create from the backup.
    let mut backup = first.clone();
    for k in ["uid", "resourceVersion", "creationTimestamp", "generation"] {
        backup["metadata"].as_object_mut().map(|m| m.remove(k));
    }
    allowed(w.api.delete(&person("alice@example.com"), &first).await);
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    let restored = allowed(alice.create(&backup).await).object;
    assert_ne!(
        ann(&restored, "scimgate.io/attestation"),
        ann(&first, "scimgate.io/attestation"),
        "the old stamp was replaced"
    );
    assert_ne!(
        ann(&restored, "scimgate.io/submitted-at"),
        ann(&first, "scimgate.io/submitted-at")
    );
    let v = w.verifier().await;
    assert_eq!(verified_by(&v, &restored), vec!["submit by alice@example.com"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_generate_name_longer_than_the_api_server_keeps() {
    let w = World::new().await;
    let mut wf = workflow("team-a");
    let long = format!(
        "{}-",
        "nightly-feature-store-backfill-for-the-ml-platform-team".repeat(2)
    );
    assert!(long.len() > 58);
    wf["metadata"]["generateName"] = json!(long);
    let r = allowed(kubectl(&w.api, "alice@example.com").create(&wf).await);
    let name = r.object["metadata"]["name"].as_str().unwrap_or_default();
    assert_eq!(name.len(), 63, "{name}");
    assert!(name.starts_with(&long[..58]));
    let v = w.verifier().await;
    assert_eq!(verified_by(&v, &r.object), vec!["submit by alice@example.com"]);
    // Dry run on the server: the same answer, nothing stored, nothing recorded.
    let dry = allowed(kubectl(&w.api, "alice@example.com").create_dry_run(&wf).await);
    assert_eq!(verified_by(&v, &dry.object), vec!["submit by alice@example.com"]);
    let records = w.decisions(1).await;
    assert_eq!(records.len(), 1, "{records:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registration_decides_what_reaches_us_and_an_unreachable_webhook_fails_closed() {
    let w = World::new().await;
    // The namespaceSelector in manifests/base keeps kube-system and scimgate's own namespace out.
    let r = allowed(
        kubectl(&w.api, "mallory@example.com")
            .create(&workflow("kube-system"))
            .await,
    );
    assert_eq!(ours(&r), 0, "{:?}", r.calls);
    // Kinds that are not ours never reach us.
    let task = json!({"apiVersion": "tekton.dev/v1", "kind": "Task", "metadata": {"name": "t", "namespace": "team-a"},
        "spec": {"steps": [{"name": "s", "image": "busybox"}]}});
    let r = allowed(kubectl(&w.api, "mallory@example.com").create(&task).await);
    assert_eq!(ours(&r), 0);
    // With scimgate down, `failurePolicy: Fail` refuses every run it would judge.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    drop(listener);
    let down = crate::apiserver::ApiServer::at(&format!("https://localhost:{port}"), w.s.client.clone());
    let e = refused(down.create(&person("alice@example.com"), workflow("team-a")).await);
    assert_eq!(e.code, 500);
    assert!(
        e.message
            .starts_with("Internal error occurred: failed calling webhook \"stamp.scimgate.io\""),
        "{}",
        e.message
    );
}
