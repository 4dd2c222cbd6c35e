//! Who a request is from, in SCIM terms: strip the OIDC username prefix, find the user by the
//! configured attribute, and for the named delegate service accounts find the person they act
//! for. An agent — an `/Agents` resource whose `subject` the username is, or a User the policy
//! marks as one — comes with the active people among its owners, whose rights bound its own.
//! Never trusts `userInfo.groups`. No I/O: reads one directory snapshot.

use crate::directory::{Agent, ArgoClaim, Lookup, Snapshot, User};
use crate::policy::{Claim, Kind, MatchAttribute, Policy, Requester, Via};
use std::sync::Arc;

/// The Argo Server's labels naming the person it acts for (argo-workflows `workflow/common/common.go`):
/// who created the object…
pub const ARGO_CREATOR: &str = "workflows.argoproj.io/creator";
pub const ARGO_CREATOR_EMAIL: &str = "workflows.argoproj.io/creator-email";
pub const ARGO_CREATOR_USERNAME: &str = "workflows.argoproj.io/creator-preferred-username";
/// …who acted on it last, and how (`workflow/creator/creator.go` `LabelActor`).
pub const ARGO_ACTOR: &str = "workflows.argoproj.io/actor";
pub const ARGO_ACTOR_EMAIL: &str = "workflows.argoproj.io/actor-email";
pub const ARGO_ACTOR_USERNAME: &str = "workflows.argoproj.io/actor-preferred-username";
pub const ARGO_ACTION: &str = "workflows.argoproj.io/action";
/// The identity labels, creator's then actor's: subject, email, preferred username.
pub const ARGO_CREATOR_LABELS: [&str; 3] = [ARGO_CREATOR, ARGO_CREATOR_EMAIL, ARGO_CREATOR_USERNAME];
pub const ARGO_ACTOR_LABELS: [&str; 3] = [ARGO_ACTOR, ARGO_ACTOR_EMAIL, ARGO_ACTOR_USERNAME];
/// Every label the Argo Server writes to say who created or acted on a run, and how.
pub const ARGO_IDENTITY_LABELS: [&str; 7] = [
    ARGO_CREATOR,
    ARGO_CREATOR_EMAIL,
    ARGO_CREATOR_USERNAME,
    ARGO_ACTOR,
    ARGO_ACTOR_EMAIL,
    ARGO_ACTOR_USERNAME,
    ARGO_ACTION,
];

/// Why a request has no person behind it that may act. The messages end up in denials: they
/// say who, and what to fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("{0} is deactivated in the identity provider")]
    Deactivated(String),
    #[error("{who} was deleted from the identity provider at {at}")]
    Deleted { who: String, at: String },
    #[error("{0} is not a user provisioned from the identity provider")]
    Unknown(String),
    #[error("{who} matches {n} users in the identity provider; it must name one")]
    Ambiguous { who: String, n: usize },
    #[error("'{0}' is not a well-formed service account name")]
    BadServiceAccount(String),
    #[error("{0} acts for people, but the object has no {ARGO_CREATOR}* labels naming one")]
    NoCreatorLabels(String),
    #[error("{0} changed it without naming who acted (no {ARGO_ACTOR}* labels set by this request); an Argo Server in auth-mode=server writes no identity, so scimgate cannot attribute its actions")]
    NoActor(String),
    #[error("the label {label}={value} names no user provisioned from the identity provider")]
    NoLabelledUser { label: String, value: String },
    #[error("the label {label}={value} fits {first} and {second} as Argo rewrites names; it must name one person")]
    Colliding {
        label: String,
        value: String,
        first: String,
        second: String,
    },
    #[error("the labels {first} and {second} name different people")]
    Disagreeing { first: String, second: String },
    #[error("{sa} acts for people, and the {claim} claim names them, but this request sets no {label} label (the Argo Server writes it only when the person's sign-in carries that claim)")]
    NoAuthoritative {
        sa: String,
        claim: &'static str,
        label: &'static str,
    },
    #[error(
        "{username} did not sign in through the identity provider (no '{prefix}' prefix), so it has no SCIM identity"
    )]
    NoPrefix { username: String, prefix: String },
    #[error("the request carries no username")]
    NoUsername,
    #[error(
        "agent {agent} has no active owner to act for ({why}); an agent acts only within what an active owner may do"
    )]
    NoSponsor { agent: String, why: String },
    #[error("{0} is not an agent provisioned from the identity provider")]
    UnknownAgent(String),
    #[error("{username} is both agent {agent}'s subject and a user's name; it must name one")]
    AgentOrPerson { username: String, agent: String },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// How the requester was established.
