//! Offboarding through the emulator (issue 19): when SCIM deactivates a person, scimgate lists
//! what their verified stamp names through the API server's HTTP face, and records and announces
//! what it would do (`report`) or does (`act`: PATCHes through the face, so through the
//! emulator's admission chain and scimgate's own webhooks, like anyone's write).

use crate::actors::{argo_controller, kubectl, tekton_controller};
use crate::support::{allowed, World};
use serde_json::{json, Value};
use std::time::Duration;

fn cron(name: &str) -> Value {
    json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "CronWorkflow", "metadata": {"name": name, "namespace": "team-a"},
        "spec": {"schedule": "0 1 * * *", "workflowSpec": {"entrypoint": "main", "templates": [{"name": "main", "container": {"image": "busybox"}}]}}})
}

fn workflow(name: &str) -> Value {
    json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "Workflow", "metadata": {"name": name, "namespace": "team-a"},
        "spec": {"entrypoint": "main", "templates": [{"name": "main", "container": {"image": "busybox"}}]}})
}

fn pending_pipeline_run(name: &str) -> Value {
    json!({"apiVersion": "tekton.dev/v1", "kind": "PipelineRun", "metadata": {"name": name, "namespace": "team-a"},
        "spec": {"pipelineRef": {"name": "deploy"}, "status": "PipelineRunPending"}})
}

