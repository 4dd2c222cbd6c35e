//! The admission webhooks: `POST /mutate` and `POST /validate` for Argo Workflows and Tekton.
//! Decodes the AdmissionReview, works out kind and actions, resolves the requester through
//! `identity`, asks `policy`, and answers — with the stamp as a JSON Patch on `/mutate`.
//! [`decide_traced`] reads as the stages of a decision (`stages`), each drawing on its own module:
//! what the request is about ([`Subject`]), who asked (`asker`), what of ours it brings and the
//! stamps (`attestations`), what the run executes (`pipeline_run`, `tekton_child`), the verdict
//! (`verdict`), the answer. Holds no policy logic of its
//! own; never logs object bodies.

pub mod argo;
pub mod argo_nodes;
mod asker;
mod attestations;
pub mod codec;
mod delete;
pub mod go_json;
mod own_write;
pub mod pipeline_run;
pub mod pod_spec_patch;
pub mod routes;
mod stages;
mod tekton_child;
mod verdict;

use crate::cluster::argo_defaults::{ArgoDefaults, Defaults};
use crate::cluster::owners::{self, Owners};
use crate::directory::Snapshot;
use crate::policy::{self, Action, Kind, Outcome, Policy};
use crate::stamp::{object, Binding, Signer, Verifier};
use arc_swap::ArcSwap;
use asker::Asker;
use codec::{Answer, Operation, Request};
use serde_json::{json, Map, Value};
use stages::{Deciding, Stage};
use std::sync::Arc;

/// What deciding needs: the identity snapshot, the policy, and the stamp keys. No I/O.
#[derive(Clone)]
pub struct Decider {
    pub directory: Arc<ArcSwap<Snapshot>>,
    pub policy: Arc<ArcSwap<Policy>>,
    pub signer: Arc<Signer>,
    pub verifier: Verifier,
    /// How current `directory` is (always current with the embedded store).
    pub freshness: Arc<crate::freshness::Freshness>,
    /// Seconds a stamp counts as made for the request at hand (`stampMaxAgeSeconds`).
    pub stamp_max_age: i64,
    /// Argo's `workflowDefaults`, which change what a Workflow runs as.
    pub argo_defaults: ArgoDefaults,
}

#[derive(Clone)]
pub struct AdmissionState {
    pub decider: Decider,
    /// The stored owners of controller-created runs (a watch cache of the owner kinds).
    pub owners: Owners,
    pub metrics: crate::metrics::Metrics,
    pub recorder: crate::audit::recorder::Recorder,
}

/// Which webhook is asking.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hook {
    Mutate,
    Validate,
}

/// What a decision was about, for the decision record; filled in as `decide` learns it.
#[derive(Debug, Clone, Default)]
pub struct DecisionDraft {
    pub action: Option<Action>,
    /// An action of scimgate's own, no person's (`offboard`): recorded in place of `action`.
    pub own_action: Option<&'static str>,
    pub kind: String,
    pub namespace: String,
    pub name: String,
    pub user_id: Option<String>,
    pub groups: Vec<String>,
    pub rule: Option<String>,
    pub outcome: Option<Outcome>,
    pub dry_run_mode: bool,
    pub reason: String,
    pub decision_id: String,
    pub run_as: Vec<String>,
    pub templates: Vec<String>,
    pub submitter_id: Option<String>,
    /// An agent's request: the person whose rights carried each action.
    pub on_behalf_of: Vec<(Action, crate::policy::OnBehalfOf)>,
    /// An agent's request that no one's rights carried: the first active owner it would have
    /// acted for (the record's on-behalf-of, so a denial shows in their audit too).
    pub acting_for: Option<String>,
    pub policy: String,
    /// The id of the stamp this request carries for its action (the validating call's view).
    pub stamp_id: Option<String>,
    /// Whether the caller proved to be the API server (set by the listener before deciding).
    pub authenticated: bool,
    /// The other actions the request contains besides `action` (an approval that also changes
    /// the spec): each is recorded too.
    pub also: Vec<AlsoAction>,
}

impl DecisionDraft {
    /// Whose rights carried an agent's `action`.
    pub fn carried_by(&self, action: Action) -> Option<&crate::policy::OnBehalfOf> {
        self.on_behalf_of.iter().find(|(a, _)| *a == action).map(|(_, by)| by)
    }
}