#[derive(Debug, Clone, PartialEq)]
pub enum Resolved {
    /// A person, directly or through a delegate (`via` names the delegate service account).
    Person { requester: Requester, via: Option<String> },
    /// A service account acting for itself.
    ServiceAccount(Requester),
    /// A service account configured as `ownerStamp` delegate: the person comes from the
    /// object's stamp, which the caller verifies.
    OwnerStamp { namespace: String, name: String },
}

/// The folded displayNames of every group `id` is in, nested ones included.
fn groups_of(s: &Snapshot, id: &str) -> Vec<String> {
    s.groups_of(id)
        .into_iter()
        .map(|(g, _)| crate::model::name::fold(&g.display_name))
        .collect()
}

fn person(s: &Snapshot, u: &User) -> Requester {
    Requester::Person {
        id: u.record.id.to_string(),
        user_name: u.user_name.to_string(),
        groups: groups_of(s, &u.record.id),
    }
}

fn active(s: &Snapshot, policy: &Policy, u: &User, said: &str) -> Result<Requester> {
    if u.active {
        as_requester(s, policy, u)
    } else {
        Err(Error::Deactivated(said.to_string()))
    }
}

/// How many owners a refusal names, each with why they cannot sponsor; the rest are counted.
const OWNERS_NAMED: usize = 3;

/// Walk the active people among `owners` (Users, and the active user members of Groups, nested
/// ones included), in owner order, each once, handing each to `found` until it says stop; and
/// say why each owner walked that gave nobody does not. Users that are agents themselves
/// (`is_agent`) sponsor nobody: an agent acts for a person, never for another agent. Each group
/// is walked once whatever the owners: linear in the memberships.
fn walk_sponsors(
    s: &Snapshot,
    owners: &[Arc<str>],
    is_agent: &dyn Fn(&User) -> bool,
    found: &mut dyn FnMut(&Arc<User>) -> bool,
) -> Vec<String> {
    let mut seen: std::collections::HashSet<Arc<str>> = std::collections::HashSet::new();
    let mut walked: std::collections::HashSet<Arc<str>> = std::collections::HashSet::new();
    let mut gone = Vec::new();
    // Whether `u` is a new sponsor, and whether to stop.
    let mut take = |u: &Arc<User>| -> (bool, bool) {
        if u.active && !is_agent(u) && seen.insert(u.record.id.clone()) {
            (true, found(u))
        } else {
            (false, false)
        }
    };
    for o in owners {
        if let Some(u) = s.user(o) {
            if !u.active {
                gone.push(format!("{} is deactivated", u.user_name));
            } else if is_agent(u) {
                gone.push(format!("{} is an agent, not a person", u.user_name));
            }
            if take(u).1 {
                return gone;
            }
        } else if let Some(g) = s.group(o) {
            let mut any = false;
            let mut frontier = vec![g.record.id.clone()];
            while let Some(gid) = frontier.pop() {
                if !walked.insert(gid.clone()) {
                    continue;
                }
                for m in s.group(&gid).map(|g| g.members.as_slice()).unwrap_or_default() {
                    match s.user(m) {
                        Some(u) => {
                            let (new, stop) = take(u);
                            any |= new;
                            if stop {
                                return gone;
                            }
                        }
                        None if s.group(m).is_some() => frontier.push(m.clone()),
                        None => {}
                    }
                }
            }
            if !any {
                gone.push(format!("group {} has no active member", g.display_name));
            }
        } else {
            gone.push(format!("owner {o} was deleted from the identity provider"));
        }
    }
    if owners.is_empty() {
        gone.push("it lists no owners".into());
    }
    gone
}

