//! The policy: which people (SCIM groups and users) and which service accounts may submit,
//! approve, cancel or update which pipeline runs, where. The YAML model, its validation with
//! precise errors, the compiled form, and `evaluate`. Pure: no I/O, no axum, no tokio.

pub mod access;
pub mod evaluate;
pub mod glob;

pub use evaluate::{evaluate, Decision, OnBehalfOf, Outcome, Requester, RunRequest};

use glob::Glob;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::path::Path;

pub const API_VERSION: &str = "scimgate.io/v1";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("reading {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("{path}: {message}")]
    Parse { path: String, message: String },
    #[error("{path}: {}", .problems.join("; "))]
    Invalid { path: String, problems: Vec<String> },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    Enforce,
    DryRun,
}

impl Mode {
    /// As the policy file spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Enforce => "enforce",
            Mode::DryRun => "dry-run",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Submit,
    Approve,
    Cancel,
    Update,
    /// Deleting a run or template: recorded always, judged only under `enforceDeletes`.
    Delete,
}

impl Action {
    pub const ALL: [Action; 5] = [
        Action::Submit,
        Action::Approve,
        Action::Cancel,
        Action::Update,
        Action::Delete,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Action::Submit => "submit",
            Action::Approve => "approve",
            Action::Cancel => "cancel",
            Action::Update => "update",
            Action::Delete => "delete",
        }
    }
}

/// The kinds we admit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, serde::Serialize)]
pub enum Kind {
    Workflow,
    CronWorkflow,
    WorkflowTemplate,
    ClusterWorkflowTemplate,
    PipelineRun,
    TaskRun,
}

impl Kind {
    pub const ALL: [Kind; 6] = [
        Kind::Workflow,
        Kind::CronWorkflow,
        Kind::WorkflowTemplate,
        Kind::ClusterWorkflowTemplate,
        Kind::PipelineRun,
        Kind::TaskRun,
    ];

    pub fn is_argo(self) -> bool {
        !matches!(self, Kind::PipelineRun | Kind::TaskRun)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Workflow => "Workflow",
            Kind::CronWorkflow => "CronWorkflow",
            Kind::WorkflowTemplate => "WorkflowTemplate",
            Kind::ClusterWorkflowTemplate => "ClusterWorkflowTemplate",
            Kind::PipelineRun => "PipelineRun",
            Kind::TaskRun => "TaskRun",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
pub enum MatchAttribute {
    #[default]
    #[serde(rename = "userName")]
    UserName,
    #[serde(rename = "emails")]
    Emails,
    #[serde(rename = "externalId")]
    ExternalId,
    #[serde(rename = "id")]
    Id,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Via {
    /// The Argo Server: the person is named by Argo's `workflows.argoproj.io/creator*` labels on
    /// CREATE and by the `actor*` labels this request set on UPDATE, trusted only from this
    /// service account.
    ArgoServer,
    /// The former name of `argoServer` (it read the creator labels on every request); works the
    /// same, and `policy check` warns.
    ArgoCreatorLabels,
    /// Runs created by this controller inherit the verified stamp of their owner.
    OwnerStamp,
}

/// Which of the claims the Argo Server writes into its labels names the person (`argoServer`
/// delegates). The others must not name anyone else, but never name the person alone: an IdP's
/// `preferred_username` is often the user's own choice, so it is never authoritative.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Claim {
    /// The `*-email` label, matched against the directory's emails (and a userName that is one).
    #[default]
    Email,
    /// The subject label (`workflows.argoproj.io/creator`, `…/actor`), matched against the
    /// directory's externalId (Okta's `sub` is its user id, which it provisions as externalId),
    /// userName and SCIM id.
    Subject,
}

impl Claim {
    pub fn as_str(self) -> &'static str {
        match self {
            Claim::Email => "email",
            Claim::Subject => "subject",
        }
    }
}

/// What becomes of the runs a controller starts for an owner (a PipelineRun, a CronWorkflow)
/// whose submitter the identity provider has deactivated since.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum WhenOwnerOffboarded {
    /// Admitted, for the deactivated submitter: the run they started finishes. The decision
    /// record says the submitter is deactivated.
    Continue,
    /// Denied: the owner starts nothing more.
    Stop,
}

