//! What a request is about: which of our kinds (Argo v1alpha1; Tekton v1 and v1beta1), what it
//! would run as, which templates it uses, and which action the change amounts to.
//!
//! What runs is more than `spec`: an Argo Workflow has no status subresource, so whoever may
//! update it may write `status.storedWorkflowTemplateSpec` (the spec argo-workflows
//! `workflow/controller/operator.go` `setStoredWfSpec` executes once it is set) and
//! `status.storedTemplates` (what `templateRef`s resolve to first: `Workflow.GetStoredTemplate` in
//! `pkg/apis/workflow/v1alpha1/workflow_types.go`). Those count as spec whenever a person changes
//! them (or creates a run carrying them); the controller's own writes of them never reach a
//! person's decision. Tekton's `status.pipelineSpec`/`status.taskSpec` (written through the
//! status subresource) likewise.

use super::argo;
use super::argo_nodes::{self, Nodes};
use crate::admission::codec::Operation;
use crate::policy::{Action, Kind};
use crate::stamp;
use serde_json::{Map, Value};
use std::collections::{HashMap, HashSet};

/// The prefix of a template identity that names an inline definition rather than a reference:
/// `inline:<type>:<name>`. No template reference has it (Argo and Tekton names have no `:`, and
/// resolver identities start with the resolver's name), so a `templates:` rule never matches it.
pub use crate::policy::evaluate::INLINE;

/// Our kinds by API group/version/kind; anything else is not ours.
pub fn detect(group: &str, version: &str, kind: &str) -> Option<Kind> {
    match (group, version, kind) {
        ("argoproj.io", "v1alpha1", "Workflow") => Some(Kind::Workflow),
        ("argoproj.io", "v1alpha1", "CronWorkflow") => Some(Kind::CronWorkflow),
        ("argoproj.io", "v1alpha1", "WorkflowTemplate") => Some(Kind::WorkflowTemplate),
        ("argoproj.io", "v1alpha1", "ClusterWorkflowTemplate") => Some(Kind::ClusterWorkflowTemplate),
        ("tekton.dev", "v1" | "v1beta1", "PipelineRun") => Some(Kind::PipelineRun),
        ("tekton.dev", "v1" | "v1beta1", "TaskRun") => Some(Kind::TaskRun),
        _ => None,
    }
}

fn s<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    let mut cur = v;
    for p in path {
        cur = cur.get(p)?;
    }
    cur.as_str()
}

fn arr<'a>(v: &'a Value, path: &[&str]) -> &'a [Value] {
    let mut cur = v;
    for p in path {
        match cur.get(p) {
            Some(x) => cur = x,
            None => return &[],
        }
    }
    cur.as_array().map(Vec::as_slice).unwrap_or(&[])
}

/// The Argo workflow spec: `spec`, or `spec.workflowSpec` for a CronWorkflow.
fn argo_spec(kind: Kind, obj: &Value) -> Option<&Value> {
    let spec = obj.get("spec")?;
    if kind == Kind::CronWorkflow {
        spec.get("workflowSpec")
    } else {
        Some(spec)
    }
}

/// `obj` as Argo's controller runs it: the `spec` of `workflowDefaults` merged under a
/// Workflow's spec or a CronWorkflow's `workflowSpec` (`workflow/controller/controller.go`
/// `setWorkflowDefaults`; `workflow/util/merge.go` `MergeTo`, a strategic merge of the Workflow
/// onto the defaults: objects key by key, `templates` by name, any other value the Workflow's
/// when it has one). `None` for the other kinds (a template's Workflows get the defaults when
/// they run, and are judged then).
pub fn with_workflow_defaults(kind: Kind, obj: &Value, defaults: &Value) -> Option<Value> {
    let path: &[&str] = match kind {
        Kind::Workflow => &["spec"],
        Kind::CronWorkflow => &["spec", "workflowSpec"],
        _ => return None,
    };
    let mut merged = obj.clone();
    let mut spec = &mut merged;
    for k in path {
        if !spec.get(k).is_some_and(Value::is_object) {
            spec[*k] = Value::Object(Default::default());
        }
        spec = &mut spec[*k];
    }
    let mut base = defaults.clone();
    merge_onto(&mut base, spec);
    *spec = base;
    Some(merged)
}

/// `over` merged onto `base` as a strategic merge of Argo's types does it.
fn merge_onto(base: &mut Value, over: &Value) {
    let (Some(b), Some(o)) = (base.as_object_mut(), over.as_object()) else {
        *base = over.clone();
        return;
    };
    for (k, v) in o {
        match b.get_mut(k) {
            Some(existing) if existing.is_object() && v.is_object() => merge_onto(existing, v),
            Some(existing) if k == "templates" && existing.is_array() && v.is_array() => merge_by_name(existing, v),
            _ => {
                b.insert(k.clone(), v.clone());
            }
        }
    }
}

/// `patchMergeKey:"name"`: entries of `over` merged onto the `base` entry of the same name, the
/// others appended. Linear: the base's names are indexed once.
fn merge_by_name(base: &mut Value, over: &Value) {
    let (Some(b), Some(o)) = (base.as_array_mut(), over.as_array()) else {
        return;
    };
    let name = |v: &Value| v.get("name").and_then(Value::as_str).map(String::from);
    let index: std::collections::HashMap<String, usize> = b
        .iter()
        .enumerate()
        .filter_map(|(i, t)| name(t).map(|n| (n, i)))
        .collect();
    for t in o {
        match name(t).and_then(|n| index.get(&n).copied()) {
            Some(i) => merge_onto(&mut b[i], t),
            None => b.push(t.clone()),
        }
    }
}

