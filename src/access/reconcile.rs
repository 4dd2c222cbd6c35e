//! Keeps the cluster's bindings as the policy's `access:` section and the directory ask
//! (`plan`). Every replica watches Namespaces and scimgate's own RoleBindings and
//! ClusterRoleBindings (kube-runtime reflectors, by [`super::LABEL`]) and follows its directory;
//! the one holding the access Lease (`cluster::lease`) writes: creates with a POST (never
//! adopting a binding someone else named the same), changes by server-side apply with field
//! manager `scimgate`, forced (a controller owns its fields; a hand edit is put back), deletes
//! what the policy no longer asks for. It plans within 50 ms of a directory change, a policy
//! reload or a watch event, on the whole state (level-triggered: a missed event costs nothing but
//! the next one). Each person whose access a write changed gets a decision record (hook and
//! action `access`, outcome `granted` or `revoked`, the cause in the reason); a binding put back
//! gets one too (outcome `repaired`, naming who changed it).
//!
//! Must not: write before every watch has listed (a partial view would delete what it has not
//! seen yet), write without the Lease, or write anything under `mode: dry-run`.

use super::object::{self, selector};
use super::plan::{self, Binding, Change, Key, Observed, Plan, Why};
use super::subjects::{self, State};
use super::{ACTION, FIELD_MANAGER, HOOK, LEASE};
use crate::audit::recorder::Recorder;
use crate::directory::Snapshot;
use crate::metrics::Metrics;
use crate::model::DecisionRecord;
use crate::policy::{Mode, Policy};
use arc_swap::ArcSwap;
use futures_util::{FutureExt, StreamExt};
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::rbac::v1::{ClusterRoleBinding, RoleBinding};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{watcher, WatchStreamExt};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// How often the loop looks for a change (directory, policy, watches).
const TICK: Duration = Duration::from_millis(50);
/// How often the Lease is renewed or tried (client-go's `RetryPeriod`).
const RENEW: Duration = Duration::from_secs(2);
/// Writes in flight at once.
const IN_FLIGHT: usize = 16;
/// How long a write this replica made stands in for what the watch shows, until the watch shows
/// it; and how long a name another binding holds is left before trying again.
const OVERLAY: Duration = Duration::from_secs(30);
/// After this many failed writes in a row of a change that takes someone's access away, the
/// binding is deleted instead: a binding that cannot be written (too large, refused) must not
/// go on granting what the identity provider withdrew.
const FAIL_CLOSED_AFTER: u32 = 3;
/// How long before the Lease would run out unrenewed this replica stops writing.
const WRITE_MARGIN: Duration = Duration::from_secs(3);

pub struct Reconciler {
    pub client: kube::Client,
    pub recorder: Recorder,
    pub directory: Arc<ArcSwap<Snapshot>>,
    pub policy: Arc<ArcSwap<Policy>>,
    pub metrics: Metrics,
    /// Whether the directory still follows the store: past `maxStalenessSeconds` this replica
    /// writes nothing (a lagging replica would grant a leaver again).
    pub freshness: Arc<crate::freshness::Freshness>,
}

/// The reflectors' caches, and a count of the events they have seen.
struct Watches {
    namespaces: Store<Namespace>,
    role_bindings: Store<RoleBinding>,
    cluster_role_bindings: Store<ClusterRoleBinding>,
    events: Arc<AtomicU64>,
}

/// A write this replica made that the watch may not show yet: the resourceVersion the binding had
/// before it (`None`: absent), and what it is after (`None`: deleted).
struct Written {
    before: Option<String>,
    /// What it is after, at the resourceVersion the write answered with (`None`: deleted).
    after: Option<(Binding, String)>,
    at: Instant,
}