/// The Events the face holds for the object named `name`.
fn events_of(w: &World, name: &str) -> Vec<Value> {
    w.kube
        .events()
        .into_iter()
        .filter(|e| e["involvedObject"]["name"] == name)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deactivated_persons_schedule_waiting_and_running_runs_are_reported_and_left_unchanged() {
    let w = World::new().await;
    let alice = kubectl(&w.api, "alice@example.com");
    let argo = argo_controller(&w.api);
    let tekton = tekton_controller(&w.api);
    let nightly = allowed(alice.create(&cron("nightly")).await).object;
    let pr = allowed(alice.create(&pending_pipeline_run("deploy-1")).await).object;
    allowed(
        tekton
            .set_status(
                &pr,
                json!({"conditions": [{"type": "Succeeded", "status": "Unknown", "reason": "PipelineRunPending"}]}),
            )
            .await,
    );
    let gated = allowed(alice.create(&workflow("gated")).await).object;
    allowed(argo.operate(&gated, "Running", Some("approve")).await);
    let running = allowed(alice.create(&workflow("running")).await).object;
    allowed(argo.operate(&running, "Running", None).await);
    let finished = allowed(alice.create(&workflow("finished")).await).object;
    allowed(argo.operate(&finished, "Succeeded", None).await);
    // Bob's run, and a run carrying alice's label without her stamp (anyone who can write an
    // object can set a label): neither is hers to sweep.
    let bobs = allowed(kubectl(&w.api, "bob@example.com").create(&workflow("bobs")).await).object;
    let mut forged = workflow("forged");
    forged["metadata"]["uid"] = json!(uuid::Uuid::new_v4().to_string());
    forged["metadata"]["labels"] = json!({"scimgate.io/submitted-by-id": w.alice});
    w.api.put(forged);
    // Alice's schedule copied whole, stamp and label, under another name: the stamp was made for
    // another object.
    let mut copied = w.api.stored(&nightly).expect("stored");
    copied["metadata"]["name"] = json!("copied");
    copied["metadata"]["uid"] = json!(uuid::Uuid::new_v4().to_string());
    w.api.put(copied);
    let before: Vec<Value> = [&nightly, &pr, &gated, &running, &finished, &bobs]
        .iter()
        .map(|o| w.api.stored(o).expect("stored"))
        .collect();

    w.deactivate(&w.alice).await;
    // Four live objects and the finished one each get their Event.
    let all = crate::support::until(Duration::from_secs(20), async || w.kube.events().len() >= 5).await;
    assert!(all.is_some(), "events: {:#?}", w.kube.events());
    let said = |name: &str| {
        let e = events_of(&w, name);
        assert_eq!(e.len(), 1, "{name}: {e:#?}");
        assert_eq!(e[0]["reason"], "Offboarded");
        e[0]["message"].as_str().unwrap_or_default().to_string()
    };
    // When: the SCIM record's lastModified, the deactivation.
    assert!(
        said("nightly").starts_with("alice@example.com was deactivated through SCIM at 20"),
        "{}",
        said("nightly")
    );
    assert!(said("nightly").contains("CronWorkflow is scheduled: it would be suspended (offboarding.mode is report)"));
    assert!(said("deploy-1").contains("PipelineRun is pending: it would be cancelled"));
    assert!(said("gated").contains("Workflow is pending: it would be cancelled"));
    assert!(said("running").contains("Workflow is running: left as it is"));
    assert!(said("finished").contains("Workflow is done: left as it is"));
    assert!(events_of(&w, "bobs").is_empty() && events_of(&w, "forged").is_empty());
    assert!(events_of(&w, "copied").is_empty());
    // Nothing changed in the cluster.
    for (b, o) in before.iter().zip([&nightly, &pr, &gated, &running, &finished, &bobs]) {
        assert_eq!(b, &w.api.stored(o).expect("stored"), "{}", o["metadata"]["name"]);
    }
    // One decision record per object, in the log, under alice.
    let records = crate::support::until(Duration::from_secs(10), async || offboard_records(&w).await.len() >= 5).await;
    assert!(records.is_some());
    assert_eq!(
        outcomes(&w).await,
        [
            ("deploy-1", "would-cancel"),
            ("finished", "kept"),
            ("gated", "would-cancel"),
            ("nightly", "would-suspend"),
            ("running", "kept"),
        ]
        .map(|(a, b)| (a.to_string(), b.to_string()))
    );
    // `audit offboarding` through the audit API: the departure, each object, what is left running.
    let token = w.s.audit_token();
    let known = crate::support::until(Duration::from_secs(10), async || {
        let url = w.s.base.replace("/scim/v2", "/api/v1/decisions?limit=1");
        w.s.client
            .get(url)
            .bearer_auth(&token)
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
    })
    .await;
    assert!(known.is_some(), "the server never learnt the audit token");
    let text = audit_offboarding(&w, &token, "alice@example.com", "text");
    assert!(
        text.starts_with("alice@example.com was deactivated through SCIM"),
        "{text}"
    );
    assert!(text.contains("(offboarding.mode report), 5 object(s)"), "{text}");
    for line in [
        "CronWorkflow            team-a/nightly                           would-suspend  offboarding.cronWorkflows: suspend",
        "PipelineRun             team-a/deploy-1                          would-cancel   offboarding.pendingRuns: cancel",
        "Workflow                team-a/running                           kept           offboarding.runningRuns: keep",
        "Workflow                team-a/finished                          kept           -",
    ] {
        assert!(text.contains(line), "{line}\n{text}");
    }
    assert!(
        text.contains("running when swept, left to finish: Workflow team-a/running"),
        "{text}"
    );
    let json: Value = serde_json::from_str(&audit_offboarding(&w, &token, "alice@example.com", "json")).expect("json");
    assert_eq!(json["objects"].as_array().map(Vec::len), Some(5));
    assert_eq!(
        json["leftRunning"],
        json!([{"kind": "Workflow", "namespace": "team-a", "name": "running"}])
    );
    assert!(audit_offboarding(&w, &token, "mallory@example.com", "text")
        .starts_with("no offboarding records for mallory@example.com"));
    // Bob leaving later sweeps his run only: alice's are not reported twice.
    w.deactivate(&w.bob).await;
    let bob = crate::support::until(Duration::from_secs(20), async || !events_of(&w, "bobs").is_empty()).await;
    assert!(bob.is_some());
    assert_eq!(offboard_records(&w).await.len(), 5);
    assert_eq!(w.kube.events().len(), 6);
}

/// (object name, outcome) of alice's offboarding records, by name.
async fn outcomes(w: &World) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = offboard_records(w)
        .await
        .into_iter()
        .map(|r| (r.name, r.outcome))
        .collect();
    out.sort();
    out
}

/// The message of the first Event on the object named `name`.
fn message(w: &World, name: &str) -> String {
    message_of(w, name, 0)
}

