//! Identity reports that policy dashboards already read (Policy Reporter, Kyverno's and
//! Kubewarden's UIs): for every live run and template, one result per identity check
//! (`checks`), gathered into one report per namespace and one cluster-scoped report (`document`),
//! in the API the cluster serves — OpenReports or the policy working group's PolicyReports.
//! Written every `reports.intervalSeconds` and soon after the directory changes (a departure
//! turns a submitter's result to fail), by one replica: the holder of a Lease
//! (`cluster::lease`). Off by default.
//!
//! Must not: hold a report past the size an object may have (`document::MAX_RESULTS`), write a
//! report that says what the one stored says already, or write one without a decision record
//! (hook `reports`, action `report`).

pub mod checks;
pub mod document;

use crate::directory::Snapshot;
use crate::policy::{Kind, Policy};
use crate::stamp::Verifier;
use arc_swap::ArcSwap;
use document::Subject;
use kube::api::{Api as KubeApi, DynamicObject, ListParams, PostParams};
use kube::discovery::ApiResource;
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// `reports:` in the config file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct Options {
    pub enabled: bool,
    pub interval_seconds: u64,
    pub api: Choice,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            enabled: false,
            interval_seconds: 300,
            api: Choice::Auto,
        }
    }
}

/// Which report API to write (`reports.api`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Choice {
    /// The one the cluster serves, OpenReports first.
    Auto,
    OpenReports,
    #[serde(rename = "policyreports")]
    PolicyReports,
}

/// A report API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    /// `openreports.io/v1alpha1` `Report` / `ClusterReport`: the policy working group's
    /// successor, Kubewarden's default since 1.33, read by Policy Reporter since 3.2.
    OpenReports,
    /// `wgpolicyk8s.io/v1alpha2` `PolicyReport` / `ClusterPolicyReport`: Kyverno's default.
    PolicyReports,
}

impl Api {
    pub fn api_version(self) -> &'static str {
        match self {
            Api::OpenReports => "openreports.io/v1alpha1",
            Api::PolicyReports => "wgpolicyk8s.io/v1alpha2",
        }
    }

    /// The namespaced kind and the cluster-scoped one.
    pub fn kinds(self) -> (&'static str, &'static str) {
        match self {
            Api::OpenReports => ("Report", "ClusterReport"),
            Api::PolicyReports => ("PolicyReport", "ClusterPolicyReport"),
        }
    }

    fn resource(self, cluster: bool) -> ApiResource {
        let (group, version) = self.api_version().split_once('/').unwrap_or_default();
        let (kind, cluster_kind) = self.kinds();
        let kind = if cluster { cluster_kind } else { kind };
        ApiResource {
            group: group.into(),
            version: version.into(),
            api_version: self.api_version().into(),
            kind: kind.into(),
            plural: format!("{}s", kind.to_ascii_lowercase()),
        }
    }
}

/// The API to write: the chosen one, or with `auto` the first the cluster serves (API discovery).
/// `Err` says why none.
pub async fn choose(client: &kube::Client, choice: Choice) -> Result<Api, String> {
    let candidates = match choice {
        Choice::Auto => vec![Api::OpenReports, Api::PolicyReports],
        Choice::OpenReports => vec![Api::OpenReports],
        Choice::PolicyReports => vec![Api::PolicyReports],
    };
    for api in &candidates {
        let plural = api.resource(false).plural;
        match client.list_api_group_resources(api.api_version()).await {
            Ok(list) if list.resources.iter().any(|r| r.name == plural) => return Ok(*api),
            _ => {}
        }
    }
    let names: Vec<&str> = candidates.iter().map(|a| a.api_version()).collect();
    Err(format!(
        "the cluster serves no {} (install its CRDs, or set reports.api)",
        names.join(" nor ")
    ))
}

/// The hook and action of the decision record each report write leaves.
pub const HOOK: &str = "reports";
pub const ACTION: &str = "report";

/// What the reports are written from.
pub struct Reporter {
    pub client: kube::Client,
    /// Each report written leaves a decision record.
    pub recorder: crate::audit::recorder::Recorder,
    pub verifier: Verifier,
    pub directory: Arc<ArcSwap<Snapshot>>,
    pub policy: Arc<ArcSwap<Policy>>,
    pub options: Options,
}

/// How soon after a directory change the reports follow it (changes come in bursts), and how
/// often the Lease is renewed (client-go's `RetryPeriod`).
const SETTLE: Duration = Duration::from_secs(2);
/// The Lease whose holder writes the reports.
pub const LEASE: &str = "scimgate-identity-reports";
/// Objects per LIST page.
const PAGE: u32 = 500;

