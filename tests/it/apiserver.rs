//! kube-apiserver, as far as admission goes: an emulator every admission test goes through, so the
//! webhooks are tested against how the API server really calls them, not against our idea of it.
//!
//! Each behaviour cites the upstream file it follows (k8s.io/apiserver unless said otherwise;
//! `WH` = `pkg/admission/plugin/webhook`). Read at kubernetes/apiserver 24a394e5 (2026-07-23),
//! apiextensions-apiserver 1aa2717a.
//!
//! What it plays: registration from the real `manifests/base` webhook configurations (rules,
//! selectors, CEL `matchConditions`, timeouts, failure policy, reinvocation, side effects); CREATE
//! (mutating chain with re-invocation, then name generation and system fields, then validating),
//! UPDATE, merge and JSON PATCH, the `status` subresource, DELETE and server-side dry run; a fresh
//! `request.uid` for every call; an in-memory store with resource versions. Custom resource kinds
//! (scope, plural, status subresource) come from the CRDs in `../shared/corpus/schemas`.
//!
//! Namespaces are stored objects (`Namespace`, labelled `kubernetes.io/metadata.name`), read by
//! NamespaceLifecycle and the webhooks' namespace selectors; `create_namespace`, `delete_namespace`.
//! The RBAC kinds are stored too, written through `rbac` (RBAC's validation, server-side apply's
//! managedFields, the aggregation controller) and authorized by its RBAC authorizer (`can`).
//!
//! What it leaves out, because nothing here depends on it: authentication (the user is given) and
//! authorizing the writes made here, `matchPolicy: Equivalent` conversion between versions (our
//! rules list every version we send), schema defaulting and pruning, managedFields of kinds but
//! RBAC's. Reads over HTTP (GET, LIST, WATCH), for the kube client scimgate reads owners with, are
//! `kube_face`'s; the store keeps the history of changes they watch.

use crate::support::TestServer;
use base64::Engine;
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Who makes a request, as the authenticator would have it.
#[derive(Debug, Clone)]
pub struct User {
    pub username: String,
    pub groups: Vec<String>,
}

/// A person signed in through OIDC (the `oidc:` prefix is the API server's `--oidc-username-prefix`).
pub fn person(name: &str) -> User {
    User {
        username: format!("oidc:{name}"),
        groups: vec!["system:authenticated".into(), "system:masters".into()],
    }
}

/// A service account (`system:serviceaccount:<ns>:<name>`).
pub fn service_account(namespace: &str, name: &str) -> User {
    User {
        username: format!("system:serviceaccount:{namespace}:{name}"),
        groups: vec![
            "system:serviceaccounts".into(),
            format!("system:serviceaccounts:{namespace}"),
            "system:authenticated".into(),
        ],
    }
}

/// A failed request, as the API server answers it (`metav1.Status`).
#[derive(Debug, Clone, PartialEq)]
pub struct Status {
    pub code: u16,
    pub message: String,
}

/// One webhook call, for tests that look at how the webhooks were driven.
#[derive(Debug, Clone)]
pub struct Call {
    pub webhook: String,
    pub uid: String,
    pub operation: String,
    pub name: String,
    pub round: u8,
    pub allowed: bool,
    pub patched: bool,
}

/// What a successful write returns.
#[derive(Debug, Clone, Default)]
pub struct Written {
    pub object: Value,
    pub warnings: Vec<String>,
    /// `<webhook name>/<key>` → value, as the API server puts them in its audit event.
    pub audit: BTreeMap<String, Value>,
    pub calls: Vec<Call>,
}

pub type Outcome = Result<Written, Status>;

/// A custom resource kind, from its CRD.
#[derive(Debug, Clone)]
struct Resource {
    group: String,
    plural: String,
    kind: String,
    namespaced: bool,
    status_subresource: bool,
}

/// One `rules[]` entry (WH/predicates/rules/rules.go).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Rule {
    #[serde(default)]
    operations: Vec<String>,
    #[serde(default)]
    api_groups: Vec<String>,
    #[serde(default)]
    api_versions: Vec<String>,
    #[serde(default)]
    resources: Vec<String>,
    scope: Option<String>,
}

/// A label selector (`matchLabels`, `matchExpressions`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Selector {
    #[serde(default)]
    match_labels: BTreeMap<String, String>,
    #[serde(default)]
    match_expressions: Vec<Expression>,
}

#[derive(Debug, Clone, Deserialize)]
struct Expression {
    key: String,
    operator: String,
    #[serde(default)]
    values: Vec<String>,
}

/// An in-process webhook (a third party's, e.g. Tekton's defaulting webhook): request → response.
pub type Local = Arc<dyn Fn(&Value) -> Value + Send + Sync>;

#[derive(Clone)]
enum Target {
    Url(String),
    Local(Local),
}

#[derive(Clone)]
pub struct Webhook {
    configuration: String,
    name: String,
    target: Target,
    rules: Vec<Rule>,
    namespace_selector: Selector,
    object_selector: Selector,
    match_conditions: Vec<(String, String)>,
    timeout: Duration,
    fail_closed: bool,
    reinvoke_if_needed: bool,
    side_effects: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Create,
    Update,
    Delete,
}

impl Op {
    fn as_str(self) -> &'static str {
        match self {
            Op::Create => "CREATE",
            Op::Update => "UPDATE",
            Op::Delete => "DELETE",
        }
    }
}

/// What one admission pass is about (`admission.Attributes`).
struct Attrs<'a> {
    op: Op,
    res: &'a Resource,
    version: String,
    subresource: &'a str,
    namespace: String,
    name: String,
    user: &'a User,
    dry_run: bool,
}

/// What a client says of these metadata fields on a create is not kept (k8s.io/apiserver
/// pkg/endpoints/handlers/create.go → `rest.WipeObjectMetaSystemFields`).
pub fn wipe_system_fields(meta: &mut serde_json::Map<String, Value>) {
    for k in [
        "uid",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "selfLink",
    ] {
        meta.remove(k);
    }
}

/// Stored objects by (group, plural, namespace, name); the version is not part of the key (one
/// storage version per resource).
pub type Key = (String, String, String, String);

/// One change to the stored objects, at the resource version it made: what a watch reports.
#[derive(Debug, Clone)]
pub struct Change {
    pub resource_version: u64,
    /// `ADDED`, `MODIFIED` or `DELETED` (k8s.io/apimachinery `pkg/watch/watch.go`).
    pub kind: &'static str,
    pub key: Key,
    /// The new state; for `DELETED` the last state, at the delete's resource version
    /// (pkg/storage/etcd3/watcher.go `prepareObjs`: the previous value decoded at the event's
    /// revision).
    pub object: Value,
    /// A MODIFIED change's state before it: a watch with a label selector that the object
    /// stops (or starts) matching sees it DELETED (or ADDED).
    pub previous: Option<Value>,
}

#[derive(Default)]
pub struct Storage {
    pub objects: HashMap<Key, Value>,
    /// Every change, oldest first: etcd keeps them for watches to start from a resource version
    /// (never compacted here).
    pub history: Vec<Change>,
    /// The latest resource version written, for watches waiting on the next change.
    pub changed: tokio::sync::watch::Sender<u64>,
    pub resource_version: u64,
}

impl Storage {
    /// Store `obj` (its resource version already set) and note the change at the current
    /// resource version.
    fn store(&mut self, key: Key, obj: Value) {
        let previous = self.objects.get(&key).cloned();
        let kind = if previous.is_some() { "MODIFIED" } else { "ADDED" };
        self.history.push(Change {
            resource_version: self.resource_version,
            kind,
            key: key.clone(),
            object: obj.clone(),
            previous,
        });
        self.objects.insert(key, obj);
        self.changed.send_replace(self.resource_version);
    }

    /// Store `obj` at `key` at a new resource version (set on it), noted as a change; what is
    /// stored.
    pub fn commit(&mut self, key: Key, mut obj: Value) -> Value {
        self.resource_version += 1;
        obj["metadata"]["resourceVersion"] = json!(self.resource_version.to_string());
        self.store(key, obj.clone());
        obj
    }