/// The message of the `n`th Event on the object named `name`.
fn message_of(w: &World, name: &str, n: usize) -> String {
    events_of(w, name)[n]["message"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// Alice's offboarding records, read through the audit API (once it reads any: the admission
/// decisions before them are there).
async fn offboard_records(w: &World) -> Vec<scimgate::audit::DecisionRecord> {
    w.s.decisions(1)
        .await
        .into_iter()
        .filter(|r| r.action == "offboard" && r.user_id.as_deref() == Some(w.alice.as_str()))
        .collect()
}

/// `scimgate audit offboarding USER --url … -o OUTPUT` against the World's server.
fn audit_offboarding(w: &World, token: &str, user: &str, output: &str) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_scimgate"))
        .args([
            "audit",
            "offboarding",
            user,
            "--url",
            &format!("https://localhost:{}", w.s.scim_port()),
        ])
        .args(["--token", token, "--ca"])
        .arg(w.s.dir.path().join("tls/ca.crt"))
        .args(["-o", output])
        .output()
        .expect("run");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A crash between an object's Event and its record (the sweep writes them in that order) leaves
/// the Event without the record: the next sweep writes the record, and its Event is refused as
/// existing. A restart after a complete sweep lists again and repeats nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sweep_cut_short_is_finished_once_and_a_restart_repeats_nothing() {
    use sha2::Digest;
    let w = World::new().await;
    let alice = kubectl(&w.api, "alice@example.com");
    let nightly = allowed(alice.create(&cron("nightly")).await).object;
    allowed(alice.create(&pending_pipeline_run("deploy-1")).await);
    // What a sweep that stopped after nightly's Event left behind: the Event, named as the sweep
    // names it (object, person, outcome), and no record.
    let uid = nightly["metadata"]["uid"].as_str().unwrap_or_default();
    let digest = sha2::Sha256::digest(format!("{uid}/{}/would-suspend", w.alice));
    let hex: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
    let left = json!({"apiVersion": "v1", "kind": "Event",
        "metadata": {"name": format!("nightly.{hex}"), "namespace": "team-a"},
        "involvedObject": {"kind": "CronWorkflow", "name": "nightly", "namespace": "team-a", "uid": uid},
        "reason": "Offboarded", "message": "from the sweep that was cut short"});
    let posted = reqwest::Client::new()
        .post(format!("http://{}/api/v1/namespaces/team-a/events", w.kube.addr))
        .json(&left)
        .send()
        .await
        .expect("post");
    assert_eq!(posted.status(), reqwest::StatusCode::CREATED);

    w.deactivate(&w.alice).await;
    let both = crate::support::until(Duration::from_secs(20), async || offboard_records(&w).await.len() >= 2).await;
    assert!(both.is_some(), "records: {:#?}", offboard_records(&w).await);
    let nightly_events = events_of(&w, "nightly");
    assert_eq!(nightly_events.len(), 1, "{nightly_events:#?}");
    assert_eq!(nightly_events[0]["message"], "from the sweep that was cut short");
    assert_eq!(events_of(&w, "deploy-1").len(), 1);
    assert_eq!(w.kube.events().len(), 2);

    // A crash after the sweep wrote everything but before it marked its claim done: the claim
    // left open, its holder gone for longer than the lease. The restarted server (another
    // replica, as far as claims go) takes it over, lists every kind again, and repeats nothing.
    let World {
        s,
        kube,
        alice: alice_id,
        ..
    } = w;
    let dir = s.stop().await;
    reopen_claim(dir.path(), "done = 0, ").await;
    let (policy, kubeconfig) = (dir.path().join("policy.yaml"), dir.path().join("kubeconfig"));
    let lists = kube.selected_lists();
    let s = crate::support::TestServer::start_in(dir, |a| {
        a.policy = Some(policy);
        a.kubeconfig = Some(kubeconfig);
    })
    .await;
    let listed = crate::support::until(Duration::from_secs(20), async || kube.selected_lists() >= lists + 6).await;
    assert!(listed.is_some(), "the restarted server never swept");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(kube.events().len(), 2);
    let records: Vec<_> = s
        .decisions(1)
        .await
        .into_iter()
        .filter(|r| r.action == "offboard" && r.user_id.as_deref() == Some(alice_id.as_str()))
        .collect();
    assert_eq!(records.len(), 2, "{records:#?}");
}

/// The one claim in the stopped server's store (`dir`) let go: its lease over, and `also` set
/// (SQL, e.g. `done = 0, `).
async fn reopen_claim(dir: &std::path::Path, also: &str) {
    let db = dir.join(scimgate::store::embedded::FILE);
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", db.display()))
        .await
        .expect("open the stopped server's store");
    let sql = format!("UPDATE offboarding_claims SET {also}until = '2000-01-01T00:00:00.000Z'");
    let reopened = sqlx::query(&sql).execute(&pool).await.expect("update");
    assert_eq!(reopened.rows_affected(), 1, "one claim: alice's departure");
    pool.close().await;
}

/// Two replicas on one PostgreSQL database, acting, both see alice leave; one sweeps (one LIST
/// per kind, one PATCH, one record and one Event per object), whichever claims her departure
/// first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_sweep_a_departure_once() {
    let Some(url) = crate::support::postgres_db("two_replicas_sweep_a_departure_once").await else {
        return;
    };
    let mut kube = crate::kube_face::KubeFace::bind().await;
    let deployment = crate::support::Deployment::new(&url, "offboarding:\n  mode: act\n", &kube);
    let (a, b) = (deployment.replica().await, deployment.replica().await);
    let alice = a.create_user("alice@example.com").await;
    a.create_group("pipeline-users", &[&alice]).await;
    let api = crate::apiserver::ApiServer::new(&a);
    kube.serve(&api);
    let as_alice = kubectl(&api, "alice@example.com");
    allowed(as_alice.create(&cron("nightly")).await);
    allowed(as_alice.create(&pending_pipeline_run("deploy-1")).await);

    // A sweep of six LISTs takes three seconds: both replicas see the departure while it runs.
    kube.slow_lists(Duration::from_millis(500));
    let r = b
        .patch(
            &format!("/Users/{alice}"),
            crate::support::ops(json!([{"op": "replace", "value": {"active": false}}])),
        )
        .await;
    assert!(r.status.is_success(), "{}", r.body);
    let swept = crate::support::until(Duration::from_secs(20), async || kube.event_count() >= 2).await;
    assert!(swept.is_some(), "events: {:#?}", kube.events());
    // Give the other replica the time to have swept too, if it were going to.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(kube.event_count(), 2);
    assert_eq!(kube.selected_lists(), 6, "one replica listed the six kinds, once");
    assert_eq!(kube.patches(), 2, "one replica took each step, once");
    // Read from the shared database, as `audit query --store postgres://…` does.
    let store = scimgate::store::open(&scimgate::store::Location::Postgres(url.clone()))
        .await
        .expect("store");
    let q = scimgate::model::DecisionQuery {
        action: Some("offboard".into()),
        limit: 100,
        ..Default::default()
    };
    let records = store.query_decisions(&q).await.expect("query");
    let mut swept: Vec<(&str, &str)> = records
        .iter()
        .filter(|r| r.hook == "offboarding")
        .map(|r| (r.name.as_str(), r.outcome.as_str()))
        .collect();
    swept.sort();
    assert_eq!(
        swept,
        [("deploy-1", "cancelled"), ("nightly", "suspended")],
        "{records:#?}"
    );
    drop((a, b));
}

