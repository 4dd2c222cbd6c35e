//! The admission webhooks: `POST /mutate` and `POST /validate` for Argo Workflows and Tekton.
//! Decodes the AdmissionReview, works out kind and action, resolves the requester through
//! `identity`, asks `policy`, and answers — with the stamp as a JSON Patch on `/mutate`.
//! Holds no policy logic of its own; never logs object bodies.

pub mod review;
pub mod routes;
pub mod run;

use crate::directory::Snapshot;
use crate::identity::{self, Resolved};
use crate::policy::{self, Action, Kind, Outcome, Policy, Requester, RunRequest};
use crate::stamp::{self, Signer, Verifier, PREFIX};
use arc_swap::ArcSwap;
use review::{Answer, Operation, Request};
use serde_json::{json, Map, Value};
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
}

#[derive(Clone)]
pub struct AdmissionState {
    pub decider: Decider,
    pub metrics: crate::metrics::Metrics,
    pub recorder: crate::audit::recorder::Recorder,
}

/// Which webhook is asking.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hook {
    Mutate,
    Validate,
}

fn ann(obj: &Value) -> Option<&Map<String, Value>> {
    obj.get("metadata")
        .and_then(|m| m.get("annotations"))
        .and_then(Value::as_object)
}

fn ours(map: Option<&Map<String, Value>>) -> Map<String, Value> {
    map.map(|m| {
        m.iter()
            .filter(|(k, _)| k.starts_with(PREFIX))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    })
    .unwrap_or_default()
}

fn key(name: &str) -> String {
    format!("{PREFIX}{name}")
}

/// The claims of a stamp on `obj` under `field` (`attestation`, `approval-attestation`, …), if it
/// verifies and agrees with the annotations beside it.
fn verified(v: &Verifier, obj: &Value, field: &str) -> Option<Value> {
    let a = ann(obj)?;
    let claims = v.verify(a.get(&key(field))?.as_str()?).ok()?;
    let stamped = claims.get("stamp")?.as_object()?;
    // Every stamped annotation must still read what was signed.
    stamped.iter().all(|(k, val)| a.get(k) == Some(val)).then_some(claims)
}

/// What a decision was about, for the decision record; filled in as `decide` learns it.
#[derive(Debug, Clone, Default)]
pub struct Trace {
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
}

/// Decide one request.
pub fn decide(st: &Decider, req: &Request, hook: Hook) -> Answer {
    decide_traced(st, req, hook, &mut Trace::default())
}

