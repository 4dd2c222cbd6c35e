//! `evaluate`: one request, one identity, one policy → a `Decision`. Pure and allocation-light:
//! globs are precompiled, groups arrive lower-cased. A denial is a value, not an error, and it
//! carries the reason a person can act on.

use super::{Action, Kind, Policy, Rule};

/// Who is asking, as resolved by `identity` (never from token groups).
#[derive(Debug, Clone, PartialEq)]
pub enum Requester {
    Person {
        id: String,
        user_name: String,
        /// Lower-cased displayNames of every SCIM group the person is in, nested ones included.
        groups: Vec<String>,
    },
    ServiceAccount {
        namespace: String,
        name: String,
    },
    /// An agent: judged as itself, and allowed only where one of `sponsors` may do the same.
    Agent {
        /// Its SCIM id (an `/Agents` resource, or an agent user's User).
        id: String,
        name: String,
        /// Lower-cased `agentType`, if it has one.
        agent_type: Option<String>,
        /// Lower-cased displayNames of every group the agent itself is in.
        groups: Vec<String>,
        /// The active people among its owners (owner users, and the active members of owner
        /// groups), each a [`Requester::Person`]; never empty (`identity` refuses an agent
        /// without one).
        sponsors: Vec<Requester>,
        /// SCIM ids of every owner user and sponsor: whose runs it may never approve.
        owners: Vec<String>,
    },
}

impl Requester {
    pub fn display(&self) -> String {
        match self {
            Requester::Person { user_name, .. } => user_name.clone(),
            Requester::ServiceAccount { namespace, name } => format!("system:serviceaccount:{namespace}:{name}"),
            Requester::Agent { name, .. } => name.clone(),
        }
    }

    /// The SCIM id of a person or agent; `None` for a service account.
    pub fn scim_id(&self) -> Option<&str> {
        match self {
            Requester::Person { id, .. } | Requester::Agent { id, .. } => Some(id),
            Requester::ServiceAccount { .. } => None,
        }
    }

    /// The SCIM groups of a person or agent (lower-cased), empty for a service account.
    pub fn groups(&self) -> &[String] {
        match self {
            Requester::Person { groups, .. } | Requester::Agent { groups, .. } => groups,
            Requester::ServiceAccount { .. } => &[],
        }
    }
}

/// The person whose rights carried an agent's request.
#[derive(Debug, Clone, PartialEq)]
pub struct OnBehalfOf {
    pub id: String,
    pub user_name: String,
    /// The rule that lets the person do it.
    pub rule: String,
}

/// What the request would do.
#[derive(Debug, Clone, PartialEq)]
pub struct RunRequest {
    pub kind: Kind,
    pub namespace: String,
    pub action: Action,
    /// Service accounts the run's pods would use (`default` when the spec names none).
    pub run_as: Vec<String>,
    /// Referenced templates / pipelines / tasks.
    pub templates: Vec<String>,
    /// SCIM id of the verified submitter, for `distinctApprover`.
    pub submitter_id: Option<String>,
    /// When an agent submitted it: the SCIM ids of the person it submitted for and of everyone
    /// who owns or sponsors it now (`identity::submitted_for`); each counts as a submitter too
    /// (none may approve what the agent submitted).
    pub submitted_for: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Outcome {
    #[serde(rename = "allowed")]
    Allowed,
    #[serde(rename = "denied")]
    Denied,
    /// Would be denied; allowed because the namespace or policy is in dry-run.
    #[serde(rename = "dry-run-deny")]
    DryRunDenied,
}

impl std::str::FromStr for Outcome {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [Outcome::Allowed, Outcome::Denied, Outcome::DryRunDenied]
            .into_iter()
            .find(|o| o.as_str() == s)
            .ok_or_else(|| format!("outcome must be allowed, denied or dry-run-deny, not '{s}'"))
    }
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Allowed => "allowed",
            Outcome::Denied => "denied",
            Outcome::DryRunDenied => "dry-run-deny",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub outcome: Outcome,
    /// The rule that allowed it, or the rule that came closest to allowing it.
    pub rule: Option<String>,
    /// Why not, for a person to act on; empty when allowed.
    pub reason: String,
    /// An agent's request: the person whose rights carried it.
    pub on_behalf_of: Option<OnBehalfOf>,
}

