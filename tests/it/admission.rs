//! The admission webhooks end to end: SCIM → directory → admission, over real TLS and HTTP/2
//! with the CA verified, as kube-apiserver calls them; every Argo and Tekton example of the
//! shared corpus goes through.

use crate::support::{ops, TestServer, GROUP};
use base64::Engine;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

pub const POLICY: &str = r#"
apiVersion: scimgate.io/v1
kind: Policy
mode: enforce
dryRunNamespaces: ["legacy-*"]
identity:
  usernamePrefix: "oidc:"
  matchAttribute: userName
  rewriteArgoCreatorLabels: true
  delegates:
    - serviceAccount: argo:argo-server
      via: argoCreatorLabels
    - serviceAccount: argo:argo-workflow-controller
      via: ownerStamp
    - serviceAccount: tekton-pipelines:tekton-pipelines-controller
      via: ownerStamp
rules:
  - name: team-submit
    allow: [submit, cancel, update]
    groups: [pipeline-users]
    namespaces: ["team-*", "legacy-*"]
  - name: team-approve
    allow: [approve]
    groups: [release-approvers]
    namespaces: ["team-*"]
    distinctApprover: true
"#;

/// A server with the test policy, alice (in `ml`, nested in `pipeline-users`), bob (an approver)
/// and mallory (in no group).
pub struct World {
    pub s: TestServer,
    pub alice: String,
    pub bob: String,
}

impl World {
    pub async fn new() -> World {
        let dir = tempfile::tempdir().expect("tempdir");
        let policy = dir.path().join("policy.yaml");
        std::fs::write(&policy, POLICY).expect("policy");
        let s = TestServer::start_in(dir, |a| a.policy = Some(policy)).await;
        let alice = s.create_user("alice@example.com").await;
        let bob = s.create_user("bob@example.com").await;
        s.create_user("mallory@example.com").await;
        let ml = s.create_group("ml", &[&alice]).await;
        s.create_group("pipeline-users", &[&ml, &bob]).await;
        s.create_group("release-approvers", &[&bob, &alice]).await;
        World { s, alice, bob }
    }

    /// POST an AdmissionReview to `/mutate` or `/validate`; returns the `response`.
    pub async fn review(&self, hook: &str, request: Value) -> Value {
        let body = json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request});
        let r = self
            .s
            .client
            .post(format!("{}/{hook}", self.s.admission))
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .expect("admission request");
        assert_eq!(r.version(), reqwest::Version::HTTP_2);
        assert_eq!(r.status(), reqwest::StatusCode::OK);
        let v: Value = r.json().await.expect("json");
        assert_eq!(v["kind"], "AdmissionReview");
        assert_eq!(v["response"]["uid"], request["uid"], "the uid is echoed");
        v["response"].clone()
    }
}

pub fn request(uid: &str, op: &str, user: &str, obj: &Value, old: Option<&Value>) -> Value {
    let api = obj["apiVersion"].as_str().unwrap_or_default();
    let (group, version) = api.split_once('/').unwrap_or(("", api));
    let ns = obj["metadata"]["namespace"].as_str().unwrap_or("team-a");
    json!({
        "uid": uid, "kind": {"group": group, "version": version, "kind": obj["kind"]},
        "resource": {"group": group, "version": version, "resource": "x"},
        "namespace": ns, "name": obj["metadata"]["name"], "operation": op,
        "userInfo": {"username": user, "groups": ["system:authenticated", "system:masters"]},
        "object": obj, "oldObject": old, "dryRun": false,
    })
}

/// Apply a response's JSON Patch to `obj`.
pub fn patched(obj: &Value, response: &Value) -> Value {
    let mut out = obj.clone();
    if let Some(p) = response["patch"].as_str() {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(p)
            .expect("base64 patch");
        let patch: json_patch::Patch = serde_json::from_slice(&bytes).expect("RFC 6902 patch");
        json_patch::patch(&mut out, &patch).expect("the patch applies");
    }
    out
}

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

use serde::Deserialize;

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