/// Decide one request, noting what the decision was about in `t`.
pub fn decide_traced(st: &Decider, req: &Request, hook: Hook, t: &mut Trace) -> Answer {
    let Some(kind) = run::detect(&req.group, &req.version, &req.kind) else {
        return Answer::allow();
    };
    if matches!(req.operation, Operation::Delete | Operation::Connect) {
        return Answer::allow();
    }
    let Some(obj) = &req.object else {
        return Answer::deny("scimgate: the request carries no object");
    };
    let Some(meta) = obj.get("metadata").and_then(Value::as_object) else {
        return Answer::deny("scimgate: the object has no metadata");
    };
    let policy = st.policy.load();
    let snap = st.directory.load();
    let namespace = if req.namespace.is_empty() {
        meta.get("namespace")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    } else {
        req.namespace.clone()
    };
    let name = meta
        .get("name")
        .or_else(|| meta.get("generateName"))
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .map(String::from);
    if kind != Kind::ClusterWorkflowTemplate && name.is_none() && req.operation == Operation::Create {
        return Answer::deny(format!(
            "scimgate: the {} has neither metadata.name nor metadata.generateName",
            kind.as_str()
        ));
    }
    if hook == Hook::Validate {
        if let Err(why) = check_stamp(st, req, obj) {
            return Answer::deny(format!("scimgate: {why}"));
        }
    }
    let Some(action) = run::action(kind, req.operation, req.old_object.as_ref(), obj) else {
        // No action of a person (status writes, metadata edits): nothing to decide, and our
        // stamp is kept as it was.
        return match (hook, &req.old_object) {
            (Hook::Mutate, Some(old)) => keep_stamp(obj, old),
            _ => Answer::allow(),
        };
    };
    let decision_id = uuid::Uuid::now_v7().to_string();
    let labels = meta.get("labels").and_then(Value::as_object);
    let who_said = req.user.username.clone();
    let dry = policy.dry_run_in(&namespace);
    t.action = Some(action);
    t.kind = kind.as_str().to_string();
    t.namespace = namespace.clone();
    t.name = name.clone().unwrap_or_default();
    t.decision_id = decision_id.clone();
    t.dry_run_mode = dry;
    t.policy = policy.digest.clone();
    t.run_as = run::run_as(kind, obj);
    t.templates = run::templates(kind, obj);
    t.outcome = Some(if dry { Outcome::DryRunDenied } else { Outcome::Denied });
    let refuse = |t: &mut Trace, why: String| -> Answer {
        t.reason = why.clone();
        let msg = format!(
            "scimgate: {who_said} may not {} {} in {namespace}: {why}; decision {decision_id}",
            action.as_str(),
            kind.as_str()
        );
        let mut a = if dry {
            let mut a = Answer::allow();
            a.warnings.push(short_warning(&why));
            a
        } else {
            Answer::deny(msg)
        };
        audit_annotations(&mut a, if dry { "dry-run-deny" } else { "deny" }, &decision_id, t);
        a
    };
    // Identity state too old to trust (a shared store out of reach): fail closed, or open with a
    // warning if the operator chose so.
    let mut stale_warning = None;
    if let Some(age) = st.freshness.stale_age() {
        let why = st.freshness.describe_stale(age);
        match st.freshness.when_stale {
            crate::config::WhenStale::Deny => return refuse(t, why),
            crate::config::WhenStale::Allow => stale_warning = Some(short_warning_text(&format!("scimgate: {why}"))),
        }
    }
    let requester = match identity::resolve(&snap, &policy, &req.user.username, labels) {
        Ok(Resolved::Person { requester, .. }) | Ok(Resolved::ServiceAccount(requester)) => requester,
        Ok(Resolved::OwnerStamp {
            namespace: ns,
            name: sa,
        }) => {
            if req.operation == Operation::Update {
                // The controller driving its own runs: status and bookkeeping, not a person's act.
                return match (hook, &req.old_object) {
                    (Hook::Mutate, Some(old)) => keep_stamp(obj, old),
                    _ => Answer::allow(),
                };
            }
            match owner_person(st, &snap, obj) {
                Ok(p) => p,
                Err(why) => {
                    return refuse(
                        t,
                        format!("{ns}:{sa} creates runs for their owner's submitter, but {why}"),
                    )
                }
            }
        }
        Err(why) => return refuse(t, why),
    };
    if let Requester::Person { id, groups, .. } = &requester {
        t.user_id = Some(id.clone());
        t.groups = groups.clone();
    }
    let submitter_id = req
        .old_object
        .as_ref()
        .and_then(|old| verified(&st.verifier, old, "attestation"))
        .and_then(|c| c.get("sub").and_then(Value::as_str).map(String::from));
    t.submitter_id = submitter_id.clone();
    let run = RunRequest {
        kind,
        namespace: namespace.clone(),
        action,
        run_as: t.run_as.clone(),
        templates: t.templates.clone(),
        submitter_id,
    };
    let d = policy::evaluate(&policy, &run, &requester);
    t.rule = d.rule.clone();
    if d.outcome != Outcome::Allowed {
        return refuse(t, d.reason.clone());
    }
    t.outcome = Some(Outcome::Allowed);
    let rule = d.rule.clone().unwrap_or_default();
    let mut answer = Answer::allow();
    answer.warnings.extend(stale_warning);
    audit_annotations(&mut answer, "allow", &decision_id, t);
    if hook == Hook::Mutate {
        answer.patch = stamp_patch(
            st,
            req,
            obj,
            kind,
            action,
            &requester,
            &rule,
            &namespace,
            name.as_deref(),
            &policy.digest,
            policy.identity.rewrite_argo_creator_labels,
        );
    }
    answer
}

