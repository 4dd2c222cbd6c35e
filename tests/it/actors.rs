//! The clients that write Argo and Tekton objects on a real cluster, played against the API-server
//! emulator the way their sources show they write: kubectl (and Argo CD, which applies the same
//! way), the Argo Server, the Argo workflow-controller and the Tekton controller. Each write cites
//! the upstream code it follows.

use crate::apiserver::{person, service_account, ApiServer, Outcome, Patch, User};
use serde_json::{json, Map, Value};

/// `kubectl` as one user.
pub struct Kubectl<'a> {
    pub api: &'a ApiServer,
    pub user: User,
}

pub fn kubectl<'a>(api: &'a ApiServer, who: &str) -> Kubectl<'a> {
    Kubectl { api, user: person(who) }
}

/// The annotation `kubectl apply` keeps the last applied manifest in.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

impl Kubectl<'_> {
    /// `kubectl create -f`.
    pub async fn create(&self, obj: &Value) -> Outcome {
        self.api.create(&self.user, obj.clone()).await
    }

    /// `kubectl delete` (foreground or background alike: one DELETE request).
    /// `kubectl delete --cascade=foreground`: `propagationPolicy: Foreground`.
    pub async fn delete_foreground(&self, obj: &Value) -> Outcome {
        self.api.delete_propagating(&self.user, obj, Some("Foreground")).await
    }

    pub async fn delete(&self, obj: &Value) -> Outcome {
        self.api.delete(&self.user, obj).await
    }

    /// `kubectl create --dry-run=server -f`.
    pub async fn create_dry_run(&self, obj: &Value) -> Outcome {
        self.api.create_dry_run(&self.user, obj.clone()).await
    }

    /// `kubectl apply -f` (client-side apply): create with the manifest recorded in
    /// `last-applied-configuration`, or a three-way JSON merge patch against the live object —
    /// custom resources have no strategic-merge schema (k8s.io/kubectl `pkg/cmd/apply/patcher.go`
    /// `buildMergePatch`; k8s.io/apimachinery `pkg/util/jsonmergepatch/patch.go`
    /// `CreateThreeWayJSONMergePatch`).
    pub async fn apply(&self, manifest: &Value) -> Outcome {
        let mut modified = manifest.clone();
        let recorded = manifest.to_string();
        if !modified["metadata"]["annotations"].is_object() {
            modified["metadata"]["annotations"] = json!({});
        }
        modified["metadata"]["annotations"][LAST_APPLIED] = json!(recorded);
        let Some(live) = self.api.stored(manifest) else {
            return self.api.create(&self.user, modified).await;
        };
        let original: Value = live["metadata"]["annotations"][LAST_APPLIED]
            .as_str()
            .and_then(|s| serde_json::from_str(s).ok())
            .unwrap_or(json!({}));
        let mut patch = deletions(&original, &modified);
        json_patch::merge(&mut patch, &changes(&live, &modified));
        if patch.as_object().is_some_and(Map::is_empty) {
            return Ok(crate::apiserver::Written {
                object: live,
                ..Default::default()
            });
        }
        self.api.patch(&self.user, manifest, Patch::Merge(patch)).await
    }

    /// `kubectl edit`: read the live object, change it, `PUT` it back.
    pub async fn edit(&self, target: &Value, change: impl FnOnce(&mut Value)) -> Outcome {
        let mut live = self.api.stored(target).expect("the object exists");
        change(&mut live);
        self.api.update(&self.user, live).await
    }

    /// `kubectl patch --type merge -p …`.
    pub async fn patch_merge(&self, target: &Value, patch: Value) -> Outcome {
        self.api.patch(&self.user, target, Patch::Merge(patch)).await
    }

    /// `kubectl patch --type json -p …`.
    pub async fn patch_json(&self, target: &Value, ops: Value) -> Outcome {
        let ops = ops.as_array().cloned().unwrap_or_default();
        self.api.patch(&self.user, target, Patch::Json(ops)).await
    }
}

/// Keys `original` had that `modified` no longer has, set to null (merge-patch deletions).
fn deletions(original: &Value, modified: &Value) -> Value {
    let mut out = Map::new();
    if let (Some(o), Some(m)) = (original.as_object(), modified.as_object()) {
        for (k, ov) in o {
            match m.get(k) {
                None => {
                    out.insert(k.clone(), Value::Null);
                }
                Some(mv) if ov.is_object() && mv.is_object() => {
                    let d = deletions(ov, mv);
                    if d.as_object().is_some_and(|d| !d.is_empty()) {
                        out.insert(k.clone(), d);
                    }
                }
                _ => {}
            }
        }
    }
    Value::Object(out)
}

/// What `modified` sets differently from `current` (merge-patch additions and changes).
fn changes(current: &Value, modified: &Value) -> Value {
    let mut out = Map::new();
    if let Some(m) = modified.as_object() {
        for (k, mv) in m {
            match current.get(k) {
                Some(cv) if cv == mv => {}
                Some(cv) if cv.is_object() && mv.is_object() => {
                    let c = changes(cv, mv);
                    if c.as_object().is_some_and(|c| !c.is_empty()) {
                        out.insert(k.clone(), c);
                    }
                }
                _ => {
                    out.insert(k.clone(), mv.clone());
                }
            }
        }
    }
    Value::Object(out)
}