/// The parts of an Argo object's status that Argo executes: `storedWorkflowTemplateSpec` (a
/// spec) and `storedTemplates` (templates), when `old` lacks them or has them otherwise — the
/// ones a person wrote in this request. The controller's own copies are left out: they are
/// the spec and the referenced templates, already judged when they were written.
fn stored_parts<'a>(
    kind: Kind,
    obj: &'a Value,
    old: Option<&Value>,
) -> (Option<&'a Value>, Option<&'a Map<String, Value>>) {
    if kind != Kind::Workflow {
        return (None, None);
    }
    let changed = |k: &str| {
        let now = obj.get("status").and_then(|s| s.get(k));
        let was = old.and_then(|o| o.get("status")).and_then(|s| s.get(k));
        now.filter(|n| !n.is_null() && Some(*n) != was)
    };
    (
        changed("storedWorkflowTemplateSpec"),
        changed("storedTemplates").and_then(Value::as_object),
    )
}

/// What a run executes: the service accounts its pods would use (`default` when the run names
/// none) and the templates, pipelines or tasks it uses — references by name (resolver refs with
/// their version), and `inline:<type>:<name>` for each inline definition that runs something,
/// which no `templates:` pattern matches.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Runs {
    pub run_as: Vec<String>,
    pub templates: Vec<String>,
}

/// Why what a run executes cannot be read the way its controller reads it.
pub type Unreadable = super::argo::Folded;

/// Names in first-seen order without repeats; linear (a set beside the list).
#[derive(Default)]
struct Unique {
    list: Vec<String>,
    seen: HashSet<String>,
}

impl Unique {
    fn push(&mut self, x: impl Into<String>) {
        let x = x.into();
        if !x.is_empty() && !self.seen.contains(&x) {
            self.seen.insert(x.clone());
            self.list.push(x);
        }
    }
}

/// `runs_since` for an object as it stands (its stored parts count as already judged).
pub fn runs(kind: Kind, obj: &Value) -> Result<Runs, Unreadable> {
    runs_since(kind, obj, Some(obj))
}

/// What `obj` executes, counting the executed parts of `status` a person wrote since `old`.
///
/// Argo: every part of the spec at any depth (`argo`). Tekton: v1
/// `taskRunTemplate.serviceAccountName` and `taskRunSpecs[].serviceAccountName` (tektoncd/pipeline
/// `pkg/apis/pipeline/v1/pipelinerun_types.go` `PipelineTaskRunSpec`, `PipelineTaskRunTemplate`),
/// v1beta1 `serviceAccountName`, `taskRunSpecs[].taskServiceAccountName` and the older
/// `serviceAccountNames`, TaskRun `serviceAccountName`; Tekton's `podTemplate` has no service
/// account field (`pkg/apis/pipeline/pod/template.go`).
pub fn runs_since(kind: Kind, obj: &Value, old: Option<&Value>) -> Result<Runs, Unreadable> {
    let (mut run_as, mut templates) = (Unique::default(), Unique::default());
    let top = match kind {
        Kind::PipelineRun | Kind::TaskRun => {
            let spec = obj.get("spec").unwrap_or(&Value::Null);
            let top = if kind == Kind::TaskRun {
                s(spec, &["serviceAccountName"])
            } else {
                s(spec, &["taskRunTemplate", "serviceAccountName"]).or_else(|| s(spec, &["serviceAccountName"]))
            };
            run_as.push(top.unwrap_or_default());
            for t in arr(spec, &["taskRunSpecs"]) {
                run_as.push(s(t, &["serviceAccountName"]).unwrap_or_default());
                run_as.push(s(t, &["taskServiceAccountName"]).unwrap_or_default());
            }
            for t in arr(spec, &["serviceAccountNames"]) {
                run_as.push(s(t, &["serviceAccountName"]).unwrap_or_default());
            }
            tekton_templates(obj, old, &mut templates);
            top.map(String::from)
        }
        _ => {
            let Some(spec) = argo_spec(kind, obj) else {
                return Ok(Runs {
                    run_as: vec!["default".into()],
                    templates: Vec::new(),
                });
            };
            let (stored_spec, stored_templates) = stored_parts(kind, obj, old);
            let mut parts = vec![argo::Part::Spec("spec", spec)];
            parts.extend(stored_templates.map(|t| argo::Part::Templates("status.storedTemplates", t)));
            parts.extend(stored_spec.map(|s| argo::Part::Spec("status.storedWorkflowTemplateSpec", s)));
            let e = argo::read(&parts)?;
            e.accounts.into_iter().for_each(|a| run_as.push(a));
            e.refs.into_iter().chain(e.inline).for_each(|t| templates.push(t));
            e.top
        }
    };
    let mut run_as = run_as.list;
    if top.as_deref().is_none_or(str::is_empty) && !run_as.iter().any(|o| o == "default") {
        run_as.insert(0, "default".into());
    }
    Ok(Runs {
        run_as,
        templates: templates.list,
    })
}

/// A param of a resolver ref, by name.
fn param<'a>(r: &'a Value, name: &str) -> Option<&'a str> {
    arr(r, &["params"])
        .iter()
        .find(|p| s(p, &["name"]) == Some(name))
        .and_then(|p| p.get("value"))
        .and_then(Value::as_str)
        .filter(|v| !v.is_empty())
}