/// Audit annotations: the API server prefixes each key with the webhook's name, so keys are
/// bare names (`<webhook>/decision`).
fn audit_annotations(a: &mut Answer, decision: &str, id: &str, t: &Trace) {
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

/// The person behind a controller-created run: the verified stamp the owner passed down.
fn owner_person(st: &Decider, snap: &Snapshot, obj: &Value) -> Result<Requester, String> {
    let claims = verified(&st.verifier, obj, "attestation")
        .ok_or("the object carries no valid scimgate stamp from its owner")?;
    let sub = claims
        .get("sub")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or("the owner's stamp names no person")?;
    identity::find_person(snap, policy::MatchAttribute::Id, sub).map_err(|e| format!("the owner's submitter {e}"))
}

/// On UPDATE: `scimgate.io/*` may change only by our own stamp for this very request.
fn check_stamp(st: &Decider, req: &Request, obj: &Value) -> Result<(), String> {
    let now = ours(ann(obj));
    let before = ours(req.old_object.as_ref().and_then(ann));
    if now == before {
        return Ok(());
    }
    // Every attestation that differs must be ours, for this request.
    let changed: Vec<&String> = now
        .keys()
        .chain(before.keys())
        .filter(|k| now.get(*k) != before.get(*k))
        .collect();
    for field in ["attestation", "approval-attestation", "cancel-attestation"] {
        let k = key(field);
        if now.get(&k) != before.get(&k) {
            match verified(&st.verifier, obj, field) {
                Some(c) if c.get("uid").and_then(Value::as_str) == Some(req.uid.as_str()) => {}
                _ => return Err(format!("{k} is not a stamp scimgate made for this request; scimgate.io/* annotations cannot be set by hand")),
            }
        }
    }
    // Keys that changed must be covered by one of the fresh attestations.
    let covered = |k: &str| {
        ["attestation", "approval-attestation", "cancel-attestation"]
            .iter()
            .any(|f| {
                now.get(&key(f)) != before.get(&key(f))
                    && (k == key(f)
                        || verified(&st.verifier, obj, f)
                            .and_then(|c| c.get("stamp").and_then(|s| s.get(k)).cloned())
                            .is_some())
            })
    };
    match changed.into_iter().find(|k| !covered(k)) {
        Some(k) => Err(format!(
            "{k} was changed by hand; scimgate.io/* annotations cannot be edited"
        )),
        None => Ok(()),
    }
}

/// Mutating, no action: restore our annotations as they were (a person's edit of them is undone).
fn keep_stamp(obj: &Value, old: &Value) -> Answer {
    let mut a = Answer::allow();
    a.patch = stamp::patch_map(obj, "annotations", &ours(ann(old)));
    a
}

#[allow(clippy::too_many_arguments)]
fn stamp_patch(
    st: &Decider,
    req: &Request,
    obj: &Value,
    kind: Kind,
    action: Action,
    who: &Requester,
    rule: &str,
    namespace: &str,
    name: Option<&str>,
    digest: &str,
    rewrite_creator: bool,
) -> Vec<Value> {
    let (user_name, user_id, groups) = match who {
        Requester::Person { id, user_name, groups } => (user_name.clone(), id.clone(), groups.join(",")),
        sa @ Requester::ServiceAccount { .. } => (sa.display(), String::new(), String::new()),
    };
    let prefix = match action {
        Action::Submit => "submitted",
        Action::Approve => "approved",
        Action::Cancel => "cancelled",
        Action::Update => "updated",
    };
    let field = match action {
        Action::Submit => "attestation",
        Action::Approve => "approval-attestation",
        Action::Cancel => "cancel-attestation",
        Action::Update => "update-attestation",
    };
    // Re-invocation for the same request: our stamp is already there; change nothing.
    if let Some(c) = verified(&st.verifier, obj, field) {
        if c.get("uid").and_then(Value::as_str) == Some(req.uid.as_str()) {
            return Vec::new();
        }
    }
    let mut stamp_ann = Map::new();
    stamp_ann.insert(key(&format!("{prefix}-by")), json!(user_name));
    if !user_id.is_empty() {
        stamp_ann.insert(key(&format!("{prefix}-by-id")), json!(user_id));
    }
    if action == Action::Submit {
        stamp_ann.insert(key("submitted-groups"), json!(groups));
    }
    stamp_ann.insert(key(&format!("{prefix}-at")), json!(crate::scim::now()));
    let decision = if action == Action::Submit {
        key("decision")
    } else {
        key(&format!("{prefix}-decision"))
    };
    stamp_ann.insert(decision, json!(format!("allow:{rule}")));
    let claims = json!({
        "iss": "scimgate", "sub": user_id, "name": user_name, "action": action.as_str(),
        "kind": kind.as_str(), "namespace": namespace, "objectName": name, "uid": req.uid,
        "policy": digest, "stamp": stamp_ann,
    });
    let mut want_ann = match (action, &req.old_object) {
        // Approvals, cancels and updates add to the submit stamp, which stays as it was.
        (Action::Submit, _) | (_, None) => Map::new(),
        (_, Some(old)) => ours(ann(old)),
    };
    want_ann.extend(stamp_ann.clone());
    want_ann.insert(key(field), json!(st.signer.sign(&claims)));
    let mut ops = stamp::patch_map(obj, "annotations", &want_ann);
    if action == Action::Submit {
        let mut labels = Map::new();
        if !user_id.is_empty() {
            labels.insert(key("submitted-by-id"), json!(stamp::label_safe(&user_id)));
        }
        labels.insert(key("submitted-by"), json!(stamp::label_safe(&user_name)));
        // Foreign scimgate.io labels are replaced too.
        ops.extend(stamp::patch_map(obj, "labels", &labels));
        if rewrite_creator && kind.is_argo() && !user_id.is_empty() {
            ops.extend(argo_creator_labels(obj, &user_id, &user_name));
        }
        if kind == Kind::CronWorkflow {
            // Runs a CronWorkflow starts carry the stamp, so the controller's creates can be traced.
            let wm = obj.get("spec").and_then(|s| s.get("workflowMetadata"));
            match wm {
                None | Some(Value::Null) => {
                    ops.push(json!({"op": "add", "path": "/spec/workflowMetadata", "value": {"annotations": want_ann}}))
                }
                Some(wm) => {
                    let as_object = json!({"metadata": {"annotations": wm.get("annotations")}});
                    for mut op in stamp::patch_map(&as_object, "annotations", &want_ann) {
                        if let Some(p) = op
                            .get("path")
                            .and_then(Value::as_str)
                            .map(|p| p.replacen("/metadata/", "/spec/workflowMetadata/", 1))
                        {
                            op["path"] = json!(p);
                        }
                        ops.push(op);
                    }
                }
            }
        }
    }
    ops
}

/// Argo's creator labels, set to the verified person (label-safe, as Argo itself writes them).
fn argo_creator_labels(obj: &Value, user_id: &str, user_name: &str) -> Vec<Value> {
    let current = obj
        .get("metadata")
        .and_then(|m| m.get("labels"))
        .and_then(Value::as_object);
    let email = user_name.contains('@').then(|| stamp::label_safe(user_name));
    let want = [
        (identity::ARGO_CREATOR, Some(stamp::label_safe(user_id))),
        (identity::ARGO_CREATOR_USERNAME, Some(stamp::label_safe(user_name))),
        (identity::ARGO_CREATOR_EMAIL, email),
    ];
    let mut ops = Vec::new();
    for (k, v) in want {
        let path = format!("/metadata/labels/{}", stamp::pointer_key(k));
        let have = current.and_then(|c| c.get(k)).and_then(Value::as_str);
        match v {
            Some(v) if have != Some(v.as_str()) => ops.push(json!({"op": "add", "path": path, "value": v})),
            None if have.is_some() => ops.push(json!({"op": "remove", "path": path})),
            _ => {}
        }
    }
    ops
}
