//! scimgate's bindings as Kubernetes objects: a planned [`Binding`] as the RoleBinding or
//! ClusterRoleBinding written, and an object read back as the [`Observed`] binding it is. Which
//! objects are scimgate's is [`super::LABEL`]'s to say; the rest are never read as ours.

use super::plan::{Binding, Observed, Subject};
use super::{FIELD_MANAGER, GRANT, GROUP, LABEL, LABEL_VALUE, RBAC_GROUP};
use crate::policy::access::RoleRef;
use k8s_openapi::api::rbac::v1::{ClusterRoleBinding, RoleBinding, RoleRef as KubeRoleRef, Subject as KubeSubject};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use std::collections::BTreeMap;

/// The label selector of scimgate's bindings.
pub fn selector() -> String {
    format!("{LABEL}={LABEL_VALUE}")
}

fn meta(b: &Binding) -> ObjectMeta {
    ObjectMeta {
        name: Some(b.name.clone()),
        namespace: Some(b.namespace.clone()).filter(|n| !n.is_empty()),
        labels: Some(BTreeMap::from([(LABEL.to_string(), LABEL_VALUE.to_string())])),
        annotations: Some(BTreeMap::from([
            (GROUP.to_string(), b.group.clone()),
            (GRANT.to_string(), b.grant.clone()),
        ])),
        ..ObjectMeta::default()
    }
}

fn role_ref(b: &Binding) -> KubeRoleRef {
    KubeRoleRef {
        api_group: RBAC_GROUP.into(),
        kind: b.role.kind().into(),
        name: b.role.name().into(),
    }
}

fn subjects(b: &Binding) -> Vec<KubeSubject> {
    b.subjects
        .iter()
        .map(|s| KubeSubject {
            // RBAC's defaults (pkg/apis/rbac/v1/defaults.go): User and Group in the RBAC group,
            // a ServiceAccount in the core one.
            api_group: Some(if s.kind == "ServiceAccount" { "" } else { RBAC_GROUP }.into()),
            kind: s.kind.clone(),
            name: s.name.clone(),
            namespace: Some(s.namespace.clone()).filter(|n| !n.is_empty()),
        })
        .collect()
}

pub fn role_binding(b: &Binding) -> RoleBinding {
    RoleBinding {
        metadata: meta(b),
        role_ref: role_ref(b),
        subjects: Some(subjects(b)),
    }
}

pub fn cluster_role_binding(b: &Binding) -> ClusterRoleBinding {
    ClusterRoleBinding {
        metadata: meta(b),
        role_ref: role_ref(b),
        subjects: Some(subjects(b)),
    }
}

/// An object's binding as scimgate would have written it — only the fields it writes, so a label
/// someone else added is not a difference — with the other field managers holding part of it.
/// `None` when it is not one of scimgate's.
fn observed(m: &ObjectMeta, r: &KubeRoleRef, s: Option<&Vec<KubeSubject>>) -> Option<Observed> {
    let labels = m.labels.as_ref();
    if labels.and_then(|l| l.get(LABEL)).map(String::as_str) != Some(LABEL_VALUE) {
        return None;
    }
    let annotation = |k: &str| {
        m.annotations
            .as_ref()
            .and_then(|a| a.get(k))
            .cloned()
            .unwrap_or_default()
    };
    let role = match r.kind.as_str() {
        "Role" => RoleRef::Role(r.name.clone()),
        _ => RoleRef::ClusterRole(r.name.clone()),
    };
    let mut subjects: Vec<Subject> = s
        .into_iter()
        .flatten()
        .map(|s| Subject {
            kind: s.kind.clone(),
            name: s.name.clone(),
            namespace: s.namespace.clone().unwrap_or_default(),
        })
        .collect();
    subjects.sort();
    let mut others: Vec<String> = m
        .managed_fields
        .iter()
        .flatten()
        .filter_map(|f| f.manager.clone())
        .filter(|name| name != FIELD_MANAGER)
        .collect();
    others.sort();
    others.dedup();
    Some(Observed {
        binding: Binding {
            namespace: m.namespace.clone().unwrap_or_default(),
            name: m.name.clone().unwrap_or_default(),
            role,
            group: annotation(GROUP),
            grant: annotation(GRANT),
            subjects: subjects.into(),
        },
        others,
        resource_version: m.resource_version.clone().unwrap_or_default(),
        uid: m.uid.clone().unwrap_or_default(),
    })
}

pub fn observed_role_binding(o: &RoleBinding) -> Option<Observed> {
    observed(&o.metadata, &o.role_ref, o.subjects.as_ref())
}

pub fn observed_cluster_role_binding(o: &ClusterRoleBinding) -> Option<Observed> {
    observed(&o.metadata, &o.role_ref, o.subjects.as_ref())
}