/// An OCI reference split into repository and version: the digest (`@sha256:…`) or the tag (a
/// `:` after the last `/`; a `:` before it is a registry port).
fn split_image(image: &str) -> (&str, Option<&str>) {
    if let Some((repo, digest)) = image.split_once('@') {
        return (repo, Some(digest));
    }
    let after_slash = image.rfind('/').map_or(0, |i| i + 1);
    match image[after_slash..].rfind(':') {
        Some(i) => (&image[..after_slash + i], Some(&image[after_slash + i + 1..])),
        None => (image, None),
    }
}

/// `@` in what locates a template is written `%40`, so the one `@` of an identity always starts
/// the version (`policy::evaluate` matches a pattern without `@` against what precedes it).
fn locator(parts: &[&str]) -> String {
    parts.join(":").replace('%', "%25").replace('@', "%40")
}

fn versioned(resolver: &str, parts: &[&str], version: Option<&str>) -> String {
    let base = format!("{resolver}:{}", locator(parts));
    match version {
        Some(v) => format!("{base}@{}", v.replace('@', "%40")),
        None => base,
    }
}

/// The identity of a `pipelineRef`/`taskRef`: its name, or for a remote one the resolver, what
/// locates it and, after `@`, the version it pins — params of the resolvers in tektoncd/pipeline
/// `docs/git-resolver.md` (`url` or `serverURL`/`org`/`repo`, `pathInRepo`, `revision`),
/// `docs/bundle-resolver.md` (`bundle` with its tag or digest, `name`), `docs/hub-resolver.md`
/// (`catalog`, `name`, `version`) and `docs/cluster-resolver.md` (`namespace`, `name`: no
/// version, the object in the cluster is what runs). v1beta1's `bundle` field is the bundles
/// resolver. A ref of another resolver is named by all its params.
fn resolver_ref(r: &Value) -> Option<String> {
    if let Some(bundle) = s(r, &["bundle"]).filter(|b| !b.is_empty()) {
        let (image, version) = split_image(bundle);
        return Some(versioned(
            "bundles",
            &[image, s(r, &["name"]).unwrap_or_default()],
            version,
        ));
    }
    if let Some(name) = s(r, &["name"]).filter(|n| !n.is_empty()) {
        return Some(name.to_string());
    }
    let resolver = s(r, &["resolver"])?;
    let p = |n: &str| param(r, n).unwrap_or_default();
    Some(match resolver {
        "git" => {
            let repo = match param(r, "url") {
                Some(url) => url.to_string(),
                None => [p("serverURL"), p("org"), p("repo")]
                    .iter()
                    .filter(|x| !x.is_empty())
                    .copied()
                    .collect::<Vec<_>>()
                    .join("/"),
            };
            versioned("git", &[&repo, p("pathInRepo")], param(r, "revision"))
        }
        "bundles" => {
            let (image, version) = split_image(p("bundle"));
            versioned("bundles", &[image, p("name")], version)
        }
        "hub" => {
            let name = match param(r, "catalog") {
                Some(c) => format!("{c}/{}", p("name")),
                None => p("name").to_string(),
            };
            versioned("hub", &[&name], param(r, "version"))
        }
        "cluster" => versioned("cluster", &[p("namespace"), p("name")], None),
        other => {
            let mut all: Vec<String> = arr(r, &["params"])
                .iter()
                .map(|x| {
                    format!(
                        "{}={}",
                        s(x, &["name"]).unwrap_or_default(),
                        x.get("value").map(Value::to_string).unwrap_or_default()
                    )
                })
                .collect();
            all.sort();
            let refs: Vec<&str> = all.iter().map(String::as_str).collect();
            versioned(other, &refs, None)
        }
    })
}

/// Every value of `key` anywhere under `v`.
fn find_all<'a>(v: &'a Value, key: &str, out: &mut Vec<&'a Value>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                if k == key {
                    out.push(x);
                }
                find_all(x, key, out);
            }
        }
        Value::Array(a) => a.iter().for_each(|x| find_all(x, key, out)),
        _ => {}
    }
}

/// The pipelines and tasks a Tekton run uses.
fn tekton_templates(obj: &Value, old: Option<&Value>, out: &mut Unique) {
    let spec = obj.get("spec").unwrap_or(&Value::Null);
    // What Tekton runs instead of resolving the ref once it is in the status (tektoncd/
    // pipeline `pkg/reconciler/pipelinerun/resources/pipelineref.go` `GetPipelineFunc`,
    // `pkg/reconciler/taskrun/resources/taskref.go` `GetTaskFuncFromTaskRun`): written
    // by a person (through `/status`), it is an inline definition.
    for key in ["pipelineSpec", "taskSpec"] {
        let now = obj.get("status").and_then(|st| st.get(key)).filter(|v| !v.is_null());
        let was = old.and_then(|o| o.get("status")).and_then(|st| st.get(key));
        if now.is_some_and(|n| Some(n) != was) {
            out.push(format!("{INLINE}{key}:status"));
        }
    }
    for key in ["pipelineRef", "taskRef"] {
        let mut refs = Vec::new();
        find_all(spec, key, &mut refs);
        refs.into_iter().filter_map(resolver_ref).for_each(|r| out.push(r));
    }
    // Inline: the run's own `pipelineSpec`/`taskSpec`, and a pipeline task's `taskSpec`
    // (named by the pipeline task).
    if spec.get("pipelineSpec").is_some_and(|x| !x.is_null()) {
        out.push(format!("{INLINE}pipelineSpec:"));
    }
    if spec.get("taskSpec").is_some_and(|x| !x.is_null()) {
        out.push(format!("{INLINE}taskSpec:"));
    }
    let mut tasks = Vec::new();
    find_all(spec, "tasks", &mut tasks);
    find_all(spec, "finally", &mut tasks);
    for t in tasks.iter().filter_map(|t| t.as_array()).flatten() {
        if t.get("taskSpec").is_some_and(|x| !x.is_null()) {
            out.push(format!("{INLINE}taskSpec:{}", s(t, &["name"]).unwrap_or_default()));
        }
    }
}

