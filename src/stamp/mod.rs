//! The stamp: `scimgate.io/*` annotations and labels naming the verified person behind a run and
//! an action on it, with an attestation — a compact JWS (EdDSA) over them plus the request's
//! binding (requester, action, kind, namespace, name or `generateName`, issued-at, a random stamp
//! id, policy digest).
//!
//! - [`vocabulary`]: the one table action → annotation prefix → attestation field;
//! - [`claims`]: what an attestation says and the rules binding it to a request (never to
//!   `request.uid`: kube-apiserver makes a new one for every webhook call);
//! - [`keys`]: signing and verification keys, JWKS;
//! - [`object`]: reading and verifying the stamps on an object;
//! - [`offboard`]: offboarding's stamp, scimgate's own (no person's action);
//! - [`patch`]: the JSON Patch operations;
//! - [`make`] (here): a new stamp for one decision.
//!
//! Does not decide anything: the admission module says who, what and under which rule.

pub mod claims;
pub mod digest;
pub mod keys;
pub mod object;
pub mod offboard;
pub mod patch;
pub mod vocabulary;

pub use claims::{Binding, Claims, Mismatch};
pub use keys::{Error, Result, Signer, Verifier};
pub use vocabulary::{Entry, PREFIX};

use crate::policy::{Action, Kind, OnBehalfOf, Requester};
use serde_json::{json, Map, Value};

/// Everything a new stamp says.
#[derive(Debug, Clone)]
pub struct NewStamp<'a> {
    pub action: Action,
    pub kind: Kind,
    pub namespace: &'a str,
    pub name: &'a str,
    pub generate_name: &'a str,
    /// Who asked: the person's SCIM id, or the service account's username.
    pub requester: &'a str,
    /// The person, agent or service account the stamp names.
    pub who: &'a Requester,
    /// An agent's action: the person whose rights carried it.
    pub on_behalf_of: Option<&'a OnBehalfOf>,
    /// Who last changed what the run executes, as (SCIM id, name), when not `who`.
    pub author: Option<(&'a str, &'a str)>,
    /// A run a controller started for an owner: the owner's submitter's name, when the run is
    /// judged as someone else (the owner's spec was changed since).
    pub owner_submitter: Option<&'a str>,
    /// `allow:<rule>` or `dry-run-deny:<rule>`.
    pub decision: String,
    pub policy: &'a str,
    /// What the run executes (`admission::pipeline_run::runs_digest`).
    pub digest: &'a str,
    /// Whether the caller proved to be the API server.
    pub authenticated: bool,
    pub now: chrono::DateTime<chrono::Utc>,
}

/// New stamps: the patch that puts them on the object, and each one's id by action.
#[derive(Debug, Clone, PartialEq)]
pub struct Made {
    pub ops: Vec<Value>,
    pub sids: Vec<(Action, String)>,
}

/// (SCIM id, display name) of a requester as a stamp writes it.
fn named(r: &Requester) -> (String, String) {
    match r {
        Requester::Person { id, user_name, .. } => (id.clone(), user_name.clone()),
        Requester::Agent { id, name, .. } => (id.clone(), name.clone()),
        sa @ Requester::ServiceAccount { .. } => (String::new(), sa.display()),
    }
}

/// Stamp `obj` for one decision, one stamp per action it took. A submit stamp replaces every
/// `scimgate.io/*` key the object arrived with; a later action's stamp keeps the stored object's
/// (`old`) stamps as they were and adds its own, so every earlier stamp stays verifiable. A
/// CronWorkflow's submit stamp also goes into `spec.workflowMetadata`, which Argo copies onto
/// every Workflow it starts.
pub fn make(signer: &Signer, obj: &Value, old: Option<&Value>, stamps: &[NewStamp<'_>]) -> Made {
    let submit = stamps.iter().find(|s| s.action == Action::Submit);
    let keep = |field: &str| match (submit, old) {
        (Some(_), _) | (_, None) => Map::new(),
        (None, Some(old)) => object::ours(old, field),
    };
    let mut want_ann = keep("annotations");
    let mut want_labels = keep("labels");
    let mut sids = Vec::new();
    for s in stamps {
        let Some(entry) = Entry::of(s.action) else { continue };
        let (mut c, labels) = claims(entry, s);
        let claims_json = serde_json::to_value(&c).unwrap_or(Value::Null);
        // An earlier stamp of the same action is replaced whole: none of its keys outlives it.
        want_ann.retain(|k, _| !entry.owns(k));
        want_ann.extend(std::mem::take(&mut c.stamp));
        want_labels.extend(labels);
        want_ann.insert(entry.attestation_key(), json!(signer.sign(claims_json)));
        sids.push((s.action, c.sid));
    }
    let mut ops = patch::patch_map(obj, "annotations", &want_ann);
    ops.extend(patch::patch_map(obj, "labels", &want_labels));
    if let Some(s) = submit {
        // Metadata Argo copies into runs carries no stamp but a CronWorkflow's own.
        for path in copied_metadata(s.kind) {
            let own = s.kind == Kind::CronWorkflow && *path == WORKFLOW_METADATA;
            let empty = Map::new();
            let (a, l) = if own {
                (&want_ann, &want_labels)
            } else {
                (&empty, &empty)
            };
            ops.extend(set_copied(obj, path, a, l));
        }
    }
    Made { ops, sids }
}

/// The claims of one new stamp (its annotations in `stamp`), and the labels it sets.
fn claims(entry: &Entry, s: &NewStamp<'_>) -> (Claims, Map<String, Value>) {
    let (user_id, user_name) = named(s.who);
    let groups = s.who.groups().join(",");
    let (author, author_name) = s
        .author
        .map(|(id, name)| (id.to_string(), name.to_string()))
        .unwrap_or_else(|| (user_id.clone(), user_name.clone()));
    let mut stamp_ann = Map::new();
    stamp_ann.insert(entry.by_key(), json!(user_name));
    if !user_id.is_empty() {
        stamp_ann.insert(entry.by_id_key(), json!(user_id));
    }
    if let Some(p) = s.on_behalf_of {
        stamp_ann.insert(entry.on_behalf_of_key(), json!(p.user_name));
    }
    if s.action == Action::Submit {
        stamp_ann.insert(vocabulary::SUBMITTED_GROUPS.into(), json!(groups));
        if let Some(owner) = s.owner_submitter {
            stamp_ann.insert(vocabulary::OWNER_SUBMITTED_BY.into(), json!(owner));
        }
    }
    stamp_ann.insert(
        entry.at_key(),
        json!(s.now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)),
    );
    stamp_ann.insert(entry.decision_key(), json!(s.decision));
    let mut labels = Map::new();
    if s.action == Action::Submit {
        if !user_id.is_empty() {
            labels.insert(vocabulary::LABEL_BY_ID.into(), json!(patch::label_safe(&user_id)));
        }
        labels.insert(vocabulary::LABEL_BY.into(), json!(patch::label_safe(&user_name)));
    }
    let (object_name, generate_name) = claims::name_claims(s.name, s.generate_name);
    let c = Claims {
        iss: "scimgate".into(),
        sid: uuid::Uuid::new_v4().to_string(),
        iat: s.now.timestamp(),
        sub: user_id,
        name: user_name,
        requester: s.requester.to_string(),
        action: s.action.as_str().into(),
        kind: s.kind.as_str().into(),
        namespace: s.namespace.into(),
        object_name,
        generate_name,
        policy: s.policy.into(),
        stamp: stamp_ann,
        labels: labels.clone(),
        digest: s.digest.to_string(),
        author,
        author_name,
        authenticated: Some(s.authenticated),
        on_behalf_of: s.on_behalf_of.map(|p| p.id.clone()).unwrap_or_default(),
        on_behalf_of_name: s.on_behalf_of.map(|p| p.user_name.clone()).unwrap_or_default(),
    };
    (c, labels)
}