/// Argo CD's application controller syncing from git: client-side apply, as kubectl does
/// (argo-cd `gitops-engine` `pkg/sync/sync_context.go` → kubectl apply), under its own service
/// account.
/// kube-controller-manager's garbage collector (`pkg/controller/garbagecollector`): with
/// `--use-service-account-credentials` (kubeadm, managed clusters) its own service account.
pub struct GarbageCollector<'a> {
    pub api: &'a ApiServer,
    pub user: User,
}

pub fn garbage_collector(api: &ApiServer) -> GarbageCollector<'_> {
    GarbageCollector {
        api,
        user: service_account("kube-system", "generic-garbage-collector"),
    }
}

impl GarbageCollector<'_> {
    /// `removeFinalizer`: a JSON merge patch of the remaining finalizers, with the resource version
    /// read (`ObjectMetaForFinalizersPatch`: `finalizers` without omitempty, so `null` when none is
    /// left — and the update that empties them deletes the object).
    pub async fn remove_finalizer(&self, target: &Value, finalizer: &str) -> Outcome {
        let stored = self.api.stored(target).expect("the object exists");
        let rest: Vec<Value> = stored["metadata"]["finalizers"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|f| f.as_str() != Some(finalizer))
            .cloned()
            .collect();
        let finalizers = if rest.is_empty() { Value::Null } else { json!(rest) };
        let patch =
            json!({"metadata": {"resourceVersion": stored["metadata"]["resourceVersion"], "finalizers": finalizers}});
        self.api.patch(&self.user, &stored, Patch::Merge(patch)).await
    }
}

pub fn argo_cd(api: &ApiServer) -> Kubectl<'_> {
    Kubectl {
        api,
        user: service_account("argocd", "argocd-application-controller"),
    }
}

/// The claims of the person signed in to the Argo Server (its `auth-mode=client|sso`).
#[derive(Debug, Clone)]
pub struct Claims {
    pub sub: String,
    pub email: String,
    pub preferred_username: String,
}

pub fn claims(sub: &str, email: &str) -> Claims {
    Claims {
        sub: sub.into(),
        email: email.into(),
        preferred_username: email.split('@').next().unwrap_or_default().into(),
    }
}

/// argo-workflows `workflow/creator/creator.go` `dnsFriendly`: every character outside
/// `[-_.a-zA-Z0-9]` becomes `-`, over 63 characters the last 63 are kept, then non-alphanumerics
/// are trimmed from both ends.
pub fn dns_friendly(s: &str) -> String {
    let mapped: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '-'
            }
        })
        .collect();
    let n = mapped.chars().count();
    let kept: String = mapped.chars().skip(n.saturating_sub(63)).collect();
    kept.trim_matches(|c: char| !c.is_ascii_alphanumeric()).to_string()
}

const CREATOR: [&str; 3] = [
    "workflows.argoproj.io/creator",
    "workflows.argoproj.io/creator-email",
    "workflows.argoproj.io/creator-preferred-username",
];
const ACTOR: [&str; 3] = [
    "workflows.argoproj.io/actor",
    "workflows.argoproj.io/actor-email",
    "workflows.argoproj.io/actor-preferred-username",
];
const ACTION: &str = "workflows.argoproj.io/action";

/// creator.go `Label`: each non-empty claim set (dnsFriendly; the email's first `@` as `.at.`),
/// an empty one removed; the action label set, or removed when there is none.
fn label(obj: &mut Value, c: &Claims, keys: [&str; 3], action: &str) {
    if !obj["metadata"]["labels"].is_object() {
        obj["metadata"]["labels"] = json!({});
    }
    let labels = obj["metadata"]["labels"].as_object_mut().expect("labels");
    let values = [
        c.sub.clone(),
        c.email.replacen('@', ".at.", 1),
        c.preferred_username.clone(),
    ];
    for (k, v) in keys.iter().zip(values) {
        if v.is_empty() {
            labels.remove(*k);
        } else {
            let v = dns_friendly(&v);
            if !v.is_empty() {
                labels.insert((*k).into(), json!(v));
            }
        }
    }
    if action.is_empty() {
        labels.remove(ACTION);
    } else {
        labels.insert(ACTION.into(), json!(dns_friendly(action)));
    }
}

/// The Argo Server, calling the API server under its own service account (`argo:argo-server`)
/// for the person whose claims it holds.
pub struct ArgoServer<'a> {
    pub api: &'a ApiServer,
    pub user: User,
}

pub fn argo_server(api: &ApiServer) -> ArgoServer<'_> {
    ArgoServer {
        api,
        user: service_account("argo", "argo-server"),
    }
}

/// The Argo Server with SSO and RBAC: it calls the API server with the token of the service
/// account whose `workflows.argoproj.io/rbac-rule` matched the person's claims
/// (`server/auth/gatekeeper.go` `rbacAuthorization`, `getServiceAccount`).
pub fn argo_server_sso_rbac<'a>(api: &'a ApiServer, namespace: &str, account: &str) -> ArgoServer<'a> {
    ArgoServer {
        api,
        user: service_account(namespace, account),
    }
}

