//! The emulator's HTTP face: GET, LIST and WATCH of its stored objects, over plain HTTP on
//! 127.0.0.1, the way kube-apiserver serves them to a client — here, the kube client scimgate
//! reads the owners of controller-created runs with (its reflectors LIST then WATCH, and a cache
//! miss GETs), the one `scimgate doctor` LISTs Deployments and webhook configurations and GETs
//! ServiceAccounts and the policy ConfigMap with, and the one scimgate's access reconciler
//! watches Namespaces, RoleBindings and ClusterRoleBindings and writes the bindings with.
//!
//! What it follows (k8s.io/apiserver at 24a394e5, k8s.io/apimachinery at eed236ce):
//! - Paths `/apis/<group>/<version>[/namespaces/<ns>]/<plural>[/<name>]`, the core group's under
//!   `/api/v1` (pkg/endpoints/installer.go); a missing object is a `metav1.Status` with reason
//!   `NotFound` and code 404 (apimachinery pkg/api/errors/errors.go `NewNotFound`).
//! - LIST (pkg/endpoints/handlers/get.go `ListResource`): a `<Kind>List` whose
//!   `metadata.resourceVersion` is the store's at the time of the list, from which a watch
//!   continues without a gap; in pages (`limit`, then `continue` from where the last page ended,
//!   in key order).
//! - WATCH (`?watch=true`; get.go `handleWatch`, pkg/endpoints/handlers/watch.go): one JSON
//!   object per line, `{"type": "ADDED"|"MODIFIED"|"DELETED"|"BOOKMARK", "object": …}`
//!   (apimachinery pkg/apis/meta/v1/watch.go `WatchEvent`, pkg/watch/watch.go); a DELETED event
//!   carries the last state at the delete's resource version (pkg/storage/etcd3/watcher.go).
//!   From `resourceVersion=N`, every change after N; with none or `0`, the current objects as
//!   synthetic ADDED events first (pkg/storage/etcd3/watcher.go `sync`), then what changes. With
//!   `sendInitialEvents=true`, the initial events end with a BOOKMARK annotated
//!   `k8s.io/initial-events-end` (watcher.go, `isInitialEventsEndBookmarkRequired`). The
//!   stream ends after `timeoutSeconds` (handleWatch), and the client watches again from the last
//!   resource version it saw — what kube-rs's `watcher` does (kube-runtime `watcher.rs`).
//! - Label selectors of equality and existence terms (apimachinery pkg/labels/selector.go), on
//!   LIST and WATCH; to a watch, an object whose labels start matching is ADDED and one whose
//!   labels stop matching is DELETED, as upstream's filtered watch reports them
//!   (pkg/storage/cacher/cache_watcher.go `convertToWatchEvent`).
//!
//! Writes: PATCH of a custom resource (`application/merge-patch+json` or
//! `application/json-patch+json`; pkg/endpoints/handlers/patch.go), played by `ApiServer::patch`
//! — so through the admission chain, scimgate's own webhooks included, like anyone's write; a
//! refusal is the `metav1.Status` the API server answers (its code, the webhook's message). POST,
//! PUT, PATCH (merge, JSON, and server-side apply, `application/apply-patch+yaml` with
//! `fieldManager` and `force`) and DELETE of the RBAC kinds, played by `rbac::write`: RBAC's
//! validation and field ownership, no admission webhook (none names them). POST of Events, kept
//! apart from the store; the report kinds' writes (`reports_face`).
//!
//! Who asks: the face plays the authenticator — whoever holds its kubeconfig is scimgate's
//! service account (`system:serviceaccount:scimgate:scimgate`, as `manifests/base` deploys it):
//! `SelfSubjectReview` (authentication.k8s.io/v1; kubernetes pkg/registry/authentication/
//! selfsubjectreview/rest.go `Create`: the caller's user info, 201). It lets that account do every
//! request, and answers its `SelfSubjectAccessReview` accordingly (everything is allowed but what
//! a test forbids). `SubjectAccessReview` (authorization.k8s.io/v1) asks the RBAC authorizer
//! (`rbac::authorize`) about anyone, from the stored roles and bindings.
//!
//! Counted, for tests and benchmarks: every request, GETs of one object, LISTs with a selector,
//! PATCHes, RBAC writes, the highest resource version sent.
//!
//! Left out: other label and field selectors (refused with 400 rather than ignored), a paged
//! LIST's consistent snapshot (a later page shows the store as it is then), periodic bookmarks
//! (optional upstream), version conversion (objects are served as stored, with the requested
//! `apiVersion`), authenticating anyone but scimgate's account, authorizing its own requests
//! (RBAC's escalation checks on its RBAC writes included), dry run, and writes of other kinds.

use crate::apiserver::{served, Key, Storage};
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde_json::{json, Value};
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;

type Shared = Arc<Mutex<Storage>>;

/// Who the face's client is to the API server it plays.
pub fn scimgate_account() -> crate::apiserver::User {
    crate::apiserver::service_account("scimgate", "scimgate")
}

/// The face of one emulator: bound before the server under test starts (its kubeconfig names the
/// address), serving once the emulator's store exists.
pub struct KubeFace {
    pub addr: SocketAddr,
    listener: Option<TcpListener>,
    task: Option<tokio::task::JoinHandle<()>>,
    counters: Arc<Counters>,
    writer: Option<Writer>,
}

/// Events posted, in order, and their `(namespace, name)`s.
#[derive(Default)]
struct Events {
    posted: Vec<Value>,
    names: std::collections::HashSet<(String, String)>,
}

/// What the face served, for tests that show a client reads from its cache.
#[derive(Default)]
struct Counters {
    /// GETs of one object.
    gets: AtomicUsize,
    /// The highest resource version a LIST or a watch stream has sent (a reflector may get an
    /// object from its initial LIST or from the watch after it, whichever comes first).
    watched: AtomicU64,
    /// LISTs with a label selector.
    selected_lists: AtomicUsize,
    /// Milliseconds each LIST with a label selector waits before it is answered (a large
    /// cluster's LIST takes its time).
    list_delay_ms: AtomicU64,
    /// Events posted (`core/v1`), in order: the face keeps them apart from the emulator's store,
    /// as no webhook of ours sees them.
    events: Mutex<Events>,
    /// Watches deliver nothing more (a watch cache lagging behind the store, for as long as a
    /// benchmark needs); GET and LIST still serve the store.
    held: AtomicBool,
    /// PATCHes received, whatever became of them.
    patches: AtomicUsize,
    /// PATCHes are refused as RBAC refuses a verb the role lacks.
    forbid_patches: AtomicBool,
    /// The report kinds (`reports_face`).
    reports: crate::reports_face::Reports,
    /// PATCHes past this many are applied and never answered (a client that crashes while its
    /// write is in flight).
    answered_patches: AtomicUsize,
    /// Every HTTP request served.
    requests: AtomicUsize,
    /// POSTs, PUTs, PATCHes and DELETEs of the RBAC kinds, whatever became of them.
    rbac_writes: AtomicUsize,
}

