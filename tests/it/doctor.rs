//! `scimgate doctor` against the emulator's HTTP face: installs that name their controllers as
//! the argo-workflows Helm chart and OpenShift Pipelines do, with scimgate's webhook
//! configurations as `kubectl kustomize` renders them from manifests/ and the policy
//! manifests/base installs. Each mismatch is named with its fix; applying the fixes it names (as
//! its JSON spells them) makes it agree.

use crate::apiserver::ApiServer;
use crate::kube_face::KubeFace;
use crate::manifests::{prepared, render};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

/// A cluster the doctor reads: the emulator's store, served over HTTP.
struct Cluster {
    api: ApiServer,
    _face: KubeFace,
    dir: tempfile::TempDir,
}

impl Cluster {
    async fn new(objects: impl IntoIterator<Item = Value>) -> Cluster {
        // Nothing is admitted here: objects are only stored, as `kubectl apply` left them.
        let api = ApiServer::at("https://127.0.0.1:9", reqwest::Client::new());
        let mut face = KubeFace::bind().await;
        face.serve(&api);
        let dir = tempfile::tempdir().expect("tempdir");
        face.write_kubeconfig(&dir.path().join("kubeconfig"));
        for o in objects {
            api.put(o);
        }
        Cluster { api, _face: face, dir }
    }

    /// `scimgate doctor --kubeconfig … ARGS`: exit code and stdout (stderr on a failure to run).
    async fn doctor(&self, args: &[&str]) -> (i32, String) {
        let mut all: Vec<std::ffi::OsString> = vec!["doctor".into(), "--kubeconfig".into()];
        all.push(self.dir.path().join("kubeconfig").into());
        all.extend(args.iter().map(Into::into));
        let (code, out, err) = tokio::task::spawn_blocking(move || {
            let refs: Vec<&std::ffi::OsStr> = all.iter().map(|a| a.as_os_str()).collect();
            crate::support::scimgate(&refs)
        })
        .await
        .expect("doctor ran");
        assert!(code == 0 || code == 1, "doctor failed ({code}): {err}");
        (code, out)
    }

    /// `doctor -o json`'s checks.
    async fn checks(&self, args: &[&str]) -> Vec<Value> {
        let (_, out) = self.doctor(&[args, &["-o", "json"]].concat()).await;
        let report: Value = serde_json::from_str(&out).expect("json");
        report["checks"].as_array().expect("checks").clone()
    }

    /// Apply every edit the doctor names: to the policy file (`policy`) or, for a webhook, to
    /// the one matchCondition it names, in the stored configuration.
    fn apply(&self, checks: &[Value], policy: &mut String) {
        for edit in checks.iter().filter_map(|c| c.get("edit")) {
            let (old, new) = (
                edit["replace"].as_str().expect("a replacement"),
                edit["with"].as_str().expect("with"),
            );
            let target = edit["target"].as_str().expect("target");
            if target == "policy" {
                let before = policy.clone();
                *policy = policy.replace(&format!("serviceAccount: {old}\n"), &format!("serviceAccount: {new}\n"));
                assert_ne!(*policy, before, "{old} is a delegate");
                continue;
            }
            let (kind, name) = target.split_once('/').expect("Kind/name");
            let mut config = self
                .api
                .get("admissionregistration.k8s.io/v1", kind, "", name)
                .expect("stored");
            let hook = config["webhooks"]
                .as_array_mut()
                .expect("webhooks")
                .iter_mut()
                .find(|w| w["name"] == edit["webhook"])
                .expect("the webhook");
            let condition = hook["matchConditions"]
                .as_array_mut()
                .expect("conditions")
                .iter_mut()
                .find(|c| c["name"] == edit["condition"])
                .expect("the condition");
            let expression = condition["expression"].as_str().expect("expression");
            assert!(expression.contains(&format!("'{old}'")), "{expression}");
            condition["expression"] = json!(expression.replace(&format!("'{old}'"), &format!("'{new}'")));
            self.api.put(config);
        }
    }
}

/// A Deployment as an install renders it: its labels on itself and on its pods.
fn deployment(namespace: &str, name: &str, labels: Value, account: &str) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": {"selector": {"matchLabels": labels}, "template": {"metadata": {"labels": labels},
            "spec": {"serviceAccountName": account, "containers": [{"name": name, "image": "example"}]}}}})
}

fn service_account(namespace: &str, name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name, "namespace": namespace}})
}

