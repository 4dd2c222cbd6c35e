//! `scimgate doctor`: whether the cluster's Argo and Tekton installs, scimgate's registered webhook
//! configurations and the policy agree on the accounts the controllers and the Argo Server run as,
//! and whether the configurations are registered as manifests/base ships them (present, caBundle
//! set, failurePolicy). Owns the checks and their report: each check is one `Finding`, a mismatch
//! names its fix. `read` does the Kubernetes reads; everything else is pure, over what was read.

pub mod cel;
mod delegates;
pub mod install;
pub mod read;
pub mod webhooks;

pub use install::{Account, Component, Role};
pub use webhooks::WebhookConfig;

use crate::policy::Policy;
use serde::Serialize;
use serde_json::{json, Value};
use std::collections::BTreeMap;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{what}: {source}")]
    Kube { what: String, source: kube::Error },
    #[error("manifests/base/webhooks.yaml, as built in: {0}")]
    Base(String),
    #[error(transparent)]
    Policy(#[from] crate::policy::Error),
    #[error("no --policy given, and {0}: pass the policy scimgate runs with as --policy FILE")]
    NoPolicy(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    Mismatch,
    /// Worth knowing, not a mismatch (a product that is not installed, a pattern not checked).
    Note,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Area {
    Cluster,
    Policy,
    Webhook,
}

/// One check's outcome.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    pub status: Status,
    pub area: Area,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
    /// The fix as an edit of one account name, for scripts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub edit: Option<Edit>,
}

impl Finding {
    fn new(status: Status, area: Area, message: String) -> Finding {
        Finding {
            status,
            area,
            message,
            fix: None,
            edit: None,
        }
    }

    fn ok(area: Area, message: String) -> Finding {
        Finding::new(Status::Ok, area, message)
    }

    fn note(area: Area, message: String) -> Finding {
        Finding::new(Status::Note, area, message)
    }

    fn mismatch(area: Area, message: String, fix: String) -> Finding {
        Finding {
            fix: Some(fix),
            ..Finding::new(Status::Mismatch, area, message)
        }
    }

    fn with_edit(self, edit: Edit) -> Finding {
        Finding {
            edit: Some(edit),
            ..self
        }
    }
}

/// Where an account name is to be replaced, added or removed: the policy's `identity.delegates`
/// (as `ns:name`), or one matchCondition of one webhook (as `system:serviceaccount:ns:name`).
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Edit {
    /// `policy`, or `<Kind>/<configuration name>`.
    pub target: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub webhook: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub condition: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replace: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub with: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub add: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remove: Option<String>,
}

impl Edit {
    fn replace(old: String, new: String) -> Edit {
        Edit {
            replace: Some(old),
            with: Some(new),
            ..Edit::default()
        }
    }

    fn add(account: String) -> Edit {
        Edit {
            add: Some(account),
            ..Edit::default()
        }
    }

    fn remove(account: String) -> Edit {
        Edit {
            remove: Some(account),
            ..Edit::default()
        }
    }

    /// The same edit, of the policy's `identity.delegates`.
    fn of_policy(self) -> Edit {
        Edit {
            target: "policy".into(),
            ..self
        }
    }
}

/// What a ServiceAccount an `argoServer` delegate names is in the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccountState {
    Missing,
    /// Exists, without Argo's SSO RBAC annotation.
    Plain,
    /// Carries `workflows.argoproj.io/rbac-rule`: the Argo Server's SSO RBAC may act as it.
    SsoRbac(String),
}

/// What was read from the cluster.
#[derive(Debug, Clone, Default)]
pub struct Cluster {
    pub components: Vec<Component>,
    pub configs: Vec<WebhookConfig>,
    /// The accounts the policy's exact `argoServer` delegates name, looked up.
    pub accounts: BTreeMap<Account, AccountState>,
}