/// The Argo Server in `auth-mode=client`: it calls the API server with the person's own token
/// (`gatekeeper.go` `DefaultClientForAuthorization`), and still writes the creator and actor
/// labels from that token's claims.
pub fn argo_server_client<'a>(api: &'a ApiServer, who: &str) -> ArgoServer<'a> {
    ArgoServer { api, user: person(who) }
}

impl ArgoServer<'_> {
    /// `workflow/util/util.go` `FormulateResubmitWorkflow`, then `SubmitWorkflow`: a new Workflow
    /// of the old one's spec (`shutdown` cleared), every old label but the creator's, phase,
    /// completed and archiving ones (so the previous actor's labels come along), every annotation,
    /// the ownerReferences, `resubmitted-from-workflow`, then `LabelCreator`; with `memoized`, the
    /// name generated here and the status carried: nodes that succeeded Skipped, the stored
    /// templates copied.
    pub async fn resubmit(&self, c: &Claims, target: &Value, memoized: bool) -> Outcome {
        let old = self.api.stored(target).expect("the workflow exists");
        let name = old["metadata"]["name"].as_str().unwrap_or_default();
        let generate = old["metadata"]["generateName"]
            .as_str()
            .map(String::from)
            .unwrap_or_else(|| format!("{name}-"));
        let mut labels = old["metadata"]["labels"].as_object().cloned().unwrap_or_default();
        for k in CREATOR.iter().copied().chain([
            "workflows.argoproj.io/phase",
            "workflows.argoproj.io/completed",
            "workflows.argoproj.io/workflow-archiving-status",
        ]) {
            labels.remove(k);
        }
        labels.insert("workflows.argoproj.io/resubmitted-from-workflow".into(), json!(name));
        let mut spec = old["spec"].clone();
        spec.as_object_mut().map(|s| s.remove("shutdown"));
        let mut wf = json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "Workflow",
            "metadata": {"generateName": generate, "namespace": old["metadata"]["namespace"],
                "labels": labels, "annotations": old["metadata"]["annotations"].clone()},
            "spec": spec});
        if let Some(refs) = old["metadata"].get("ownerReferences") {
            wf["metadata"]["ownerReferences"] = refs.clone();
        }
        if memoized {
            wf["metadata"]["name"] = json!(crate::apiserver::generate_name(&generate));
            let mut nodes = Map::new();
            for (id, n) in old["status"]["nodes"].as_object().into_iter().flatten() {
                let mut n = n.clone();
                if n["phase"] == "Succeeded" && n["type"] == "Pod" {
                    n["phase"] = json!("Skipped");
                    n["type"] = json!("Skipped");
                    n["message"] = json!(format!("original pod: {id}"));
                } else {
                    n["phase"] = json!("Pending");
                }
                nodes.insert(id.replace(name, wf["metadata"]["name"].as_str().unwrap_or_default()), n);
            }
            wf["status"] = json!({"phase": "", "nodes": nodes,
                "conditions": [{"type": "Completed", "status": "False"}]});
            if let Some(t) = old["status"].get("storedTemplates") {
                wf["status"]["storedTemplates"] = t.clone();
            }
        }
        label(&mut wf, c, CREATOR, "");
        self.api.create(&self.user, wf).await
    }

    /// `workflow/util/util.go` `FormulateRetryWorkflow` via `server/workflow/workflow_server.go`
    /// `RetryWorkflow`: the failed nodes deleted, the phase and message cleared, `completed`
    /// removed, `shutdown` cleared, the actor labels with action Retry, one full Update.
    pub async fn retry(&self, c: &Claims, target: &Value) -> Outcome {
        let mut wf = self.api.stored(target).expect("the workflow exists");
        wf["spec"].as_object_mut().map(|s| s.remove("shutdown"));
        if let Some(nodes) = wf["status"]["nodes"].as_object_mut() {
            nodes.retain(|_, n| !matches!(n["phase"].as_str(), Some("Failed" | "Error")));
            for n in nodes.values_mut() {
                if n["type"] != "Pod" {
                    n["phase"] = json!("Running");
                    n.as_object_mut().map(|o| o.remove("finishedAt"));
                }
            }
        }
        wf["status"]["phase"] = json!("");
        wf["status"]["message"] = json!("");
        wf["status"]["startedAt"] = json!(now());
        wf["metadata"]["labels"]
            .as_object_mut()
            .map(|l| l.remove("workflows.argoproj.io/completed"));
        label(&mut wf, c, ACTOR, "Retry");
        self.api.update(&self.user, wf).await
    }

    /// util.go `SetWorkflow` → `updateSuspendedNode` with `ActionNone` (`argo node set`): the
    /// matching active Suspend node's phase and message set, the actor labels written and the
    /// action label removed, a full Update.
    pub async fn set_node(&self, c: &Claims, target: &Value, node: &str, phase: &str) -> Outcome {
        let mut wf = self.api.stored(target).expect("the workflow exists");
        wf["status"]["nodes"][node]["phase"] = json!(phase);
        wf["status"]["nodes"][node]["finishedAt"] = json!(now());
        wf["status"]["nodes"][node]["message"] = json!("set by argo node set");
        label(&mut wf, c, ACTOR, "");
        self.api.update(&self.user, wf).await
    }

    /// `server/cronworkflow/cron_workflow_server.go` `setCronWorkflowSuspend`: a JSON merge patch
    /// of `spec.suspend` alone — no label says who.
    pub async fn cron_suspend(&self, target: &Value, suspend: bool) -> Outcome {
        self.api
            .patch(&self.user, target, Patch::Merge(json!({"spec": {"suspend": suspend}})))
            .await
    }

    /// `server/workflowtemplate/workflow_template_server.go` `UpdateWorkflowTemplate` (and the
    /// CronWorkflow and ClusterWorkflowTemplate servers alike): the object the client sent, with
    /// the actor labels of `LabelActor(Update)`, as a full Update.
    pub async fn update_object(&self, c: &Claims, obj: &Value) -> Outcome {
        let mut obj = obj.clone();
        label(&mut obj, c, ACTOR, "Update");
        self.api.update(&self.user, obj).await
    }

    /// `server/workflow/workflow_server.go` `DeleteWorkflow`: a DELETE, nothing labelled first.
    pub async fn delete(&self, target: &Value) -> Outcome {
        self.api.delete(&self.user, target).await
    }

    /// `server/workflow/workflow_server.go` `CreateWorkflow`: `creator.LabelCreator`, then Create.
    pub async fn submit(&self, c: &Claims, wf: &Value) -> Outcome {
        let mut wf = wf.clone();
        label(&mut wf, c, CREATOR, "");
        self.api.create(&self.user, wf).await
    }

    /// `workflow/util/util.go` `ResumeWorkflow`: `spec.suspend` removed, every Suspend node that is
    /// Running marked Succeeded with "Resumed by: map[…]", actor labels with action Resume, and a
    /// full Update.
    pub async fn resume(&self, c: &Claims, target: &Value) -> Outcome {
        let mut wf = hydrate(self.api.stored(target).expect("the workflow exists"));
        if wf["spec"]["suspend"] == true {
            wf["spec"].as_object_mut().map(|s| s.remove("suspend"));
        }
        let by = format!(
            "Resumed by: map[Email:{} PreferredUsername:{} User:{}]",
            c.email, c.preferred_username, c.sub
        );
        for node in wf["status"]["nodes"]
            .as_object_mut()
            .into_iter()
            .flat_map(|n| n.values_mut())
        {
            if node["type"] == "Suspend" && node["phase"] == "Running" {
                node["phase"] = json!("Succeeded");
                node["finishedAt"] = json!(now());
                node["message"] = json!(by);
            }
        }
        label(&mut wf, c, ACTOR, "Resume");
        self.api.update(&self.user, dehydrate(wf)).await
    }

    /// util.go `SuspendWorkflow`: `spec.suspend: true`, actor labels with action Suspend, Update.
    pub async fn suspend(&self, c: &Claims, target: &Value) -> Outcome {
        let mut wf = self.api.stored(target).expect("the workflow exists");
        wf["spec"]["suspend"] = json!(true);
        label(&mut wf, c, ACTOR, "Suspend");
        self.api.update(&self.user, wf).await
    }

    /// util.go `patchShutdownStrategy`: a JSON merge patch of `spec.shutdown` with the actor
    /// labels of `UserActionLabel` (only the non-empty ones; nothing is removed).
    pub async fn stop(&self, c: &Claims, target: &Value, strategy: &str) -> Outcome {
        let mut labels = Map::new();
        for (k, v) in ACTOR.iter().zip([
            c.sub.clone(),
            c.email.replacen('@', ".at.", 1),
            c.preferred_username.clone(),
        ]) {
            if !v.is_empty() {
                labels.insert((*k).into(), json!(dns_friendly(&v)));
            }
        }
        labels.insert(ACTION.into(), json!(strategy));
        let patch = json!({"spec": {"shutdown": strategy}, "metadata": {"labels": labels}});
        self.api.patch(&self.user, target, Patch::Merge(patch)).await
    }
}