/// Argo Workflows from the argo-workflows Helm chart, release `argo-workflows` in `argo`
/// (argo-helm charts/argo-workflows/templates/_helpers.tpl: `argo-workflows.labels`,
/// `controller.fullname`, `controllerServiceAccountName`; templates/controller/
/// workflow-controller-deployment.yaml, templates/server/server-deployment.yaml).
fn helm_argo() -> Vec<Value> {
    let labels = |component: &str| {
        json!({"helm.sh/chart": "argo-workflows-0.45.21", "app.kubernetes.io/name": format!("argo-workflows-{component}"),
            "app.kubernetes.io/instance": "argo-workflows", "app.kubernetes.io/component": component, "app": component,
            "app.kubernetes.io/managed-by": "Helm", "app.kubernetes.io/part-of": "argo-workflows"})
    };
    vec![
        deployment(
            "argo",
            "argo-workflows-workflow-controller",
            labels("workflow-controller"),
            "argo-workflows-workflow-controller",
        ),
        service_account("argo", "argo-workflows-workflow-controller"),
        deployment(
            "argo",
            "argo-workflows-server",
            labels("server"),
            "argo-workflows-server",
        ),
        service_account("argo", "argo-workflows-server"),
    ]
}

/// Argo Workflows from its own manifests (argo-workflows manifests/base/workflow-controller/
/// workflow-controller-deployment.yaml, manifests/base/argo-server/argo-server-deployment.yaml).
fn upstream_argo() -> Vec<Value> {
    vec![
        deployment(
            "argo",
            "workflow-controller",
            json!({"app": "workflow-controller"}),
            "argo",
        ),
        service_account("argo", "argo"),
        deployment("argo", "argo-server", json!({"app": "argo-server"}), "argo-server"),
        service_account("argo", "argo-server"),
    ]
}

/// Tekton Pipelines' controller (tektoncd/pipeline config/controller.yaml) in `namespace`:
/// `tekton-pipelines` upstream, `openshift-pipelines` under OpenShift Pipelines.
fn tekton(namespace: &str) -> Vec<Value> {
    let labels = json!({"app.kubernetes.io/name": "controller", "app.kubernetes.io/component": "controller",
        "app.kubernetes.io/instance": "default", "app.kubernetes.io/part-of": "tekton-pipelines"});
    vec![
        deployment(
            namespace,
            "tekton-pipelines-controller",
            labels,
            "tekton-pipelines-controller",
        ),
        service_account(namespace, "tekton-pipelines-controller"),
    ]
}

/// What `kubectl apply -k` of an overlay puts where the doctor looks: the webhook configurations
/// and the policy ConfigMap.
fn scimgate_objects(docs: &[Value]) -> Vec<Value> {
    docs.iter()
        .filter(|d| {
            d["kind"].as_str().is_some_and(|k| k.ends_with("WebhookConfiguration"))
                || (d["kind"] == "ConfigMap" && d["metadata"]["name"] == "scimgate-policy")
        })
        .cloned()
        .collect()
}

/// manifests/overlays/embedded prepared as the README says (`scimgate certs`), rendered.
fn embedded() -> (tempfile::TempDir, Vec<Value>) {
    let (dir, m, _) = prepared();
    let docs = render(&m.join("overlays/embedded"));
    (dir, docs)
}

/// The policy manifests/base installs (its ConfigMap's policy.yaml), as a file in `dir`.
fn base_policy(docs: &[Value], dir: &Path) -> (PathBuf, String) {
    let text = docs
        .iter()
        .find(|d| d["kind"] == "ConfigMap" && d["metadata"]["name"] == "scimgate-policy")
        .and_then(|d| d["data"]["policy.yaml"].as_str())
        .expect("the policy ConfigMap")
        .to_string();
    let path = dir.join("policy.yaml");
    std::fs::write(&path, &text).expect("write");
    (path, text)
}

fn mismatches(out: &str) -> Vec<&str> {
    out.lines().filter(|l| l.starts_with("MISMATCH")).collect()
}

