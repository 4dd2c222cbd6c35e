//! Who owns a controller-created run, as the cluster stores it. A Workflow the Argo
//! workflow-controller starts belongs to a CronWorkflow, a TaskRun (or a child PipelineRun) the
//! Tekton controller creates belongs to a PipelineRun: the child's controller `ownerReference`
//! names the owner by kind, name and uid. The owner is read from a watch cache of those two
//! kinds (a reflector per kind, all namespaces), so admission does not wait on the API server;
//! a cache miss, or a cached object of another uid (the cache may lag a delete and re-create),
//! costs one GET. Whose person the owner's stamp names is the admission webhook's business.

use crate::policy::Kind;
use futures_util::{FutureExt, StreamExt};
use kube::api::{Api, DynamicObject};
use kube::discovery::ApiResource;
use kube::runtime::reflector::{self, ObjectRef};
use kube::runtime::{watcher, WatchStreamExt};
use serde_json::Value;
use std::future::Future;
use std::sync::Arc;

/// A child kind, and the kind of owner a controller creates it for (served where
/// `super::served_at` says).
struct Ownership {
    child: Kind,
    owner: Kind,
}

impl Ownership {
    fn group(&self) -> &'static str {
        super::served_at(self.owner).0
    }
}

/// argo-workflows `workflow/cron/operator.go` (the Workflow's controller reference is the
/// CronWorkflow, `argoproj.io/v1alpha1`); tektoncd/pipeline `pkg/reconciler/pipelinerun/pipelinerun.go`
/// (`kmeta.NewControllerRef(pr)` on child TaskRuns and, for pipelines in pipelines, child
/// PipelineRuns). The owner is read at the version the controllers write.
const OWNERSHIPS: [Ownership; 3] = [
    Ownership {
        child: Kind::Workflow,
        owner: Kind::CronWorkflow,
    },
    Ownership {
        child: Kind::TaskRun,
        owner: Kind::PipelineRun,
    },
    Ownership {
        child: Kind::PipelineRun,
        owner: Kind::PipelineRun,
    },
];

/// Why a child's owner could not be established. The messages end up in denials.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("finding the person behind it needs Kubernetes API access to read its owner, and scimgate has none (no in-cluster service account, KUBECONFIG or --kubeconfig)")]
    NoApiAccess,
    #[error("a controller creates no {child} for an owner scimgate can look up (it follows CronWorkflow → Workflow and PipelineRun → TaskRun or PipelineRun)")]
    NotAChildKind { child: &'static str },
    #[error(
        "the {child} has no controller ownerReference (controller: true), so there is no owner to take the person from"
    )]
    NoController { child: &'static str },
    #[error("the {child}'s controller ownerReference names a {kind} ({api_version}), but a {child} is created for a {expected}")]
    WrongOwnerKind {
        child: &'static str,
        kind: String,
        api_version: String,
        expected: &'static str,
    },
    #[error("its owner {kind} {namespace}/{name} does not exist")]
    NotFound {
        kind: &'static str,
        namespace: String,
        name: String,
    },
    #[error("its ownerReference names {kind} {namespace}/{name} with uid {referenced}, but the stored {kind} of that name has uid {stored}: not the object it was created for")]
    UidMismatch {
        kind: &'static str,
        namespace: String,
        name: String,
        referenced: String,
        stored: String,
    },
    #[error("reading its owner {kind} {namespace}/{name} from the Kubernetes API failed: {cause}")]
    Api {
        kind: &'static str,
        namespace: String,
        name: String,
        cause: String,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A child's owner as the cluster stores it: its uid is the one the child's ownerReference names.
#[derive(Debug, Clone, PartialEq)]
pub struct Found {
    pub kind: Kind,
    pub object: Value,
    /// For a PipelineRun that owns a child, the pipeline it runs as Tekton resolved it for the
    /// child ([`Owners::owner_of`]); `None` when that cannot be read.
    pub pipeline: Option<Value>,
}

/// One watched owner kind.
struct Cache {
    kind: Kind,
    resource: ApiResource,
    store: reflector::Store<DynamicObject>,
}

struct Inner {
    client: kube::Client,
    caches: Vec<Cache>,
}

/// The owner lookup; without Kubernetes API access every lookup says so.
#[derive(Clone, Default)]
pub struct Owners(Option<Arc<Inner>>);

fn resource(o: &Ownership) -> ApiResource {
    super::api_resource(o.owner)
}

/// The controller reference of `obj` (k8s.io/apimachinery `pkg/apis/meta/v1/controller_ref.go`
/// `GetControllerOf`: the ownerReference with `controller: true`; there is at most one).
fn controller_ref(obj: &Value) -> Option<&Value> {
    obj.get("metadata")?
        .get("ownerReferences")?
        .as_array()?
        .iter()
        .find(|r| r.get("controller").and_then(Value::as_bool) == Some(true))
}

fn text<'a>(v: &'a Value, k: &str) -> &'a str {
    v.get(k).and_then(Value::as_str).unwrap_or_default()
}

