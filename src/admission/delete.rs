//! Deletes: who removed a run or template. Every DELETE that reaches `/validate` gets a decision
//! record (the deletes webhook skips the garbage collector and the namespace controller, so a
//! namespace teardown never waits on us). A person's delete is judged only when the policy says
//! `enforceDeletes: true` — by the rules that allow `delete` — and is otherwise recorded and let
//! through; the configured controllers' deletes (the delegates) always pass. Nothing is stamped:
//! the object is going away.

use super::codec::{Answer, Request};
use super::{audit_annotations, pipeline_run, Decider, DecisionDraft};
use crate::identity::{self, Resolved};
use crate::policy::{self, Action, Kind, Outcome, Requester, RunRequest};
use crate::stamp::{object, Entry};
use serde_json::Value;

pub(super) fn decide(st: &Decider, req: &Request, kind: Kind, t: &mut DecisionDraft) -> Answer {
    let policy = st.policy.load();
    let snap = st.directory.load();
    // On DELETE the API server sends the stored object as `oldObject` and no `object`
    // (k8s.io/apiserver pkg/admission/plugin/webhook/request/admissionreview.go).
    let old = req.old_object.as_ref();
    let meta = |k: &str| {
        old.and_then(|o| o.pointer(&format!("/metadata/{k}")))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let namespace = if req.namespace.is_empty() {
        meta("namespace")
    } else {
        req.namespace.clone()
    };
    let decision_id = uuid::Uuid::now_v7().to_string();
    let dry = policy.dry_run_in(&namespace);
    t.kind = kind.as_str().to_string();
    t.name = if req.name.is_empty() {
        meta("name")
    } else {
        req.name.clone()
    };
    t.namespace = namespace.clone();
    t.decision_id = decision_id.clone();
    t.dry_run_mode = dry;
    t.policy = policy.digest.clone();
    t.action = Some(Action::Delete);
    // What the going object ran, for the record; an object Argo reads otherwise than we do
    // records nothing here (its creation was refused, or it predates this check).
    if let Some(runs) = old.and_then(|o| pipeline_run::runs(kind, o).ok()) {
        t.run_as = runs.run_as;
        t.templates = runs.templates;
    }
    // Whose run is going: the submitter of the deleted object, from its verified stamp; the
    // record carries that stamp's id, so `audit who` on the object finds its deletion too.
    let submitted = old
        .and_then(|o| object::verified(&st.verifier, o, Entry::SUBMIT))
        .and_then(Result::ok);
    t.submitter_id = submitted.as_ref().map(|c| c.sub.clone()).filter(|s| !s.is_empty());
    let submitted_for = identity::submitted_for(
        &snap,
        &policy,
        t.submitter_id.as_deref(),
        submitted.as_ref().map_or("", |c| c.on_behalf_of.as_str()),
    );
    t.stamp_id = submitted.map(|c| c.sid).filter(|s| !s.is_empty());

    let allow = |t: &mut DecisionDraft, reason: String| {
        t.outcome = Some(Outcome::Allowed);
        t.reason = reason;
        let mut a = Answer::allow();
        audit_annotations(&mut a, "allow", &decision_id, t);
        a
    };
    let who = match policy.delegate_for(&req.user.username).map(|d| d.via) {
        // A controller cleaning up its own runs.
        Some(policy::Via::OwnerStamp) => return allow(t, "a configured controller's delete".into()),
        // The Argo Server writes no trace of the person who deleted (server/workflow/
        // workflow_server.go `DeleteWorkflow` labels nothing before it deletes): it answers for
        // the delete itself, judged as its own account.
        Some(policy::Via::ArgoServer | policy::Via::ArgoCreatorLabels) => {
            t.reason = "the Argo Server, which names no person for a delete".into();
            let (ns, sa) = req
                .user
                .username
                .strip_prefix("system:serviceaccount:")
                .and_then(|r| r.split_once(':'))
                .unwrap_or_default();
            Ok(Requester::ServiceAccount {
                namespace: ns.to_string(),
                name: sa.to_string(),
            })
        }
        None => match identity::resolve(
            &snap,
            &policy,
            &req.user.username,
            (Some(kind), identity::ArgoTrace::Actor),
            None,
            None,
        ) {
            Ok(Resolved::Person { requester, .. }) | Ok(Resolved::ServiceAccount(requester)) => Ok(requester),
            Ok(Resolved::OwnerStamp { .. }) => return allow(t, "a configured controller's delete".into()),
            Err(e) => Err(e.to_string()),
        },
    };
    if let Some(id) = who.as_ref().ok().and_then(Requester::scim_id) {
        t.user_id = Some(id.to_string());
        t.groups = who.as_ref().map(|w| w.groups().to_vec()).unwrap_or_default();
    }
    if let Ok(Requester::Agent { sponsors, .. }) = &who {
        t.acting_for = sponsors.first().and_then(Requester::scim_id).map(str::to_string);
    }
    if !policy.enforce_deletes {
        let why = match t.reason.as_str() {
            "" => "recorded only (the policy does not set enforceDeletes)".to_string(),
            by => format!("{by}; recorded only (the policy does not set enforceDeletes)"),
        };
        return allow(t, why);
    }
    let verdict = who.map(|requester| {
        let run = RunRequest {
            kind,
            namespace: namespace.clone(),
            action: Action::Delete,
            run_as: t.run_as.clone(),
            templates: t.templates.clone(),
            submitter_id: t.submitter_id.clone(),
            submitted_for,
        };
        policy::evaluate(&policy, &run, &requester)
    });
    match verdict {
        Ok(d) if d.outcome == Outcome::Allowed => {
            t.rule = d.rule;
            t.on_behalf_of = d.on_behalf_of.into_iter().map(|by| (Action::Delete, by)).collect();
            allow(t, String::new())
        }
        refused => {
            let why = match refused {
                Ok(d) => {
                    t.rule = d.rule;
                    d.reason
                }
                Err(why) => why,
            };
            t.reason = why.clone();
            if dry {
                t.outcome = Some(Outcome::DryRunDenied);
                let mut a = Answer::allow();
                a.warnings.push(super::short_warning(&why));
                audit_annotations(&mut a, "dry-run-deny", &decision_id, t);
                return a;
            }
            t.outcome = Some(Outcome::Denied);
            let mut a = Answer::deny(format!(
                "scimgate: {} may not delete {} {} in {namespace}: {why}; decision {decision_id}",
                req.user.username,
                kind.as_str(),
                t.name,
            ));
            audit_annotations(&mut a, "deny", &decision_id, t);
            a
        }
    }
}
