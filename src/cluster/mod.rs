//! The Kubernetes API as scimgate reads it: the kube client (an explicit kubeconfig, else the
//! client's standard configuration — the in-cluster service account, then `KUBECONFIG` or
//! `~/.kube/config`) and, in `owners`, the watch cache of the kinds that own controller-created
//! runs. Only the owner cache is on the admission path.

pub mod argo_defaults;
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