/// Every sponsor among `owners` as the policy judges people ([`walk_sponsors`]), and why the
/// owners that give nobody do not. People whose direct groups are the same share one
/// computation of their nested groups.
fn sponsors_of(s: &Snapshot, owners: &[Arc<str>], is_agent: &dyn Fn(&User) -> bool) -> (Vec<Requester>, Vec<String>) {
    let mut sponsors = Vec::new();
    let mut closures: std::collections::HashMap<Vec<Arc<str>>, Vec<String>> = std::collections::HashMap::new();
    let gone = walk_sponsors(s, owners, is_agent, &mut |u| {
        let direct = s.direct_groups(&u.record.id);
        let groups = closures
            .entry(direct)
            .or_insert_with(|| groups_of(s, &u.record.id))
            .clone();
        sponsors.push(Requester::Person {
            id: u.record.id.to_string(),
            user_name: u.user_name.to_string(),
            groups,
        });
        false
    });
    (sponsors, gone)
}

/// Whether `u` is a User the policy marks as an agent.
pub fn marked_agent(policy: &Policy) -> impl Fn(&User) -> bool + '_ {
    move |u| agent_user_owners(policy, u).is_some()
}

fn describe_gone(mut gone: Vec<String>) -> String {
    let more = gone.len().saturating_sub(OWNERS_NAMED);
    gone.truncate(OWNERS_NAMED);
    if more > 0 {
        gone.push(format!("{more} more"));
    }
    gone.join("; ")
}

/// An agent with nobody to act for, for a run its owner started before: no sponsors, so the
/// policy judges it alone (`policy::evaluate`).
fn lone_agent(s: &Snapshot, id: &str, name: &str, agent_type: Option<&str>) -> Requester {
    Requester::Agent {
        id: id.to_string(),
        name: name.to_string(),
        agent_type: agent_type.map(crate::model::name::fold),
        groups: groups_of(s, id),
        sponsors: Vec::new(),
        owners: Vec::new(),
    }
}

/// An agent as the policy judges it: active, with at least one active person to act for.
fn agent_requester(
    s: &Snapshot,
    policy: &Policy,
    id: &str,
    name: &str,
    active: bool,
    agent_type: Option<&str>,
    owners: &[Arc<str>],
) -> Result<Requester> {
    if !active {
        return Err(Error::Deactivated(format!("agent {name}")));
    }
    let (sponsors, gone) = sponsors_of(s, owners, &marked_agent(policy));
    if sponsors.is_empty() {
        return Err(Error::NoSponsor {
            agent: name.to_string(),
            why: describe_gone(gone),
        });
    }
    let mut owner_ids: Vec<String> = owners
        .iter()
        .filter(|o| s.user(o).is_some())
        .map(|o| o.to_string())
        .collect();
    owner_ids.extend(sponsors.iter().filter_map(|p| p.scim_id()).map(str::to_string));
    owner_ids.sort();
    owner_ids.dedup();
    Ok(Requester::Agent {
        id: id.to_string(),
        name: name.to_string(),
        agent_type: agent_type.map(crate::model::name::fold),
        groups: groups_of(s, id),
        sponsors,
        owners: owner_ids,
    })
}

/// Whose run one an agent (or agent user) submitted counts as, for four eyes: the person its
/// stamp says it acted for, and everyone who owns or sponsors it now — any of them may have
/// driven it, so none of them may approve it. Empty for a run a person submitted.
pub fn submitted_for(s: &Snapshot, policy: &Policy, submitter: Option<&str>, on_behalf_of: &str) -> Vec<String> {
    let mut out: Vec<String> = Some(on_behalf_of)
        .filter(|p| !p.is_empty())
        .map(str::to_string)
        .into_iter()
        .collect();
    let owners = submitter.and_then(|id| match s.agent(id) {
        Some(a) => Some(a.owners.clone()),
        None => s.user(id).and_then(|u| agent_user_owners(policy, u)),
    });
    if let Some(owners) = owners {
        out.extend(owners.iter().filter(|o| s.user(o).is_some()).map(|o| o.to_string()));
        let (sponsors, _) = sponsors_of(s, &owners, &marked_agent(policy));
        out.extend(sponsors.iter().filter_map(Requester::scim_id).map(str::to_string));
    }
    out.sort();
    out.dedup();
    out
}