#[tokio::test]
async fn every_corpus_run_is_stamped_for_a_member_and_denied_for_others() {
    let w = World::new().await;
    let crds = Crds::load();
    // The schemas can fail: a broken Workflow and a CronWorkflow with a malformed workflowMetadata.
    let broken = json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "Workflow", "metadata": {"name": "x"}, "spec": {"templates": "not a list"}});
    assert_eq!(crds.valid(&broken), Some(false));
    let bad_meta = json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "CronWorkflow", "metadata": {"name": "x"}, "spec": {"schedule": "* * * * *", "workflowSpec": {}, "workflowMetadata": {"annotations": "no"}}});
    assert_eq!(crds.valid(&bad_meta), Some(false));
    let mut counts: std::collections::BTreeMap<String, usize> = Default::default();
    let mut schema_checked = 0;
    let mut malformed = Vec::new();
    for (n, (name, mut obj)) in runs().into_iter().enumerate() {
        obj["metadata"]["namespace"] = json!("team-a");
        let has_name = obj["metadata"]["name"].is_string() || obj["metadata"]["generateName"].is_string();
        let uid = format!("corpus-{n}");
        let resp = w
            .review("mutate", request(&uid, "CREATE", "oidc:alice@example.com", &obj, None))
            .await;
        if !has_name && obj["kind"] != "ClusterWorkflowTemplate" {
            assert_eq!(resp["allowed"], false, "{name}: a run without name or generateName");
            assert!(
                resp["status"]["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("neither metadata.name")),
                "{name}"
            );
            malformed.push(name);
            continue;
        }
        assert_eq!(resp["allowed"], true, "{name}: {resp}");
        let stamped = patched(&obj, &resp);
        let a = &stamped["metadata"]["annotations"];
        assert_eq!(a["scimgate.io/submitted-by"], "alice@example.com", "{name}");
        assert_eq!(a["scimgate.io/submitted-by-id"], w.alice.as_str(), "{name}");
        assert_eq!(a["scimgate.io/decision"], "allow:team-submit", "{name}");
        assert!(
            a["scimgate.io/attestation"]
                .as_str()
                .is_some_and(|j| j.split('.').count() == 3),
            "{name}"
        );
        assert_eq!(
            stamped["metadata"]["labels"]["scimgate.io/submitted-by"], "alice.at.example.com",
            "{name}"
        );
        // Our patch never makes a schema-valid object invalid.
        match (crds.valid(&obj), crds.valid(&stamped)) {
            (Some(true), Some(after)) => {
                assert!(after, "{name}: valid against its CRD before the stamp, invalid after");
                schema_checked += 1;
            }
            (None, _) => panic!("{name}: no CRD schema for it in the corpus"),
            _ => {}
        }
        // The API server re-invokes the mutating webhook: our own stamp changes nothing.
        let again = w
            .review(
                "mutate",
                request(&uid, "CREATE", "oidc:alice@example.com", &stamped, None),
            )
            .await;
        assert!(again["patch"].is_null(), "{name}: second pass patched again");
        assert_eq!(resp["auditAnnotations"]["decision"], "allow", "{name}");
        assert_eq!(resp["auditAnnotations"]["rule"], "team-submit", "{name}");
        assert_eq!(resp["auditAnnotations"]["user-id"], w.alice.as_str(), "{name}");
        let valid = w
            .review(
                "validate",
                request(&uid, "CREATE", "oidc:alice@example.com", &stamped, None),
            )
            .await;
        assert_eq!(valid["allowed"], true, "{name}: {valid}");
        let denied = w
            .review(
                "validate",
                request(&uid, "CREATE", "oidc:mallory@example.com", &obj, None),
            )
            .await;
        assert_eq!(denied["allowed"], false, "{name}");
        assert_eq!(denied["status"]["code"], 403);
        let msg = denied["status"]["message"].as_str().unwrap_or_default();
        assert!(
            msg.starts_with("scimgate: oidc:mallory@example.com may not submit")
                && msg.contains("not in a group allowed there"),
            "{name}: {msg}"
        );
        *counts
            .entry(format!(
                "{} {}",
                obj["apiVersion"].as_str().unwrap_or_default(),
                obj["kind"].as_str().unwrap_or_default()
            ))
            .or_default() += 1;
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
    assert_eq!(malformed.len(), 2, "fun-with-gifs and k8s-jobs: {malformed:?}");
}

pub fn workflow(ns: &str) -> Value {
    json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "Workflow",
        "metadata": {"generateName": "hello-", "namespace": ns},
        "spec": {"entrypoint": "main", "templates": [{"name": "main", "container": {"image": "busybox"}}]}})
}

