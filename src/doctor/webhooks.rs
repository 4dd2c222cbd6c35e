//! scimgate's webhook configurations as the cluster registers them, against what
//! manifests/base/webhooks.yaml ships (built into the binary, so a doctor checks against the
//! manifests of its own version): each webhook present, its caBundle set, its failurePolicy as
//! shipped (the deletes webhook `Fail` under `enforceDeletes`, as components/enforce-deletes sets
//! it), and the controller accounts its matchConditions name those the cluster's controllers run
//! as. Webhooks are found by their names, whatever their configuration is called.

use super::cel::{self, Mention};
use super::{Account, Area, Cluster, Edit, Finding, Role};
use base64::Engine;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

pub const BASE: &str = include_str!("../../manifests/base/webhooks.yaml");

/// The webhook components/enforce-deletes switches to `Fail`.
pub const DELETES: &str = "deletes.scimgate.io";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigKind {
    Mutating,
    Validating,
}

impl ConfigKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ConfigKind::Mutating => "MutatingWebhookConfiguration",
            ConfigKind::Validating => "ValidatingWebhookConfiguration",
        }
    }

    pub fn from_kind(kind: &str) -> Option<ConfigKind> {
        [ConfigKind::Mutating, ConfigKind::Validating]
            .into_iter()
            .find(|k| k.as_str() == kind)
    }
}

/// A Mutating- or ValidatingWebhookConfiguration, as far as the checks read it.
#[derive(Debug, Clone)]
pub struct WebhookConfig {
    pub kind: ConfigKind,
    pub name: String,
    /// cert-manager's `cert-manager.io/inject-ca-from`: its cainjector fills the caBundle.
    pub inject_ca_from: Option<String>,
    pub webhooks: Vec<Webhook>,
}

#[derive(Debug, Clone)]
pub struct Webhook {
    pub name: String,
    /// As served, or the v1 default `Fail` when absent (admissionregistration/v1 defaults.go).
    pub failure_policy: String,
    pub ca_bundle: Option<String>,
    /// Called at `clientConfig.url` (which may be served by a publicly trusted certificate).
    pub by_url: bool,
    /// The namespace of the Service it calls (`clientConfig.service.namespace`).
    pub service_namespace: Option<String>,
    /// `(name, expression)` of each matchCondition.
    pub conditions: Vec<(String, String)>,
}

impl WebhookConfig {
    pub fn from_value(kind: ConfigKind, v: &Value) -> WebhookConfig {
        let text = |v: &Value, p: &str| v.pointer(p).and_then(Value::as_str).map(String::from);
        let webhooks = v["webhooks"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|w| Webhook {
                name: text(w, "/name").unwrap_or_default(),
                failure_policy: text(w, "/failurePolicy").unwrap_or_else(|| "Fail".into()),
                ca_bundle: text(w, "/clientConfig/caBundle"),
                by_url: w.pointer("/clientConfig/url").is_some_and(Value::is_string),
                service_namespace: text(w, "/clientConfig/service/namespace"),
                conditions: w["matchConditions"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|c| {
                        (
                            text(c, "/name").unwrap_or_default(),
                            text(c, "/expression").unwrap_or_default(),
                        )
                    })
                    .collect(),
            })
            .collect();
        WebhookConfig {
            kind,
            name: text(v, "/metadata/name").unwrap_or_default(),
            inject_ca_from: text(v, "/metadata/annotations/cert-manager.io~1inject-ca-from"),
            webhooks,
        }
    }

    fn describe(&self) -> String {
        format!("{} {}", self.kind.as_str(), self.name)
    }
}

/// The configurations manifests/base/webhooks.yaml ships.
pub fn base() -> Result<Vec<WebhookConfig>, String> {
    let mut out = Vec::new();
    for doc in serde_yaml_ng::Deserializer::from_str(BASE) {
        let v = <Value as serde::Deserialize>::deserialize(doc).map_err(|e| e.to_string())?;
        if let Some(kind) = v["kind"].as_str().and_then(ConfigKind::from_kind) {
            out.push(WebhookConfig::from_value(kind, &v));
        }
    }
    Ok(out)
}

