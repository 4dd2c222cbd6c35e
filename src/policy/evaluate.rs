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
}

impl Requester {
    pub fn display(&self) -> String {
        match self {
            Requester::Person { user_name, .. } => user_name.clone(),
            Requester::ServiceAccount { namespace, name } => format!("system:serviceaccount:{namespace}:{name}"),
        }
    }
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
        let me = match who {
            Requester::Person { id, .. } => Some(id.as_str()),
            Requester::ServiceAccount { .. } => None,
        };
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

/// Evaluate in rule order; the first rule that matches every constraint it names allows.
pub fn evaluate(policy: &Policy, req: &RunRequest, who: &Requester) -> Decision {
    let mut best: Option<(Stage, &Rule, String)> = None;
    for rule in &policy.rules {
        match check(rule, req, who) {
            Ok(()) => {
                return Decision {
                    outcome: Outcome::Allowed,
                    rule: Some(rule.name.clone()),
                    reason: String::new(),
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
    Decision { outcome, rule, reason }
}

/// "not in a group allowed there (allowed: a, b)": every group, user or service account that a
/// rule for this action, kind and namespace would accept.
fn not_allowed_there(policy: &Policy, req: &RunRequest, who: &Requester) -> String {
    let mut groups: Vec<&str> = Vec::new();
    let mut users: Vec<&str> = Vec::new();
    let mut accounts: Vec<&str> = Vec::new();
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
        }
    }
    for l in [&mut groups, &mut users, &mut accounts] {
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
        }
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
