//! Argo's `workflowDefaults`, read from the workflow-controller's ConfigMap through the
//! Kubernetes API and kept current by a watch: the controller merges them under every Workflow
//! it runs (`workflow/controller/controller.go` `setWorkflowDefaults`), so a run that leaves its
//! service account to them runs as theirs. This module only reads and holds them; how they
//! change what a run executes is `admission::pipeline_run`'s.

use arc_swap::ArcSwap;
use futures_util::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::runtime::watcher::{self, watcher, Event};
use kube::runtime::WatchStreamExt;
use kube::Api;
use serde_json::Value;
use std::future::Future;
use std::sync::Arc;

/// The ConfigMap key the controller reads them from (`config/config.go` `WorkflowDefaults`).
const KEY: &str = "workflowDefaults";

/// What scimgate knows of the defaults.
#[derive(Debug, Clone, PartialEq)]
pub enum Defaults {
    /// Not read, by configuration or for want of a Kubernetes client: runs are judged as written.
    NotRead,
    /// Being read and not (yet) readable — not synced, forbidden, malformed: why.
    Unknown(String),
    /// Read: the `spec` of the defaults, `None` when the ConfigMap or its key is absent.
    Known(Option<Value>),
}

/// The current defaults, shared by the watch and the webhooks.
#[derive(Clone)]
pub struct ArgoDefaults {
    now: Arc<ArcSwap<Defaults>>,
    /// Turns true at the first answer of the API server (the ConfigMap, its absence, or an error).
    settled: tokio::sync::watch::Receiver<bool>,
}

impl ArgoDefaults {
    pub fn fixed(d: Defaults) -> ArgoDefaults {
        ArgoDefaults {
            now: Arc::new(ArcSwap::from_pointee(d)),
            settled: tokio::sync::watch::channel(true).1,
        }
    }

    pub fn get(&self) -> Arc<Defaults> {
        self.now.load_full()
    }

    /// Wait (at most `limit`) for the first answer after start, so the first runs are not
    /// judged before the defaults could be read.
    pub async fn settled(&self, limit: std::time::Duration) {
        // Every Workflow asks: once settled (from then on), no timer and no receiver to clone.
        if *self.settled.borrow() {
            return;
        }
        let mut rx = self.settled.clone();
        let _ = tokio::time::timeout(limit, rx.wait_for(|s| *s)).await;
    }

    /// Watch `namespace/name` through `client` (a LIST and WATCH narrowed to that one name by a
    /// field selector, which RBAC `resourceNames` can grant) until `shutdown` turns true.
    pub fn watch(
        client: kube::Client,
        namespace: &str,
        name: &str,
        mut shutdown: tokio::sync::watch::Receiver<bool>,
    ) -> (ArgoDefaults, impl Future<Output = ()> + Send + 'static) {
        let place = format!("{namespace}/{name}");
        let (settle, settled) = tokio::sync::watch::channel(false);
        let this = ArgoDefaults {
            now: Arc::new(ArcSwap::from_pointee(Defaults::Unknown(format!(
                "{place} has not been read yet"
            )))),
            settled,
        };
        let api: Api<ConfigMap> = Api::namespaced(client, namespace);
        let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
        let state = this.clone();
        // Whether the (re-)list under way found the ConfigMap.
        let mut listed = false;
        let stream = watcher(api, config).default_backoff().for_each(move |event| {
            let next = match event {
                Ok(Event::Init) => {
                    listed = false;
                    None
                }
                Ok(Event::InitApply(cm)) => {
                    listed = true;
                    Some(read(&place, &cm))
                }
                // A list that found nothing: the ConfigMap is gone (or never was).
                Ok(Event::InitDone) => (!listed).then_some(Defaults::Known(None)),
                Ok(Event::Apply(cm)) => Some(read(&place, &cm)),
                Ok(Event::Delete(_)) => Some(Defaults::Known(None)),
                Err(e) => {
                    tracing::warn!(error = %e, configmap = %place, "reading Argo's workflowDefaults");
                    Some(Defaults::Unknown(format!("{place} cannot be read: {e}")))
                }
            };
            if let Some(next) = next {
                state.now.store(Arc::new(next));
                settle.send_replace(true);
            }
            std::future::ready(())
        });
        let task = async move {
            tokio::select! {
                _ = stream => {}
                _ = shutdown.wait_for(|stop| *stop) => {}
            }
        };
        (this, task)
    }
}

/// The defaults a ConfigMap holds: its `workflowDefaults` key, YAML of a Workflow.
fn read(place: &str, cm: &ConfigMap) -> Defaults {
    let Some(text) = cm.data.as_ref().and_then(|d| d.get(KEY)) else {
        return Defaults::Known(None);
    };
    match serde_yaml_ng::from_str::<Value>(text) {
        Ok(wf) => Defaults::Known(wf.get("spec").filter(|s| s.is_object()).cloned()),
        Err(e) => Defaults::Unknown(format!("{place} key {KEY} is not YAML: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn cm(text: &str) -> ConfigMap {
        ConfigMap {
            data: Some(BTreeMap::from([(KEY.to_string(), text.to_string())])),
            ..Default::default()
        }
    }

    #[test]
    fn the_spec_of_the_key_is_the_defaults() {
        assert_eq!(
            read(
                "argo/c",
                &cm("metadata: {labels: {a: b}}\nspec:\n  serviceAccountName: argo-runner\n")
            ),
            Defaults::Known(Some(serde_json::json!({"serviceAccountName": "argo-runner"})))
        );
        assert_eq!(read("argo/c", &ConfigMap::default()), Defaults::Known(None));
        assert!(matches!(read("argo/c", &cm("spec: [")), Defaults::Unknown(why) if why.contains("not YAML")));
    }
}