#[tokio::test]
async fn deactivation_through_scim_denies_the_very_next_review() {
    let w = World::new().await;
    let wf = workflow("team-a");
    let ok = w
        .review("validate", request("d1", "CREATE", "oidc:alice@example.com", &wf, None))
        .await;
    assert_eq!(ok["allowed"], true);
    let r =
        w.s.patch(
            &format!("/Users/{}", w.alice),
            ops(json!([{"op": "replace", "value": {"active": false}}])),
        )
        .await;
    assert_eq!(r.status, reqwest::StatusCode::OK);
    let no = w
        .review("validate", request("d2", "CREATE", "oidc:alice@example.com", &wf, None))
        .await;
    assert_eq!(no["allowed"], false);
    assert!(
        no["status"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("deactivated in the identity provider")),
        "{no}"
    );
    assert_eq!(
        w.s.delete(&format!("/Users/{}", w.alice)).await.status,
        reqwest::StatusCode::NO_CONTENT
    );
    let gone = w
        .review("validate", request("d3", "CREATE", "oidc:alice@example.com", &wf, None))
        .await;
    assert!(
        gone["status"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("was deleted")),
        "{gone}"
    );
    let stranger = w
        .review("validate", request("d4", "CREATE", "kubernetes-admin", &wf, None))
        .await;
    assert!(
        stranger["status"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("no 'oidc:' prefix")),
        "{stranger}"
    );
    // Removing bob from the group takes effect at once as well.
    let pu =
        w.s.get(&format!(
            "/Groups?filter={}",
            crate::support::enc("displayName eq \"pipeline-users\"")
        ))
        .await;
    let gid = pu.body["Resources"][0]["id"].as_str().unwrap_or_default().to_string();
    let ok = w
        .review("validate", request("d5", "CREATE", "oidc:bob@example.com", &wf, None))
        .await;
    assert_eq!(ok["allowed"], true);
    w.s.patch(
        &format!("/Groups/{gid}"),
        ops(json!([{"op": "remove", "path": format!("members[value eq \"{}\"]", w.bob)}])),
    )
    .await;
    let no = w
        .review("validate", request("d6", "CREATE", "oidc:bob@example.com", &wf, None))
        .await;
    assert_eq!(no["allowed"], false);
    let _ = GROUP;
}

#[tokio::test]
async fn dry_run_namespaces_warn_instead_of_denying() {
    let w = World::new().await;
    let r = w
        .review(
            "validate",
            request(
                "dr",
                "CREATE",
                "oidc:mallory@example.com",
                &workflow("legacy-billing"),
                None,
            ),
        )
        .await;
    assert_eq!(r["allowed"], true);
    let warning = r["warnings"][0].as_str().unwrap_or_default();
    assert!(
        warning.starts_with("scimgate dry-run: would deny:") && warning.len() <= 120,
        "{warning}"
    );
    assert_eq!(r["auditAnnotations"]["decision"], "dry-run-deny");
    assert!(r["auditAnnotations"]["decision-id"]
        .as_str()
        .is_some_and(|d| d.len() == 36));
    assert!(
        r["auditAnnotations"]
            .as_object()
            .into_iter()
            .flatten()
            .all(|(k, _)| !k.contains('/')),
        "keys are bare names; the API server adds the webhook's name as prefix"
    );
}

#[tokio::test]
async fn forged_stamps_are_stripped_and_edits_denied() {
    let w = World::new().await;
    let mut wf = workflow("team-a");
    wf["metadata"]["annotations"] = json!({"scimgate.io/submitted-by": "ceo@example.com", "scimgate.io/approved-by": "ceo@example.com", "team": "ml"});
    wf["metadata"]["labels"] =
        json!({"workflows.argoproj.io/creator": "ceo", "workflows.argoproj.io/creator-email": "ceo.at.example.com"});
    let resp = w
        .review("mutate", request("f1", "CREATE", "oidc:alice@example.com", &wf, None))
        .await;
    let stamped = patched(&wf, &resp);
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
    assert_eq!(
        l["workflows.argoproj.io/creator-preferred-username"],
        "alice.at.example.com"
    );
    assert!(!a.contains_key("scimgate.io/approved-by"), "forged approval stripped");
    assert_eq!(a["team"], "ml", "other annotations are left alone");
    // A stamp copied onto another new object is not accepted by the validating webhook.
    let copy = w
        .review(
            "validate",
            request("f2", "CREATE", "oidc:alice@example.com", &stamped, None),
        )
        .await;
    assert_eq!(
        copy["allowed"], false,
        "a stamp made for another request is not this request's: {copy}"
    );
    let restamp = w
        .review(
            "mutate",
            request("f2", "CREATE", "oidc:alice@example.com", &stamped, None),
        )
        .await;
    let fresh = patched(&stamped, &restamp);
    assert_ne!(
        fresh["metadata"]["annotations"]["scimgate.io/attestation"],
        stamped["metadata"]["annotations"]["scimgate.io/attestation"]
    );
    let ok = w
        .review(
            "validate",
            request("f2", "CREATE", "oidc:alice@example.com", &fresh, None),
        )
        .await;
    assert_eq!(
        ok["allowed"], true,
        "restamped by the mutating webhook for this request: {ok}"
    );
    let mut edited = stamped.clone();
    edited["metadata"]["annotations"]["scimgate.io/submitted-by"] = json!("bob@example.com");
    edited["metadata"]["labels"] = json!({"x": "y"});
    let r = w
        .review(
            "validate",
            request("f3", "UPDATE", "oidc:alice@example.com", &edited, Some(&stamped)),
        )
        .await;
    assert_eq!(r["allowed"], false);
    assert!(
        r["status"]["message"].as_str().is_some_and(|m| m.contains("cannot be")),
        "{r}"
    );
    // The mutating webhook restores it on a metadata-only update.
    let m = w
        .review(
            "mutate",
            request("f4", "UPDATE", "oidc:alice@example.com", &edited, Some(&stamped)),
        )
        .await;
    let restored = patched(&edited, &m);
    assert_eq!(restored["metadata"]["annotations"], stamped["metadata"]["annotations"]);
}

