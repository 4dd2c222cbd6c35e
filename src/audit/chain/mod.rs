//! The decision log's tamper evidence. Every process that records decisions is a *replica* with
//! its own hash chain: each record carries the SHA-256 of the previous record it wrote, and the
//! replica signs (with the stamp key) a start mark, a checkpoint every [`CHECKPOINT_RECORDS`]
//! records or [`CHECKPOINT_EVERY`], and a prune mark when retention deletes the chain's oldest
//! records. [`verify`] recomputes all of it and names the records that were edited, inserted or
//! removed.
//!
//! A database writer without the key can still drop a chain's signed ends — a whole replica, or
//! a stopped chain's last checkpoints with the records after them — and nothing inside that
//! chain says so. So a chain's existence and its ends are vouched for outside it too:
//!
//! - **Cross-references.** Each start mark and checkpoint also signs the latest checkpoint
//!   (replica, seq, hash) of every other replica whose signature holds, as read from the store at
//!   that moment ([`MarkDetail::refs`]; a checkpoint repeats only what changed since this chain's
//!   last mark, so marks stay small however many replicas there were). A new process's start
//!   references the previous process's last checkpoint, so deleting or truncating a stopped
//!   chain is found as soon as any later chain exists.
//! - **External anchors.** Every mark is also published where a database writer cannot reach: a
//!   structured log line with its signature ([`publish`]), and, for checkpoints, a metric of the
//!   last one's seq and hash. `audit verify --log --anchors FILE` checks the database against
//!   anchors collected from either ([`anchors`]); a whole database replaced by an older copy is
//!   found only that way.
//! - **The legacy seal.** Records from before the chains existed carry no link. The first start
//!   of a process that anchors marks (this version) hashes all of them, in `(at, id)` order, into
//!   one signed `seal` mark, and every start mark references the seal. From then on a record in
//!   no chain that is not under the seal is a finding, whatever its date.
//! - **Nothing is signed over data not verified first.** A checkpoint signs this process's own
//!   chain, computed here; a reference, only a mark whose signature holds; a prune mark, only a
//!   prefix recomputed up to a signed checkpoint ([`prune`]). The seal is the one exception: it
//!   vouches for what was there at the upgrade, which nothing could check.
//!
//! What remains possible without the key, by construction (docs/security.md says the same): a
//! stopped or crashed chain's newest records — after its last checkpoint, or after the last one
//! left when its final checkpoints are dropped too, at most [`CHECKPOINT_RECORDS`] unsigned —
//! can be cut or rewritten unnoticed when no later chain's mark and no anchor saw those
//! checkpoints (a running replica's next record shows a cut at once); the newest chains can be
//! removed whole while nothing has seen them; a database replaced by an older copy is found only
//! against anchors; records from before the seal were never checked. Whoever holds the stamp key
//! can rewrite everything. Owns the chain format; must not decide anything about admission.

pub mod anchors;
mod prune;
mod verify;

pub use anchors::Anchor;
pub use prune::{prune, Pruned, Refusal, Refused};
pub use verify::{verify, Problem, Report};

use crate::model::{ChainMark, DecisionRecord, Link};
use crate::stamp::{Signer, Verifier};
use crate::store::{MarkFilter, Store};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A checkpoint at least every this many records…
pub const CHECKPOINT_RECORDS: usize = 1_000;
/// …and within this long of the last record.
pub const CHECKPOINT_EVERY: Duration = Duration::from_secs(10);
/// The `prev_hash` of a replica's first record.
pub const ZERO: &str = "0000000000000000000000000000000000000000000000000000000000000000";
/// The `log` claim of a mark's signature, so no stamp can pass for a mark.
const LOG: &str = "scimgate-decision-log";
/// The name the records from before the chains are hashed and sealed under. No replica can be
/// called this: replica names are a host name, a dash and eight hex digits.
pub const LEGACY: &str = "(legacy)";
/// Records per page when reading a chain.
const PAGE: u32 = 10_000;

