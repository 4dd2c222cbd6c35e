//! The admission webhooks: `POST /mutate` and `POST /validate` for Argo Workflows and Tekton.
//! Decodes the AdmissionReview, works out kind and actions, resolves the requester through
//! `identity`, asks `policy`, and answers — with the stamp as a JSON Patch on `/mutate`.
//! [`decide_traced`] reads as the stages of a decision, each in its own module: what the request
//! is about ([`Subject`]), who asked (`asker`), what the run executes (`pipeline_run`), the
//! verdict (`verdict`), the stamps (`attestations`), the answer. Holds no policy logic of its
//! own; never logs object bodies.

pub mod argo;
pub mod argo_nodes;
mod asker;
mod attestations;
pub mod codec;
mod delete;
pub mod go_json;
pub mod pipeline_run;
pub mod pod_spec_patch;
pub mod routes;
mod tekton_child;
mod verdict;

use crate::cluster::argo_defaults::{ArgoDefaults, Defaults};
use crate::cluster::owners::{self, Owners};
use crate::directory::Snapshot;
use crate::policy::{self, Action, Kind, Outcome, Policy, Requester};
use crate::stamp::{self, object, Binding, Entry, Signer, Verifier};
use arc_swap::ArcSwap;
use asker::Asker;
use codec::{Answer, Operation, Request};
use serde_json::{json, Map, Value};
use std::sync::Arc;
use verdict::Verdict;

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
    pub policy: String,
    /// The id of the stamp this request carries for its action (the validating call's view).
    pub stamp_id: Option<String>,
    /// Whether the caller proved to be the API server (set by the listener before deciding).
    pub authenticated: bool,
    /// The other actions the request contains besides `action` (an approval that also changes
    /// the spec): each is recorded too.
    pub also: Vec<AlsoAction>,
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