/// What a webhook of manifests/base does, for saying what is lost without it; and what goes
/// through while scimgate is unreachable if it fails open.
fn purpose(webhook: &str) -> (&'static str, &'static str) {
    match webhook {
        "stamp.scimgate.io" => (
            "stamps new runs and people's changes",
            "new runs and people's changes go through unstamped",
        ),
        "running.stamp.scimgate.io" => (
            "keeps scimgate's stamps through the controllers' writes and stamps Tekton's child runs",
            "the controllers' writes go through as they are",
        ),
        "policy.scimgate.io" => (
            "judges new runs and people's changes",
            "new runs and people's changes go through unjudged",
        ),
        "running.policy.scimgate.io" => (
            "judges the child runs Tekton's controller creates",
            "Tekton's child runs go through unjudged",
        ),
        DELETES => (
            "records deletes (and judges them under enforceDeletes)",
            "deletes go through unjudged",
        ),
        _ => (
            "handles what manifests/base/webhooks.yaml routes to it",
            "what it handles goes through unjudged",
        ),
    }
}

/// A webhook of manifests/base, and where the cluster has it.
type Located<'a> = (&'a Webhook, Option<(&'a WebhookConfig, &'a Webhook)>);

/// Every webhook check, appended to `out`.
pub(super) fn check(base: &[WebhookConfig], cluster: &Cluster, enforce_deletes: bool, out: &mut Vec<Finding>) {
    for bc in base {
        let located: Vec<Located<'_>> = bc
            .webhooks
            .iter()
            .map(|bw| (bw, locate(&cluster.configs, bc.kind, &bw.name)))
            .collect();
        if located.iter().all(|(_, l)| l.is_none()) {
            let purposes: Vec<&str> = bc.webhooks.iter().map(|w| purpose(&w.name).0).collect();
            out.push(Finding::mismatch(
                Area::Webhook,
                format!("{} is not registered: nothing {}", bc.describe(), purposes.join("; nothing ")),
                "apply it with your overlay (kubectl apply -k manifests/overlays/<overlay>); it is in manifests/base/webhooks.yaml".into(),
            ));
            continue;
        }
        ca_bundles(&located, out);
        for (bw, live) in &located {
            let Some((lc, lw)) = live else {
                out.push(Finding::mismatch(
                    Area::Webhook,
                    format!(
                        "webhook {} is missing from {}: nothing {}",
                        bw.name,
                        bc.describe(),
                        purpose(&bw.name).0
                    ),
                    format!(
                        "re-apply {} from manifests/base/webhooks.yaml with your overlay",
                        bc.describe()
                    ),
                ));
                continue;
            };
            failure_policy(bw, lc, lw, enforce_deletes, out);
            conditions(bw, lc, lw, cluster, out);
        }
    }
}

/// The live webhook named `name` in a configuration of `kind`.
fn locate<'a>(live: &'a [WebhookConfig], kind: ConfigKind, name: &str) -> Option<(&'a WebhookConfig, &'a Webhook)> {
    live.iter()
        .filter(|c| c.kind == kind)
        .find_map(|c| c.webhooks.iter().find(|w| w.name == name).map(|w| (c, w)))
}