/// A further action of one request, for its own decision record.
#[derive(Debug, Clone)]
pub struct AlsoAction {
    pub action: Action,
    pub decision_id: String,
    pub rule: Option<String>,
    pub stamp_id: Option<String>,
}

/// What the cluster said of a controller-created child's owner, looked up before deciding
/// (`owner_lookup`); `None` when nobody looked (offline evaluation).
pub type OwnerLookup = Option<owners::Result<owners::Found>>;

/// An owner a person's update adds to an object's `ownerReferences`, and what the cluster said of
/// it (`adoption_lookup`): when it is gone — or goes — the garbage collector deletes the object,
/// with no webhook call.
#[derive(Debug, Clone)]
pub struct Adoption {
    /// `Kind namespace/name` as the reference names it.
    pub owner: String,
    /// The stored owner, when it is of a kind scimgate watches and exists with that uid.
    pub found: Result<owners::Found, String>,
}

/// What deciding needed to read from the cluster first.
#[derive(Debug, Clone, Default)]
pub struct Lookups {
    pub owner: OwnerLookup,
    pub adoptions: Vec<Adoption>,
    /// Argo's `workflowDefaults`, for a Workflow or CronWorkflow; `None`: not looked at.
    pub argo_defaults: Option<Arc<Defaults>>,
}

/// Decide one request, offline: nothing is looked up in a cluster.
pub fn decide(st: &Decider, req: &Request, hook: Hook) -> Answer {
    decide_traced(st, req, &Lookups::default(), hook, &mut DecisionDraft::default())
}

/// The child kind, when `req` is an `ownerStamp` delegate creating a run for an owner: then the
/// decision needs the owner as the cluster stores it.
pub fn owner_needed(st: &Decider, req: &Request) -> Option<Kind> {
    let kind = pipeline_run::detect(&req.group, &req.version, &req.kind)?;
    let policy = st.policy.load();
    let delegate = policy.delegate_for(&req.user.username)?;
    (req.operation == Operation::Create && delegate.via == policy::Via::OwnerStamp).then_some(kind)
}

/// Everything deciding `req` needs from the cluster: the owner of a child a controller creates,
/// the owners a person's update adds.
pub async fn lookups(st: &Decider, owners: &Owners, req: &Request) -> Lookups {
    Lookups {
        owner: owner_lookup(st, owners, req).await,
        adoptions: adoption_lookup(st, owners, req).await,
        argo_defaults: argo_defaults_lookup(st, req).await,
    }
}

/// Argo's `workflowDefaults` for a Workflow or CronWorkflow — after their first read since start
/// (waited for a moment, so the first runs are not judged without them).
async fn argo_defaults_lookup(st: &Decider, req: &Request) -> Option<Arc<Defaults>> {
    let kind = pipeline_run::detect(&req.group, &req.version, &req.kind)?;
    if !matches!(kind, Kind::Workflow | Kind::CronWorkflow) {
        return None;
    }
    st.argo_defaults.settled(std::time::Duration::from_secs(2)).await;
    Some(st.argo_defaults.get())
}

/// The ownerReferences a person's UPDATE adds (by uid), each looked up where scimgate can: a
/// CronWorkflow or PipelineRun through the watch cache; any other kind cannot be told and counts
/// as not theirs.
pub async fn adoption_lookup(st: &Decider, owners: &Owners, req: &Request) -> Vec<Adoption> {
    let (Some(obj), Some(old)) = (&req.object, &req.old_object) else {
        return Vec::new();
    };
    if req.operation != Operation::Update || st.policy.load().delegate_for(&req.user.username).is_some() {
        return Vec::new();
    }
    let refs = |o: &Value| -> Vec<Value> {
        o.pointer("/metadata/ownerReferences")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    };
    let uid = |r: &Value| r.get("uid").and_then(Value::as_str).unwrap_or_default().to_string();
    let before: std::collections::HashSet<String> = refs(old).iter().map(uid).collect();
    let namespace = obj
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let mut out = Vec::new();
    // At most a handful are ever added; more is itself suspicious, so each beyond a few is judged
    // without a lookup (as not theirs).
    for (i, r) in refs(obj).into_iter().filter(|r| !before.contains(&uid(r))).enumerate() {
        let text = |k: &str| r.get(k).and_then(Value::as_str).unwrap_or_default();
        let owner = format!("{} {namespace}/{}", text("kind"), text("name"));
        let found = match owners::Owners::watched(text("apiVersion"), text("kind")) {
            Some(kind) if i < 4 => owners
                .stored(kind, namespace, text("name"), text("uid"))
                .await
                .map_err(|e| e.to_string()),
            Some(_) => Err("too many owners added at once to look each up".into()),
            None => Err(format!(
                "scimgate cannot tell whose a {} ({}) is",
                text("kind"),
                text("apiVersion")
            )),
        };
        out.push(Adoption { owner, found });
    }
    out
}