/// Every option's alternative, acting: schedules and waiting runs kept, the running run
/// cancelled (`spec.shutdown: Stop`) — and with `mode: off`, no sweep at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_option_takes_its_alternative_and_off_sweeps_nothing() {
    let config = "offboarding:\n  mode: act\n  cronWorkflows: keep\n  pendingRuns: keep\n  runningRuns: cancel\n";
    let w = World::with_config(config).await;
    let alice = kubectl(&w.api, "alice@example.com");
    let nightly = allowed(alice.create(&cron("nightly")).await).object;
    let pr = allowed(alice.create(&pending_pipeline_run("deploy-1")).await).object;
    let running = allowed(alice.create(&workflow("running")).await).object;
    let running = allowed(argo_controller(&w.api).operate(&running, "Running", None).await).object;
    let kept: Vec<Value> = [&nightly, &pr]
        .iter()
        .map(|o| w.api.stored(o).expect("stored"))
        .collect();
    w.deactivate(&w.alice).await;
    let all = crate::support::until(Duration::from_secs(20), async || w.kube.event_count() >= 3).await;
    assert!(all.is_some(), "events: {:#?}", w.kube.events());
    assert_eq!(w.api.stored(&running).expect("stored")["spec"]["shutdown"], "Stop");
    assert_eq!(kept, [&nightly, &pr].map(|o| w.api.stored(o).expect("stored")));
    assert_eq!(w.kube.patches(), 1);
    let said = |name: &str| message(&w, name);
    assert!(
        said("nightly").ends_with("this CronWorkflow is scheduled: left as it is"),
        "{}",
        said("nightly")
    );
    assert!(said("deploy-1").ends_with("this PipelineRun is pending: left as it is"));
    assert!(
        said("running").ends_with("this Workflow is running: cancelled"),
        "{}",
        said("running")
    );
    let rules: Vec<Option<String>> = {
        let mut r = offboard_records(&w).await;
        r.sort_by(|a, b| a.name.cmp(&b.name));
        r.into_iter().map(|r| r.rule).collect()
    };
    assert_eq!(
        rules,
        [
            Some("offboarding.pendingRuns: keep".to_string()),
            Some("offboarding.cronWorkflows: keep".to_string()),
            Some("offboarding.runningRuns: cancel".to_string()),
        ]
    );

    let off = World::with_config("offboarding:\n  mode: off\n").await;
    allowed(kubectl(&off.api, "alice@example.com").create(&cron("nightly")).await);
    off.deactivate(&off.alice).await;
    // Long enough for a sweep that would run (one poll a second) to have listed.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!((off.kube.selected_lists(), off.kube.event_count()), (0, 0));
}

