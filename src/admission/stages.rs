//! The stages of one decision, each a method of [`Deciding`] with what it reads as input and
//! what it found as output: who asked, what of ours the request brings, what the run executes,
//! the verdict, the answer, the stamps. A stage that settles the request returns its answer as
//! `Err`, so `super::stages` reads top to bottom with `?`. Each stage notes what it found in
//! the [`DecisionDraft`]; none logs, none does I/O (what the cluster said is in [`Lookups`]).

use super::asker::{self, Asker};
use super::attestations::{self, Fresh};
use super::codec::{Answer, Operation, Request};
use super::own_write;
use super::verdict::{self, Verdict};
use super::{
    audit_annotations, deny_unjudged, note_also, note_stamps, patched, pipeline_run, refuse, short_warning,
    short_warning_text, tekton_child, Decider, DecisionDraft, Hook, Lookups, Subject,
};
use crate::cluster::argo_defaults::Defaults;
use crate::directory::Snapshot;
use crate::policy::{Action, Kind, Outcome, Policy};
use crate::stamp::{self, object, Entry};
use arc_swap::Guard;
use std::sync::Arc;
use std::time::Duration;

/// A stage's result: what it found, or the request's answer (boxed: the found value is the
/// common case, and small).
pub type Stage<T> = Result<T, Box<Answer>>;

/// One request being decided, and what every stage reads.
pub struct Deciding<'a> {
    st: &'a Decider,
    req: &'a Request,
    lookups: &'a Lookups,
    hook: Hook,
    kind: Kind,
    subject: Subject<'a>,
    policy: Guard<Arc<Policy>>,
    snap: Guard<Arc<Snapshot>>,
    now: chrono::DateTime<chrono::Utc>,
}

/// Who asked, and every action the request contains.
pub struct Who {
    asker: Asker,
    actions: Vec<Action>,
    /// An owner added that is gone or not theirs: why the request is a delete too.
    adopted: Option<String>,
}

impl Who {
    /// No action of a person (status writes, metadata edits, a controller driving its own runs).
    pub fn does_nothing_to_decide(&self) -> bool {
        self.actions.is_empty() || self.asker.controller_update
    }

    /// The action the request is named for (asked only once there is one).
    pub fn action(&self) -> Action {
        self.actions.first().copied().unwrap_or(Action::Update)
    }
}

/// What the verdict stage found.
pub struct Judged {
    verdict: Verdict,
    /// How far behind the directory is, past `maxStalenessSeconds`.
    stale_age: Option<Duration>,
    /// Why a Tekton child is judged on its own rather than as its parent was.
    uncovered: Option<String>,
}

