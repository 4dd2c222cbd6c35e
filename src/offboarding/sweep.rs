//! The sweep: on every replica, a task that follows the directory, and for each person who
//! departs (and, once at start, for everyone departed — a crash may have cut a sweep short) lists
//! the objects their stamp names, checks each stamp, and records and announces the step `plan`
//! gives it. What the log already holds for a person is not recorded again, so a restart or a
//! second replica repeats no record; the Events have names derived from the object, the person
//! and the step, so a repeated one is refused by the API server as existing.

use super::plan::{self, State, Step};
use super::{departed, Departure, Mode, Options};
use crate::audit::recorder::Recorder;
use crate::directory::Snapshot;
use crate::model::{DecisionQuery, DecisionRecord};
use crate::policy::Kind;
use crate::stamp::vocabulary::{Entry, LABEL_BY_ID};
use crate::stamp::Verifier;
use crate::store::Store;
use arc_swap::ArcSwap;
use kube::api::{Api, DynamicObject, ListParams, PostParams};
use kube::discovery::ApiResource;
use serde_json::{json, Value};
use sha2::Digest;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

/// How often the task looks at the directory for new departures.
const POLL: Duration = Duration::from_secs(1);

/// Where each kind is served (the versions the controllers write).
fn resource(kind: Kind) -> ApiResource {
    let (group, version, plural) = match kind {
        Kind::Workflow => ("argoproj.io", "v1alpha1", "workflows"),
        Kind::CronWorkflow => ("argoproj.io", "v1alpha1", "cronworkflows"),
        Kind::WorkflowTemplate => ("argoproj.io", "v1alpha1", "workflowtemplates"),
        Kind::ClusterWorkflowTemplate => ("argoproj.io", "v1alpha1", "clusterworkflowtemplates"),
        Kind::PipelineRun => ("tekton.dev", "v1", "pipelineruns"),
        Kind::TaskRun => ("tekton.dev", "v1", "taskruns"),
    };
    ApiResource {
        group: group.into(),
        version: version.into(),
        api_version: format!("{group}/{version}"),
        kind: kind.as_str().into(),
        plural: plural.into(),
    }
}

/// What the sweep reads and writes through.
pub struct Sweeper {
    pub client: kube::Client,
    pub verifier: Verifier,
    pub directory: Arc<ArcSwap<Snapshot>>,
    pub store: Arc<dyn Store>,
    pub recorder: Recorder,
    pub options: Options,
}

/// One object found behind a departed person, and what is done about it.
#[derive(Debug, Clone)]
struct Finding {
    kind: Kind,
    object: Value,
    state: State,
    step: Step,
    rule: Option<String>,
    stamp_id: String,
}

impl Sweeper {
    /// Until `shutdown`: everyone departed once, then each new departure as the directory shows it.
    pub async fn run(self, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        let mut swept: BTreeSet<String> = BTreeSet::new();
        let mut generation = None;
        loop {
            let snapshot = self.directory.load_full();
            if generation != Some(snapshot.generation) {
                generation = Some(snapshot.generation);
                let gone = departed(&snapshot);
                let new: BTreeMap<String, Departure> = gone
                    .iter()
                    .filter(|(id, _)| !swept.contains(*id))
                    .map(|(id, d)| (id.clone(), d.clone()))
                    .collect();
                // At start one LIST per kind finds every departed person's objects; after, one
                // LIST per kind and person.
                let selector = match (swept.is_empty(), new.keys().next()) {
                    (_, None) => None,
                    (false, Some(id)) if new.len() == 1 => Some(format!("{LABEL_BY_ID}={id}")),
                    _ => Some(LABEL_BY_ID.to_string()),
                };
                if let Some(selector) = selector {
                    match self.sweep(&selector, &new).await {
                        Ok(()) => swept.extend(new.into_keys()),
                        Err(e) => {
                            tracing::warn!(error = %e, "offboarding sweep failed; retrying");
                            // Look again at the next poll, changed or not.
                            generation = None;
                        }
                    }
                }
                // Someone re-activated leaves the set: a later departure sweeps again.
                swept.retain(|id| gone.contains_key(id));
            }
            tokio::select! {
                _ = tokio::time::sleep(POLL) => {}
                _ = shutdown.wait_for(|stop| *stop) => return,
            }
        }
    }