/// What one pass of the loop keeps for the next.
#[derive(Default)]
struct Memory {
    /// What this replica last wrote or found as it should be: a binding that differs from it was
    /// changed by someone else.
    last: HashMap<Key, Binding>,
    written: HashMap<Key, Written>,
    /// Names another binding holds, and since when.
    taken: HashMap<Key, Instant>,
    /// The dry-run plan last reported, so it is said once.
    said: Option<String>,
    /// Each watched binding as read, by key, with the resourceVersion it was read at: read again
    /// only when it changes.
    read: HashMap<Key, Observed>,
    /// What was desired, and from what (directory generation, policy, namespaces): a pass that a
    /// watch event alone started (the echo of this replica's own writes, mostly) reuses it.
    desired: Option<(Inputs, Desired)>,
    /// Writes that failed in a row, by binding.
    failures: HashMap<Key, u32>,
}

type Inputs = (u64, String, Vec<String>);
type Desired = (BTreeMap<Key, Binding>, Vec<String>);

impl Reconciler {
    /// Until `shutdown`: once the policy has an `access:` section, watch, and while this replica
    /// holds the Lease, reconcile.
    pub async fn run(self, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        while self.policy.load().access.is_none() {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = shutdown.wait_for(|stop| *stop) => return,
            }
        }
        let (watches, task) = Watches::start(&self.client);
        let watching = tokio::spawn(task);
        tokio::select! {
            _ = watches.ready() => {}
            _ = shutdown.wait_for(|stop| *stop) => { watching.abort(); return }
        }
        tracing::info!("access: watching namespaces and scimgate's bindings");
        self.reconcile(&watches, shutdown).await;
        watching.abort();
    }

    async fn reconcile(&self, watches: &Watches, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        let mut lease = None;
        let (mut held, mut renew_at) = (false, Instant::now());
        // Until when this replica may write: its last renewal, plus the Lease's duration, less
        // a margin for the writes in flight.
        let mut until = Instant::now();
        let mut was_stale = false;
        let mut seen = None;
        let mut memory = Memory::default();
        let mut retry = Retry::default();
        loop {
            if Instant::now() >= renew_at {
                renew_at = Instant::now() + RENEW;
                let asked = Instant::now();
                let holds = crate::cluster::lease::Lease::hold_lazily(&self.client, &mut lease, LEASE, "access").await;
                if holds {
                    until = asked + crate::cluster::lease::DURATION - WRITE_MARGIN;
                }
                if holds != held {
                    tracing::info!(lease = LEASE, holds, "access: the Lease changed hands");
                    // Taking over: what the last writer wrote is not this replica's memory.
                    memory = Memory::default();
                    seen = None;
                    held = holds;
                }
            }
            let snapshot = self.directory.load_full();
            let policy = self.policy.load_full();
            // The policy by its digest: an address could be reused by the next reload.
            let now = (
                snapshot.generation,
                policy.digest.clone(),
                watches.events.load(Ordering::SeqCst),
            );
            let changed_directory = seen.as_ref().is_some_and(|(g, _, _)| *g != now.0);
            let stale = self.freshness.stale_age();
            if stale.is_some() != was_stale {
                was_stale = stale.is_some();
                match stale {
                    Some(age) => tracing::warn!(why = %self.freshness.describe_stale(age),
                        "access: no binding written until the directory catches up"),
                    None => tracing::info!("access: the directory caught up; writing again"),
                }
            }
            if held && stale.is_none() && (seen.as_ref() != Some(&now) || retry.due()) {
                seen = Some(now);
                let failed = self.pass(watches, &snapshot, &policy, &mut memory, until).await;
                retry.after(failed);
                if changed_directory && !failed {
                    if let Some(published) = snapshot.published {
                        self.metrics.access_lag(published.elapsed());
                    }
                }
            }
            if !held {
                self.metrics.access_state(watches.count(), 0, false);
            }
            tokio::select! {
                _ = tokio::time::sleep(TICK) => {}
                _ = shutdown.wait_for(|stop| *stop) => return,
            }
        }
    }

    /// Plan and, unless in dry-run, write. Whether anything failed.
    async fn pass(
        &self,
        watches: &Watches,
        snapshot: &Snapshot,
        policy: &Policy,
        memory: &mut Memory,
        until: Instant,
    ) -> bool {
        let Some(access) = &policy.access else { return false };
        let started = Instant::now();
        let observed = watches.observed(&mut memory.written, &mut memory.read);
        let inputs = (snapshot.generation, policy.digest.clone(), watches.live_namespaces());
        let (desired, notes) = match memory.desired.take() {
            Some((was, desired)) if was == inputs => desired,
            _ => plan::desired(policy, access, snapshot, &inputs.2),
        };
        let mut plan = plan::diff(desired.clone(), &observed, &memory.last);
        memory.desired = Some((inputs, (desired, notes.clone())));
        let pending = plan.create.len() + plan.update.len() + plan.delete.len();
        self.metrics.access_state(observed.len(), pending, true);
        if access.mode == Mode::DryRun {
            say_dry_run(&plan, &notes, &mut memory.said);
            return false;
        }
        memory.said = None;
        for b in plan.unchanged.drain(..) {
            memory.last.insert(b.key(), b);
        }
        memory.taken.retain(|_, since| since.elapsed() < OVERLAY);
        plan.create.retain(|c| !memory.taken.contains_key(&c.to.key()));
        // A namespace being deleted takes its bindings with it (the namespace controller): no
        // delete of ours, and no record saying the policy withdrew them.
        let terminating = watches.terminating_namespaces();
        plan.delete.retain(|b| !terminating.contains(&b.namespace));
        if plan.is_empty() {
            return false;
        }
        for n in &notes {
            tracing::warn!(note = %n, "access");
        }
        let planned = started.elapsed();
        let (create, update, delete) = (plan.create.len(), plan.update.len(), plan.delete.len());
        let failed = self.write(plan, &observed, snapshot, policy, memory, until).await;
        tracing::info!(
            create,
            update,
            delete,
            failed,
            plan_ms = planned.as_millis() as u64,
            total_ms = started.elapsed().as_millis() as u64,
            "access: bindings written"
        );
        failed
    }

    /// Make the plan's writes, `IN_FLIGHT` at a time, and record what they changed. Whether any
    /// failed.
    async fn write(
        &self,
        plan: Plan,
        observed: &BTreeMap<Key, Observed>,
        snapshot: &Snapshot,
        policy: &Policy,
        memory: &mut Memory,
        until: Instant,
    ) -> bool {
        let ops = plan
            .create
            .into_iter()
            .map(Op::Create)
            .chain(plan.update.into_iter().map(Op::Update))
            .chain(plan.delete.into_iter().map(Op::Delete));
        let results: Vec<(Op, Outcome)> = futures_util::stream::iter(ops)
            .map(|op| async move {
                // The Lease may pass to another replica once it has run out unrenewed: a long
                // pass stops writing before that, and the next pass (after a renewal) goes on.
                let outcome = if Instant::now() < until {
                    let read = observed.get(&op.binding().key());
                    self.apply(&op, read).await
                } else {
                    Outcome::Deferred
                };
                (op, outcome)
            })
            .buffer_unordered(IN_FLIGHT)
            .collect()
            .await;
        let mut failed = false;
        let mut changed_at = HashMap::new();
        let mut withdraw = Vec::new();
        for (op, outcome) in results {
            let key = op.binding().key();
            match outcome {
                Outcome::Done(version) => {
                    memory.failures.remove(&key);
                    let after = op.after().cloned().map(|b| (b, version));
                    match &after {
                        Some((b, _)) => memory.last.insert(key.clone(), b.clone()),
                        None => memory.last.remove(&key),
                    };
                    // What the watch showed before this replica's first write it has not shown yet.
                    let before = match memory.written.get(&key) {
                        Some(w) => w.before.clone(),
                        None => observed.get(&key).map(|o| o.resource_version.clone()),
                    };
                    let at = Instant::now();
                    memory.written.insert(key, Written { before, after, at });
                    self.record(&op, snapshot, policy, &mut changed_at).await;
                }
                // Deleted by someone else first, or its namespace is gone: the watch will say so.
                Outcome::Gone => {
                    memory.last.remove(&key);
                }
                Outcome::Taken => {
                    tracing::warn!(binding = %op.binding().display(), kind = op.binding().kind(),
                        "access: a binding scimgate does not own has this name, and is left alone (rename or delete it)");
                    memory.taken.insert(key, Instant::now());
                }
                // Not written before the Lease could lapse: the next pass, after a renewal.
                Outcome::Deferred => failed = true,
                Outcome::Failed(e) => {
                    tracing::warn!(binding = %op.binding().display(), error = %e, "access: a binding write failed; retrying");
                    failed = true;
                    let count = memory.failures.entry(key).or_default();
                    *count += 1;
                    if let Op::Update(Change { was: Some(was), .. }) = &op {
                        if *count >= FAIL_CLOSED_AFTER && !op.revoked().is_empty() {
                            withdraw.push(Op::Withdraw {
                                was: was.clone(),
                                why: e,
                            });
                        }
                    }
                }
            }
        }
        for op in withdraw.into_iter().filter(|_| Instant::now() < until) {
            let key = op.binding().key();
            let read = observed.get(&key);
            if let Outcome::Done(_) = self.delete(op.binding(), read).await {
                tracing::error!(binding = %op.binding().display(),
                    "access: a binding that could not be written was deleted, so nobody keeps access the identity provider withdrew");
                memory.last.remove(&key);
                memory.failures.remove(&key);
                self.record(&op, snapshot, policy, &mut changed_at).await;
            }
        }
        failed
    }

    /// One write, conditional on the binding being as it was `read` (its resourceVersion on an
    /// apply, uid and resourceVersion on a delete: one someone changed or re-created since is
    /// not overwritten, and comes back by the watch). A binding whose role changed is deleted and
    /// created again: `roleRef` cannot change (pkg/apis/rbac/validation
    /// `ValidateRoleBindingUpdate`).
    async fn apply(&self, op: &Op, read: Option<&Observed>) -> Outcome {
        match op {
            Op::Create(c) => self.create(&c.to).await,
            Op::Update(c) if c.was.as_ref().is_some_and(|w| w.role != c.to.role) => {
                match self.delete(&c.to, read).await {
                    Outcome::Done(_) | Outcome::Gone => self.create(&c.to).await,
                    other => other,
                }
            }
            Op::Update(c) => {
                let params = PatchParams::apply(FIELD_MANAGER).force();
                let version = read.map(|o| o.resource_version.clone()).filter(|v| !v.is_empty());
                let r = if c.to.namespace.is_empty() {
                    let mut o = object::cluster_role_binding(&c.to);
                    o.metadata.resource_version = version;
                    let api: Api<ClusterRoleBinding> = Api::all(self.client.clone());
                    api.patch(&c.to.name, &params, &Patch::Apply(o))
                        .await
                        .map(|o| o.metadata.resource_version)
                } else {
                    let mut o = object::role_binding(&c.to);
                    o.metadata.resource_version = version;
                    let api: Api<RoleBinding> = Api::namespaced(self.client.clone(), &c.to.namespace);
                    api.patch(&c.to.name, &params, &Patch::Apply(o))
                        .await
                        .map(|o| o.metadata.resource_version)
                };
                self.outcome("apply", r)
            }
            Op::Delete(b) | Op::Withdraw { was: b, .. } => self.delete(b, read).await,
        }
    }

    async fn create(&self, b: &Binding) -> Outcome {
        let params = PostParams {
            field_manager: Some(FIELD_MANAGER.into()),
            ..PostParams::default()
        };
        let r = if b.namespace.is_empty() {
            let api: Api<ClusterRoleBinding> = Api::all(self.client.clone());
            api.create(&params, &object::cluster_role_binding(b))
                .await
                .map(|o| o.metadata.resource_version)
        } else {
            let api: Api<RoleBinding> = Api::namespaced(self.client.clone(), &b.namespace);
            api.create(&params, &object::role_binding(b))
                .await
                .map(|o| o.metadata.resource_version)
        };
        match self.outcome("create", r) {
            Outcome::Taken if self.is_ours(b).await => {
                Outcome::Failed("it exists and is scimgate's: the watch is behind".into())
            }
            other => other,
        }
    }

    /// Whether the binding of `b`'s name is labelled as scimgate's (a create refused as existing
    /// may only have raced the watch).
    async fn is_ours(&self, b: &Binding) -> bool {
        let labels = if b.namespace.is_empty() {
            let api: Api<ClusterRoleBinding> = Api::all(self.client.clone());
            api.get_opt(&b.name).await.ok().flatten().map(|o| o.metadata.labels)
        } else {
            let api: Api<RoleBinding> = Api::namespaced(self.client.clone(), &b.namespace);
            api.get_opt(&b.name).await.ok().flatten().map(|o| o.metadata.labels)
        };
        labels.flatten().and_then(|l| l.get(super::LABEL).cloned()).as_deref() == Some(super::LABEL_VALUE)
    }

    async fn delete(&self, b: &Binding, read: Option<&Observed>) -> Outcome {
        let some = |v: &str| Some(v.to_string()).filter(|v| !v.is_empty());
        let params = DeleteParams {
            preconditions: read.map(|o| kube::api::Preconditions {
                uid: some(&o.uid),
                resource_version: some(&o.resource_version),
            }),
            ..DeleteParams::default()
        };
        let r = if b.namespace.is_empty() {
            let api: Api<ClusterRoleBinding> = Api::all(self.client.clone());
            api.delete(&b.name, &params).await.map(|_| None)
        } else {
            let api: Api<RoleBinding> = Api::namespaced(self.client.clone(), &b.namespace);
            api.delete(&b.name, &params).await.map(|_| None)
        };
        self.outcome("delete", r)
    }

    /// A write's result. A create refused for an existing name, and a 404 for the binding or its
    /// namespace (gone already), are outcomes of their own; a 404 for anything else (the role,
    /// when scimgate may not `bind` it and it does not exist) is a failure, retried.
    fn outcome(&self, verb: &'static str, r: Result<Option<String>, kube::Error>) -> Outcome {
        let outcome = match r {
            Ok(version) => Outcome::Done(version.unwrap_or_default()),
            Err(kube::Error::Api(s)) if s.code == 409 && verb == "create" => Outcome::Taken,
            Err(kube::Error::Api(s))
                if s.code == 404
                    && ["namespaces ", "rolebindings.", "clusterrolebindings."]
                        .iter()
                        .any(|p| s.message.starts_with(p)) =>
            {
                Outcome::Gone
            }
            Err(e) => Outcome::Failed(e.to_string()),
        };
        let label = match &outcome {
            Outcome::Done(_) | Outcome::Gone | Outcome::Deferred => "ok",
            Outcome::Taken => "taken",
            Outcome::Failed(_) => "failed",
        };
        self.metrics.access_write(verb, label);
        outcome
    }

    /// The decision records of a write: one per person it gave or took the role from, with the
    /// cause, and one for a binding put back after someone else's change.
    /// `changed_at` keeps each record's (a user's or group's) `meta.lastModified` for the pass,
    /// so a group losing many members is read once, not once per member.
    async fn record(&self, op: &Op, snapshot: &Snapshot, policy: &Policy, changed_at: &mut HashMap<Arc<str>, String>) {
        let b = op.binding();
        let (granted, revoked, why) = match op {
            Op::Create(c) | Op::Update(c) => (c.people().0, op.revoked(), Some(&c.why)),
            Op::Delete(_) | Op::Withdraw { .. } => (Vec::new(), op.revoked(), None),
        };
        if let Some(Why::Drift { by }) = why {
            self.metrics.access_drift_repaired();
            let by = if by.is_empty() {
                "someone (deleted, or changed before this replica wrote it)".to_string()
            } else {
                by.join(", ")
            };
            tracing::warn!(binding = %b.display(), by = %crate::telemetry::field(&by),
                "access: a managed binding was changed by hand; put back");
            self.recorder
                .record_beside_admission(draft(
                    b,
                    None,
                    "repaired",
                    format!("changed by {by}; put back as the policy grants it"),
                ))
                .await;
        }
        for (names, outcome) in [(granted, "granted"), (revoked, "revoked")] {
            for name in names {
                let person = subjects::person_named(snapshot, policy, name);
                let reason = cause(snapshot, op, name, person.as_ref(), outcome, changed_at);
                self.recorder
                    .record_beside_admission(draft(b, person.map(|p| p.id), outcome, reason))
                    .await;
            }
        }
    }
}

