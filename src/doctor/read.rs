//! The Kubernetes reads `doctor` makes, all of them GETs and LISTs: every Deployment (which of
//! them are Argo's and Tekton's is `install`'s to say), every Mutating- and
//! ValidatingWebhookConfiguration, the ServiceAccounts the policy's `argoServer` delegates name,
//! and, when no policy file is given, the policy ConfigMap manifests/base installs.

use super::install::classify;
use super::webhooks::ConfigKind;
use super::{Account, AccountState, Cluster, Error, Result, WebhookConfig};
use crate::policy::{Policy, Via};
use kube::api::{Api, DynamicObject, GroupVersionKind, ListParams};
use kube::discovery::ApiResource;
use serde_json::Value;

/// The ConfigMap manifests/base/policy.yaml installs, and the key it holds the policy under.
pub const POLICY_CONFIGMAP: (&str, &str) = ("scimgate-policy", "policy.yaml");

/// The Annotation Argo's SSO RBAC picks accounts by (argo-workflows `server/auth/gatekeeper.go`).
pub const RBAC_RULE: &str = "workflows.argoproj.io/rbac-rule";

fn resource(group: &str, version: &str, kind: &str, plural: &str) -> ApiResource {
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), plural)
}

fn kube_error(what: String) -> impl FnOnce(kube::Error) -> Error {
    move |source| Error::Kube { what, source }
}

/// Every object of a cluster-wide list, as JSON.
async fn list(client: &kube::Client, ar: &ApiResource) -> Result<Vec<Value>> {
    let api: Api<DynamicObject> = Api::all_with(client.clone(), ar);
    let list = api
        .list(&ListParams::default())
        .await
        .map_err(kube_error(format!("listing {} in all namespaces", ar.plural)))?;
    Ok(list
        .items
        .into_iter()
        .filter_map(|o| serde_json::to_value(o).ok())
        .collect())
}

/// The Argo and Tekton Deployments in every namespace, and every webhook configuration.
pub async fn cluster(client: &kube::Client) -> Result<Cluster> {
    let deployments = list(client, &resource("apps", "v1", "Deployment", "deployments")).await?;
    let mut configs = Vec::new();
    for (kind, plural) in [
        (ConfigKind::Mutating, "mutatingwebhookconfigurations"),
        (ConfigKind::Validating, "validatingwebhookconfigurations"),
    ] {
        let ar = resource("admissionregistration.k8s.io", "v1", kind.as_str(), plural);
        configs.extend(
            list(client, &ar)
                .await?
                .iter()
                .map(|v| WebhookConfig::from_value(kind, v)),
        );
    }
    Ok(Cluster {
        components: deployments.iter().filter_map(classify).collect(),
        configs,
        accounts: Default::default(),
    })
}

/// Look up the ServiceAccount of every exact `argoServer` delegate no Deployment runs as.
pub async fn accounts(client: &kube::Client, policy: &Policy, cluster: &mut Cluster) -> Result<()> {
    let ar = resource("", "v1", "ServiceAccount", "serviceaccounts");
    for d in &policy.identity.delegates {
        let account = Account::new(&d.namespace, &d.name);
        let argo_server = matches!(d.via, Via::ArgoServer | Via::ArgoCreatorLabels);
        if !argo_server || d.pattern.is_some() || cluster.role_of(&account).is_some() {
            continue;
        }
        let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), &d.namespace, &ar);
        let found = api
            .get_opt(&d.name)
            .await
            .map_err(kube_error(format!("reading ServiceAccount {account}")))?;
        let state = match found {
            None => AccountState::Missing,
            Some(sa) => match sa.metadata.annotations.as_ref().and_then(|a| a.get(RBAC_RULE)) {
                Some(rule) => AccountState::SsoRbac(rule.clone()),
                None => AccountState::Plain,
            },
        };
        cluster.accounts.insert(account, state);
    }
    Ok(())
}

/// The policy in the ConfigMap manifests/base installs, in the namespace scimgate's webhooks call
/// (`scimgate` when none is registered); and how to name it in fixes.
pub async fn policy(client: &kube::Client, cluster: &Cluster) -> Result<(Policy, String)> {
    let namespace = cluster
        .configs
        .iter()
        .flat_map(|c| &c.webhooks)
        .filter(|w| w.name.ends_with(".scimgate.io"))
        .find_map(|w| w.service_namespace.clone())
        .unwrap_or_else(|| "scimgate".into());
    let (name, key) = POLICY_CONFIGMAP;
    let source = format!("ConfigMap {namespace}/{name} ({key})");
    let api: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        &namespace,
        &resource("", "v1", "ConfigMap", "configmaps"),
    );
    let found = api
        .get_opt(name)
        .await
        .map_err(kube_error(format!("reading {source}")))?;
    let text = found
        .as_ref()
        .and_then(|cm| cm.data.pointer(&format!("/data/{key}")))
        .and_then(Value::as_str)
        .ok_or_else(|| Error::NoPolicy(format!("{source} is not there")))?;
    Ok((Policy::parse(text, &source)?, source))
}
