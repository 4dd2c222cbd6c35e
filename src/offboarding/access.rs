//! What the sweep may do, asked of the API server once at start (`SelfSubjectAccessReview`,
//! authorization.k8s.io/v1), so a missing grant is said once, with the manifest that has it,
//! rather than found object by object. Reports only: the sweep still tries, and records what is
//! refused.

use super::plan::Step;
use super::Mode;
use crate::policy::Kind;
use k8s_openapi::api::authorization::v1::{ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec};
use kube::api::{Api, PostParams};

/// One permission the sweep needs, and where the manifests grant it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub verb: &'static str,
    pub group: &'static str,
    pub resource: &'static str,
    pub granted_by: &'static str,
}

impl std::fmt::Display for Grant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.group {
            "" => write!(f, "{} {}", self.verb, self.resource),
            g => write!(f, "{} {}.{g}", self.verb, self.resource),
        }
    }
}

const BASE: &str = "manifests/base/rbac.yaml";
const ACT: &str = "manifests/components/offboarding";

/// What `mode` needs: listing every kind and creating Events; acting, patching the kinds a step
/// changes.
pub fn needed(mode: Mode) -> Vec<Grant> {
    let grant = |verb, group, resource, granted_by| Grant {
        verb,
        group,
        resource,
        granted_by,
    };
    let mut out = Vec::new();
    if mode == Mode::Off {
        return out;
    }
    for kind in Kind::ALL {
        let (group, _, resource, _) = crate::cluster::served_at(kind);
        out.push(grant("list", group, resource, BASE));
    }
    out.push(grant("create", "", "events", BASE));
    if mode == Mode::Act {
        // The kinds a step changes (templates run nothing, and are never changed).
        for kind in Kind::ALL.into_iter().filter(|k| changed_by_a_step(*k)) {
            let (group, _, resource, _) = crate::cluster::served_at(kind);
            out.push(grant("patch", group, resource, ACT));
        }
    }
    out
}

fn changed_by_a_step(kind: Kind) -> bool {
    [Step::Suspend, Step::Cancel].iter().any(|s| s.patch(kind).is_some())
}

/// The grants `mode` needs that the API server says scimgate lacks (in every namespace).
pub async fn missing(client: &kube::Client, mode: Mode) -> Result<Vec<Grant>, kube::Error> {
    let api: Api<SelfSubjectAccessReview> = Api::all(client.clone());
    let mut out = Vec::new();
    for g in needed(mode) {
        let review = SelfSubjectAccessReview {
            spec: SelfSubjectAccessReviewSpec {
                resource_attributes: Some(ResourceAttributes {
                    verb: Some(g.verb.into()),
                    group: Some(g.group.into()),
                    resource: Some(g.resource.into()),
                    ..ResourceAttributes::default()
                }),
                ..SelfSubjectAccessReviewSpec::default()
            },
            ..SelfSubjectAccessReview::default()
        };
        let answer = api.create(&PostParams::default(), &review).await?;
        if !answer.status.is_some_and(|s| s.allowed) {
            out.push(g);
        }
    }
    Ok(out)
}

/// Say once what is missing, and where it is granted.
pub async fn say_what_is_missing(client: &kube::Client, mode: Mode) {
    match missing(client, mode).await {
        Ok(m) if m.is_empty() => {}
        Ok(m) => {
            let mut by_manifest: std::collections::BTreeMap<&str, Vec<String>> = Default::default();
            for g in &m {
                by_manifest.entry(g.granted_by).or_default().push(g.to_string());
            }
            for (manifest, grants) in by_manifest {
                tracing::warn!(
                    mode = mode.as_str(),
                    missing = %grants.join(", "),
                    granted_by = manifest,
                    "offboarding: scimgate may not do what its mode needs; each object it is refused is recorded as failed"
                );
            }
        }
        Err(e) => tracing::warn!(error = %e, "offboarding: could not ask the API server what scimgate may do"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acting_needs_patch_on_the_kinds_a_step_changes_only() {
        assert!(needed(Mode::Off).is_empty());
        let report = needed(Mode::Report);
        assert_eq!(report.len(), 7);
        assert!(report.iter().all(|g| g.verb != "patch"));
        let act: Vec<String> = needed(Mode::Act)
            .into_iter()
            .filter(|g| g.verb == "patch")
            .map(|g| g.to_string())
            .collect();
        assert_eq!(
            act,
            [
                "patch workflows.argoproj.io",
                "patch cronworkflows.argoproj.io",
                "patch pipelineruns.tekton.dev",
                "patch taskruns.tekton.dev"
            ]
        );
    }
}