/// Why nobody among `owners` can sponsor an agent (every owner deactivated, deleted, an agent
/// itself (`is_agent`), or a group without an active member), or `None` while someone can:
/// offboarding treats such an agent as departed.
pub fn owners_gone(s: &Snapshot, owners: &[Arc<str>], is_agent: &dyn Fn(&User) -> bool) -> Option<String> {
    let mut any = false;
    let gone = walk_sponsors(s, owners, is_agent, &mut |_| {
        any = true;
        true
    });
    (!any).then(|| describe_gone(gone))
}

fn from_agent(s: &Snapshot, policy: &Policy, a: &Agent) -> Result<Requester> {
    agent_requester(
        s,
        policy,
        &a.record.id,
        &a.name,
        a.active,
        a.agent_type.as_deref(),
        &a.owners,
    )
}

/// Whether the policy marks user `u` an agent (`identity.agents.users`), and if so its owners:
/// the enterprise extension's `manager`. A lookup in what the directory read of the user.
pub fn agent_user_owners(policy: &Policy, u: &User) -> Option<Vec<Arc<str>>> {
    let rule = policy.identity.agents.users.as_ref()?;
    let value = u.mark(rule.attribute)?;
    rule.equals
        .iter()
        .any(|e| e == value)
        .then(|| u.manager.iter().cloned().collect())
}

/// A user as the policy judges them: a person, or, when the policy marks them an agent, the
/// agent with its manager as owner. Every way to a user goes through here.
fn as_requester(s: &Snapshot, policy: &Policy, u: &User) -> Result<Requester> {
    match agent_user_owners(policy, u) {
        Some(owners) => agent_requester(s, policy, &u.record.id, &u.user_name, u.active, None, &owners),
        None => Ok(person(s, u)),
    }
}

/// The one agent whose `subject` is `username`, if any.
fn agent_by_subject<'a>(s: &'a Snapshot, username: &str) -> Result<Option<&'a Arc<Agent>>> {
    let ids = s.agents_by_subject(username);
    let agents: Vec<&Arc<Agent>> = ids.iter().filter_map(|id| s.agent(id)).collect();
    match agents.as_slice() {
        [] => Ok(None),
        [a] => Ok(Some(*a)),
        _ => Err(Error::Ambiguous {
            who: username.to_string(),
            n: agents.len(),
        }),
    }
}

/// Find a person (or agent user) by the policy's match attribute.
pub fn find_person(s: &Snapshot, policy: &Policy, value: &str) -> Result<Requester> {
    let attr = policy.identity.match_attribute;
    match attr {
        MatchAttribute::UserName => match s.lookup_user_name(value) {
            Lookup::Active(u) | Lookup::Inactive(u) => active(s, policy, u, value),
            Lookup::Deleted(t) => Err(Error::Deleted {
                who: value.to_string(),
                at: t.deleted_at.to_string(),
            }),
            Lookup::Unknown => Err(Error::Unknown(value.to_string())),
        },
        MatchAttribute::Emails | MatchAttribute::ExternalId | MatchAttribute::Id => {
            let ids = match attr {
                MatchAttribute::Emails => s.users_by_email(value),
                MatchAttribute::ExternalId => s.by_external_id(crate::model::ResourceType::User, value),
                _ => vec![Arc::from(value)],
            };
            let users: Vec<&Arc<User>> = ids.iter().filter_map(|id| s.user(id)).collect();
            match users.as_slice() {
                [u] => active(s, policy, u, value),
                [] => Err(Error::Unknown(value.to_string())),
                _ => Err(Error::Ambiguous {
                    who: value.to_string(),
                    n: users.len(),
                }),
            }
        }
    }
}

