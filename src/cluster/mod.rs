//! The Kubernetes API as scimgate reads it: the kube client (an explicit kubeconfig, else the
//! client's standard configuration — the in-cluster service account, then `KUBECONFIG` or
//! `~/.kube/config`) and, in `owners`, the watch cache of the kinds that own controller-created
//! runs; `lease`, the one writer among replicas. Only the owner cache is on the admission path.

pub mod argo_defaults;
pub mod lease;
pub mod owners;

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("reading the kubeconfig {path}: {cause}")]
    Kubeconfig {
        path: PathBuf,
        cause: kube::config::KubeconfigError,
    },
    #[error("the kube client: {0}")]
    Client(#[from] kube::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The kube client. With `kubeconfig` the file must load (a named file that does not is a
/// mistake to report at start); without it, the standard configuration, and `Ok(None)` when there
/// is none at all (a laptop running `serve --dev`).
pub async fn client(kubeconfig: Option<&Path>) -> Result<Option<kube::Client>> {
    let config = match kubeconfig {
        Some(path) => {
            let kc = kube::config::Kubeconfig::read_from(path).map_err(|cause| Error::Kubeconfig {
                path: path.to_path_buf(),
                cause,
            })?;
            kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
                .await
                .map_err(|cause| Error::Kubeconfig {
                    path: path.to_path_buf(),
                    cause,
                })?
        }
        None => match kube::Config::infer().await {
            Ok(c) => c,
            Err(e) => {
                tracing::debug!(error = %e, "no Kubernetes client configuration");
                return Ok(None);
            }
        },
    };
    Ok(Some(kube::Client::try_from(config)?))
}

/// Who the client is to the API server (a `SelfSubjectReview`, authentication.k8s.io/v1, GA
/// since Kubernetes 1.28): `system:serviceaccount:<ns>:<name>` in a pod. `None` when it will not
/// say.
pub async fn whoami(client: &kube::Client) -> Result<Option<String>, kube::Error> {
    use k8s_openapi::api::authentication::v1::SelfSubjectReview;
    let api: kube::Api<SelfSubjectReview> = kube::Api::all(client.clone());
    let review = api
        .create(&kube::api::PostParams::default(), &SelfSubjectReview::default())
        .await?;
    Ok(review
        .status
        .and_then(|s| s.user_info)
        .and_then(|u| u.username)
        .filter(|u| !u.is_empty()))
}

/// The namespace of a service account's username (`system:serviceaccount:<ns>:<name>`).
pub fn namespace_of(username: &str) -> Option<&str> {
    username
        .strip_prefix("system:serviceaccount:")?
        .split_once(':')
        .map(|(ns, _)| ns)
}

/// Where each of our kinds is served — the group, the version the controllers write, the plural —
/// and whether it is namespaced.
pub fn served_at(kind: crate::policy::Kind) -> (&'static str, &'static str, &'static str, bool) {
    use crate::policy::Kind;
    match kind {
        Kind::Workflow => ("argoproj.io", "v1alpha1", "workflows", true),
        Kind::CronWorkflow => ("argoproj.io", "v1alpha1", "cronworkflows", true),
        Kind::WorkflowTemplate => ("argoproj.io", "v1alpha1", "workflowtemplates", true),
        Kind::ClusterWorkflowTemplate => ("argoproj.io", "v1alpha1", "clusterworkflowtemplates", false),
        Kind::PipelineRun => ("tekton.dev", "v1", "pipelineruns", true),
        Kind::TaskRun => ("tekton.dev", "v1", "taskruns", true),
    }
}

/// The kube client's description of `kind` where it is served ([`served_at`]).
pub fn api_resource(kind: crate::policy::Kind) -> kube::discovery::ApiResource {
    let (group, version, plural, _) = served_at(kind);
    kube::discovery::ApiResource {
        group: group.into(),
        version: version.into(),
        api_version: format!("{group}/{version}"),
        kind: kind.as_str().into(),
        plural: plural.into(),
    }
}