/// The hash a record carries: SHA-256 over its previous record's hash and every field, each
/// length-prefixed (so no two records encode alike), hex.
pub fn hash(prev_hash: &str, replica: &str, seq: i64, r: &DecisionRecord) -> String {
    let mut h = Sha256::new();
    let mut put = |s: &str| {
        h.update((s.len() as u64).to_be_bytes());
        h.update(s.as_bytes());
    };
    put(prev_hash);
    put(replica);
    put(&seq.to_string());
    for s in [
        &r.id,
        &r.at,
        &r.request_uid,
        &r.hook,
        &r.kind,
        &r.namespace,
        &r.name,
        &r.action,
        &r.requester,
        &r.groups,
        &r.outcome,
        &r.mode,
        &r.reason,
        &r.policy,
        &r.run_as,
        &r.templates,
    ] {
        put(s);
    }
    for o in [&r.user_id, &r.rule, &r.submitter_id, &r.stamp_id] {
        match o {
            Some(s) => {
                put("+");
                put(s);
            }
            None => put("-"),
        }
    }
    put(&r.latency_us.to_string());
    put(if r.authenticated { "1" } else { "0" });
    // Added after the chains existed: hashed only when present, each behind a tag of its own
    // (so one cannot pass for the other), so every earlier record keeps its hash.
    if let Some(p) = &r.prior_decision {
        put("prior");
        put(p);
    }
    if let Some(p) = &r.on_behalf_of {
        put("on-behalf-of");
        put(p);
    }
    hex(&h.finalize())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A place in a chain: the record at `seq` of `replica` has `hash` (for [`LEGACY`], the seal
/// over `seq` records).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ref {
    pub replica: String,
    pub seq: i64,
    pub hash: String,
}

impl Ref {
    fn of(m: &ChainMark) -> Ref {
        Ref {
            replica: m.replica.clone(),
            seq: m.seq,
            hash: m.hash.clone(),
        }
    }
}

/// What a mark vouches for besides its own place, signed with it (the `detail` claim). Marks
/// from before anchors have none.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MarkDetail {
    /// Start and checkpoint: other replicas' latest checkpoints whose signatures held.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub refs: Vec<Ref>,
    /// Start: the legacy seal this process found.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seal: Option<Ref>,
    /// Prune: the signed mark (a checkpoint, or the seal) the cut was recomputed up to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub against: Option<Ref>,
}

/// A mark signed with the stamp key, over its place, its time and `detail`.
fn mark(signer: &Signer, replica: &str, seq: i64, kind: &str, hash: &str, detail: &MarkDetail) -> ChainMark {
    let at = crate::model::clock::now();
    let signature = signer.sign(json!({
        "log": LOG,
        "replica": replica,
        "seq": seq,
        "kind": kind,
        "hash": hash,
        "at": at,
        "detail": detail,
    }));
    ChainMark {
        replica: replica.into(),
        seq,
        kind: kind.into(),
        hash: hash.into(),
        at,
        signature,
    }
}

/// A mark whose signature holds, and the detail it signed (`None` on marks from before anchors).
struct Signed {
    detail: Option<MarkDetail>,
}

/// Whether `m`'s signature verifies and says what its fields say. The detail is read from the
/// signed claims themselves: the row has no column a writer could make disagree with them.
fn holds(verifier: &Verifier, m: &ChainMark) -> Option<Signed> {
    let c = verifier.verify(&m.signature).ok()?;
    let same = c["log"] == LOG
        && c["replica"] == m.replica.as_str()
        && c["seq"] == m.seq
        && c["kind"] == m.kind.as_str()
        && c["hash"] == m.hash.as_str()
        && c["at"] == m.at.as_str();
    if !same {
        return None;
    }
    match c.get("detail") {
        None => Some(Signed { detail: None }),
        Some(d) => serde_json::from_value(d.clone())
            .ok()
            .map(|d| Signed { detail: Some(d) }),
    }
}

/// The marks `filter` selects whose signatures hold, with what they signed.
async fn signed(
    store: &dyn Store,
    verifier: &Verifier,
    filter: MarkFilter,
) -> crate::store::Result<Vec<(ChainMark, Option<MarkDetail>)>> {
    Ok(store
        .chain_marks(&filter)
        .await?
        .into_iter()
        .filter_map(|m| holds(verifier, &m).map(|s| (m, s.detail)))
        .collect())
}

/// The latest (highest) of `replica`'s marks of `kind` whose signature holds.
async fn latest(
    store: &dyn Store,
    verifier: &Verifier,
    replica: &str,
    kind: &'static str,
) -> crate::store::Result<Option<ChainMark>> {
    let marks = signed(
        store,
        verifier,
        MarkFilter {
            replica: Some(replica.into()),
            kind: Some(kind),
            seqs: None,
        },
    )
    .await?;
    Ok(marks.into_iter().map(|(m, _)| m).max_by_key(|m| m.seq))
}

/// The log message each kind of mark is published with.
fn message(kind: &str) -> &'static str {
    match kind {
        "start" => "decision log chain started",
        "checkpoint" => "decision log checkpoint",
        "prune" => "decision log pruned",
        "seal" => "decision log sealed",
        _ => "decision log mark",
    }
}

/// Publish a stored mark where a database writer cannot reach it: one structured log line with
/// its place and signature, which [`anchors::parse`] reads back from a log pipeline. Call it
/// once the mark is durable, so an anchor never names what a crash kept from the store.
pub fn publish(m: &ChainMark) {
    tracing::info!(
        replica = %m.replica,
        seq = m.seq,
        kind = %m.kind,
        hash = %m.hash,
        at = %m.at,
        signature = %m.signature,
        "{}",
        message(&m.kind)
    );
}