/// The person (or agent) a verified stamp names (`sub`, a SCIM id), with why they may no longer
/// act (`None` while they may): the submitter of an owner whose runs a controller creates (what
/// becomes of a run of someone deactivated since is the policy's `whenOwnerOffboarded`). An
/// agent without an owner to act for is as good as deactivated: judged as itself alone then, as
/// a deactivated person's run is judged as them.
pub fn stamped_person(s: &Snapshot, policy: &Policy, id: &str) -> Result<(Requester, Option<String>)> {
    let lone = |id: &str, name: &str, agent_type: Option<&str>, e: Error| {
        let why = match e {
            Error::NoSponsor { why, .. } => format!("has no active owner to act for ({why})"),
            _ => "is deactivated in the identity provider".to_string(),
        };
        (lone_agent(s, id, name, agent_type), Some(why))
    };
    if let Some(a) = s.agent(id) {
        return Ok(match from_agent(s, policy, a) {
            Ok(r) => (r, None),
            Err(e) => lone(&a.record.id, &a.name, a.agent_type.as_deref(), e),
        });
    }
    match s.user(id) {
        Some(u) if u.active => Ok(match as_requester(s, policy, u) {
            Ok(r) => (r, None),
            Err(e) => lone(&u.record.id, &u.user_name, None, e),
        }),
        Some(u) => Ok((person(s, u), Some("is deactivated in the identity provider".into()))),
        None => Err(Error::Unknown(format!("SCIM id {id}"))),
    }
}

type Labels = serde_json::Map<String, serde_json::Value>;

fn label<'a>(labels: Option<&'a Labels>, k: &str) -> Option<&'a str> {
    labels
        .and_then(|l| l.get(k))
        .and_then(|v| v.as_str())
        .filter(|v| !v.is_empty())
}

/// The claim an Argo identity label carries.
fn claim_of(key: &str) -> ArgoClaim {
    if key.ends_with("-email") {
        ArgoClaim::Email
    } else if key.ends_with("-preferred-username") {
        ArgoClaim::PreferredUsername
    } else {
        ArgoClaim::Subject
    }
}

/// The label of `claim` among Argo's creator (`actor: false`) or actor labels.
fn authoritative_label(claim: Claim, actor: bool) -> &'static str {
    match (claim, actor) {
        (Claim::Email, false) => ARGO_CREATOR_EMAIL,
        (Claim::Email, true) => ARGO_ACTOR_EMAIL,
        (Claim::Subject, false) => ARGO_CREATOR,
        (Claim::Subject, true) => ARGO_ACTOR,
    }
}