/// One check per live configuration holding our webhooks: every caBundle a PEM certificate.
fn ca_bundles(located: &[Located<'_>], out: &mut Vec<Finding>) {
    let mut configs: Vec<&WebhookConfig> = Vec::new();
    for (lc, _) in located.iter().filter_map(|(_, live)| *live) {
        if !configs.iter().any(|c| std::ptr::eq(*c, lc)) {
            configs.push(lc);
        }
    }
    for lc in configs {
        let ours = located
            .iter()
            .filter_map(|(_, live)| *live)
            .filter(|(c, _)| std::ptr::eq(*c, lc))
            .map(|(_, w)| w);
        let mut bad: BTreeMap<&str, Vec<&Webhook>> = BTreeMap::new();
        for w in ours {
            if let Some(why) = ca_problem(w) {
                bad.entry(why).or_default().push(w);
            }
        }
        out.push(ca_finding(lc, &bad));
    }
}

/// The caBundle check of one configuration, given its webhooks by what is wrong with theirs.
fn ca_finding(lc: &WebhookConfig, bad: &BTreeMap<&str, Vec<&Webhook>>) -> Finding {
    if bad.is_empty() {
        return Finding::ok(
            Area::Webhook,
            format!("caBundle of {}: set on each of scimgate's webhooks", lc.describe()),
        );
    }
    let list: Vec<String> = bad
        .iter()
        .map(|(why, hooks)| {
            let names: Vec<&str> = hooks.iter().map(|w| w.name.as_str()).collect();
            format!("{why} on {}", names.join(", "))
        })
        .collect();
    let closed = bad.values().flatten().any(|w| w.failure_policy == "Fail");
    let fix = match &lc.inject_ca_from {
        Some(cert) => format!(
            "cert-manager's cainjector has not filled it from Certificate {cert}: check that cert-manager runs and that Certificate is Ready"
        ),
        None => "set caBundle to what `scimgate certs` printed (cabundle.env of overlays/embedded or overlays/ha-postgres) and re-apply, or let cert-manager inject it (overlays/cert-manager)".into(),
    };
    Finding::mismatch(
        Area::Webhook,
        format!(
            "caBundle of {} {}, so the API server cannot verify scimgate's serving certificate and every call fails{}",
            lc.describe(),
            list.join("; "),
            if closed {
                ": failing closed, new runs and people's changes are refused"
            } else {
                ""
            }
        ),
        fix,
    )
}

/// Why a webhook's caBundle will not do, if it will not.
fn ca_problem(w: &Webhook) -> Option<&'static str> {
    let b64 = w.ca_bundle.as_deref().unwrap_or_default().trim();
    let pem = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .unwrap_or_default();
    let text = String::from_utf8_lossy(&pem);
    if text.contains("-----BEGIN CERTIFICATE-----") {
        None
    } else if w.by_url {
        // A URL may be served by a certificate the API server's own roots trust.
        None
    } else if text.trim().is_empty() {
        Some("is empty")
    } else {
        Some("holds no PEM certificate")
    }
}

fn failure_policy(bw: &Webhook, lc: &WebhookConfig, lw: &Webhook, enforce_deletes: bool, out: &mut Vec<Finding>) {
    let enforced = bw.name == DELETES && enforce_deletes;
    let expected = if enforced { "Fail" } else { bw.failure_policy.as_str() };
    let (ok, wanted) = if enforced {
        (
            "as the policy's enforceDeletes: true needs (components/enforce-deletes)".to_string(),
            "where the policy's enforceDeletes: true needs Fail (components/enforce-deletes)".to_string(),
        )
    } else {
        (
            "as manifests/base ships".to_string(),
            format!("where manifests/base ships {expected}"),
        )
    };
    if lw.failure_policy == expected {
        out.push(Finding::ok(
            Area::Webhook,
            format!("{}: failurePolicy {expected}, {ok}", lw.name),
        ));
        return;
    }
    let effect = if expected == "Fail" {
        purpose(&bw.name).1
    } else if bw.name == DELETES {
        "nobody can delete a run, though the policy does not enforce deletes"
    } else {
        "work already admitted waits on it"
    };
    let fix = if enforced {
        "add components/enforce-deletes to your overlay's components and re-apply".to_string()
    } else {
        format!(
            "set failurePolicy: {expected} on webhook {} of {}",
            lw.name,
            lc.describe()
        )
    };
    out.push(Finding::mismatch(
        Area::Webhook,
        format!(
            "{}: failurePolicy {}, {wanted}: while scimgate is unreachable, {effect}",
            lw.name, lw.failure_policy
        ),
        fix,
    ));
}