/// Look up the owner of the child `req` creates, when the decision needs it.
pub async fn owner_lookup(st: &Decider, owners: &Owners, req: &Request) -> OwnerLookup {
    let child = owner_needed(st, req)?;
    let obj = req.object.as_ref()?;
    let namespace = if req.namespace.is_empty() {
        obj.pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .unwrap_or_default()
    } else {
        req.namespace.as_str()
    };
    Some(owners.owner_of(child, namespace, obj).await)
}

/// What one request is about: its object, the names a stamp binds, and the labels identity
/// reads.
pub struct Subject<'r> {
    pub req: &'r Request,
    pub kind: Kind,
    pub obj: &'r Value,
    pub name: &'r str,
    pub generate_name: &'r str,
    pub namespace: &'r str,
    pub labels: Option<&'r Map<String, Value>>,
    /// `Some` on UPDATE: the stored object's labels.
    pub old_labels: Option<Option<&'r Map<String, Value>>>,
}

impl<'r> Subject<'r> {
    /// The object of a CREATE or UPDATE, or why there is none to judge (the message of a
    /// well-formed denial).
    fn read(req: &'r Request, kind: Kind) -> Result<Subject<'r>, String> {
        let Some(obj) = &req.object else {
            return Err("scimgate: the request carries no object".into());
        };
        let Some(meta) = obj.get("metadata").and_then(Value::as_object) else {
            return Err("scimgate: the object has no metadata".into());
        };
        let text = |k: &str| meta.get(k).and_then(Value::as_str).unwrap_or_default();
        let (name, generate_name) = (text("name"), text("generateName"));
        if kind != Kind::ClusterWorkflowTemplate
            && name.is_empty()
            && generate_name.is_empty()
            && req.operation == Operation::Create
        {
            return Err(format!(
                "scimgate: the {} has neither metadata.name nor metadata.generateName",
                kind.as_str()
            ));
        }
        Ok(Subject {
            req,
            kind,
            obj,
            name,
            generate_name,
            namespace: if req.namespace.is_empty() {
                text("namespace")
            } else {
                req.namespace.as_str()
            },
            labels: meta.get("labels").and_then(Value::as_object),
            old_labels: req.old_object.as_ref().map(|o| object::metadata_map(o, "labels")),
        })
    }

    /// What a stamp of `action` by `asker` binds.
    fn binding<'a>(&'a self, asker: &'a Asker, action: Action) -> Binding<'a> {
        Binding {
            requester: &asker.requester,
            sub: &asker.sub,
            action,
            kind: self.kind,
            namespace: self.namespace,
            name: self.name,
            generate_name: self.generate_name,
        }
    }
}

/// Decide one request, noting what the decision was about in `t`. `lookups` is what the cluster
/// said first (the owner of a controller-created run, owners a person adds, Argo's defaults).
pub fn decide_traced(st: &Decider, req: &Request, lookups: &Lookups, hook: Hook, t: &mut DecisionDraft) -> Answer {
    match decide_in_stages(st, req, lookups, hook, t) {
        Ok(answer) => answer,
        Err(settled) => *settled,
    }
}

/// The stages of a decision, in order (`stages`); a stage that settles the request ends it.
fn decide_in_stages(
    st: &Decider,
    req: &Request,
    lookups: &Lookups,
    hook: Hook,
    t: &mut DecisionDraft,
) -> Stage<Answer> {
    let Some(kind) = pipeline_run::detect(&req.group, &req.version, &req.kind) else {
        return Ok(Answer::allow());
    };
    match (req.operation, hook) {
        // Deletes are judged (and recorded) once, by the deletes webhook's validating call.
        (Operation::Delete, Hook::Validate) => return Ok(delete::decide(st, req, kind, t)),
        (Operation::Delete | Operation::Connect, _) => return Ok(Answer::allow()),
        _ => {}
    }
    let d = Deciding::begin(st, req, lookups, hook, kind, t)?;
    d.own_write(t)?;
    let who = d.who_asked(t)?;
    let brought = d.stamps_brought(&who, t)?;
    if who.does_nothing_to_decide() {
        return Ok(d.unchanged());
    }
    t.action = Some(who.action());
    let uncovered = d.what_runs(&who, t)?;
    let judged = d.verdict(&who, uncovered, t);
    let (answer, decisions) = d.answer(&who, judged, t)?;
    Ok(d.stamps(answer, &who, &brought, &decisions, t))
}

/// The draft's basics, known before anything is judged.
fn begin(t: &mut DecisionDraft, subject: &Subject<'_>, policy: &Policy) {
    t.kind = subject.kind.as_str().to_string();
    t.namespace = subject.namespace.to_string();
    t.name = if subject.name.is_empty() {
        subject.generate_name
    } else {
        subject.name
    }
    .to_string();
    t.decision_id = uuid::Uuid::now_v7().to_string();
    t.dry_run_mode = policy.dry_run_in(subject.namespace);
    t.policy = policy.digest.clone();
}

/// The further actions of the request, each with a decision id of its own.
fn note_also(t: &mut DecisionDraft, decisions: &[(Action, String)]) {
    t.also = decisions
        .iter()
        .skip(1)
        .map(|(a, d)| AlsoAction {
            action: *a,
            decision_id: uuid::Uuid::now_v7().to_string(),
            rule: d.split_once(':').map(|(_, r)| r.to_string()).filter(|r| !r.is_empty()),
            stamp_id: None,
        })
        .collect();
}

/// The stamp ids per action, onto the draft and its further actions.
fn note_stamps(t: &mut DecisionDraft, ids: impl IntoIterator<Item = (Action, String)>) {
    for (a, sid) in ids {
        if t.action == Some(a) {
            t.stamp_id = Some(sid);
        } else if let Some(also) = t.also.iter_mut().find(|x| x.action == a) {
            also.stamp_id = Some(sid);
        }
    }
}

/// A refusal that needs no verdict (a forged stamp, an edited identity label): denied in every
/// mode, recorded with `reason`.
fn deny_unjudged(t: &mut DecisionDraft, reason: String, message: String) -> Answer {
    t.outcome = Some(Outcome::Denied);
    t.reason = reason;
    let mut a = Answer::deny(message);
    let id = t.decision_id.clone();
    audit_annotations(&mut a, "deny", &id, t);
    a
}

/// The refusal of `action` because of `why`, noted in `t` (which knows the namespace and the
/// decision id by now). A delegate's request names the person it was judged as.
fn refuse(req: &Request, asker: &Asker, kind: Kind, action: Action, why: &str, t: &mut DecisionDraft) -> Answer {
    t.outcome = Some(Outcome::Denied);
    t.reason = why.to_string();
    let who = match &asker.person {
        Ok(p) if req.user.username.starts_with("system:serviceaccount:") && p.display() != req.user.username => {
            format!("{} (for {})", req.user.username, p.display())
        }
        _ => req.user.username.clone(),
    };
    let mut a = Answer::deny(format!(
        "scimgate: {who} may not {} {} in {}: {why}; decision {}",
        action.as_str(),
        kind.as_str(),
        t.namespace,
        t.decision_id
    ));
    let id = t.decision_id.clone();
    audit_annotations(&mut a, "deny", &id, t);
    a
}

fn patched(mut a: Answer, ops: Vec<Value>) -> Answer {
    a.patch = ops;
    a
}

/// Audit annotations: the API server prefixes each key with the webhook's name, so keys are
/// bare names (`<webhook>/decision`).
fn audit_annotations(a: &mut Answer, decision: &str, id: &str, t: &DecisionDraft) {
    a.audit.insert("decision".into(), json!(decision));
    a.audit.insert("decision-id".into(), json!(id));
    if let Some(rule) = &t.rule {
        a.audit.insert("rule".into(), json!(rule));
    }
    if let Some(user) = &t.user_id {
        a.audit.insert("user-id".into(), json!(user));
    }
}

/// ≤ 120 characters, as the API server shows warnings to the person.
fn short_warning(why: &str) -> String {
    short_warning_text(&format!("scimgate dry-run: would deny: {why}"))
}

/// `w` cut to 120 characters.
fn short_warning_text(w: &str) -> String {
    let mut w = w.to_string();
    if w.len() > 120 {
        let mut cut = 117;
        while !w.is_char_boundary(cut) {
            cut -= 1;
        }
        w.truncate(cut);
        w.push_str("...");
    }
    w
}