/// `workflow/hydrator/hydrator.go` `Hydrate`: compressed nodes decoded into `status.nodes` (the
/// emulator keeps no database: an offloaded workflow's nodes stay unseen, as for a webhook).
/// Remembers how they were kept, for `dehydrate`.
fn hydrate(mut wf: Value) -> Value {
    if let Some(c) = wf["status"]["compressedNodes"].as_str().filter(|c| !c.is_empty()) {
        wf["status"]["nodes"] = unpack(c);
        wf["status"]["compressedNodes"] = json!("__hydrated__");
    }
    wf
}

/// `Dehydrate`: the nodes compressed again if they came so (`packer.CompressWorkflowIfNeeded`,
/// with the server's size limit reached), an offloaded workflow's version moved on (its nodes
/// written to the database first: `offloadNodeStatusVersion` is all a webhook sees change).
fn dehydrate(mut wf: Value) -> Value {
    if wf["status"]["compressedNodes"] == "__hydrated__" {
        wf["status"]["compressedNodes"] = json!(pack(&wf["status"]["nodes"]));
        wf["status"].as_object_mut().map(|s| s.remove("nodes"));
    } else if let Some(v) = wf["status"]["offloadNodeStatusVersion"]
        .as_str()
        .filter(|v| !v.is_empty())
    {
        wf["status"]["offloadNodeStatusVersion"] = json!(format!("{v}+1"));
    }
    wf
}