/// An account a condition names, by the operations it is named for (`UPDATE`, `CREATE|UPDATE`;
/// empty: any).
type Named = (String, String);

fn named(m: &Mention) -> Named {
    (m.operations.join("|"), m.username.clone())
}

/// The accounts manifests/base names in a webhook's matchConditions, with each upstream controller
/// account replaced by the accounts the cluster runs that controller as: required, and, for a
/// controller the cluster does not run, allowed.
fn expected(bw: &Webhook, cluster: &Cluster) -> (BTreeSet<Named>, BTreeSet<Named>) {
    let (mut required, mut allowed) = (BTreeSet::new(), BTreeSet::new());
    for m in bw.conditions.iter().flat_map(|(n, e)| cel::mentions(n, e)) {
        let (ops, user) = named(&m);
        let role = [Role::ArgoController, Role::TektonController]
            .into_iter()
            .find(|r| r.upstream().username() == user);
        match role.map(|r| cluster.accounts_of(r)) {
            Some(found) if found.is_empty() => {
                allowed.insert((ops, user));
            }
            Some(found) => required.extend(found.into_iter().map(|(a, _)| (ops.clone(), a.username()))),
            None => {
                required.insert((ops, user));
            }
        }
    }
    (required, allowed)
}

/// The controller accounts the live webhook's matchConditions name, against those expected.
fn conditions(bw: &Webhook, lc: &WebhookConfig, lw: &Webhook, cluster: &Cluster, out: &mut Vec<Finding>) {
    if !bw.conditions.is_empty() && lw.conditions.is_empty() {
        out.push(Finding::mismatch(
            Area::Webhook,
            format!(
                "{} has no matchConditions: the controllers' writes are not told apart from people's, so while scimgate is unreachable running work waits on it (or, failing open, goes unjudged)",
                lw.name
            ),
            format!("re-apply {} from manifests/base/webhooks.yaml (matchConditions need Kubernetes 1.28 or later)", lc.describe()),
        ));
        return;
    }
    let (required, allowed) = expected(bw, cluster);
    let live: Vec<Mention> = lw.conditions.iter().flat_map(|(n, e)| cel::mentions(n, e)).collect();
    let have: BTreeSet<Named> = live.iter().map(named).collect();
    let missing: Vec<&Named> = required.difference(&have).collect();
    let extra: Vec<&Named> = have
        .iter()
        .filter(|n| !required.contains(n) && !allowed.contains(n))
        .collect();
    if missing.is_empty() && extra.is_empty() {
        out.push(agrees(lw, &required, cluster));
        return;
    }
    let site = Site {
        bw,
        lc,
        lw,
        live: &live,
        cluster,
    };
    // By the controller each account is (or was meant for): one missing and one unused is a
    // renamed account.
    let role_of = |(_, u): &&Named| Account::from_username(u).and_then(|a| cluster.role_of(&a).or(Role::guess(&a)));
    let roles: BTreeSet<Option<Role>> = missing.iter().chain(extra.iter()).map(role_of).collect();
    for role in roles {
        let m: Vec<&Named> = missing.iter().copied().filter(|n| role_of(n) == role).collect();
        let x: Vec<&Named> = extra.iter().copied().filter(|n| role_of(n) == role).collect();
        out.extend(site.mismatches(role, &m, &x));
    }
}

/// The check of a webhook whose matchConditions name what is expected (`required`).
fn agrees(lw: &Webhook, required: &BTreeSet<Named>, cluster: &Cluster) -> Finding {
    let controllers: BTreeSet<String> = required
        .iter()
        .filter_map(|(_, u)| Account::from_username(u).filter(|a| cluster.role_of(a).is_some()))
        .map(|a| a.to_string())
        .collect();
    let message = if controllers.is_empty() {
        format!(
            "{}: its matchConditions name the accounts manifests/base names",
            lw.name
        )
    } else {
        let list: Vec<String> = controllers.into_iter().collect();
        format!(
            "{}: its matchConditions name the controllers as the cluster runs them ({})",
            lw.name,
            list.join(", ")
        )
    };
    Finding::ok(Area::Webhook, message)
}

