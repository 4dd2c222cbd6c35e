//! The run a controller creates, for `bench/owner_lookup.sh`: the emulator and its HTTP face for a
//! scimgate the script started (release build, `--kubeconfig` naming this face), alice's
//! CronWorkflow created through its webhooks, and the reviews of the Workflow the Argo controller
//! spawns from it written out twice — once while the owner is in scimgate's watch cache (a hit),
//! once for an owner the cache has not seen (a miss: the face holds its watches, the CronWorkflow
//! is deleted and created again under a new uid, so each review costs scimgate one GET). Not a
//! test: ignored, run by the script, and it serves the face until the script says stop.

use crate::actors::{argo_controller, kubectl};
use crate::apiserver::ApiServer;
use crate::kube_face::KubeFace;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run by bench/owner_lookup.sh"]
async fn owner_lookup_bodies() {
    let out = PathBuf::from(std::env::var("SCIMGATE_BENCH_OUT").expect("SCIMGATE_BENCH_OUT is not set"));
    let mut face = KubeFace::bind().await;
    face.write_kubeconfig(&out.join("kubeconfig"));
    // The script starts scimgate with that kubeconfig and says where it listens.
    let admission = wait_for(&out.join("admission")).await;
    let ca = std::fs::read(wait_for_path(&out.join("ca")).await).expect("CA");
    let mut api = ApiServer::at(admission.trim(), crate::support::client_for(&ca));
    face.serve(&api);
    api.record = true;

    let alice = kubectl(&api, "alice@example.com");
    let cron = cron_workflow();
    let first = created(alice.create(&cron).await);
    let ctl = argo_controller(&api);
    until_cached(&face, &first).await;
    write_spawn(&api, &ctl, &first, &out, "hit", 0).await;

    // The cache keeps the first CronWorkflow; the second, of the same name, only a GET finds.
    face.hold_watches();
    created(alice.delete(&first).await);
    let second = created(alice.create(&cron).await);
    assert_ne!(first["metadata"]["uid"], second["metadata"]["uid"]);
    write_spawn(&api, &ctl, &second, &out, "miss", 1).await;

    std::fs::write(out.join("ready"), "").expect("ready");
    // Serve the face, and count its GETs, until the script is done.
    while !out.join("stop").exists() {
        std::fs::write(out.join("gets"), face.gets().to_string()).expect("gets");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The bench workflow's spec, scheduled nightly in `ml-team` (alice's team may submit there).
pub fn cron_workflow() -> Value {
    let sample: Value = serde_json::from_slice(
        &std::fs::read(crate::apiserver::corpus().join("../bench/admission-workflow.json")).expect("bench body"),
    )
    .expect("json");
    json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "CronWorkflow",
        "metadata": {"name": "nightly", "namespace": "ml-team"},
        "spec": {"schedule": "0 1 * * *", "workflowSpec": sample["request"]["object"]["spec"]}})
}

pub fn created(o: crate::apiserver::Outcome) -> Value {
    match o {
        Ok(w) => w.object,
        Err(e) => panic!("refused: {e:?}"),
    }
}

/// The controller's spawn of `cron`, scheduled `minutes` from now (a name of its own), its two
/// webhook reviews written as `<mode>-mutate.json` and `<mode>-validate.json`.
async fn write_spawn(
    api: &ApiServer,
    ctl: &crate::actors::ArgoController<'_>,
    cron: &Value,
    out: &Path,
    mode: &str,
    minutes: i64,
) {
    api.sent.lock().expect("sent").clear();
    let at = chrono::Utc::now() + chrono::Duration::minutes(minutes);
    created(ctl.spawn(cron, at).await);
    let sent = api.sent.lock().expect("sent").clone();
    for (webhook, hook) in [("stamp.scimgate.io", "mutate"), ("policy.scimgate.io", "validate")] {
        let (_, review) = sent.iter().find(|(w, _)| w == webhook).expect("called");
        std::fs::write(out.join(format!("{mode}-{hook}.json")), review.to_string()).expect("write");
    }
}

/// Until scimgate's reflector has what the face stored for `obj` (its resource version watched).
async fn until_cached(face: &KubeFace, obj: &Value) {
    let rv: u64 = obj["metadata"]["resourceVersion"]
        .as_str()
        .and_then(|v| v.parse().ok())
        .expect("resource version");
    crate::support::until(Duration::from_secs(60), async || face.watched() >= rv)
        .await
        .expect("scimgate watches the face");
    // The reflector applies what it received a moment after.
    tokio::time::sleep(Duration::from_secs(1)).await;
}

pub async fn wait_for(path: &Path) -> String {
    std::fs::read_to_string(wait_for_path(path).await).expect("read")
}

pub async fn wait_for_path(path: &Path) -> PathBuf {
    crate::support::until(Duration::from_secs(600), async || path.exists())
        .await
        .unwrap_or_else(|| panic!("{} never appeared", path.display()));
    path.to_path_buf()
}