    /// The labels of the namespace `name`, when it exists. Namespaces are stored objects
    /// (`Namespace`, key `("", "namespaces", "", name)`), read by NamespaceLifecycle and the
    /// webhooks' namespace selectors.
    pub fn namespace_labels(&self, name: &str) -> Option<BTreeMap<String, String>> {
        let ns = self.objects.get(&namespace_key(name))?;
        Some(
            ns["metadata"]["labels"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect(),
        )
    }

    /// Create the namespace `name` as the API server does, unless it exists: labelled
    /// `kubernetes.io/metadata.name` (kubernetes pkg/apis/core/v1/defaults.go
    /// `SetDefaults_Namespace`), finalizer `kubernetes` and phase `Active`
    /// (pkg/registry/core/namespace/strategy.go `PrepareForCreate`).
    fn add_namespace(&mut self, name: &str) {
        if self.objects.contains_key(&namespace_key(name)) {
            return;
        }
        let ns = json!({"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": name, "uid": uuid::Uuid::new_v4().to_string(),
                "creationTimestamp": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                "labels": {"kubernetes.io/metadata.name": name}},
            "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}});
        self.commit(namespace_key(name), ns);
    }

    /// Remove the object at `key`: a new resource version, noted as its deletion.
    pub fn remove(&mut self, key: &Key) -> Option<Value> {
        let mut obj = self.objects.remove(key)?;
        self.resource_version += 1;
        obj["metadata"]["resourceVersion"] = json!(self.resource_version.to_string());
        self.history.push(Change {
            resource_version: self.resource_version,
            kind: "DELETED",
            key: key.clone(),
            object: obj.clone(),
            previous: None,
        });
        self.changed.send_replace(self.resource_version);
        Some(obj)
    }
}

/// Where the Namespace `name` is stored.
pub fn namespace_key(name: &str) -> Key {
    (String::new(), "namespaces".into(), String::new(), name.into())
}

pub struct ApiServer {
    client: reqwest::Client,
    mutating: Vec<Webhook>,
    validating: Vec<Webhook>,
    resources: Vec<Resource>,
    storage: Arc<Mutex<Storage>>,
    /// Every AdmissionReview sent, by webhook name, when `record` is set.
    pub record: bool,
    pub sent: Mutex<Vec<(String, Value)>>,
}

pub fn corpus() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/corpus")
}

pub fn yaml_docs(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_yaml_ng::Deserializer::from_str(&text)
        .filter_map(|d| Value::deserialize(d).ok())
        .filter(|v| !v.is_null())
        .collect()
}

/// The kind and scope (namespaced?) of the custom resource `group`/`plural`, as its CRD says.
pub fn served(group: &str, plural: &str) -> Option<(String, bool)> {
    resources()
        .into_iter()
        .find(|r| r.group == group && r.plural == plural)
        .map(|r| (r.kind, r.namespaced))
}

/// Kinds from the CRDs in the corpus: plural, scope and whether `status` is a subresource.
fn resources() -> Vec<Resource> {
    static KINDS: std::sync::OnceLock<Vec<Resource>> = std::sync::OnceLock::new();
    KINDS.get_or_init(read_crds).clone()
}

fn read_crds() -> Vec<Resource> {
    let mut out = Vec::new();
    let dirs = [
        corpus().join("schemas/argo-crds"),
        corpus().join("schemas/tekton/300-crds"),
    ];
    for dir in dirs {
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
            .collect();
        files.sort();
        for f in files {
            for crd in yaml_docs(&f)
                .into_iter()
                .filter(|d| d["kind"] == "CustomResourceDefinition")
            {
                let spec = &crd["spec"];
                out.push(Resource {
                    group: spec["group"].as_str().unwrap_or_default().into(),
                    plural: spec["names"]["plural"].as_str().unwrap_or_default().into(),
                    kind: spec["names"]["kind"].as_str().unwrap_or_default().into(),
                    namespaced: spec["scope"] == "Namespaced",
                    // apiextensions-apiserver pkg/registry/customresource/etcd.go: the status
                    // subresource exists when the served version declares it.
                    status_subresource: spec["versions"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .any(|v| v["subresources"]["status"].is_object()),
                });
            }
        }
    }
    assert!(out.iter().any(|r| r.kind == "Workflow") && out.iter().any(|r| r.kind == "PipelineRun"));
    // The built-in kinds scimgate reads (the controllers' ConfigMaps and Deployments, service
    // accounts, the webhook configurations, namespaces) and the RBAC kinds it writes, stored as
    // they are: no admission calls for them (the webhooks' rules name only Argo and Tekton). RBAC
    // writes go through `rbac`, with RBAC's own validation.
    for (group, plural, kind, namespaced) in [
        ("", "namespaces", "Namespace", false),
        ("rbac.authorization.k8s.io", "roles", "Role", true),
        ("rbac.authorization.k8s.io", "rolebindings", "RoleBinding", true),
        ("rbac.authorization.k8s.io", "clusterroles", "ClusterRole", false),
        (
            "rbac.authorization.k8s.io",
            "clusterrolebindings",
            "ClusterRoleBinding",
            false,
        ),
        ("", "configmaps", "ConfigMap", true),
        ("", "serviceaccounts", "ServiceAccount", true),
        ("apps", "deployments", "Deployment", true),
        (
            "admissionregistration.k8s.io",
            "mutatingwebhookconfigurations",
            "MutatingWebhookConfiguration",
            false,
        ),
        (
            "admissionregistration.k8s.io",
            "validatingwebhookconfigurations",
            "ValidatingWebhookConfiguration",
            false,
        ),
    ] {
        out.push(Resource {
            group: group.into(),
            plural: plural.into(),
            kind: kind.into(),
            namespaced,
            status_subresource: kind == "Deployment",
        });
    }
    out
}

/// The webhook configurations in `manifests/base/webhooks.yaml`, pointed at `admission`. Defaults
/// are the v1 API's (pkg/apis/admissionregistration/v1/defaults.go in kubernetes: failurePolicy
/// Fail, timeoutSeconds 10, reinvocationPolicy Never, scope `*`, empty selectors).
fn from_manifests(admission: &str) -> (Vec<Webhook>, Vec<Webhook>) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("manifests/base/webhooks.yaml");
    let (mut mutating, mut validating) = (Vec::new(), Vec::new());
    for doc in yaml_docs(&path) {
        let configuration = doc["metadata"]["name"].as_str().unwrap_or_default().to_string();
        let is_mutating = match doc["kind"].as_str() {
            Some("MutatingWebhookConfiguration") => true,
            Some("ValidatingWebhookConfiguration") => false,
            _ => continue,
        };
        for w in doc["webhooks"].as_array().into_iter().flatten() {
            let cc = &w["clientConfig"];
            let url = match cc["url"].as_str() {
                Some(u) => u.to_string(),
                None => format!("{admission}{}", cc["service"]["path"].as_str().unwrap_or("/")),
            };
            let versions: Vec<&str> = w["admissionReviewVersions"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            assert!(
                versions.contains(&"v1"),
                "the API server sends v1 first when the webhook takes it"
            );
            let hook = Webhook {
                configuration: configuration.clone(),
                name: w["name"].as_str().unwrap_or_default().into(),
                target: Target::Url(url),
                rules: serde_json::from_value(w["rules"].clone()).expect("rules"),
                namespace_selector: serde_json::from_value(w["namespaceSelector"].clone()).unwrap_or_default(),
                object_selector: serde_json::from_value(w["objectSelector"].clone()).unwrap_or_default(),
                match_conditions: w["matchConditions"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|c| {
                        (
                            c["name"].as_str().unwrap_or_default().to_string(),
                            c["expression"].as_str().unwrap_or_default().to_string(),
                        )
                    })
                    .collect(),
                timeout: Duration::from_secs(w["timeoutSeconds"].as_u64().unwrap_or(10)),
                fail_closed: w["failurePolicy"].as_str().unwrap_or("Fail") == "Fail",
                reinvoke_if_needed: w["reinvocationPolicy"] == "IfNeeded",
                side_effects: w["sideEffects"].as_str().unwrap_or("Unknown").into(),
            };
            if is_mutating {
                mutating.push(hook);
            } else {
                validating.push(hook);
            }
        }
    }
    (mutating, validating)
}

impl ApiServer {
    /// The API server of a cluster with scimgate (`manifests/base`) pointed at `s`, Tekton's own
    /// defaulting webhook, and a webhook of another vendor that labels Argo objects — both after
    /// ours in the mutating order, so ours is re-invoked, as on a real cluster.
    pub fn new(s: &TestServer) -> ApiServer {
        let mut api = ApiServer::bare(s);
        api.add_mutating(tekton_defaulting());
        api.add_mutating(labeler());
        api
    }

    /// Only the webhooks in `manifests/base`.
    pub fn bare(s: &TestServer) -> ApiServer {
        ApiServer::at(&s.admission, s.client.clone())
    }

    /// Only the webhooks in `manifests/base`, pointed at `admission` (`https://host:port`) and
    /// called with `client` (which must trust the server's CA).
    pub fn at(admission: &str, client: reqwest::Client) -> ApiServer {
        let (mutating, validating) = from_manifests(admission);
        let mut storage = Storage::default();
        for ns in [
            "default",
            "kube-system",
            "scimgate",
            "argo",
            "argocd",
            "tekton-pipelines",
            "team-a",
            "team-b",
            "legacy-billing",
            "legacy-x",
            "payments",
            "ml-team",
            "ci",
        ] {
            storage.add_namespace(ns);
        }
        let mut api = ApiServer {
            client,
            mutating: Vec::new(),
            validating,
            resources: resources(),
            storage: Arc::new(Mutex::new(storage)),
            record: false,
            sent: Mutex::new(Vec::new()),
        };
        for m in mutating {
            api.add_mutating(m);
        }
        api
    }

    /// A cluster where scimgate's mutating webhook is not registered (deleted by someone, or
    /// never applied): only the validating one stands between a person and the stamp.
    pub fn validating_only(s: &TestServer) -> ApiServer {
        let mut api = ApiServer::bare(s);
        api.mutating.clear();
        api
    }

    /// A cluster with a mutating webhook of another vendor that rewrites
    /// `scimgate.io/submitted-by` after ours and, like ours, asks to be re-invoked — so it has the
    /// last word on the object the validating webhooks see.
    pub fn with_tamperer(s: &TestServer) -> ApiServer {
        let mut api = ApiServer::bare(s);
        let f: Local = Arc::new(|review: &Value| {
            let before = review["request"]["object"].clone();
            let mut obj = before.clone();
            if obj["metadata"]["annotations"].is_object() {
                obj["metadata"]["annotations"]["scimgate.io/submitted-by"] = json!("ceo@example.com");
            }
            patch_response(review, &before, &obj)
        });
        api.add_mutating(local(
            "zz-tamper.example.com",
            vec![rule(&["argoproj.io"], &["v1alpha1"], &["workflows"])],
            f,
        ));
        api
    }

    /// Store `obj` as it is (an object that exists already, e.g. written before scimgate was
    /// installed or restored from a backup), keeping its resourceVersion.
    pub fn put(&self, obj: Value) {
        let (res, _) = self.resource(&obj).expect("a known kind");
        let ns = obj["metadata"]["namespace"].as_str().unwrap_or_default().to_string();
        let name = obj["metadata"]["name"].as_str().unwrap_or_default().to_string();
        let mut storage = self.storage.lock().expect("storage");
        storage.resource_version += 1;
        let mut obj = obj;
        if obj["metadata"]["resourceVersion"].is_null() {
            obj["metadata"]["resourceVersion"] = json!(storage.resource_version.to_string());
        }
        storage.store(ApiServer::key(&res, &ns, &name), obj);
    }

    /// Another handle on this API server: the same store and the webhooks registered so far,
    /// for the HTTP face's writes (`kube_face`).
    pub fn handle(&self) -> ApiServer {
        ApiServer {
            client: self.client.clone(),
            mutating: self.mutating.clone(),
            validating: self.validating.clone(),
            resources: self.resources.clone(),
            storage: self.storage.clone(),
            record: false,
            sent: Mutex::new(Vec::new()),
        }
    }

    /// This API server's store, with the webhooks of `ApiServer::new` pointed at `s` (a
    /// scimgate restarted on other ports).
    pub fn calling(&self, s: &TestServer) -> ApiServer {
        let mut api = ApiServer::new(s);
        api.storage = self.storage.clone();
        api
    }

    /// This API server's store, with only the webhooks of `manifests/base` pointed at
    /// `admission` (`ApiServer::at`).
    pub fn calling_at(&self, admission: &str, client: reqwest::Client) -> ApiServer {
        let mut api = ApiServer::at(admission, client);
        api.storage = self.storage.clone();
        api
    }

    /// The store, shared with the HTTP face (`kube_face`).
    pub fn storage(&self) -> Arc<Mutex<Storage>> {
        self.storage.clone()
    }

    /// Create the namespace `name` (nothing changes when it exists): a stored `Namespace`, ADDED
    /// for watches, that NamespaceLifecycle and namespace selectors see from now on.
    pub fn create_namespace(&self, name: &str) {
        self.storage.lock().expect("storage").add_namespace(name);
    }

    /// Delete the namespace `name`: each of its objects, then the namespace, each a DELETED change.
    /// Upstream the namespace first turns `Terminating` and the namespace controller deletes its
    /// content kind by kind before the finalizer goes (kubernetes pkg/controller/namespace,
    /// `deletion/namespaced_resources_deleter.go`); the emulator collapses that into one step.
    pub fn delete_namespace(&self, name: &str) {
        let mut storage = self.storage.lock().expect("storage");
        let mut keys: Vec<Key> = storage.objects.keys().filter(|k| k.2 == name).cloned().collect();
        keys.sort();
        for key in keys.iter().chain([&namespace_key(name)]) {
            storage.remove(key);
        }
    }

    /// Webhooks run in the order of their configurations' names, then in list order
    /// (pkg/admission/configuration/mutating_webhook_manager.go: sorted by name).
    fn add_mutating(&mut self, w: Webhook) {
        self.mutating.push(w);
        self.mutating.sort_by(|a, b| a.configuration.cmp(&b.configuration));
    }

    fn resource(&self, obj: &Value) -> Result<(Resource, String), Status> {
        let api = obj["apiVersion"].as_str().unwrap_or_default();
        let (group, version) = api.split_once('/').unwrap_or(("", api));
        let kind = obj["kind"].as_str().unwrap_or_default();
        self.resources
            .iter()
            .find(|r| r.group == group && r.kind == kind)
            .map(|r| (r.clone(), version.to_string()))
            .ok_or_else(|| Status {
                code: 404,
                message: format!("the server could not find the requested resource ({kind} {api})"),
            })
    }

    /// Whether `obj` is of a kind this API server stores.
    pub fn stores(&self, obj: &Value) -> bool {
        self.resource(obj).is_ok()
    }

    fn key(res: &Resource, namespace: &str, name: &str) -> Key {
        (res.group.clone(), res.plural.clone(), namespace.into(), name.into())
    }

    /// The stored object of `api_version`/`kind` `namespace/name`.
    pub fn get(&self, api_version: &str, kind: &str, namespace: &str, name: &str) -> Option<Value> {
        let (res, _) = self.resource(&json!({"apiVersion": api_version, "kind": kind})).ok()?;
        let storage = self.storage.lock().expect("storage");
        storage.objects.get(&ApiServer::key(&res, namespace, name)).cloned()
    }

    /// The stored version of `obj` (same kind, namespace and name).
    pub fn stored(&self, obj: &Value) -> Option<Value> {
        self.get(
            obj["apiVersion"].as_str()?,
            obj["kind"].as_str()?,
            obj["metadata"]["namespace"].as_str().unwrap_or_default(),
            obj["metadata"]["name"].as_str()?,
        )
    }

    fn namespace_of(&self, res: &Resource, obj: &Value) -> Result<String, Status> {
        if !res.namespaced {
            return Ok(String::new());
        }
        let ns = obj["metadata"]["namespace"].as_str().unwrap_or("default").to_string();
        // The NamespaceLifecycle admission plugin refuses writes into a namespace that does not
        // exist (plugin/pkg/admission/namespace/lifecycle/admission.go in kubernetes).
        if self.storage.lock().expect("storage").namespace_labels(&ns).is_none() {
            return Err(Status {
                code: 404,
                message: format!("namespaces \"{ns}\" not found"),
            });
        }
        Ok(ns)
    }

    /// `POST` a new object (pkg/endpoints/handlers/create.go; pkg/registry/generic/registry/store.go
    /// `Store.Create`).
    pub async fn create(&self, user: &User, obj: Value) -> Outcome {
        self.create_opts(user, obj, false).await
    }

    /// `POST …?dryRun=All`: every step but storage.
    pub async fn create_dry_run(&self, user: &User, obj: Value) -> Outcome {
        self.create_opts(user, obj, true).await
    }

    async fn create_opts(&self, user: &User, mut obj: Value, dry_run: bool) -> Outcome {
        let (res, version) = self.resource(&obj)?;
        let namespace = self.namespace_of(&res, &obj)?;
        let Some(meta) = obj["metadata"].as_object_mut() else {
            return Err(Status {
                code: 400,
                message: "Object 'metadata' is missing".into(),
            });
        };
        if res.namespaced {
            meta.insert("namespace".into(), json!(namespace));
        } else {
            meta.remove("namespace");
        }
        wipe_system_fields(meta);
        if meta
            .get("resourceVersion")
            .and_then(Value::as_str)
            .is_some_and(|rv| !rv.is_empty())
        {
            // storage/etcd3/store.go `Create`.
            return Err(Status {
                code: 500,
                message: "resourceVersion should not be set on objects to be created".into(),
            });
        }
        let name = meta.get("name").and_then(Value::as_str).unwrap_or_default().to_string();
        let mut written = Written::default();
        let attrs = Attrs {
            op: Op::Create,
            res: &res,
            version: version.clone(),
            subresource: "",
            namespace: namespace.clone(),
            // With generateName, the mutating webhooks see no name (request.name "").
            name: name.clone(),
            user,
            dry_run,
        };
        let mutated = self.mutate(&attrs, obj, None, &mut written).await?;
        // Store.create: the generated name, uid and creationTimestamp come after mutating
        // admission; a generated name that is taken is tried again, up to 8 times
        // (`createWithGenerateNameRetry`, maxNameGenerationCreateAttempts).
        for _ in 0..8 {
            let mut obj = mutated.clone();
            let meta = obj["metadata"].as_object_mut().ok_or_else(|| Status {
                code: 400,
                message: "a mutating webhook removed metadata".into(),
            })?;
            // FillObjectMetaSystemFields.
            meta.insert(
                "creationTimestamp".into(),
                json!(chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
            );
            meta.insert("uid".into(), json!(uuid::Uuid::new_v4().to_string()));
            let named = meta.get("name").and_then(Value::as_str).unwrap_or_default().to_string();
            let generated = named.is_empty();
            let final_name = if generated {
                match meta.get("generateName").and_then(Value::as_str) {
                    Some(base) if !base.is_empty() => generate_name(base),
                    // rest/create.go BeforeCreate → validation: "name or generateName is required".
                    _ => {
                        return Err(Status {
                            code: 422,
                            message: format!(
                            "{}.{} \"\" is invalid: metadata.name: Required value: name or generateName is required",
                            res.plural, res.group
                        ),
                        })
                    }
                }
            } else {
                named
            };
            meta.insert("name".into(), json!(final_name));
            // apiextensions-apiserver customresource/strategy.go PrepareForCreate: status goes when
            // it is a subresource; generation is 1.
            meta.insert("generation".into(), json!(1));
            if res.status_subresource {
                if let Some(o) = obj.as_object_mut() {
                    o.remove("status");
                }
            }
            let attrs = Attrs {
                name: final_name.clone(),
                version: version.clone(),
                ..attrs_clone(&attrs)
            };
            self.validate(&attrs, &obj, None, &mut written).await?;
            if dry_run {
                written.object = obj;
                return Ok(written);
            }
            let mut storage = self.storage.lock().expect("storage");
            let key = ApiServer::key(&res, &namespace, &final_name);
            if storage.objects.contains_key(&key) {
                if generated {
                    continue;
                }
                return Err(Status {
                    code: 409,
                    message: format!("{}.{} \"{final_name}\" already exists", res.plural, res.group),
                });
            }
            storage.resource_version += 1;
            obj["metadata"]["resourceVersion"] = json!(storage.resource_version.to_string());
            storage.store(key, obj.clone());
            written.object = obj;
            return Ok(written);
        }
        Err(Status {
            code: 409,
            message: "no unique name could be generated".into(),
        })
    }

    /// `PUT` the whole object (pkg/endpoints/handlers/update.go; Store.Update).
    pub async fn update(&self, user: &User, obj: Value) -> Outcome {
        self.update_opts(user, obj, "", false).await
    }

    /// `PUT …/status`: mutating admission sees the object as sent; then only its status is kept
    /// (apiextensions-apiserver customresource/status_strategy.go `PrepareForUpdate`: the new
    /// object is the old one with the new status), so a webhook's metadata patch is lost.
    pub async fn update_status(&self, user: &User, obj: Value) -> Outcome {
        self.update_opts(user, obj, "status", false).await
    }

    async fn update_opts(&self, user: &User, obj: Value, subresource: &str, dry_run: bool) -> Outcome {
        self.try_update(user, obj, subresource, dry_run, None).await
    }

    /// One `tryUpdate` of `Store.Update` (registry/store.go) against `cached` — the watch cache's
    /// copy (storage/cacher/delegator.go `GuaranteedUpdate` passes it) — or the stored object.
    /// The put is optimistic (etcd3/store.go `GuaranteedUpdate`): when the object changed since
    /// the copy was read, nothing is written and the answer is 409, which a PATCH retries.
    async fn try_update(
        &self,
        user: &User,
        obj: Value,
        subresource: &str,
        dry_run: bool,
        cached: Option<Value>,
    ) -> Outcome {
        let (res, version) = self.resource(&obj)?;
        let namespace = self.namespace_of(&res, &obj)?;
        let name = obj["metadata"]["name"].as_str().unwrap_or_default().to_string();
        let key = ApiServer::key(&res, &namespace, &name);
        let stored = cached.or_else(|| self.storage.lock().expect("storage").objects.get(&key).cloned());
        // CRs never create on update (customresource/strategy.go AllowCreateOnUpdate false).
        let Some(old) = stored else {
            return Err(Status {
                code: 404,
                message: format!("{}.{} \"{name}\" not found", res.plural, res.group),
            });
        };
        if subresource == "status" && !res.status_subresource {
            return Err(Status {
                code: 404,
                message: format!(
                    "the server could not find the requested resource ({}/status)",
                    res.plural
                ),
            });
        }
        let mut obj = obj;
        if res.namespaced {
            obj["metadata"]["namespace"] = json!(namespace);
        }
        let mut written = Written::default();
        let attrs = Attrs {
            op: Op::Update,
            res: &res,
            version,
            subresource,
            namespace: namespace.clone(),
            name: name.clone(),
            user,
            dry_run,
        };
        // update.go: mutating admission runs before the resourceVersion precondition is checked,
        // on the object as the client sent it.
        let mut obj = self.mutate(&attrs, obj, Some(&old), &mut written).await?;
        if subresource == "status" {
            // apiextensions-apiserver customresource/status_strategy.go `PrepareForUpdate`, after
            // mutating admission: the new object is the old one with the new status — whatever a
            // client or a mutating webhook changed elsewhere (a stamp in the metadata) is gone
            // before validation and storage.
            let mut new = old.clone();
            match obj.get("status") {
                Some(s) => new["status"] = s.clone(),
                None => {
                    new.as_object_mut().map(|o| o.remove("status"));
                }
            }
            new["metadata"]["resourceVersion"] = obj["metadata"]["resourceVersion"].clone();
            obj = new;
        }
        let rv = obj["metadata"]["resourceVersion"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        if rv.is_empty() {
            return Err(Status {
                code: 422,
                message: format!(
                    "{}.{} \"{name}\" is invalid: metadata.resourceVersion: Invalid value: 0x0: must be specified for an update",
                    res.plural, res.group
                ),
            });
        }
        if Some(rv.as_str()) != old["metadata"]["resourceVersion"].as_str() {
            return Err(Status {
                code: 409,
                message: format!(
                    "Operation cannot be fulfilled on {}.{} \"{name}\": the object has been modified; please apply your changes to the latest version and try again",
                    res.plural, res.group
                ),
            });
        }
        // rest/update.go BeforeUpdate: uid, creationTimestamp and generation are the stored ones
        // (and a pending deletion stays pending: `FillObjectMetaSystemFields` is for create only,
        // the deletion fields are the stored object's)…
        for k in ["uid", "creationTimestamp", "generation"] {
            obj["metadata"][k] = old["metadata"][k].clone();
        }
        for k in ["deletionTimestamp", "deletionGracePeriodSeconds"] {
            match old["metadata"].get(k) {
                Some(v) => obj["metadata"][k] = v.clone(),
                None => {
                    obj["metadata"].as_object_mut().map(|m| m.remove(k));
                }
            }
        }
        // …and customresource/strategy.go PrepareForUpdate: the main resource cannot change a
        // status subresource; any change outside metadata bumps the generation.
        if res.status_subresource && subresource.is_empty() {
            match old.get("status") {
                Some(s) => obj["status"] = s.clone(),
                None => {
                    obj.as_object_mut().map(|o| o.remove("status"));
                }
            }
        }
        let without_meta = |v: &Value| {
            let mut v = v.clone();
            v.as_object_mut().map(|o| o.remove("metadata"));
            v
        };
        if subresource.is_empty() && without_meta(&obj) != without_meta(&old) {
            let g = old["metadata"]["generation"].as_i64().unwrap_or(1);
            obj["metadata"]["generation"] = json!(g + 1);
        }
        self.validate(&attrs, &obj, Some(&old), &mut written).await?;
        // registry/store.go `Update` → `ShouldDeleteDuringUpdate`: the update that takes the last
        // finalizer off an object whose deletion was asked for removes it — admitted as the
        // UPDATE it is, with no DELETE admission (`deleteWithoutFinalizers` passes
        // `rest.ValidateAllObjectFunc`).
        let emptied = old["metadata"].get("deletionTimestamp").is_some()
            && obj["metadata"]["finalizers"].as_array().is_none_or(Vec::is_empty);
        if !dry_run {
            let mut storage = self.storage.lock().expect("storage");
            let now = storage
                .objects
                .get(&key)
                .map(|o| o["metadata"]["resourceVersion"].clone());
            if now != Some(old["metadata"]["resourceVersion"].clone()) {
                return Err(Status {
                    code: 409,
                    message: format!(
                        "{}.{} \"{name}\": the object changed since it was read",
                        res.plural, res.group
                    ),
                });
            }
            if emptied {
                storage.remove(&key);
            } else {
                storage.resource_version += 1;
                obj["metadata"]["resourceVersion"] = json!(storage.resource_version.to_string());
                storage.store(key, obj.clone());
            }
        }
        written.object = obj;
        Ok(written)
    }

    /// `PATCH` with `application/merge-patch+json` (RFC 7386) or `application/json-patch+json`
    /// (RFC 6902): applied to the stored object, then the UPDATE path with operation UPDATE
    /// (pkg/endpoints/handlers/patch.go: `applyPatch`, then admission, then `Store.Update`).
    pub async fn patch(&self, user: &User, target: &Value, patch: Patch) -> Outcome {
        let Some(obj) = self.stored(target) else {
            return Err(Status {
                code: 404,
                message: format!(
                    "{} \"{}\" not found",
                    target["kind"].as_str().unwrap_or_default(),
                    target["metadata"]["name"].as_str().unwrap_or_default()
                ),
            });
        };
        let obj = apply_patch(obj, &patch)?;
        self.update_opts(user, obj, "", false).await
    }

    /// `PATCH` as kube-apiserver serves it when its watch cache is behind: the first `tryUpdate`
    /// works on `cached` (the copy read before someone else's write), the patch applied to it
    /// and both admission chains run; the optimistic put fails, and the patch is applied again
    /// to the object read fresh from etcd, admission running again with fresh uids
    /// (etcd3/store.go `GuaranteedUpdate`; handlers/patch.go `patchResource`, transformers
    /// `applyPatch`, `applyAdmission`). Only the second attempt is stored.
    pub async fn patch_behind_cache(&self, user: &User, cached: &Value, patch: Patch) -> Outcome {
        let first = apply_patch(cached.clone(), &patch)?;
        match self.try_update(user, first, "", false, Some(cached.clone())).await {
            Err(s) if s.code == 409 => self.patch(user, cached, patch).await,
            done => done,
        }
    }

    /// `DELETE` with the default (background) propagation.
    pub async fn delete(&self, user: &User, target: &Value) -> Outcome {
        self.delete_propagating(user, target, None).await
    }

    /// `DELETE`: admission with `object` null and `oldObject` the stored object, for webhooks
    /// that register DELETE (pkg/registry/rest/delete.go, `AdmissionToValidateObjectDeleteFunc`).
    /// `propagationPolicy: Foreground` (or `Orphan`) adds the garbage collector's finalizer within
    /// the DELETE (registry/store.go `deletionFinalizersForGarbageCollection`; no UPDATE admission
    /// for it). An object with finalizers is kept, its deletion pending
    /// (`updateForGracefulDeletionAndFinalizers`: `deleteValidation` on the existing object, then
    /// `deletionTimestamp` set; custom resources have no graceful deletion, so
    /// `deletionGracePeriodSeconds` is 0). A DELETE repeated while it is pending is admitted again
    /// — `deleteValidation` runs in every `updateForGracefulDeletionAndFinalizers` — and stores
    /// nothing new (the bytes are equal, so `GuaranteedUpdate` writes nothing).
    pub async fn delete_propagating(&self, user: &User, target: &Value, propagation: Option<&str>) -> Outcome {
        let (res, version) = self.resource(target)?;
        let namespace = self.namespace_of(&res, target)?;
        let name = target["metadata"]["name"].as_str().unwrap_or_default().to_string();
        let key = ApiServer::key(&res, &namespace, &name);
        let Some(old) = self.storage.lock().expect("storage").objects.get(&key).cloned() else {
            return Err(Status {
                code: 404,
                message: format!("{}.{} \"{name}\" not found", res.plural, res.group),
            });
        };
        let mut written = Written::default();
        let attrs = Attrs {
            op: Op::Delete,
            res: &res,
            version,
            subresource: "",
            namespace,
            name,
            user,
            dry_run: false,
        };
        self.mutate(&attrs, Value::Null, Some(&old), &mut written).await?;
        self.validate(&attrs, &Value::Null, Some(&old), &mut written).await?;
        if old["metadata"].get("deletionTimestamp").is_some() {
            written.object = old;
            return Ok(written);
        }
        let mut old = old;
        let gc_finalizer = match propagation {
            Some("Foreground") => Some("foregroundDeletion"),
            Some("Orphan") => Some("orphan"),
            _ => None,
        };
        if let Some(f) = gc_finalizer {
            if !old["metadata"]["finalizers"].is_array() {
                old["metadata"]["finalizers"] = json!([]);
            }
            if let Some(list) = old["metadata"]["finalizers"].as_array_mut() {
                list.push(json!(f));
            }
        }
        let mut storage = self.storage.lock().expect("storage");
        if old["metadata"]["finalizers"].as_array().is_some_and(|f| !f.is_empty()) {
            let mut pending = old;
            pending["metadata"]["deletionTimestamp"] =
                json!(chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string());
            pending["metadata"]["deletionGracePeriodSeconds"] = json!(0);
            storage.resource_version += 1;
            pending["metadata"]["resourceVersion"] = json!(storage.resource_version.to_string());
            storage.store(key, pending.clone());
            written.object = pending;
        } else {
            storage.remove(&key);
            written.object = old;
        }
        Ok(written)
    }

    /// The AdmissionReview for one call: a new uid every time
    /// (WH/request/admissionreview.go `CreateAdmissionObjects`: `uuid.NewUUID()`).
    fn review(&self, attrs: &Attrs<'_>, object: &Value, old: Option<&Value>) -> Value {
        let gvk = json!({"group": attrs.res.group, "version": attrs.version, "kind": attrs.res.kind});
        let gvr = json!({"group": attrs.res.group, "version": attrs.version, "resource": attrs.res.plural});
        let options = match attrs.op {
            Op::Create => json!({"apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions"}),
            Op::Update => json!({"apiVersion": "meta.k8s.io/v1", "kind": "UpdateOptions"}),
            Op::Delete => json!({"apiVersion": "meta.k8s.io/v1", "kind": "DeleteOptions"}),
        };
        let mut request = json!({
            "uid": uuid::Uuid::new_v4().to_string(),
            "kind": gvk, "resource": gvr, "requestKind": gvk, "requestResource": gvr,
            "operation": attrs.op.as_str(),
            "userInfo": {"username": attrs.user.username, "groups": attrs.user.groups},
            "object": object, "oldObject": old.cloned().unwrap_or(Value::Null),
            "dryRun": attrs.dry_run, "options": options,
        });
        // `omitempty` in k8s.io/api admission/v1 types.go: name, namespace, subResource.
        if !attrs.name.is_empty() {
            request["name"] = json!(attrs.name);
        }
        if !attrs.namespace.is_empty() {
            request["namespace"] = json!(attrs.namespace);
        }
        if !attrs.subresource.is_empty() {
            request["subResource"] = json!(attrs.subresource);
            request["requestSubResource"] = json!(attrs.subresource);
        }
        json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request})
    }

    /// WH/generic/webhook.go `ShouldCallHook`: namespace selector, object selector, rules, then
    /// match conditions. `Err` when the request must fail (a condition that errors, fail-closed).
    fn should_call(&self, w: &Webhook, attrs: &Attrs<'_>, object: &Value, old: Option<&Value>) -> Result<bool, Status> {
        if !w.rules.iter().any(|r| rule_matches(r, attrs)) {
            return Ok(false);
        }
        // WH/predicates/namespace/matcher.go: cluster-scoped objects match any selector.
        if !attrs.namespace.is_empty() {
            let labels = self
                .storage
                .lock()
                .expect("storage")
                .namespace_labels(&attrs.namespace)
                .ok_or_else(|| Status {
                    code: 404,
                    message: format!("namespaces \"{}\" not found", attrs.namespace),
                })?;
            if !selector_matches(&w.namespace_selector, &labels) {
                return Ok(false);
            }
        }
        // WH/predicates/object/matcher.go: the object's labels or the old object's.
        let labels_of = |o: &Value| -> BTreeMap<String, String> {
            o["metadata"]["labels"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect()
        };
        let object_match = (!object.is_null() && selector_matches(&w.object_selector, &labels_of(object)))
            || old.is_some_and(|o| selector_matches(&w.object_selector, &labels_of(o)));
        if !object_match {
            return Ok(false);
        }
        // WH/matchconditions/matcher.go: any false skips the webhook; otherwise an error fails the
        // request (fail-closed) or skips the webhook (fail-open).
        let review = self.review(attrs, object, old);
        let mut request = review["request"].clone();
        if let Some(r) = request.as_object_mut() {
            for k in ["uid", "object", "oldObject"] {
                r.remove(k);
            }
        }
        let mut error = None;
        for (name, expression) in &w.match_conditions {
            match eval_condition(expression, object, old, &request) {
                Ok(false) => return Ok(false),
                Ok(true) => {}
                Err(e) => error = Some(format!("{name}: {e}")),
            }
        }
        match error {
            Some(e) if w.fail_closed => Err(Status {
                code: 403,
                message: format!("failed to evaluate match condition of webhook \"{}\": {e}", w.name),
            }),
            Some(_) => Ok(false),
            None => Ok(true),
        }
    }

    /// Call one webhook. `Ok(None)` when the call failed and the webhook fails open.
    async fn call(
        &self,
        w: &Webhook,
        attrs: &Attrs<'_>,
        object: &Value,
        old: Option<&Value>,
        written: &mut Written,
        round: u8,
    ) -> Result<Option<Value>, Status> {
        // WH/mutating/dispatcher.go, validating/dispatcher.go: on a dry-run request a webhook with
        // side effects is not called and the request fails, whatever the failure policy.
        if attrs.dry_run && !matches!(w.side_effects.as_str(), "None" | "NoneOnDryRun") {
            return Err(Status {
                code: 400,
                message: format!("admission webhook \"{}\" does not support dry run", w.name),
            });
        }
        let review = self.review(attrs, object, old);
        if self.record {
            self.sent.lock().expect("sent").push((w.name.clone(), review.clone()));
        }
        let uid = review["request"]["uid"].as_str().unwrap_or_default().to_string();
        let answer: Result<Value, String> = match &w.target {
            Target::Local(f) => Ok(f(&review)),
            Target::Url(url) => self.post_review(url, w.timeout, review.to_string()).await,
        };
        // WH/request/admissionreview.go `VerifyAdmissionResponse`.
        let response = answer.and_then(|v| {
            if v["apiVersion"] != "admission.k8s.io/v1" || v["kind"] != "AdmissionReview" {
                return Err(format!(
                    "expected webhook response of admission.k8s.io/v1, Kind=AdmissionReview, got {}, Kind={}",
                    v["apiVersion"], v["kind"]
                ));
            }
            let r = v["response"].clone();
            if r.is_null() {
                return Err("webhook response was absent".into());
            }
            if r["uid"].as_str() != Some(uid.as_str()) {
                return Err(format!(
                    "expected response.uid=\"{uid}\", got \"{}\"",
                    r["uid"].as_str().unwrap_or_default()
                ));
            }
            Ok(r)
        });
        let response = match response {
            Ok(r) => r,
            Err(e) if w.fail_closed => {
                return Err(Status {
                    code: 500,
                    message: format!("Internal error occurred: failed calling webhook \"{}\": {e}", w.name),
                })
            }
            Err(_) => return Ok(None),
        };
        // Audit annotations get the webhook's name as prefix; warnings go to the client.
        for (k, v) in response["auditAnnotations"].as_object().into_iter().flatten() {
            written.audit.insert(format!("{}/{k}", w.name), v.clone());
        }
        // The same text twice is one warning (pkg/endpoints/filters/warning.go `AddWarning`).
        for warning in response["warnings"].as_array().into_iter().flatten() {
            let w = warning.as_str().unwrap_or_default().to_string();
            if !written.warnings.contains(&w) {
                written.warnings.push(w);
            }
        }
        let allowed = response["allowed"] == true;
        written.calls.push(Call {
            webhook: w.name.clone(),
            uid,
            operation: attrs.op.as_str().into(),
            name: attrs.name.clone(),
            round,
            allowed,
            patched: response["patch"].is_string(),
        });
        if !allowed {
            // WH/errors/statuserror.go `ToStatusErr`.
            let code = response["status"]["code"].as_u64().map_or(400, |c| c.max(400)) as u16;
            let message = response["status"]["message"]
                .as_str()
                .filter(|m| !m.is_empty())
                .map(|m| format!("admission webhook \"{}\" denied the request: {m}", w.name))
                .unwrap_or_else(|| {
                    format!(
                        "admission webhook \"{}\" denied the request without explanation",
                        w.name
                    )
                });
            return Err(Status { code, message });
        }
        Ok(Some(response))
    }

    /// One webhook call as client-go's REST client makes it (the dispatchers' `Post().Body().Do`):
    /// bounded by the webhook's timeout, which it also names as `?timeout=`; a 429 or 5xx with an
    /// integer `Retry-After` is sent again, the same body (so the same uid), after that many
    /// seconds, up to 10 times (rest/with_retry.go `IsNextRetry`, `checkWait`; rest/request.go
    /// `maxRetries`), unless the wait would pass the deadline.
    async fn post_review(&self, url: &str, timeout: Duration, body: String) -> Result<Value, String> {
        let url = format!("{url}?timeout={}s", timeout.as_secs());
        let deadline = tokio::time::Instant::now() + timeout;
        for retry in 0..=10 {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let r = self
                .client
                .post(&url)
                .timeout(left)
                .header("content-type", "application/json")
                .body(body.clone())
                .send()
                .await
                .map_err(|e| e.to_string())?;
            if r.status().is_success() {
                return r.json::<Value>().await.map_err(|e| e.to_string());
            }
            let wait = r
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok())
                .filter(|_| r.status().as_u16() == 429 || r.status().is_server_error());
            match wait.map(Duration::from_secs) {
                Some(wait) if retry < 10 && tokio::time::Instant::now() + wait < deadline => {
                    tokio::time::sleep(wait).await
                }
                _ => return Err(format!("the server responded with status {}", r.status())),
            }
        }
        Err("retries exhausted".into())
    }

    /// The mutating chain (WH/mutating/dispatcher.go, reinvocationcontext.go;
    /// pkg/admission/reinvocation.go): webhooks in order, each patch applied before the next
    /// webhook sees the object; when a patch changes it, every earlier `IfNeeded` webhook is called
    /// once more in a second round — never a third.
    async fn mutate(
        &self,
        attrs: &Attrs<'_>,
        mut object: Value,
        old: Option<&Value>,
        written: &mut Written,
    ) -> Result<Value, Status> {
        let mut invoked: Vec<usize> = Vec::new();
        let mut reinvoke: Vec<usize> = Vec::new();
        for round in 0..2u8 {
            if round == 1 && reinvoke.is_empty() {
                break;
            }
            for (i, w) in self.mutating.iter().enumerate() {
                if round == 1 && !reinvoke.contains(&i) {
                    continue;
                }
                if !self.should_call(w, attrs, &object, old)? {
                    continue;
                }
                let Some(response) = self.call(w, attrs, &object, old, written, round).await? else {
                    if round == 0 && w.reinvoke_if_needed {
                        invoked.push(i);
                    }
                    continue;
                };
                if let Some(p) = response["patch"].as_str() {
                    if response["patchType"] != "JSONPatch" {
                        if w.fail_closed {
                            return Err(Status {
                                code: 500,
                                message: format!(
                                    "Internal error occurred: failed calling webhook \"{}\": unsupported patch type",
                                    w.name
                                ),
                            });
                        }
                        continue;
                    }
                    if object.is_null() {
                        return Err(Status {
                            code: 500,
                            message: format!("admission webhook \"{}\" attempted to modify the object, which is not supported for this operation", w.name),
                        });
                    }
                    let bytes = base64::engine::general_purpose::STANDARD
                        .decode(p)
                        .map_err(|e| Status {
                            code: 500,
                            message: format!("Internal error occurred: failed calling webhook \"{}\": {e}", w.name),
                        })?;
                    let ops: json_patch::Patch = serde_json::from_slice(&bytes).map_err(|e| Status {
                        code: 500,
                        message: format!(
                            "Internal error occurred: failed calling webhook \"{}\": received undecodable patch: {e}",
                            w.name
                        ),
                    })?;
                    let mut patched = object.clone();
                    json_patch::patch(&mut patched, &ops).map_err(|e| Status {
                        code: 500,
                        message: format!("Internal error occurred: {e}"),
                    })?;
                    if patched != object {
                        // Everything invoked before this webhook gets another look.
                        for p in &invoked {
                            if !reinvoke.contains(p) {
                                reinvoke.push(*p);
                            }
                        }
                        object = patched;
                    }
                }
                if round == 0 && w.reinvoke_if_needed {
                    invoked.push(i);
                }
            }
        }
        Ok(object)
    }

    /// The validating webhooks, all called at once; every one must allow
    /// (WH/validating/dispatcher.go). The first denial in list order is reported.
    async fn validate(
        &self,
        attrs: &Attrs<'_>,
        object: &Value,
        old: Option<&Value>,
        written: &mut Written,
    ) -> Result<(), Status> {
        let mut matching = Vec::new();
        for w in &self.validating {
            if self.should_call(w, attrs, object, old)? {
                matching.push(w);
            }
        }
        let mut results = Vec::new();
        let calls = matching.iter().map(|w| {
            let mut own = Written::default();
            async move {
                let r = self.call(w, attrs, object, old, &mut own, 0).await;
                (r, own)
            }
        });
        for (r, own) in futures_util::future::join_all(calls).await {
            for w in own.warnings {
                if !written.warnings.contains(&w) {
                    written.warnings.push(w);
                }
            }
            written.audit.extend(own.audit);
            written.calls.extend(own.calls);
            results.push(r);
        }
        for r in results {
            r?;
        }
        Ok(())
    }
}

/// A merge or JSON patch applied to `obj` (handlers/patch.go `applyPatch`).
pub fn apply_patch(mut obj: Value, patch: &Patch) -> Result<Value, Status> {
    match patch {
        Patch::Merge(p) => json_patch::merge(&mut obj, p),
        Patch::Json(ops) => {
            let ops: json_patch::Patch = serde_json::from_value(Value::Array(ops.clone())).map_err(|e| Status {
                code: 400,
                message: e.to_string(),
            })?;
            json_patch::patch(&mut obj, &ops).map_err(|e| Status {
                code: 422,
                message: e.to_string(),
            })?;
        }
    }
    Ok(obj)
}

fn attrs_clone<'a>(a: &Attrs<'a>) -> Attrs<'a> {
    Attrs {
        op: a.op,
        res: a.res,
        version: a.version.clone(),
        subresource: a.subresource,
        namespace: a.namespace.clone(),
        name: a.name.clone(),
        user: a.user,
        dry_run: a.dry_run,
    }
}