impl Decision {
    pub fn admits(&self) -> bool {
        self.outcome != Outcome::Denied
    }
}

/// How far a rule got before a constraint failed: later failures are closer to allowing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Stage {
    Action,
    Kind,
    Namespace,
    Who,
    RunAs,
    Templates,
    DistinctApprover,
}

fn check(rule: &Rule, req: &RunRequest, who: &Requester) -> Result<(), (Stage, String)> {
    if !rule.allow.contains(&req.action) {
        return Err((Stage::Action, String::new()));
    }
    if rule.kinds.as_ref().is_some_and(|k| !k.contains(&req.kind)) {
        return Err((Stage::Kind, String::new()));
    }
    if rule
        .namespaces
        .as_ref()
        .is_some_and(|n| !n.iter().any(|g| g.matches(&req.namespace)))
    {
        return Err((Stage::Namespace, String::new()));
    }
    let who_ok = match who {
        Requester::Person { user_name, groups, .. } => {
            let by_group = rule
                .groups
                .as_ref()
                .is_some_and(|allowed| groups.iter().any(|g| allowed.contains(g)));
            let by_user = rule
                .users
                .as_ref()
                .is_some_and(|allowed| allowed.contains(&crate::model::name::fold(user_name)));
            by_group || by_user
        }
        Requester::ServiceAccount { namespace, name } => {
            let full = format!("{namespace}:{name}");
            rule.service_accounts
                .as_ref()
                .is_some_and(|allowed| allowed.iter().any(|g| g.matches(&full)))
        }
        Requester::Agent {
            name,
            agent_type,
            groups,
            ..
        } => {
            let by_type = rule
                .agent_types
                .as_ref()
                .zip(agent_type.as_ref())
                .is_some_and(|(allowed, t)| allowed.contains(t));
            let by_group = rule
                .groups
                .as_ref()
                .is_some_and(|allowed| groups.iter().any(|g| allowed.contains(g)));
            let by_name = rule
                .agents
                .as_ref()
                .is_some_and(|allowed| allowed.contains(&crate::model::name::fold(name)));
            // Four eyes needs a person: an agent approves only where a rule names its type.
            by_type || (req.action != Action::Approve && (by_group || by_name))
        }
    };
    if !who_ok {
        return Err((Stage::Who, String::new()));
    }
    if let Some(allowed) = &rule.run_as {
        if let Some(sa) = req.run_as.iter().find(|sa| !allowed.iter().any(|g| g.matches(sa))) {
            let list: Vec<&str> = allowed.iter().map(|g| g.as_str()).collect();
            return Err((
                Stage::RunAs,
                format!("it runs as service account '{sa}' (allowed: {})", list.join(", ")),
            ));
        }
    }
    if let Some(allowed) = &rule.templates {
        if let Some(t) = req.templates.iter().find(|t| t.starts_with(INLINE)) {
            let list: Vec<&str> = allowed.iter().map(|g| g.as_str()).collect();
            let what = match t[INLINE.len()..].split_once(':') {
                Some((kind, name)) if !name.is_empty() => format!("{kind} template '{name}'"),
                Some((kind, _)) => kind.to_string(),
                None => t[INLINE.len()..].to_string(),
            };
            return Err((
                Stage::Templates,
                format!(
                    "it defines a {what} inline; where templates are constrained every template that runs must be referenced (allowed: {})",
                    list.join(", ")
                ),
            ));
        }
        if req.templates.is_empty() {
            let list: Vec<&str> = allowed.iter().map(|g| g.as_str()).collect();
            return Err((
                Stage::Templates,
                format!(
                    "it defines its steps inline; it must use a template (allowed: {})",
                    list.join(", ")
                ),
            ));
        }
        if let Some(t) = req
            .templates
            .iter()
            .find(|t| !allowed.iter().any(|g| template_matches(g, t)))
        {
            let list: Vec<&str> = allowed.iter().map(|g| g.as_str()).collect();
            return Err((
                Stage::Templates,
                format!("it uses template '{t}' (allowed: {})", list.join(", ")),
            ));
        }
    }
    if rule.distinct_approver && req.action == Action::Approve {
        let me = who.scim_id();
        if me.is_some_and(|me| req.submitted_for.iter().any(|f| f == me)) {
            return Err((
                Stage::DistinctApprover,
                "an agent the approver owns or acted through submitted it; another person must approve (four eyes)"
                    .into(),
            ));
        }
        match (&req.submitter_id, me) {
            (None, _) => {
                return Err((
                    Stage::DistinctApprover,
                    "who submitted it is not known, and this approval needs a different person than the submitter"
                        .into(),
                ))
            }
            (Some(s), Some(me)) if s == me => {
                return Err((
                    Stage::DistinctApprover,
                    "the approver submitted it; another person must approve (four eyes)".into(),
                ))
            }
            _ => {}
        }
    }
    Ok(())
}