impl Reporter {
    /// Until `shutdown`: choose the API (said once, retried while there is none), then — while
    /// this replica holds the reports' Lease — write the reports every interval and after each
    /// directory change.
    pub async fn run(self, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        let interval = Duration::from_secs(self.options.interval_seconds.max(1));
        let mut api = None;
        let mut said = None;
        let mut generation = None;
        let mut next = tokio::time::Instant::now();
        let mut lease = None;
        let mut held = false;
        loop {
            let holds =
                crate::cluster::lease::Lease::hold_lazily(&self.client, &mut lease, LEASE, "identity reports").await;
            if holds != held {
                let who = if holds {
                    "this replica holds the Lease"
                } else {
                    "another replica holds the Lease"
                };
                tracing::info!(lease = LEASE, "identity reports: {who}");
                // Taking over, write at once: the last writer may have stopped mid-way.
                next = tokio::time::Instant::now();
                held = holds;
            }
            let snapshot_generation = self.directory.load().generation;
            let now = tokio::time::Instant::now();
            if held && (now >= next || generation.is_some_and(|g| g != snapshot_generation)) {
                generation = Some(snapshot_generation);
                next = now + interval;
                if api.is_none() {
                    let chosen = choose(&self.client, self.options.api).await;
                    if said.as_ref() != Some(&chosen) {
                        match &chosen {
                            Ok(a) => tracing::info!(api = a.api_version(), "identity reports: writing"),
                            Err(why) => tracing::warn!(why = %why, "identity reports: none written"),
                        }
                        said = Some(chosen.clone());
                    }
                    api = chosen.ok();
                }
                if let Some(a) = api {
                    if let Err(e) = self.write_all(a).await {
                        tracing::warn!(error = %e, "identity reports: a refresh failed; trying again at the next");
                    }
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(SETTLE) => {}
                _ = shutdown.wait_for(|stop| *stop) => return,
            }
        }
    }

    /// Check every live object and write each namespace's report where it changed.
    pub async fn write_all(&self, api: Api) -> Result<(), kube::Error> {
        let mut by_namespace = self.findings().await?;
        // A namespace whose report we wrote before and that has nothing now gets an empty one.
        for cluster in [false, true] {
            let store: KubeApi<DynamicObject> = KubeApi::all_with(self.client.clone(), &api.resource(cluster));
            let ours = ListParams::default().labels(&format!("{}={}", document::MANAGED_BY.0, document::MANAGED_BY.1));
            for r in store.list(&ours).await?.items {
                let ns = r.metadata.namespace.unwrap_or_default();
                if ns.is_empty() == cluster {
                    by_namespace.entry(ns).or_default();
                }
            }
        }
        let now = chrono::Utc::now().timestamp();
        for (ns, findings) in &by_namespace {
            self.write(api, ns, document::build(api, ns, findings, now)).await?;
        }
        Ok(())
    }

    /// The checks of every live object of the six kinds, by namespace (`""`: cluster-scoped).
    async fn findings(&self) -> Result<BTreeMap<String, Vec<(Subject, checks::Finding)>>, kube::Error> {
        let (snap, policy) = (self.directory.load(), self.policy.load());
        let mut out: BTreeMap<String, Vec<(Subject, checks::Finding)>> = BTreeMap::new();
        for kind in Kind::ALL {
            let resource = crate::cluster::api_resource(kind);
            let api: KubeApi<DynamicObject> = KubeApi::all_with(self.client.clone(), &resource);
            let mut params = ListParams::default().limit(PAGE);
            loop {
                let list = api.list(&params).await?;
                for o in list.items {
                    let mut obj = serde_json::to_value(&o).unwrap_or_default();
                    obj["apiVersion"] = json!(resource.api_version);
                    obj["kind"] = json!(kind.as_str());
                    if crate::offboarding::plan::state(kind, &obj) == crate::offboarding::plan::State::Done {
                        continue;
                    }
                    let text = |k: &str| obj["metadata"][k].as_str().unwrap_or_default().to_string();
                    let subject = Subject {
                        api_version: resource.api_version.clone(),
                        kind: kind.as_str().into(),
                        namespace: text("namespace"),
                        name: text("name"),
                        uid: text("uid"),
                    };
                    let found = checks::of(&self.verifier, &snap, &policy, kind, &subject.namespace, &obj);
                    let entry = out.entry(subject.namespace.clone()).or_default();
                    entry.extend(found.into_iter().map(|f| (subject.clone(), f)));
                }
                match list.metadata.continue_ {
                    Some(next) if !next.is_empty() => params = params.continue_token(&next),
                    _ => break,
                }
            }
        }
        Ok(out)
    }

    /// Create or replace the report of `ns` with `doc`, unless the stored one says the same.
    async fn write(&self, api: Api, ns: &str, doc: Value) -> Result<(), kube::Error> {
        let resource = api.resource(ns.is_empty());
        let store: KubeApi<DynamicObject> = match ns {
            "" => KubeApi::all_with(self.client.clone(), &resource),
            ns => KubeApi::namespaced_with(self.client.clone(), ns, &resource),
        };
        let mut obj: DynamicObject = serde_json::from_value(doc.clone()).map_err(kube::Error::SerdeError)?;
        let written = match store.get_opt(document::NAME).await? {
            None => store.create(&PostParams::default(), &obj).await?,
            Some(stored) => {
                let stored_value = serde_json::to_value(&stored).unwrap_or_default();
                if document::same(&stored_value, &doc) {
                    return Ok(());
                }
                obj.metadata.resource_version = stored.metadata.resource_version;
                store.replace(document::NAME, &PostParams::default(), &obj).await?
            }
        };
        self.record(api, ns, &doc, written.metadata.uid.unwrap_or_default())
            .await;
        Ok(())
    }

    /// The decision record of a report written: which, and what it now says.
    async fn record(&self, api: Api, ns: &str, doc: &Value, uid: String) {
        let count = |k: &str| doc["summary"][k].as_u64().unwrap_or_default();
        self.recorder
            .record(crate::model::DecisionRecord {
                id: uuid::Uuid::now_v7().to_string(),
                at: crate::model::clock::now(),
                request_uid: uid,
                hook: HOOK.into(),
                kind: doc["kind"].as_str().unwrap_or_default().into(),
                namespace: ns.into(),
                name: document::NAME.into(),
                action: ACTION.into(),
                requester: "scimgate".into(),
                outcome: "written".into(),
                mode: api.api_version().into(),
                reason: format!(
                    "identity checks: {} pass, {} fail, {} warn, {} skip",
                    count("pass"),
                    count("fail"),
                    count("warn"),
                    count("skip")
                ),
                ..crate::model::DecisionRecord::default()
            })
            .await;
    }
}