/// One live webhook being checked, for wording its mismatches.
struct Site<'a> {
    bw: &'a Webhook,
    lc: &'a WebhookConfig,
    lw: &'a Webhook,
    live: &'a [Mention],
    cluster: &'a Cluster,
}

impl Site<'_> {
    fn mismatches(&self, role: Option<Role>, missing: &[&Named], extra: &[&Named]) -> Vec<Finding> {
        let users = |l: &[&Named]| l.iter().map(|(_, u)| u.clone()).collect::<BTreeSet<String>>();
        let ops = |l: &[&Named], u: &str| on(l.iter().filter(|(_, x)| x == u).map(|(o, _)| o.as_str()));
        let (new, old) = (users(missing), users(extra));
        if let (1, 1, Some(n), Some(o)) = (new.len(), old.len(), new.first(), old.first()) {
            return vec![self.replace(role, o, n, &ops(missing, n))];
        }
        let mut out: Vec<Finding> = new.iter().map(|n| self.add(role, n, &ops(missing, n))).collect();
        out.extend(old.iter().map(|o| self.remove(role, o, &ops(extra, o))));
        out
    }

    fn place(&self, condition: &str) -> String {
        format!(
            "matchCondition {condition} of webhook {} ({})",
            self.lw.name,
            self.lc.describe()
        )
    }

    /// The live condition naming `user`, else one naming any account, else manifests/base's.
    fn condition_of(&self, user: Option<&str>) -> String {
        self.live
            .iter()
            .find(|m| user.is_none_or(|u| m.username == u))
            .map(|m| m.condition.clone())
            .or_else(|| self.bw.conditions.first().map(|(n, _)| n.clone()))
            .unwrap_or_default()
    }

    /// `ns/name (Deployment ns/name)` of the Deployment running as `user`, else `user`.
    fn runs_as(&self, user: &str) -> String {
        match self.deployment_of(user) {
            Some((a, d)) => format!("{a} (Deployment {d})"),
            None => user.to_string(),
        }
    }

    fn deployment_of(&self, user: &str) -> Option<(Account, &str)> {
        let a = Account::from_username(user)?;
        let c = self.cluster.components.iter().find(|c| c.account == a)?;
        Some((a, c.deployment.as_str()))
    }

    /// What goes wrong while the controller's account is not named here.
    fn unnamed(&self) -> &'static str {
        if self.bw.failure_policy == "Fail" {
            "the controller's writes reach this fail-closed webhook, so while scimgate is unreachable work already admitted waits on it"
        } else {
            "this fail-open webhook does not see the controller's writes, so what the fail-closed one leaves to it is judged by nobody"
        }
    }

    fn edit(&self, condition: &str, edit: Edit) -> Edit {
        Edit {
            target: format!("{}/{}", self.lc.kind.as_str(), self.lc.name),
            webhook: Some(self.lw.name.clone()),
            condition: Some(condition.to_string()),
            ..edit
        }
    }

    fn replace(&self, role: Option<Role>, old: &str, new: &str, ops: &str) -> Finding {
        let condition = self.condition_of(Some(old));
        let what = role.map_or("an account manifests/base names", Role::label);
        Finding::mismatch(
            Area::Webhook,
            format!(
                "{} names {old} as {what}{ops}, but the cluster runs it as {}: {}",
                self.lw.name,
                self.runs_as(new),
                self.unnamed()
            ),
            format!("in {}, replace '{old}' with '{new}'", self.place(&condition)),
        )
        .with_edit(self.edit(&condition, Edit::replace(old.into(), new.into())))
    }

    fn add(&self, role: Option<Role>, new: &str, ops: &str) -> Finding {
        let condition = self.condition_of(None);
        let message = match role {
            Some(r) => format!(
                "{} does not name {new}{ops}, though {} runs as it{}: {}",
                self.lw.name,
                r.label(),
                self.deployment_of(new)
                    .map(|(_, d)| format!(" (Deployment {d})"))
                    .unwrap_or_default(),
                self.unnamed()
            ),
            None => format!("{} does not name {new}{ops}, as manifests/base does", self.lw.name),
        };
        Finding::mismatch(
            Area::Webhook,
            message,
            format!(
                "add '{new}' beside the accounts named{ops} in {}",
                self.place(&condition)
            ),
        )
        .with_edit(self.edit(&condition, Edit::add(new.into())))
    }

    fn remove(&self, role: Option<Role>, old: &str, ops: &str) -> Finding {
        let condition = self.condition_of(Some(old));
        let what = role.map_or("an Argo or Tekton controller", Role::label);
        let message = match self.deployment_of(old) {
            // Something runs as it, but not as what manifests/base exempts (the Argo Server, or a
            // controller for another operation).
            Some((_, d)) => format!(
                "{} names {old}{ops}, which manifests/base does not: {what} runs as it (Deployment {d}), and its writes{ops} would be let through as a controller's",
                self.lw.name
            ),
            None => format!(
                "{} names {old}{ops} as {what}, but nothing in the cluster runs as it: its writes would be let through as a controller's",
                self.lw.name
            ),
        };
        Finding::mismatch(
            Area::Webhook,
            message,
            format!("remove '{old}' from {}", self.place(&condition)),
        )
        .with_edit(self.edit(&condition, Edit::remove(old.into())))
    }
}