#[derive(Clone)]
struct Face {
    storage: Shared,
    counters: Arc<Counters>,
    /// Writes go through the emulator's admission chain.
    api: Writer,
}

/// The API server the face writes through; replaced when the webhooks move (a restarted
/// scimgate listens elsewhere).
type Writer = Arc<std::sync::RwLock<Arc<crate::apiserver::ApiServer>>>;

impl Drop for KubeFace {
    fn drop(&mut self) {
        if let Some(t) = &self.task {
            t.abort();
        }
    }
}

impl KubeFace {
    pub async fn bind() -> KubeFace {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        KubeFace {
            addr: listener.local_addr().expect("addr"),
            listener: Some(listener),
            task: None,
            counters: Arc::new(Counters {
                answered_patches: AtomicUsize::new(usize::MAX),
                ..Counters::default()
            }),
            writer: None,
        }
    }

    /// From now on, write through `api` (the same store, its webhooks elsewhere).
    pub fn write_through(&self, api: &crate::apiserver::ApiServer) {
        let writer = self.writer.as_ref().expect("served");
        *writer.write().expect("writer") = Arc::new(api.handle());
    }

    /// How many single objects were read with GET.
    pub fn gets(&self) -> usize {
        self.counters.gets.load(Ordering::SeqCst)
    }

    /// The highest resource version sent by a LIST or on a watch.
    pub fn watched(&self) -> u64 {
        self.counters.watched.load(Ordering::SeqCst)
    }

    /// From now on, answer each LIST with a label selector after `delay`.
    pub fn slow_lists(&self, delay: Duration) {
        self.counters
            .list_delay_ms
            .store(u64::try_from(delay.as_millis()).unwrap_or(u64::MAX), Ordering::SeqCst);
    }

    /// How many LISTs (not watches) came with a label selector.
    pub fn selected_lists(&self) -> usize {
        self.counters.selected_lists.load(Ordering::SeqCst)
    }

    /// How many Events were posted.
    pub fn event_count(&self) -> usize {
        self.counters.events.lock().expect("events").posted.len()
    }

    /// The Events posted so far.
    pub fn events(&self) -> Vec<Value> {
        self.counters.events.lock().expect("events").posted.clone()
    }

    /// From now on, PATCHes past the `n`th are applied and never answered; `usize::MAX`
    /// answers them all again.
    pub fn answer_patches_up_to(&self, n: usize) {
        self.counters.answered_patches.store(n, Ordering::SeqCst);
    }

    /// From now on, refuse (or, `false`, admit again) every PATCH as RBAC does when the
    /// account's roles lack `patch`.
    pub fn forbid_patches(&self, forbid: bool) {
        self.counters.forbid_patches.store(forbid, Ordering::SeqCst);
    }

    /// The report kinds the face serves and holds.
    pub fn reports(&self) -> &crate::reports_face::Reports {
        &self.counters.reports
    }

    /// How many HTTP requests the face served, of any kind.
    pub fn requests(&self) -> usize {
        self.counters.requests.load(Ordering::SeqCst)
    }

    /// How many writes (POST, PUT, PATCH, DELETE) of the RBAC kinds came.
    pub fn rbac_writes(&self) -> usize {
        self.counters.rbac_writes.load(Ordering::SeqCst)
    }

    /// How many PATCHes came.
    pub fn patches(&self) -> usize {
        self.counters.patches.load(Ordering::SeqCst)
    }

    /// From now on, open and new watches send no further events.
    pub fn hold_watches(&self) {
        self.counters.held.store(true, Ordering::SeqCst);
    }

    /// A kubeconfig pointing at this face, as `scimgate serve --kubeconfig` reads it.
    pub fn write_kubeconfig(&self, path: &std::path::Path) {
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: emulator\n  cluster:\n    server: http://{}\n\
             users:\n- name: scimgate\n  user: {{}}\ncontexts:\n- name: emulator\n  context:\n    cluster: emulator\n    user: scimgate\n\
             current-context: emulator\n",
            self.addr
        );
        std::fs::write(path, text).expect("kubeconfig");
    }

    /// Serve `api`'s store, and write through its admission chain (as its webhooks are
    /// registered now).
    pub fn serve(&mut self, api: &crate::apiserver::ApiServer) {
        let listener = self.listener.take().expect("served once");
        let writer: Writer = Arc::new(std::sync::RwLock::new(Arc::new(api.handle())));
        self.writer = Some(writer.clone());
        let app = Router::new()
            .route(
                "/apis/authentication.k8s.io/v1/selfsubjectreviews",
                post(self_subject_review),
            )
            .route(
                "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
                post(self_subject_access_review),
            )
            .route(
                "/apis/authorization.k8s.io/v1/subjectaccessreviews",
                post(subject_access_review),
            )
            .route("/apis/{group}/{version}", get(group_version))
            .route("/apis/{group}/{version}/{plural}", get(collection).post(create_cluster))
            .route(
                "/apis/{group}/{version}/namespaces/{ns}/{plural}",
                get(namespaced_collection).post(create_namespaced),
            )
            .route(
                "/apis/{group}/{version}/namespaces/{ns}/{plural}/{name}",
                get(one)
                    .patch(patch_one)
                    .put(replace_namespaced)
                    .delete(delete_namespaced),
            )
            // The core group lives under `/api/v1` (installer.go: the legacy prefix).
            .route("/api/{version}/{plural}", get(core_collection))
            .route("/api/{version}/namespaces/{name}", get(core_namespace))
            .route(
                "/api/{version}/namespaces/{ns}/{plural}",
                get(core_namespaced_collection).post(post_event),
            )
            .route("/api/{version}/namespaces/{ns}/{plural}/{name}", get(core_one))
            .route(
                "/apis/{group}/{version}/{plural}/{name}",
                get(cluster_one)
                    .patch(patch_cluster_one)
                    .put(replace_cluster)
                    .delete(delete_cluster),
            )
            .with_state(Face {
                storage: api.storage(),
                counters: self.counters.clone(),
                api: writer,
            });
        let counters = self.counters.clone();
        let app = app.layer(axum::middleware::from_fn(
            move |req: axum::extract::Request, next: axum::middleware::Next| {
                counters.requests.fetch_add(1, Ordering::SeqCst);
                next.run(req)
            },
        ));
        self.task = Some(tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        }));
    }
}

