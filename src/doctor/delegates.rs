//! The policy's delegates against the accounts the cluster's Argo and Tekton run as: each
//! controller an `ownerStamp` delegate, each Argo Server an `argoServer` one, and no delegate
//! naming an account that nothing in the cluster runs as.

use super::{Account, AccountState, Area, Cluster, Edit, Finding, Role};
use crate::policy::{Delegate, Policy, Via};

/// One policy check after another, appended to `out`; `source` names the policy in fixes.
pub(super) fn check(cluster: &Cluster, policy: &Policy, source: &str, out: &mut Vec<Finding>) {
    let stale = stale(cluster, policy, source, out);
    for role in Role::ALL {
        let mut missing = Vec::new();
        for (account, deployment) in cluster.accounts_of(role) {
            match policy.delegate(&account.namespace, &account.name) {
                Some(d) if fits(d.via, role) => out.push(Finding::ok(
                    Area::Policy,
                    format!(
                        "the policy trusts {} as {} ({}), the account the cluster runs it as (Deployment {deployment})",
                        account.in_policy(),
                        role.label(),
                        via_name(d.via)
                    ),
                )),
                Some(d) => out.push(wrong_via(role, account, deployment, d, source)),
                None => missing.push((account, deployment)),
            }
        }
        let unused: Vec<&Account> = stale.iter().filter(|(r, _)| *r == Some(role)).map(|(_, a)| a).collect();
        if cluster.accounts_of(role).is_empty() {
            for a in unused {
                out.push(Finding::note(
                    Area::Policy,
                    format!(
                        "the policy trusts {} as {}, and none is installed: harmless while none is; remove the delegate if none will be",
                        a.in_policy(),
                        role.label()
                    ),
                ));
            }
            continue;
        }
        out.extend(pair(role, &missing, &unused, source));
    }
    for (_, a) in stale.iter().filter(|(r, _)| r.is_none()) {
        out.push(remove(None, a, source));
    }
}

/// Whether a delegate's `via` is the one `role` needs.
fn fits(via: Via, role: Role) -> bool {
    match role {
        Role::ArgoServer => matches!(via, Via::ArgoServer | Via::ArgoCreatorLabels),
        Role::ArgoController | Role::TektonController => via == Via::OwnerStamp,
    }
}

fn wanted(role: Role) -> Via {
    match role {
        Role::ArgoServer => Via::ArgoServer,
        Role::ArgoController | Role::TektonController => Via::OwnerStamp,
    }
}

fn via_name(via: Via) -> &'static str {
    match via {
        Via::ArgoServer => "argoServer",
        Via::ArgoCreatorLabels => "argoCreatorLabels",
        Via::OwnerStamp => "ownerStamp",
    }
}

/// What goes wrong while the policy does not trust `role`'s account.
fn consequence(role: Role) -> &'static str {
    match role {
        Role::ArgoController => {
            "every Workflow a CronWorkflow starts is denied, and so is each of its writes that changes a run's spec (judged as an ordinary account, which no rule allows)"
        }
        Role::ArgoServer => {
            "every submit, approval and cancel made through the Argo UI or API is judged as the Argo Server's own account and denied"
        }
        Role::TektonController => {
            "every TaskRun and child PipelineRun it creates for an admitted PipelineRun is denied (judged as an ordinary account, which no rule allows), so PipelineRuns stall"
        }
    }
}

/// The exact delegates whose accounts no Argo or Tekton Deployment runs as, each with the role it
/// was meant for (by its `via` and name; `None`: no telling). An `argoServer` delegate naming an
/// existing account is the Argo Server's SSO RBAC account when it carries Argo's annotation, and
/// a mismatch otherwise (found here and appended to `out`).
fn stale(cluster: &Cluster, policy: &Policy, source: &str, out: &mut Vec<Finding>) -> Vec<(Option<Role>, Account)> {
    let mut stale = Vec::new();
    for d in &policy.identity.delegates {
        let account = Account::new(&d.namespace, &d.name);
        if d.pattern.is_some() {
            out.push(Finding::note(
                Area::Policy,
                format!(
                    "the argoServer pattern {} is not checked against the cluster's accounts",
                    account.in_policy()
                ),
            ));
            continue;
        }
        if cluster.role_of(&account).is_some() {
            continue;
        }
        if d.via == Via::OwnerStamp {
            // An ownerStamp delegate is meant for a controller, whatever its name says.
            let role = Role::guess(&account).map(|r| match r {
                Role::ArgoServer => Role::ArgoController,
                r => r,
            });
            stale.push((role, account));
            continue;
        }
        match cluster.accounts.get(&account).unwrap_or(&AccountState::Missing) {
            AccountState::Missing => stale.push((Some(Role::ArgoServer), account)),
            AccountState::SsoRbac(rule) => out.push(Finding::ok(
                Area::Policy,
                format!(
                    "the policy trusts {} as the Argo Server: an SSO RBAC account (workflows.argoproj.io/rbac-rule: {rule})",
                    account.in_policy()
                ),
            )),
            AccountState::Plain => out.push(Finding::mismatch(
                Area::Policy,
                format!(
                    "the policy trusts {} to name people (argoServer), but it is neither the Argo Server's account nor one its SSO RBAC can act as (no workflows.argoproj.io/rbac-rule annotation): whoever runs as it can submit as anyone",
                    account.in_policy()
                ),
                format!("remove `serviceAccount: {}` from identity.delegates of {source}", account.in_policy()),
            )
            .with_edit(Edit::remove(account.in_policy()).of_policy())),
        }
    }
    stale
}

