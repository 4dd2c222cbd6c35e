//! The admission webhooks: `POST /mutate` and `POST /validate` for Argo Workflows and Tekton.
//! Decodes the AdmissionReview, works out kind and action, resolves the requester through
//! `identity`, asks `policy`, and answers — with the stamp as a JSON Patch on `/mutate`.
//! Holds no policy logic of its own; never logs object bodies.

pub mod argo;
pub mod codec;
mod delete;
pub mod go_json;
pub mod pipeline_run;
pub mod pod_spec_patch;
pub mod routes;

use crate::cluster::owners::{self, Owners};
use crate::directory::Snapshot;
use crate::identity::{self, Resolved};
use crate::policy::{self, Action, Kind, Outcome, Policy, Requester, RunRequest};
use crate::stamp::{self, object, Binding, Entry, Signer, Verifier, PREFIX};
use arc_swap::ArcSwap;
use codec::{Answer, Operation, Request};
use serde_json::{json, Value};
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
}

/// What the cluster said of a controller-created child's owner, looked up before deciding
/// (`owner_lookup`); `None` when nobody looked (offline evaluation).
pub type OwnerLookup = Option<owners::Result<owners::Found>>;

/// Decide one request, offline: a child of an `ownerStamp` delegate has no owner to look up.
pub fn decide(st: &Decider, req: &Request, hook: Hook) -> Answer {
    decide_traced(st, req, &None, hook, &mut DecisionDraft::default())
}