impl Cluster {
    /// The distinct accounts of `role`, each with the first Deployment running as it.
    pub fn accounts_of(&self, role: Role) -> Vec<(&Account, &str)> {
        let mut out: Vec<(&Account, &str)> = Vec::new();
        for c in self.components.iter().filter(|c| c.role == role) {
            if !out.iter().any(|(a, _)| *a == &c.account) {
                out.push((&c.account, &c.deployment));
            }
        }
        out
    }

    /// The role of an account some Deployment runs as.
    pub fn role_of(&self, account: &Account) -> Option<Role> {
        self.components.iter().find(|c| &c.account == account).map(|c| c.role)
    }
}

/// Every check's finding, in order: the cluster's components, the policy, the webhooks.
#[derive(Debug, Clone)]
pub struct Report {
    pub findings: Vec<Finding>,
}

/// Check `policy` (read from `policy_source`) and the cluster against each other and against
/// what manifests/base ships.
pub fn check(cluster: &Cluster, policy: &Policy, policy_source: &str) -> Result<Report> {
    let base = webhooks::base().map_err(Error::Base)?;
    let mut findings = Vec::new();
    for role in Role::ALL {
        let found = cluster.accounts_of(role);
        if found.is_empty() {
            findings.push(Finding::note(
                Area::Cluster,
                format!(
                    "no {} found in any namespace (looked for {}): its checks are skipped, and the upstream account the policy and webhooks may name for it is left alone",
                    role.noun(),
                    role.looked_for()
                ),
            ));
        }
        for (account, deployment) in found {
            findings.push(Finding::ok(
                Area::Cluster,
                format!("{}: Deployment {deployment} runs as {account}", role.label()),
            ));
        }
    }
    delegates::check(cluster, policy, policy_source, &mut findings);
    webhooks::check(&base, cluster, policy.enforce_deletes, &mut findings);
    Ok(Report { findings })
}

impl Report {
    pub fn mismatches(&self) -> usize {
        self.findings.iter().filter(|f| f.status == Status::Mismatch).count()
    }

    /// One line per check, then a summary line.
    pub fn text(&self) -> String {
        let mut out = String::new();
        for f in &self.findings {
            let status = match f.status {
                Status::Ok => "ok",
                Status::Mismatch => "MISMATCH",
                Status::Note => "note",
            };
            let area = match f.area {
                Area::Cluster => "cluster",
                Area::Policy => "policy",
                Area::Webhook => "webhook",
            };
            let fix = f.fix.as_ref().map(|x| format!(" — fix: {x}")).unwrap_or_default();
            out.push_str(&format!("{status:<9}{area:<9}{}{fix}\n", f.message));
        }
        out.push_str(&match self.mismatches() {
            0 => format!(
                "the policy, scimgate's webhook configurations and the cluster agree ({} checks)\n",
                self.findings.len()
            ),
            1 => "1 mismatch: fix it as named above, then run scimgate doctor again\n".to_string(),
            n => format!("{n} mismatches: fix them as named above, then run scimgate doctor again\n"),
        });
        out
    }

