//! Who asked, the stage of a decision that names the requester: a person (directly, or through a
//! delegate acting for them), a service account acting for itself, a controller driving its own
//! runs, or the person behind a run a controller starts for an owner. Also guards Argo's identity
//! labels, which nobody but the Argo Server may write. Reads the directory snapshot and the
//! owner the cluster stores; no I/O of its own.

use super::{OwnerLookup, Subject};
use crate::cluster::owners;
use crate::directory::Snapshot;
use crate::identity::{self, Resolved};
use crate::policy::{self, Action, Policy, Requester};
use crate::stamp::{object, Entry, Verifier};
use serde_json::Value;

/// Who a request is from.
pub struct Asker {
    /// The person or service account to judge, or why there is none that may act.
    pub person: Result<Requester, String>,
    /// Who asked, as a stamp binds it: the person's SCIM id, or the service account's username
    /// (a delegate acting for the person in `sub`).
    pub requester: String,
    pub sub: String,
    /// A controller's own update of a run (an `ownerStamp` delegate): no one's act.
    pub controller_update: bool,
    /// A run admitted for an owner's deactivated submitter (`whenOwnerOffboarded: continue`): why.
    pub offboarded_note: Option<String>,
    /// A controller-created run judged as whoever last changed its owner's spec: the owner's
    /// submitter, when that is someone else (the stamp names both).
    pub owner_submitter: Option<String>,
}

/// Name the requester of `req`.
pub fn identify(
    verifier: &Verifier,
    snap: &Snapshot,
    policy: &Policy,
    subject: &Subject<'_>,
    owner: &OwnerLookup,
) -> Asker {
    let req = subject.req;
    let username = req.user.username.as_str();
    let resolved = identity::resolve(
        snap,
        policy,
        username,
        (Some(subject.kind), argo_trace(subject)),
        subject.labels,
        subject.old_labels,
    );
    let controller_update =
        matches!(resolved, Ok(Resolved::OwnerStamp { .. })) && req.operation == super::Operation::Update;
    let mut offboarded_note = None;
    let mut owner_submitter = None;
    let person: Result<Requester, String> = match resolved {
        Ok(Resolved::Person { requester, .. }) | Ok(Resolved::ServiceAccount(requester)) => Ok(requester),
        Ok(Resolved::OwnerStamp {
            namespace: ns,
            name: sa,
        }) if !controller_update => owner_person(verifier, snap, policy, username, owner)
            .map(|p| {
                offboarded_note = p.note;
                owner_submitter = p.owner_submitter;
                p.who
            })
            .map_err(|why| format!("{ns}:{sa} creates runs for their owner's submitter, but {why}")),
        Ok(Resolved::OwnerStamp { .. }) => Err(String::new()),
        Err(why) => Err(why.to_string()),
    };
    let sub = match &person {
        Ok(who) => who.scim_id().unwrap_or_default().to_string(),
        _ => String::new(),
    };
    Asker {
        requester: if username.starts_with("system:serviceaccount:") {
            username.to_string()
        } else {
            sub.clone()
        },
        sub,
        person,
        controller_update,
        offboarded_note,
        owner_submitter,
    }
}

/// What the Argo Server writes of the person for this change ([`identity::ArgoTrace`]): nothing
/// for a CronWorkflow's suspend or resume (only `spec.suspend` changes), the actor otherwise.
fn argo_trace(subject: &Subject<'_>) -> identity::ArgoTrace {
    let Some(old) = &subject.req.old_object else {
        return identity::ArgoTrace::Actor;
    };
    let spec = |o: &Value| {
        let mut s = o.get("spec").cloned().unwrap_or(Value::Null);
        if let Some(m) = s.as_object_mut() {
            m.remove("suspend");
        }
        s
    };
    let only_suspend = subject.kind == crate::policy::Kind::CronWorkflow
        && old.get("spec").and_then(|s| s.get("suspend")) != subject.obj.get("spec").and_then(|s| s.get("suspend"))
        && spec(old) == spec(subject.obj);
    if only_suspend {
        identity::ArgoTrace::None
    } else {
        identity::ArgoTrace::Actor
    }
}

/// Argo's identity labels are not anyone's to edit: the creator's never change after CREATE, and
/// the actor's are written only by the Argo Server (its delegate) — or, in its client mode, where
/// it calls the API server with the person's own token, by that person naming themselves: an
/// actor label whose value names someone else is refused. The label changed, if any.
pub fn edited_identity_label(
    policy: &Policy,
    snap: &Snapshot,
    subject: &Subject<'_>,
    asker: &Asker,
) -> Option<&'static str> {
    let old = subject.old_labels?;
    let argo_server = policy
        .delegate_for(&subject.req.user.username)
        .is_some_and(|d| matches!(d.via, policy::Via::ArgoServer | policy::Via::ArgoCreatorLabels));
    let value = |l: Option<&serde_json::Map<String, Value>>, k: &str| l.and_then(|l| l.get(k)).cloned();
    let changed = |k: &str| value(subject.labels, k) != value(old, k);
    let theirs = |k: &str| match (&asker.person, value(subject.labels, k)) {
        // Removed (a claim their sign-in lacks): it names no one.
        (Ok(Requester::Person { id, .. }), None) => !id.is_empty(),
        (Ok(Requester::Person { id, .. }), Some(Value::String(v))) => !identity::names_someone_else(snap, k, &v, id),
        _ => false,
    };
    identity::ARGO_CREATOR_LABELS
        .into_iter()
        .find(|k| changed(k))
        .or_else(|| {
            identity::ARGO_ACTOR_LABELS
                .into_iter()
                .filter(|_| !argo_server)
                .find(|k| changed(k) && !theirs(k))
        })
}