/// Suspend nodes among `nodes`: node id → phase.
fn suspend_phases(nodes: &Map<String, Value>) -> HashMap<&str, &str> {
    nodes
        .iter()
        .filter(|(_, n)| s(n, &["type"]) == Some("Suspend"))
        .map(|(id, n)| (id.as_str(), s(n, &["phase"]).unwrap_or_default()))
        .collect()
}

/// Whether a Suspend node ending Failed or Error ends the run. argo-workflows `workflow/util/
/// util.go` `StopWorkflow` with a node selector is exactly that (the node marked Failed, action
/// Stop), and a failed step fails its steps group and the run — unless the spec can go on past
/// a failed node: `continueOn`, a dag `depends` expression (`approve.Failed`), lifecycle
/// `hooks` (an expression on the node's status), or steps we cannot see (a
/// `workflowTemplateRef`). Then the run may go on, and the change is an approval.
fn failing_ends_the_run(kind: Kind, obj: &Value) -> bool {
    let Some(spec) = argo_spec(kind, obj) else { return false };
    let mut parts = vec![spec];
    let status = obj.get("status").unwrap_or(&Value::Null);
    parts.extend(status.get("storedWorkflowTemplateSpec"));
    parts.extend(status.get("storedTemplates"));
    !parts.iter().any(|p| {
        ["continueOn", "depends", "hooks", "workflowTemplateRef"]
            .iter()
            .any(|k| {
                let mut found = Vec::new();
                find_all(p, k, &mut found);
                found.iter().any(|v| !v.is_null())
            })
    })
}

/// Tekton's `spec.status` values that cancel: PipelineRun `Cancelled`, `CancelledRunFinally`,
/// `StoppedRunFinally` (`pkg/apis/pipeline/v1/pipelinerun_types.go`) and TaskRun
/// `TaskRunCancelled` (`pkg/apis/pipeline/v1/taskrun_types.go` `TaskRunSpecStatusCancelled`).
const TEKTON_CANCEL: [&str; 4] = [
    "Cancelled",
    "CancelledRunFinally",
    "StoppedRunFinally",
    "TaskRunCancelled",
];

/// A digest of what a run executes, as a stamp binds it (`stamp::digest`): the spec — a
/// CronWorkflow's `workflowSpec`, what its schedule runs — without the `workflowMetadata` Argo
/// copies onto runs (scimgate's own stamp lives there) and without the keys that say where the
/// run stands rather than what it runs (Argo `suspend`, `shutdown`; Tekton `status`: approving or
/// cancelling a run changes who acted, not what runs); for a Workflow also the spec and templates
/// stored in its status, which Argo executes.
pub fn runs_digest(kind: Kind, obj: &Value) -> String {
    const ARGO: &[&str] = &["workflowMetadata", "suspend", "shutdown"];
    const TEKTON: &[&str] = &["status"];
    let status = |k: &str| obj.get("status").and_then(|s| s.get(k)).filter(|v| !v.is_null());
    match kind {
        Kind::CronWorkflow => stamp::digest::of(&[(obj.pointer("/spec/workflowSpec"), ARGO)]),
        Kind::Workflow => stamp::digest::of(&[
            (obj.get("spec"), ARGO),
            (status("storedWorkflowTemplateSpec"), &[]),
            (status("storedTemplates"), &[]),
        ]),
        Kind::WorkflowTemplate | Kind::ClusterWorkflowTemplate => stamp::digest::of(&[(obj.get("spec"), ARGO)]),
        Kind::PipelineRun | Kind::TaskRun => stamp::digest::of(&[(obj.get("spec"), TEKTON)]),
    }
}

/// What one action changes by itself: the key of `spec` that carries it, and the Suspend nodes
/// it moves on — all of them when the nodes cannot be seen. Anything else the request changes is
/// an update besides.
#[derive(Default)]
struct Touches<'a> {
    spec_key: Option<&'static str>,
    gates: Gates<'a>,
}

#[derive(Default)]
enum Gates<'a> {
    #[default]
    None,
    These(Vec<&'a str>),
    /// Every node: they are compressed beyond reading, or in Argo's database.
    Unseen,
}