/// Alice's CronWorkflow, pending PipelineRun, Workflow at a Suspend node and running Workflow,
/// with `mode: act`: the first three are suspended or cancelled — PATCHes through the API
/// server that scimgate's own webhooks admit by the offboarding stamp they carry — each with
/// its Event and records; the running one is untouched. `audit verify` and `audit who` read
/// the stamp; the submit stamps still verify.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acting_suspends_the_schedule_cancels_waiting_runs_through_the_webhooks_and_leaves_the_running_one() {
    let w = World::with_config("offboarding:\n  mode: act\n").await;
    let alice = kubectl(&w.api, "alice@example.com");
    let argo = argo_controller(&w.api);
    let nightly = allowed(alice.create(&cron("nightly")).await).object;
    let pr = allowed(alice.create(&pending_pipeline_run("deploy-1")).await).object;
    let gated = allowed(alice.create(&workflow("gated")).await).object;
    allowed(argo.operate(&gated, "Running", Some("approve")).await);
    let running = allowed(alice.create(&workflow("running")).await).object;
    allowed(argo.operate(&running, "Running", None).await);
    let running_before = w.api.stored(&running).expect("stored");

    w.deactivate(&w.alice).await;
    let all = crate::support::until(Duration::from_secs(20), async || offboard_records(&w).await.len() >= 4).await;
    assert!(
        all.is_some(),
        "records: {:#?}; events: {:#?}",
        offboard_records(&w).await,
        w.kube.events()
    );
    let stored = |o: &Value| w.api.stored(o).expect("stored");
    assert_eq!(stored(&nightly)["spec"]["suspend"], true);
    assert_eq!(stored(&pr)["spec"]["status"], "Cancelled");
    assert_eq!(stored(&gated)["spec"]["shutdown"], "Stop");
    assert_eq!(stored(&running), running_before, "the running run is left to finish");
    assert_eq!(w.kube.patches(), 3, "one PATCH per step, none for the running run");

    assert_eq!(
        outcomes(&w).await,
        [
            ("deploy-1", "cancelled"),
            ("gated", "cancelled"),
            ("nightly", "suspended"),
            ("running", "kept"),
        ]
        .map(|(a, b)| (a.to_string(), b.to_string()))
    );
    let said = |name: &str| message(&w, name);
    assert!(
        said("nightly").ends_with("this CronWorkflow is scheduled: suspended"),
        "{}",
        said("nightly")
    );
    assert!(
        said("gated").ends_with("this Workflow is pending: cancelled"),
        "{}",
        said("gated")
    );
    assert!(said("running").ends_with("this Workflow is running: left as it is"));
    assert_eq!(events_of(&w, "deploy-1")[0]["type"], "Warning");

    // Each PATCH went through the webhooks: admitted as scimgate's account offboarding alice.
    let admitted: Vec<scimgate::audit::DecisionRecord> = w
        .decisions(1)
        .await
        .into_iter()
        .filter(|r| r.hook == "validate" && r.action == "offboard")
        .collect();
    assert_eq!(admitted.len(), 3, "{admitted:#?}");
    for r in &admitted {
        assert_eq!(
            (r.outcome.as_str(), r.requester.as_str()),
            ("allowed", "system:serviceaccount:scimgate:scimgate")
        );
        assert_eq!(r.submitter_id.as_deref(), Some(w.alice.as_str()));
        assert!(
            r.reason
                .starts_with("scimgate's offboarding of alice@example.com (deactivated)"),
            "{}",
            r.reason
        );
    }

    // The stamp is read as scimgate's, for alice; her submit stamps still verify.
    let v = w.verifier().await;
    assert_eq!(
        crate::support::verified_by(&v, &stored(&nightly)),
        [
            "submit by alice@example.com",
            "suspend by system:serviceaccount:scimgate:scimgate offboarding alice@example.com"
        ]
    );
    assert_eq!(
        crate::support::verified_by(&v, &stored(&gated))[1],
        "cancel by system:serviceaccount:scimgate:scimgate offboarding alice@example.com"
    );
    let who = crate::support::audit_who(w.s.dir.path(), "team-a/cronworkflow/nightly");
    assert!(
        who.contains("offboarded by system:serviceaccount:scimgate:scimgate at 20")
            && who.contains(": suspend for alice@example.com (deactivated)"),
        "{who}"
    );
    assert!(
        who.contains("decision   offboard allowed system:serviceaccount:scimgate:scimgate rule offboarding: suspend"),
        "{who}"
    );

    // The Argo controller winds the stopped run down as it would anyone's stop.
    allowed(argo.operate(&stored(&gated), "Failed", None).await);

    // Re-activated, alice resumes her schedule herself; deactivated again, it is suspended again:
    // a departure is swept on its own, whatever was done at an earlier one.
    let r =
        w.s.patch(
            &format!("/Users/{}", w.alice),
            crate::support::ops(json!([{"op": "replace", "value": {"active": true}}])),
        )
        .await;
    assert!(r.status.is_success(), "{}", r.body);
    let resumed = crate::apiserver::Patch::Merge(json!({"spec": {"suspend": false}}));
    allowed(
        w.api
            .patch(
                &crate::apiserver::person("alice@example.com"),
                &stored(&nightly),
                resumed,
            )
            .await,
    );
    w.deactivate(&w.alice).await;
    let again = crate::support::until(Duration::from_secs(20), async || {
        stored(&nightly)["spec"]["suspend"] == true
    })
    .await;
    assert!(again.is_some(), "not suspended again; patches: {}", w.kube.patches());
    assert_eq!(w.kube.patches(), 4, "only the schedule had anything left to do");
}