/// One write of a plan.
enum Op {
    Create(Change),
    Update(Change),
    Delete(Binding),
    /// A binding deleted because the change it needed could not be written (`why`).
    Withdraw {
        was: Binding,
        why: String,
    },
}

impl Op {
    fn binding(&self) -> &Binding {
        match self {
            Op::Create(c) | Op::Update(c) => &c.to,
            Op::Delete(b) | Op::Withdraw { was: b, .. } => b,
        }
    }

    /// What the binding is after the write (`None`: deleted).
    fn after(&self) -> Option<&Binding> {
        match self {
            Op::Create(c) | Op::Update(c) => Some(&c.to),
            Op::Delete(_) | Op::Withdraw { .. } => None,
        }
    }

    /// The usernames the write takes the role from.
    fn revoked(&self) -> Vec<&str> {
        match self {
            Op::Create(c) | Op::Update(c) => c.people().1,
            Op::Delete(b) | Op::Withdraw { was: b, .. } => b
                .subjects
                .iter()
                .filter(|s| s.kind == "User")
                .map(|s| s.name.as_str())
                .collect(),
        }
    }
}

enum Outcome {
    /// Written; the resourceVersion it answered with (none for a delete).
    Done(String),
    /// Create: another binding has the name.
    Taken,
    /// Already gone (a delete), or its namespace is.
    Gone,
    /// Not tried: the Lease could lapse before it is answered.
    Deferred,
    Failed(String),
}