/// Hash the records in no chain, in `(at, id)` order, as the seal does: numbered on from
/// `from.0`, each chained to the one before from `from.1` (a legacy prune mark's place, or the
/// start), under the replica name [`LEGACY`]. `each(n, hash, record)` sees every record and
/// returns false to stop. Returns the last number and hash reached.
async fn hash_legacy(
    store: &dyn Store,
    from: (i64, String),
    mut each: impl FnMut(i64, &str, &DecisionRecord) -> bool,
) -> crate::store::Result<(i64, String)> {
    let (mut n, mut h) = from;
    let mut after: Option<(String, String)> = None;
    loop {
        let page = store.legacy_page(after.as_ref(), PAGE).await?;
        for r in &page {
            n += 1;
            h = hash(&h, LEGACY, n, r);
            if !each(n, &h, r) {
                return Ok((n, h));
            }
        }
        match page.last() {
            Some(last) if page.len() == PAGE as usize => after = Some((last.at.clone(), last.id.clone())),
            _ => return Ok((n, h)),
        }
    }
}

/// The seal over the records from before the chains: the one in the store, or, at the first
/// start of a version that anchors marks, a new one to store with the start mark. Sealing
/// happens once: a start mark with a detail means a process of this version already looked, and
/// a record in no chain found later is not sealed but named by [`verify`]. Only records older
/// than the first chain's start are sealed (a database the previous version chained may hold
/// records inserted since, which that version called inserted, too).
async fn legacy_seal(
    store: &dyn Store,
    signer: &Signer,
    verifier: &Verifier,
) -> crate::store::Result<(Option<ChainMark>, Option<Ref>)> {
    if let Some(s) = latest(store, verifier, LEGACY, "seal").await? {
        return Ok((None, Some(Ref::of(&s))));
    }
    let starts = signed(
        store,
        verifier,
        MarkFilter {
            kind: Some("start"),
            ..MarkFilter::default()
        },
    )
    .await?;
    if starts.iter().any(|(_, d)| d.is_some()) {
        return Ok((None, None));
    }
    let first_start = starts.into_iter().map(|(m, _)| m.at).min();
    let started = Instant::now();
    let mut sealed = (0, ZERO.to_string());
    hash_legacy(store, (0, ZERO.into()), |n, h, r| {
        let before_chains = first_start.as_ref().is_none_or(|s| r.at < *s);
        if before_chains {
            sealed = (n, h.to_string());
        }
        before_chains
    })
    .await?;
    if sealed.0 == 0 {
        return Ok((None, None));
    }
    tracing::info!(
        records = sealed.0,
        seconds = started.elapsed().as_secs_f64(),
        "decision records from before the chains hashed for their seal (once, at the first start of this version)"
    );
    let m = mark(signer, LEGACY, sealed.0, "seal", &sealed.1, &MarkDetail::default());
    let r = Ref::of(&m);
    Ok((Some(m), Some(r)))
}

/// This process's chain, as the recorder extends it.
pub struct Chain {
    signer: Arc<Signer>,
    verifier: Verifier,
    replica: String,
    seq: i64,
    last_hash: String,
    unsigned: usize,
    last_checkpoint: Instant,
    /// The seq of every other replica's checkpoint this chain's marks referenced last: a
    /// checkpoint references only those that moved since.
    seen: HashMap<String, i64>,
}

impl Chain {
    /// A new chain for this process, and the marks to store with its first batch: its signed
    /// start (referencing the seal and every other replica's latest checkpoint) and, at the
    /// first start of this version, the legacy seal.
    pub async fn start(
        signer: Arc<Signer>,
        verifier: Verifier,
        store: &dyn Store,
    ) -> crate::store::Result<(Chain, Vec<ChainMark>)> {
        let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "scimgate".into());
        let replica = format!("{host}-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
        let (new_seal, seal) = legacy_seal(store, &signer, &verifier).await?;
        let mut chain = Chain {
            signer,
            verifier,
            replica,
            seq: 0,
            last_hash: ZERO.into(),
            unsigned: 0,
            last_checkpoint: Instant::now(),
            seen: HashMap::new(),
        };
        let refs = chain.moved(store).await?;
        let start = mark(
            &chain.signer,
            &chain.replica,
            0,
            "start",
            ZERO,
            &MarkDetail {
                refs,
                seal,
                against: None,
            },
        );
        Ok((chain, new_seal.into_iter().chain([start]).collect()))
    }

    pub fn replica(&self) -> &str {
        &self.replica
    }