/// Only what a fresh offboarding stamp signs is admitted from scimgate's account: the step's
/// field and the stamp. The same stamp with more changed, sent by a person, put on another
/// object, or too old, is refused by `/validate` with why — shown on a cluster where only the
/// validating webhook stands (the mutating one judges such a write as anyone's, and refuses it
/// by the policy).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_step_a_fresh_offboarding_stamp_signs_is_admitted() {
    use crate::apiserver::{ApiServer, Patch};
    use scimgate::stamp::offboard::{make, NewOffboard};
    let w = World::new().await;
    let signer = scimgate::stamp::Signer::load_or_create(&w.s.dir.path().join("keys/signing.key")).expect("key");
    let alice = kubectl(&w.api, "alice@example.com");
    let nightly = allowed(alice.create(&cron("nightly")).await).object;
    let other = allowed(alice.create(&cron("other")).await).object;
    let validating_only = ApiServer::validating_only(&w.s);
    for o in [&nightly, &other] {
        validating_only.put(w.api.stored(o).expect("stored"));
    }
    let me = crate::kube_face::scimgate_account();
    let stamp_for = |obj: &Value, ago: i64| {
        make(
            &signer,
            &NewOffboard {
                requester: &me.username,
                kind: scimgate::policy::Kind::CronWorkflow,
                namespace: "team-a",
                name: obj["metadata"]["name"].as_str().unwrap_or_default(),
                uid: obj["metadata"]["uid"].as_str().unwrap_or_default(),
                resource_version: obj["metadata"]["resourceVersion"].as_str().unwrap_or_default(),
                sub: &w.alice,
                user_name: "alice@example.com",
                cause: "deactivated",
                departure: "deactivated@2",
                step: "suspend",
                now: chrono::Utc::now() - chrono::Duration::seconds(ago),
            },
        )
        .0
    };
    let suspend = |stamp, extra: Value| {
        let mut p = json!({"metadata": {"annotations": stamp}, "spec": {"suspend": true}});
        json_patch::merge(&mut p, &extra);
        Patch::Merge(p)
    };
    let mallory = crate::apiserver::person("mallory@example.com");
    let cases = [
        (
            &me,
            &nightly,
            suspend(stamp_for(&nightly, 0), json!({"spec": {"schedule": "* * * * *"}})),
            "it changes spec besides the suspend step",
        ),
        (
            &mallory,
            &nightly,
            suspend(stamp_for(&nightly, 0), json!({})),
            "the offboarding stamp was made for system:serviceaccount:scimgate:scimgate, not oidc:mallory@example.com",
        ),
        (
            &me,
            &other,
            suspend(stamp_for(&nightly, 0), json!({})),
            "it was made for another object (name 'nightly', not 'other')",
        ),
        (
            &me,
            &nightly,
            suspend(stamp_for(&nightly, 600), json!({})),
            "s old, older than the 60 s a stamp is good for",
        ),
    ];
    for (who, target, patch, why) in cases {
        let on_full = crate::support::refused(w.api.patch(who, target, patch.clone()).await).message;
        assert!(on_full.contains("may not update CronWorkflow in team-a"), "{on_full}");
        let on_validating = crate::support::refused(validating_only.patch(who, target, patch).await).message;
        assert!(on_validating.contains(why), "{why}: {on_validating}");
    }
    // Nobody else's label may ride along either (Argo's creator label among them).
    let relabel = suspend(
        stamp_for(&nightly, 0),
        json!({"metadata": {"labels": {"workflows.argoproj.io/creator": "bob"}}}),
    );
    let on_validating = crate::support::refused(validating_only.patch(&me, &nightly, relabel).await).message;
    assert!(
        on_validating.contains("it changes metadata.labels[workflows.argoproj.io/creator] besides the suspend step"),
        "{on_validating}"
    );
    // A stamp is good for one write: made on an earlier version, it is refused — by `/validate`
    // (the mutating call lets the API server's own precondition answer a sweep's conflict).
    let mut earlier = nightly.clone();
    earlier["metadata"]["resourceVersion"] = json!("0");
    let stale = crate::support::refused(
        w.api
            .patch(&me, &nightly, suspend(stamp_for(&earlier, 0), json!({})))
            .await,
    )
    .message;
    assert!(
        stale.contains("the offboarding stamp was made for resourceVersion 0, and the object is at"),
        "{stale}"
    );
    // Without a stamp, scimgate's account is judged as anyone: it may not suspend alice's schedule.
    let bare = crate::support::refused(
        w.api
            .patch(&me, &nightly, Patch::Merge(json!({"spec": {"suspend": true}})))
            .await,
    );
    assert!(
        bare.message
            .contains("system:serviceaccount:scimgate:scimgate may not update"),
        "{}",
        bare.message
    );
    assert_eq!(w.api.stored(&nightly).expect("stored")["spec"].get("suspend"), None);
    // What it signs is admitted.
    let done = allowed(
        w.api
            .patch(&me, &nightly, suspend(stamp_for(&nightly, 0), json!({})))
            .await,
    )
    .object;
    assert_eq!(done["spec"]["suspend"], true);
}

