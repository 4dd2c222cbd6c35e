//! The sweep: on every replica, a task that follows the directory, and for each person who
//! departs (and, once at start, for everyone departed — a crash may have cut a sweep short) lists
//! the objects their stamp names, checks each stamp, and records and announces the step `plan`
//! gives it. What the log already holds for a person is not recorded again, so a restart or a
//! second replica repeats no record; the Events have names derived from the object, the person
//! and the step, so a repeated one is refused by the API server as existing.
//!
//! Acting (`mode: act`), each step is a JSON merge PATCH through the API server — so through
//! scimgate's own webhooks, which admit it by the offboarding stamp it carries
//! (`stamp::offboard`, `admission::own_write`) — made on the object as listed (its
//! `resourceVersion` a precondition: an object that changed since is read again and planned
//! anew). An object that already carries our stamp for this departure was acted on before a
//! crash: it is recorded as done, not patched again. A step the API server refuses is recorded
//! as `failed` (once) and the departure is tried again later.

use super::plan::{self, State, Step};
use super::{departed, Departure, Mode, Options};
use crate::audit::recorder::Recorder;
use crate::directory::Snapshot;
use crate::model::{DecisionQuery, DecisionRecord};
use crate::policy::Kind;
use crate::stamp::offboard::{self, NewOffboard};
use crate::stamp::vocabulary::{Entry, LABEL_BY_ID};
use crate::stamp::{Signer, Verifier};
use crate::store::{Claim, OffboardingClaim, Store};
use arc_swap::ArcSwap;
use futures_util::StreamExt;
use kube::api::{Api, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::discovery::ApiResource;
use serde_json::{json, Value};
use sha2::Digest;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

/// How often the task looks at the directory for new departures.
const POLL: Duration = Duration::from_secs(1);
/// How long a claimed sweep is this replica's; past it, another replica may take it over (a
/// sweep a crash cut short is finished this long after).
const LEASE: Duration = Duration::from_secs(60);
/// Objects per LIST page.
const PAGE: u32 = 500;
/// A sweep renews its claim every this many objects.
const RENEW_EVERY: usize = 500;
/// How often departures another replica holds, or whose sweep failed, are looked at again.
const RETRY: Duration = Duration::from_secs(30);
/// How long a departure whose sweep failed waits before it is tried again, the first time…
const FIRST_BACKOFF: Duration = Duration::from_secs(5);
/// …doubling each time, up to this.
const MAX_BACKOFF: Duration = Duration::from_secs(600);

/// When departures (person, key) whose sweep failed are looked at again: [`FIRST_BACKOFF`] after
/// the first failure, twice as long after each further one, at most [`MAX_BACKOFF`].
#[derive(Default)]
struct Backoff(BTreeMap<(String, String), (tokio::time::Instant, Duration)>);

impl Backoff {
    /// Whether a departure's wait is over (it is tried at the next look).
    fn due(&self, now: tokio::time::Instant) -> bool {
        self.0.values().any(|(at, _)| *at <= now)
    }

    fn waiting(&self, key: &(String, String), now: tokio::time::Instant) -> bool {
        self.0.get(key).is_some_and(|(at, _)| now < *at)
    }

    fn failed(&mut self, key: (String, String), now: tokio::time::Instant) {
        let (at, wait) = self.0.entry(key).or_insert((now, FIRST_BACKOFF / 2));
        *wait = (*wait * 2).min(MAX_BACKOFF);
        *at = now + *wait;
    }
}

/// How often a step is tried on an object that keeps changing under it (each time read again).
const ATTEMPTS: usize = 3;
/// Objects handled at once (each a PATCH, an Event and a record): a handful of requests in
/// flight, far below what the API server's priority and fairness gives one client.
const IN_FLIGHT: usize = 8;

/// What the sweep reads and writes through.
pub struct Sweeper {
    pub client: kube::Client,
    /// Signs the offboarding stamp of each step taken (`mode: act`).
    pub signer: Arc<Signer>,
    pub verifier: Verifier,
    pub directory: Arc<ArcSwap<Snapshot>>,
    pub store: Arc<dyn Store>,
    pub recorder: Recorder,
    pub options: Options,
    /// For the Users it marks as agents (`identity.agents.users`).
    pub policy: Arc<ArcSwap<crate::policy::Policy>>,
}

/// One object found behind a departed person, and what is done about it: what names the object,
/// not the object (a sweep holds every finding of a person at once).
#[derive(Debug, Clone)]
struct Finding {
    kind: Kind,
    api_version: String,
    /// Empty for a cluster-scoped object.
    namespace: String,
    name: String,
    uid: String,
    /// As listed: the precondition of a step's PATCH.
    resource_version: String,
    state: State,
    step: Step,
    rule: Option<String>,
    stamp_id: String,
    /// Our offboarding stamp on the object, if it has one: (person, departure, step).
    stamped: Option<(String, String, Step)>,
}

/// What became of an object: the state it was found in and the step taken (or, reporting,
/// that would be), or why the step could not be taken.
type Done = Result<(State, Step), String>;

impl Sweeper {
    /// Until `shutdown`: everyone departed once, then each new departure as the directory shows
    /// it. A departure is swept by the replica that claims it in the store; one another replica
    /// holds is looked at again every [`RETRY`] (its holder may have died: its claim runs out
    /// after [`LEASE`]); one whose sweep failed waits its [`Backoff`].
    pub async fn run(self, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        super::access::say_what_is_missing(&self.client, self.options.mode).await;
        let replica = uuid::Uuid::new_v4().to_string();
        // Departures (person, key) swept by anyone: never looked at again.
        let mut settled: BTreeSet<(String, String)> = BTreeSet::new();
        let mut first = true;
        // Who scimgate is to the API server, learnt before the first step is taken.
        let mut me: Option<String> = None;
        let mut backoff = Backoff::default();
        let (mut generation, mut retry_at) = (None, tokio::time::Instant::now());
        loop {
            let snapshot = self.directory.load_full();
            let now = tokio::time::Instant::now();
            let due = now >= retry_at || backoff.due(now);
            if generation != Some(snapshot.generation) || due {
                generation = Some(snapshot.generation);
                retry_at = tokio::time::Instant::now() + RETRY;
                let gone = departed(&snapshot, &self.policy.load());
                let open: Vec<(&String, &Departure)> = gone
                    .iter()
                    .map(|(id, d)| ((id.to_string(), d.key.clone()), (id, d)))
                    .filter(|(key, _)| !settled.contains(key) && !backoff.waiting(key, now))
                    .map(|(_, open)| open)
                    .collect();
                let mut mine = self.claim(&replica, &open, &mut settled).await;
                // What another replica holds or has swept is its to retry.
                for (id, d) in open.iter().filter(|(id, _)| !mine.contains_key(*id)) {
                    backoff.0.remove(&(id.to_string(), d.key.clone()));
                }
                for (id, d) in mine.iter_mut().filter(|(_, d)| d.at.is_none()) {
                    d.at = super::deactivated_at(&snapshot, id);
                }
                // At start one LIST per kind by the label's presence finds every departed
                // person's objects; after, one LIST per kind and person.
                let selector = match (first, mine.len()) {
                    (_, 0) => None,
                    (false, 1) => mine.keys().next().map(|id| format!("{LABEL_BY_ID}={id}")),
                    _ => Some(LABEL_BY_ID.to_string()),
                };
                first = false;
                if let Some(selector) = selector {
                    let sweep = async {
                        self.identify(&mut me).await?;
                        self.sweep(&selector, &mine, &replica, me.as_deref()).await
                    };
                    // A sweep cut short by a shutdown is finished by the next start, or by
                    // another replica once this one's claim runs out: nothing is lost by
                    // stopping mid-way, and a long sweep must not hold a shutdown up.
                    let swept = tokio::select! {
                        swept = sweep => swept,
                        _ = shutdown.wait_for(|stop| *stop) => return,
                    };
                    self.settle(swept, mine, &mut settled, &mut backoff).await;
                }
                // Someone re-activated: a later departure has a key of its own.
                settled.retain(|(id, _)| gone.contains_key(id));
                backoff.0.retain(|(id, _), _| gone.contains_key(id));
            }
            tokio::select! {
                _ = tokio::time::sleep(POLL) => {}
                _ = shutdown.wait_for(|stop| *stop) => return,
            }
        }
    }

    /// After a sweep of `mine`: the departures it finished are settled; those it could not
    /// (the sweep failed, a step was refused, another replica took one over) wait their
    /// [`Backoff`] — not the next directory change, which on a busy IdP comes every second.
    async fn settle(
        &self,
        swept: Result<BTreeSet<String>, kube::Error>,
        mine: BTreeMap<String, Departure>,
        settled: &mut BTreeSet<(String, String)>,
        backoff: &mut Backoff,
    ) {
        let lost = swept.unwrap_or_else(|e| {
            tracing::warn!(error = %e, "offboarding sweep failed; trying again later");
            mine.keys().cloned().collect()
        });
        let (again, done): (BTreeMap<String, Departure>, BTreeMap<String, Departure>) =
            mine.into_iter().partition(|(id, _)| lost.contains(id));
        let now = tokio::time::Instant::now();
        for (id, d) in &again {
            backoff.failed((id.clone(), d.key.clone()), now);
        }
        for (id, d) in &done {
            backoff.0.remove(&(id.clone(), d.key.clone()));
        }
        self.finish(&done, settled).await;
    }

    /// The departures among `open` this replica claims now; those swept already go to `settled`.
    async fn claim(
        &self,
        replica: &str,
        open: &[(&String, &Departure)],
        settled: &mut BTreeSet<(String, String)>,
    ) -> BTreeMap<String, Departure> {
        let mut mine = BTreeMap::new();
        for (id, d) in open {
            match self.claim_one(id, d, replica).await {
                Ok(Claim::Mine) => {
                    mine.insert(id.to_string(), (*d).clone());
                }
                Ok(Claim::Done) => {
                    settled.insert((id.to_string(), d.key.clone()));
                }
                Ok(Claim::Held) => {}
                Err(e) => tracing::warn!(error = %e, "offboarding: claiming a sweep"),
            }
        }
        mine
    }

    /// Mark the departures in `mine` swept, in the store and here.
    async fn finish(&self, mine: &BTreeMap<String, Departure>, settled: &mut BTreeSet<(String, String)>) {
        let (now, until) = lease();
        for (id, d) in mine {
            let key = self.claim_key(d);
            let claim = OffboardingClaim {
                user_id: id,
                departure: &key,
                replica: "",
                now: &now,
                until: &until,
            };
            match self.store.finish_offboarding(&claim).await {
                Ok(()) => {
                    settled.insert((id.clone(), d.key.clone()));
                }
                Err(e) => tracing::warn!(error = %e, "offboarding: marking a sweep done"),
            }
        }
    }

    /// List every kind by `selector`, and handle the objects of the people in `gone`.
    /// Returns the people not finished: whose claim this replica lost on the way (another replica
    /// finishes them), or whose records could not be read (retried).
    async fn sweep(
        &self,
        selector: &str,
        gone: &BTreeMap<String, Departure>,
        replica: &str,
        me: Option<&str>,
    ) -> Result<BTreeSet<String>, kube::Error> {
        let mut found: BTreeMap<&str, Vec<Finding>> = BTreeMap::new();
        for kind in Kind::ALL {
            let resource = crate::cluster::api_resource(kind);
            let api: Api<DynamicObject> = Api::all_with(self.client.clone(), &resource);
            // In pages, so a large cluster's objects are never all held at once.
            let mut params = ListParams::default().labels(selector).limit(PAGE);
            loop {
                let list = api.list(&params).await?;
                for o in list.items {
                    // The label picks the candidates (so the stamps of people still here are not
                    // checked); the verified stamp must name the same person.
                    let labelled = o.metadata.labels.as_ref().and_then(|l| l.get(LABEL_BY_ID));
                    let Some((id, _)) = labelled.and_then(|l| gone.get_key_value(l.as_str())) else {
                        continue;
                    };
                    let mut object = serde_json::to_value(&o).unwrap_or_default();
                    // A list's items may come without their kind (as `audit who` also finds).
                    object["apiVersion"] = json!(resource.api_version);
                    object["kind"] = json!(kind.as_str());
                    match self.finding(kind, &object) {
                        Some((sub, finding)) if sub == *id => found.entry(id.as_str()).or_default().push(finding),
                        _ => {}
                    }
                }
                match list.metadata.continue_ {
                    Some(next) if !next.is_empty() => params = params.continue_token(&next),
                    _ => break,
                }
            }
        }
        let mut lost = BTreeSet::new();
        for (id, findings) in found {
            let Some(departure) = gone.get(id) else { continue };
            // Without knowing what is recorded, recording would repeat it: left for the retry.
            let done = match self.recorded(id, departure.at.as_deref()).await {
                Ok(done) => done,
                Err(e) => {
                    tracing::warn!(error = %e, "offboarding: reading what was recorded before; retrying");
                    lost.insert(id.to_string());
                    continue;
                }
            };
            // Done: recorded in this mode since this departure, unless the step failed (tried
            // again). A record of an earlier departure, or a report of what acting now does, is
            // not.
            let mode = self.options.mode.as_str();
            let failed = |f: &Finding| done.get(&f.uid).is_some_and(|(o, m)| o == FAILED && m == mode);
            let todo: Vec<&Finding> = findings
                .iter()
                .filter(|f| failed(f) || done.get(&f.uid).is_none_or(|(_, m)| m != mode))
                .collect();
            for (n, chunk) in todo.chunks(RENEW_EVERY).enumerate() {
                // A long sweep renews its claim as it goes; one that lapsed is another's now.
                if n > 0 && !self.renew(id, departure, replica).await {
                    tracing::warn!(user = %crate::telemetry::field(&departure.user_name),
                        "offboarding: another replica took this sweep over");
                    lost.insert(id.to_string());
                    break;
                }
                // A few objects at a time: each step is a round trip through the API server and
                // its webhooks, and one at a time a large sweep would take minutes.
                let steps: Vec<_> = chunk
                    .iter()
                    .map(|f| self.handle(id, departure, f, me, failed(f)))
                    .collect();
                let taken: Vec<bool> = futures_util::stream::iter(steps)
                    .buffer_unordered(IN_FLIGHT)
                    .collect()
                    .await;
                if taken.contains(&false) {
                    // Tried again with the departure's next look.
                    lost.insert(id.to_string());
                }
            }
            tracing::info!(user = %crate::telemetry::field(&departure.user_name), objects = findings.len(),
                mode = self.options.mode.as_str(), "offboarding: swept what a departed person left");
        }
        Ok(lost)
    }

    /// Learn who scimgate is to the API server (a `SelfSubjectReview`, authentication.k8s.io/v1,
    /// GA since Kubernetes 1.28) when it is to act and does not know yet: each step's stamp names
    /// the account that sends it, and the webhooks admit the step from that account only.
    async fn identify(&self, me: &mut Option<String>) -> Result<(), kube::Error> {
        if self.options.mode != Mode::Act || me.is_some() {
            return Ok(());
        }
        let name = crate::cluster::whoami(&self.client).await?;
        tracing::info!(account = name.as_deref().unwrap_or("(none)"), "offboarding: acting as");
        *me = name;
        Ok(())
    }

    /// What a claim is on: a departure, in this mode — a departure reported and then, the mode
    /// turned to `act`, acted on is swept once in each.
    fn claim_key(&self, d: &Departure) -> String {
        format!("{}/{}", d.key, self.options.mode.as_str())
    }

    /// Whether this replica still holds the sweep of `id`'s departure, for another [`LEASE`].
    async fn renew(&self, id: &str, d: &Departure, replica: &str) -> bool {
        matches!(self.claim_one(id, d, replica).await, Ok(Claim::Mine))
    }

    /// Take or renew the sweep of `id`'s departure `d` for `replica`, for a [`LEASE`] from now.
    async fn claim_one(&self, id: &str, d: &Departure, replica: &str) -> Result<Claim, crate::store::Error> {
        let (now, until) = lease();
        let key = self.claim_key(d);
        let claim = OffboardingClaim {
            user_id: id,
            departure: &key,
            replica,
            now: &now,
            until: &until,
        };
        self.store.claim_offboarding(&claim).await
    }

    /// The person `object`'s verified submit stamp names, and what to do with it; `None` when
    /// its stamp does not verify (never acted on) or names nobody.
    fn finding(&self, kind: Kind, object: &Value) -> Option<(String, Finding)> {
        let claims = match crate::stamp::object::verified(&self.verifier, object, Entry::SUBMIT)? {
            Ok(c) => c,
            Err(why) => {
                tracing::warn!(kind = kind.as_str(), uid = %crate::telemetry::field(uid_of(object).as_str()),
                    why = %why, "offboarding: a stamp that does not verify is left alone");
                return None;
            }
        };
        if claims.sub.is_empty() {
            return None;
        }
        // A stamp made for another object (copied here) names nobody behind this one.
        let meta = |k: &str| object["metadata"][k].as_str().unwrap_or_default();
        if let Err(m) = claims.places(kind.as_str(), meta("namespace"), meta("name"), meta("generateName")) {
            tracing::warn!(kind = kind.as_str(), uid = %crate::telemetry::field(uid_of(object).as_str()),
                why = %m, "offboarding: a stamp made for another object is left alone");
            return None;
        }
        let state = plan::state(kind, object);
        let step = plan::step(state, &self.options);
        let stamped = offboard::verified(&self.verifier, object)
            .and_then(Result::ok)
            .and_then(|c| Some((c.sub, c.departure, Step::named(&c.step)?)));
        let finding = Finding {
            kind,
            api_version: text(object, "apiVersion"),
            namespace: text(&object["metadata"], "namespace"),
            name: text(&object["metadata"], "name"),
            uid: uid_of(object),
            resource_version: text(&object["metadata"], "resourceVersion"),
            state,
            step,
            rule: plan::rule(state, &self.options),
            stamp_id: claims.sid,
            stamped,
        };
        Some((claims.sub, finding))
    }

    /// The objects (by uid) the log has an offboarding record of for person `id` since `since`
    /// (their departure), and the latest record's outcome and mode.
    async fn recorded(
        &self,
        id: &str,
        since: Option<&str>,
    ) -> Result<BTreeMap<String, (String, String)>, crate::store::Error> {
        let mut q = DecisionQuery {
            user_id: Some(id.to_string()),
            action: Some(ACTION.into()),
            from: since.map(str::to_string),
            limit: crate::model::decision::MAX_LIMIT,
            ..DecisionQuery::default()
        };
        let mut seen = BTreeMap::new();
        // Page by page (newest first): a person may have left more objects than one page holds.
        loop {
            let page = self.store.query_decisions(&q).await?;
            let full = page.len() == q.limit as usize;
            q.after = page.last().map(|r| r.id.clone());
            for r in page.into_iter().filter(|r| r.hook == HOOK) {
                seen.entry(r.request_uid).or_insert((r.outcome, r.mode));
            }
            if !full {
                return Ok(seen);
            }
        }
    }

    /// Take the step planned for `f` and say what became of it — a step that failed before and
    /// fails again is not said again. Whether it was taken (or nothing was to be taken).
    async fn handle(&self, id: &str, d: &Departure, f: &Finding, me: Option<&str>, failed_before: bool) -> bool {
        let outcome = self.take(id, d, f, me).await;
        let ok = outcome.is_ok();
        if ok || !failed_before {
            self.report(id, d, f, outcome).await;
        }
        ok
    }

    /// Take the step planned for `f` when acting; what became of it.
    async fn take(&self, id: &str, d: &Departure, f: &Finding, me: Option<&str>) -> Done {
        if self.options.mode != Mode::Act {
            return Ok((f.state, f.step));
        }
        // Taken before a crash cut the sweep short: done, not taken twice.
        if let Some((sub, departure, step)) = &f.stamped {
            if sub == id && *departure == d.key {
                return Ok((f.state, *step));
            }
        }
        if f.step == Step::Keep {
            return Ok((f.state, f.step));
        }
        let me = me.ok_or("the API server did not say who scimgate is (SelfSubjectReview)")?;
        let resource = crate::cluster::api_resource(f.kind);
        let api: Api<DynamicObject> = match f.namespace.as_str() {
            "" => Api::all_with(self.client.clone(), &resource),
            ns => Api::namespaced_with(self.client.clone(), ns, &resource),
        };
        let (mut state, mut step, mut version) = (f.state, f.step, f.resource_version.clone());
        for _ in 0..ATTEMPTS {
            let Some(mut patch) = step.patch(f.kind) else {
                return Ok((state, step));
            };
            let (stamp, _) = offboard::make(
                &self.signer,
                &NewOffboard {
                    requester: me,
                    kind: f.kind,
                    namespace: &f.namespace,
                    name: &f.name,
                    uid: &f.uid,
                    resource_version: &version,
                    sub: id,
                    user_name: &d.user_name,
                    cause: d.cause,
                    departure: &d.key,
                    step: step.as_str(),
                    now: chrono::Utc::now(),
                },
            );
            patch["metadata"] = json!({"resourceVersion": version, "annotations": stamp});
            match api.patch(&f.name, &PatchParams::default(), &Patch::Merge(&patch)).await {
                Ok(_) => return Ok((state, step)),
                // Changed since it was listed: as it is now, planned anew.
                Err(kube::Error::Api(s)) if s.code == 409 => {
                    let now = api.get(&f.name).await.map_err(|e| refused(&e))?;
                    let object = serde_json::to_value(&now).unwrap_or_default();
                    if uid_of(&object) != f.uid {
                        return Err("it was deleted and another object of its name made since".into());
                    }
                    state = plan::state(f.kind, &object);
                    step = plan::step(state, &self.options);
                    version = text(&object["metadata"], "resourceVersion");
                }
                Err(e) => return Err(refused(&e)),
            }
        }
        Err(format!("it changed under each of {ATTEMPTS} tries"))
    }

    /// Record what became of `f` and announce it on the object.
    async fn report(&self, id: &str, d: &Departure, f: &Finding, done: Done) {
        let (state, outcome, what) = match &done {
            Ok((state, step)) => {
                let o = outcome(self.options.mode, *step);
                (*state, o, describe(o).to_string())
            }
            Err(why) => {
                let step = if f.step == Step::Suspend {
                    "suspended"
                } else {
                    "cancelled"
                };
                (f.state, FAILED, format!("it could not be {step}: {why}"))
            }
        };
        let message = format!(
            "{} was {} through SCIM{}; this {} is {}: {what}",
            d.user_name,
            d.cause,
            d.at.as_deref().map(|t| format!(" at {t}")).unwrap_or_default(),
            f.kind.as_str(),
            state.as_str(),
        );
        let rule = match &done {
            Ok((state, _)) if *state != f.state => plan::rule(*state, &self.options),
            _ => f.rule.clone(),
        };
        // The Event first: a crash before the record is written repeats both at the next start,
        // and the repeated Event is refused as existing — each is written once.
        if let Err(e) = self.event(id, f, outcome, &message).await {
            tracing::warn!(error = %e, "offboarding: the Event could not be written");
        }
        self.recorder
            .record(DecisionRecord {
                id: uuid::Uuid::now_v7().to_string(),
                at: crate::model::clock::now(),
                request_uid: f.uid.clone(),
                hook: HOOK.into(),
                kind: f.kind.as_str().into(),
                namespace: f.namespace.clone(),
                name: f.name.clone(),
                action: ACTION.into(),
                requester: "scimgate".into(),
                user_id: Some(id.to_string()),
                rule,
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
        let namespace = Some(f.namespace.as_str()).filter(|n| !n.is_empty());
        let ns = namespace.unwrap_or("default");
        let digest = sha2::Sha256::digest(format!("{}/{id}/{outcome}", f.uid));
        let name: String = f.name.chars().take(200).collect();
        let now = crate::model::clock::now();
        let ar = ApiResource {
            group: String::new(),
            version: "v1".into(),
            api_version: "v1".into(),
            kind: "Event".into(),
            plural: "events".into(),
        };
        let mut event = DynamicObject::new(&format!("{name}.{}", hex16(&digest)), &ar).within(ns);
        event.data = json!({
            "involvedObject": {"apiVersion": f.api_version, "kind": f.kind.as_str(),
                "name": f.name, "namespace": namespace, "uid": f.uid},
            "reason": "Offboarded",
            "message": message,
            "type": if outcome == "kept" { "Normal" } else { "Warning" },
            "source": {"component": "scimgate"},
            "reportingComponent": "scimgate.io/offboarding",
            "reportingInstance": "scimgate",
            "firstTimestamp": now, "lastTimestamp": now, "count": 1,
        });
        let api: Api<DynamicObject> = Api::namespaced_with(self.client.clone(), ns, &ar);
        match api.create(&PostParams::default(), &event).await {
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
            r => r.map(|_| ()),
        }
    }
}

/// The hook and action of offboarding's decision records.
pub const HOOK: &str = "offboarding";
pub const ACTION: &str = crate::stamp::offboard::ACTION;

/// The outcome of a step the API server refused.
const FAILED: &str = "failed";

/// Why the API server refused: its message (a webhook's refusal says why), or the error.
fn refused(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) => format!("{} ({})", s.message, s.code),
        e => e.to_string(),
    }
}

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

/// Now, and the end of a [`LEASE`] taken now (RFC 3339, milliseconds: they order as text).
fn lease() -> (String, String) {
    let now = chrono::Utc::now();
    let until = now + chrono::Duration::from_std(LEASE).unwrap_or_default();
    let text = |t: chrono::DateTime<chrono::Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    (text(now), text(until))
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A departure whose sweep failed is left out of every look (a directory change included)
    /// until its wait is over: 5 s, then twice as long after each failure, at most 10 minutes.
    #[test]
    fn a_failed_departure_waits_longer_after_each_failure() {
        let key = ("id".to_string(), "deactivated@2".to_string());
        let t0 = tokio::time::Instant::now();
        let s = Duration::from_secs;
        let mut b = Backoff::default();
        assert!(!b.waiting(&key, t0) && !b.due(t0));
        b.failed(key.clone(), t0);
        assert!(b.waiting(&key, t0 + s(4)) && !b.due(t0 + s(4)));
        assert!(!b.waiting(&key, t0 + s(5)) && b.due(t0 + s(5)));
        b.failed(key.clone(), t0 + s(5));
        assert!(b.waiting(&key, t0 + s(14)) && !b.waiting(&key, t0 + s(15)));
        for _ in 0..20 {
            b.failed(key.clone(), t0);
        }
        assert!(b.waiting(&key, t0 + s(599)) && !b.waiting(&key, t0 + s(600)));
    }
}