/// The person behind a controller-created run, and what the run's stamp says of its owner.
struct OwnerPerson {
    who: Requester,
    note: Option<String>,
    owner_submitter: Option<String>,
}

/// The person behind a controller-created run: the one the verified stamps of its owner, as the
/// cluster stores it, name — never a stamp the child carries (anyone who can edit an owner can
/// paste a stamp into what it copies onto its runs, and one `generateName` can be signed for two
/// owners). The owner's submit stamp must name that owner (kind, namespace, name); it may be of
/// any age (a CronWorkflow spawns months after it was stamped). The run is judged as, and
/// belongs to, whoever last changed what the owner runs — the submitter, or a later editor whose
/// update stamp says so — and its stamp names the submitter too. A person deactivated since is
/// the policy's `whenOwnerOffboarded`: refused, or admitted with a note saying so.
fn owner_person(
    verifier: &Verifier,
    snap: &Snapshot,
    policy: &Policy,
    username: &str,
    owner: &OwnerLookup,
) -> Result<OwnerPerson, String> {
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
    let (kind, ns, name, gen) = (
        found.kind.as_str(),
        meta("namespace"),
        meta("name"),
        meta("generateName"),
    );
    let submitted = match object::verified(verifier, &found.object, Entry::SUBMIT) {
        Some(Ok(c)) => c,
        Some(Err(e)) => return Err(format!("the stamp on its owner {kind} {ns}/{name} does not hold: {e}")),
        None => return Err(format!("its owner {kind} {ns}/{name} carries no scimgate submit stamp")),
    };
    submitted
        .places(kind, ns, name, gen)
        .map_err(|m| format!("the stamp on its owner {kind} {ns}/{name} does not belong to it: {m}"))?;
    let latest = object::latest(verifier, &found.object, kind).unwrap_or_else(|| submitted.clone());
    let (author, author_name) = latest.author();
    let owner_submitter = (author != submitted.sub || author_name != submitted.name).then(|| submitted.name.clone());
    if author.is_empty() {
        // A service account that submitted for itself (a CI bot's PipelineRun): its runs'
        // children are its own, judged by the rules for that account. A delegate never submits
        // for itself (its stamps name the person it acted for).
        let account = author_name
            .strip_prefix("system:serviceaccount:")
            .and_then(|r| r.split_once(':'))
            .filter(|(sa_ns, sa)| !sa_ns.is_empty() && !sa.is_empty() && policy.delegate(sa_ns, sa).is_none());
        return match account {
            Some((sa_ns, sa)) => Ok(OwnerPerson {
                who: Requester::ServiceAccount {
                    namespace: sa_ns.to_string(),
                    name: sa.to_string(),
                },
                note: None,
                owner_submitter,
            }),
            None => Err(format!("the stamp on its owner {kind} {ns}/{name} names no person")),
        };
    }
    let (role, noun) = if owner_submitter.is_some() {
        ("last changed what runs in", "the person who last changed what runs in")
    } else {
        ("submitted", "the submitter of")
    };
    let (who, gone) = identity::stamped_person(snap, policy, author)
        .map_err(|e| format!("{noun} its owner {kind} {ns}/{name}: {e}"))?;
    let Some(gone) = gone else {
        return Ok(OwnerPerson {
            who,
            note: None,
            owner_submitter,
        });
    };
    let user_name = match &who {
        Requester::Agent { name, .. } => format!("agent {name}"),
        _ => who.display(),
    };
    match policy.when_owner_offboarded(policy.delegate_for(username), found.kind) {
        policy::WhenOwnerOffboarded::Stop => Err(format!(
            "{user_name}, who {role} its owner {kind} {ns}/{name}, {gone}, and whenOwnerOffboarded is stop: it starts no new run"
        )),
        policy::WhenOwnerOffboarded::Continue => Ok(OwnerPerson {
            who,
            note: Some(format!(
                "{user_name}, who {role} its owner {kind} {ns}/{name}, {gone}; admitted because whenOwnerOffboarded is continue (the run finishes)"
            )),
            owner_submitter,
        }),
    }
}

/// Why the owners a person's update adds (`Adoption`) make it a delete: one that does not exist,
/// cannot be looked up, or whose verified submit stamp names someone else. `None` when every
/// added owner is the asker's own.
pub fn adopts_against(verifier: &Verifier, asker: &Asker, adoptions: &[super::Adoption]) -> Option<String> {
    adoptions.iter().find_map(|a| {
        let found = match &a.found {
            Ok(f) => f,
            Err(why) => return Some(format!("it adds the owner {}: {why}", a.owner)),
        };
        let submitter = object::verified(verifier, &found.object, Entry::SUBMIT)
            .and_then(Result::ok)
            .map(|c| c.sub);
        match submitter {
            Some(s) if !s.is_empty() && s == asker.sub => None,
            _ => Some(format!(
                "it adds the owner {}, which is not theirs: when it is deleted, the garbage collector deletes this object too",
                a.owner
            )),
        }
    })
}

/// The action a refusal before judging is recorded under: the one the request is named for.
pub fn recorded_action(actions: &[Action]) -> Action {
    actions.first().copied().unwrap_or(Action::Update)
}