/// The actions a request amounts to, the one it is named for first; none for changes that are
/// no action of a person (metadata-only edits). Run by a configured controller, every change is
/// no action (`decide_traced`); run by anyone else, these are:
/// - cancel: Tekton `spec.status` set to a cancelling value; Argo `spec.shutdown` set; a Running
///   Suspend node made Failed or Error where that ends the run (`failing_ends_the_run`);
/// - approve: Tekton `spec.status` leaving Pending; Argo `spec.suspend` cleared, or any other
///   change of a Running Suspend node — its phase (Argo counts Succeeded, Skipped and Omitted as
///   fulfilled and goes on: `NodePhase.Fulfilled` in `pkg/apis/workflow/v1alpha1/
///   workflow_types.go`), its type, or its removal — read wherever Argo keeps the nodes
///   (`argo_nodes`); a change of nodes scimgate cannot see (offloaded to Argo's database, or
///   compressed beyond reading) is judged as strictly as an approval, never less;
/// - update: any other change of `spec`, or of `status` (a Workflow has no status subresource:
///   `status` written by a person is theirs to answer for, and a stored spec in it is judged like
///   a spec, `runs_since`) — alone, or beside an approval or a cancel that carries it: a resume
///   that also swaps the service account is an approval *and* an update, and both must be
///   allowed.
pub fn actions(kind: Kind, op: Operation, old: Option<&Value>, new: &Value) -> Vec<Action> {
    match op {
        Operation::Create => return vec![Action::Submit],
        Operation::Update => {}
        Operation::Delete | Operation::Connect => return Vec::new(),
    }
    let Some(old) = old else { return Vec::new() };
    let (before, after) = if kind == Kind::Workflow {
        (argo_nodes::of(old), argo_nodes::of(new))
    } else {
        (Nodes::Here(Default::default()), Nodes::Here(Default::default()))
    };
    let (primary, touches) = match named_action(kind, old, new, &before, &after) {
        Some((a, t)) => (Some(a), t),
        None => (None, Touches::default()),
    };
    let spec_changed = differs_except(old.get("spec"), new.get("spec"), touches.spec_key);
    let status_changed = status_differs_except(old.get("status"), new.get("status"), (&before, &after), &touches.gates);
    let mut out: Vec<Action> = primary.into_iter().collect();
    if spec_changed || status_changed {
        out.push(Action::Update);
    }
    out
}

/// The action a change is named for, and what that action changes by itself.
fn named_action<'a>(
    kind: Kind,
    old: &Value,
    new: &Value,
    before: &'a Nodes<'_>,
    after: &Nodes<'_>,
) -> Option<(Action, Touches<'a>)> {
    let on = |key| Touches {
        spec_key: Some(key),
        gates: Gates::None,
    };
    match kind {
        Kind::PipelineRun | Kind::TaskRun => {
            let was = s(old, &["spec", "status"]).unwrap_or_default();
            let now = s(new, &["spec", "status"]).unwrap_or_default();
            if now != was && TEKTON_CANCEL.contains(&now) {
                return Some((Action::Cancel, on("status")));
            }
            if was.ends_with("Pending") && !now.ends_with("Pending") {
                return Some((Action::Approve, on("status")));
            }
            None
        }
        Kind::Workflow => {
            let was = s(old, &["spec", "shutdown"]).unwrap_or_default();
            let now = s(new, &["spec", "shutdown"]).unwrap_or_default();
            if !now.is_empty() && now != was {
                return Some((Action::Cancel, on("shutdown")));
            }
            let (Some(b), Some(a)) = (before.map(), after.map()) else {
                // Nodes not in the object: any change of them may be an approval.
                return (unseen(old) != unseen(new)).then_some((
                    Action::Approve,
                    Touches {
                        spec_key: None,
                        gates: Gates::Unseen,
                    },
                ));
            };
            let running: Vec<&'a str> = suspend_phases(b)
                .into_iter()
                .filter(|(_, p)| *p == "Running")
                .map(|(id, _)| id)
                .collect();
            let suspended =
                |o: &Value| o.get("spec").and_then(|s| s.get("suspend")).and_then(Value::as_bool) == Some(true);
            if suspended(old) && !suspended(new) {
                // The Argo Server's resume also moves every waiting gate on (util.go
                // `ResumeWorkflow`).
                return Some((
                    Action::Approve,
                    Touches {
                        spec_key: Some("suspend"),
                        gates: Gates::These(running),
                    },
                ));
            }
            let later = suspend_phases(a);
            let mut gate = None;
            for id in &running {
                match later.get(id).copied() {
                    Some("Running") => {}
                    Some("Failed" | "Error") if failing_ends_the_run(kind, new) => {
                        gate = gate.or(Some(Action::Cancel));
                    }
                    // Another phase, another type (no longer listed), or gone.
                    _ => gate = Some(Action::Approve),
                }
            }
            gate.map(|a| {
                (
                    a,
                    Touches {
                        spec_key: None,
                        gates: Gates::These(running),
                    },
                )
            })
        }
        _ => None,
    }
}

/// Where a Workflow's nodes are when they are not readable in it: the compressed text and the
/// offload version, as written.
fn unseen(o: &Value) -> (Option<&Value>, Option<&Value>, Option<&Value>) {
    let st = o.get("status");
    (
        st.and_then(|s| s.get("nodes")),
        st.and_then(|s| s.get("compressedNodes")),
        st.and_then(|s| s.get("offloadNodeStatusVersion")),
    )
}

/// Whether two JSON values differ anywhere but in the top-level keys `except` (linear: one lookup
/// per key).
fn differs_except_all(a: Option<&Value>, b: Option<&Value>, except: &[&str]) -> bool {
    match (a, b) {
        (Some(Value::Object(a)), Some(Value::Object(b))) if !except.is_empty() => {
            a.iter()
                .any(|(k, v)| !except.contains(&k.as_str()) && b.get(k) != Some(v))
                || b.keys().any(|k| !except.contains(&k.as_str()) && !a.contains_key(k))
        }
        _ => a != b,
    }
}

