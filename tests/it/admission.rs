//! The admission webhooks end to end: SCIM → directory → admission over real TLS and HTTP/2, every
//! request driven by the API-server emulator (`apiserver.rs`) as kube-apiserver drives webhooks,
//! with the corpus's Argo and Tekton manifests and the actors (`actors.rs`) writing as they do.

use crate::actors::{argo_controller, argo_server, claims, kubectl, tekton_controller};
use crate::apiserver::{person, service_account, ApiServer, Written};
use crate::support::{allowed, ann, ops, refused, verified_by, workflow, TestServer, World, POLICY};
use serde::Deserialize;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/corpus")
}

fn yaml_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            yaml_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "yaml" || x == "yml") {
            out.push(p);
        }
    }
}

/// Every document of every corpus file whose kind is ours.
fn runs() -> Vec<(String, Value)> {
    let mut files = Vec::new();
    for sub in ["argo/examples", "tekton/examples", "chains", "manual-approval-gate"] {
        yaml_files(&corpus().join(sub), &mut files);
    }
    files.sort();
    let mut out = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f).expect("read");
        for (i, doc) in serde_yaml_ng::Deserializer::from_str(&text).enumerate() {
            let Ok(v) = Value::deserialize(doc) else { continue };
            let api = v["apiVersion"].as_str().unwrap_or_default();
            let kind = v["kind"].as_str().unwrap_or_default();
            let ours = (api == "argoproj.io/v1alpha1"
                && [
                    "Workflow",
                    "CronWorkflow",
                    "WorkflowTemplate",
                    "ClusterWorkflowTemplate",
                ]
                .contains(&kind))
                || (["tekton.dev/v1", "tekton.dev/v1beta1"].contains(&api)
                    && ["PipelineRun", "TaskRun"].contains(&kind));
            if ours {
                out.push((format!("{}#{i}", f.strip_prefix(corpus()).unwrap_or(&f).display()), v));
            }
        }
    }
    out
}

/// Validators for our kinds from the CRDs in the corpus (`openAPIV3Schema` per served version).
struct Crds(std::collections::HashMap<(String, String), jsonschema::Validator>);

impl Crds {
    fn load() -> Crds {
        let mut files = Vec::new();
        yaml_files(&corpus().join("schemas/argo-crds"), &mut files);
        yaml_files(&corpus().join("schemas/tekton/300-crds"), &mut files);
        let mut out = std::collections::HashMap::new();
        for f in files {
            let text = std::fs::read_to_string(&f).expect("read");
            for doc in serde_yaml_ng::Deserializer::from_str(&text) {
                let Ok(crd) = Value::deserialize(doc) else { continue };
                if crd["kind"] != "CustomResourceDefinition" {
                    continue;
                }
                let group = crd["spec"]["group"].as_str().unwrap_or_default();
                let kind = crd["spec"]["names"]["kind"].as_str().unwrap_or_default();
                for v in crd["spec"]["versions"].as_array().into_iter().flatten() {
                    let Some(schema) = v.get("schema").and_then(|s| s.get("openAPIV3Schema")) else {
                        continue;
                    };
                    let api = format!("{group}/{}", v["name"].as_str().unwrap_or_default());
                    if let Ok(validator) = jsonschema::validator_for(schema) {
                        out.insert((api, kind.to_string()), validator);
                    }
                }
            }
        }
        Crds(out)
    }

    /// `None` when no schema is known for the object's kind.
    fn valid(&self, obj: &Value) -> Option<bool> {
        let key = (
            obj["apiVersion"].as_str()?.to_string(),
            obj["kind"].as_str()?.to_string(),
        );
        self.0.get(&key).map(|v| v.is_valid(obj))
    }
}