fn uid(obj: &Value) -> &str {
    obj.get("metadata").map(|m| text(m, "uid")).unwrap_or_default()
}

impl Owners {
    /// No Kubernetes API access: every child of a controller is refused, saying why.
    pub fn unavailable() -> Owners {
        Owners(None)
    }

    /// Watch the owner kinds through `client`. The returned task keeps the caches current
    /// (re-listing after errors, with backoff) until `shutdown` turns true.
    pub fn watch(
        client: kube::Client,
        mut shutdown: tokio::sync::watch::Receiver<bool>,
    ) -> (Owners, impl Future<Output = ()> + Send + 'static) {
        let mut caches: Vec<Cache> = Vec::new();
        let mut streams = Vec::new();
        for o in &OWNERSHIPS {
            if caches.iter().any(|c| c.kind == o.owner) {
                continue;
            }
            let ar = resource(o);
            let writer = reflector::store::Writer::new(ar.clone());
            caches.push(Cache {
                kind: o.owner,
                resource: ar.clone(),
                store: writer.as_reader(),
            });
            let api: Api<DynamicObject> = Api::all_with(client.clone(), &ar);
            let kind = o.owner.as_str();
            let stream = watcher(api, watcher::Config::default())
                .default_backoff()
                .reflect(writer)
                .for_each(move |event| {
                    if let Err(e) = event {
                        tracing::warn!(kind, error = %e, "watching owners of controller-created runs");
                    }
                    std::future::ready(())
                });
            streams.push(stream.boxed());
        }
        let task = async move {
            tokio::select! {
                _ = futures_util::future::join_all(streams) => {}
                _ = shutdown.wait_for(|stop| *stop) => {}
            }
        };
        (Owners(Some(Arc::new(Inner { client, caches }))), task)
    }

    /// The stored owner of `obj`, a `child` in `namespace` (owners are in their child's namespace:
    /// an ownerReference names no namespace).
    pub async fn owner_of(&self, child: Kind, namespace: &str, obj: &Value) -> Result<Found> {
        if self.0.is_none() {
            return Err(Error::NoApiAccess);
        }
        let child_name = child.as_str();
        if !OWNERSHIPS.iter().any(|o| o.child == child) {
            return Err(Error::NotAChildKind { child: child_name });
        }
        let r = controller_ref(obj).ok_or(Error::NoController { child: child_name })?;
        let (kind, api_version) = (text(r, "kind"), text(r, "apiVersion"));
        let group = api_version.split_once('/').map_or("", |(g, _)| g);
        let Some(ownership) = OWNERSHIPS
            .iter()
            .find(|o| o.child == child && o.owner.as_str() == kind && o.group() == group)
        else {
            let expected = OWNERSHIPS
                .iter()
                .find(|o| o.child == child)
                .map_or("", |o| o.owner.as_str());
            return Err(Error::WrongOwnerKind {
                child: child_name,
                kind: kind.to_string(),
                api_version: api_version.to_string(),
                expected,
            });
        };
        let mut found = self
            .stored(ownership.owner, namespace, text(r, "name"), text(r, "uid"))
            .await?;
        if found.kind == Kind::PipelineRun {
            found.pipeline = self.pipeline_of(namespace, &mut found.object).await;
        }
        Ok(found)
    }

    /// The pipeline the PipelineRun `run` runs, as Tekton resolved it for the children it
    /// creates. Tekton creates a run's first children *before* the resolved pipeline reaches the
    /// run's status: both happen in one reconcile, and the status is written after it returns
    /// (tektoncd/pipeline `pkg/reconciler/pipelinerun/pipelinerun.go` `reconcile`:
    /// `storePipelineSpecAndMergeMeta` in memory, then `runNextSchedulableTask` creates the
    /// children; the generated reconciler's `updateStatus` once `ReconcileKind` is done). So: the
    /// stored `status.pipelineSpec`, read once more from the API server when the cached copy lacks
    /// it (the cache may lag the status write); else an inline `spec.pipelineSpec`; else the
    /// Pipeline `spec.pipelineRef.name` names in the run's namespace, read as Tekton's local
    /// resolver reads it (`resources/pipelineref.go` `LocalPipelineRefResolver.GetPipeline`). A
    /// ref through a `resolver` or an OCI `bundle` is not followed: until its status shows what
    /// was fetched, its children are judged on their own (Tekton retries a denied create).
    async fn pipeline_of(&self, namespace: &str, run: &mut Value) -> Option<Value> {
        fn resolved(run: &Value) -> Option<&Value> {
            run.pointer("/status/pipelineSpec")
                .or_else(|| run.pointer("/spec/pipelineSpec"))
                .filter(|p| !p.is_null())
        }
        if let Some(p) = resolved(run) {
            return Some(p.clone());
        }
        let name = run
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let runs = super::api_resource(Kind::PipelineRun);
        if let Ok(Some(fresh)) = self.get(&runs, namespace, &name).await {
            if uid(&fresh) == uid(run) {
                *run = fresh;
            }
        }
        if let Some(p) = resolved(run) {
            return Some(p.clone());
        }
        let r = run.pointer("/spec/pipelineRef")?;
        if ["resolver", "bundle"]
            .iter()
            .any(|k| r.get(*k).is_some_and(|v| !v.is_null()))
        {
            return None;
        }
        let pipelines = ApiResource {
            kind: "Pipeline".into(),
            plural: "pipelines".into(),
            ..runs
        };
        let pipeline = self.get(&pipelines, namespace, text(r, "name")).await.ok()??;
        pipeline.get("spec").cloned()
    }