    /// List every kind by `selector`, and handle the objects of the people in `gone`.
    async fn sweep(&self, selector: &str, gone: &BTreeMap<String, Departure>) -> Result<(), kube::Error> {
        let mut found: BTreeMap<&str, Vec<Finding>> = BTreeMap::new();
        for kind in Kind::ALL {
            let api: Api<DynamicObject> = Api::all_with(self.client.clone(), &resource(kind));
            let list = api.list(&ListParams::default().labels(selector)).await?;
            for o in list.items {
                let object = serde_json::to_value(&o).unwrap_or_default();
                let Some((id, finding)) = self.finding(kind, object) else {
                    continue;
                };
                if let Some((id, _)) = gone.get_key_value(id.as_str()) {
                    found.entry(id.as_str()).or_default().push(finding);
                }
            }
        }
        for (id, findings) in found {
            let Some(departure) = gone.get(id) else { continue };
            let done = self.recorded(id).await;
            for f in findings.iter().filter(|f| !done.contains(&uid_of(&f.object))) {
                self.report(id, departure, f).await;
            }
            tracing::info!(user = %crate::telemetry::field(&departure.user_name), objects = findings.len(),
                mode = self.options.mode.as_str(), "offboarding: swept what a departed person left");
        }
        Ok(())
    }

    /// The person `object`'s verified submit stamp names, and what to do with it; `None` when
    /// its stamp does not verify (never acted on) or names nobody.
    fn finding(&self, kind: Kind, object: Value) -> Option<(String, Finding)> {
        let claims = match crate::stamp::object::verified(&self.verifier, &object, Entry::SUBMIT)? {
            Ok(c) => c,
            Err(why) => {
                tracing::warn!(kind = kind.as_str(), uid = %crate::telemetry::field(uid_of(&object).as_str()),
                    why = %why, "offboarding: a stamp that does not verify is left alone");
                return None;
            }
        };
        if claims.sub.is_empty() {
            return None;
        }
        let state = plan::state(kind, &object);
        let step = plan::step(state, &self.options);
        let finding = Finding {
            kind,
            object,
            state,
            step,
            rule: plan::rule(state, &self.options),
            stamp_id: claims.sid,
        };
        Some((claims.sub, finding))
    }

    /// The objects (by uid) the log already has an offboarding record of for person `id`.
    async fn recorded(&self, id: &str) -> BTreeSet<String> {
        let q = DecisionQuery {
            user_id: Some(id.to_string()),
            action: Some(ACTION.into()),
            limit: crate::model::decision::MAX_LIMIT,
            ..DecisionQuery::default()
        };
        match self.store.query_decisions(&q).await {
            Ok(records) => records.into_iter().map(|r| r.request_uid).collect(),
            Err(e) => {
                tracing::warn!(error = %e, "offboarding: reading what was recorded before");
                BTreeSet::new()
            }
        }
    }