/// The one person Argo's labels name: the `authoritative` label must be among `keys` and fit
/// exactly one person, matched the way Argo writes that claim; every other label of `keys` that
/// fits anyone must fit that person too (one that fits nobody is passed over: an IdP's subject is
/// often an id SCIM never saw, and a `preferred_username` may be anything). A label a user can
/// set alone never names anyone by itself.
fn labelled_person(
    (s, policy): (&Snapshot, &Policy),
    sa: &str,
    claim: Claim,
    labels: Option<&Labels>,
    keys: &[&'static str],
    authoritative: &'static str,
) -> Result<Requester> {
    let value = keys
        .contains(&authoritative)
        .then(|| label(labels, authoritative))
        .flatten()
        .ok_or_else(|| Error::NoAuthoritative {
            sa: sa.to_string(),
            claim: claim.as_str(),
            label: authoritative,
        })?;
    let ids = s.users_by_argo_label(claim_of(authoritative), value);
    let users: Vec<&Arc<User>> = ids.iter().filter_map(|id| s.user(id)).collect();
    let person = match users.as_slice() {
        [u] => *u,
        [] => {
            return Err(Error::NoLabelledUser {
                label: authoritative.to_string(),
                value: value.to_string(),
            })
        }
        [a, b, ..] => {
            return Err(Error::Colliding {
                label: authoritative.to_string(),
                value: value.to_string(),
                first: a.user_name.to_string(),
                second: b.user_name.to_string(),
            })
        }
    };
    for k in keys.iter().filter(|k| **k != authoritative) {
        let Some(v) = label(labels, k) else { continue };
        let others = s.users_by_argo_label(claim_of(k), v);
        if !others.is_empty() && !others.contains(&person.record.id) {
            return Err(Error::Disagreeing {
                first: format!("{authoritative}={value}"),
                second: format!("{k}={v}"),
            });
        }
    }
    active(s, policy, person, &person.user_name)
}

/// The person the Argo Server acts for, named by the delegate's authoritative claim. On CREATE,
/// its `creator*` labels. On UPDATE, its `actor*` labels — those this request set (they differ
/// from the stored object's: Stop and Terminate are merge patches, so a label the acting
/// person's claims lack keeps the previous actor's value and is not theirs), which must include
/// the authoritative one. When the request sets none, the same person acted again (every Argo
/// Server write of a Workflow or template labels the actor, with the values already there):
/// the stored labels name them. A CronWorkflow's suspend and resume write no label at all
/// ([`ArgoTrace::None`]): nobody is named (`Ok(None)`), and the Argo Server answers for it.
fn argo_server_person(
    (s, policy): (&Snapshot, &Policy),
    sa: &str,
    claim: Claim,
    (kind, trace): (Option<Kind>, ArgoTrace),
    labels: Option<&Labels>,
    old: Option<Option<&Labels>>,
) -> Result<Option<Requester>> {
    let Some(old) = old else {
        return labelled_person(
            (s, policy),
            sa,
            claim,
            labels,
            &ARGO_CREATOR_LABELS,
            authoritative_label(claim, false),
        )
        .map(Some)
        .map_err(|e| match e {
            Error::NoAuthoritative { .. } if ARGO_CREATOR_LABELS.iter().all(|k| label(labels, k).is_none()) => {
                Error::NoCreatorLabels(sa.to_string())
            }
            e => e,
        });
    };
    let changed: Vec<&'static str> = ARGO_ACTOR_LABELS
        .into_iter()
        .filter(|k| label(labels, k).is_some() && label(labels, k) != label(old, k))
        .collect();
    let keys: &[&'static str] = match (changed.is_empty(), trace) {
        (false, _) => &changed,
        // A change Argo writes no actor for (a CronWorkflow's suspend or resume): nobody.
        (true, ArgoTrace::None) => return Ok(None),
        (true, ArgoTrace::Actor) if kind.is_none() => return Err(Error::NoActor(sa.to_string())),
        (true, ArgoTrace::Actor) => &ARGO_ACTOR_LABELS,
    };
    if ARGO_ACTOR_LABELS.iter().all(|k| label(labels, k).is_none()) {
        return Err(Error::NoActor(sa.to_string()));
    }
    labelled_person((s, policy), sa, claim, labels, keys, authoritative_label(claim, true)).map(Some)
}

/// Whether the Argo Server writes the acting person into its labels for a change: it does for
/// every write of a Workflow and for template and CronWorkflow edits (`creator.LabelActor`), not
/// for a CronWorkflow's suspend and resume (`server/cronworkflow/cron_workflow_server.go`
/// `setCronWorkflowSuspend`: a merge patch of `spec.suspend` alone).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArgoTrace {
    Actor,
    None,
}

/// Whether an Argo identity label's value names someone other than the person `id` (a value that
/// fits nobody names no one: an IdP subject SCIM never saw).
pub fn names_someone_else(s: &Snapshot, key: &str, value: &str, id: &str) -> bool {
    let ids = s.users_by_argo_label(claim_of(key), value);
    !ids.is_empty() && !ids.iter().any(|x| **x == *id)
}