/// Nodes as `status.compressedNodes` holds them: base64 of gzip of their JSON
/// (`util/file/fileutil.go` `CompressEncodeString`, gzip being the default algorithm).
pub fn pack(nodes: &Value) -> String {
    use base64::Engine;
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(nodes.to_string().as_bytes()).expect("gzip");
    base64::engine::general_purpose::STANDARD.encode(e.finish().expect("gzip"))
}

pub fn unpack(text: &str) -> Value {
    use base64::Engine;
    use std::io::Read;
    let bytes = base64::engine::general_purpose::STANDARD.decode(text).expect("base64");
    let mut out = String::new();
    flate2::read::GzDecoder::new(bytes.as_slice())
        .read_to_string(&mut out)
        .expect("gzip");
    serde_json::from_str(&out).expect("json")
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// The Argo workflow-controller: service account `argo` in `argo` (argo-workflows
/// `manifests/base/workflow-controller/workflow-controller-sa.yaml`).
pub struct ArgoController<'a> {
    pub api: &'a ApiServer,
    pub user: User,
}

pub fn argo_controller(api: &ApiServer) -> ArgoController<'_> {
    ArgoController {
        api,
        user: service_account("argo", "argo"),
    }
}

impl ArgoController<'_> {
    /// `workflow/controller/operator.go` `persistUpdates`: the whole Workflow is written back with a
    /// full Update (Workflows have no status subresource), here with the phase `markWorkflowPhase`
    /// sets and, when `suspend_node` is given, a Suspend node waiting at Running.
    pub async fn operate(&self, target: &Value, phase: &str, suspend_node: Option<&str>) -> Outcome {
        let mut wf = self.api.stored(target).expect("the workflow exists");
        let name = wf["metadata"]["name"].as_str().unwrap_or_default().to_string();
        wf["metadata"]["labels"]["workflows.argoproj.io/phase"] = json!(phase);
        wf["metadata"]["labels"]["workflows.argoproj.io/completed"] =
            json!(if ["Succeeded", "Failed", "Error"].contains(&phase) {
                "true"
            } else {
                "false"
            });
        wf["status"]["phase"] = json!(phase);
        if wf["status"]["startedAt"].is_null() {
            wf["status"]["startedAt"] = json!(now());
        }
        if wf["status"]["nodes"].is_null() {
            wf["status"]["nodes"] =
                json!({name.clone(): {"id": name, "name": name, "type": "Steps", "phase": "Running"}});
        }
        if let Some(node) = suspend_node {
            let id = format!("{name}-{node}");
            wf["status"]["nodes"][&id] = json!({"id": id, "name": format!("{name}[0].{node}"), "displayName": node,
                "type": "Suspend", "phase": "Running", "startedAt": now()});
        }
        self.api.update(&self.user, wf).await
    }

    /// The controller's first write of a Workflow made by kubectl or Argo CD, in the shape Go's
    /// `encoding/json` gives it (`operator.go` `persistUpdates`: a full Update of the typed
    /// object): value-type fields appear empty — the spec's `arguments`, each template's
    /// `inputs`, `outputs`, `metadata`, a container's or script's `name` and `resources`, each
    /// step's and DAG task's `arguments` (`pkg/apis/workflow/v1alpha1/workflow_types.go`: struct
    /// values are never dropped by `omitempty`) — and `workflowDefaults` from the controller's
    /// ConfigMap is merged under what the Workflow says (`controller.go` `setWorkflowDefaults`,
    /// `workflow/util/merge.go` `MergeTo`: the Workflow's values win), its metadata too.
    pub async fn first_write(&self, target: &Value, defaults: &Value) -> Outcome {
        let mut wf = self.api.stored(target).expect("the workflow exists");
        fn fill(v: &mut Value, key: &str, empty: Value) {
            if let Some(o) = v.as_object_mut() {
                o.entry(key).or_insert(empty);
            }
        }
        fn under(base: &mut Value, over: &Value) {
            if let (Some(b), Some(o)) = (base.as_object_mut(), over.as_object()) {
                for (k, v) in o {
                    match b.get_mut(k) {
                        Some(existing) if existing.is_object() && v.is_object() => under(existing, v),
                        Some(_) => {}
                        None => {
                            b.insert(k.clone(), v.clone());
                        }
                    }
                }
            }
        }
        under(&mut wf["spec"], &defaults["spec"]);
        for field in ["labels", "annotations"] {
            if defaults["metadata"][field].is_object() {
                if !wf["metadata"][field].is_object() {
                    wf["metadata"][field] = json!({});
                }
                under(&mut wf["metadata"][field], &defaults["metadata"][field]);
            }
        }
        fill(&mut wf["spec"], "arguments", json!({}));
        for t in wf["spec"]["templates"].as_array_mut().into_iter().flatten() {
            for k in ["inputs", "outputs", "metadata"] {
                fill(t, k, json!({}));
            }
            for k in ["container", "script"] {
                if t[k].is_object() {
                    fill(&mut t[k], "name", json!(""));
                    fill(&mut t[k], "resources", json!({}));
                }
            }
            for group in t["steps"].as_array_mut().into_iter().flatten() {
                for step in group.as_array_mut().into_iter().flatten() {
                    fill(step, "arguments", json!({}));
                }
            }
            for task in t["dag"]["tasks"].as_array_mut().into_iter().flatten() {
                fill(task, "arguments", json!({}));
            }
        }
        wf["metadata"]["labels"]["workflows.argoproj.io/phase"] = json!("Running");
        wf["status"]["phase"] = json!("Running");
        wf["status"]["startedAt"] = json!(now());
        self.api.update(&self.user, wf).await
    }

    /// The workflow grown past `MAX_WORKFLOW_SIZE`: the controller's write moves `status.nodes`
    /// into `status.compressedNodes` (`workflow/packer/packer.go` `compressWorkflow`).
    pub async fn compress(&self, target: &Value) -> Outcome {
        let mut wf = self.api.stored(target).expect("the workflow exists");
        wf["status"]["compressedNodes"] = json!(pack(&wf["status"]["nodes"]));
        wf["status"].as_object_mut().map(|s| s.remove("nodes"));
        self.api.update(&self.user, wf).await
    }

    /// Offloaded (`workflow/hydrator/hydrator.go` `Dehydrate` with `ALWAYS_OFFLOAD_NODE_STATUS` or
    /// too large to compress): the nodes go to Argo's database, `status.nodes` is emptied and
    /// `offloadNodeStatusVersion` names them (`fnv:<hash>`).
    pub async fn offload(&self, target: &Value) -> Outcome {
        let mut wf = self.api.stored(target).expect("the workflow exists");
        wf["status"]["nodes"] = json!({});
        wf["status"]["offloadNodeStatusVersion"] = json!("fnv:1402874211");
        self.api.update(&self.user, wf).await
    }

    /// `workflow/cron/operator.go` `run` → `common.ConvertCronWorkflowToWorkflowWithProperties`:
    /// a Workflow named `<cron>-<unix seconds>`, the CronWorkflow's creator labels, the
    /// `cron-workflow` label, `spec.workflowMetadata` labels and annotations, the `scheduled-time`
    /// annotation and a controller owner reference; created under the controller's account.
    pub async fn spawn(&self, cron: &Value, scheduled: chrono::DateTime<chrono::Utc>) -> Outcome {
        let cron = self.api.stored(cron).expect("the cron workflow exists");
        let cron_name = cron["metadata"]["name"].as_str().unwrap_or_default();
        let mut labels = Map::new();
        for k in CREATOR {
            if let Some(v) = cron["metadata"]["labels"].get(k) {
                labels.insert(k.into(), v.clone());
            }
        }
        labels.insert("workflows.argoproj.io/cron-workflow".into(), json!(cron_name));
        let wm = &cron["spec"]["workflowMetadata"];
        for (k, v) in wm["labels"].as_object().into_iter().flatten() {
            labels.insert(k.clone(), v.clone());
        }
        let mut annotations = Map::new();
        annotations.insert(
            "workflows.argoproj.io/scheduled-time".into(),
            json!(scheduled.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
        );
        for (k, v) in wm["annotations"].as_object().into_iter().flatten() {
            annotations.insert(k.clone(), v.clone());
        }
        let wf = json!({
            "apiVersion": cron["apiVersion"], "kind": "Workflow",
            "metadata": {
                "name": format!("{cron_name}-{}", scheduled.timestamp()),
                "namespace": cron["metadata"]["namespace"],
                "labels": labels, "annotations": annotations,
                "ownerReferences": [{"apiVersion": "argoproj.io/v1alpha1", "kind": "CronWorkflow",
                    "name": cron_name, "uid": cron["metadata"]["uid"], "controller": true, "blockOwnerDeletion": true}],
            },
            "spec": cron["spec"]["workflowSpec"],
        });
        self.api.create(&self.user, wf).await
    }
}