/// The accounts `role` runs as that the policy lacks, against the delegates meant for it that
/// nothing runs as: one of each is a renamed account (replace), otherwise each is added or
/// removed.
fn pair(role: Role, missing: &[(&Account, &str)], unused: &[&Account], source: &str) -> Vec<Finding> {
    let via = via_name(wanted(role));
    if let ([(new, deployment)], [old]) = (missing, unused) {
        return vec![Finding::mismatch(
            Area::Policy,
            format!(
                "the policy trusts {} as {} ({via}), but the cluster runs it as {new} (Deployment {deployment}): {}",
                old.in_policy(),
                role.label(),
                consequence(role)
            ),
            format!(
                "in identity.delegates of {source}, replace `serviceAccount: {}` with `serviceAccount: {}`",
                old.in_policy(),
                new.in_policy()
            ),
        )
        .with_edit(Edit::replace(old.in_policy(), new.in_policy()).of_policy())];
    }
    let mut out = Vec::new();
    for (new, deployment) in missing {
        out.push(
            Finding::mismatch(
                Area::Policy,
                format!(
                    "the cluster runs {} as {new} (Deployment {deployment}), but the policy has no {via} delegate for it: {}",
                    role.label(),
                    consequence(role)
                ),
                format!(
                    "add `- serviceAccount: {}` with `via: {via}` to identity.delegates of {source}",
                    new.in_policy()
                ),
            )
            .with_edit(Edit::add(new.in_policy()).of_policy()),
        );
    }
    out.extend(unused.iter().map(|old| remove(Some(role), old, source)));
    out
}

fn remove(role: Option<Role>, old: &Account, source: &str) -> Finding {
    let what = role.map_or("an Argo or Tekton controller", Role::label);
    Finding::mismatch(
        Area::Policy,
        format!(
            "the policy trusts {} as {what}, but nothing in the cluster runs as it: a delegate no controller uses is trust waiting for whoever creates that account",
            old.in_policy()
        ),
        format!(
            "remove `serviceAccount: {}` from identity.delegates of {source}",
            old.in_policy()
        ),
    )
    .with_edit(Edit::remove(old.in_policy()).of_policy())
}

/// A delegate of the wrong kind for the account `role` runs as: an exact one to correct, or an
/// `argoServer` pattern covering a controller's account, which an exact delegate must precede.
fn wrong_via(role: Role, account: &Account, deployment: &str, d: &Delegate, source: &str) -> Finding {
    let effect = match role {
        Role::ArgoServer => {
            "every submit, approval and cancel made through the Argo UI or API is refused (judged as a controller creating runs for an owner)"
        }
        Role::ArgoController | Role::TektonController => {
            "its writes are taken to name a person in Argo's creator and actor labels, which whoever wrote the run chose, instead of the owner's verified stamp"
        }
    };
    let wanted = via_name(wanted(role));
    if d.pattern.is_some() {
        return Finding::mismatch(
            Area::Policy,
            format!(
                "the policy's argoServer pattern {}:{} covers {}, which is {} (Deployment {deployment}): {effect}",
                d.namespace,
                d.name,
                account.in_policy(),
                role.label()
            ),
            format!(
                "add `- serviceAccount: {}` with `via: {wanted}` to identity.delegates of {source} (an exact delegate comes before a pattern)",
                account.in_policy()
            ),
        )
        .with_edit(Edit::add(account.in_policy()).of_policy());
    }
    Finding::mismatch(
        Area::Policy,
        format!(
            "the policy has {} as an {} delegate, but it is {} (Deployment {deployment}): {effect}",
            account.in_policy(),
            via_name(d.via),
            role.label()
        ),
        format!(
            "set `via: {wanted}` for `serviceAccount: {}` in identity.delegates of {source}",
            account.in_policy()
        ),
    )
}