    pub fn json(&self) -> Value {
        json!({"agree": self.mismatches() == 0, "mismatches": self.mismatches(), "checks": self.findings})
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;

    /// manifests/base's configurations as registered with a caBundle.
    fn registered() -> Vec<WebhookConfig> {
        let pem = base64::engine::general_purpose::STANDARD
            .encode("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n");
        let mut configs = webhooks::base().expect("base");
        for w in configs.iter_mut().flat_map(|c| c.webhooks.iter_mut()) {
            w.ca_bundle = Some(pem.clone());
        }
        configs
    }

    fn component(role: Role, namespace: &str, deployment: &str, account: &str) -> Component {
        Component {
            role,
            deployment: format!("{namespace}/{deployment}"),
            account: Account::new(namespace, account),
        }
    }

    fn policy(delegates: &str) -> Policy {
        let text = format!(
            "apiVersion: scimgate.io/v1\nkind: Policy\nidentity:\n  delegates:\n{delegates}rules:\n  - name: a\n    allow: [submit]\n    groups: [x]\n"
        );
        Policy::parse(&text, "p.yaml").expect("valid")
    }

    fn lines(cluster: &Cluster, policy: &Policy) -> Vec<String> {
        check(cluster, policy, "p.yaml")
            .expect("checked")
            .text()
            .lines()
            .filter(|l| !l.starts_with("ok "))
            .map(String::from)
            .collect()
    }

    #[test]
    fn a_second_namespaced_argo_install_needs_its_own_delegate_and_exemption() {
        let cluster = Cluster {
            components: vec![
                component(Role::ArgoController, "argo", "workflow-controller", "argo"),
                component(Role::ArgoController, "team-a", "workflow-controller", "argo"),
            ],
            configs: registered(),
            ..Cluster::default()
        };
        let p = policy(
            "    - serviceAccount: argo:argo\n      via: ownerStamp\n    - serviceAccount: tekton-pipelines:tekton-pipelines-controller\n      via: ownerStamp\n",
        );
        let got = lines(&cluster, &p);
        let has = |needle: &str| got.iter().any(|l| l.contains(needle));
        assert!(has("MISMATCH policy   the cluster runs Argo's workflow-controller as team-a/argo (Deployment team-a/workflow-controller), but the policy has no ownerStamp delegate for it"), "{got:#?}");
        assert!(
            has("fix: add `- serviceAccount: team-a:argo` with `via: ownerStamp` to identity.delegates of p.yaml"),
            "{got:#?}"
        );
        assert!(has("note     policy   the policy trusts tekton-pipelines:tekton-pipelines-controller as Tekton Pipelines' controller, and none is installed"), "{got:#?}");
        assert!(has("MISMATCH webhook  stamp.scimgate.io does not name system:serviceaccount:team-a:argo on UPDATE, though Argo's workflow-controller runs as it (Deployment team-a/workflow-controller): the controller's writes reach this fail-closed webhook"), "{got:#?}");
        assert!(has("fix: add 'system:serviceaccount:team-a:argo' beside the accounts named on UPDATE in matchCondition new-work-or-a-persons-change of webhook stamp.scimgate.io"), "{got:#?}");
        // Tekton is not installed: its upstream account in the webhooks is left alone.
        assert!(
            !got.iter().any(|l| l.starts_with("MISMATCH") && l.contains("tekton")),
            "{got:#?}"
        );
        assert_eq!(got.iter().filter(|l| l.starts_with("MISMATCH")).count(), 4, "{got:#?}");
    }

    #[test]
    fn argo_server_delegates_sso_accounts_unknown_accounts_and_a_wrong_via() {
        let mut cluster = Cluster {
            components: vec![
                component(Role::ArgoController, "argo", "workflow-controller", "argo"),
                component(Role::ArgoServer, "argo", "argo-server", "argo-server"),
            ],
            configs: registered(),
            ..Cluster::default()
        };
        cluster.accounts.insert(
            Account::new("argo", "ml"),
            AccountState::SsoRbac("'ml' in groups".into()),
        );
        cluster
            .accounts
            .insert(Account::new("argo", "deployer"), AccountState::Plain);
        let p = policy(
            "    - serviceAccount: argo:argo-server\n      via: ownerStamp\n    - serviceAccount: argo:argo\n      via: ownerStamp\n    - serviceAccount: argo:ml\n      via: argoServer\n    - serviceAccount: argo:deployer\n      via: argoServer\n    - serviceAccount: \"argo:team-*\"\n      via: argoServer\n",
        );
        let report = check(&cluster, &p, "p.yaml").expect("checked").text();
        for line in [
            "MISMATCH policy   the policy has argo:argo-server as an ownerStamp delegate, but it is the Argo Server (Deployment argo/argo-server): every submit, approval and cancel made through the Argo UI or API is refused (judged as a controller creating runs for an owner) — fix: set `via: argoServer` for `serviceAccount: argo:argo-server` in identity.delegates of p.yaml",
            "ok       policy   the policy trusts argo:ml as the Argo Server: an SSO RBAC account (workflows.argoproj.io/rbac-rule: 'ml' in groups)",
            "MISMATCH policy   the policy trusts argo:deployer to name people (argoServer), but it is neither the Argo Server's account nor one its SSO RBAC can act as (no workflows.argoproj.io/rbac-rule annotation): whoever runs as it can submit as anyone — fix: remove `serviceAccount: argo:deployer` from identity.delegates of p.yaml",
            "note     policy   the argoServer pattern argo:team-* is not checked against the cluster's accounts",
        ] {
            assert!(report.lines().any(|l| l == line), "missing\n{line}\nin\n{report}");
        }
        assert!(
            report.ends_with("2 mismatches: fix them as named above, then run scimgate doctor again\n"),
            "{report}"
        );
    }

    #[test]
    fn an_argo_server_pattern_covering_a_controller_is_named() {
        let cluster = Cluster {
            components: vec![component(Role::ArgoController, "argo", "workflow-controller", "argo")],
            configs: registered(),
            ..Cluster::default()
        };
        let got = lines(
            &cluster,
            &policy("    - serviceAccount: \"argo:*\"\n      via: argoServer\n"),
        );
        let mismatches: Vec<&String> = got.iter().filter(|l| l.starts_with("MISMATCH")).collect();
        assert_eq!(
            mismatches,
            ["MISMATCH policy   the policy's argoServer pattern argo:* covers argo:argo, which is Argo's workflow-controller (Deployment argo/workflow-controller): its writes are taken to name a person in Argo's creator and actor labels, which whoever wrote the run chose, instead of the owner's verified stamp — fix: add `- serviceAccount: argo:argo` with `via: ownerStamp` to identity.delegates of p.yaml (an exact delegate comes before a pattern)"],
            "{got:#?}"
        );
    }

    #[test]
    fn the_argo_server_exempted_as_a_controller_is_named() {
        let mut configs = registered();
        let (name, expression) = &mut configs[0].webhooks[0].conditions[0];
        assert_eq!(name, "new-work-or-a-persons-change");
        *expression = expression.replace(
            "'system:serviceaccount:argo:argo',",
            "'system:serviceaccount:argo:argo', 'system:serviceaccount:argo:argo-server',",
        );
        let cluster = Cluster {
            components: vec![
                component(Role::ArgoController, "argo", "workflow-controller", "argo"),
                component(Role::ArgoServer, "argo", "argo-server", "argo-server"),
            ],
            configs,
            ..Cluster::default()
        };
        let p = policy("    - serviceAccount: argo:argo\n      via: ownerStamp\n    - serviceAccount: argo:argo-server\n      via: argoServer\n");
        let got = lines(&cluster, &p);
        let mismatches: Vec<&String> = got.iter().filter(|l| l.starts_with("MISMATCH")).collect();
        assert_eq!(
            mismatches,
            ["MISMATCH webhook  stamp.scimgate.io names system:serviceaccount:argo:argo-server on UPDATE, which manifests/base does not: the Argo Server runs as it (Deployment argo/argo-server), and its writes on UPDATE would be let through as a controller's — fix: remove 'system:serviceaccount:argo:argo-server' from matchCondition new-work-or-a-persons-change of webhook stamp.scimgate.io (MutatingWebhookConfiguration scimgate)"],
            "{got:#?}"
        );
    }

    #[test]
    fn a_webhook_registered_without_match_conditions_is_named() {
        let mut configs = registered();
        configs[0].webhooks[0].conditions.clear();
        let cluster = Cluster {
            components: vec![component(Role::ArgoController, "argo", "workflow-controller", "argo")],
            configs,
            ..Cluster::default()
        };
        let got = lines(
            &cluster,
            &policy("    - serviceAccount: argo:argo\n      via: ownerStamp\n"),
        );
        let mismatches: Vec<&String> = got.iter().filter(|l| l.starts_with("MISMATCH")).collect();
        assert_eq!(mismatches.len(), 1, "{got:#?}");
        assert!(
            mismatches[0].starts_with("MISMATCH webhook  stamp.scimgate.io has no matchConditions"),
            "{got:#?}"
        );
        assert!(
            mismatches[0].contains("(matchConditions need Kubernetes 1.28 or later)"),
            "{got:#?}"
        );
    }
}