/// Identities of inline definitions (`admission::pipeline_run::INLINE`): no pattern matches them.
pub const INLINE: &str = "inline:";

/// A `templates` pattern against a template identity. A resolver ref's identity ends in
/// `@<revision, tag, digest or version>` when it pins one (the only `@` in it; the locator writes
/// `@` as `%40`): a pattern with `@` matches the whole identity, so `…@<commit>` only that
/// commit; a pattern without `@` matches what precedes the `@`, so any revision (`policy check`
/// warns about those).
pub fn template_matches(pattern: &super::glob::Glob, identity: &str) -> bool {
    if pattern.as_str().contains('@') {
        return pattern.matches(identity);
    }
    pattern.matches(identity.split_once('@').map_or(identity, |(base, _)| base))
}

/// Evaluate in rule order; the first rule that matches every constraint it names allows. An
/// agent is judged as itself and then, for what it was allowed, as each of its sponsors until
/// one may do the same: the agent never does more than an active owner may. An agent without
/// sponsors (`identity` refuses those; only a run its owner started before they all left,
/// under `whenOwnerOffboarded: continue`, gets here) is judged as itself alone, as a deactivated
/// person's is.
pub fn evaluate(policy: &Policy, req: &RunRequest, who: &Requester) -> Decision {
    match who {
        Requester::Agent { .. } => evaluate_agent(policy, req, who),
        _ => evaluate_one(policy, req, who),
    }
}

/// How many sponsors a denial names, each with why not; the rest are counted.
const SPONSORS_NAMED: usize = 3;