/// The fixes of a Helm install of Argo (release `argo-workflows` in `argo`) under manifests/base,
/// as the doctor words them; `POLICY` stands for where the policy is.
const HELM_MISMATCHES: [&str; 5] = [
    "MISMATCH policy   the policy trusts argo:argo as Argo's workflow-controller (ownerStamp), but the cluster runs it as argo/argo-workflows-workflow-controller (Deployment argo/argo-workflows-workflow-controller): every Workflow a CronWorkflow starts is denied, and so is each of its writes that changes a run's spec (judged as an ordinary account, which no rule allows) — fix: in identity.delegates of POLICY, replace `serviceAccount: argo:argo` with `serviceAccount: argo:argo-workflows-workflow-controller`",
    "MISMATCH policy   the policy trusts argo:argo-server as the Argo Server (argoServer), but the cluster runs it as argo/argo-workflows-server (Deployment argo/argo-workflows-server): every submit, approval and cancel made through the Argo UI or API is judged as the Argo Server's own account and denied — fix: in identity.delegates of POLICY, replace `serviceAccount: argo:argo-server` with `serviceAccount: argo:argo-workflows-server`",
    "MISMATCH webhook  stamp.scimgate.io names system:serviceaccount:argo:argo as Argo's workflow-controller on UPDATE, but the cluster runs it as argo/argo-workflows-workflow-controller (Deployment argo/argo-workflows-workflow-controller): the controller's writes reach this fail-closed webhook, so while scimgate is unreachable work already admitted waits on it — fix: in matchCondition new-work-or-a-persons-change of webhook stamp.scimgate.io (MutatingWebhookConfiguration scimgate), replace 'system:serviceaccount:argo:argo' with 'system:serviceaccount:argo:argo-workflows-workflow-controller'",
    "MISMATCH webhook  running.stamp.scimgate.io names system:serviceaccount:argo:argo as Argo's workflow-controller on UPDATE, but the cluster runs it as argo/argo-workflows-workflow-controller (Deployment argo/argo-workflows-workflow-controller): this fail-open webhook does not see the controller's writes, so what the fail-closed one leaves to it is judged by nobody — fix: in matchCondition admitted-work of webhook running.stamp.scimgate.io (MutatingWebhookConfiguration scimgate), replace 'system:serviceaccount:argo:argo' with 'system:serviceaccount:argo:argo-workflows-workflow-controller'",
    "MISMATCH webhook  policy.scimgate.io names system:serviceaccount:argo:argo as Argo's workflow-controller on UPDATE, but the cluster runs it as argo/argo-workflows-workflow-controller (Deployment argo/argo-workflows-workflow-controller): the controller's writes reach this fail-closed webhook, so while scimgate is unreachable work already admitted waits on it — fix: in matchCondition new-work-or-a-persons-change of webhook policy.scimgate.io (ValidatingWebhookConfiguration scimgate), replace 'system:serviceaccount:argo:argo' with 'system:serviceaccount:argo:argo-workflows-workflow-controller'",
];