/// Resolve the requester of one admission request about an object of `kind` (`None`: not one of
/// ours). `old_labels` is `Some` on UPDATE (the stored object's labels).
pub fn resolve(
    s: &Snapshot,
    policy: &Policy,
    username: &str,
    kind: (Option<Kind>, ArgoTrace),
    labels: Option<&Labels>,
    old_labels: Option<Option<&Labels>>,
) -> Result<Resolved> {
    if let Some(sa) = username.strip_prefix("system:serviceaccount:") {
        let (namespace, name) = sa
            .split_once(':')
            .ok_or_else(|| Error::BadServiceAccount(username.to_string()))?;
        let delegate = policy.delegate(namespace, name);
        return match delegate.map(|d| d.via) {
            Some(Via::ArgoServer | Via::ArgoCreatorLabels) => {
                let claim = delegate.map(|d| d.claim).unwrap_or_default();
                Ok(
                    match argo_server_person((s, policy), username, claim, kind, labels, old_labels)? {
                        Some(requester) => Resolved::Person {
                            requester,
                            via: Some(format!("{namespace}:{name}")),
                        },
                        None => Resolved::ServiceAccount(Requester::ServiceAccount {
                            namespace: namespace.into(),
                            name: name.into(),
                        }),
                    },
                )
            }
            Some(Via::OwnerStamp) => Ok(Resolved::OwnerStamp {
                namespace: namespace.into(),
                name: name.into(),
            }),
            None => match agent_by_subject(s, username)? {
                // A service account an agent is bound to (its `subject`): the agent.
                Some(a) => Ok(Resolved::Person {
                    requester: from_agent(s, policy, a)?,
                    via: None,
                }),
                None => Ok(Resolved::ServiceAccount(Requester::ServiceAccount {
                    namespace: namespace.into(),
                    name: name.into(),
                })),
            },
        };
    }
    if let Some(agent) = policy
        .identity
        .agents
        .username_prefix
        .as_deref()
        .and_then(|p| username.strip_prefix(p))
    {
        let a = s
            .by_unique_key(crate::model::ResourceType::Agent, &crate::model::name::fold(agent))
            .and_then(|id| s.agent(id))
            .ok_or_else(|| Error::UnknownAgent(agent.to_string()))?;
        return Ok(Resolved::Person {
            requester: from_agent(s, policy, a)?,
            via: None,
        });
    }
    let name = match &policy.identity.username_prefix {
        Some(prefix) => username.strip_prefix(prefix.as_str()).ok_or_else(|| Error::NoPrefix {
            username: username.to_string(),
            prefix: prefix.clone(),
        })?,
        None => username,
    };
    if name.is_empty() {
        return Err(Error::NoUsername);
    }
    let person = find_person(s, policy, name);
    if let Some(a) = agent_by_subject(s, name)? {
        // A username that is an agent's subject and also finds a user names neither.
        if matches!(person, Ok(_) | Err(Error::Deactivated(_) | Error::NoSponsor { .. })) {
            return Err(Error::AgentOrPerson {
                username: name.to_string(),
                agent: a.name.to_string(),
            });
        }
        return Ok(Resolved::Person {
            requester: from_agent(s, policy, a)?,
            via: None,
        });
    }
    person.map(|requester| Resolved::Person { requester, via: None })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ResourceType;
    use crate::store::{Change, Record};
    use serde_json::json;

    fn put(rt: ResourceType, id: &str, key: &str, body: serde_json::Value) -> Change {
        Change::Put {
            record: Record {
                rt,
                id: id.into(),
                unique_key: crate::model::name::fold(key).into(),
                version: 1,
                body: body.to_string().into(),
            },
            previous: None,
        }
    }

    fn user(id: &str, name: &str, active: bool) -> Change {
        put(
            ResourceType::User,
            id,
            name,
            json!({"userName": name, "active": active}),
        )
    }

    fn directory(alice_active: bool) -> Snapshot {
        let mut s = Snapshot::default();
        s.apply(&[
            user("u1", "alice", alice_active),
            user("u2", "bob", true),
            user("u3", "carol", false),
            put(ResourceType::Group, "g1", "ml", json!({"displayName": "ml", "members": [{"value": "u1"}, {"value": "a1"}]})),
            put(ResourceType::Group, "g2", "leavers", json!({"displayName": "leavers", "members": [{"value": "u3"}]})),
            put(
                ResourceType::Agent,
                "a1",
                "pr-bot",
                json!({"name": "pr-bot", "agentType": "Assistant", "subject": "bot-sub-1", "owners": [{"value": "u1"}]}),
            ),
            put(
                ResourceType::Agent,
                "a2",
                "team-bot",
                json!({"name": "team-bot", "subject": "system:serviceaccount:ci:team-bot", "owners": [{"value": "g2"}, {"value": "g1"}]}),
            ),
        ]);
        s
    }

    fn policy(extra: &str) -> Policy {
        let text = format!(
            "apiVersion: scimgate.io/v1\nkind: Policy\nidentity:\n  usernamePrefix: \"oidc:\"\n{extra}rules:\n  - name: a\n    allow: [submit]\n    groups: [ml]\n"
        );
        Policy::parse(&text, "p").expect("policy")
    }

    fn resolve_requester(s: &Snapshot, p: &Policy, username: &str) -> Result<Requester> {
        match resolve(s, p, username, (None, ArgoTrace::Actor), None, None)? {
            Resolved::Person { requester, .. } | Resolved::ServiceAccount(requester) => Ok(requester),
            Resolved::OwnerStamp { .. } => Err(Error::NoUsername),
        }
    }

    #[test]
    fn an_agent_is_found_by_its_subject_with_its_sponsors() {
        let s = directory(true);
        let p = policy("");
        let Requester::Agent {
            id,
            agent_type,
            groups,
            sponsors,
            ..
        } = resolve_requester(&s, &p, "oidc:bot-sub-1").expect("agent")
        else {
            panic!("not an agent")
        };
        assert_eq!((id.as_str(), agent_type.as_deref()), ("a1", Some("assistant")));
        assert_eq!(groups, vec!["ml".to_string()]);
        assert_eq!(
            sponsors.iter().map(Requester::display).collect::<Vec<_>>(),
            vec!["alice"]
        );
        // A service account the agent is bound to is the agent; its group owners' active
        // members sponsor it (carol in `leavers` is deactivated, alice in `ml` is not).
        let Requester::Agent { sponsors, .. } =
            resolve_requester(&s, &p, "system:serviceaccount:ci:team-bot").expect("agent")
        else {
            panic!("not an agent")
        };
        assert_eq!(
            sponsors.iter().map(Requester::display).collect::<Vec<_>>(),
            vec!["alice"]
        );
    }

    #[test]
    fn an_agent_whose_owners_are_gone_is_refused_naming_why() {
        let s = directory(false);
        let p = policy("");
        let e = resolve_requester(&s, &p, "oidc:bot-sub-1").expect_err("no sponsor");
        assert_eq!(
            e.to_string(),
            "agent pr-bot has no active owner to act for (alice is deactivated); an agent acts only within what an active owner may do"
        );
        let e = resolve_requester(&s, &p, "system:serviceaccount:ci:team-bot").expect_err("no sponsor");
        assert!(
            e.to_string()
                .contains("(group leavers has no active member; group ml has no active member)"),
            "{e}"
        );
        let none = |_: &User| false;
        assert!(owners_gone(&s, &s.agent("a1").expect("a1").owners, &none).is_some());
        let d = directory(true);
        assert!(owners_gone(&d, &d.agent("a1").expect("a1").owners, &none).is_none());
    }

    #[test]
    fn agents_by_name_prefix_and_agent_users_by_attribute() {
        let mut s = directory(true);
        s.apply(&[put(
            ResourceType::User,
            "u9",
            "deploy-agent",
            json!({"userName": "deploy-agent", "userType": "Agent",
                   crate::model::resource::ENTERPRISE_USER: {"manager": {"value": "u2"}}}),
        )]);
        let p = policy(
            "  agents:\n    usernamePrefix: \"agent:\"\n    users:\n      attribute: userType\n      equals: [agent]\n",
        );
        assert!(matches!(resolve_requester(&s, &p, "agent:PR-BOT"), Ok(Requester::Agent { id, .. }) if id == "a1"));
        assert_eq!(
            resolve_requester(&s, &p, "agent:nobody")
                .expect_err("unknown")
                .to_string(),
            "nobody is not an agent provisioned from the identity provider"
        );
        let Requester::Agent { sponsors, .. } = resolve_requester(&s, &p, "oidc:deploy-agent").expect("agent user")
        else {
            panic!("not an agent")
        };
        assert_eq!(sponsors.iter().map(Requester::display).collect::<Vec<_>>(), vec!["bob"]);
        // Without the marker it is an ordinary person.
        assert!(matches!(
            resolve_requester(&s, &policy(""), "oidc:deploy-agent"),
            Ok(Requester::Person { .. })
        ));
        // A subject that is also a userName names neither.
        s.apply(&[user("u8", "bot-sub-1", true)]);
        assert!(matches!(
            resolve_requester(&s, &p, "oidc:bot-sub-1"),
            Err(Error::AgentOrPerson { .. })
        ));
    }
}