/// A patch as `kubectl patch --type merge|json` sends it.
#[derive(Clone)]
pub enum Patch {
    Merge(Value),
    Json(Vec<Value>),
}

/// WH/predicates/rules/rules.go `Matcher.Matches`: scope, operation, group, version, resource
/// (`res/sub`: `*` for any main resource, `res/*` for a resource and all its subresources).
fn rule_matches(r: &Rule, attrs: &Attrs<'_>) -> bool {
    let any = |list: &[String], v: &str| list.iter().any(|x| x == "*" || x == v);
    let scope = match r.scope.as_deref().unwrap_or("*") {
        "Namespaced" => !attrs.namespace.is_empty(),
        "Cluster" => attrs.namespace.is_empty(),
        _ => true,
    };
    let resource = r.resources.iter().any(|entry| {
        let (res, sub) = entry.split_once('/').unwrap_or((entry.as_str(), ""));
        (res == "*" || res == attrs.res.plural) && (sub == "*" || sub == attrs.subresource)
    });
    scope
        && any(&r.operations, attrs.op.as_str())
        && any(&r.api_groups, &attrs.res.group)
        && any(&r.api_versions, &attrs.version)
        && resource
}

/// k8s.io/apimachinery `pkg/apis/meta/v1/helpers.go` `LabelSelectorAsSelector`.
pub fn selector_matches(s: &Selector, labels: &BTreeMap<String, String>) -> bool {
    s.match_labels.iter().all(|(k, v)| labels.get(k) == Some(v))
        && s.match_expressions.iter().all(|e| {
            let v = labels.get(&e.key);
            match e.operator.as_str() {
                "In" => v.is_some_and(|v| e.values.contains(v)),
                "NotIn" => v.is_none_or(|v| !e.values.contains(v)),
                "Exists" => v.is_some(),
                "DoesNotExist" => v.is_none(),
                _ => false,
            }
        })
}