    /// Record `f` and announce it on the object.
    async fn report(&self, id: &str, d: &Departure, f: &Finding) {
        let outcome = outcome(self.options.mode, f.step);
        let meta = &f.object["metadata"];
        let message = format!(
            "{} was {} through SCIM{}; this {} is {}: {}",
            d.user_name,
            d.cause,
            d.at.as_deref().map(|t| format!(" at {t}")).unwrap_or_default(),
            f.kind.as_str(),
            f.state.as_str(),
            describe(outcome),
        );
        // The Event first: a crash before the record is written repeats both at the next start,
        // and the repeated Event is refused as existing — each is written once.
        if let Err(e) = self.event(id, f, outcome, &message).await {
            tracing::warn!(error = %e, "offboarding: the Event could not be written");
        }
        self.recorder
            .record(DecisionRecord {
                id: uuid::Uuid::now_v7().to_string(),
                at: crate::model::clock::now(),
                request_uid: uid_of(&f.object),
                hook: HOOK.into(),
                kind: f.kind.as_str().into(),
                namespace: text(meta, "namespace"),
                name: text(meta, "name"),
                action: ACTION.into(),
                requester: "scimgate".into(),
                user_id: Some(id.to_string()),
                rule: f.rule.clone(),
                outcome: outcome.into(),
                mode: self.options.mode.as_str().into(),
                reason: message,
                submitter_id: Some(id.to_string()),
                stamp_id: Some(f.stamp_id.clone()),
                ..DecisionRecord::default()
            })
            .await;
    }

    /// A `core/v1` Event on the object (cluster-scoped objects' Events go to `default`, as
    /// client-go's recorder puts them). Named after object, person and outcome: written once.
    async fn event(&self, id: &str, f: &Finding, outcome: &str, message: &str) -> Result<(), kube::Error> {
        let meta = &f.object["metadata"];
        let namespace = Some(text(meta, "namespace")).filter(|n| !n.is_empty());
        let ns = namespace.clone().unwrap_or_else(|| "default".into());
        let uid = uid_of(&f.object);
        let digest = sha2::Sha256::digest(format!("{uid}/{id}/{outcome}"));
        let name: String = text(meta, "name").chars().take(200).collect();
        let now = crate::model::clock::now();
        let ar = ApiResource {
            group: String::new(),
            version: "v1".into(),
            api_version: "v1".into(),
            kind: "Event".into(),
            plural: "events".into(),
        };
        let mut event = DynamicObject::new(&format!("{name}.{}", hex16(&digest)), &ar).within(&ns);
        event.data = json!({
            "involvedObject": {"apiVersion": f.object["apiVersion"], "kind": f.kind.as_str(),
                "name": meta["name"], "namespace": namespace, "uid": uid},
            "reason": "Offboarded",
            "message": message,
            "type": if f.step == Step::Keep { "Normal" } else { "Warning" },
            "source": {"component": "scimgate"},
            "reportingComponent": "scimgate.io/offboarding",
            "reportingInstance": "scimgate",
            "firstTimestamp": now, "lastTimestamp": now, "count": 1,
        });
        let api: Api<DynamicObject> = Api::namespaced_with(self.client.clone(), &ns, &ar);
        match api.create(&PostParams::default(), &event).await {
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
            r => r.map(|_| ()),
        }
    }
}

/// The hook and action of offboarding's decision records.
pub const HOOK: &str = "offboarding";
pub const ACTION: &str = "offboard";

/// A record's outcome: what was (or, reporting, would be) done.
fn outcome(mode: Mode, step: Step) -> &'static str {
    match (mode, step) {
        (_, Step::Keep) => "kept",
        (Mode::Act, Step::Suspend) => "suspended",
        (Mode::Act, Step::Cancel) => "cancelled",
        (_, Step::Suspend) => "would-suspend",
        (_, Step::Cancel) => "would-cancel",
    }
}

fn describe(outcome: &str) -> &'static str {
    match outcome {
        "kept" => "left as it is",
        "suspended" => "suspended",
        "cancelled" => "cancelled",
        "would-suspend" => "it would be suspended (offboarding.mode is report)",
        "would-cancel" => "it would be cancelled (offboarding.mode is report)",
        _ => "",
    }
}

fn text(v: &Value, key: &str) -> String {
    v[key].as_str().unwrap_or_default().to_string()
}

fn uid_of(obj: &Value) -> String {
    text(&obj["metadata"], "uid")
}

fn hex16(digest: &[u8]) -> String {
    digest.iter().take(8).map(|b| format!("{b:02x}")).collect()
}