/// Our webhooks' calls in one write: (webhook, round) and whether every call had its own uid.
fn our_calls(w: &Written) -> (Vec<(String, u8)>, bool) {
    let ours: Vec<_> = w.calls.iter().filter(|c| c.webhook.ends_with(".scimgate.io")).collect();
    let mut uids: Vec<&str> = w.calls.iter().map(|c| c.uid.as_str()).collect();
    uids.sort();
    uids.dedup();
    (
        ours.iter().map(|c| (c.webhook.clone(), c.round)).collect(),
        uids.len() == w.calls.len(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_corpus_run_is_stamped_for_a_member_and_denied_for_others() {
    let w = World::new().await;
    let crds = Crds::load();
    let verifier = w.verifier().await;
    // The schemas can fail: a broken Workflow and a CronWorkflow with a malformed workflowMetadata.
    let broken = json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "Workflow", "metadata": {"name": "x"}, "spec": {"templates": "not a list"}});
    assert_eq!(crds.valid(&broken), Some(false));
    let bad_meta = json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "CronWorkflow", "metadata": {"name": "x"}, "spec": {"schedule": "* * * * *", "workflowSpec": {}, "workflowMetadata": {"annotations": "no"}}});
    assert_eq!(crds.valid(&bad_meta), Some(false));
    let alice = kubectl(&w.api, "alice@example.com");
    let mallory = kubectl(&w.api, "mallory@example.com");
    let mut counts: std::collections::BTreeMap<String, usize> = Default::default();
    let mut schema_checked = 0;
    let mut malformed = Vec::new();
    let mut stored = Vec::new();
    for (name, mut obj) in runs() {
        let cluster_scoped = obj["kind"] == "ClusterWorkflowTemplate";
        if !cluster_scoped {
            obj["metadata"]["namespace"] = json!("team-a");
        }
        // The corpus reuses names across files; generateName keeps every create apart.
        let has_name = obj["metadata"]["name"].is_string() || obj["metadata"]["generateName"].is_string();
        if let Some(n) = obj["metadata"]["name"].as_str().map(String::from) {
            obj["metadata"].as_object_mut().map(|m| m.remove("name"));
            obj["metadata"]["generateName"] = json!(format!("{n}-"));
        }
        let denied = refused(mallory.create(&obj).await);
        if !has_name && !cluster_scoped {
            assert!(
                denied.message.contains("neither metadata.name"),
                "{name}: {}",
                denied.message
            );
            let again = refused(alice.create(&obj).await);
            assert!(again.message.contains("neither metadata.name"), "{name}");
            malformed.push(name);
            continue;
        }
        assert_eq!(denied.code, 403, "{name}: {}", denied.message);
        assert!(
            denied.message.starts_with("admission webhook \"stamp.scimgate.io\" denied the request: scimgate: oidc:mallory@example.com may not submit")
                && denied.message.contains("not in a group allowed there"),
            "{name}: {}",
            denied.message
        );
        let written = alice
            .create(&obj)
            .await
            .unwrap_or_else(|s| panic!("{name}: {}", s.message));
        let stamped = &written.object;
        assert_eq!(ann(stamped, "scimgate.io/submitted-by"), "alice@example.com", "{name}");
        assert_eq!(ann(stamped, "scimgate.io/submitted-by-id"), w.alice.as_str(), "{name}");
        let rule = if cluster_scoped {
            "platform-templates"
        } else {
            "team-submit"
        };
        assert_eq!(
            ann(stamped, "scimgate.io/decision"),
            format!("allow:{rule}").as_str(),
            "{name}"
        );
        assert_eq!(
            stamped["metadata"]["labels"]["scimgate.io/submitted-by"], "alice.at.example.com",
            "{name}"
        );
        assert_eq!(
            verified_by(&verifier, stamped),
            vec!["submit by alice@example.com"],
            "{name}"
        );
        // The other vendor's webhook (Argo) or Tekton's defaulting webhook changed the object after
        // ours: the API server called ours again, with a uid of its own. A change of labels left
        // our stamp as it was; Tekton's defaults change the spec, which the stamp is bound to, so
        // there it was made again for the spec that stands (and the validating call accepted it).
        let (calls, distinct) = our_calls(&written);
        assert!(distinct, "{name}: every call has its own uid");
        assert_eq!(
            calls,
            vec![
                ("stamp.scimgate.io".to_string(), 0),
                ("stamp.scimgate.io".to_string(), 1),
                ("policy.scimgate.io".to_string(), 0)
            ],
            "{name}"
        );
        let argo = stamped["apiVersion"]
            .as_str()
            .is_some_and(|v| v.starts_with("argoproj.io/"));
        assert!(
            !argo
                || written
                    .calls
                    .iter()
                    .filter(|c| c.webhook == "stamp.scimgate.io" && c.round == 1)
                    .all(|c| !c.patched),
            "{name}: the re-invocation patched again after a change of labels only"
        );
        assert_eq!(
            written.audit.get("stamp.scimgate.io/decision"),
            Some(&json!("allow")),
            "{name}"
        );
        assert_eq!(
            written.audit.get("policy.scimgate.io/rule"),
            Some(&json!(rule)),
            "{name}"
        );
        assert_eq!(
            written.audit.get("policy.scimgate.io/user-id"),
            Some(&json!(w.alice)),
            "{name}"
        );
        // Our patch never makes a schema-valid object invalid.
        match (crds.valid(&obj), crds.valid(stamped)) {
            (Some(true), Some(after)) => {
                assert!(after, "{name}: valid against its CRD before the stamp, invalid after");
                schema_checked += 1;
            }
            (None, _) => panic!("{name}: no CRD schema for it in the corpus"),
            _ => {}
        }
        *counts
            .entry(format!(
                "{} {}",
                obj["apiVersion"].as_str().unwrap_or_default(),
                obj["kind"].as_str().unwrap_or_default()
            ))
            .or_default() += 1;
        stored.push(w.api.stored(stamped).expect("stored"));
    }
    eprintln!("corpus runs admitted and stamped: {counts:?}; {schema_checked} still valid against their CRD schema after the patch; malformed handled: {malformed:?}");
    assert!(
        schema_checked >= 400,
        "only {schema_checked} objects were schema-checked"
    );
    assert!(
        counts.get("argoproj.io/v1alpha1 Workflow").copied().unwrap_or(0) >= 190,
        "{counts:?}"
    );
    assert!(
        counts.get("tekton.dev/v1 PipelineRun").copied().unwrap_or(0) >= 40,
        "{counts:?}"
    );
    assert!(
        counts.get("tekton.dev/v1beta1 TaskRun").copied().unwrap_or(0) >= 20,
        "{counts:?}"
    );
    assert!(
        counts
            .get("argoproj.io/v1alpha1 ClusterWorkflowTemplate")
            .copied()
            .unwrap_or(0)
            >= 5,
        "{counts:?}"
    );
    assert_eq!(malformed.len(), 2, "fun-with-gifs and k8s-jobs: {malformed:?}");
    // `scimgate audit verify` (the binary) on everything the API server stored: all valid.
    let dir = tempfile::tempdir().expect("tempdir");
    let jwks = dir.path().join("jwks.json");
    std::fs::write(&jwks, w.jwks().await.to_string()).expect("jwks");
    let list = dir.path().join("stored.json");
    std::fs::write(
        &list,
        json!({"apiVersion": "v1", "kind": "List", "items": stored}).to_string(),
    )
    .expect("list");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_scimgate"))
        .args(["audit", "verify", "-o", "json", "--jwks"])
        .arg(&jwks)
        .arg("-f")
        .arg(&list)
        .output()
        .expect("audit verify");
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).expect("json");
    let n = v.as_array().map(Vec::len).unwrap_or_default();
    assert_eq!(n, stored.len());
    assert!(
        v.as_array()
            .into_iter()
            .flatten()
            .all(|o| o["stamps"][0]["status"] == "valid"),
        "{v}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deactivation_through_scim_denies_the_very_next_request() {
    let w = World::new().await;
    let wf = workflow("team-a");
    let alice = kubectl(&w.api, "alice@example.com");
    allowed(alice.create(&wf).await);
    let r =
        w.s.patch(
            &format!("/Users/{}", w.alice),
            ops(json!([{"op": "replace", "value": {"active": false}}])),
        )
        .await;
    assert_eq!(r.status, reqwest::StatusCode::OK);
    let no = refused(alice.create(&wf).await);
    assert!(
        no.message.contains("deactivated in the identity provider"),
        "{}",
        no.message
    );
    assert_eq!(
        w.s.delete(&format!("/Users/{}", w.alice)).await.status,
        reqwest::StatusCode::NO_CONTENT
    );
    let gone = refused(alice.create(&wf).await);
    assert!(gone.message.contains("was deleted"), "{}", gone.message);
    let admin = crate::apiserver::User {
        username: "kubernetes-admin".into(),
        groups: vec!["system:masters".into(), "system:authenticated".into()],
    };
    let stranger = refused(w.api.create(&admin, wf.clone()).await);
    assert!(stranger.message.contains("no 'oidc:' prefix"), "{}", stranger.message);
    // Removing bob from the group takes effect at once as well.
    let pu =
        w.s.get(&format!(
            "/Groups?filter={}",
            crate::support::enc("displayName eq \"pipeline-users\"")
        ))
        .await;
    let gid = pu.body["Resources"][0]["id"].as_str().unwrap_or_default().to_string();
    let bob = kubectl(&w.api, "bob@example.com");
    allowed(bob.create(&wf).await);
    w.s.patch(
        &format!("/Groups/{gid}"),
        ops(json!([{"op": "remove", "path": format!("members[value eq \"{}\"]", w.bob)}])),
    )
    .await;
    refused(bob.create(&wf).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_namespaces_warn_instead_of_denying() {
    let w = World::new().await;
    let mallory = kubectl(&w.api, "mallory@example.com");
    let r = allowed(mallory.create(&workflow("legacy-billing")).await);
    // Every call warned the same (mutating, its re-invocation, validating); the API server passes
    // the text on to kubectl once.
    assert_eq!(r.warnings.len(), 1, "{:?}", r.warnings);
    for warning in &r.warnings {
        assert!(
            warning.starts_with("scimgate dry-run: would deny:") && warning.len() <= 120,
            "{warning}"
        );
    }
    assert_eq!(r.audit.get("policy.scimgate.io/decision"), Some(&json!("dry-run-deny")));
    assert!(r.audit["policy.scimgate.io/decision-id"]
        .as_str()
        .is_some_and(|d| d.len() == 36));
    assert!(
        r.audit.keys().all(|k| k.matches('/').count() == 1),
        "keys are bare names; the API server adds the webhook's name as prefix: {:?}",
        r.audit.keys()
    );
    // The object says who created it and that policy would have denied it.
    assert_eq!(ann(&r.object, "scimgate.io/submitted-by"), "mallory@example.com");
    assert!(ann(&r.object, "scimgate.io/decision")
        .as_str()
        .is_some_and(|d| d.starts_with("dry-run-deny")));
    let v = w.verifier().await;
    assert_eq!(verified_by(&v, &r.object), vec!["submit by mallory@example.com"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_stamps_are_stripped_and_edits_undone_or_denied() {
    let w = World::new().await;
    let v = w.verifier().await;
    let alice = kubectl(&w.api, "alice@example.com");
    let mut wf = workflow("team-a");
    wf["metadata"]["annotations"] = json!({"scimgate.io/submitted-by": "ceo@example.com", "scimgate.io/approved-by": "ceo@example.com", "team": "ml"});
    wf["metadata"]["labels"] = json!({"workflows.argoproj.io/creator": "ceo", "workflows.argoproj.io/creator-email": "ceo.at.example.com", "scimgate.io/submitted-by": "ceo"});
    let stamped = allowed(alice.create(&wf).await).object;
    let a = stamped["metadata"]["annotations"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    assert_eq!(a["scimgate.io/submitted-by"], "alice@example.com");
    let l = &stamped["metadata"]["labels"];
    assert_eq!(
        l["workflows.argoproj.io/creator"],
        w.alice.as_str(),
        "Argo's creator labels name the verified person"
    );
    assert_eq!(l["workflows.argoproj.io/creator-email"], "alice.at.example.com");
    // As the Argo Server writes a preferred username (argo-workflows creator.go dnsFriendly).
    assert_eq!(
        l["workflows.argoproj.io/creator-preferred-username"],
        "alice-example.com"
    );
    assert_eq!(l["scimgate.io/submitted-by"], "alice.at.example.com");
    assert!(!a.contains_key("scimgate.io/approved-by"), "forged approval stripped");
    assert_eq!(a["team"], "ml", "other annotations are left alone");
    assert_eq!(verified_by(&v, &stamped), vec!["submit by alice@example.com"]);

    // A metadata-only edit of the stamp (no action of a person): the mutating webhook puts it back.
    let edited = allowed(
        alice
            .edit(&stamped, |o| {
                o["metadata"]["annotations"]["scimgate.io/submitted-by"] = json!("bob@example.com");
                o["metadata"]["labels"]["scimgate.io/submitted-by"] = json!("bob.at.example.com");
                o["metadata"]["annotations"]["note"] = json!("edited");
            })
            .await,
    )
    .object;
    assert_eq!(ann(&edited, "scimgate.io/submitted-by"), "alice@example.com");
    assert_eq!(
        edited["metadata"]["labels"]["scimgate.io/submitted-by"],
        "alice.at.example.com"
    );
    assert_eq!(ann(&edited, "note"), "edited");

    // On a cluster where the mutating webhook is not registered (deleted, or skipped), the
    // validating webhook denies the same edit instead.
    let validating_only = ApiServer::validating_only(&w.s);
    let created = allowed(w.api.create(&person("alice@example.com"), workflow("team-a")).await).object;
    validating_only.put(created.clone());
    let mut forged = created.clone();
    forged["metadata"]["annotations"]["scimgate.io/submitted-by"] = json!("bob@example.com");
    let r = refused(validating_only.update(&person("alice@example.com"), forged).await);
    assert!(
        r.message.starts_with("admission webhook \"policy.scimgate.io\" denied the request: scimgate: the annotation scimgate.io/submitted-by was changed by hand"),
        "{}",
        r.message
    );
    let mut label = created.clone();
    label["metadata"]["labels"]["scimgate.io/submitted-by"] = json!("bob.at.example.com");
    let r = refused(validating_only.update(&person("alice@example.com"), label).await);
    assert!(
        r.message
            .contains("the label scimgate.io/submitted-by was changed by hand"),
        "{}",
        r.message
    );
    // And a copied stamp on a new object.
    let mut copy = created.clone();
    for k in ["name", "uid", "creationTimestamp", "resourceVersion", "generation"] {
        copy["metadata"].as_object_mut().map(|m| m.remove(k));
    }
    copy["metadata"]["generateName"] = json!("copy-");
    let r = refused(validating_only.create(&person("alice@example.com"), copy).await);
    assert!(
        r.message.contains("not a stamp scimgate made for this request"),
        "{}",
        r.message
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approvals_need_a_different_approver() {
    let w = World::new().await;
    let v = w.verifier().await;
    let pr = json!({"apiVersion": "tekton.dev/v1", "kind": "PipelineRun",
        "metadata": {"name": "release-1", "namespace": "team-a"},
        "spec": {"pipelineRef": {"name": "release"}, "status": "PipelineRunPending"}});
    let pr = allowed(kubectl(&w.api, "alice@example.com").create(&pr).await).object;
    // `kubectl patch --type json` removing spec.status starts the run: an approval.
    let start = json!([{"op": "remove", "path": "/spec/status"}]);
    let own = refused(
        kubectl(&w.api, "alice@example.com")
            .patch_json(&pr, start.clone())
            .await,
    );
    assert!(
        own.message.contains("may not approve") && own.message.contains("four eyes"),
        "{}",
        own.message
    );
    let approved = allowed(kubectl(&w.api, "bob@example.com").patch_json(&pr, start).await).object;
    assert_eq!(ann(&approved, "scimgate.io/approved-by"), "bob@example.com");
    assert_eq!(
        ann(&approved, "scimgate.io/submitted-by"),
        "alice@example.com",
        "the submit stamp stays"
    );
    assert_eq!(
        verified_by(&v, &approved),
        vec!["submit by alice@example.com", "approve by bob@example.com"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delegates_argo_server_labels_and_owner_stamps() {
    let w = World::new().await;
    let server = argo_server(&w.api);
    let wf = workflow("team-a");
    // The Argo Server submits for alice: her claims become the creator labels.
    let r = allowed(server.submit(&claims("abc123", "alice@example.com"), &wf).await);
    assert_eq!(ann(&r.object, "scimgate.io/submitted-by"), "alice@example.com");
    let r = refused(server.submit(&claims("m1", "mallory@example.com"), &wf).await);
    assert!(r.message.contains("not in a group allowed there"), "{}", r.message);
    // Creator labels from any other account are ignored.
    let mut labelled = wf.clone();
    labelled["metadata"]["labels"] = json!({"workflows.argoproj.io/creator-email": "alice.at.example.com"});
    let r = refused(w.api.create(&service_account("team-a", "default"), labelled).await);
    assert!(
        r.message
            .contains("system:serviceaccount:team-a:default may not submit"),
        "{}",
        r.message
    );

    // A CronWorkflow carries the stamp into the runs the controller starts.
    let cron = json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "CronWorkflow", "metadata": {"name": "nightly", "namespace": "team-a"},
        "spec": {"schedule": "0 1 * * *", "workflowSpec": {"entrypoint": "main", "templates": [{"name": "main", "container": {"image": "busybox"}}]}}});
    let cron = allowed(kubectl(&w.api, "alice@example.com").create(&cron).await).object;
    assert_eq!(
        cron["spec"]["workflowMetadata"]["annotations"]["scimgate.io/submitted-by"],
        "alice@example.com"
    );
    let controller = argo_controller(&w.api);
    let run = allowed(controller.spawn(&cron, chrono::Utc::now()).await).object;
    assert_eq!(ann(&run, "scimgate.io/submitted-by"), "alice@example.com");
    assert_eq!(
        run["metadata"]["labels"]["workflows.argoproj.io/cron-workflow"],
        "nightly"
    );
    let v = w.verifier().await;
    assert_eq!(verified_by(&v, &run), vec!["submit by alice@example.com"]);
    let plain = refused(w.api.create(&controller.user, workflow("team-a")).await);
    assert!(
        plain.message.contains("has no controller ownerReference"),
        "{}",
        plain.message
    );
    // Offboarded: the schedule stops starting runs.
    w.s.patch(
        &format!("/Users/{}", w.alice),
        ops(json!([{"op": "replace", "value": {"active": false}}])),
    )
    .await;
    let r = refused(
        controller
            .spawn(&cron, chrono::Utc::now() + chrono::Duration::hours(1))
            .await,
    );
    assert!(r.message.contains("deactivated"), "{}", r.message);
}

#[tokio::test]
async fn malformed_reviews_get_well_formed_answers() {
    // Bodies no API server sends: posted directly, to show a broken or hostile caller gets a
    // well-formed answer and the webhook stays up.
    let s = TestServer::start().await;
    let post = |body: String| {
        let c = s.client.clone();
        let url = format!("{}/validate", s.admission);
        async move {
            c.post(url)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .expect("send")
        }
    };
    assert_eq!(post("not json".into()).await.status(), reqwest::StatusCode::BAD_REQUEST);
    assert_eq!(
        post(json!({"kind": "Pod"}).to_string()).await.status(),
        reqwest::StatusCode::BAD_REQUEST
    );
    let r: Value = post(json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {"uid": "m1", "operation": "CREATE"}}).to_string())
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(
        (r["response"]["uid"].as_str(), r["response"]["allowed"].as_bool()),
        (Some("m1"), Some(false))
    );
    let review = |obj: Value| {
        json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
            "uid": "m2", "kind": {"group": "argoproj.io", "version": "v1alpha1", "kind": "Workflow"},
            "resource": {"group": "argoproj.io", "version": "v1alpha1", "resource": "workflows"},
            "namespace": "team-a", "operation": "CREATE", "userInfo": {"username": "oidc:alice@example.com"},
            "object": obj, "oldObject": null, "dryRun": false}})
        .to_string()
    };
    let r: Value = post(review(
        json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "Workflow", "spec": {}}),
    ))
    .await
    .json()
    .await
    .expect("json");
    assert!(
        r["response"]["status"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("no metadata")),
        "{r}"
    );
    let r: Value = post(review(json!("a string"))).await.json().await.expect("json");
    assert_eq!(r["response"]["allowed"], false, "{r}");
    let huge = json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {"uid": "m5", "x": "y".repeat(9 * 1024 * 1024)}});
    assert_eq!(
        post(huge.to_string()).await.status(),
        reqwest::StatusCode::PAYLOAD_TOO_LARGE
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_final_decision_is_recorded_once_and_dry_runs_leave_no_trace() {
    let w = World::new().await;
    let wf = workflow("team-a");
    // 1: allowed (recorded by the validating call, with the stamp's id).
    let ok = allowed(kubectl(&w.api, "alice@example.com").create(&wf).await).object;
    // 2: denied by the mutating call (final: validation never comes).
    refused(kubectl(&w.api, "mallory@example.com").create(&wf).await);
    // 3: allowed by /mutate, then denied by /validate: a webhook of another vendor that runs after
    // ours (and is re-invoked after ours) rewrites our annotation.
    let tampering = ApiServer::with_tamperer(&w.s);
    let r = refused(tampering.create(&person("alice@example.com"), wf.clone()).await);
    assert!(
        r.message.starts_with("admission webhook \"policy.scimgate.io\" denied"),
        "{}",
        r.message
    );
    // Not recorded: server-side dry run.
    let dry = allowed(kubectl(&w.api, "alice@example.com").create_dry_run(&wf).await);
    assert!(dry.object["metadata"]["resourceVersion"].is_null(), "nothing stored");
    let records = w.decisions(3).await;
    assert_eq!(records.len(), 3, "{records:#?}");
    let sid = w.verifier().await;
    let claims = scimgate::stamp::object::verified(&sid, &ok, scimgate::stamp::Entry::SUBMIT)
        .expect("stamp")
        .expect("verifies");
    assert_eq!(
        (
            records[0].hook.as_str(),
            records[0].outcome.as_str(),
            records[0].stamp_id.as_deref()
        ),
        ("validate", "allowed", Some(claims.sid.as_str()))
    );
    assert_eq!(
        (records[1].hook.as_str(), records[1].outcome.as_str()),
        ("mutate", "denied")
    );
    assert_eq!(
        (records[2].hook.as_str(), records[2].outcome.as_str()),
        ("validate", "denied")
    );
    assert!(records[2].reason.contains("altered"), "{}", records[2].reason);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tekton_child_task_runs_inherit_the_pipeline_run_stamp() {
    let w = World::new().await;
    let pr = json!({"apiVersion": "tekton.dev/v1", "kind": "PipelineRun", "metadata": {"name": "build-1", "namespace": "team-a",
            "annotations": {"chains.tekton.dev/signed": "true"}},
        "spec": {"pipelineRef": {"name": "build"}}});
    let pr = allowed(kubectl(&w.api, "alice@example.com").create(&pr).await).object;
    assert!(
        ann(&pr, "chains.tekton.dev/signed").is_null(),
        "Tekton's webhook strips it on create"
    );
    let ctl = tekton_controller(&w.api);
    let child = allowed(ctl.create_task_run(&pr, "compile", json!({"name": "compile"})).await).object;
    assert_eq!(ann(&child, "scimgate.io/submitted-by"), "alice@example.com");
    assert_eq!(
        child["metadata"]["labels"]["app.kubernetes.io/managed-by"],
        "tekton-pipelines"
    );
    let v = w.verifier().await;
    assert_eq!(verified_by(&v, &child), vec!["submit by alice@example.com"]);
    // The controller's status writes (the status subresource) and metadata syncs pass untouched.
    let before = ann(&child, "scimgate.io/attestation").clone();
    let s = allowed(
        ctl.set_status(
            &child,
            json!({"conditions": [{"type": "Succeeded", "status": "Unknown", "reason": "Running"}]}),
        )
        .await,
    );
    assert!(
        s.calls.iter().all(|c| !c.webhook.ends_with(".scimgate.io")),
        "status writes do not reach us"
    );
    assert_eq!(ann(&s.object, "scimgate.io/attestation"), &before);
    let m = allowed(ctl.sync_metadata(&pr).await);
    assert!(
        m.calls
            .iter()
            .all(|c| !c.webhook.ends_with(".scimgate.io") || c.webhook == "running.stamp.scimgate.io"),
        "a controller's metadata update reaches only the fail-open webhook, which keeps our keys: {:?}",
        m.calls
    );
    // A stamp altered after signing on the stored owner is not inherited.
    let mut forged_pr = pr.clone();
    forged_pr["metadata"]["name"] = json!("build-2");
    forged_pr["metadata"]["annotations"]["scimgate.io/submitted-by-id"] = json!(w.bob);
    w.api.put(forged_pr.clone());
    let f = refused(
        ctl.create_task_run(&forged_pr, "compile", json!({"name": "compile"}))
            .await,
    );
    assert!(
        f.message
            .contains("the stamp on its owner PipelineRun team-a/build-2 does not hold")
            && f.message.contains("altered"),
        "{}",
        f.message
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_file_changes_apply_without_restart_and_bad_ones_are_kept_out() {
    let w = World::with_config("policyReloadSeconds: 1\n").await;
    let policy = w.s.dir.path().join("policy.yaml");
    let wf = workflow("team-a");
    let alice = kubectl(&w.api, "alice@example.com");
    allowed(alice.create(&wf).await);
    std::fs::write(
        &policy,
        POLICY.replace(
            "groups: [pipeline-users]\n    namespaces: [\"team-*\", \"legacy-*\"]",
            "groups: [nobody-yet]\n    namespaces: [\"team-*\", \"legacy-*\"]",
        ),
    )
    .expect("rewrite");
    let mut denied = false;
    for _ in 0..50 {
        if alice.create(&wf).await.is_err() {
            denied = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert!(denied, "the changed policy took effect");
    std::fs::write(&policy, "apiVersion: scimgate.io/v1\nkind: Policy\nrules: [oops\n").expect("break");
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    refused(alice.create(&wf).await);
    let metrics = w.s.metrics().await;
    assert!(
        metrics.contains("scimgate_policy_reloads_total{outcome=\"failed\"}"),
        "{metrics}"
    );
    let ready = reqwest::get(format!("{}/readyz", w.s.ops))
        .await
        .expect("readyz")
        .status();
    assert_eq!(
        ready,
        reqwest::StatusCode::OK,
        "a bad policy file never takes readiness down"
    );
}