/// `spec.workflowMetadata`: what Argo copies onto every Workflow it starts from a CronWorkflow
/// (argo-workflows `workflow/common/convert.go` `toWorkflow`) and onto a Workflow at its first
/// reconcile from its own spec or its template (`workflow/controller/operator.go`
/// `updateWorkflowMetadata`).
pub const WORKFLOW_METADATA: &[&str] = &["spec", "workflowMetadata"];
const WORKFLOW_SPEC_METADATA: &[&str] = &["spec", "workflowSpec", "workflowMetadata"];

/// Where an object of `kind` holds metadata that Argo copies into runs. A stamp there would be
/// inherited, so only scimgate may put one there (a CronWorkflow's own submit stamp).
pub fn copied_metadata(kind: Kind) -> &'static [&'static [&'static str]] {
    match kind {
        Kind::CronWorkflow => &[WORKFLOW_METADATA, WORKFLOW_SPEC_METADATA],
        Kind::Workflow | Kind::WorkflowTemplate | Kind::ClusterWorkflowTemplate => &[WORKFLOW_METADATA],
        Kind::PipelineRun | Kind::TaskRun => &[],
    }
}

/// The metadata object at `path`, if there is one.
pub fn at<'a>(obj: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(obj, |v, k| v.get(k)).filter(|v| !v.is_null())
}

/// Operations that make our keys in the copied metadata at `path` equal `annotations`/`labels`.
fn set_copied(obj: &Value, path: &[&str], annotations: &Map<String, Value>, labels: &Map<String, Value>) -> Vec<Value> {
    let pointer = format!("/{}", path.join("/"));
    let Some(meta) = at(obj, path) else {
        if annotations.is_empty() && labels.is_empty() {
            return Vec::new();
        }
        // Only spec.workflowMetadata is ever added, and spec exists on every run kind's object.
        return vec![json!({"op": "add", "path": pointer, "value": {"annotations": annotations, "labels": labels}})];
    };
    let as_object = json!({"metadata": {"annotations": meta.get("annotations"), "labels": meta.get("labels")}});
    patch::patch_map(&as_object, "annotations", annotations)
        .into_iter()
        .chain(patch::patch_map(&as_object, "labels", labels))
        .map(|mut op| {
            if let Some(p) = op
                .get("path")
                .and_then(Value::as_str)
                .map(|p| p.replacen("/metadata", &pointer, 1))
            {
                op["path"] = json!(p);
            }
            op
        })
        .collect()
}

/// Operations that remove every `scimgate.io/*` annotation and label, also from the metadata Argo
/// copies into runs (a CREATE nobody may stamp).
pub fn strip(obj: &Value, kind: Kind) -> Vec<Value> {
    let mut ops = patch::patch_map(obj, "annotations", &Map::new());
    ops.extend(patch::patch_map(obj, "labels", &Map::new()));
    for path in copied_metadata(kind) {
        ops.extend(set_copied(obj, path, &Map::new(), &Map::new()));
    }
    ops
}

/// Operations that put our keys back as the stored object had them (a write that is no action of
/// a person may not change them).
pub fn restore(obj: &Value, old: &Value) -> Vec<Value> {
    let mut ops = patch::patch_map(obj, "annotations", &object::ours(old, "annotations"));
    ops.extend(patch::patch_map(obj, "labels", &object::ours(old, "labels")));
    ops
}