#[tokio::test]
async fn approvals_need_a_different_approver() {
    let w = World::new().await;
    let mut pr = json!({"apiVersion": "tekton.dev/v1", "kind": "PipelineRun",
        "metadata": {"name": "release-1", "namespace": "team-a"},
        "spec": {"pipelineRef": {"name": "release"}, "status": "PipelineRunPending"}});
    let resp = w
        .review("mutate", request("a1", "CREATE", "oidc:alice@example.com", &pr, None))
        .await;
    pr = patched(&pr, &resp);
    let mut started = pr.clone();
    started["spec"].as_object_mut().map(|s| s.remove("status"));
    let own = w
        .review(
            "validate",
            request("a2", "UPDATE", "oidc:alice@example.com", &started, Some(&pr)),
        )
        .await;
    assert_eq!(own["allowed"], false);
    assert!(
        own["status"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("may not approve") && m.contains("four eyes")),
        "{own}"
    );
    let m = w
        .review(
            "mutate",
            request("a3", "UPDATE", "oidc:bob@example.com", &started, Some(&pr)),
        )
        .await;
    assert_eq!(m["allowed"], true, "{m}");
    let approved = patched(&started, &m);
    let a = &approved["metadata"]["annotations"];
    assert_eq!(a["scimgate.io/approved-by"], "bob@example.com");
    assert_eq!(
        a["scimgate.io/submitted-by"], "alice@example.com",
        "the submit stamp stays"
    );
    let v = w
        .review(
            "validate",
            request("a3", "UPDATE", "oidc:bob@example.com", &approved, Some(&pr)),
        )
        .await;
    assert_eq!(
        v["allowed"], true,
        "our own approval stamp for this request passes: {v}"
    );
    let replay = w
        .review(
            "validate",
            request("a4", "UPDATE", "oidc:bob@example.com", &approved, Some(&pr)),
        )
        .await;
    assert_eq!(
        replay["allowed"], false,
        "an approval stamp from another request is refused"
    );
}