fn evaluate_agent(policy: &Policy, req: &RunRequest, agent: &Requester) -> Decision {
    let Requester::Agent {
        name, sponsors, owners, ..
    } = agent
    else {
        return evaluate_one(policy, req, agent);
    };
    let deny = |rule: Option<String>, reason: String| Decision {
        outcome: if policy.dry_run_in(&req.namespace) {
            Outcome::DryRunDenied
        } else {
            Outcome::Denied
        },
        rule,
        reason,
        on_behalf_of: None,
    };
    if req.action == Action::Approve {
        let Some(submitter) = &req.submitter_id else {
            return deny(
                None,
                format!("agent {name} may not approve a run whose submitter is not known (it could be its owner's); a person must approve"),
            );
        };
        let own = std::iter::once(submitter)
            .chain(&req.submitted_for)
            .find(|s| owners.contains(s) || *s == agent.scim_id().unwrap_or_default());
        if let Some(s) = own {
            let who = sponsors
                .iter()
                .find(|p| p.scim_id() == Some(s.as_str()))
                .map_or_else(|| format!("SCIM id {s}"), Requester::display);
            return deny(
                None,
                format!("agent {name} may not approve a run its owner or itself submitted ({who}); another person must approve"),
            );
        }
    }
    let mut d = evaluate_one(policy, req, agent);
    if d.outcome != Outcome::Allowed {
        d.reason = format!("agent {name}: {}", d.reason);
        return d;
    }
    if sponsors.is_empty() {
        return d;
    }
    // People in the same groups get the same answer, unless a rule names people or the action
    // compares who (an approval): a large owner group costs one evaluation per group set.
    let per_person = req.action == Action::Approve || policy.rules.iter().any(|r| r.users.is_some());
    let mut tried: std::collections::HashSet<&[String]> = std::collections::HashSet::new();
    let mut why = Vec::new();
    for s in sponsors {
        if !per_person && !tried.insert(s.groups()) {
            continue;
        }
        let e = evaluate_one(policy, req, s);
        if e.outcome == Outcome::Allowed {
            d.on_behalf_of = s.scim_id().map(|id| OnBehalfOf {
                id: id.to_string(),
                user_name: s.display(),
                rule: e.rule.unwrap_or_default(),
            });
            return d;
        }
        if why.len() < SPONSORS_NAMED {
            why.push(format!("{} may not ({})", s.display(), e.reason));
        }
    }
    if sponsors.len() > SPONSORS_NAMED {
        why.push(format!("and {} more may not", sponsors.len() - SPONSORS_NAMED));
    }
    deny(
        d.rule,
        format!(
            "agent {name} acts only within what an active owner may do, and none may {} {} in {}: {}",
            req.action.as_str(),
            req.kind.as_str(),
            req.namespace,
            why.join("; ")
        ),
    )
}

fn evaluate_one(policy: &Policy, req: &RunRequest, who: &Requester) -> Decision {
    let mut best: Option<(Stage, &Rule, String)> = None;
    for rule in &policy.rules {
        match check(rule, req, who) {
            Ok(()) => {
                return Decision {
                    outcome: Outcome::Allowed,
                    rule: Some(rule.name.clone()),
                    reason: String::new(),
                    on_behalf_of: None,
                }
            }
            Err((stage, why)) => {
                if best.as_ref().is_none_or(|(s, _, _)| stage > *s) {
                    best = Some((stage, rule, why));
                }
            }
        }
    }
    let (rule, reason) = match best {
        None => (None, "the policy has no rules".to_string()),
        Some((Stage::Action | Stage::Kind | Stage::Namespace, _, _)) => (
            None,
            format!(
                "no rule allows {} of {} in {}",
                req.action.as_str(),
                req.kind.as_str(),
                req.namespace
            ),
        ),
        Some((Stage::Who, rule, _)) => (Some(rule.name.clone()), not_allowed_there(policy, req, who)),
        Some((_, rule, why)) => (Some(rule.name.clone()), why),
    };
    let outcome = if policy.dry_run_in(&req.namespace) {
        Outcome::DryRunDenied
    } else {
        Outcome::Denied
    };
    Decision {
        outcome,
        rule,
        reason,
        on_behalf_of: None,
    }
}