impl WhenOwnerOffboarded {
    /// Without a policy choice: the children of a running PipelineRun continue (the run was
    /// admitted and finishes); a CronWorkflow starts no new run.
    pub fn default_for(owner: Kind) -> WhenOwnerOffboarded {
        match owner {
            Kind::CronWorkflow => WhenOwnerOffboarded::Stop,
            _ => WhenOwnerOffboarded::Continue,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            WhenOwnerOffboarded::Continue => "continue",
            WhenOwnerOffboarded::Stop => "stop",
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct DelegateFile {
    service_account: String,
    via: Via,
    #[serde(default)]
    when_owner_offboarded: Option<WhenOwnerOffboarded>,
    #[serde(default)]
    claim: Option<Claim>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
struct IdentityFile {
    username_prefix: Option<String>,
    match_attribute: MatchAttribute,
    delegates: Vec<DelegateFile>,
    rewrite_argo_creator_labels: bool,
    when_owner_offboarded: Option<WhenOwnerOffboarded>,
    agents: AgentsFile,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
struct AgentsFile {
    username_prefix: Option<String>,
    users: Option<AgentUsersFile>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct AgentUsersFile {
    attribute: String,
    equals: Vec<String>,
}

/// How Kubernetes usernames name agents, beyond an `/Agents` resource's `subject` (always
/// matched: the drafts' `subject` is what the agent signs in as).
#[derive(Debug, Clone, Default)]
pub struct AgentIdentity {
    /// A username `<prefix><name>` (as the API server gives it) is the agent named `<name>`.
    pub username_prefix: Option<String>,
    /// Users the IdP provisions as agents (Entra's agent users): their owner is the enterprise
    /// extension's `manager`.
    pub users: Option<AgentUsers>,
}

/// Which Users are agents: those whose `attribute` (one of the directory's [`Mark`]s, e.g.
/// `userType`) equals one of `equals` (folded), compared ASCII-case-insensitively.
#[derive(Debug, Clone)]
pub struct AgentUsers {
    pub attribute: crate::directory::Mark,
    pub equals: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RuleFile {
    name: String,
    allow: Vec<Action>,
    groups: Option<Vec<String>>,
    users: Option<Vec<String>>,
    agents: Option<Vec<String>>,
    agent_types: Option<Vec<String>>,
    service_accounts: Option<Vec<String>>,
    kinds: Option<Vec<Kind>>,
    namespaces: Option<Vec<String>>,
    run_as: Option<Vec<String>>,
    templates: Option<Vec<String>>,
    #[serde(default)]
    distinct_approver: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct PolicyFile {
    api_version: String,
    kind: String,
    #[serde(default = "enforce")]
    mode: Mode,
    #[serde(default)]
    dry_run_namespaces: Vec<String>,
    #[serde(default)]
    enforce_deletes: bool,
    #[serde(default)]
    identity: IdentityFile,
    #[serde(default)]
    rules: Vec<RuleFile>,
    /// Absent: scimgate manages no access (and touches no binding). Present, even with no
    /// bindings: it owns the bindings it labelled, and removes those the section no longer asks for.
    #[serde(default, deserialize_with = "access::present")]
    access: Option<access::AccessFile>,
}

/// `identity.agents`, validated.
fn compile_agents(file: AgentsFile, person_prefix: Option<&str>, problems: &mut Vec<String>) -> AgentIdentity {
    let username_prefix = file.username_prefix.filter(|p| !p.is_empty());
    if let Some(agent) = username_prefix.as_deref() {
        // Agents and people must come from different issuers' usernames: were one prefix the
        // start of the other, a person whose claim begins with the rest would be an agent.
        match person_prefix {
            _ if agent.starts_with("system:") => problems.push(
                "identity.agents.usernamePrefix must not start with 'system:': Kubernetes reserves those usernames".into(),
            ),
            None => problems.push(
                "identity.agents.usernamePrefix needs identity.usernamePrefix: without one, any person's username could start with the agents' prefix".into(),
            ),
            Some(person) if person.starts_with(agent) || agent.starts_with(person) => problems.push(format!(
                "identity.agents.usernamePrefix '{agent}' and identity.usernamePrefix '{person}' overlap: one starts the other, so a person could name an agent; give agents their own issuer's prefix"
            )),
            Some(_) => {}
        }
    }
    let users = file.users.and_then(|u| {
        let Some(attribute) = crate::directory::Mark::from_path(&u.attribute) else {
            let known: Vec<&str> = crate::directory::Mark::ALL.iter().map(|m| m.attribute().0).collect();
            problems.push(format!(
                "identity.agents.users.attribute '{}' is not one scimgate can mark agents by (one of: {})",
                u.attribute,
                known.join(", ")
            ));
            return None;
        };
        if u.equals.is_empty() {
            problems.push("identity.agents.users.equals is empty, so no user is an agent; name the values".into());
            return None;
        }
        Some(AgentUsers {
            attribute,
            equals: u.equals.iter().map(|v| crate::model::name::fold(v)).collect(),
        })
    });
    AgentIdentity { username_prefix, users }
}

fn enforce() -> Mode {
    Mode::Enforce
}

#[derive(Debug, Clone)]
pub struct Delegate {
    pub namespace: String,
    pub name: String,
    pub via: Via,
    /// `ownerStamp` only: overrides `identity.whenOwnerOffboarded` for this controller.
    pub when_owner_offboarded: Option<WhenOwnerOffboarded>,
    /// `argoServer` only: the claim whose label names the person (default: email).
    pub claim: Claim,
    /// `argoServer` only: a `namespace:name` pattern (`*`, `?`) standing for many accounts — the
    /// Argo Server with SSO and RBAC calls the API server as whichever account its `rbac-rule`
    /// picked for the person (argo-workflows `server/auth/gatekeeper.go` `rbacAuthorization`).
    pub pattern: Option<Glob>,
}

#[derive(Debug, Clone)]
pub struct Identity {
    pub username_prefix: Option<String>,
    pub match_attribute: MatchAttribute,
    pub delegates: Vec<Delegate>,
    /// Overwrite Argo's hand-editable `workflows.argoproj.io/creator*` labels on submit with
    /// the verified person, so Argo's UI and `argo list --creator` show the truth.
    pub rewrite_argo_creator_labels: bool,
    /// For every `ownerStamp` delegate without its own choice; `None`: by owner kind
    /// (`WhenOwnerOffboarded::default_for`).
    pub when_owner_offboarded: Option<WhenOwnerOffboarded>,
    pub agents: AgentIdentity,
}

/// One compiled rule. `None` means "not constrained".
#[derive(Debug, Clone)]
pub struct Rule {
    pub name: String,
    pub allow: Vec<Action>,
    /// Lower-cased SCIM group displayNames.
    pub groups: Option<Vec<String>>,
    /// Lower-cased userNames.
    pub users: Option<Vec<String>>,
    /// Lower-cased agent names (`/Agents` `name`, or an agent user's userName).
    pub agents: Option<Vec<String>>,
    /// Lower-cased `agentType`s: the only way a rule lets agents approve.
    pub agent_types: Option<Vec<String>>,
    pub service_accounts: Option<Vec<Glob>>,
    pub kinds: Option<Vec<Kind>>,
    pub namespaces: Option<Vec<Glob>>,
    pub run_as: Option<Vec<Glob>>,
    pub templates: Option<Vec<Glob>>,
    pub distinct_approver: bool,
}

/// A validated, compiled policy.
#[derive(Debug, Clone)]
pub struct Policy {
    pub mode: Mode,
    pub dry_run_namespaces: Vec<Glob>,
    pub identity: Identity,
    pub rules: Vec<Rule>,
    /// Deletes by people are judged by the rules that allow `delete`; otherwise recorded only.
    pub enforce_deletes: bool,
    /// SHA-256 of the file's bytes, hex: recorded with each decision and in the attestation.
    pub digest: String,
    /// What is valid but should change (deprecated names); `policy check` prints them.
    pub warnings: Vec<String>,
    /// Which groups get which roles where (`access:`); `None` when the file has no such section.
    pub access: Option<access::Access>,
}

/// Resolvers whose refs name a version (`git` revision, `bundles` tag or digest, `hub` version):
/// their template identities end in `@<version>` when the ref pins one.
pub const VERSIONED_RESOLVERS: [&str; 3] = ["git", "bundles", "hub"];

/// The example policy `serve --dev` uses when none is given.
pub const EXAMPLE: &str = include_str!("example.yaml");

impl Policy {
    pub fn load(path: &Path) -> Result<Policy> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
            path: path.display().to_string(),
            source,
        })?;
        Policy::parse(&text, &path.display().to_string())
    }

    /// Parse and validate; every problem found is reported, not just the first.
    pub fn parse(text: &str, path: &str) -> Result<Policy> {
        let file: PolicyFile = serde_yaml_ng::from_str(text).map_err(|e| Error::Parse {
            path: path.to_string(),
            message: e.to_string(),
        })?;
        let mut problems = Vec::new();
        if file.api_version != API_VERSION {
            problems.push(format!("apiVersion must be {API_VERSION}, not '{}'", file.api_version));
        }
        if file.kind != "Policy" {
            problems.push(format!("kind must be Policy, not '{}'", file.kind));
        }
        let globs = |what: &str, list: &[String], problems: &mut Vec<String>| -> Vec<Glob> {
            list.iter()
                .filter_map(|p| match Glob::new(p) {
                    Ok(g) => Some(g),
                    Err(e) => {
                        problems.push(format!("{what}: {e}"));
                        None
                    }
                })
                .collect()
        };
        let dry_run_namespaces = globs("dryRunNamespaces", &file.dry_run_namespaces, &mut problems);
        let mut delegates = Vec::new();
        let mut warnings = Vec::new();
        for (i, d) in file.identity.delegates.iter().enumerate() {
            if d.via == Via::ArgoCreatorLabels {
                warnings.push(format!(
                    "identity.delegates[{i}].via: argoCreatorLabels is deprecated, write argoServer (the same delegate: creator labels on create, the acting person's actor labels on updates)"
                ));
            }
            if d.when_owner_offboarded.is_some() && d.via != Via::OwnerStamp {
                problems.push(format!(
                    "identity.delegates[{i}].whenOwnerOffboarded only applies to ownerStamp delegates (controllers that start runs for an owner)"
                ));
            }
            if d.claim.is_some() && !matches!(d.via, Via::ArgoServer | Via::ArgoCreatorLabels) {
                problems.push(format!(
                    "identity.delegates[{i}].claim only applies to argoServer delegates (which claim of the Argo Server's labels names the person)"
                ));
            }
            let wildcard = d.service_account.contains(['*', '?']);
            let argo_server = matches!(d.via, Via::ArgoServer | Via::ArgoCreatorLabels);
            if wildcard && !argo_server {
                problems.push(format!(
                    "identity.delegates[{i}].serviceAccount '{}' is a pattern, which only an argoServer delegate may be (the Argo Server's SSO RBAC accounts); name a controller's account exactly",
                    d.service_account
                ));
            }
            match d.service_account.split_once(':') {
                Some((ns, name)) if !ns.is_empty() && !name.is_empty() && !name.contains(':') => {
                    let pattern = if wildcard {
                        match Glob::new(&d.service_account) {
                            Ok(g) => Some(g),
                            Err(e) => {
                                problems.push(format!("identity.delegates[{i}].serviceAccount: {e}"));
                                None
                            }
                        }
                    } else {
                        None
                    };
                    delegates.push(Delegate {
                        namespace: ns.to_string(),
                        name: name.to_string(),
                        via: d.via,
                        when_owner_offboarded: d.when_owner_offboarded,
                        claim: d.claim.unwrap_or_default(),
                        pattern,
                    })
                }
                _ => problems.push(format!(
                    "identity.delegates[{i}].serviceAccount must be namespace:name, not '{}'",
                    d.service_account
                )),
            }
        }
        if file.rules.is_empty() {
            problems.push("rules is empty: every request would be denied".into());
        }
        let mut rules = Vec::new();
        let mut names = std::collections::HashSet::new();
        for (i, r) in file.rules.iter().enumerate() {
            let at = if r.name.trim().is_empty() {
                format!("rules[{i}]")
            } else {
                format!("rule '{}'", r.name)
            };
            if r.name.trim().is_empty() {
                problems.push(format!("{at}: name is required"));
            } else if !names.insert(r.name.clone()) {
                problems.push(format!("{at}: the name is used twice"));
            }
            if r.allow.is_empty() {
                problems.push(format!("{at}: allow is empty, so the rule allows nothing"));
            }
            let people = r.groups.is_some() || r.users.is_some() || r.agents.is_some() || r.agent_types.is_some();
            match (people, r.service_accounts.is_some()) {
                (false, false) => problems.push(format!(
                    "{at}: names no groups, users, agents, agentTypes or serviceAccounts, so it would allow anyone; say who"
                )),
                (true, true) => problems.push(format!(
                    "{at}: mixes identities from the identity provider (groups/users/agents/agentTypes) with serviceAccounts; a requester is one or the other, so split it into two rules"
                )),
                _ => {}
            }
            if r.allow.contains(&Action::Approve) && r.agents.is_some() && r.agent_types.is_none() {
                warnings.push(format!(
                    "{at}: agents never approve by name (four eyes needs a person); to let agents approve, name their agentTypes"
                ));
            }
            for (what, list) in [
                ("groups", &r.groups),
                ("users", &r.users),
                ("agents", &r.agents),
                ("agentTypes", &r.agent_types),
                ("serviceAccounts", &r.service_accounts),
            ] {
                if list.as_ref().is_some_and(Vec::is_empty) {
                    problems.push(format!(
                        "{at}: {what} is an empty list, which matches nobody; remove it or name someone"
                    ));
                }
            }
            if r.kinds.as_ref().is_some_and(Vec::is_empty) {
                problems.push(format!("{at}: kinds is an empty list, which matches nothing"));
            }
            if r.distinct_approver && !r.allow.contains(&Action::Approve) {
                problems.push(format!(
                    "{at}: distinctApprover only applies to rules that allow approve"
                ));
            }
            let sa = r
                .service_accounts
                .as_ref()
                .map(|l| globs(&format!("{at}: serviceAccounts"), l, &mut problems));
            if let Some(list) = &r.service_accounts {
                for s in list.iter().filter(|s| !s.contains(':')) {
                    problems.push(format!(
                        "{at}: serviceAccounts entry '{s}' must be namespace:name (globs allowed)"
                    ));
                }
            }
            // A resolver pattern without `@` matches every revision of what it locates: a
            // branch anyone can push to passes as the reviewed template.
            for t in r.templates.iter().flatten() {
                let resolver = t.split_once(':').map(|(r, _)| r);
                if resolver.is_some_and(|r| VERSIONED_RESOLVERS.contains(&r)) && !t.contains('@') {
                    warnings.push(format!(
                        "{at}: templates pattern '{t}' has no @<revision>, so it matches any revision (a branch anyone can push to); pin one: '{t}@<commit>'"
                    ));
                }
            }
            rules.push(Rule {
                name: r.name.clone(),
                allow: r.allow.clone(),
                groups: r
                    .groups
                    .as_ref()
                    .map(|g| g.iter().map(|x| crate::model::name::fold(x)).collect()),
                users: r
                    .users
                    .as_ref()
                    .map(|u| u.iter().map(|x| crate::model::name::fold(x)).collect()),
                agents: r
                    .agents
                    .as_ref()
                    .map(|u| u.iter().map(|x| crate::model::name::fold(x)).collect()),
                agent_types: r
                    .agent_types
                    .as_ref()
                    .map(|u| u.iter().map(|x| crate::model::name::fold(x)).collect()),
                service_accounts: sa,
                kinds: r.kinds.clone(),
                namespaces: r
                    .namespaces
                    .as_ref()
                    .map(|l| globs(&format!("{at}: namespaces"), l, &mut problems)),
                run_as: r
                    .run_as
                    .as_ref()
                    .map(|l| globs(&format!("{at}: runAs"), l, &mut problems)),
                templates: r
                    .templates
                    .as_ref()
                    .map(|l| globs(&format!("{at}: templates"), l, &mut problems)),
                distinct_approver: r.distinct_approver,
            });
        }
        if file.enforce_deletes && !rules.iter().any(|r| r.allow.contains(&Action::Delete)) {
            problems.push(
                "enforceDeletes: true, but no rule allows delete: nobody could delete a run (add a rule with allow: [delete])"
                    .into(),
            );
        }
        let access = file.access.map(|a| a.compile(&mut problems, &mut warnings));
        let person_prefix = file.identity.username_prefix.clone().filter(|p| !p.is_empty());
        let agents = compile_agents(file.identity.agents, person_prefix.as_deref(), &mut problems);
        if !problems.is_empty() {
            return Err(Error::Invalid {
                path: path.to_string(),
                problems,
            });
        }
        Ok(Policy {
            mode: file.mode,
            dry_run_namespaces,
            identity: Identity {
                username_prefix: file.identity.username_prefix.filter(|p| !p.is_empty()),
                match_attribute: file.identity.match_attribute,
                delegates,
                rewrite_argo_creator_labels: file.identity.rewrite_argo_creator_labels,
                when_owner_offboarded: file.identity.when_owner_offboarded,
                agents,
            },
            rules,
            enforce_deletes: file.enforce_deletes,
            digest: digest(text.as_bytes()),
            warnings,
            access,
        })
    }

    /// Whether a namespace is evaluated in dry-run.
    pub fn dry_run_in(&self, namespace: &str) -> bool {
        self.mode == Mode::DryRun || self.dry_run_namespaces.iter().any(|g| g.matches(namespace))
    }

    /// Whether a rule that lets a `kind` in `namespace` be approved asks for an approver other
    /// than its submitter (`distinctApprover`).
    pub fn asks_distinct_approver(&self, kind: Kind, namespace: &str) -> bool {
        self.rules.iter().any(|r| {
            r.distinct_approver
                && r.kinds.as_ref().is_none_or(|k| k.contains(&kind))
                && r.namespaces
                    .as_ref()
                    .is_none_or(|n| n.iter().any(|g| g.matches(namespace)))
        })
    }

    /// The delegate a Kubernetes username (`system:serviceaccount:<ns>:<name>`) is, if any.
    pub fn delegate_for(&self, username: &str) -> Option<&Delegate> {
        let (ns, name) = username.strip_prefix("system:serviceaccount:")?.split_once(':')?;
        self.delegate(ns, name)
    }

    /// What becomes of a run `delegate` starts for an owner of kind `owner` whose submitter is
    /// deactivated: the delegate's choice, else the policy's, else the owner kind's default.
    pub fn when_owner_offboarded(&self, delegate: Option<&Delegate>, owner: Kind) -> WhenOwnerOffboarded {
        delegate
            .and_then(|d| d.when_owner_offboarded)
            .or(self.identity.when_owner_offboarded)
            .unwrap_or_else(|| WhenOwnerOffboarded::default_for(owner))
    }

    /// The delegate an account is: one naming it exactly, else the first pattern matching it.
    pub fn delegate(&self, namespace: &str, name: &str) -> Option<&Delegate> {
        let delegates = &self.identity.delegates;
        delegates
            .iter()
            .find(|d| d.pattern.is_none() && d.namespace == namespace && d.name == name)
            .or_else(|| {
                let full = format!("{namespace}:{name}");
                delegates
                    .iter()
                    .find(|d| d.pattern.as_ref().is_some_and(|p| p.matches(&full)))
            })
    }
}

/// SHA-256 of a policy file's bytes, hex: identifies the policy a decision was made under.
pub fn digest(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// Names as they are written in policies, records and flags (`submit`, …).
impl std::str::FromStr for Action {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Action::ALL
            .into_iter()
            .find(|a| a.as_str() == s)
            .ok_or_else(|| format!("'{s}' is not an action (submit, approve, cancel, update, delete)"))
    }
}

/// Kind names as Kubernetes spells them (`Workflow`, …).
impl std::str::FromStr for Kind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Kind::ALL.into_iter().find(|k| k.as_str() == s).ok_or_else(|| {
            let all: Vec<&str> = Kind::ALL.iter().map(|k| k.as_str()).collect();
            format!("'{s}' is not a kind scimgate admits ({})", all.join(", "))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_policy_is_valid() {
        let p = Policy::parse(EXAMPLE, "example.yaml").expect("example policy");
        assert_eq!(p.rules.len(), 4);
        assert!(p.dry_run_in("legacy-billing") && !p.dry_run_in("ml-prod"));
        assert_eq!(p.identity.username_prefix.as_deref(), Some("oidc:"));
        assert_eq!(p.digest.len(), 64);
    }

    #[test]
    fn the_former_delegate_name_works_with_a_warning() {
        let text = "apiVersion: scimgate.io/v1\nkind: Policy\nidentity:\n  delegates:\n    - serviceAccount: argo:argo-server\n      via: argoCreatorLabels\nrules:\n  - name: a\n    allow: [submit]\n    groups: [x]\n";
        let p = Policy::parse(text, "p.yaml").expect("valid");
        assert_eq!(
            p.delegate_for("system:serviceaccount:argo:argo-server").map(|d| d.via),
            Some(Via::ArgoCreatorLabels)
        );
        assert!(
            p.warnings
                .iter()
                .any(|w| w.contains("argoCreatorLabels is deprecated, write argoServer")),
            "{:?}",
            p.warnings
        );
        let now = Policy::parse(&text.replace("argoCreatorLabels", "argoServer"), "p.yaml").expect("valid");
        assert!(now.warnings.is_empty());
    }

    #[test]
    fn an_unpinned_resolver_pattern_warns() {
        let text = "apiVersion: scimgate.io/v1\nkind: Policy\nrules:\n  - name: a\n    allow: [submit]\n    groups: [x]\n    templates: [\"ml-*\", \"git:https://g/x:p.yaml\", \"bundles:reg/img:t@sha256:ab\", \"cluster:ns:t\", \"hub:git-clone\"]\n";
        let p = Policy::parse(text, "p.yaml").expect("valid");
        assert_eq!(p.warnings.len(), 2, "{:?}", p.warnings);
        assert!(
            p.warnings[0].contains("'git:https://g/x:p.yaml' has no @<revision>"),
            "{:?}",
            p.warnings
        );
        assert!(p.warnings[1].contains("'hub:git-clone'"), "{:?}", p.warnings);
    }

    #[test]
    fn when_owner_offboarded_delegate_over_policy_over_kind_default() {
        let base = "apiVersion: scimgate.io/v1\nkind: Policy\nidentity:\n  GLOBAL\n  delegates:\n    - serviceAccount: argo:argo\n      via: ownerStamp\n    - serviceAccount: tekton-pipelines:tekton-pipelines-controller\n      via: ownerStamp\n      OWN\nrules:\n  - name: a\n    allow: [submit]\n    groups: [x]\n";
        let decide = |global: &str, own: &str| {
            let p = Policy::parse(&base.replace("GLOBAL", global).replace("OWN", own), "p.yaml").expect("valid");
            let argo = p.delegate_for("system:serviceaccount:argo:argo");
            let tekton = p.delegate_for("system:serviceaccount:tekton-pipelines:tekton-pipelines-controller");
            (
                p.when_owner_offboarded(argo, Kind::CronWorkflow),
                p.when_owner_offboarded(tekton, Kind::PipelineRun),
            )
        };
        use WhenOwnerOffboarded::{Continue, Stop};
        assert_eq!(decide("", ""), (Stop, Continue));
        assert_eq!(decide("whenOwnerOffboarded: continue", ""), (Continue, Continue));
        assert_eq!(decide("whenOwnerOffboarded: stop", ""), (Stop, Stop));
        assert_eq!(
            decide("whenOwnerOffboarded: continue", "whenOwnerOffboarded: stop"),
            (Continue, Stop)
        );
        let err = Policy::parse(
            "apiVersion: scimgate.io/v1\nkind: Policy\nidentity:\n  delegates:\n    - serviceAccount: argo:argo-server\n      via: argoServer\n      whenOwnerOffboarded: stop\nrules:\n  - name: a\n    allow: [submit]\n    groups: [x]\n",
            "p.yaml",
        )
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
        assert!(
            err.contains("delegates[0].whenOwnerOffboarded only applies to ownerStamp"),
            "{err}"
        );
    }

    #[test]
    fn every_problem_is_reported_with_its_place() {
        let text = r#"
apiVersion: scimgate.io/v2
kind: Policy
identity:
  delegates:
    - serviceAccount: argo-server
      via: argoCreatorLabels
rules:
  - name: a
    allow: []
    groups: [x]
  - name: a
    allow: [submit]
  - name: mixed
    allow: [approve]
    groups: [x]
    serviceAccounts: [ci]
    namespaces: ["prod-[a]"]
  - name: da
    allow: [submit]
    users: [bob]
    distinctApprover: true
"#;
        let err = Policy::parse(text, "p.yaml")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        for needle in [
            "apiVersion must be scimgate.io/v1",
            "delegates[0].serviceAccount must be namespace:name",
            "rule 'a': allow is empty",
            "rule 'a': the name is used twice",
            "rule 'a': names no groups, users, agents, agentTypes or serviceAccounts",
            "rule 'mixed': mixes identities from the identity provider",
            "serviceAccounts entry 'ci' must be namespace:name",
            "rule 'mixed': namespaces: 'prod-[a]'",
            "rule 'da': distinctApprover only applies",
        ] {
            assert!(err.contains(needle), "missing '{needle}' in: {err}");
        }
    }

    #[test]
    fn agent_identity_is_validated() {
        let parse = |identity: &str| {
            Policy::parse(
                &format!("apiVersion: scimgate.io/v1\nkind: Policy\nidentity:\n{identity}rules:\n  - name: a\n    allow: [submit]\n    agentTypes: [x]\n"),
                "p",
            )
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
        };
        assert!(parse("  agents:\n    usernamePrefix: \"agent:\"\n").contains("needs identity.usernamePrefix"));
        assert!(
            parse("  usernamePrefix: \"oidc:\"\n  agents:\n    usernamePrefix: \"oidc:agent-\"\n").contains("overlap")
        );
        assert!(parse("  usernamePrefix: \"oidc:\"\n  agents:\n    usernamePrefix: \"agent:\"\n").is_empty());
        let bad = parse("  agents:\n    users:\n      attribute: nickName\n      equals: [Agent]\n");
        assert!(
            bad.contains("'nickName' is not one scimgate can mark agents by (one of: userType, title"),
            "{bad}"
        );
        assert!(parse("  agents:\n    users:\n      attribute: urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department\n      equals: [Agents]\n").is_empty());
    }

    #[test]
    fn unknown_fields_and_values_are_parse_errors() {
        let err = Policy::parse(
            "apiVersion: scimgate.io/v1\nkind: Policy\nrules:\n  - name: x\n    allow: [deploy]\n    users: [a]\n",
            "p",
        )
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
        assert!(err.contains("deploy"), "{err}");
        let err = Policy::parse(
            "apiVersion: scimgate.io/v1\nkind: Policy\nmode: enforce\nrule: []\n",
            "p",
        )
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
        assert!(err.contains("unknown field `rule`"), "{err}");
    }
}
