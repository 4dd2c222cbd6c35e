//! Ten thousand stamped objects behind one person, for `bench/offboarding.sh`: the emulator and
//! its HTTP face for a scimgate the script started (release build, `--kubeconfig` naming this
//! face). A hundred Workflows are created as alice through scimgate's webhooks from a
//! `generateName`, each stamped; each is then stored 99 times more under names the API server
//! could have generated from it and uids of their own (a submit stamp binds the `generateName`,
//! not the uid, and the sweep verifies every stamp it acts on: the hundred distinct stamps are
//! checked ten thousand times). All are pending (not started), so with `mode: act` each is
//! cancelled — a PATCH through the emulator's admission chain and scimgate's webhooks. The
//! face's counters are written to `counters` (`events lists patches`) until the script says
//! stop. Not a test: ignored, run by the script.

use crate::actors::kubectl;
use crate::apiserver::ApiServer;
use crate::kube_face::KubeFace;
use crate::owner_bench::{created, cron_workflow, wait_for, wait_for_path};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::time::Duration;

/// Stamped through the webhooks, and copies of each.
const STAMPED: usize = 100;
const COPIES: usize = 100;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run by bench/offboarding.sh"]
async fn ten_thousand_objects_of_one_person() {
    let out = PathBuf::from(std::env::var("SCIMGATE_BENCH_OUT").expect("SCIMGATE_BENCH_OUT is not set"));
    let mut face = KubeFace::bind().await;
    face.write_kubeconfig(&out.join("kubeconfig"));
    let admission = wait_for(&out.join("admission")).await;
    let ca = std::fs::read(wait_for_path(&out.join("ca")).await).expect("CA");
    let api = ApiServer::at(admission.trim(), crate::support::client_for(&ca));
    face.serve(&api);

    let alice = kubectl(&api, "alice@example.com");
    let spec: Value = cron_workflow()["spec"]["workflowSpec"].clone();
    for i in 0..STAMPED {
        let wf = json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "Workflow",
            "metadata": {"generateName": format!("run-{i}-"), "namespace": "ml-team"}, "spec": spec});
        let stamped = created(alice.create(&wf).await);
        // The original is one of its COPIES.
        for c in 1..COPIES {
            let mut copy = stamped.clone();
            copy["metadata"]["name"] = json!(format!("run-{i}-c{c:04}"));
            copy["metadata"]["uid"] = json!(uuid::Uuid::new_v4().to_string());
            copy["metadata"]["resourceVersion"] = Value::Null;
            api.put(copy);
        }
    }
    std::fs::write(out.join("ready"), (STAMPED * COPIES).to_string()).expect("ready");
    // The script restarts scimgate, which then listens elsewhere: the webhooks follow it.
    let moved = wait_for(&out.join("admission2")).await;
    face.write_through(&api.calling_at(moved.trim(), crate::support::client_for(&ca)));
    std::fs::write(out.join("moved"), "").expect("moved");
    while !out.join("stop").exists() {
        let counters = format!("{} {} {}", face.event_count(), face.selected_lists(), face.patches());
        std::fs::write(out.join("counters.tmp"), counters).expect("counters");
        std::fs::rename(out.join("counters.tmp"), out.join("counters")).expect("counters");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
