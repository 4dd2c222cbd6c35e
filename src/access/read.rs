//! What the `scimgate access` commands read from the cluster: the namespaces, scimgate's bindings
//! (LISTs in pages of 500), and the roles those bind. The reconciler watches the same instead.

use super::explain::Bound;
use super::object;
use super::plan::{Key, Observed};
use crate::policy::access::RoleRef;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use kube::api::{Api, ListParams};
use std::collections::{BTreeMap, HashMap};

/// Every object `api` lists under `params`, page by page.
async fn all<K>(api: &Api<K>, params: ListParams) -> Result<Vec<K>, kube::Error>
where
    K: Clone + std::fmt::Debug + serde::de::DeserializeOwned,
{
    let mut out = Vec::new();
    let mut params = params.limit(500);
    loop {
        let page = api.list(&params).await?;
        out.extend(page.items);
        match page.metadata.continue_ {
            Some(next) if !next.is_empty() => params = params.continue_token(&next),
            _ => return Ok(out),
        }
    }
}

/// The namespaces that are not being deleted, and scimgate's bindings.
pub async fn cluster(client: &kube::Client) -> Result<(Vec<String>, BTreeMap<Key, Observed>), kube::Error> {
    let mut namespaces: Vec<String> = all(&Api::<Namespace>::all(client.clone()), ListParams::default())
        .await?
        .into_iter()
        .filter(|n| n.metadata.deletion_timestamp.is_none())
        .filter_map(|n| n.metadata.name)
        .collect();
    namespaces.sort();
    let ours = ListParams::default().labels(&object::selector());
    let role_bindings = all(&Api::<RoleBinding>::all(client.clone()), ours.clone()).await?;
    let cluster_role_bindings = all(&Api::<ClusterRoleBinding>::all(client.clone()), ours).await?;
    let observed = role_bindings
        .iter()
        .filter_map(object::observed_role_binding)
        .chain(
            cluster_role_bindings
                .iter()
                .filter_map(object::observed_cluster_role_binding),
        )
        .map(|o| (o.binding.key(), o))
        .collect();
    Ok((namespaces, observed))
}

/// Each binding with the rules of the role it binds (each role read once).
pub async fn bound(client: &kube::Client, observed: BTreeMap<Key, Observed>) -> Result<Vec<Bound>, kube::Error> {
    let mut roles: HashMap<(String, RoleRef), Option<Vec<k8s_openapi::api::rbac::v1::PolicyRule>>> = HashMap::new();
    let mut out = Vec::new();
    for (_, o) in observed {
        let b = o.binding;
        let at = match &b.role {
            RoleRef::ClusterRole(_) => String::new(),
            RoleRef::Role(_) => b.namespace.clone(),
        };
        let key = (at, b.role.clone());
        if !roles.contains_key(&key) {
            let rules = match &b.role {
                RoleRef::ClusterRole(name) => Api::<ClusterRole>::all(client.clone())
                    .get_opt(name)
                    .await?
                    .map(|r| r.rules.unwrap_or_default()),
                RoleRef::Role(name) => Api::<Role>::namespaced(client.clone(), &b.namespace)
                    .get_opt(name)
                    .await?
                    .map(|r| r.rules.unwrap_or_default()),
            };
            roles.insert(key.clone(), rules);
        }
        out.push(Bound {
            rules: roles.get(&key).cloned().flatten(),
            binding: b,
        });
    }
    Ok(out)
}