#[tokio::test]
async fn delegates_argo_server_labels_and_owner_stamps() {
    let w = World::new().await;
    let mut wf = workflow("team-a");
    wf["metadata"]["labels"] = json!({"workflows.argoproj.io/creator": "abc123", "workflows.argoproj.io/creator-email": "alice.at.example.com"});
    let r = w
        .review(
            "mutate",
            request("g1", "CREATE", "system:serviceaccount:argo:argo-server", &wf, None),
        )
        .await;
    assert_eq!(r["allowed"], true, "{r}");
    assert_eq!(
        patched(&wf, &r)["metadata"]["annotations"]["scimgate.io/submitted-by"],
        "alice@example.com"
    );
    wf["metadata"]["labels"]["workflows.argoproj.io/creator-email"] = json!("mallory.at.example.com");
    let r = w
        .review(
            "validate",
            request("g2", "CREATE", "system:serviceaccount:argo:argo-server", &wf, None),
        )
        .await;
    assert_eq!(r["allowed"], false);
    let r = w
        .review(
            "validate",
            request("g3", "CREATE", "system:serviceaccount:team-a:default", &wf, None),
        )
        .await;
    assert_eq!(r["allowed"], false, "creator labels from any other account are ignored");

    // A CronWorkflow carries the stamp into the runs it starts.
    let cron = json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "CronWorkflow", "metadata": {"name": "nightly", "namespace": "team-a"},
        "spec": {"schedule": "0 1 * * *", "workflowSpec": {"entrypoint": "main", "templates": [{"name": "main", "container": {"image": "busybox"}}]}}});
    let r = w
        .review("mutate", request("c1", "CREATE", "oidc:alice@example.com", &cron, None))
        .await;
    let cron = patched(&cron, &r);
    let inherited = cron["spec"]["workflowMetadata"]["annotations"].clone();
    assert_eq!(inherited["scimgate.io/submitted-by"], "alice@example.com");
    let mut spawned = workflow("team-a");
    spawned["metadata"]["annotations"] = inherited;
    let r = w
        .review(
            "mutate",
            request(
                "c2",
                "CREATE",
                "system:serviceaccount:argo:argo-workflow-controller",
                &spawned,
                None,
            ),
        )
        .await;
    assert_eq!(r["allowed"], true, "{r}");
    let run = patched(&spawned, &r);
    assert_eq!(
        run["metadata"]["annotations"]["scimgate.io/submitted-by"],
        "alice@example.com"
    );
    let plain = w
        .review(
            "validate",
            request(
                "c3",
                "CREATE",
                "system:serviceaccount:argo:argo-workflow-controller",
                &workflow("team-a"),
                None,
            ),
        )
        .await;
    assert_eq!(plain["allowed"], false, "a controller create without its owner's stamp");
    // Offboarded: the schedule stops starting runs.
    w.s.patch(
        &format!("/Users/{}", w.alice),
        ops(json!([{"op": "replace", "value": {"active": false}}])),
    )
    .await;
    let r = w
        .review(
            "mutate",
            request(
                "c4",
                "CREATE",
                "system:serviceaccount:argo:argo-workflow-controller",
                &spawned,
                None,
            ),
        )
        .await;
    assert_eq!(r["allowed"], false);
    assert!(
        r["status"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("deactivated")),
        "{r}"
    );
}

#[tokio::test]
async fn malformed_reviews_get_well_formed_answers() {
    let w = World::new().await;
    let post = |body: String| {
        let c = w.s.client.clone();
        let url = format!("{}/validate", w.s.admission);
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
    let no_meta = json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "Workflow", "spec": {}});
    let r = w
        .review(
            "validate",
            request("m2", "CREATE", "oidc:alice@example.com", &no_meta, None),
        )
        .await;
    assert!(
        r["status"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("no metadata")),
        "{r}"
    );
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}});
    let r = w
        .review("validate", request("m3", "CREATE", "anyone", &pod, None))
        .await;
    assert_eq!(r["allowed"], true, "other kinds are not ours");
    let r: Value = post(json!({"apiVersion": "admission.k8s.io/v1beta1", "kind": "AdmissionReview", "request": request("m4", "CREATE", "oidc:alice@example.com", &workflow("team-a"), None)}).to_string())
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(
        (r["apiVersion"].as_str(), r["response"]["allowed"].as_bool()),
        (Some("admission.k8s.io/v1beta1"), Some(true))
    );
    let huge = json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {"uid": "m5", "x": "y".repeat(9 * 1024 * 1024)}});
    assert_eq!(
        post(huge.to_string()).await.status(),
        reqwest::StatusCode::PAYLOAD_TOO_LARGE
    );
}