/// A Helm install of Argo and an upstream Tekton, with scimgate as overlays/embedded renders it,
/// and the policy manifests/base installs as a file.
async fn helm_install() -> (Cluster, PathBuf, String, tempfile::TempDir) {
    let (m, docs) = embedded();
    let objects = [helm_argo(), tekton("tekton-pipelines"), scimgate_objects(&docs)].concat();
    let cluster = Cluster::new(objects).await;
    let (path, text) = base_policy(&docs, cluster.dir.path());
    (cluster, path, text, m)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_helm_install_with_the_default_policy_is_named_mismatch_by_mismatch() {
    let (cluster, policy, _, _m) = helm_install().await;
    let path = policy.to_str().expect("utf-8");
    let (code, out) = cluster.doctor(&["--policy", path]).await;
    assert_eq!(code, 1, "{out}");
    let out = out.replace(path, "POLICY");
    assert_eq!(mismatches(&out), HELM_MISMATCHES, "{out}");
    // What agrees is said too, one line a check.
    for line in [
        "ok       cluster  Argo's workflow-controller: Deployment argo/argo-workflows-workflow-controller runs as argo/argo-workflows-workflow-controller",
        "ok       cluster  the Argo Server: Deployment argo/argo-workflows-server runs as argo/argo-workflows-server",
        "ok       policy   the policy trusts tekton-pipelines:tekton-pipelines-controller as Tekton Pipelines' controller (ownerStamp), the account the cluster runs it as (Deployment tekton-pipelines/tekton-pipelines-controller)",
        "ok       webhook  running.policy.scimgate.io: its matchConditions name the controllers as the cluster runs them (tekton-pipelines/tekton-pipelines-controller)",
        "ok       webhook  caBundle of MutatingWebhookConfiguration scimgate: set on each of scimgate's webhooks",
        "ok       webhook  stamp.scimgate.io: failurePolicy Fail, as manifests/base ships",
        "ok       webhook  deletes.scimgate.io: failurePolicy Ignore, as manifests/base ships",
        "5 mismatches: fix them as named above, then run scimgate doctor again",
    ] {
        assert!(out.lines().any(|l| l == line), "missing\n{line}\nin\n{out}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_helm_install_agrees_once_the_named_fixes_are_applied() {
    let (cluster, policy, mut text, _m) = helm_install().await;
    let path = policy.to_str().expect("utf-8");
    let checks = cluster.checks(&["--policy", path]).await;
    let edits: Vec<&Value> = checks.iter().filter_map(|c| c.get("edit")).collect();
    assert_eq!(edits.len(), 5, "every mismatch carries its edit: {checks:#?}");
    cluster.apply(&checks, &mut text);
    std::fs::write(&policy, &text).expect("write");
    assert!(text.contains("- serviceAccount: argo:argo-workflows-workflow-controller\n"));

    let (code, out) = cluster.doctor(&["--policy", path]).await;
    assert_eq!(code, 0, "{out}");
    assert!(mismatches(&out).is_empty(), "{out}");
    for line in [
        "ok       policy   the policy trusts argo:argo-workflows-workflow-controller as Argo's workflow-controller (ownerStamp), the account the cluster runs it as (Deployment argo/argo-workflows-workflow-controller)",
        "ok       policy   the policy trusts argo:argo-workflows-server as the Argo Server (argoServer), the account the cluster runs it as (Deployment argo/argo-workflows-server)",
        "ok       webhook  stamp.scimgate.io: its matchConditions name the controllers as the cluster runs them (argo/argo-workflows-workflow-controller, tekton-pipelines/tekton-pipelines-controller)",
        "ok       webhook  running.stamp.scimgate.io: its matchConditions name the controllers as the cluster runs them (argo/argo-workflows-workflow-controller, tekton-pipelines/tekton-pipelines-controller)",
        "ok       webhook  policy.scimgate.io: its matchConditions name the controllers as the cluster runs them (argo/argo-workflows-workflow-controller, tekton-pipelines/tekton-pipelines-controller)",
    ] {
        assert!(out.lines().any(|l| l == line), "missing\n{line}\nin\n{out}");
    }
    assert!(
        out.ends_with("the policy, scimgate's webhook configurations and the cluster agree (19 checks)\n"),
        "{out}"
    );
    // The policy file still validates (a fix is an edit `policy check` accepts).
    let (code, _, err) = crate::support::scimgate(&["policy".as_ref(), "check".as_ref(), policy.as_os_str()]);
    assert_eq!(code, 0, "{err}");
}

/// OpenShift Pipelines runs Tekton's controller in `openshift-pipelines`; Argo here is upstream's.
/// No --policy: the doctor reads the policy ConfigMap from the namespace the webhooks call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openshift_pipelines_namespace_is_named_and_its_fixes_agree() {
    let (_m, docs) = embedded();
    let objects = [upstream_argo(), tekton("openshift-pipelines"), scimgate_objects(&docs)].concat();
    let cluster = Cluster::new(objects).await;
    let (code, out) = cluster.doctor(&[]).await;
    assert_eq!(code, 1, "{out}");
    let tekton = "system:serviceaccount:tekton-pipelines:tekton-pipelines-controller";
    let openshift = "system:serviceaccount:openshift-pipelines:tekton-pipelines-controller";
    let replace = |hook: &str, ops: &str, closed: bool, condition: &str, config: &str| {
        let effect = if closed {
            "the controller's writes reach this fail-closed webhook, so while scimgate is unreachable work already admitted waits on it"
        } else {
            "this fail-open webhook does not see the controller's writes, so what the fail-closed one leaves to it is judged by nobody"
        };
        format!(
            "MISMATCH webhook  {hook} names {tekton} as Tekton Pipelines' controller {ops}, but the cluster runs it as openshift-pipelines/tekton-pipelines-controller (Deployment openshift-pipelines/tekton-pipelines-controller): {effect} — fix: in matchCondition {condition} of webhook {hook} ({config}), replace '{tekton}' with '{openshift}'"
        )
    };
    let (mutating, validating) = (
        "MutatingWebhookConfiguration scimgate",
        "ValidatingWebhookConfiguration scimgate",
    );
    assert_eq!(
        mismatches(&out),
        [
            "MISMATCH policy   the policy trusts tekton-pipelines:tekton-pipelines-controller as Tekton Pipelines' controller (ownerStamp), but the cluster runs it as openshift-pipelines/tekton-pipelines-controller (Deployment openshift-pipelines/tekton-pipelines-controller): every TaskRun and child PipelineRun it creates for an admitted PipelineRun is denied (judged as an ordinary account, which no rule allows), so PipelineRuns stall — fix: in identity.delegates of ConfigMap scimgate/scimgate-policy (policy.yaml), replace `serviceAccount: tekton-pipelines:tekton-pipelines-controller` with `serviceAccount: openshift-pipelines:tekton-pipelines-controller`".to_string(),
            replace("stamp.scimgate.io", "on CREATE and UPDATE", true, "new-work-or-a-persons-change", mutating),
            replace("running.stamp.scimgate.io", "on CREATE and UPDATE", false, "admitted-work", mutating),
            replace("policy.scimgate.io", "on CREATE and UPDATE", true, "new-work-or-a-persons-change", validating),
            replace("running.policy.scimgate.io", "on CREATE", false, "a-child-of-admitted-work", validating),
        ],
        "{out}"
    );

    // Fixed where the doctor says: the ConfigMap's policy, the four matchConditions.
    let checks = cluster.checks(&[]).await;
    let mut config = cluster
        .api
        .get("v1", "ConfigMap", "scimgate", "scimgate-policy")
        .expect("stored");
    let mut text = config["data"]["policy.yaml"].as_str().expect("policy").to_string();
    cluster.apply(&checks, &mut text);
    config["data"]["policy.yaml"] = json!(text);
    cluster.api.put(config);
    let (code, out) = cluster.doctor(&[]).await;
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("ok       webhook  running.policy.scimgate.io: its matchConditions name the controllers as the cluster runs them (openshift-pipelines/tekton-pipelines-controller)\n"),
        "{out}"
    );
}

/// manifests/base's configurations as cert-manager's overlay renders them, before its cainjector
/// has run (the caBundle still the base's placeholder), one of them not applied, and two
/// failurePolicies other than shipped — one of them against the policy's enforceDeletes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_configurations_empty_ca_bundles_and_failure_policies_are_named() {
    let docs = render(&Path::new(env!("CARGO_MANIFEST_DIR")).join("manifests/overlays/cert-manager"));
    let mut objects: Vec<Value> = scimgate_objects(&docs)
        .into_iter()
        .filter(|d| d["kind"] != "MutatingWebhookConfiguration")
        .collect();
    for o in &mut objects {
        for w in o["webhooks"].as_array_mut().into_iter().flatten() {
            if w["name"] == "running.policy.scimgate.io" {
                w["failurePolicy"] = json!("Fail");
            }
        }
    }
    let cluster = Cluster::new([upstream_argo(), tekton("tekton-pipelines"), objects].concat()).await;
    let (path, text) = base_policy(&docs, cluster.dir.path());
    let enforcing = text.replace(
        "rules:\n",
        "enforceDeletes: true\nrules:\n  - name: deleters\n    allow: [delete]\n    groups: [ml-engineers]\n",
    );
    std::fs::write(&path, enforcing).expect("write");
    let (code, out) = cluster.doctor(&["--policy", path.to_str().expect("utf-8")]).await;
    assert_eq!(code, 1, "{out}");
    let cainjector = "fix: cert-manager's cainjector has not filled it from Certificate scimgate/scimgate-serving: check that cert-manager runs and that Certificate is Ready";
    assert_eq!(
        mismatches(&out),
        [
            "MISMATCH webhook  MutatingWebhookConfiguration scimgate is not registered: nothing stamps new runs and people's changes; nothing keeps scimgate's stamps through the controllers' writes and stamps Tekton's child runs — fix: apply it with your overlay (kubectl apply -k manifests/overlays/<overlay>); it is in manifests/base/webhooks.yaml".to_string(),
            format!("MISMATCH webhook  caBundle of ValidatingWebhookConfiguration scimgate is empty on policy.scimgate.io, running.policy.scimgate.io, so the API server cannot verify scimgate's serving certificate and every call fails: failing closed, new runs and people's changes are refused — {cainjector}"),
            "MISMATCH webhook  running.policy.scimgate.io: failurePolicy Fail, where manifests/base ships Ignore: while scimgate is unreachable, work already admitted waits on it — fix: set failurePolicy: Ignore on webhook running.policy.scimgate.io of ValidatingWebhookConfiguration scimgate".to_string(),
            format!("MISMATCH webhook  caBundle of ValidatingWebhookConfiguration scimgate-deletes is empty on deletes.scimgate.io, so the API server cannot verify scimgate's serving certificate and every call fails — {cainjector}"),
            "MISMATCH webhook  deletes.scimgate.io: failurePolicy Ignore, where the policy's enforceDeletes: true needs Fail (components/enforce-deletes): while scimgate is unreachable, deletes go through unjudged — fix: add components/enforce-deletes to your overlay's components and re-apply".to_string(),
        ],
        "{out}"
    );
}