/// Acting, a crash while steps' PATCHes are in flight — applied by the API server, never
/// answered — then a restart: the steps already taken (each object carries scimgate's stamp for
/// this departure) are recorded, not taken again; each object has one PATCH, one Event and one
/// record.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acting_a_crash_mid_step_then_a_restart_takes_each_step_once() {
    let w = World::with_config("offboarding:\n  mode: act\n").await;
    let alice = kubectl(&w.api, "alice@example.com");
    let gated = allowed(alice.create(&workflow("gated")).await).object;
    allowed(
        argo_controller(&w.api)
            .operate(&gated, "Running", Some("approve"))
            .await,
    );
    let nightly = allowed(alice.create(&cron("nightly")).await).object;
    let pr = allowed(alice.create(&pending_pipeline_run("deploy-1")).await).object;
    // The three steps go out together: the first PATCH to arrive is answered, the other two
    // applied and left hanging.
    w.kube.answer_patches_up_to(1);
    w.deactivate(&w.alice).await;
    let applied = crate::support::until(Duration::from_secs(20), async || {
        let suspended = w.api.stored(&nightly).expect("stored")["spec"]["suspend"] == true;
        let cancelled = w.api.stored(&pr).expect("stored")["spec"]["status"] == "Cancelled";
        let stopped = w.api.stored(&gated).expect("stored")["spec"]["shutdown"] == "Stop";
        suspended && cancelled && stopped
    })
    .await;
    assert!(applied.is_some(), "patches: {}", w.kube.patches());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        (w.kube.patches(), outcomes(&w).await.len()),
        (3, 1),
        "one step answered and recorded"
    );

    // The crash: the server stops mid-sweep, its claim left open; the restart takes it over
    // (its holder gone for longer than the lease).
    let World {
        s,
        kube,
        alice: id,
        api,
        ..
    } = w;
    let dir = s.stop().await;
    reopen_claim(dir.path(), "").await;
    kube.answer_patches_up_to(usize::MAX);
    let (policy, kubeconfig, config) = (
        dir.path().join("policy.yaml"),
        dir.path().join("kubeconfig"),
        dir.path().join("config.yaml"),
    );
    let s = crate::support::TestServer::start_in(dir, |a| {
        a.policy = Some(policy);
        a.kubeconfig = Some(kubeconfig);
        a.config = Some(config);
    })
    .await;
    // The cluster's webhooks reach the restarted server.
    kube.write_through(&api.calling(&s));
    let records = async || -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = s
            .decisions(1)
            .await
            .into_iter()
            .filter(|r| r.hook == "offboarding" && r.user_id.as_deref() == Some(id.as_str()))
            .map(|r| (r.name, r.outcome))
            .collect();
        out.sort();
        out
    };
    let done = crate::support::until(Duration::from_secs(20), async || records().await.len() >= 3).await;
    assert!(done.is_some(), "records: {:?}", records().await);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        records().await,
        [
            ("deploy-1", "cancelled"),
            ("gated", "cancelled"),
            ("nightly", "suspended")
        ]
        .map(|(a, b)| (a.to_string(), b.to_string()))
    );
    assert_eq!(
        kube.patches(),
        3,
        "nightly's step was taken before the crash, not again"
    );
    let each: Vec<usize> = ["gated", "nightly", "deploy-1"]
        .iter()
        .map(|n| {
            kube.events()
                .iter()
                .filter(|e| e["involvedObject"]["name"] == *n)
                .count()
        })
        .collect();
    assert_eq!(each, [1, 1, 1]);
    assert_eq!(kube.event_count(), 3);
}