/// One `matchConditions` expression, with the variables the API server binds: `object`,
/// `oldObject` (null when absent) and `request` (WH/matchconditions/matcher.go; plugin/cel).
fn eval_condition(expression: &str, object: &Value, old: Option<&Value>, request: &Value) -> Result<bool, String> {
    let program = cel::Program::compile(expression).map_err(|e| e.to_string())?;
    let mut ctx = cel::Context::default();
    ctx.add_variable("object", object.clone()).map_err(|e| e.to_string())?;
    ctx.add_variable("oldObject", old.cloned().unwrap_or(Value::Null))
        .map_err(|e| e.to_string())?;
    ctx.add_variable("request", request.clone())
        .map_err(|e| e.to_string())?;
    match program.execute(&ctx).map_err(|e| e.to_string())? {
        cel::Value::Bool(b) => Ok(b),
        other => Err(format!("the expression gave {other:?}, not a bool")),
    }
}

/// pkg/storage/names/generate.go `GenerateName`: the base cut to 58 characters, then 5 characters
/// of k8s.io/apimachinery `pkg/util/rand/rand.go`'s alphabet.
pub fn generate_name(base: &str) -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let base = if base.len() > 58 { &base[..58] } else { base };
    let mut rng = rand::rng();
    let suffix: String = (0..5)
        .map(|_| char::from(ALPHABET[rng.random_range(0..ALPHABET.len())]))
        .collect();
    format!("{base}{suffix}")
}