#[tokio::test]
async fn every_final_decision_is_recorded_once_and_dry_runs_leave_no_trace() {
    let w = World::new().await;
    let wf = workflow("team-a");
    w.review("mutate", request("r1", "CREATE", "oidc:alice@example.com", &wf, None))
        .await; // allowed mutate: validate follows
    w.review("validate", request("r1", "CREATE", "oidc:alice@example.com", &wf, None))
        .await;
    w.review("mutate", request("r2", "CREATE", "oidc:mallory@example.com", &wf, None))
        .await; // denied at mutate: final
    w.review(
        "validate",
        request("r3", "CREATE", "oidc:mallory@example.com", &wf, None),
    )
    .await;
    let mut dry = request("r4", "CREATE", "oidc:alice@example.com", &wf, None);
    dry["dryRun"] = json!(true);
    let r = w.review("validate", dry).await;
    assert_eq!(r["allowed"], true, "kubectl --dry-run=server gets the real answer");
    let store = scimgate::store::embedded::Embedded::open(w.s.dir.path())
        .await
        .expect("store");
    use scimgate::store::Store;
    let mut n = 0;
    for _ in 0..100 {
        n = store.decision_count().await.expect("count");
        if n >= 3 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(
        store.decision_count().await.expect("count"),
        3,
        "r1 (validate), r2 (mutate deny), r3 (validate); not r4: {n}"
    );
}

#[tokio::test]
async fn tekton_child_task_runs_inherit_the_pipeline_run_stamp() {
    let w = World::new().await;
    let pr = json!({"apiVersion": "tekton.dev/v1", "kind": "PipelineRun", "metadata": {"name": "build-1", "namespace": "team-a"},
        "spec": {"pipelineRef": {"name": "build"}}});
    let r = w
        .review("mutate", request("t1", "CREATE", "oidc:alice@example.com", &pr, None))
        .await;
    let pr = patched(&pr, &r);
    // The Tekton controller copies the PipelineRun's annotations onto the TaskRuns it creates.
    let tr = json!({"apiVersion": "tekton.dev/v1", "kind": "TaskRun",
        "metadata": {"name": "build-1-compile", "namespace": "team-a", "annotations": pr["metadata"]["annotations"]},
        "spec": {"taskRef": {"name": "compile"}}});
    let ctl = "system:serviceaccount:tekton-pipelines:tekton-pipelines-controller";
    let m = w.review("mutate", request("t2", "CREATE", ctl, &tr, None)).await;
    assert_eq!(m["allowed"], true, "{m}");
    let child = patched(&tr, &m);
    assert_eq!(
        child["metadata"]["annotations"]["scimgate.io/submitted-by"],
        "alice@example.com"
    );
    let v = w.review("validate", request("t2", "CREATE", ctl, &child, None)).await;
    assert_eq!(v["allowed"], true, "{v}");
    // The controller's own status updates pass without rules.
    let mut running = child.clone();
    running["status"] = json!({"conditions": [{"type": "Succeeded", "status": "Unknown"}]});
    let u = w
        .review("validate", request("t3", "UPDATE", ctl, &running, Some(&child)))
        .await;
    assert_eq!(u["allowed"], true, "{u}");
    // A stamp that was altered after signing is not inherited.
    let mut forged = tr.clone();
    forged["metadata"]["annotations"]["scimgate.io/submitted-by-id"] = json!(w.bob);
    let f = w.review("mutate", request("t4", "CREATE", ctl, &forged, None)).await;
    assert_eq!(f["allowed"], false, "{f}");
}

#[tokio::test]
async fn policy_file_changes_apply_without_restart_and_bad_ones_are_kept_out() {
    let dir = tempfile::tempdir().expect("tempdir");
    let policy = dir.path().join("policy.yaml");
    std::fs::write(&policy, POLICY).expect("policy");
    let config = dir.path().join("config.yaml");
    std::fs::write(&config, "policyReloadSeconds: 1\n").expect("config");
    let p = policy.clone();
    let s = TestServer::start_in(dir, |a| {
        a.policy = Some(p);
        a.config = Some(config);
    })
    .await;
    let alice = s.create_user("alice@example.com").await;
    s.create_group("pipeline-users", &[&alice]).await;
    let w = World {
        alice,
        bob: String::new(),
        s,
    };
    let wf = workflow("team-a");
    let allowed = w
        .review("validate", request("p1", "CREATE", "oidc:alice@example.com", &wf, None))
        .await;
    assert_eq!(allowed["allowed"], true);
    std::fs::write(&policy, POLICY.replace("[pipeline-users]", "[nobody-yet]")).expect("rewrite");
    let mut denied = false;
    for i in 0..50 {
        let r = w
            .review(
                "validate",
                request(&format!("p2-{i}"), "CREATE", "oidc:alice@example.com", &wf, None),
            )
            .await;
        if r["allowed"] == false {
            denied = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert!(denied, "the changed policy took effect");
    std::fs::write(&policy, "apiVersion: scimgate.io/v1\nkind: Policy\nrules: [oops\n").expect("break");
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    let r = w
        .review("validate", request("p3", "CREATE", "oidc:alice@example.com", &wf, None))
        .await;
    assert_eq!(r["allowed"], false, "the last good policy still applies");
    let metrics = reqwest::get(format!("{}/metrics", w.s.ops))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
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