fn differs_except(a: Option<&Value>, b: Option<&Value>, except: Option<&str>) -> bool {
    differs_except_all(a, b, except.as_slice())
}

/// The keys of a Workflow's status that hold its nodes, one way or another.
const NODE_KEYS: [&str; 3] = ["nodes", "compressedNodes", "offloadNodeStatusVersion"];

/// Whether two statuses differ anywhere but in the Suspend nodes `gates` (linear), the nodes
/// compared as read wherever they are kept.
fn status_differs_except(
    a: Option<&Value>,
    b: Option<&Value>,
    (before, after): (&Nodes<'_>, &Nodes<'_>),
    gates: &Gates<'_>,
) -> bool {
    if differs_except_all(a, b, &NODE_KEYS) {
        return true;
    }
    let skip: HashSet<&str> = match gates {
        Gates::Unseen => return false,
        Gates::None => HashSet::new(),
        Gates::These(g) => g.iter().copied().collect(),
    };
    match (before.map(), after.map()) {
        (Some(a), Some(b)) => {
            a.iter().any(|(k, v)| !skip.contains(k.as_str()) && b.get(k) != Some(v))
                || b.keys().any(|k| !skip.contains(k.as_str()) && !a.contains_key(k))
        }
        _ => before != after,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn run_as(kind: Kind, obj: &Value) -> Vec<String> {
        runs(kind, obj).expect("readable").run_as
    }
    /// The action a request is named for.
    fn first(kind: Kind, op: Operation, old: Option<&Value>, new: &Value) -> Option<Action> {
        actions(kind, op, old, new).first().copied()
    }
    fn templates(kind: Kind, obj: &Value) -> Vec<String> {
        runs(kind, obj).expect("readable").templates
    }
    fn run_as_since(kind: Kind, obj: &Value, old: Option<&Value>) -> Vec<String> {
        runs_since(kind, obj, old).expect("readable").run_as
    }
    fn templates_since(kind: Kind, obj: &Value, old: Option<&Value>) -> Vec<String> {
        runs_since(kind, obj, old).expect("readable").templates
    }

    #[test]
    fn run_as_and_templates_by_kind() {
        let wf = json!({"spec": {"serviceAccountName": "ml-runner", "workflowTemplateRef": {"name": "ml-train"},
            "templates": [{"name": "a", "steps": [[{"templateRef": {"name": "lib", "template": "x"}}]]},
                          {"name": "b", "dag": {"tasks": [{"templateRef": {"name": "lib2"}}]}, "executor": {"serviceAccountName": "exec"}}]}});
        assert_eq!(run_as(Kind::Workflow, &wf), vec!["ml-runner", "exec"]);
        assert_eq!(templates(Kind::Workflow, &wf), vec!["ml-train", "lib", "lib2"]);
        let cron = json!({"spec": {"workflowSpec": {"entrypoint": "x"}}});
        assert_eq!(run_as(Kind::CronWorkflow, &cron), vec!["default"]);
        let pr = json!({"spec": {"pipelineRef": {"resolver": "git", "params": [{"name": "url", "value": "https://g/x"}, {"name": "pathInRepo", "value": "p.yaml"}]},
            "taskRunTemplate": {"serviceAccountName": "builder"}, "taskRunSpecs": [{"pipelineTaskName": "t", "serviceAccountName": "pusher"}]}});
        assert_eq!(run_as(Kind::PipelineRun, &pr), vec!["builder", "pusher"]);
        assert_eq!(templates(Kind::PipelineRun, &pr), vec!["git:https://g/x:p.yaml"]);
        let beta = json!({"spec": {"serviceAccountName": "old", "pipelineRef": {"name": "build"}}});
        assert_eq!(
            (run_as(Kind::PipelineRun, &beta), templates(Kind::PipelineRun, &beta)),
            (vec!["old".to_string()], vec!["build".to_string()])
        );
    }

    #[test]
    fn workflow_defaults_merge_under_what_the_run_says() {
        let defaults = json!({"serviceAccountName": "argo-default", "executor": {"serviceAccountName": "exec"},
            "templates": [{"name": "main", "serviceAccountName": "from-defaults"}, {"name": "extra", "container": {"image": "x"}}]});
        let wf = json!({"spec": {"entrypoint": "main", "templates": [{"name": "main", "container": {"image": "y"}}]}});
        let merged = with_workflow_defaults(Kind::Workflow, &wf, &defaults).expect("a Workflow");
        assert_eq!(
            run_as(Kind::Workflow, &merged),
            vec!["argo-default", "exec", "from-defaults"]
        );
        assert_eq!(merged["spec"]["templates"][0]["container"]["image"], "y");
        assert_eq!(merged["spec"]["templates"].as_array().map(Vec::len), Some(2));
        let own = json!({"spec": {"serviceAccountName": "mine"}});
        let merged = with_workflow_defaults(Kind::Workflow, &own, &json!({"serviceAccountName": "theirs"}));
        assert_eq!(
            merged.map(|m| run_as(Kind::Workflow, &m)),
            Some(vec!["mine".to_string()])
        );
        let cron = json!({"spec": {"schedule": "* * * * *"}});
        let merged = with_workflow_defaults(Kind::CronWorkflow, &cron, &json!({"serviceAccountName": "theirs"}));
        assert_eq!(
            merged.map(|m| run_as(Kind::CronWorkflow, &m)),
            Some(vec!["theirs".to_string()])
        );
        assert!(with_workflow_defaults(Kind::PipelineRun, &own, &defaults).is_none());
    }

    #[test]
    fn every_service_account_and_inline_template_and_revision() {
        let wf = json!({"spec": {"serviceAccountName": "ml-runner", "podSpecPatch": "serviceAccountName: top-patch\n",
            "templateDefaults": {"podSpecPatch": "{\"serviceAccount\": \"defaults\"}"},
            "templates": [{"name": "a", "steps": [[{"templateRef": {"name": "ml-lib", "template": "x"}}]]},
                          {"name": "b", "container": {"image": "x"}, "podSpecPatch": "{{inputs.parameters.patch}}"},
                          {"name": "c", "script": {"image": "x"}, "podSpecPatch": "{\"{{inputs.parameters.k}}\": \"x\"}"}]}});
        assert_eq!(
            run_as(Kind::Workflow, &wf),
            vec![
                "ml-runner",
                "top-patch",
                "defaults",
                "(podSpecPatch that scimgate cannot read: it is templated ({{…}}))"
            ]
        );
        assert_eq!(
            templates(Kind::Workflow, &wf),
            vec!["ml-lib", "inline:container:b", "inline:script:c"]
        );
        // The stored spec counts when a person wrote it, not when it is the controller's copy.
        let mut stored = wf.clone();
        stored["status"]["storedWorkflowTemplateSpec"] =
            json!({"serviceAccountName": "admin", "templates": [{"name": "z", "resource": {"action": "create"}}]});
        assert!(run_as_since(Kind::Workflow, &stored, Some(&wf)).contains(&"admin".to_string()));
        assert!(templates_since(Kind::Workflow, &stored, Some(&wf)).contains(&"inline:resource:z".to_string()));
        assert!(!run_as_since(Kind::Workflow, &stored, Some(&stored)).contains(&"admin".to_string()));
        let pr = json!({"spec": {"pipelineRef": {"resolver": "git", "params": [
                {"name": "url", "value": "https://g/x"}, {"name": "revision", "value": "abc"}, {"name": "pathInRepo", "value": "p.yaml"}]},
            "taskRunSpecs": [{"pipelineTaskName": "t", "taskServiceAccountName": "beta"}]}});
        assert_eq!(templates(Kind::PipelineRun, &pr), vec!["git:https://g/x:p.yaml@abc"]);
        assert_eq!(run_as(Kind::PipelineRun, &pr), vec!["default", "beta"]);
        let bundle = |b: &str| json!({"spec": {"taskRef": {"resolver": "bundles", "params": [{"name": "bundle", "value": b}, {"name": "name", "value": "t"}]}}});
        assert_eq!(
            templates(Kind::TaskRun, &bundle("reg:5000/img:1.0")),
            vec!["bundles:reg:5000/img:t@1.0"]
        );
        assert_eq!(
            templates(Kind::TaskRun, &bundle("reg/img@sha256:ab")),
            vec!["bundles:reg/img:t@sha256:ab"]
        );
        let hub = json!({"spec": {"taskRef": {"resolver": "hub", "params": [{"name": "name", "value": "git-clone"}, {"name": "version", "value": "0.9"}]}}});
        assert_eq!(templates(Kind::TaskRun, &hub), vec!["hub:git-clone@0.9"]);
        let ssh = json!({"spec": {"taskRef": {"resolver": "git", "params": [{"name": "url", "value": "git@g:o/r"}, {"name": "pathInRepo", "value": "t.yaml"}]}}});
        assert_eq!(templates(Kind::TaskRun, &ssh), vec!["git:git%40g:o/r:t.yaml"]);
        let inline = json!({"spec": {"pipelineSpec": {"tasks": [{"name": "a", "taskRef": {"name": "ml-a"}}, {"name": "b", "taskSpec": {"steps": []}}]}}});
        assert_eq!(
            templates(Kind::PipelineRun, &inline),
            vec!["ml-a", "inline:pipelineSpec:", "inline:taskSpec:b"]
        );
    }

    /// Finding 6 of the second review: one write that approves (or cancels) and changes the
    /// spec is both actions.
    #[test]
    fn an_approval_or_cancel_carrying_a_change_is_an_update_too() {
        let u = Operation::Update;
        let gate = |phase: &str, sa: &str| {
            json!({"spec": {"serviceAccountName": sa}, "status": {"nodes": {
                "g": {"type": "Suspend", "phase": phase}, "p": {"type": "Pod", "phase": "Succeeded"}}}})
        };
        let parked = gate("Running", "runner");
        assert_eq!(
            actions(Kind::Workflow, u, Some(&parked), &gate("Succeeded", "runner")),
            vec![Action::Approve]
        );
        assert_eq!(
            actions(Kind::Workflow, u, Some(&parked), &gate("Succeeded", "cluster-admin")),
            vec![Action::Approve, Action::Update]
        );
        let mut other_node = gate("Succeeded", "runner");
        other_node["status"]["nodes"]["p"]["phase"] = json!("Failed");
        assert_eq!(
            actions(Kind::Workflow, u, Some(&parked), &other_node),
            vec![Action::Approve, Action::Update],
            "another node's status is not part of the approval"
        );
        let held = json!({"spec": {"suspend": true, "serviceAccountName": "runner"}});
        assert_eq!(
            actions(
                Kind::Workflow,
                u,
                Some(&held),
                &json!({"spec": {"serviceAccountName": "runner"}})
            ),
            vec![Action::Approve]
        );
        assert_eq!(
            actions(
                Kind::Workflow,
                u,
                Some(&held),
                &json!({"spec": {"serviceAccountName": "admin"}})
            ),
            vec![Action::Approve, Action::Update]
        );
        let stopped = json!({"spec": {"shutdown": "Stop", "serviceAccountName": "runner", "suspend": true}});
        assert_eq!(actions(Kind::Workflow, u, Some(&held), &stopped), vec![Action::Cancel]);
        let pending = json!({"spec": {"status": "PipelineRunPending", "pipelineRef": {"name": "a"}}});
        assert_eq!(
            actions(
                Kind::PipelineRun,
                u,
                Some(&pending),
                &json!({"spec": {"pipelineRef": {"name": "a"}}})
            ),
            vec![Action::Approve]
        );
        assert_eq!(
            actions(
                Kind::PipelineRun,
                u,
                Some(&pending),
                &json!({"spec": {"pipelineRef": {"name": "b"}}})
            ),
            vec![Action::Approve, Action::Update]
        );
        assert_eq!(
            actions(Kind::PipelineRun, u, Some(&pending), &pending),
            Vec::<Action>::new()
        );
    }

    #[test]
    fn actions_from_old_and_new() {
        let pending = json!({"spec": {"status": "PipelineRunPending"}});
        let started = json!({"spec": {}});
        let cancelled = json!({"spec": {"status": "Cancelled"}});
        assert_eq!(
            first(Kind::PipelineRun, Operation::Update, Some(&pending), &started),
            Some(Action::Approve)
        );
        assert_eq!(
            first(Kind::PipelineRun, Operation::Update, Some(&started), &cancelled),
            Some(Action::Cancel)
        );
        let susp =
            json!({"spec": {"suspend": true}, "status": {"nodes": {"n1": {"type": "Suspend", "phase": "Running"}}}});
        let resumed = json!({"spec": {}, "status": {"nodes": {"n1": {"type": "Suspend", "phase": "Succeeded"}}}});
        assert_eq!(
            first(Kind::Workflow, Operation::Update, Some(&susp), &resumed),
            Some(Action::Approve)
        );
        let node_only_old =
            json!({"spec": {"x": 1}, "status": {"nodes": {"n1": {"type": "Suspend", "phase": "Running"}}}});
        let node_only_new =
            json!({"spec": {"x": 1}, "status": {"nodes": {"n1": {"type": "Suspend", "phase": "Failed"}}}});
        // A gate marked Failed ends a run that cannot go on past it: Argo's own stop of a node
        // (util.go StopWorkflow) is exactly this write. (Formerly classified as approve.)
        assert_eq!(
            first(Kind::Workflow, Operation::Update, Some(&node_only_old), &node_only_new),
            Some(Action::Cancel)
        );
        let mut continued = node_only_new.clone();
        continued["spec"]["templates"] =
            json!([{"name": "m", "steps": [[{"name": "a", "template": "gate", "continueOn": {"failed": true}}]]}]);
        let mut continued_old = node_only_old.clone();
        continued_old["spec"] = continued["spec"].clone();
        assert_eq!(
            first(Kind::Workflow, Operation::Update, Some(&continued_old), &continued),
            Some(Action::Approve),
            "with continueOn the run goes on past a failed gate"
        );
        for (phase, typ) in [("Skipped", "Suspend"), ("Omitted", "Suspend"), ("Running", "Pod")] {
            let new = json!({"spec": {"x": 1}, "status": {"nodes": {"n1": {"type": typ, "phase": phase}}}});
            assert_eq!(
                first(Kind::Workflow, Operation::Update, Some(&node_only_old), &new),
                Some(Action::Approve),
                "{phase} {typ}"
            );
        }
        let gone = json!({"spec": {"x": 1}, "status": {"nodes": {}}});
        assert_eq!(
            first(Kind::Workflow, Operation::Update, Some(&node_only_old), &gone),
            Some(Action::Approve)
        );
        let tr = json!({"spec": {"taskRef": {"name": "t"}}});
        let tr_cancelled = json!({"spec": {"taskRef": {"name": "t"}, "status": "TaskRunCancelled"}});
        assert_eq!(
            first(Kind::TaskRun, Operation::Update, Some(&tr), &tr_cancelled),
            Some(Action::Cancel)
        );
        let stop = json!({"spec": {"shutdown": "Stop"}});
        assert_eq!(
            first(Kind::Workflow, Operation::Update, Some(&started), &stop),
            Some(Action::Cancel)
        );
        // A person's write of a Workflow's status is theirs to answer for (formerly no action).
        let status_only = json!({"spec": {}, "status": {"phase": "Running"}});
        assert_eq!(
            first(Kind::Workflow, Operation::Update, Some(&started), &status_only),
            Some(Action::Update)
        );
        assert_eq!(
            first(Kind::Workflow, Operation::Update, Some(&status_only), &status_only),
            None
        );
        assert_eq!(
            first(
                Kind::Workflow,
                Operation::Update,
                Some(&started),
                &json!({"spec": {"x": 2}})
            ),
            Some(Action::Update)
        );
        assert_eq!(
            first(Kind::Workflow, Operation::Create, None, &started),
            Some(Action::Submit)
        );
        assert_eq!(detect("tekton.dev", "v1beta1", "TaskRun"), Some(Kind::TaskRun));
        assert_eq!(detect("", "v1", "Pod"), None);
    }
}