/// A JSON Patch response that turns `before` into `after` (how Knative-based webhooks answer).
fn patch_response(review: &Value, before: &Value, after: &Value) -> Value {
    let uid = review["request"]["uid"].clone();
    let ops = json_patch::diff(before, after);
    let mut response = json!({"uid": uid, "allowed": true});
    if !ops.0.is_empty() {
        let bytes = serde_json::to_vec(&ops).unwrap_or_default();
        response["patchType"] = json!("JSONPatch");
        response["patch"] = json!(base64::engine::general_purpose::STANDARD.encode(bytes));
    }
    json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": response})
}

fn rule(groups: &[&str], versions: &[&str], resources: &[&str]) -> Rule {
    Rule {
        operations: vec!["CREATE".into(), "UPDATE".into()],
        api_groups: groups.iter().map(|s| s.to_string()).collect(),
        api_versions: versions.iter().map(|s| s.to_string()).collect(),
        resources: resources.iter().map(|s| s.to_string()).collect(),
        scope: None,
    }
}

fn local(configuration: &str, rules: Vec<Rule>, f: Local) -> Webhook {
    Webhook {
        configuration: configuration.into(),
        name: configuration.into(),
        target: Target::Local(f),
        rules,
        namespace_selector: Selector::default(),
        object_selector: Selector::default(),
        match_conditions: Vec::new(),
        timeout: Duration::from_secs(10),
        fail_closed: true,
        reinvoke_if_needed: true,
        side_effects: "None".into(),
    }
}