/// A step the API server refuses (here RBAC: the role lacks `patch`) is recorded as failed,
/// with the API server's reason, once; it is tried again after a backoff, and taken once it is
/// allowed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acting_a_refused_step_is_said_once_and_taken_when_allowed() {
    let w = World::with_config("offboarding:\n  mode: act\n").await;
    let nightly = allowed(kubectl(&w.api, "alice@example.com").create(&cron("nightly")).await).object;
    w.kube.forbid_patches(true);
    w.deactivate(&w.alice).await;
    let failed = crate::support::until(Duration::from_secs(20), async || !outcomes(&w).await.is_empty()).await;
    assert!(failed.is_some());
    assert_eq!(outcomes(&w).await, [("nightly".to_string(), "failed".to_string())]);
    let said = message(&w, "nightly");
    assert!(
        said.ends_with("this CronWorkflow is scheduled: it could not be suspended: cronworkflows.argoproj.io \"nightly\" is forbidden: User \"system:serviceaccount:scimgate:scimgate\" cannot patch resource \"cronworkflows\" in API group \"argoproj.io\" in the namespace \"team-a\" (403)"),
        "{said}"
    );
    // After its backoff (5 s; `sweep::tests` shows the schedule) it is tried again: refused
    // again, not said again.
    let patches = w.kube.patches();
    let again = crate::support::until(Duration::from_secs(10), async || w.kube.patches() > patches).await;
    assert!(again.is_some(), "not tried again");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!((outcomes(&w).await.len(), w.kube.event_count()), (1, 1));
    // Allowed, it is taken at the next try (10 s later).
    w.kube.forbid_patches(false);
    let taken = crate::support::until(Duration::from_secs(20), async || outcomes(&w).await.len() == 2).await;
    assert!(taken.is_some(), "{:?}", outcomes(&w).await);
    assert_eq!(w.api.stored(&nightly).expect("stored")["spec"]["suspend"], true);
    assert!(message_of(&w, "nightly", 1).ends_with("this CronWorkflow is scheduled: suspended"));
}

/// What the sweep asks the API server at start (`SelfSubjectAccessReview`): acting without the
/// offboarding component's `patch`, the four kinds a step changes are missing, each named with
/// the manifest that grants it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acting_without_patch_is_found_missing_at_start() {
    use scimgate::offboarding::{access, Mode};
    let w = World::new().await;
    let client = scimgate::cluster::client(Some(&w.s.dir.path().join("kubeconfig")))
        .await
        .expect("kubeconfig")
        .expect("a client");
    assert_eq!(access::missing(&client, Mode::Act).await.expect("asked"), []);
    w.kube.forbid_patches(true);
    let missing: Vec<String> = access::missing(&client, Mode::Act)
        .await
        .expect("asked")
        .into_iter()
        .map(|g| format!("{g} ({})", g.granted_by))
        .collect();
    assert_eq!(
        missing,
        [
            "workflows.argoproj.io",
            "cronworkflows.argoproj.io",
            "pipelineruns.tekton.dev",
            "taskruns.tekton.dev"
        ]
        .map(|r| format!("patch {r} (manifests/components/offboarding)"))
    );
    assert_eq!(access::missing(&client, Mode::Report).await.expect("asked"), []);
}