/// Why `name` gained or lost the role of a binding, in words, with the SCIM change behind it.
fn cause(
    s: &Snapshot,
    op: &Op,
    name: &str,
    person: Option<&subjects::Person>,
    outcome: &str,
    changed_at: &mut HashMap<Arc<str>, String>,
) -> String {
    let b = op.binding();
    let grant = &b.grant;
    if let Op::Withdraw { why, .. } = op {
        return format!(
            "the binding could not be written ({}), so it was deleted rather than left granting what the identity provider withdrew ({grant})",
            crate::model::decision::prefix(why, 200)
        );
    }
    let Some(p) = person else {
        return format!("{name} names no user in the directory any more; {outcome} ({grant})");
    };
    let mut changed = |id: &str, group: bool| {
        let record = if group {
            s.group(id).map(|g| &g.record)
        } else {
            s.user(id).map(|u| &u.record)
        };
        let Some(r) = record else { return String::new() };
        changed_at
            .entry(r.id.clone())
            .or_insert_with(|| {
                serde_json::from_str::<serde_json::Value>(&r.body)
                    .ok()
                    .and_then(|v| v["meta"]["lastModified"].as_str().map(str::to_string))
                    .unwrap_or_default()
            })
            .clone()
    };
    match (outcome, p.state, op) {
        ("granted", _, _) => format!("{} is an active member of {} ({grant})", p.user_name, b.group),
        (_, State::Deactivated, _) => format!(
            "{} was deactivated in the identity provider (SCIM User {}, changed {}) ({grant})",
            p.user_name,
            p.id,
            changed(&p.id, false)
        ),
        (_, State::Deleted, _) => format!("{} was deleted from the identity provider ({grant})", p.user_name),
        (_, State::Active, Op::Delete(_)) => format!("the policy no longer grants this binding ({grant})"),
        (_, State::Active, _) => {
            let group = s.by_unique_key(crate::model::ResourceType::Group, &crate::model::name::fold(&b.group));
            let at = group.map(|g| changed(g, true)).unwrap_or_default();
            format!(
                "{} is no longer a member of {} (SCIM Group changed {at}) ({grant})",
                p.user_name, b.group
            )
        }
    }
}