/// Tekton's defaulting webhook as Knative registers it (tektoncd/pipeline
/// `config/500-webhooks.yaml`, knative `webhook/resourcesemantics/defaulting/defaulting.go`: CREATE
/// and UPDATE on each kind and its `/status`, `reinvocationPolicy: IfNeeded`), doing what
/// `pkg/apis/pipeline/v1/{pipelinerun,taskrun}_defaults.go` `SetDefaults` do: strip
/// `chains.tekton.dev/*` annotations on CREATE, default the timeout and service account, and label
/// TaskRuns `app.kubernetes.io/managed-by`.
pub fn tekton_defaulting() -> Webhook {
    let f: Local = Arc::new(|review: &Value| {
        let req = &review["request"];
        let before = req["object"].clone();
        let mut obj = before.clone();
        if req["subResource"].is_null() {
            if req["operation"] == "CREATE" {
                if let Some(a) = obj["metadata"]["annotations"].as_object_mut() {
                    a.retain(|k, _| !k.starts_with("chains.tekton.dev/"));
                }
            }
            let v1 = req["kind"]["version"] == "v1";
            match req["kind"]["kind"].as_str() {
                Some("PipelineRun") => {
                    let spec = &mut obj["spec"];
                    if spec["timeouts"].is_null() && spec["timeout"].is_null() {
                        spec["timeouts"] = json!({"pipeline": "1h0m0s"});
                    }
                    if v1 {
                        if spec["taskRunTemplate"]["serviceAccountName"]
                            .as_str()
                            .unwrap_or_default()
                            .is_empty()
                        {
                            spec["taskRunTemplate"]["serviceAccountName"] = json!("default");
                        }
                    } else if spec["serviceAccountName"].as_str().unwrap_or_default().is_empty() {
                        spec["serviceAccountName"] = json!("default");
                    }
                }
                Some("TaskRun") => {
                    if obj["metadata"]["labels"]["app.kubernetes.io/managed-by"].is_null() {
                        if !obj["metadata"]["labels"].is_object() {
                            obj["metadata"]["labels"] = json!({});
                        }
                        obj["metadata"]["labels"]["app.kubernetes.io/managed-by"] = json!("tekton-pipelines");
                    }
                    let spec = &mut obj["spec"];
                    if spec["timeout"].is_null() {
                        spec["timeout"] = json!("1h0m0s");
                    }
                    if spec["serviceAccountName"].as_str().unwrap_or_default().is_empty() {
                        spec["serviceAccountName"] = json!("default");
                    }
                }
                _ => {}
            }
        }
        patch_response(review, &before, &obj)
    });
    let mut w = local(
        "webhook.pipeline.tekton.dev",
        vec![rule(
            &["tekton.dev"],
            &["v1", "v1beta1"],
            &["pipelineruns", "pipelineruns/status", "taskruns", "taskruns/status"],
        )],
        f,
    );
    w.namespace_selector = Selector {
        match_labels: BTreeMap::new(),
        match_expressions: vec![Expression {
            key: "webhooks.knative.dev/exclude".into(),
            operator: "DoesNotExist".into(),
            values: Vec::new(),
        }],
    };
    w
}