/// ` on UPDATE`, ` on CREATE and UPDATE`; empty for any operation.
fn on<'a>(ops: impl Iterator<Item = &'a str>) -> String {
    let all: BTreeSet<&str> = ops.flat_map(|o| o.split('|')).filter(|o| !o.is_empty()).collect();
    match all.len() {
        0 => String::new(),
        _ => format!(" on {}", all.into_iter().collect::<Vec<_>>().join(" and ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_base_names_the_upstream_controllers_and_ships_a_purpose_for_each_webhook() {
        let base = base().expect("base");
        let names: Vec<&str> = base
            .iter()
            .flat_map(|c| c.webhooks.iter().map(|w| w.name.as_str()))
            .collect();
        assert_eq!(
            names,
            [
                "stamp.scimgate.io",
                "running.stamp.scimgate.io",
                "policy.scimgate.io",
                "running.policy.scimgate.io",
                DELETES
            ]
        );
        for n in &names {
            assert!(!purpose(n).0.contains("routes to it"), "{n} has no purpose of its own");
        }
        let mentioned: BTreeSet<String> = base
            .iter()
            .flat_map(|c| c.webhooks.iter())
            .flat_map(|w| w.conditions.iter().flat_map(|(n, e)| cel::mentions(n, e)))
            .map(|m| m.username)
            .collect();
        for role in [Role::ArgoController, Role::TektonController] {
            assert!(mentioned.contains(&role.upstream().username()), "{role:?}");
        }
        let deletes = base.iter().flat_map(|c| &c.webhooks).find(|w| w.name == DELETES);
        assert_eq!(deletes.map(|w| w.failure_policy.as_str()), Some("Ignore"));
    }

    #[test]
    fn the_base_stamp_webhook_names_controllers_by_operation() {
        let base = base().expect("base");
        let stamp = &base[0].webhooks[0];
        let got: BTreeSet<Named> = stamp
            .conditions
            .iter()
            .flat_map(|(n, e)| cel::mentions(n, e))
            .map(|m| named(&m))
            .collect();
        let tekton = Role::TektonController.upstream().username();
        assert!(got.contains(&("UPDATE".into(), Role::ArgoController.upstream().username())));
        assert!(got.contains(&("UPDATE".into(), tekton.clone())));
        assert!(got.contains(&("CREATE".into(), tekton)));
        assert!(got.contains(&("UPDATE".into(), "system:kube-controller-manager".into())));
    }
}