/// "not in a group allowed there (allowed: a, b)": every group, user or service account that a
/// rule for this action, kind and namespace would accept.
fn not_allowed_there(policy: &Policy, req: &RunRequest, who: &Requester) -> String {
    let mut groups: Vec<&str> = Vec::new();
    let mut users: Vec<&str> = Vec::new();
    let mut accounts: Vec<&str> = Vec::new();
    let mut agents: Vec<&str> = Vec::new();
    let mut types: Vec<&str> = Vec::new();
    for r in &policy.rules {
        let covers = r.allow.contains(&req.action)
            && r.kinds.as_ref().is_none_or(|k| k.contains(&req.kind))
            && r.namespaces
                .as_ref()
                .is_none_or(|n| n.iter().any(|g| g.matches(&req.namespace)));
        if covers {
            groups.extend(r.groups.iter().flatten().map(String::as_str));
            users.extend(r.users.iter().flatten().map(String::as_str));
            accounts.extend(r.service_accounts.iter().flatten().map(|g| g.as_str()));
            types.extend(r.agent_types.iter().flatten().map(String::as_str));
            if req.action != Action::Approve {
                agents.extend(r.agents.iter().flatten().map(String::as_str));
                // The groups a rule names admit the agents in them too.
                agents.extend(r.groups.iter().flatten().map(String::as_str));
            }
        }
    }
    for l in [&mut groups, &mut users, &mut accounts, &mut agents, &mut types] {
        l.sort();
        l.dedup();
    }
    match who {
        Requester::Person { .. } if groups.is_empty() && users.is_empty() => {
            "only service accounts may do this there".into()
        }
        Requester::Person { .. } => {
            let mut parts = Vec::new();
            if !groups.is_empty() {
                parts.push(format!("groups: {}", groups.join(", ")));
            }
            if !users.is_empty() {
                parts.push(format!("users: {}", users.join(", ")));
            }
            format!(
                "not in a group allowed there (allowed {}); ask your identity provider admin for access",
                parts.join("; ")
            )
        }
        Requester::Agent { .. } if agents.is_empty() && types.is_empty() && req.action == Action::Approve => {
            "agents never approve there (four eyes needs a person; a rule must name the agent's agentType to let it)"
                .into()
        }
        Requester::Agent { .. } if agents.is_empty() && types.is_empty() => "no rule lets agents do this there".into(),
        Requester::Agent { .. } => {
            let mut parts = Vec::new();
            if !agents.is_empty() {
                parts.push(format!("agents and groups: {}", agents.join(", ")));
            }
            if !types.is_empty() {
                parts.push(format!("agent types: {}", types.join(", ")));
            }
            format!(
                "this agent is not allowed there (allowed {}); ask your identity provider admin",
                parts.join("; ")
            )
        }
        Requester::ServiceAccount { .. } if accounts.is_empty() => "only people may do this there".into(),
        Requester::ServiceAccount { .. } => format!(
            "this service account is not allowed there (allowed: {})",
            accounts.join(", ")
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::EXAMPLE;

    fn policy() -> Policy {
        Policy::parse(EXAMPLE, "example").expect("policy")
    }

    fn person(groups: &[&str]) -> Requester {
        Requester::Person {
            id: "u1".into(),
            user_name: "alice@example.com".into(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
        }
    }

    fn req(kind: Kind, ns: &str, action: Action) -> RunRequest {
        RunRequest {
            kind,
            namespace: ns.into(),
            action,
            run_as: vec!["ml-runner".into()],
            templates: vec!["ml-train".into()],
            submitter_id: Some("u0".into()),
            submitted_for: vec![],
        }
    }

    const AGENT_POLICY: &str = r#"
apiVersion: scimgate.io/v1
kind: Policy
rules:
  - name: ml-submit
    allow: [submit, cancel]
    groups: [ml-engineers]
    namespaces: ["ml-*"]
  - name: prod-submit
    allow: [submit]
    groups: [prod-deployers]
    namespaces: ["prod"]
  - name: bots
    allow: [submit, approve]
    agents: [pr-bot]
    namespaces: ["ml-*", "prod"]
  - name: release-agents-approve
    allow: [approve]
    agentTypes: [release]
    namespaces: ["ml-*"]
  - name: ml-approve
    allow: [approve]
    groups: [ml-engineers]
    namespaces: ["ml-*"]
    distinctApprover: true
"#;

    fn agent(agent_type: Option<&str>, sponsors: Vec<Requester>) -> Requester {
        let owners = sponsors.iter().filter_map(|s| s.scim_id()).map(String::from).collect();
        Requester::Agent {
            id: "a1".into(),
            name: "pr-bot".into(),
            agent_type: agent_type.map(String::from),
            groups: vec![],
            sponsors,
            owners,
        }
    }

    #[test]
    fn an_agent_does_what_it_may_only_where_a_sponsor_may_too() {
        let p = Policy::parse(AGENT_POLICY, "p").expect("policy");
        let bot = agent(None, vec![person(&["ml-engineers"])]);
        let d = evaluate(&p, &req(Kind::Workflow, "ml-team", Action::Submit), &bot);
        assert_eq!((d.outcome, d.rule.as_deref()), (Outcome::Allowed, Some("bots")));
        let by = d.on_behalf_of.expect("sponsor");
        assert_eq!((by.id.as_str(), by.rule.as_str()), ("u1", "ml-submit"));
        // The agent may submit in prod; alice may not, so neither may it — and it says why.
        let d = evaluate(&p, &req(Kind::Workflow, "prod", Action::Submit), &bot);
        assert_eq!(d.outcome, Outcome::Denied);
        assert!(d.reason.contains("none may submit Workflow in prod"), "{}", d.reason);
        assert!(
            d.reason
                .contains("alice@example.com may not (not in a group allowed there (allowed groups: prod-deployers)"),
            "{}",
            d.reason
        );
        assert!(d.on_behalf_of.is_none());
        // The second sponsor carries it where the first cannot.
        let deployer = Requester::Person {
            id: "u2".into(),
            user_name: "dan".into(),
            groups: vec!["prod-deployers".into()],
        };
        let bot2 = agent(None, vec![person(&["ml-engineers"]), deployer]);
        let d = evaluate(&p, &req(Kind::Workflow, "prod", Action::Submit), &bot2);
        assert_eq!(d.on_behalf_of.map(|b| b.user_name), Some("dan".to_string()));
        // What the agent itself may not do, no sponsor makes allowed.
        let d = evaluate(&p, &req(Kind::Workflow, "legacy", Action::Submit), &bot);
        assert_eq!(d.outcome, Outcome::Denied);
        assert!(d.reason.starts_with("agent pr-bot: "), "{}", d.reason);
    }

    #[test]
    fn an_agent_approves_only_by_type_and_never_its_owners_run() {
        let p = Policy::parse(AGENT_POLICY, "p").expect("policy");
        // Named in an approve rule, but not by type: four eyes needs a person.
        let bot = agent(None, vec![person(&["ml-engineers"])]);
        let d = evaluate(&p, &req(Kind::Workflow, "ml-team", Action::Approve), &bot);
        assert_eq!(d.outcome, Outcome::Denied);
        assert!(
            d.reason
                .contains("this agent is not allowed there (allowed agent types: release)"),
            "{}",
            d.reason
        );
        // By type, for someone else's run: allowed, carried by a sponsor who may approve.
        let release = agent(Some("release"), vec![person(&["ml-engineers"])]);
        let d = evaluate(&p, &req(Kind::Workflow, "ml-team", Action::Approve), &release);
        assert_eq!(d.outcome, Outcome::Allowed, "{}", d.reason);
        // Its owner's run, or one submitted on its owner's behalf: never.
        for r in [
            RunRequest {
                submitter_id: Some("u1".into()),
                ..req(Kind::Workflow, "ml-team", Action::Approve)
            },
            RunRequest {
                submitter_id: Some("a9".into()),
                submitted_for: vec!["u1".into()],
                ..req(Kind::Workflow, "ml-team", Action::Approve)
            },
        ] {
            let d = evaluate(&p, &r, &release);
            assert_eq!(d.outcome, Outcome::Denied);
            assert!(
                d.reason
                    .contains("may not approve a run its owner or itself submitted (alice@example.com)"),
                "{}",
                d.reason
            );
        }
        // A person may not approve what their agent submitted for them.
        let r = RunRequest {
            submitter_id: Some("a1".into()),
            submitted_for: vec!["u1".into(), "u7".into()],
            ..req(Kind::Workflow, "ml-team", Action::Approve)
        };
        let d = evaluate(&p, &r, &person(&["ml-engineers"]));
        assert_eq!(d.outcome, Outcome::Denied);
        assert!(
            d.reason
                .contains("an agent the approver owns or acted through submitted it"),
            "{}",
            d.reason
        );
        // A run whose submitter is not known: never an agent's to approve.
        let r = RunRequest {
            submitter_id: None,
            ..req(Kind::Workflow, "ml-team", Action::Approve)
        };
        let d = evaluate(&p, &r, &release);
        assert!(d.reason.contains("whose submitter is not known"), "{}", d.reason);
    }

    #[test]
    fn rules_name_agents_by_name_type_or_group_never_people() {
        let p = Policy::parse(AGENT_POLICY, "p").expect("policy");
        // A person named like the agent is not the agent.
        let alice = Requester::Person {
            id: "u1".into(),
            user_name: "pr-bot".into(),
            groups: vec![],
        };
        assert_eq!(
            evaluate(&p, &req(Kind::Workflow, "ml-team", Action::Submit), &alice).outcome,
            Outcome::Denied
        );
        // An agent in a group a rule names is allowed as that group (within its sponsor).
        let Requester::Agent { sponsors, owners, .. } = agent(None, vec![person(&["ml-engineers"])]) else {
            unreachable!()
        };
        let grouped = Requester::Agent {
            id: "a2".into(),
            name: "other".into(),
            agent_type: None,
            groups: vec!["ml-engineers".into()],
            sponsors,
            owners,
        };
        let d = evaluate(&p, &req(Kind::Workflow, "ml-team", Action::Submit), &grouped);
        assert_eq!(d.rule.as_deref(), Some("ml-submit"));
        let bad = Policy::parse(
            "apiVersion: scimgate.io/v1\nkind: Policy\nrules:\n  - name: a\n    allow: [submit]\n    agentTypes: []\n  - name: b\n    allow: [submit]\n    agents: [x]\n    serviceAccounts: [\"ci:x\"]\n",
            "p",
        )
        .expect_err("invalid");
        let text = bad.to_string();
        assert!(text.contains("agentTypes is an empty list"), "{text}");
        assert!(text.contains("mixes identities from the identity provider"), "{text}");
    }

    #[test]
    fn a_pattern_with_at_pins_the_version_one_without_takes_any() {
        let g = |p: &str| crate::policy::glob::Glob::new(p).expect("glob");
        let pinned = "git:https://g/lib:p.yaml@3f2c9d1";
        assert!(template_matches(&g(pinned), pinned));
        assert!(!template_matches(&g(pinned), "git:https://g/lib:p.yaml@main"));
        assert!(!template_matches(&g(pinned), "git:https://g/lib:p.yaml"));
        assert!(template_matches(
            &g("git:https://g/lib:p.yaml"),
            "git:https://g/lib:p.yaml@main"
        ));
        assert!(template_matches(
            &g("git:https://g/lib:*"),
            "git:https://g/lib:p.yaml@main"
        ));
        assert!(!template_matches(&g("ml-*"), "git:https://g/lib:ml-x@main"));
        let digest = "bundles:reg/img:t@sha256:ab";
        assert!(template_matches(&g(digest), digest));
        assert!(template_matches(&g("bundles:reg/img:t"), digest));
        assert!(!template_matches(&g("bundles:reg/img:t@sha256:cd"), digest));
        // An inline definition is refused before any pattern is tried, `*` included.
        let p = Policy::parse(
            "apiVersion: scimgate.io/v1\nkind: Policy\nrules:\n  - name: a\n    allow: [submit]\n    groups: [g]\n    templates: [\"*\"]\n",
            "p",
        )
        .expect("valid");
        let r = RunRequest {
            templates: vec!["lib".into(), "inline:container:main".into()],
            ..req(Kind::Workflow, "x", Action::Submit)
        };
        let d = evaluate(&p, &r, &person(&["g"]));
        assert_eq!(d.outcome, Outcome::Denied);
        assert!(
            d.reason.contains("defines a container template 'main' inline"),
            "{}",
            d.reason
        );
    }

    #[test]
    fn table() {
        let p = policy();
        let sa = Requester::ServiceAccount {
            namespace: "ci".into(),
            name: "el-github".into(),
        };
        type Case<'a> = (&'a str, RunRequest, Requester, Outcome, Option<&'a str>, &'a str);
        let cases: Vec<Case> = vec![
            (
                "member submits",
                req(Kind::Workflow, "ml-prod", Action::Submit),
                person(&["ml-engineers"]),
                Outcome::Allowed,
                Some("ml-submit"),
                "",
            ),
            (
                "nested group resolved upstream",
                req(Kind::PipelineRun, "ml-x", Action::Cancel),
                person(&["all", "ml-engineers"]),
                Outcome::Allowed,
                Some("ml-submit"),
                "",
            ),
            (
                "non-member",
                req(Kind::Workflow, "ml-prod", Action::Submit),
                person(&["finance"]),
                Outcome::Denied,
                Some("ml-submit"),
                "not in a group allowed there (allowed groups: ml-engineers)",
            ),
            (
                "wrong namespace",
                req(Kind::Workflow, "payments", Action::Submit),
                person(&["ml-engineers"]),
                Outcome::Denied,
                None,
                "no rule allows submit of Workflow in payments",
            ),
            (
                "dry-run namespace",
                req(Kind::Workflow, "legacy-etl", Action::Submit),
                person(&[]),
                Outcome::DryRunDenied,
                None,
                "no rule allows",
            ),
            (
                "wrong kind",
                req(Kind::WorkflowTemplate, "ml-prod", Action::Submit),
                person(&["ml-engineers"]),
                Outcome::Denied,
                None,
                "no rule allows submit of WorkflowTemplate",
            ),
            (
                "runAs outside the list",
                RunRequest {
                    run_as: vec!["default".into()],
                    ..req(Kind::Workflow, "ml-prod", Action::Submit)
                },
                person(&["ml-engineers"]),
                Outcome::Denied,
                Some("ml-submit"),
                "runs as service account 'default' (allowed: ml-runner)",
            ),
            (
                "inline steps where templates are required",
                RunRequest {
                    templates: vec![],
                    ..req(Kind::Workflow, "ml-prod", Action::Submit)
                },
                person(&["ml-engineers"]),
                Outcome::Denied,
                Some("ml-submit"),
                "defines its steps inline",
            ),
            (
                "approver is someone else",
                req(Kind::Workflow, "prod-pay", Action::Approve),
                person(&["release-approvers"]),
                Outcome::Allowed,
                Some("prod-approve"),
                "",
            ),
            (
                "approver is the submitter",
                RunRequest {
                    submitter_id: Some("u1".into()),
                    submitted_for: vec![],
                    ..req(Kind::Workflow, "prod-pay", Action::Approve)
                },
                person(&["release-approvers"]),
                Outcome::Denied,
                Some("prod-approve"),
                "four eyes",
            ),
            (
                "submitter unknown",
                RunRequest {
                    submitter_id: None,
                    submitted_for: vec![],
                    ..req(Kind::Workflow, "prod-pay", Action::Approve)
                },
                person(&["release-approvers"]),
                Outcome::Denied,
                Some("prod-approve"),
                "not known",
            ),
            (
                "service account rule",
                req(Kind::PipelineRun, "ci", Action::Submit),
                sa.clone(),
                Outcome::Allowed,
                Some("ci-bot"),
                "",
            ),
            (
                "person where only a service account may",
                req(Kind::PipelineRun, "ci", Action::Submit),
                person(&["ml-engineers"]),
                Outcome::Denied,
                Some("ci-bot"),
                "only service accounts may do this there",
            ),
            (
                "service account elsewhere",
                req(Kind::PipelineRun, "ml-a", Action::Submit),
                sa,
                Outcome::Denied,
                Some("ml-submit"),
                "only people may do this there",
            ),
        ];
        for (name, r, who, outcome, rule, reason) in cases {
            let d = evaluate(&p, &r, &who);
            assert_eq!(d.outcome, outcome, "{name}: {d:?}");
            assert_eq!(d.rule.as_deref(), rule, "{name}: {d:?}");
            assert!(d.reason.contains(reason), "{name}: '{}' lacks '{reason}'", d.reason);
        }
    }
}