/// Another vendor's mutating webhook that labels every Argo object it sees (a cost-allocation
/// label, say). It sorts after scimgate, so its change makes the API server re-invoke ours.
pub fn labeler() -> Webhook {
    let f: Local = Arc::new(|review: &Value| {
        let before = review["request"]["object"].clone();
        let mut obj = before.clone();
        if obj["metadata"]["labels"]["cost-center.example.com/team"].is_null() {
            if !obj["metadata"]["labels"].is_object() {
                obj["metadata"]["labels"] = json!({});
            }
            obj["metadata"]["labels"]["cost-center.example.com/team"] = json!("unassigned");
        }
        patch_response(review, &before, &obj)
    });
    local(
        "zz-cost-center.example.com",
        vec![rule(
            &["argoproj.io"],
            &["v1alpha1"],
            &[
                "workflows",
                "cronworkflows",
                "workflowtemplates",
                "clusterworkflowtemplates",
            ],
        )],
        f,
    )
}

#[test]
fn rules_selectors_and_conditions_match_as_upstream() {
    let res = Resource {
        group: "tekton.dev".into(),
        plural: "pipelineruns".into(),
        kind: "PipelineRun".into(),
        namespaced: true,
        status_subresource: true,
    };
    let user = person("alice@example.com");
    let mut attrs = Attrs {
        op: Op::Update,
        res: &res,
        version: "v1".into(),
        subresource: "",
        namespace: "team-a".into(),
        name: "x".into(),
        user: &user,
        dry_run: false,
    };
    let main_only = rule(&["tekton.dev"], &["v1"], &["pipelineruns"]);
    let with_sub = rule(&["tekton.dev"], &["*"], &["pipelineruns/*"]);
    let star = rule(&["*"], &["*"], &["*"]);
    assert!(rule_matches(&main_only, &attrs) && rule_matches(&with_sub, &attrs) && rule_matches(&star, &attrs));
    attrs.subresource = "status";
    assert!(!rule_matches(&main_only, &attrs), "a subresource must be named");
    assert!(rule_matches(&with_sub, &attrs), "res/* takes every subresource");
    assert!(!rule_matches(&star, &attrs), "* is main resources only");
    let sel = Selector {
        match_labels: BTreeMap::new(),
        match_expressions: vec![Expression {
            key: "kubernetes.io/metadata.name".into(),
            operator: "NotIn".into(),
            values: vec!["kube-system".into()],
        }],
    };
    assert!(selector_matches(
        &sel,
        &BTreeMap::from([("kubernetes.io/metadata.name".into(), "team-a".into())])
    ));
    assert!(!selector_matches(
        &sel,
        &BTreeMap::from([("kubernetes.io/metadata.name".into(), "kube-system".into())])
    ));
    let request = json!({"operation": "UPDATE", "userInfo": {"username": "system:serviceaccount:argo:argo"}});
    let expr = "!(request.operation == 'UPDATE' && request.userInfo.username in ['system:serviceaccount:argo:argo'] && has(object.spec) && has(oldObject.spec) && object.spec == oldObject.spec)";
    let same = json!({"spec": {"a": 1}, "status": {"phase": "Running"}});
    let old = json!({"spec": {"a": 1}});
    assert_eq!(eval_condition(expr, &same, Some(&old), &request), Ok(false), "skipped");
    let changed = json!({"spec": {"a": 2}});
    assert_eq!(eval_condition(expr, &changed, Some(&old), &request), Ok(true));
    let create = json!({"operation": "CREATE", "userInfo": {"username": "system:serviceaccount:argo:argo"}});
    assert_eq!(eval_condition(expr, &changed, None, &create), Ok(true));
    assert!(eval_condition("object.nope.deeper == 1", &same, None, &request).is_err());
    let name = generate_name(&"a".repeat(70));
    assert_eq!(name.len(), 63);
    assert!(name.starts_with(&"a".repeat(58)));
}