/// The child kind, when `req` is an `ownerStamp` delegate creating a run for an owner: then the
/// decision needs the owner as the cluster stores it.
pub fn owner_needed(st: &Decider, req: &Request) -> Option<Kind> {
    let kind = pipeline_run::detect(&req.group, &req.version, &req.kind)?;
    let policy = st.policy.load();
    let delegate = policy.delegate_for(&req.user.username)?;
    (req.operation == Operation::Create && delegate.via == policy::Via::OwnerStamp).then_some(kind)
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

/// Who asked, as the stamp binds it: the person's SCIM id, or the service account's username
/// (a delegate acting for the person in `sub`).
struct Asker {
    requester: String,
    sub: String,
}

/// What the policy said.
enum Verdict {
    Allowed(String),
    Refused { why: String, rule: Option<String> },
}

/// Decide one request, noting what the decision was about in `t`. `owner` is what the cluster
/// said of the owner of a run an `ownerStamp` delegate creates (`owner_lookup`).
pub fn decide_traced(st: &Decider, req: &Request, owner: &OwnerLookup, hook: Hook, t: &mut DecisionDraft) -> Answer {
    let Some(kind) = pipeline_run::detect(&req.group, &req.version, &req.kind) else {
        return Answer::allow();
    };
    match (req.operation, hook) {
        // Deletes are judged (and recorded) once, by the deletes webhook's validating call.
        (Operation::Delete, Hook::Validate) => return delete::decide(st, req, kind, t),
        (Operation::Delete | Operation::Connect, _) => return Answer::allow(),
        _ => {}
    }
    let Some(obj) = &req.object else {
        return Answer::deny("scimgate: the request carries no object");
    };
    let Some(meta) = obj.get("metadata").and_then(Value::as_object) else {
        return Answer::deny("scimgate: the object has no metadata");
    };
    let text = |k: &str| meta.get(k).and_then(Value::as_str).unwrap_or_default();
    let (name, generate_name) = (text("name"), text("generateName"));
    if kind != Kind::ClusterWorkflowTemplate
        && name.is_empty()
        && generate_name.is_empty()
        && req.operation == Operation::Create
    {
        return Answer::deny(format!(
            "scimgate: the {} has neither metadata.name nor metadata.generateName",
            kind.as_str()
        ));
    }
    let policy = st.policy.load();
    let snap = st.directory.load();
    let namespace = if req.namespace.is_empty() {
        text("namespace")
    } else {
        req.namespace.as_str()
    };
    let now = chrono::Utc::now();
    let action = pipeline_run::action(kind, req.operation, req.old_object.as_ref(), obj);
    let decision_id = uuid::Uuid::now_v7().to_string();
    let dry = policy.dry_run_in(namespace);
    t.kind = kind.as_str().to_string();
    t.namespace = namespace.to_string();
    t.name = if name.is_empty() { generate_name } else { name }.to_string();
    t.decision_id = decision_id.clone();
    t.dry_run_mode = dry;
    t.policy = policy.digest.clone();
    let labels = meta.get("labels").and_then(Value::as_object);

    // Who asked. A controller's own updates (an `ownerStamp` delegate) are no one's act.
    let old_labels = req.old_object.as_ref().map(|o| object::metadata_map(o, "labels"));
    let resolved = identity::resolve(&snap, &policy, &req.user.username, Some(kind), labels, old_labels);
    let controller_update = matches!(resolved, Ok(Resolved::OwnerStamp { .. })) && req.operation == Operation::Update;
    // Admitted for an owner's deactivated submitter (`whenOwnerOffboarded: continue`): why.
    let mut offboarded_note = None;
    let person: Result<Requester, String> = match resolved {
        Ok(Resolved::Person { requester, .. }) | Ok(Resolved::ServiceAccount(requester)) => Ok(requester),
        Ok(Resolved::OwnerStamp {
            namespace: ns,
            name: sa,
        }) if !controller_update => owner_person(st, &snap, &policy, &req.user.username, owner)
            .map(|(who, note)| {
                offboarded_note = note;
                who
            })
            .map_err(|why| format!("{ns}:{sa} creates runs for their owner's submitter, but {why}")),
        Ok(Resolved::OwnerStamp { .. }) => Err(String::new()),
        Err(why) => Err(why.to_string()),
    };
    let person_id = match &person {
        Ok(Requester::Person { id, .. }) => id.clone(),
        _ => String::new(),
    };
    let asker = Asker {
        requester: if req.user.username.starts_with("system:serviceaccount:") {
            req.user.username.clone()
        } else {
            person_id.clone()
        },
        sub: person_id,
    };
    let binding = |action: Action| Binding {
        requester: &asker.requester,
        sub: &asker.sub,
        action,
        kind,
        namespace,
        name,
        generate_name,
    };

    // Argo's identity labels are not anyone's to edit: the creator's never change after CREATE,
    // and only the Argo Server (its delegate) writes the actor's.
    if let Some(old) = old_labels {
        let argo_server = policy
            .delegate_for(&req.user.username)
            .is_some_and(|d| matches!(d.via, policy::Via::ArgoServer | policy::Via::ArgoCreatorLabels));
        let changed = |k: &str| labels.and_then(|l| l.get(k)) != old.and_then(|l| l.get(k));
        let edited = identity::ARGO_CREATOR_LABELS
            .into_iter()
            .find(|k| changed(k))
            .or_else(|| {
                identity::ARGO_ACTOR_LABELS
                    .into_iter()
                    .filter(|_| !argo_server)
                    .find(|k| changed(k))
            });
        if let Some(k) = edited {
            t.action = Some(action.unwrap_or(Action::Update));
            t.outcome = Some(Outcome::Denied);
            t.reason = format!("the label {k} was changed");
            let mut a = Answer::deny(format!(
                "scimgate: {} may not change the label {k}: Argo's identity labels say who created and who acted on a run, and only the Argo Server writes them; decision {decision_id}",
                req.user.username
            ));
            audit_annotations(&mut a, "deny", &decision_id, t);
            return a;
        }
    }
    // What of ours changed, and whether this request's own stamp covers it.
    let stamp_check = check_stamp(st, req.old_object.as_ref(), obj, action, &binding, now.timestamp())
        .and_then(|sid| check_copied(kind, obj, req.old_object.as_ref()).map(|()| sid));
    if hook == Hook::Validate {
        match &stamp_check {
            Ok(sid) => t.stamp_id = sid.clone(),
            Err(why) => {
                // Stamps set by hand are refused in every mode: dry-run is about policy, not forgery.
                t.action = Some(action.unwrap_or(Action::Update));
                t.outcome = Some(Outcome::Denied);
                t.reason = why.clone();
                let mut a = Answer::deny(format!("scimgate: {why}; decision {decision_id}"));
                audit_annotations(&mut a, "deny", &decision_id, t);
                return a;
            }
        }
    }
    let Some(action) = action.filter(|_| !controller_update) else {
        // No action of a person (status writes, metadata edits, a controller driving its own
        // runs): nothing to decide, and our keys stay as the stored object has them.
        return match (hook, &req.old_object) {
            (Hook::Mutate, Some(old)) => patched(Answer::allow(), stamp::restore(obj, old)),
            _ => Answer::allow(),
        };
    };
    t.action = Some(action);
    // What the run executes, read as its controller reads it; what cannot be read so is refused
    // in every mode (it is a way around the policy, not a policy question).
    match pipeline_run::runs_since(kind, obj, req.old_object.as_ref()) {
        Ok(runs) => {
            t.run_as = runs.run_as;
            t.templates = runs.templates;
        }
        Err(why) => return refuse(req, kind, action, &why.to_string(), t),
    }
    t.outcome = Some(if dry { Outcome::DryRunDenied } else { Outcome::Denied });

    // Identity state too old to trust (a shared store out of reach): fail closed, or open with a
    // warning if the operator chose so.
    let mut stale_warning = None;
    let verdict = match (st.freshness.stale_age(), &person) {
        (Some(age), _) if st.freshness.when_stale == crate::config::WhenStale::Deny => Verdict::Refused {
            why: st.freshness.describe_stale(age),
            rule: None,
        },
        (_, Err(why)) => Verdict::Refused {
            why: why.clone(),
            rule: None,
        },
        (age, Ok(requester)) => {
            if let Some(age) = age {
                stale_warning = Some(short_warning_text(&format!(
                    "scimgate: {}",
                    st.freshness.describe_stale(age)
                )));
            }
            if let Requester::Person { id, groups, .. } = requester {
                t.user_id = Some(id.clone());
                t.groups = groups.clone();
            }
            let submitter_id = req
                .old_object
                .as_ref()
                .and_then(|old| object::verified(&st.verifier, old, Entry::SUBMIT))
                .and_then(Result::ok)
                .map(|c| c.sub)
                .filter(|s| !s.is_empty());
            t.submitter_id = submitter_id.clone();
            let run = RunRequest {
                kind,
                namespace: namespace.to_string(),
                action,
                run_as: t.run_as.clone(),
                templates: t.templates.clone(),
                submitter_id,
            };
            let d = policy::evaluate(&policy, &run, requester);
            t.rule = d.rule.clone();
            if d.outcome == Outcome::Allowed {
                Verdict::Allowed(d.rule.unwrap_or_default())
            } else {
                Verdict::Refused {
                    why: d.reason,
                    rule: d.rule,
                }
            }
        }
    };
    let (mut answer, decision) = match verdict {
        Verdict::Allowed(rule) => {
            t.outcome = Some(Outcome::Allowed);
            if let Some(note) = offboarded_note {
                t.reason = note;
            }
            let mut a = Answer::allow();
            a.warnings.extend(stale_warning);
            audit_annotations(&mut a, "allow", &decision_id, t);
            (a, format!("allow:{rule}"))
        }
        Verdict::Refused { why, rule } => {
            if !dry {
                return refuse(req, kind, action, &why, t);
            }
            t.reason = why.clone();
            let mut a = Answer::allow();
            a.warnings.push(short_warning(&why));
            audit_annotations(&mut a, "dry-run-deny", &decision_id, t);
            (
                a,
                rule.map_or_else(|| "dry-run-deny".to_string(), |r| format!("dry-run-deny:{r}")),
            )
        }
    };
    if hook == Hook::Validate {
        return answer;
    }
    // The mutating call: stamp, unless an earlier call of this request already did (a
    // re-invocation sees its own stamp, fresh and bound to this request: nothing to change).
    let refused = t.outcome != Some(Outcome::Allowed);
    let ops = match (&stamp_check, &person) {
        (Ok(Some(_)), _) => Vec::new(),
        (_, Ok(who)) if !refused || req.operation == Operation::Create => {
            let made = stamp::make(
                &st.signer,
                obj,
                req.old_object.as_ref(),
                &stamp::NewStamp {
                    action,
                    kind,
                    namespace,
                    name,
                    generate_name,
                    requester: &asker.requester,
                    who,
                    decision,
                    policy: &policy.digest,
                    now,
                },
            );
            t.stamp_id = Some(made.sid);
            made.ops
        }
        // Nobody to stamp for (a dry-run denial of someone unknown): a new object keeps none
        // of the keys it came with, an existing one keeps the stored ones.
        _ => match &req.old_object {
            None => stamp::strip(obj, kind),
            Some(old) => stamp::restore(obj, old),
        },
    };
    answer.patch = ops;
    if action == Action::Submit && policy.identity.rewrite_argo_creator_labels && kind.is_argo() {
        if let Ok(Requester::Person { id, user_name, .. }) = &person {
            answer.patch.extend(argo_creator_labels(obj, id, user_name));
        }
    }
    answer
}

/// The refusal of `action` because of `why`, noted in `t` (which knows the namespace and the
/// decision id by now).
fn refuse(req: &Request, kind: Kind, action: Action, why: &str, t: &mut DecisionDraft) -> Answer {
    t.outcome = Some(Outcome::Denied);
    t.reason = why.to_string();
    let mut a = Answer::deny(format!(
        "scimgate: {} may not {} {} in {}: {why}; decision {}",
        req.user.username,
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

/// Every `scimgate.io/*` annotation and label that differs from the stored object (all of them on
/// CREATE) must be covered by an attestation that changed in this request, verifies, is of this
/// request's action and is bound to it (requester, person, kind, namespace, name, fresh).
/// `Ok(Some(stamp id))` when this request's own stamp is in place, `Ok(None)` when nothing of
/// ours changed.
fn check_stamp<'b>(
    st: &Decider,
    old: Option<&Value>,
    obj: &Value,
    action: Option<Action>,
    binding: &dyn Fn(Action) -> Binding<'b>,
    now: i64,
) -> Result<Option<String>, String> {
    // Keys that differ: every key of the new map that reads otherwise before, then every key
    // of the old map the new one lacks — each once, with no scan of what was found so far.
    let mut changed = Vec::new();
    for field in ["annotations", "labels"] {
        let after = object::ours(obj, field);
        let before = old.map(|o| object::ours(o, field)).unwrap_or_default();
        changed.extend(
            after
                .iter()
                .filter(|(k, v)| before.get(*k) != Some(*v))
                .chain(before.iter().filter(|(k, _)| !after.contains_key(*k)))
                .map(|(k, _)| (field, k.clone())),
        );
    }
    if changed.is_empty() {
        return Ok(None);
    }
    let mut fresh = Vec::new();
    for entry in &stamp::vocabulary::TABLE {
        let now_jws = object::attestation(obj, entry);
        if now_jws.is_none() || now_jws == old.and_then(|o| object::attestation(o, entry)) {
            continue;
        }
        let key = entry.attestation_key();
        let claims = match object::verified(&st.verifier, obj, entry) {
            Some(Ok(c)) => c,
            Some(Err(e)) => return Err(format!("{e}; {PREFIX}* annotations cannot be set by hand")),
            None => continue,
        };
        if action != Some(entry.action) {
            return Err(format!(
                "{key} holds a new {} stamp, but this request is {}; {PREFIX}* annotations cannot be set by hand",
                entry.action.as_str(),
                action.map_or("no action of a person", Action::as_str)
            ));
        }
        claims.binds(&binding(entry.action), now, st.stamp_max_age).map_err(|m| {
            format!("{key} is not a stamp scimgate made for this request: {m}; {PREFIX}* annotations cannot be set by hand")
        })?;
        fresh.push((entry, claims));
    }
    // A key is covered when a new stamp signed it, or — gone now — when it belonged to the
    // earlier stamp of the same action, which the new one replaced.
    let annotations = object::ours(obj, "annotations");
    let covered = |field: &str, k: &str| {
        fresh.iter().any(|(entry, c)| match field {
            "annotations" => {
                k == entry.attestation_key()
                    || c.stamp.contains_key(k)
                    || (entry.owns(k) && !annotations.contains_key(k))
            }
            _ => c.labels.contains_key(k),
        })
    };
    if let Some((field, k)) = changed.iter().find(|(f, k)| !covered(f, k)) {
        let what = if *field == "labels" { "label" } else { "annotation" };
        return Err(format!(
            "the {what} {k} was changed by hand; {PREFIX}* annotations and labels are scimgate's to write"
        ));
    }
    Ok(fresh
        .into_iter()
        .find(|(e, _)| Some(e.action) == action)
        .map(|(_, c)| c.sid))
}

/// `scimgate.io/*` and Argo's identity labels inside the metadata Argo copies into runs
/// (`stamp::copied_metadata`). A stamp there is inherited by every run started from the object,
/// so on CREATE only a CronWorkflow's own submit stamp may stand in its `spec.workflowMetadata`
/// (the same keys as on the object), and on UPDATE nothing may be added or changed there
/// (removing only loses the inheritance). Argo's creator and actor labels there would be written
/// onto every run by the controller's first reconcile — past the rule that only the Argo Server
/// writes them — so they may not be added or changed there either, as labels or as `labelsFrom`
/// keys (argo-workflows `workflow/controller/operator.go` `updateWorkflowMetadata`,
/// `workflow/common/convert.go` `toWorkflow`, which copies them over the CronWorkflow's own).
fn check_copied(kind: Kind, obj: &Value, old: Option<&Value>) -> Result<(), String> {
    let guarded = |field: &str, k: &str| {
        stamp::vocabulary::is_ours(k) || (field != "annotations" && identity::ARGO_IDENTITY_LABELS.contains(&k))
    };
    let at = |o: &Value, path: &[&str], field: &str| -> serde_json::Map<String, Value> {
        stamp::at(o, path)
            .and_then(|m| m.get(field))
            .and_then(Value::as_object)
            .map(|m| {
                m.iter()
                    .filter(|(k, _)| guarded(field, k))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect()
            })
            .unwrap_or_default()
    };
    for path in stamp::copied_metadata(kind) {
        for field in ["annotations", "labels", "labelsFrom"] {
            let allowed = match old {
                Some(old) => at(old, path, field),
                None if kind == Kind::CronWorkflow && *path == stamp::WORKFLOW_METADATA && field != "labelsFrom" => {
                    object::ours(obj, field)
                }
                None => serde_json::Map::new(),
            };
            if let Some((k, _)) = at(obj, path, field)
                .into_iter()
                .find(|(k, v)| allowed.get(k) != Some(v))
            {
                let why = if stamp::vocabulary::is_ours(&k) {
                    "was not written by scimgate; a stamp there would be inherited by every run started from it"
                } else {
                    "would be copied onto every run started from it, and Argo's identity labels are only the Argo Server's to write"
                };
                return Err(format!("{k} in {}.{field} {why}", path.join(".")));
            }
        }
    }
    Ok(())
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

/// The person behind a controller-created run: the one the verified submit stamp of its owner,
/// as the cluster stores it, names — never a stamp the child carries (anyone who can edit an
/// owner can paste a stamp into what it copies onto its runs, and one `generateName` can be
/// signed for two owners). The stamp must name that owner (kind, namespace, name); it may be of
/// any age (a CronWorkflow spawns months after it was stamped). A submitter deactivated since is
/// the policy's `whenOwnerOffboarded`: refused, or admitted with a note saying so.
fn owner_person(
    st: &Decider,
    snap: &Snapshot,
    policy: &Policy,
    username: &str,
    owner: &OwnerLookup,
) -> Result<(Requester, Option<String>), String> {
    let found = match owner {
        Some(Ok(found)) => found,
        Some(Err(e)) => return Err(e.to_string()),
        None => return Err(owners::Error::NoApiAccess.to_string()),
    };
    let meta = |k: &str| {
        found
            .object
            .pointer(&format!("/metadata/{k}"))
            .and_then(Value::as_str)
            .unwrap_or_default()
    };
    let (kind, ns, name) = (found.kind.as_str(), meta("namespace"), meta("name"));
    let claims = match object::verified(&st.verifier, &found.object, Entry::SUBMIT) {
        Some(Ok(c)) => c,
        Some(Err(e)) => return Err(format!("the stamp on its owner {kind} {ns}/{name} does not hold: {e}")),
        None => return Err(format!("its owner {kind} {ns}/{name} carries no scimgate submit stamp")),
    };
    claims
        .places(kind, ns, name, meta("generateName"))
        .map_err(|m| format!("the stamp on its owner {kind} {ns}/{name} does not belong to it: {m}"))?;
    if claims.sub.is_empty() {
        // A service account that submitted for itself (a CI bot's PipelineRun): its runs'
        // children are its own, judged by the rules for that account. A delegate never submits
        // for itself (its stamps name the person it acted for).
        let account = claims
            .requester
            .strip_prefix("system:serviceaccount:")
            .and_then(|r| r.split_once(':'))
            .filter(|(sa_ns, sa)| !sa_ns.is_empty() && !sa.is_empty() && policy.delegate(sa_ns, sa).is_none());
        return match account {
            Some((sa_ns, sa)) => Ok((
                Requester::ServiceAccount {
                    namespace: sa_ns.to_string(),
                    name: sa.to_string(),
                },
                None,
            )),
            None => Err(format!("the stamp on its owner {kind} {ns}/{name} names no person")),
        };
    }
    let (who, active) = identity::stamped_person(snap, &claims.sub)
        .map_err(|e| format!("the submitter of its owner {kind} {ns}/{name}: {e}"))?;
    if active {
        return Ok((who, None));
    }
    let user_name = who.display();
    match policy.when_owner_offboarded(policy.delegate_for(username), found.kind) {
        policy::WhenOwnerOffboarded::Stop => Err(format!(
            "{user_name}, who submitted its owner {kind} {ns}/{name}, is deactivated in the identity provider, and whenOwnerOffboarded is stop: it starts no new run"
        )),
        policy::WhenOwnerOffboarded::Continue => Ok((
            who,
            Some(format!(
                "{user_name}, who submitted its owner {kind} {ns}/{name}, is deactivated in the identity provider; admitted because whenOwnerOffboarded is continue (the run finishes)"
            )),
        )),
    }
}

/// Argo's creator labels, set to the verified person, written the way the Argo Server writes
/// them (`directory::argo_label`), the subject as the SCIM id.
fn argo_creator_labels(obj: &Value, user_id: &str, user_name: &str) -> Vec<Value> {
    use crate::directory::{argo_email_label, argo_label};
    let current = object::metadata_map(obj, "labels");
    let email = user_name.contains('@').then(|| argo_email_label(user_name));
    let want = [
        (identity::ARGO_CREATOR, Some(argo_label(user_id))),
        (identity::ARGO_CREATOR_USERNAME, Some(argo_label(user_name))),
        (identity::ARGO_CREATOR_EMAIL, email),
    ];
    let mut ops = Vec::new();
    for (k, v) in want {
        let path = format!("/metadata/labels/{}", stamp::patch::pointer_key(k));
        let have = current.and_then(|c| c.get(k)).and_then(Value::as_str);
        match v {
            Some(v) if have != Some(v.as_str()) => ops.push(json!({"op": "add", "path": path, "value": v})),
            None if have.is_some() => ops.push(json!({"op": "remove", "path": path})),
            _ => {}
        }
    }
    ops
}