/// A decision record of the access reconciler's about binding `b`.
fn draft(b: &Binding, user_id: Option<String>, outcome: &str, reason: String) -> DecisionRecord {
    DecisionRecord {
        id: uuid::Uuid::now_v7().to_string(),
        at: crate::model::clock::now(),
        hook: HOOK.into(),
        kind: b.kind().into(),
        namespace: b.namespace.clone(),
        name: b.name.clone(),
        action: ACTION.into(),
        requester: "scimgate".into(),
        user_id,
        groups: crate::model::name::fold(&b.group),
        rule: Some(b.grant.clone()),
        outcome: outcome.into(),
        mode: "enforce".into(),
        reason,
        ..DecisionRecord::default()
    }
}

/// Say a dry-run plan once (until it changes).
fn say_dry_run(plan: &Plan, notes: &[String], said: &mut Option<String>) {
    let mut lines: Vec<String> = notes.to_vec();
    for (verb, changes) in [("create", &plan.create), ("update", &plan.update)] {
        for c in changes {
            let (g, r) = c.people();
            lines.push(format!(
                "would {verb} {} {} (+{} -{})",
                c.to.kind(),
                c.to.display(),
                g.len(),
                r.len()
            ));
        }
    }
    for b in &plan.delete {
        lines.push(format!("would delete {} {}", b.kind(), b.display()));
    }
    let text = lines.join("\n");
    if said.as_deref() != Some(text.as_str()) {
        for l in &lines {
            tracing::info!(change = %l, "access (dry-run)");
        }
        *said = Some(text);
    }
}