/// Decide one request, noting what the decision was about in `t`. `owner` is what the cluster
/// said of the owner of a run an `ownerStamp` delegate creates (`owner_lookup`).
pub fn decide_traced(st: &Decider, req: &Request, lookups: &Lookups, hook: Hook, t: &mut DecisionDraft) -> Answer {
    let Some(kind) = pipeline_run::detect(&req.group, &req.version, &req.kind) else {
        return Answer::allow();
    };
    match (req.operation, hook) {
        // Deletes are judged (and recorded) once, by the deletes webhook's validating call.
        (Operation::Delete, Hook::Validate) => return delete::decide(st, req, kind, t),
        (Operation::Delete | Operation::Connect, _) => return Answer::allow(),
        _ => {}
    }
    // What the request is about, and under which policy and directory.
    let subject = match Subject::read(req, kind) {
        Ok(s) => s,
        Err(why) => return Answer::deny(why),
    };
    let policy = st.policy.load();
    let snap = st.directory.load();
    let now = chrono::Utc::now();
    begin(t, &subject, &policy);
    let mut actions = pipeline_run::actions(kind, req.operation, req.old_object.as_ref(), subject.obj);

    // Who asked; Argo's identity labels are nobody else's to edit.
    let asker = asker::identify(&st.verifier, &snap, &policy, &subject, &lookups.owner);
    // An owner added that is gone, or not theirs: the garbage collector deletes the object when
    // it goes, with no webhook call — so the change is a delete too, judged now.
    let adopted = asker::adopts_against(&st.verifier, &asker, &lookups.adoptions);
    if let Some(why) = &adopted {
        actions.push(Action::Delete);
        t.reason = why.clone();
    }
    if let Some(k) = asker::edited_identity_label(&policy, &snap, &subject, &asker) {
        t.action = Some(asker::recorded_action(&actions));
        return deny_unjudged(t, format!("the label {k} was changed"), format!(
            "scimgate: {} may not change the label {k}: Argo's identity labels say who created and who acted on a run, and only the Argo Server writes them; decision {}",
            req.user.username, t.decision_id
        ));
    }

    // What of ours the request brings: bound to it, or refused (in every mode: dry-run is about
    // policy, not forgery).
    let binding = |a: Action| subject.binding(&asker, a);
    let fresh = attestations::fresh(
        &st.verifier,
        st.stamp_max_age,
        &subject,
        &actions,
        &binding,
        now.timestamp(),
    )
    .and_then(|f| attestations::check_copied(kind, subject.obj, req.old_object.as_ref()).map(|()| f));
    let fresh = match (fresh, hook) {
        (Ok(f), _) => f,
        (Err(why), Hook::Validate) => {
            t.action = Some(asker::recorded_action(&actions));
            return deny_unjudged(t, why.clone(), format!("scimgate: {why}; decision {}", t.decision_id));
        }
        (Err(_), Hook::Mutate) => Vec::new(),
    };

    // No action of a person (status writes, metadata edits, a controller driving its own runs):
    // nothing to decide, and our keys stay as the stored object has them.
    if actions.is_empty() || asker.controller_update {
        return match (hook, &req.old_object) {
            (Hook::Mutate, Some(old)) => patched(Answer::allow(), stamp::restore(subject.obj, old)),
            _ => Answer::allow(),
        };
    }
    let action = actions[0];
    t.action = Some(action);

    // What the run executes, read as its controller reads it; what cannot be read so is refused
    // in every mode (it is a way around the policy, not a policy question).
    let with_defaults = match lookups.argo_defaults.as_deref() {
        Some(Defaults::Known(Some(d))) => pipeline_run::with_workflow_defaults(kind, subject.obj, d),
        _ => None,
    };
    let mut runs = match pipeline_run::runs_since(
        kind,
        with_defaults.as_ref().unwrap_or(subject.obj),
        req.old_object.as_ref(),
    ) {
        Ok(runs) => runs,
        Err(why) => return refuse(req, &asker, kind, action, &why.to_string(), t),
    };
    if let Some(Defaults::Unknown(why)) = lookups.argo_defaults.as_deref() {
        // Whatever account they set is unknown: one only `*` matches.
        runs.run_as
            .push(format!("whatever Argo's workflowDefaults set ({why})"));
    }
    // A child Tekton's controller creates for an admitted PipelineRun is judged as the parent was
    // when it is what the parent covered; otherwise on its own, saying why.
    let mut uncovered = None;
    if let Some(Ok(owner)) = &lookups.owner {
        if owner.kind == Kind::PipelineRun {
            match tekton_child::covered(kind, subject.obj, &owner.object) {
                Ok(parent) => runs = parent,
                Err(why) => uncovered = Some(why),
            }
        }
    }
    t.run_as = runs.run_as;
    t.templates = runs.templates;
    let digest = pipeline_run::runs_digest(kind, subject.obj);

    // The verdict.
    if let Some((id, groups)) = verdict::person_of(&asker) {
        t.user_id = Some(id.to_string());
        t.groups = groups.to_vec();
    }
    t.submitter_id = req
        .old_object
        .as_ref()
        .and_then(|old| object::verified(&st.verifier, old, Entry::SUBMIT))
        .and_then(Result::ok)
        .map(|c| c.sub)
        .filter(|s| !s.is_empty());
    let stale_age = st.freshness.stale_age();
    let fail_closed = stale_age
        .filter(|_| st.freshness.when_stale == crate::config::WhenStale::Deny)
        .map(|age| st.freshness.describe_stale(age));
    let run = verdict::Run {
        kind,
        namespace: subject.namespace,
        run_as: &t.run_as,
        templates: &t.templates,
        submitter_id: t.submitter_id.clone(),
    };
    let verdict = verdict::judge(&policy, &asker, &actions, &run, fail_closed);

    // The answer.
    let dry = t.dry_run_mode;
    let (mut answer, decisions) = match verdict {
        Verdict::Allowed { decisions, rule } => {
            t.outcome = Some(Outcome::Allowed);
            t.rule = Some(rule);
            if let Some(note) = &asker.offboarded_note {
                t.reason = note.clone();
            }
            let mut a = Answer::allow();
            if let Some(age) = stale_age {
                a.warnings.push(short_warning_text(&format!(
                    "scimgate: {}",
                    st.freshness.describe_stale(age)
                )));
            }
            audit_annotations(&mut a, "allow", &t.decision_id, t);
            (a, decisions)
        }
        Verdict::Refused {
            action: refused,
            why,
            rule,
            decisions,
        } => {
            t.rule = rule;
            let why = match (&adopted, refused, &uncovered) {
                (Some(a), Action::Delete, _) => format!("{a}, so it is judged as a delete: {why}"),
                (_, _, Some(u)) => format!("{why} (judged on its own: {u})"),
                _ => why,
            };
            if !dry {
                return refuse(req, &asker, kind, refused, &why, t);
            }
            t.outcome = Some(Outcome::DryRunDenied);
            t.reason = why.clone();
            let mut a = Answer::allow();
            a.warnings.push(short_warning(&why));
            audit_annotations(&mut a, "dry-run-deny", &t.decision_id, t);
            (a, decisions)
        }
    };
    note_also(t, &decisions);
    // kube-apiserver keeps only the status of a status write and drops whatever a webhook changed
    // in the metadata (apiextensions-apiserver `status_strategy.go` `PrepareForUpdate`): no stamp
    // can stand there, so none is made (below); the decision record is this write's trace, and
    // `audit who` lists it by the object.
    if req.sub_resource == "status" && t.reason.is_empty() {
        t.reason = "a write of the status subresource, which keeps no stamp".into();
    }

    // The stamps: the validating call checks that the ones it sees were made for this decision
    // and this spec; the mutating call keeps them when they were (a re-invocation), and makes
    // them otherwise.
    if hook == Hook::Validate {
        if let Some(why) = fresh
            .iter()
            .find_map(|f| attestations::mismatch(f, &decisions, &digest))
        {
            return deny_unjudged(t, why.clone(), format!("scimgate: {why}; decision {}", t.decision_id));
        }
        note_stamps(t, fresh.iter().map(|f| (f.entry.action, f.claims.sid.clone())));
        return answer;
    }
    if let Some(ids) = attestations::in_place(&fresh, &decisions, &digest) {
        note_stamps(t, ids);
        return answer;
    }
    if req.sub_resource == "status" {
        return answer;
    }
    let refused = t.outcome != Some(Outcome::Allowed);
    answer.patch = match &asker.person {
        Ok(who) if !refused || req.operation == Operation::Create => {
            let author = attestations::author(&st.verifier, &subject, &digest);
            let stamps: Vec<stamp::NewStamp<'_>> = decisions
                .iter()
                .map(|(a, decision)| stamp::NewStamp {
                    action: *a,
                    kind,
                    namespace: subject.namespace,
                    name: subject.name,
                    generate_name: subject.generate_name,
                    requester: &asker.requester,
                    who,
                    author: author.as_ref().map(|(id, name)| (id.as_str(), name.as_str())),
                    owner_submitter: asker.owner_submitter.as_deref(),
                    decision: decision.clone(),
                    policy: &policy.digest,
                    digest: &digest,
                    authenticated: t.authenticated,
                    now,
                })
                .collect();
            let made = stamp::make(&st.signer, subject.obj, req.old_object.as_ref(), &stamps);
            note_stamps(t, made.sids);
            made.ops
        }
        // Nobody to stamp for (a dry-run denial of someone unknown): a new object keeps none
        // of the keys it came with, an existing one keeps the stored ones.
        _ => match &req.old_object {
            None => stamp::strip(subject.obj, kind),
            Some(old) => stamp::restore(subject.obj, old),
        },
    };
    if action == Action::Submit && policy.identity.rewrite_argo_creator_labels && kind.is_argo() {
        if let Ok(Requester::Person { id, user_name, .. }) = &asker.person {
            answer
                .patch
                .extend(attestations::argo_creator_labels(subject.obj, id, user_name));
        }
    }
    answer
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