/// `POST /api/v1/namespaces/{ns}/events`: kept, named as posted; a second Event of the same
/// name is refused with `AlreadyExists` (409), as the API server refuses any create of an
/// existing name (apiserver pkg/registry/generic/registry/store.go `Create`).
async fn post_event(
    State(Face { counters, .. }): State<Face>,
    Path((_version, ns, plural)): Path<(String, String, String)>,
    body: Bytes,
) -> Response {
    if plural != "events" {
        return status(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            format!("the emulator's face creates only events, not {plural}"),
        );
    }
    let Ok(mut event) = serde_json::from_slice::<Value>(&body) else {
        return status(StatusCode::BAD_REQUEST, "BadRequest", "not JSON".into());
    };
    let name = event["metadata"]["name"].as_str().unwrap_or_default().to_string();
    let mut events = counters.events.lock().expect("events");
    if name.is_empty() || !events.names.insert((ns.clone(), name.clone())) {
        return status(
            StatusCode::CONFLICT,
            "AlreadyExists",
            format!("events \"{name}\" already exists"),
        );
    }
    event["metadata"]["namespace"] = json!(ns);
    events.posted.push(event.clone());
    (
        StatusCode::CREATED,
        [(header::CONTENT_TYPE, "application/json")],
        event.to_string(),
    )
        .into_response()
}

/// A report kind's answer: the object, or the `metav1.Status` of its failure.
fn report_answer(r: Result<Value, crate::reports_face::Failure>, created: bool) -> Response {
    match r {
        Ok(v) => (
            if created { StatusCode::CREATED } else { StatusCode::OK },
            [(header::CONTENT_TYPE, "application/json")],
            v.to_string(),
        )
            .into_response(),
        Err((code, reason, message)) => status(
            StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            reason,
            message,
        ),
    }
}

/// `GET /apis/<group>/<version>`: discovery of the report groups a test installed.
async fn group_version(State(face): State<Face>, Path((group, version)): Path<(String, String)>) -> Response {
    match face.counters.reports.discovery(&group, &version) {
        Some(list) => report_answer(Ok(list), false),
        None => status(
            StatusCode::NOT_FOUND,
            "NotFound",
            "the server could not find the requested resource".into(),
        ),
    }
}

/// A POST, PUT, PATCH or DELETE: which object, and how the client asked.
struct Request<'a> {
    group: &'a str,
    version: &'a str,
    namespace: &'a str,
    plural: &'a str,
    /// Empty for a POST.
    name: &'a str,
    q: &'a HashMap<String, String>,
    headers: &'a HeaderMap,
}