    /// Other replicas' latest checkpoints that moved since this chain last referenced them,
    /// only those whose signatures hold.
    async fn moved(&mut self, store: &dyn Store) -> crate::store::Result<Vec<Ref>> {
        let mut refs = Vec::new();
        for m in store.latest_checkpoints().await? {
            if m.replica == self.replica || self.seen.get(&m.replica).is_some_and(|s| *s >= m.seq) {
                continue;
            }
            if holds(&self.verifier, &m).is_none() {
                continue;
            }
            self.seen.insert(m.replica.clone(), m.seq);
            refs.push(Ref::of(&m));
        }
        Ok(refs)
    }

    /// Give `records` their places at the end of the chain.
    pub fn link(&mut self, records: &mut [DecisionRecord]) {
        for r in records {
            self.seq += 1;
            let h = hash(&self.last_hash, &self.replica, self.seq, r);
            r.link = Some(Link {
                replica: self.replica.clone(),
                seq: self.seq,
                prev_hash: std::mem::replace(&mut self.last_hash, h.clone()),
                hash: h,
            });
            self.unsigned += 1;
        }
    }

    /// A checkpoint is due: enough records, or records older than [`CHECKPOINT_EVERY`].
    pub fn due(&self) -> bool {
        self.unsigned >= CHECKPOINT_RECORDS || (self.unsigned > 0 && self.last_checkpoint.elapsed() >= CHECKPOINT_EVERY)
    }

    /// A signed checkpoint at the chain's end, if any record is not yet covered by one, with the
    /// other replicas' checkpoints that moved since. A store that cannot be read for them costs
    /// the references, never the checkpoint.
    pub async fn checkpoint(&mut self, store: &dyn Store) -> Option<ChainMark> {
        if self.unsigned == 0 {
            return None;
        }
        let refs = match self.moved(store).await {
            Ok(refs) => refs,
            Err(e) => {
                tracing::warn!(error = %e, "reading other replicas' checkpoints failed; this checkpoint references none");
                Vec::new()
            }
        };
        self.unsigned = 0;
        self.last_checkpoint = Instant::now();
        Some(mark(
            &self.signer,
            &self.replica,
            self.seq,
            "checkpoint",
            &self.last_hash,
            &MarkDetail {
                refs,
                ..MarkDetail::default()
            },
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A record as every version before agents wrote it: no `on_behalf_of`.
    fn old_shaped(prior: Option<&str>) -> DecisionRecord {
        DecisionRecord {
            id: "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b".into(),
            at: "2026-11-22T12:00:00.000Z".into(),
            request_uid: "uid-1".into(),
            hook: "validate".into(),
            kind: "Workflow".into(),
            namespace: "ml-team".into(),
            name: "train-".into(),
            action: "submit".into(),
            requester: "oidc:alice@example.com".into(),
            user_id: Some("u-alice".into()),
            groups: "ml-engineers".into(),
            rule: Some("ml-submit".into()),
            outcome: "allowed".into(),
            mode: "enforce".into(),
            reason: String::new(),
            latency_us: 123,
            policy: "abc".into(),
            run_as: "ml-runner".into(),
            templates: String::new(),
            submitter_id: None,
            stamp_id: Some("sid-1".into()),
            authenticated: true,
            prior_decision: prior.map(String::from),
            on_behalf_of: None,
            link: None,
        }
    }

    /// Computed by the version before `on_behalf_of` existed (commit b99958f): a record written
    /// then must verify now exactly as it did.
    const BEFORE_AGENTS: &str = "ba0c8b9c55277a8211d5b01eb18a13e829195c2a737e602a65d568762cf2cac7";
    const BEFORE_AGENTS_PRIOR: &str = "8cceac9d9e62a79ddd9808f8b34937f5968216c0937cf9f7617ffb3c3c91279c";

    #[test]
    fn records_from_before_agents_keep_their_hashes() {
        assert_eq!(hash(ZERO, "r-1", 1, &old_shaped(None)), BEFORE_AGENTS);
        assert_eq!(hash(ZERO, "r-1", 2, &old_shaped(Some("d-0"))), BEFORE_AGENTS_PRIOR);
    }

    #[test]
    fn on_behalf_of_is_covered_by_the_hash() {
        let with = |prior: Option<&str>, obo: Option<&str>| {
            let mut r = old_shaped(prior);
            r.on_behalf_of = obo.map(String::from);
            hash(ZERO, "r-1", 1, &r)
        };
        let hashes = [
            with(None, None),
            with(None, Some("u-alice")),
            with(None, Some("u-bob")),
            with(Some("u-alice"), None),
            with(Some("d-0"), Some("u-alice")),
            with(Some("u-alice"), Some("d-0")),
            // Empty is present, not absent.
            with(None, Some("")),
        ];
        let distinct: std::collections::HashSet<_> = hashes.iter().collect();
        assert_eq!(distinct.len(), hashes.len(), "{hashes:?}");
        assert_eq!(hashes[0], BEFORE_AGENTS);
    }
}