/// The Tekton controller: `tekton-pipelines-controller` in `tekton-pipelines`
/// (tektoncd/pipeline `config/200-serviceaccount.yaml`).
pub struct TektonController<'a> {
    pub api: &'a ApiServer,
    pub user: User,
}

pub fn tekton_controller(api: &ApiServer) -> TektonController<'_> {
    TektonController {
        api,
        user: service_account("tekton-pipelines", "tekton-pipelines-controller"),
    }
}

impl TektonController<'_> {
    /// The generated reconciler's `updateStatus`: `PUT …/status` with the new status only.
    pub async fn set_status(&self, target: &Value, status: Value) -> Outcome {
        let mut obj = self.api.stored(target).expect("the run exists");
        obj["status"] = status;
        self.api.update_status(&self.user, obj).await
    }

    /// `pkg/reconciler/pipelinerun/pipelinerun.go` `syncMetadata` / `updateLabelsAndAnnotations`:
    /// labels the controller adds (`tekton.dev/pipeline`) written with a full Update of the main
    /// resource, spec as it was.
    pub async fn sync_metadata(&self, target: &Value) -> Outcome {
        let mut obj = self.api.stored(target).expect("the run exists");
        let pipeline = obj["spec"]["pipelineRef"]["name"]
            .as_str()
            .or(obj["metadata"]["name"].as_str())
            .unwrap_or_default()
            .to_string();
        if !obj["metadata"]["labels"].is_object() {
            obj["metadata"]["labels"] = json!({});
        }
        obj["metadata"]["labels"]["tekton.dev/pipeline"] = json!(pipeline);
        self.api.update(&self.user, obj).await
    }

    /// `pipelinerun.go` `createTaskRun`: one TaskRun per pipeline task, named
    /// `kmeta.ChildName(pr, "-"+task)`, with the PipelineRun's labels plus `tekton.dev/*`, its
    /// annotations minus `chains.tekton.dev/*`, a controller owner reference, and the service
    /// account of `taskRunTemplate`.
    pub async fn create_task_run(&self, pr: &Value, task: &str, task_ref: Value) -> Outcome {
        let pr = self.api.stored(pr).expect("the pipeline run exists");
        let pr_name = pr["metadata"]["name"].as_str().unwrap_or_default();
        let name = format!("{pr_name}-{task}");
        assert!(name.len() <= 63, "kmeta.ChildName hashes longer names; not needed here");
        let mut labels = pr["metadata"]["labels"].as_object().cloned().unwrap_or_default();
        labels.insert("tekton.dev/pipelineRun".into(), json!(pr_name));
        labels.insert("tekton.dev/pipelineRunUID".into(), pr["metadata"]["uid"].clone());
        labels.insert("tekton.dev/pipelineTask".into(), json!(task));
        labels.insert("tekton.dev/memberOf".into(), json!("tasks"));
        let mut annotations = pr["metadata"]["annotations"].as_object().cloned().unwrap_or_default();
        annotations.retain(|k, _| !k.starts_with("chains.tekton.dev/"));
        let sa = pr["spec"]["taskRunTemplate"]["serviceAccountName"]
            .as_str()
            .or(pr["spec"]["serviceAccountName"].as_str())
            .unwrap_or("default");
        let tr = json!({
            "apiVersion": "tekton.dev/v1", "kind": "TaskRun",
            "metadata": {
                "name": name, "namespace": pr["metadata"]["namespace"],
                "labels": labels, "annotations": annotations,
                "ownerReferences": [{"apiVersion": "tekton.dev/v1", "kind": "PipelineRun", "name": pr_name,
                    "uid": pr["metadata"]["uid"], "controller": true, "blockOwnerDeletion": true}],
            },
            "spec": {"serviceAccountName": sa, "taskRef": task_ref, "timeout": "1h0m0s"},
        });
        self.api.create(&self.user, tr).await
    }

    /// The first reconcile of a run that starts (tektoncd/pipeline at 3ee1745a,
    /// `pkg/reconciler/pipelinerun/pipelinerun.go` `reconcile`): the pipeline resolved — the run's
    /// own `pipelineSpec`, or the Pipeline its `pipelineRef` names in its namespace
    /// (`resources/pipelineref.go` `LocalPipelineRefResolver`) — kept in memory
    /// (`storePipelineSpecAndMergeMeta`), the run's parameters applied to it (`ApplyParameters`,
    /// which also overwrites the in-memory `status.pipelineSpec`), the children of `tasks` created
    /// from it (`runNextSchedulableTask` → `createTaskRun`), and only then, after `ReconcileKind`
    /// returns, the status written with the resolved pipeline and the children (the generated
    /// reconciler's `updateStatus`). The children's outcomes, then the status write's.
    pub async fn start(&self, pr: &Value, tasks: &[&str]) -> (Vec<Outcome>, Outcome) {
        let stored = self.api.stored(pr).expect("the pipeline run exists");
        let namespace = stored["metadata"]["namespace"].as_str().unwrap_or_default();
        let mut pipeline = match stored["spec"].get("pipelineSpec") {
            Some(inline) => inline.clone(),
            None => {
                let name = stored["spec"]["pipelineRef"]["name"].as_str().unwrap_or_default();
                let p = self
                    .api
                    .get("tekton.dev/v1", "Pipeline", namespace, name)
                    .expect("the Pipeline the run names");
                p["spec"].clone()
            }
        };
        substitute(&mut pipeline, &params_of(&stored));
        let mut children = Vec::new();
        for task in tasks {
            children.push(self.api.create(&self.user, task_run(&stored, &pipeline, task)).await);
        }
        let refs: Vec<Value> = tasks
            .iter()
            .map(|t| {
                json!({"apiVersion": "tekton.dev/v1", "kind": "TaskRun", "pipelineTaskName": t,
                "name": format!("{}-{t}", stored["metadata"]["name"].as_str().unwrap_or_default())})
            })
            .collect();
        let status = self
            .set_status(pr, json!({"pipelineSpec": pipeline, "childReferences": refs}))
            .await;
        (children, status)
    }

    /// A later reconcile's `createTaskRun` for the pipeline task `task`: built from the resolved
    /// pipeline the run's status holds.
    pub async fn create_child(&self, pr: &Value, task: &str) -> Outcome {
        let pr = self.api.stored(pr).expect("the pipeline run exists");
        let pipeline = pr["status"]["pipelineSpec"].clone();
        self.api.create(&self.user, task_run(&pr, &pipeline, task)).await
    }

    /// `pkg/reconciler/pipelinerun/cancel.go` `cancelPipelineRun`: a JSON Patch on each child
    /// TaskRun setting `spec.status` and `spec.statusMessage`.
    pub async fn cancel_child(&self, tr: &Value) -> Outcome {
        let ops = vec![
            json!({"op": "add", "path": "/spec/status", "value": "TaskRunCancelled"}),
            json!({"op": "add", "path": "/spec/statusMessage", "value": "TaskRun cancelled as the PipelineRun it belongs to has been cancelled."}),
        ];
        self.api.patch(&self.user, tr, Patch::Json(ops)).await
    }
}