impl<'a> Deciding<'a> {
    /// What the request is about, and under which policy and directory.
    pub fn begin(
        st: &'a Decider,
        req: &'a Request,
        lookups: &'a Lookups,
        hook: Hook,
        kind: Kind,
        t: &mut DecisionDraft,
    ) -> Stage<Deciding<'a>> {
        let subject = Subject::read(req, kind).map_err(|why| Box::new(Answer::deny(why)))?;
        let policy = st.policy.load();
        super::begin(t, &subject, &policy);
        Ok(Deciding {
            st,
            req,
            lookups,
            hook,
            kind,
            subject,
            policy,
            snap: st.directory.load(),
            now: chrono::Utc::now(),
        })
    }

    /// scimgate's own offboarding write (`own_write`): admitted as the stamp it brings says,
    /// with no patch — or, in `/validate`, refused with why the stamp does not hold. A request
    /// with no new offboarding stamp goes on to be judged as anyone's.
    pub fn own_write(&self, t: &mut DecisionDraft) -> Stage<()> {
        if !own_write::brings_stamp(self.req) {
            return Ok(());
        }
        let max_age = self.st.stamp_max_age;
        match own_write::check(&self.st.verifier, self.req, self.kind, max_age, self.now.timestamp()) {
            Ok(c) => {
                t.own_action = Some(crate::stamp::offboard::ACTION);
                t.outcome = Some(Outcome::Allowed);
                t.rule = Some(format!("offboarding: {}", c.step));
                t.reason = format!("scimgate's offboarding of {} ({}): {}", c.name, c.cause, c.step);
                t.submitter_id = Some(c.sub);
                t.stamp_id = Some(c.sid);
                Err(Box::new(Answer::allow()))
            }
            Err(why) if self.hook == Hook::Validate => {
                t.own_action = Some(crate::stamp::offboard::ACTION);
                let why = why.to_string();
                let message = format!("scimgate: {why}; decision {}", t.decision_id);
                Err(Box::new(deny_unjudged(t, why, message)))
            }
            // Taken on a version that is gone: the API server's precondition refuses it as the
            // conflict it is, which the sweep reads again and retries.
            Err(own_write::NotSigned::Stale { .. }) => Err(Box::new(Answer::allow())),
            // Anything else `/mutate` leaves to the judgement below, which puts our keys back as
            // stored.
            Err(own_write::NotSigned::Other(_)) => Ok(()),
        }
    }

    /// Who asked; Argo's identity labels are nobody else's to edit. An owner added that is gone
    /// or not theirs makes the request a delete too: the garbage collector deletes the object
    /// when that owner goes, with no webhook call.
    pub fn who_asked(&self, t: &mut DecisionDraft) -> Stage<Who> {
        let (req, subject) = (self.req, &self.subject);
        let mut actions = pipeline_run::actions(self.kind, req.operation, req.old_object.as_ref(), subject.obj);
        let asker = asker::identify(
            &self.st.verifier,
            &self.snap,
            &self.policy,
            subject,
            &self.lookups.owner,
        );
        let adopted = asker::adopts_against(&self.st.verifier, &asker, &self.lookups.adoptions);
        if let Some(why) = &adopted {
            actions.push(Action::Delete);
            t.reason = why.clone();
        }
        if let Some(k) = asker::edited_identity_label(&self.policy, &self.snap, subject, &asker) {
            t.action = Some(asker::recorded_action(&actions));
            return Err(Box::new(deny_unjudged(t, format!("the label {k} was changed"), format!(
                "scimgate: {} may not change the label {k}: Argo's identity labels say who created and who acted on a run, and only the Argo Server writes them; decision {}",
                req.user.username, t.decision_id
            ))));
        }
        Ok(Who {
            asker,
            actions,
            adopted,
        })
    }

    /// What of ours the request brings: bound to it, or refused by `/validate` in every mode
    /// (dry-run is about policy, not forgery); `/mutate` replaces what does not bind.
    pub fn stamps_brought(&self, who: &Who, t: &mut DecisionDraft) -> Stage<Vec<Fresh>> {
        let binding = |a: Action| self.subject.binding(&who.asker, a);
        let fresh = attestations::fresh(
            &self.st.verifier,
            self.st.stamp_max_age,
            &self.subject,
            &who.actions,
            &binding,
            self.now.timestamp(),
        )
        .and_then(|f| {
            attestations::check_copied(self.kind, self.subject.obj, self.req.old_object.as_ref()).map(|()| f)
        });
        match (fresh, self.hook) {
            (Ok(f), _) => Ok(f),
            (Err(why), Hook::Validate) => {
                t.action = Some(asker::recorded_action(&who.actions));
                let message = format!("scimgate: {why}; decision {}", t.decision_id);
                Err(Box::new(deny_unjudged(t, why, message)))
            }
            (Err(_), Hook::Mutate) => Ok(Vec::new()),
        }
    }

    /// Nothing to decide: allowed, and our keys stay as the stored object has them.
    pub fn unchanged(&self) -> Answer {
        match (self.hook, &self.req.old_object) {
            (Hook::Mutate, Some(old)) => patched(Answer::allow(), stamp::restore(self.subject.obj, old)),
            _ => Answer::allow(),
        }
    }

    /// What the run executes, read as its controller reads it — with Argo's `workflowDefaults`
    /// merged under it; a Tekton child its admitted parent covered is judged as the parent was.
    /// What cannot be read so is refused in every mode (a way around the policy, not a policy
    /// question). Returns why a child is judged on its own, if it is.
    pub fn what_runs(&self, who: &Who, t: &mut DecisionDraft) -> Stage<Option<String>> {
        let (kind, obj) = (self.kind, self.subject.obj);
        let defaults = self.lookups.argo_defaults.as_deref();
        let with_defaults = match defaults {
            Some(Defaults::Known(Some(d))) => pipeline_run::with_workflow_defaults(kind, obj, d),
            _ => None,
        };
        let mut runs = pipeline_run::runs_since(
            kind,
            with_defaults.as_ref().unwrap_or(obj),
            self.req.old_object.as_ref(),
        )
        .map_err(|why| refuse(self.req, &who.asker, kind, who.action(), &why.to_string(), t))?;
        if let Some(Defaults::Unknown(why)) = defaults {
            // Whatever account they set is unknown: one only `*` matches.
            runs.run_as
                .push(format!("whatever Argo's workflowDefaults set ({why})"));
        }
        let mut uncovered = None;
        if let Some(Ok(owner)) = &self.lookups.owner {
            if owner.kind == Kind::PipelineRun {
                match tekton_child::covered(kind, obj, &owner.object, owner.pipeline.as_ref()) {
                    Ok(parent) => runs = parent,
                    Err(why) => uncovered = Some(why),
                }
            }
        }
        t.run_as = runs.run_as;
        t.templates = runs.templates;
        Ok(uncovered)
    }

    /// The verdict of the policy on every action, for the person and the run, failing closed when
    /// the directory is too far behind and the configuration says so.
    pub fn verdict(&self, who: &Who, uncovered: Option<String>, t: &mut DecisionDraft) -> Judged {
        if let Some((id, groups)) = verdict::person_of(&who.asker) {
            t.user_id = Some(id.to_string());
            t.groups = groups.to_vec();
        }
        t.acting_for = verdict::first_sponsor(&who.asker);
        let submitted = self
            .req
            .old_object
            .as_ref()
            .and_then(|old| object::verified(&self.st.verifier, old, Entry::SUBMIT))
            .and_then(Result::ok);
        t.submitter_id = submitted.as_ref().map(|c| c.sub.clone()).filter(|s| !s.is_empty());
        let submitted_for = crate::identity::submitted_for(
            &self.snap,
            &self.policy,
            t.submitter_id.as_deref(),
            submitted.as_ref().map_or("", |c| c.on_behalf_of.as_str()),
        );
        let freshness = &self.st.freshness;
        let stale_age = freshness.stale_age();
        let fail_closed = stale_age
            .filter(|_| freshness.when_stale == crate::config::WhenStale::Deny)
            .map(|age| freshness.describe_stale(age));
        let run = verdict::Run {
            kind: self.kind,
            namespace: self.subject.namespace,
            run_as: &t.run_as,
            templates: &t.templates,
            submitter_id: t.submitter_id.clone(),
            submitted_for,
        };
        Judged {
            verdict: verdict::judge(&self.policy, &who.asker, &who.actions, &run, fail_closed),
            stale_age,
            uncovered,
        }
    }

    /// The answer to the verdict: allowed (with a warning when the directory is behind), refused
    /// (ends the request), or — in a dry-run namespace — allowed with the refusal as a warning.
    /// Returns the decision per action for the stamps.
    pub fn answer(&self, who: &Who, judged: Judged, t: &mut DecisionDraft) -> Stage<(Answer, Vec<(Action, String)>)> {
        let (answer, decisions) = match judged.verdict {
            Verdict::Allowed {
                decisions,
                rule,
                on_behalf_of,
            } => {
                t.outcome = Some(Outcome::Allowed);
                t.rule = Some(rule);
                t.on_behalf_of = on_behalf_of;
                if let Some(note) = &who.asker.offboarded_note {
                    t.reason = note.clone();
                }
                let mut a = Answer::allow();
                if let Some(age) = judged.stale_age {
                    let stale = self.st.freshness.describe_stale(age);
                    a.warnings.push(short_warning_text(&format!("scimgate: {stale}")));
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
                let why = match (&who.adopted, refused, &judged.uncovered) {
                    (Some(a), Action::Delete, _) => format!("{a}, so it is judged as a delete: {why}"),
                    (_, _, Some(u)) => format!("{why} (judged on its own: {u})"),
                    _ => why,
                };
                if !t.dry_run_mode {
                    return Err(Box::new(refuse(self.req, &who.asker, self.kind, refused, &why, t)));
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
        // kube-apiserver keeps only the status of a status write and drops whatever a webhook
        // changed in the metadata (apiextensions-apiserver `status_strategy.go`
        // `PrepareForUpdate`): no stamp can stand there, so none is made; the decision record is
        // this write's trace, and `audit who` lists it by the object.
        if self.req.sub_resource == "status" && t.reason.is_empty() {
            t.reason = "a write of the status subresource, which keeps no stamp".into();
        }
        Ok((answer, decisions))
    }

    /// The stamps: `/validate` checks that the ones it sees were made for this decision and
    /// this spec; `/mutate` keeps them when they were (a re-invocation), and makes them
    /// otherwise — or, with nobody to stamp for, leaves none a request brought.
    pub fn stamps(
        &self,
        mut answer: Answer,
        who: &Who,
        fresh: &[Fresh],
        decisions: &[(Action, String)],
        t: &mut DecisionDraft,
    ) -> Answer {
        let digest = pipeline_run::runs_digest(self.kind, self.subject.obj);
        if self.hook == Hook::Validate {
            if let Some(why) = fresh.iter().find_map(|f| attestations::mismatch(f, decisions, &digest)) {
                return deny_unjudged(t, why.clone(), format!("scimgate: {why}; decision {}", t.decision_id));
            }
            note_stamps(t, fresh.iter().map(|f| (f.entry.action, f.claims.sid.clone())));
            return answer;
        }
        if let Some(ids) = attestations::in_place(fresh, decisions, &digest) {
            note_stamps(t, ids);
            return answer;
        }
        if self.req.sub_resource == "status" {
            return answer;
        }
        answer.patch = self.made_stamps(who, decisions, &digest, t);
        if who.action() == Action::Submit && self.policy.identity.rewrite_argo_creator_labels && self.kind.is_argo() {
            if let Ok(p) = &who.asker.person {
                if let Some(id) = p.scim_id() {
                    let name = p.display();
                    answer
                        .patch
                        .extend(attestations::argo_creator_labels(self.subject.obj, id, &name));
                }
            }
        }
        answer
    }

    /// The patch `/mutate` answers with: a stamp per action for the person, signed now — on a
    /// refusal only for a new object (the dry-run denial it records); with nobody to stamp for, a
    /// new object keeps none of the keys it came with and an existing one the stored ones.
    fn made_stamps(
        &self,
        who: &Who,
        decisions: &[(Action, String)],
        digest: &str,
        t: &mut DecisionDraft,
    ) -> Vec<serde_json::Value> {
        let (subject, req) = (&self.subject, self.req);
        let refused = t.outcome != Some(Outcome::Allowed);
        match &who.asker.person {
            Ok(person) if !refused || req.operation == Operation::Create => {
                let author = attestations::author(&self.st.verifier, subject, digest);
                let stamps: Vec<stamp::NewStamp<'_>> = decisions
                    .iter()
                    .map(|(a, decision)| stamp::NewStamp {
                        action: *a,
                        kind: self.kind,
                        namespace: subject.namespace,
                        name: subject.name,
                        generate_name: subject.generate_name,
                        requester: &who.asker.requester,
                        who: person,
                        on_behalf_of: t.carried_by(*a),
                        author: author.as_ref().map(|(id, name)| (id.as_str(), name.as_str())),
                        owner_submitter: who.asker.owner_submitter.as_deref(),
                        decision: decision.clone(),
                        policy: &self.policy.digest,
                        digest,
                        authenticated: t.authenticated,
                        now: self.now,
                    })
                    .collect();
                let made = stamp::make(&self.st.signer, subject.obj, req.old_object.as_ref(), &stamps);
                note_stamps(t, made.sids);
                made.ops
            }
            _ => match &req.old_object {
                None => stamp::strip(subject.obj, self.kind),
                Some(old) => stamp::restore(subject.obj, old),
            },
        }
    }
}