/// When a failed pass is tried again: after 1 s, doubling to a minute.
#[derive(Default)]
struct Retry {
    at: Option<Instant>,
    wait: Duration,
}

impl Retry {
    fn due(&self) -> bool {
        self.at.is_some_and(|at| Instant::now() >= at)
    }

    fn after(&mut self, failed: bool) {
        if failed {
            self.wait = (self.wait * 2).clamp(Duration::from_secs(1), Duration::from_secs(60));
            self.at = Some(Instant::now() + self.wait);
        } else {
            *self = Retry::default();
        }
    }
}

impl Watches {
    /// The three reflectors, and the task that drives them.
    fn start(client: &kube::Client) -> (Watches, impl std::future::Future<Output = ()> + Send + 'static) {
        let events = Arc::new(AtomicU64::new(0));
        let ours = watcher::Config::default().labels(&selector());
        let (namespaces, a) = reflect(Api::all(client.clone()), watcher::Config::default(), &events);
        let (role_bindings, b) = reflect(Api::all(client.clone()), ours.clone(), &events);
        let (cluster_role_bindings, c) = reflect(Api::all(client.clone()), ours, &events);
        let task = async move {
            futures_util::future::join3(a, b, c).await;
        };
        let watches = Watches {
            namespaces,
            role_bindings,
            cluster_role_bindings,
            events,
        };
        (watches, task)
    }