impl<'a> Request<'a> {
    /// From the path's group, version, namespace, plural and name.
    fn new(path: [&'a str; 5], q: &'a HashMap<String, String>, headers: &'a HeaderMap) -> Request<'a> {
        let [group, version, namespace, plural, name] = path;
        Request {
            group,
            version,
            namespace,
            plural,
            name,
            q,
            headers,
        }
    }

    /// `?fieldManager=`, else the User-Agent up to its first `/`, printable, at most 128
    /// characters (handlers/rest.go `managerOrUserAgent`, `prefixFromUserAgent`).
    fn field_manager(&self) -> String {
        if let Some(m) = self.q.get("fieldManager").filter(|m| !m.is_empty()) {
            return m.clone();
        }
        let agent = self.headers.get(header::USER_AGENT).and_then(|v| v.to_str().ok());
        let prefix = agent.unwrap_or_default().split('/').next().unwrap_or_default();
        prefix.chars().filter(|c| !c.is_control()).take(128).collect()
    }
}

/// `POST` to a collection: an RBAC object, or a report kind's.
async fn create_namespaced(
    State(face): State<Face>,
    Path((group, version, ns, plural)): Path<(String, String, String, String)>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let r = Request::new([&group, &version, &ns, &plural, ""], &q, &headers);
    match crate::rbac::kind(&group, &plural) {
        Some(_) => rbac_write(&face, &r, decode(&body).map(crate::rbac::Op::Create)),
        None => write_report(&face, (&group, &version, &plural), &ns, None, &body),
    }
}

async fn create_cluster(
    face: State<Face>,
    Path((group, version, plural)): Path<(String, String, String)>,
    q: Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    create_namespaced(face, Path((group, version, String::new(), plural)), q, headers, body).await
}

/// `PUT` of one object: an RBAC object, or a report kind's.
async fn replace_namespaced(
    State(face): State<Face>,
    Path((group, version, ns, plural, name)): Path<(String, String, String, String, String)>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let r = Request::new([&group, &version, &ns, &plural, &name], &q, &headers);
    match crate::rbac::kind(&group, &plural) {
        Some(_) => rbac_write(&face, &r, decode(&body).map(crate::rbac::Op::Replace)),
        None => write_report(&face, (&group, &version, &plural), &ns, Some(&name), &body),
    }
}

async fn replace_cluster(
    face: State<Face>,
    Path((group, version, plural, name)): Path<(String, String, String, String)>,
    q: Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    replace_namespaced(
        face,
        Path((group, version, String::new(), plural, name)),
        q,
        headers,
        body,
    )
    .await
}

/// `DELETE` of one object: the RBAC kinds only.
async fn delete_namespaced(
    State(face): State<Face>,
    Path((group, version, ns, plural, name)): Path<(String, String, String, String, String)>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let r = Request::new([&group, &version, &ns, &plural, &name], &q, &headers);
    // The DeleteOptions body (kube-rs always sends one), with its preconditions.
    let options = if body.is_empty() { Ok(json!({})) } else { decode(&body) };
    let op = options.map(|o| crate::rbac::Op::Delete(o["preconditions"].clone()));
    match crate::rbac::kind(&group, &plural) {
        Some(_) => rbac_write(&face, &r, op),
        None => status(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            format!("the emulator's face deletes only the RBAC kinds, not {plural}"),
        ),
    }
}

async fn delete_cluster(
    face: State<Face>,
    Path((group, version, plural, name)): Path<(String, String, String, String)>,
    q: Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    delete_namespaced(
        face,
        Path((group, version, String::new(), plural, name)),
        q,
        headers,
        body,
    )
    .await
}

type Failure = crate::reports_face::Failure;

fn decode(body: &[u8]) -> Result<Value, Failure> {
    serde_json::from_slice(body).map_err(|_| (400, "BadRequest", "the body is not JSON".into()))
}

/// A write of an RBAC kind (`rbac::write`) by scimgate's account, RBAC's escalation checks left
/// out.
fn rbac_write(face: &Face, r: &Request<'_>, op: Result<crate::rbac::Op, Failure>) -> Response {
    face.counters.rbac_writes.fetch_add(1, Ordering::SeqCst);
    let op = match op {
        Ok(op) => op,
        Err(refused) => return report_answer(Err(refused), false),
    };
    if r.version != "v1" {
        return status(
            StatusCode::NOT_FOUND,
            "NotFound",
            "the server could not find the requested resource".into(),
        );
    }
    let manager = r.field_manager();
    let target = crate::rbac::Target {
        plural: r.plural,
        namespace: r.namespace,
        name: r.name,
    };
    let written = crate::rbac::write(&mut face.storage.lock().expect("storage"), &target, op, &manager);
    match written {
        Ok((code, v)) => (
            StatusCode::from_u16(code).unwrap_or(StatusCode::OK),
            [(header::CONTENT_TYPE, "application/json")],
            if v["kind"] == "Status" {
                v
            } else {
                served_as(v, r.group, r.version)
            }
            .to_string(),
        )
            .into_response(),
        Err(failure) => report_answer(Err(failure), false),
    }
}

fn write_report(face: &Face, gvp: (&str, &str, &str), ns: &str, name: Option<&str>, body: &[u8]) -> Response {
    let Ok(doc) = serde_json::from_slice::<Value>(body) else {
        return status(StatusCode::BAD_REQUEST, "BadRequest", "not JSON".into());
    };
    report_answer(
        face.counters.reports.write(gvp, ns, name, doc, name.is_some()),
        name.is_none(),
    )
}

/// `POST /apis/authentication.k8s.io/v1/selfsubjectreviews`: who the caller is.
async fn self_subject_review() -> Response {
    let me = scimgate_account();
    let body = json!({"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview",
        "metadata": {"creationTimestamp": null},
        "status": {"userInfo": {"username": me.username, "groups": me.groups}}});
    (
        StatusCode::CREATED,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// `POST /apis/authorization.k8s.io/v1/selfsubjectaccessreviews`: whether the caller may — as
/// the face plays RBAC, everything but a `patch` while PATCHes are forbidden (kubernetes
/// pkg/registry/authorization/selfsubjectaccessreview/rest.go `Create`: the review with its
/// status, 201).
async fn self_subject_access_review(State(face): State<Face>, body: Bytes) -> Response {
    let Ok(mut review) = serde_json::from_slice::<Value>(&body) else {
        return status(StatusCode::BAD_REQUEST, "BadRequest", "not JSON".into());
    };
    let verb = review["spec"]["resourceAttributes"]["verb"]
        .as_str()
        .unwrap_or_default();
    let allowed = !(verb == "patch" && face.counters.forbid_patches.load(Ordering::SeqCst));
    review["status"] = json!({"allowed": allowed});
    (
        StatusCode::CREATED,
        [(header::CONTENT_TYPE, "application/json")],
        review.to_string(),
    )
        .into_response()
}

/// `POST /apis/authorization.k8s.io/v1/subjectaccessreviews`: whether `spec.user` with
/// `spec.groups` (as given: no group is added) may do what `spec.resourceAttributes` says, as the
/// RBAC authorizer (`rbac::authorize`) decides from the stored roles and bindings (kubernetes
/// pkg/registry/authorization/subjectaccessreview/rest.go `Create`: validated by
/// pkg/apis/authorization/validation/validation.go, then the review with `status.allowed` and
/// `status.reason`, 201). Non-resource URLs are left out: such a review is not allowed.
async fn subject_access_review(State(face): State<Face>, body: Bytes) -> Response {
    let Ok(mut review) = serde_json::from_slice::<Value>(&body) else {
        return status(StatusCode::BAD_REQUEST, "BadRequest", "not JSON".into());
    };
    let spec = &review["spec"];
    let user = spec["user"].as_str().unwrap_or_default();
    let groups: Vec<String> = spec["groups"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|g| g.as_str().map(str::to_string))
        .collect();
    let ra = &spec["resourceAttributes"];
    let invalid = match (ra.is_object(), spec["nonResourceAttributes"].is_object()) {
        (false, false) => Some("spec.resourceAttributes: Invalid value: null: exactly one of nonResourceAttributes or resourceAttributes must be specified"),
        (true, true) => Some("spec.nonResourceAttributes: Invalid value: cannot be specified in combination with resourceAttributes"),
        _ if user.is_empty() && groups.is_empty() => Some("spec.user: Invalid value: \"\": at least one of user or group must be specified"),
        _ => None,
    };
    if let Some(e) = invalid {
        let message = format!("SubjectAccessReview.authorization.k8s.io \"\" is invalid: {e}");
        return status(StatusCode::UNPROCESSABLE_ENTITY, "Invalid", message);
    }
    let field = |f: &str| ra[f].as_str().unwrap_or_default().to_string();
    let a = crate::rbac::Attributes {
        verb: field("verb"),
        namespace: field("namespace"),
        group: field("group"),
        resource: field("resource"),
        subresource: field("subresource"),
        name: field("name"),
    };
    let (allowed, reason) = if ra.is_object() {
        crate::rbac::authorize(&face.storage.lock().expect("storage"), user, &groups, &a)
    } else {
        (false, "the emulator's RBAC does not evaluate non-resource URLs".into())
    };
    review["status"] = json!({"allowed": allowed});
    if !reason.is_empty() {
        review["status"]["reason"] = json!(reason);
    }
    (
        StatusCode::CREATED,
        [(header::CONTENT_TYPE, "application/json")],
        review.to_string(),
    )
        .into_response()
}

/// `PATCH` of one namespaced object: a custom resource through the admission chain, or an RBAC
/// object.
async fn patch_one(
    State(face): State<Face>,
    Path((group, version, ns, plural, name)): Path<(String, String, String, String, String)>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let r = Request::new([&group, &version, &ns, &plural, &name], &q, &headers);
    patch_object(face, &r, &body).await
}

async fn patch_cluster_one(
    face: State<Face>,
    Path((group, version, plural, name)): Path<(String, String, String, String)>,
    q: Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    patch_one(
        face,
        Path((group, version, String::new(), plural, name)),
        q,
        headers,
        body,
    )
    .await
}

/// A PATCH of an RBAC object as handlers/patch.go takes it: the patch type is the content type
/// (415 for others; RBAC's types declare no patch strategies, so a strategic merge patch is a
/// merge patch); `fieldManager` is required for apply and `force` only allowed there
/// (apimachinery pkg/apis/meta/v1/validation/validation.go `ValidatePatchOptions`, a 422).
fn rbac_patch(q: &HashMap<String, String>, headers: &HeaderMap, body: &[u8]) -> Result<crate::rbac::Op, Failure> {
    use crate::apiserver::Patch;
    use crate::rbac::Op;
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .unwrap_or_default()
        .trim();
    let apply = content_type == "application/apply-patch+yaml";
    let known =
        ["merge-patch+json", "strategic-merge-patch+json", "json-patch+json"].map(|t| format!("application/{t}"));
    if !apply && !known.iter().any(|k| k == content_type) {
        let message = format!("the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml (not {content_type})");
        return Err((415, "UnsupportedMediaType", message));
    }
    let invalid = |m: &str| (422, "Invalid", format!("PatchOptions.meta.k8s.io \"\" is invalid: {m}"));
    let force = match q.get("force").map(String::as_str) {
        None => None,
        Some("true" | "1") => Some(true),
        Some("false" | "0") => Some(false),
        Some(other) => return Err((400, "BadRequest", format!("force: invalid value {other:?}"))),
    };
    if apply {
        if q.get("fieldManager").is_none_or(|m| m.is_empty()) {
            return Err(invalid("fieldManager: Required value: is required for apply patch"));
        }
        // YAML is a superset of the JSON kube-rs sends.
        let config: Value =
            serde_yaml_ng::from_slice(body).map_err(|e| (400, "BadRequest", format!("error decoding patch: {e}")))?;
        let force = force.unwrap_or(false);
        return Ok(Op::Apply { config, force });
    }
    if force.is_some() {
        return Err(invalid("force: Forbidden: may not be specified for non-apply patch"));
    }
    match (content_type, decode(body)?) {
        ("application/json-patch+json", Value::Array(ops)) => Ok(Op::Patch(Patch::Json(ops))),
        ("application/json-patch+json", _) => Err((400, "BadRequest", "a JSON patch is a list of operations".into())),
        (_, doc) => Ok(Op::Patch(Patch::Merge(doc))),
    }
}

async fn patch_object(face: Face, r: &Request<'_>, body: &[u8]) -> Response {
    let (group, version, ns, plural, name) = (r.group, r.version, r.namespace, r.plural, r.name);
    let nth = face.counters.patches.fetch_add(1, Ordering::SeqCst) + 1;
    if face.counters.forbid_patches.load(Ordering::SeqCst) {
        // The authorizer's refusal, before any handler reads the request (apiserver
        // pkg/endpoints/handlers/responsewriters/errors.go `forbiddenMessage`).
        let me = scimgate_account().username;
        let place = if ns.is_empty() {
            String::new()
        } else {
            format!(" in the namespace \"{ns}\"")
        };
        return status(
            StatusCode::FORBIDDEN,
            "Forbidden",
            format!("{plural}.{group} \"{name}\" is forbidden: User \"{me}\" cannot patch resource \"{plural}\" in API group \"{group}\"{place}"),
        );
    }
    if crate::rbac::kind(group, plural).is_some() {
        let answer = rbac_write(&face, r, rbac_patch(r.q, r.headers, body));
        if nth > face.counters.answered_patches.load(Ordering::SeqCst) {
            std::future::pending::<()>().await;
        }
        return answer;
    }
    let Some((kind, _)) = served(group, plural) else {
        return status(
            StatusCode::NOT_FOUND,
            "NotFound",
            "the server could not find the requested resource".into(),
        );
    };
    let Ok(doc) = serde_json::from_slice::<Value>(body) else {
        return status(StatusCode::BAD_REQUEST, "BadRequest", "the patch is not JSON".into());
    };
    // handlers/patch.go: the patch type is the content type; others are 415.
    let content_type = r
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let patch = match (content_type.split(';').next().unwrap_or_default().trim(), doc) {
        ("application/merge-patch+json", doc) => crate::apiserver::Patch::Merge(doc),
        ("application/json-patch+json", Value::Array(ops)) => crate::apiserver::Patch::Json(ops),
        (other, _) => {
            return status(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "UnsupportedMediaType",
                format!("the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json (not {other})"),
            )
        }
    };
    let target = json!({"apiVersion": format!("{group}/{version}"), "kind": kind,
        "metadata": {"name": name, "namespace": ns}});
    let api = face.api.read().expect("writer").clone();
    let written = api.patch(&scimgate_account(), &target, patch).await;
    if nth > face.counters.answered_patches.load(Ordering::SeqCst) {
        std::future::pending::<()>().await;
    }
    match written {
        Ok(written) => (
            [(header::CONTENT_TYPE, "application/json")],
            served_as(written.object, group, version).to_string(),
        )
            .into_response(),
        Err(e) => {
            let code = StatusCode::from_u16(e.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let reason = match e.code {
                403 => "Forbidden",
                404 => "NotFound",
                409 => "Conflict",
                422 => "Invalid",
                _ => "BadRequest",
            };
            status(code, reason, e.message)
        }
    }
}

/// A `metav1.Status` failure.
fn status(code: StatusCode, reason: &str, message: String) -> Response {
    let body = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": message, "reason": reason, "code": code.as_u16()});
    (code, [(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response()
}

/// The object as served at `group/version` (`v1` for the core group).
fn served_as(mut obj: Value, group: &str, version: &str) -> Value {
    obj["apiVersion"] = json!(if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    });
    obj
}

async fn one(
    State(Face { storage, counters, .. }): State<Face>,
    Path((group, version, ns, plural, name)): Path<(String, String, String, String, String)>,
) -> Response {
    counters.gets.fetch_add(1, Ordering::SeqCst);
    if crate::reports_face::kind(&group, &plural).is_some() {
        return report_answer(counters.reports.get(&group, &version, &plural, &ns, &name), false);
    }
    let Some((_kind, _)) = served(&group, &plural) else {
        return status(
            StatusCode::NOT_FOUND,
            "NotFound",
            "the server could not find the requested resource".into(),
        );
    };
    let key: Key = (group.clone(), plural.clone(), ns, name.clone());
    let found = storage.lock().expect("storage").objects.get(&key).cloned();
    match found {
        Some(obj) => (
            [(header::CONTENT_TYPE, "application/json")],
            served_as(obj, &group, &version).to_string(),
        )
            .into_response(),
        None => status(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!("{plural}.{group} \"{name}\" not found"),
        ),
    }
}

async fn core_one(
    face: State<Face>,
    Path((version, ns, plural, name)): Path<(String, String, String, String)>,
) -> Response {
    one(face, Path((String::new(), version, ns, plural, name))).await
}

/// `GET /api/v1/namespaces/<name>`: one Namespace.
async fn core_namespace(face: State<Face>, Path((version, name)): Path<(String, String)>) -> Response {
    one(
        face,
        Path((String::new(), version, String::new(), "namespaces".into(), name)),
    )
    .await
}

async fn cluster_one(
    face: State<Face>,
    Path((group, version, plural, name)): Path<(String, String, String, String)>,
) -> Response {
    one(face, Path((group, version, String::new(), plural, name))).await
}

async fn core_collection(
    State(face): State<Face>,
    Path((version, plural)): Path<(String, String)>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    list_or_watch(face, String::new(), version, None, plural, q).await
}

async fn core_namespaced_collection(
    State(face): State<Face>,
    Path((version, ns, plural)): Path<(String, String, String)>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    list_or_watch(face, String::new(), version, Some(ns), plural, q).await
}

async fn collection(
    State(face): State<Face>,
    Path((group, version, plural)): Path<(String, String, String)>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    list_or_watch(face, group, version, None, plural, q).await
}

async fn namespaced_collection(
    State(face): State<Face>,
    Path((group, version, ns, plural)): Path<(String, String, String, String)>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    list_or_watch(face, group, version, Some(ns), plural, q).await
}

/// Which stored objects a request is about.
#[derive(Clone)]
struct Scope {
    group: String,
    version: String,
    plural: String,
    namespace: Option<String>,
    /// `fieldSelector=metadata.name=…`.
    name: Option<String>,
    /// `labelSelector` terms: a key and the value it must have, or `None` for "has the key".
    labels: Vec<(String, Option<String>)>,
}

/// The equality and existence terms of a label selector (apimachinery pkg/labels/selector.go
/// `Parse`: comma-separated; `k=v` and `k==v` equality, a bare `k` existence). `!=`, `!k` and set
/// terms (`in`, `notin`) are left out: the term is returned, and refused.
fn label_selector(text: &str) -> Result<Vec<(String, Option<String>)>, String> {
    let mut terms = Vec::new();
    for term in text.split(',').map(str::trim).filter(|t| !t.is_empty()) {
        let valid = |k: &str| !k.is_empty() && !k.contains(['!', ' ', '(', ')']);
        match term.split_once("==").or_else(|| term.split_once('=')) {
            Some((k, v)) if valid(k) => terms.push((k.to_string(), Some(v.to_string()))),
            None if valid(term) => terms.push((term.to_string(), None)),
            _ => return Err(term.to_string()),
        }
    }
    Ok(terms)
}

impl Scope {
    fn holds(&self, k: &Key) -> bool {
        k.0 == self.group
            && k.1 == self.plural
            && self.namespace.as_ref().is_none_or(|ns| *ns == k.2)
            && self.name.as_ref().is_none_or(|n| *n == k.3)
    }

    /// Whether `obj`'s labels satisfy the selector.
    fn selects(&self, obj: &Value) -> bool {
        let labels = &obj["metadata"]["labels"];
        self.labels.iter().all(|(k, v)| match (labels.get(k), v) {
            (Some(have), Some(want)) => have.as_str() == Some(want.as_str()),
            (have, None) => have.is_some(),
            (None, Some(_)) => false,
        })
    }

    /// The current objects in scope, ordered by namespace and name, and the store's resource
    /// version.
    fn current(&self, s: &Storage) -> (Vec<Value>, u64) {
        let (items, rv, _) = self.page(s, None, None);
        (items, rv)
    }

    /// The objects in scope after `(namespace, name)` `after`, at most `limit` of them, ordered
    /// by namespace and name; the store's resource version; and the place the page ended when
    /// more follow. Only the page's objects are copied.
    fn page(
        &self,
        s: &Storage,
        after: Option<(&str, &str)>,
        limit: Option<usize>,
    ) -> (Vec<Value>, u64, Option<String>) {
        let mut keys: Vec<&Key> = s
            .objects
            .iter()
            .filter(|(k, o)| self.holds(k) && after.is_none_or(|a| (k.2.as_str(), k.3.as_str()) > a) && self.selects(o))
            .map(|(k, _)| k)
            .collect();
        keys.sort();
        let next = match limit {
            Some(l) if keys.len() > l => {
                keys.truncate(l);
                keys.last().map(|k| format!("{}/{}", k.2, k.3))
            }
            _ => None,
        };
        let items = keys
            .into_iter()
            .filter_map(|k| s.objects.get(k))
            .map(|o| served_as(o.clone(), &self.group, &self.version))
            .collect();
        (items, s.resource_version, next)
    }
}

async fn list_or_watch(
    Face { storage, counters, .. }: Face,
    group: String,
    version: String,
    namespace: Option<String>,
    plural: String,
    q: HashMap<String, String>,
) -> Response {
    if crate::reports_face::kind(&group, &plural).is_some() {
        let labels = q
            .get("labelSelector")
            .map(|v| label_selector(v))
            .transpose()
            .unwrap_or_default()
            .unwrap_or_default();
        let gvp = (group.as_str(), version.as_str(), plural.as_str());
        return report_answer(counters.reports.list(gvp, namespace.as_deref(), &labels), false);
    }
    let Some((kind, namespaced)) = served(&group, &plural) else {
        return status(
            StatusCode::NOT_FOUND,
            "NotFound",
            "the server could not find the requested resource".into(),
        );
    };
    if !namespaced && namespace.is_some() {
        return status(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!("{plural}.{group} is not namespaced"),
        );
    }
    let labels = match q.get("labelSelector").map(|v| label_selector(v)).transpose() {
        Ok(l) => l.unwrap_or_default(),
        Err(term) => {
            return status(
                StatusCode::BAD_REQUEST,
                "BadRequest",
                format!("the emulator does not evaluate the label selector term {term:?}"),
            )
        }
    };
    // Every resource's field selectors include `metadata.name` and `metadata.namespace`
    // (apiserver pkg/registry/generic/matcher.go `ObjectMetaFieldsSet`); `=` and `==` are
    // equality (apimachinery pkg/fields/selector.go). Inequality is left out, refused.
    let (mut name, mut namespace) = (None, namespace);
    for term in q
        .get("fieldSelector")
        .into_iter()
        .flat_map(|s| s.split(','))
        .filter(|t| !t.is_empty())
    {
        let parsed = term
            .split_once("==")
            .or_else(|| term.split_once('='))
            .filter(|(k, _)| !k.ends_with('!'));
        match parsed {
            Some(("metadata.name", v)) => name = Some(v.to_string()),
            Some(("metadata.namespace", v)) => namespace = Some(v.to_string()),
            _ => {
                return status(
                    StatusCode::BAD_REQUEST,
                    "BadRequest",
                    format!("the emulator does not evaluate the field selector {term:?}"),
                )
            }
        }
    }
    let scope = Scope {
        group,
        version,
        plural,
        namespace,
        name,
        labels,
    };
    let flag = |k: &str| q.get(k).is_some_and(|v| v == "true" || v == "1");
    if flag("watch") {
        return watch(storage, counters, scope, &q, flag("sendInitialEvents"));
    }
    if !scope.labels.is_empty() {
        counters.selected_lists.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(counters.list_delay_ms.load(Ordering::SeqCst))).await;
    }
    // Pages (apiserver pkg/storage/etcd3/store.go `GetList`: `limit`, and `continue` from where
    // the last page ended, in key order — namespace, then name). The token is opaque to clients;
    // here it is the last item's `namespace/name`.
    let after = q
        .get("continue")
        .filter(|c| !c.is_empty())
        .map(|t| t.split_once('/').unwrap_or(("", t)));
    let limit = q.get("limit").and_then(|l| l.parse::<usize>().ok()).filter(|l| *l > 0);
    let (items, rv, next) = scope.page(&storage.lock().expect("storage"), after, limit);
    counters.watched.fetch_max(rv, Ordering::SeqCst);
    let list = json!({"apiVersion": served_as(json!({}), &scope.group, &scope.version)["apiVersion"], "kind": format!("{kind}List"),
        "metadata": {"resourceVersion": rv.to_string(), "continue": next}, "items": items});
    ([(header::CONTENT_TYPE, "application/json")], list.to_string()).into_response()
}

/// A watch's state between events.
struct Watching {
    storage: Shared,
    counters: Arc<Counters>,
    changed: tokio::sync::watch::Receiver<u64>,
    scope: Scope,
    /// Changes up to this resource version have been sent (or were part of the initial state).
    after: u64,
    pending: VecDeque<Value>,
    deadline: tokio::time::Instant,
}

fn watch(
    storage: Shared,
    counters: Arc<Counters>,
    scope: Scope,
    q: &HashMap<String, String>,
    send_initial_events: bool,
) -> Response {
    let timeout = q
        .get("timeoutSeconds")
        .and_then(|t| t.parse::<u64>().ok())
        .filter(|t| *t > 0)
        .unwrap_or(1800);
    let from = q.get("resourceVersion").filter(|rv| !rv.is_empty());
    let (changed, after, pending) = {
        let s = storage.lock().expect("storage");
        let changed = s.changed.subscribe();
        match from.map(|rv| rv.parse::<u64>()) {
            Some(Err(_)) => {
                return status(
                    StatusCode::BAD_REQUEST,
                    "BadRequest",
                    format!("invalid resource version: {}", from.map_or("", |v| v.as_str())),
                )
            }
            // Start at exactly N: everything after it.
            Some(Ok(n)) if n > 0 && !send_initial_events => (changed, n, VecDeque::new()),
            // Unset or 0 (or sendInitialEvents): the current state as ADDED events first.
            _ => {
                let (items, rv) = scope.current(&s);
                let mut pending: VecDeque<Value> = items
                    .into_iter()
                    .map(|o| json!({"type": "ADDED", "object": o}))
                    .collect();
                if send_initial_events {
                    pending.push_back(json!({"type": "BOOKMARK", "object": {
                        "apiVersion": served_as(json!({}), &scope.group, &scope.version)["apiVersion"],
                        "kind": served(&scope.group, &scope.plural).map(|(k, _)| k).unwrap_or_default(),
                        "metadata": {"resourceVersion": rv.to_string(),
                            "annotations": {"k8s.io/initial-events-end": "true"}}}}));
                }
                (changed, rv, pending)
            }
        }
    };
    let state = Watching {
        storage,
        counters,
        changed,
        scope,
        after,
        pending,
        deadline: tokio::time::Instant::now() + Duration::from_secs(timeout),
    };
    let events = futures_util::stream::unfold(state, |mut w| async move {
        loop {
            if let Some(event) = w.pending.pop_front() {
                if let Some(rv) = event
                    .pointer("/object/metadata/resourceVersion")
                    .and_then(Value::as_str)
                    .and_then(|rv| rv.parse().ok())
                {
                    w.counters.watched.fetch_max(rv, Ordering::SeqCst);
                }
                let line = Bytes::from(format!("{event}\n"));
                return Some((Ok::<_, std::convert::Infallible>(line), w));
            }
            // Mark what is seen before reading, so a change made after the read wakes us.
            w.changed.borrow_and_update();
            if !w.counters.held.load(Ordering::SeqCst) {
                let s = w.storage.lock().expect("storage");
                let start = s.history.partition_point(|c| c.resource_version <= w.after);
                for c in &s.history[start..] {
                    if !w.scope.holds(&c.key) {
                        continue;
                    }
                    // A filtered watch (apiserver pkg/storage/cacher/cache_watcher.go
                    // `convertToWatchEvent`): an object that starts matching is ADDED; one that
                    // stops, DELETED — its previous state at this change's resource version.
                    let was = c.previous.as_ref().is_some_and(|p| w.scope.selects(p));
                    let (kind, object) = match (w.scope.selects(&c.object), was) {
                        (true, false) if c.kind == "MODIFIED" => ("ADDED", c.object.clone()),
                        (true, _) => (c.kind, c.object.clone()),
                        (false, true) => {
                            let mut last = c.previous.clone().unwrap_or_default();
                            last["metadata"]["resourceVersion"] = c.object["metadata"]["resourceVersion"].clone();
                            ("DELETED", last)
                        }
                        (false, false) => continue,
                    };
                    let object = served_as(object, &w.scope.group, &w.scope.version);
                    w.pending.push_back(json!({"type": kind, "object": object}));
                }
                w.after = w.after.max(s.resource_version);
            }
            if !w.pending.is_empty() {
                continue;
            }
            tokio::select! {
                r = w.changed.changed() => if r.is_err() { return None },
                _ = tokio::time::sleep_until(w.deadline) => return None,
            }
        }
    });
    ([(header::CONTENT_TYPE, "application/json")], Body::from_stream(events)).into_response()
}

/// An emulator store that objects are only put into (no webhook is called), its face, a kube
/// client of scimgate's reading through it, and the directory its kubeconfig is in.
pub async fn store_face_and_client() -> (crate::apiserver::ApiServer, KubeFace, kube::Client, tempfile::TempDir) {
    let api = crate::apiserver::ApiServer::at("https://127.0.0.1:9", reqwest::Client::new());
    let mut face = KubeFace::bind().await;
    face.serve(&api);
    let dir = tempfile::tempdir().expect("tempdir");
    face.write_kubeconfig(&dir.path().join("kubeconfig"));
    let client = scimgate::cluster::client(Some(&dir.path().join("kubeconfig")))
        .await
        .expect("kubeconfig")
        .expect("a client");
    (api, face, client, dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scimgate_reads_owners_through_the_face_from_its_watch_cache() {
    use scimgate::cluster::owners::{Error, Owners};
    use scimgate::policy::Kind;
    let (api, face, client, dir) = store_face_and_client().await;
    let (_stop, stop) = tokio::sync::watch::channel(false);
    let (owners, task) = Owners::watch(client, stop);
    tokio::spawn(task);

    let uid = uuid::Uuid::new_v4().to_string();
    let pr = json!({"apiVersion": "tekton.dev/v1", "kind": "PipelineRun",
        "metadata": {"name": "build-1", "namespace": "team-a", "uid": uid}, "spec": {},
        "status": {"pipelineSpec": {"tasks": []}}});
    api.put(pr.clone());
    let child = |uid: &str| {
        json!({"metadata": {"name": "build-1-compile", "ownerReferences": [{"apiVersion": "tekton.dev/v1",
            "kind": "PipelineRun", "name": "build-1", "uid": uid, "controller": true}]}})
    };
    let found = owners
        .owner_of(Kind::TaskRun, "team-a", &child(&uid))
        .await
        .expect("found");
    assert_eq!(
        (found.kind, &found.object["metadata"]["uid"]),
        (Kind::PipelineRun, &json!(uid))
    );
    // Once the watch has delivered it, lookups are answered from the cache: no GET.
    let rv: u64 = api.stored(&pr).expect("stored")["metadata"]["resourceVersion"]
        .as_str()
        .and_then(|v| v.parse().ok())
        .expect("rv");
    crate::support::until(Duration::from_secs(10), async || face.watched() >= rv)
        .await
        .expect("the reflector watches");
    // The reflector applies what it received a moment later: wait until a lookup needs no GET.
    let cached = crate::support::until(Duration::from_secs(10), async || {
        let before = face.gets();
        let r = owners.owner_of(Kind::TaskRun, "team-a", &child(&uid)).await;
        r.is_ok() && face.gets() == before
    })
    .await;
    assert!(cached.is_some(), "the watch cache never answered without a GET");
    let gets = face.gets();
    for _ in 0..5 {
        owners
            .owner_of(Kind::TaskRun, "team-a", &child(&uid))
            .await
            .expect("found");
    }
    assert_eq!(face.gets(), gets, "answered from the watch cache");
    // Another uid than the stored one: refused after one GET confirms it.
    let other = uuid::Uuid::new_v4().to_string();
    let r = owners.owner_of(Kind::TaskRun, "team-a", &child(&other)).await;
    assert!(matches!(r, Err(Error::UidMismatch { .. })), "{r:?}");
    assert_eq!(face.gets(), gets + 1);
    // Deleted: the DELETED event empties the cache, and the GET finds nothing.
    let key = (
        "tekton.dev".to_string(),
        "pipelineruns".to_string(),
        "team-a".to_string(),
        "build-1".to_string(),
    );
    api.storage().lock().expect("storage").remove(&key).expect("removed");
    let gone = crate::support::until(Duration::from_secs(10), async || {
        matches!(
            owners.owner_of(Kind::TaskRun, "team-a", &child(&uid)).await,
            Err(Error::NotFound { .. })
        )
    })
    .await;
    assert!(gone.is_some(), "the deleted owner is gone");
    // A kube client's own GET of a missing object is a 404 it understands.
    let ar = kube::discovery::ApiResource::from_gvk_with_plural(
        &kube::api::GroupVersionKind::gvk("argoproj.io", "v1alpha1", "CronWorkflow"),
        "cronworkflows",
    );
    let client = scimgate::cluster::client(Some(&dir.path().join("kubeconfig")))
        .await
        .expect("kubeconfig")
        .expect("a client");
    let crons: kube::Api<kube::api::DynamicObject> = kube::Api::namespaced_with(client, "team-a", &ar);
    assert!(crons.get_opt("none").await.expect("a 404 is None").is_none());

    // A run Tekton has not yet written the resolved pipeline of (its first children come first):
    // the run is read once more, then the Pipeline it names; one through a resolver is not.
    let spec = json!({"tasks": [{"name": "compile", "taskRef": {"name": "go-build"}}]});
    api.put(json!({"apiVersion": "tekton.dev/v1", "kind": "Pipeline",
        "metadata": {"name": "lib", "namespace": "team-a", "uid": "p1"}, "spec": spec}));
    for (name, pipeline_ref, want) in [
        ("build-2", json!({"name": "lib"}), Some(&spec)),
        ("build-3", json!({"resolver": "git", "params": []}), None),
        ("build-4", json!({"name": "gone"}), None),
    ] {
        let uid = uuid::Uuid::new_v4().to_string();
        api.put(json!({"apiVersion": "tekton.dev/v1", "kind": "PipelineRun",
            "metadata": {"name": name, "namespace": "team-a", "uid": uid}, "spec": {"pipelineRef": pipeline_ref}}));
        let child = json!({"metadata": {"name": "c", "ownerReferences": [{"apiVersion": "tekton.dev/v1",
            "kind": "PipelineRun", "name": name, "uid": uid, "controller": true}]}});
        let found = owners.owner_of(Kind::TaskRun, "team-a", &child).await.expect("found");
        assert_eq!(found.pipeline.as_ref(), want, "{name}");
    }
}

/// A LIST in pages, as kube-rs asks for them (`limit`, then the `continue` it was given), in
/// key order: namespace, then name — every object once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_list_in_pages_returns_every_object_once() {
    use kube::api::{Api, DynamicObject, ListParams};
    let (api, _face, client, _dir) = store_face_and_client().await;
    // Namespaces whose text order differs from their order as keys ("team-a/x" > "team/x" as
    // text, but "team" < "team-a").
    let mut want = Vec::new();
    for (ns, name) in [
        ("team-a", "b"),
        ("team", "z"),
        ("team-a", "a"),
        ("team", "a"),
        ("ci", "m"),
    ] {
        api.put(json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "Workflow",
            "metadata": {"name": name, "namespace": ns, "uid": uuid::Uuid::new_v4().to_string(),
                "labels": {"scimgate.io/submitted-by-id": "u1"}}, "spec": {}}));
        want.push(format!("{ns}/{name}"));
    }
    want.sort_by(|a, b| a.split_once('/').cmp(&b.split_once('/')));
    let ar = kube::discovery::ApiResource {
        group: "argoproj.io".into(),
        version: "v1alpha1".into(),
        api_version: "argoproj.io/v1alpha1".into(),
        kind: "Workflow".into(),
        plural: "workflows".into(),
    };
    let workflows: Api<DynamicObject> = Api::all_with(client, &ar);
    let (mut got, mut pages) = (Vec::new(), 0);
    let mut params = ListParams::default().labels("scimgate.io/submitted-by-id").limit(2);
    loop {
        let page = workflows.list(&params).await.expect("list");
        pages += 1;
        got.extend(page.items.iter().map(|o| {
            format!(
                "{}/{}",
                o.metadata.namespace.clone().unwrap_or_default(),
                o.metadata.name.clone().unwrap_or_default()
            )
        }));
        match page.metadata.continue_ {
            Some(next) if !next.is_empty() => params = params.continue_token(&next),
            _ => break,
        }
    }
    assert_eq!((got, pages), (want, 3));
}