#[test]
fn argo_label_rewriting_follows_creator_go() {
    assert_eq!(dns_friendly("my.at.email"), "my.at.email");
    assert_eq!(
        dns_friendly("system:serviceaccount:argo:argo-server"),
        "system-serviceaccount-argo-argo-server"
    );
    let long = format!("{}y", "x".repeat(63));
    assert_eq!(
        dns_friendly(&long),
        format!("{}y", "x".repeat(62)),
        "the last 63 are kept"
    );
    assert_eq!(dns_friendly("-a b-"), "a-b");
}

/// tektoncd/pipeline `resources/apply.go` `ApplyParameters`: each `$(params.<name>)` replaced by
/// the run's value (string parameters; what these tests use).
fn substitute(v: &mut Value, params: &[(String, String)]) {
    match v {
        Value::String(s) => {
            for (k, val) in params {
                *s = s.replace(&format!("$(params.{k})"), val);
            }
        }
        Value::Array(a) => a.iter_mut().for_each(|x| substitute(x, params)),
        Value::Object(m) => m.values_mut().for_each(|x| substitute(x, params)),
        _ => {}
    }
}

fn params_of(pr: &Value) -> Vec<(String, String)> {
    pr["spec"]["params"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| {
            (
                p["name"].as_str().unwrap_or_default().to_string(),
                p["value"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

/// `pipelinerun.go` `createTaskRun` for the pipeline task `task` of `pipeline` (parameters
/// applied): its `taskRef` as written or its embedded task's spec (without the embedded task's
/// own metadata: `resolveTask`), the service account `GetTaskRunSpec` gives the task
/// (`taskRunSpecs[task]` over `taskRunTemplate`), labels first from `taskRunSpecs[task].metadata`
/// then the run's and `tekton.dev/*` (`addMetadataByPrecedence`, first wins), a controller owner
/// reference.
fn task_run(pr: &Value, pipeline: &Value, task: &str) -> Value {
    let pr_name = pr["metadata"]["name"].as_str().unwrap_or_default();
    let pt = ["tasks", "finally"]
        .iter()
        .filter_map(|k| pipeline[*k].as_array())
        .flatten()
        .find(|t| t["name"] == task)
        .cloned()
        .expect("the pipeline task");
    let run_spec = pr["spec"]["taskRunSpecs"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|s| s["pipelineTaskName"] == task)
        .cloned()
        .unwrap_or(Value::Null);
    let sa = run_spec["serviceAccountName"]
        .as_str()
        .filter(|s| !s.is_empty())
        .or(pr["spec"]["taskRunTemplate"]["serviceAccountName"].as_str())
        .unwrap_or("default");
    let mut labels = run_spec["metadata"]["labels"].as_object().cloned().unwrap_or_default();
    for (k, v) in pr["metadata"]["labels"].as_object().into_iter().flatten() {
        labels.entry(k.clone()).or_insert(v.clone());
    }
    for (k, v) in [
        ("tekton.dev/pipelineRun", json!(pr_name)),
        ("tekton.dev/pipelineRunUID", pr["metadata"]["uid"].clone()),
        ("tekton.dev/pipelineTask", json!(task)),
        ("tekton.dev/memberOf", json!("tasks")),
    ] {
        labels.entry(k).or_insert(v);
    }
    let mut annotations = pr["metadata"]["annotations"].as_object().cloned().unwrap_or_default();
    annotations.retain(|k, _| !k.starts_with("chains.tekton.dev/"));
    let mut spec = json!({"serviceAccountName": sa, "timeout": "1h0m0s"});
    if let Some(r) = pt.get("taskRef") {
        spec["taskRef"] = r.clone();
    } else if let Some(Value::Object(embedded)) = pt.get("taskSpec") {
        let mut t = embedded.clone();
        for k in ["metadata", "apiVersion", "kind", "spec"] {
            t.remove(k);
        }
        spec["taskSpec"] = Value::Object(t);
    }
    json!({
        "apiVersion": "tekton.dev/v1", "kind": "TaskRun",
        "metadata": {
            "name": format!("{pr_name}-{task}"), "namespace": pr["metadata"]["namespace"],
            "labels": labels, "annotations": annotations,
            "ownerReferences": [{"apiVersion": "tekton.dev/v1", "kind": "PipelineRun", "name": pr_name,
                "uid": pr["metadata"]["uid"], "controller": true, "blockOwnerDeletion": true}],
        },
        "spec": spec,
    })
}