    async fn ready(&self) {
        let _ = futures_util::future::join3(
            self.namespaces.wait_until_ready(),
            self.role_bindings.wait_until_ready(),
            self.cluster_role_bindings.wait_until_ready(),
        )
        .await;
    }

    fn count(&self) -> usize {
        self.role_bindings.len() + self.cluster_role_bindings.len()
    }

    /// Namespaces being deleted.
    fn terminating_namespaces(&self) -> std::collections::HashSet<String> {
        self.namespaces
            .state()
            .iter()
            .filter(|n| {
                n.metadata.deletion_timestamp.is_some()
                    || n.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Terminating")
            })
            .filter_map(|n| n.metadata.name.clone())
            .collect()
    }

    /// Namespaces that exist and are not being deleted (the API server refuses new objects in
    /// one that is terminating).
    fn live_namespaces(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .namespaces
            .state()
            .iter()
            .filter(|n| n.metadata.deletion_timestamp.is_none())
            .filter(|n| n.status.as_ref().and_then(|s| s.phase.as_deref()) != Some("Terminating"))
            .filter_map(|n| n.metadata.name.clone())
            .collect();
        names.sort();
        names
    }

    /// scimgate's bindings as watched — with this replica's own writes in place of what the watch
    /// has not shown yet (a binding still at the resourceVersion it had before the write).
    fn observed(
        &self,
        written: &mut HashMap<Key, Written>,
        read: &mut HashMap<Key, Observed>,
    ) -> BTreeMap<Key, Observed> {
        let mut out: BTreeMap<Key, Observed> = BTreeMap::new();
        let mut take = |meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
                        convert: &dyn Fn() -> Option<Observed>| {
            let key = (
                meta.namespace.clone().unwrap_or_default(),
                meta.name.clone().unwrap_or_default(),
            );
            let rv = meta.resource_version.as_deref().unwrap_or_default();
            let o = match read.get(&key) {
                Some(o) if o.resource_version == rv => Some(o.clone()),
                _ => convert(),
            };
            if let Some(o) = o {
                out.insert(key, o);
            }
        };
        for rb in self.role_bindings.state() {
            take(&rb.metadata, &|| object::observed_role_binding(&rb));
        }
        for crb in self.cluster_role_bindings.state() {
            take(&crb.metadata, &|| object::observed_cluster_role_binding(&crb));
        }
        read.clear();
        read.extend(out.iter().map(|(k, o)| (k.clone(), o.clone())));
        written.retain(|key, w| {
            let current = out.get(key).map(|o| o.resource_version.clone());
            if current != w.before || w.at.elapsed() > OVERLAY {
                return false;
            }
            match &w.after {
                Some((b, version)) => {
                    let stood = out.get(key).map(|o| o.uid.clone()).unwrap_or_default();
                    out.insert(
                        key.clone(),
                        Observed {
                            binding: b.clone(),
                            others: Vec::new(),
                            resource_version: version.clone(),
                            uid: stood,
                        },
                    );
                }
                None => {
                    out.remove(key);
                }
            }
            true
        });
        out
    }
}

/// A reflector of `api` under `config`, and its task (re-listing after errors, with backoff),
/// counting each event into `events`.
fn reflect<K>(
    api: Api<K>,
    config: watcher::Config,
    events: &Arc<AtomicU64>,
) -> (Store<K>, futures_util::future::BoxFuture<'static, ()>)
where
    K: kube::Resource<DynamicType = ()> + Clone + std::fmt::Debug + serde::de::DeserializeOwned + Send + Sync + 'static,
{
    let (reader, writer) = reflector::store();
    let events = events.clone();
    let kind = K::kind(&()).to_string();
    let task = watcher(api, config)
        .default_backoff()
        .reflect(writer)
        .for_each(move |event| {
            if let Err(e) = event {
                tracing::warn!(kind = %kind, error = %e, "access: watching");
            }
            events.fetch_add(1, Ordering::SeqCst);
            std::future::ready(())
        })
        .boxed();
    (reader, task)
}