/// The AdmissionReviews kube-apiserver sends for one Workflow create, written for the admission
/// benchmark (`bench/admission.sh` runs this against its server): the mutating call's body and the
/// validating call's, the latter with the stamp that server made.
#[tokio::test]
#[ignore = "a tool for bench/admission.sh: needs SCIMGATE_BENCH_ADMISSION, _CA and _OUT"]
async fn bench_bodies() {
    let env = |k: &str| std::env::var(k).unwrap_or_else(|_| panic!("{k} is not set"));
    let ca = std::fs::read(env("SCIMGATE_BENCH_CA")).expect("CA");
    let mut api = ApiServer::at(&env("SCIMGATE_BENCH_ADMISSION"), crate::support::client_for(&ca));
    api.record = true;
    let sample: Value =
        serde_json::from_slice(&std::fs::read(corpus().join("../bench/admission-workflow.json")).expect("bench body"))
            .expect("json");
    let req = &sample["request"];
    let user = User {
        username: req["userInfo"]["username"].as_str().unwrap_or_default().into(),
        groups: vec!["system:authenticated".into()],
    };
    let written = api
        .create(&user, req["object"].clone())
        .await
        .expect("the benchmark create is allowed");
    let out = std::path::PathBuf::from(env("SCIMGATE_BENCH_OUT"));
    let sent = api.sent.lock().expect("sent").clone();
    for (webhook, file) in [
        ("stamp.scimgate.io", "mutate.json"),
        ("policy.scimgate.io", "validate.json"),
    ] {
        let (_, review) = sent.iter().find(|(w, _)| w == webhook).expect("called");
        std::fs::write(out.join(file), review.to_string()).expect("write");
    }
    eprintln!(
        "{} stored with {} webhook calls",
        written.object["metadata"]["name"],
        written.calls.len()
    );
}

/// client-go's retry as the emulator plays it: a webhook that answers 429 with `Retry-After` is
/// asked again with the same review (same uid) and its second answer counts; without the header
/// the call fails (and, the webhooks being fail-closed, so does the write).
#[tokio::test]
async fn a_busy_webhook_is_asked_again_when_it_says_when() {
    use axum::http::{HeaderMap, StatusCode};
    use axum::response::IntoResponse;
    type Seen = Arc<Mutex<Vec<String>>>;
    async fn busy_once(
        axum::extract::State((seen, say_when)): axum::extract::State<(Seen, bool)>,
        body: axum::Json<Value>,
    ) -> axum::response::Response {
        let uid = body["request"]["uid"].as_str().unwrap_or_default().to_string();
        let first = {
            let mut seen = seen.lock().expect("seen");
            let first = !seen.contains(&uid);
            seen.push(uid.clone());
            first
        };
        if first {
            let mut h = HeaderMap::new();
            if say_when {
                h.insert("retry-after", "1".parse().expect("header"));
            }
            return (StatusCode::TOO_MANY_REQUESTS, h, "busy").into_response();
        }
        axum::Json(json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
            "response": {"uid": uid, "allowed": true}}))
        .into_response()
    }
    for say_when in [true, false] {
        let seen: Seen = Arc::default();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let app = axum::Router::new()
            .fallback(axum::routing::post(busy_once))
            .with_state((seen.clone(), say_when));
        let server = tokio::spawn(async move { axum::serve(listener, app).await });
        let api = ApiServer::at(&format!("http://{addr}"), reqwest::Client::new());
        let wf = json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "Workflow",
            "metadata": {"name": "busy", "namespace": "team-a"},
            "spec": {"entrypoint": "main", "templates": [{"name": "main", "container": {"image": "busybox"}}]}});
        let outcome = api.create(&person("alice@example.com"), wf).await;
        let seen = seen.lock().expect("seen").clone();
        if say_when {
            let written = outcome.expect("admitted on the second ask");
            assert!(written.calls.len() >= 2, "{:?}", written.calls);
            for call in &written.calls {
                assert_eq!(
                    seen.iter().filter(|u| **u == call.uid).count(),
                    2,
                    "asked twice: {}",
                    call.webhook
                );
            }
        } else {
            let Err(refused) = outcome else {
                panic!("admitted without an answer")
            };
            assert_eq!(refused.code, 500);
            assert!(refused.message.contains("status 429"), "{}", refused.message);
            assert_eq!(seen.len(), 1, "asked once: {seen:?}");
        }
        server.abort();
    }
}