    /// One GET of `namespace/name`: `Ok(None)` when it does not exist.
    async fn get(&self, resource: &ApiResource, namespace: &str, name: &str) -> Result<Option<Value>, String> {
        let inner = self.0.as_ref().ok_or_else(|| Error::NoApiAccess.to_string())?;
        if name.is_empty() {
            return Ok(None);
        }
        let api: Api<DynamicObject> = Api::namespaced_with(inner.client.clone(), namespace, resource);
        let got = api.get_opt(name).await.map_err(|e| {
            tracing::warn!(kind = %resource.kind, error = %e, "reading what a PipelineRun runs");
            e.to_string()
        })?;
        got.map(|o| serde_json::to_value(&o).map_err(|e| e.to_string()))
            .transpose()
    }

    /// Whether an ownerReference `{apiVersion, kind}` is to a kind whose objects this cache holds
    /// (CronWorkflow, PipelineRun), and which.
    pub fn watched(api_version: &str, kind: &str) -> Option<Kind> {
        let group = api_version.split_once('/').map_or("", |(g, _)| g);
        OWNERSHIPS
            .iter()
            .find(|o| o.owner.as_str() == kind && o.group() == group)
            .map(|o| o.owner)
    }

    /// The stored `owner` `namespace/name`, which must have the uid `referenced`: from the watch
    /// cache, or one GET on a miss.
    pub async fn stored(&self, owner: Kind, namespace: &str, name: &str, referenced: &str) -> Result<Found> {
        let inner = self.0.as_ref().ok_or(Error::NoApiAccess)?;
        let Some(cache) = inner.caches.iter().find(|c| c.kind == owner) else {
            return Err(Error::NoApiAccess);
        };
        let cached = cache
            .store
            .get(&ObjectRef::new_with(name, cache.resource.clone()).within(namespace))
            .and_then(|o| serde_json::to_value(&*o).ok())
            .filter(|o| uid(o) == referenced);
        let object = match cached {
            Some(o) => o,
            None => {
                tracing::debug!(
                    kind = owner.as_str(),
                    namespace = %crate::telemetry::field(namespace),
                    name = %crate::telemetry::field(name),
                    "owner not in the watch cache: GET"
                );
                let api: Api<DynamicObject> = Api::namespaced_with(inner.client.clone(), namespace, &cache.resource);
                let got = api.get_opt(name).await.map_err(|e| Error::Api {
                    kind: owner.as_str(),
                    namespace: namespace.to_string(),
                    name: name.to_string(),
                    cause: e.to_string(),
                })?;
                let got = got.ok_or_else(|| Error::NotFound {
                    kind: owner.as_str(),
                    namespace: namespace.to_string(),
                    name: name.to_string(),
                })?;
                serde_json::to_value(&got).map_err(|e| Error::Api {
                    kind: owner.as_str(),
                    namespace: namespace.to_string(),
                    name: name.to_string(),
                    cause: e.to_string(),
                })?
            }
        };
        if uid(&object) != referenced {
            return Err(Error::UidMismatch {
                kind: owner.as_str(),
                namespace: namespace.to_string(),
                name: name.to_string(),
                referenced: referenced.to_string(),
                stored: uid(&object).to_string(),
            });
        }
        Ok(Found {
            kind: owner,
            object,
            pipeline: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn child(refs: Value) -> Value {
        json!({"metadata": {"name": "c", "ownerReferences": refs}})
    }

    #[tokio::test]
    async fn without_api_access_every_lookup_says_so() {
        let r = Owners::unavailable()
            .owner_of(Kind::TaskRun, "ns", &child(json!([])))
            .await;
        assert_eq!(r, Err(Error::NoApiAccess));
        assert!(Error::NoApiAccess.to_string().contains("needs Kubernetes API access"));
    }

    #[test]
    fn the_controller_reference_is_the_one_marked_controller() {
        let obj = child(json!([
            {"apiVersion": "v1", "kind": "ConfigMap", "name": "a", "uid": "1"},
            {"apiVersion": "tekton.dev/v1", "kind": "PipelineRun", "name": "p", "uid": "2", "controller": true},
        ]));
        assert_eq!(controller_ref(&obj).map(|r| text(r, "name")), Some("p"));
        let none = child(json!([{"apiVersion": "tekton.dev/v1", "kind": "PipelineRun", "name": "p", "uid": "2"}]));
        assert!(controller_ref(&none).is_none());
    }
}
