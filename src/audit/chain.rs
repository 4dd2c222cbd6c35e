//! The decision log's tamper evidence. Every process that records decisions is a *replica* with
//! its own hash chain: each record carries the SHA-256 of the previous record it wrote, and the
//! replica signs (with the stamp key) a start mark, a checkpoint every [`CHECKPOINT_RECORDS`]
//! records or [`CHECKPOINT_EVERY`], and a prune marker when retention deletes the chain's oldest
//! records. [`verify`] recomputes all of it and names the records that were edited, inserted or
//! removed.
//!
//! What it cannot see, by construction: records written after a replica's last checkpoint can be
//! removed (or appended to) without a trace until the next checkpoint — at most
//! [`CHECKPOINT_EVERY`] of them on a running replica; and someone holding the stamp key can
//! rewrite everything. Owns the chain format; must not decide anything about admission.

use crate::model::{ChainMark, DecisionRecord, Link};
use crate::stamp::{Signer, Verifier};
use crate::store::Store;
use serde_json::json;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
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
    hex(&h.finalize())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A mark signed with the stamp key.
pub fn mark(signer: &Signer, replica: &str, seq: i64, kind: &str, hash: &str) -> ChainMark {
    let at = crate::model::clock::now();
    let signature = signer.sign(&json!({
        "log": LOG,
        "replica": replica,
        "seq": seq,
        "kind": kind,
        "hash": hash,
        "at": at,
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

/// Whether `m`'s signature verifies and says what its fields say.
fn mark_holds(verifier: &Verifier, m: &ChainMark) -> bool {
    verifier.verify(&m.signature).is_ok_and(|c| {
        c["log"] == LOG
            && c["replica"] == m.replica.as_str()
            && c["seq"] == m.seq
            && c["kind"] == m.kind.as_str()
            && c["hash"] == m.hash.as_str()
            && c["at"] == m.at.as_str()
    })
}

/// This process's chain, as the recorder extends it.
pub struct Chain {
    signer: Arc<Signer>,
    replica: String,
    seq: i64,
    last_hash: String,
    unsigned: usize,
    last_checkpoint: Instant,
}

impl Chain {
    /// A new chain for this process, and its signed start mark (store it with the first batch).
    pub fn start(signer: Arc<Signer>) -> (Chain, ChainMark) {
        let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "scimgate".into());
        let replica = format!("{host}-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
        let start = mark(&signer, &replica, 0, "start", ZERO);
        let chain = Chain {
            signer,
            replica,
            seq: 0,
            last_hash: ZERO.into(),
            unsigned: 0,
            last_checkpoint: Instant::now(),
        };
        (chain, start)
    }

    pub fn replica(&self) -> &str {
        &self.replica
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

    /// A signed checkpoint at the chain's end, if any record is not yet covered by one.
    pub fn checkpoint(&mut self) -> Option<ChainMark> {
        if self.unsigned == 0 {
            return None;
        }
        self.unsigned = 0;
        self.last_checkpoint = Instant::now();
        Some(mark(
            &self.signer,
            &self.replica,
            self.seq,
            "checkpoint",
            &self.last_hash,
        ))
    }
}

/// Retention: delete records older than `before`, each chain's as a prefix, leaving a signed
/// prune marker where each chain now starts.
pub async fn prune(store: &dyn Store, signer: &Signer, before: &str) -> crate::store::Result<u64> {
    let marks: Vec<ChainMark> = store
        .prune_plan(before)
        .await?
        .into_iter()
        .map(|(replica, seq, hash)| mark(signer, &replica, seq, "prune", &hash))
        .collect();
    store.prune_decisions(before, &marks).await
}

/// What [`verify`] found wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// The record's content no longer hashes to what was chained and signed.
    Edited { id: String, why: String },
    /// A record no replica wrote into its chain.
    Inserted { id: String, why: String },
    /// Records missing from a chain.
    Removed {
        replica: String,
        from: i64,
        to: i64,
        why: String,
    },
    /// A start, checkpoint or prune mark whose signature does not hold.
    BadMark { replica: String, kind: String, seq: i64 },
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Problem::Edited { id, why } => write!(f, "EDITED    {id}: {why}"),
            Problem::Inserted { id, why } => write!(f, "INSERTED  {id}: {why}"),
            Problem::Removed { replica, from, to, why } if from == to => {
                write!(f, "REMOVED   record {from} of replica {replica}: {why}")
            }
            Problem::Removed { replica, from, to, why } => {
                write!(f, "REMOVED   records {from}–{to} of replica {replica}: {why}")
            }
            Problem::BadMark { replica, kind, seq } => {
                write!(
                    f,
                    "FORGED    {kind} mark {seq} of replica {replica}: its signature does not verify"
                )
            }
        }
    }
}

/// The result of checking the whole log.
#[derive(Debug, Default)]
pub struct Report {
    pub chains: usize,
    pub records: u64,
    pub checkpoints: usize,
    /// Records in no chain that are older than every chain (written before this version).
    pub legacy: usize,
    /// Per replica, records after its last checkpoint (a running replica's newest, or the last
    /// seconds before a crash): chained, but not yet signed.
    pub unsigned_tail: BTreeMap<String, i64>,
    pub problems: Vec<Problem>,
}

impl Report {
    pub fn holds(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Marks of one replica, split by kind (only those whose signature holds).
#[derive(Default)]
struct Marks {
    start: Option<ChainMark>,
    prune: Option<ChainMark>,
    checkpoints: BTreeMap<i64, ChainMark>,
}

/// Where the walk through one chain stands.
struct Walk {
    replica: String,
    expected: i64,
    last_hash: String,
    last_id: Option<String>,
    marks: Marks,
}

/// Records per page when reading the chains.
const PAGE: u32 = 10_000;

/// Recompute every chain, mark and checkpoint in `store`.
pub async fn verify(store: &dyn Store, verifier: &Verifier) -> crate::store::Result<Report> {
    let mut report = Report::default();
    let mut marks: BTreeMap<String, Marks> = BTreeMap::new();
    for m in store.chain_marks().await? {
        if !mark_holds(verifier, &m) {
            report.problems.push(Problem::BadMark {
                replica: m.replica.clone(),
                kind: m.kind.clone(),
                seq: m.seq,
            });
            continue;
        }
        let e = marks.entry(m.replica.clone()).or_default();
        match m.kind.as_str() {
            "start" => e.start = Some(m),
            "prune" if e.prune.as_ref().is_none_or(|p| p.seq < m.seq) => e.prune = Some(m),
            "checkpoint" => {
                report.checkpoints += 1;
                e.checkpoints.insert(m.seq, m);
            }
            _ => {}
        }
    }
    let first_start = marks
        .values()
        .filter_map(|m| m.start.as_ref().map(|s| s.at.clone()))
        .min();

    let mut walk: Option<Walk> = None;
    let mut after: Option<(String, i64)> = None;
    loop {
        let page = store.chain_page(after.as_ref(), PAGE).await?;
        let Some(last) = page.last() else { break };
        after = last.link.as_ref().map(|l| (l.replica.clone(), l.seq));
        for r in &page {
            let Some(l) = &r.link else { continue };
            report.records += 1;
            if walk.as_ref().is_none_or(|w| w.replica != l.replica) {
                if let Some(w) = walk.take() {
                    finish(w, &mut report);
                }
                walk = Some(begin(
                    &l.replica,
                    marks.remove(&l.replica).unwrap_or_default(),
                    &mut report,
                ));
            }
            if let Some(w) = walk.as_mut() {
                step(w, r, l, &mut report);
            }
        }
        if page.len() < PAGE as usize {
            break;
        }
    }
    if let Some(w) = walk.take() {
        finish(w, &mut report);
    }
    // Chains whose every record is gone.
    for (replica, m) in marks {
        finish(begin(&replica, m, &mut report), &mut report);
    }
    for (id, at) in store.unchained_decisions().await? {
        match &first_start {
            Some(start) if at >= *start => report.problems.push(Problem::Inserted {
                id,
                why: "in no replica's chain, and dated after the chains began".into(),
            }),
            _ => report.legacy += 1,
        }
    }
    Ok(report)
}

fn begin(replica: &str, marks: Marks, report: &mut Report) -> Walk {
    report.chains += 1;
    let (expected, last_hash) = match &marks.prune {
        Some(p) => (p.seq + 1, p.hash.clone()),
        None => (1, ZERO.to_string()),
    };
    Walk {
        replica: replica.into(),
        expected,
        last_hash,
        last_id: None,
        marks,
    }
}

fn step(w: &mut Walk, r: &DecisionRecord, l: &Link, report: &mut Report) {
    if w.marks.start.is_none() {
        report.problems.push(Problem::Inserted {
            id: r.id.clone(),
            why: format!(
                "replica {} has no signed start: no scimgate process wrote this chain",
                l.replica
            ),
        });
        return;
    }
    if l.seq < w.expected {
        report.problems.push(Problem::Inserted {
            id: r.id.clone(),
            why: format!("seq {} lies before where the chain of {} starts", l.seq, l.replica),
        });
        return;
    }
    if l.seq > w.expected {
        report.problems.push(Problem::Removed {
            replica: w.replica.clone(),
            from: w.expected,
            to: l.seq - 1,
            why: format!(
                "missing between {} and {}",
                w.last_id.as_deref().unwrap_or("the chain's start"),
                r.id
            ),
        });
    } else if l.prev_hash != w.last_hash {
        report.problems.push(match &w.last_id {
            Some(prev) => Problem::Edited {
                id: prev.clone(),
                why: format!("its hash is not the one the next record, {}, chained to", r.id),
            },
            None => Problem::Edited {
                id: r.id.clone(),
                why: "the first record's link does not match where the chain starts".into(),
            },
        });
    }
    let recomputed = hash(&l.prev_hash, &l.replica, l.seq, r);
    if recomputed != l.hash {
        report.problems.push(Problem::Edited {
            id: r.id.clone(),
            why: "its content no longer matches its hash".into(),
        });
    } else if w.marks.checkpoints.get(&l.seq).is_some_and(|c| c.hash != l.hash) {
        report.problems.push(Problem::Edited {
            id: r.id.clone(),
            why: "its hash differs from the signed checkpoint at its place".into(),
        });
    }
    w.expected = l.seq + 1;
    w.last_hash = l.hash.clone();
    w.last_id = Some(r.id.clone());
}

fn finish(w: Walk, report: &mut Report) {
    let last_signed = w.marks.checkpoints.keys().next_back().copied().unwrap_or(0);
    if last_signed >= w.expected {
        report.problems.push(Problem::Removed {
            replica: w.replica.clone(),
            from: w.expected,
            to: last_signed,
            why: format!(
                "a signed checkpoint covers up to {last_signed}, the chain ends after {}",
                w.last_id.as_deref().unwrap_or("nothing")
            ),
        });
    }
    let tail = w.expected - 1 - last_signed.max(w.marks.prune.as_ref().map_or(0, |p| p.seq));
    if tail > 0 && w.marks.start.is_some() {
        report.unsigned_tail.insert(w.replica, tail);
    }
}
