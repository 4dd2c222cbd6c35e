//! Argo and Tekton as teams really run them (issue 17), through the API-server emulator and its
//! actors, each playing what upstream writes.

use crate::actors::{argo_controller, garbage_collector, kubectl, tekton_controller};
use crate::support::{allowed, ann, refused, workflow, World};
use serde_json::{json, Value};

/// A Workflow parked at a Suspend gate, with a finalizer of another tool's so a delete stays
/// pending.
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
    let kubeconfig = w.s.dir.path().join("kubeconfig");
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
    let (code, out, err) = crate::support::scimgate(&[
        "audit".as_ref(),
        "who".as_ref(),
        "--kubeconfig".as_ref(),
        kubeconfig.as_os_str(),
        "--data-dir".as_ref(),
        dir.path().as_os_str(),
        target.as_ref(),
    ]);
    assert_eq!(code, 0, "{out}{err}");
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
