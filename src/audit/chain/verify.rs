//! `audit verify --log`: recompute every chain, check every signed mark, and check every place
//! something signed says it saw — other replicas' cross-references, start marks' seal, anchors
//! collected outside the database — against what the log holds now.

use super::{hash, hash_legacy, holds, Anchor, Ref, CHECKPOINT_RECORDS, LEGACY, PAGE, ZERO};
use crate::model::{ChainMark, DecisionRecord, Link};
use crate::stamp::Verifier;
use crate::store::{MarkFilter, Store};
use std::collections::BTreeMap;

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
    /// A start, checkpoint, prune or seal mark whose signature does not hold.
    BadMark { replica: String, kind: String, seq: i64 },
    /// A place that something signed saw — another replica's mark, a start mark's seal, an
    /// anchor — and that the log no longer holds (`seq` 0: the chain's start).
    Unseen {
        replica: String,
        seq: i64,
        by: String,
        why: String,
    },
    /// More records after a chain's last signed mark than a replica ever leaves unsigned: the
    /// checkpoints over them were removed.
    Unsigned { replica: String, records: i64 },
    /// The records from before the chains no longer match their seal.
    Seal { why: String },
    /// An anchor whose signature does not hold.
    BadAnchor { source: String, why: String },
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
            Problem::Unseen { replica, seq, by, why } if replica == LEGACY => {
                write!(
                    f,
                    "MISSING   place {seq} of the sealed records from before the chains, which {by} saw: {why}"
                )
            }
            Problem::Unseen {
                replica,
                seq: 0,
                by,
                why,
            } => {
                write!(f, "MISSING   the start of replica {replica}, which {by} saw: {why}")
            }
            Problem::Unseen { replica, seq, by, why } => {
                write!(f, "MISSING   record {seq} of replica {replica}, which {by} saw: {why}")
            }
            Problem::Unsigned { replica, records } => write!(
                f,
                "UNSIGNED  replica {replica}: its last {records} records are under no signed checkpoint, more than \
                 the {CHECKPOINT_RECORDS} a replica ever leaves: checkpoints were removed"
            ),
            Problem::Seal { why } => write!(f, "SEAL      {why}"),
            Problem::BadAnchor { source, why } => write!(f, "ANCHOR    {source}: {why}"),
        }
    }
}

/// The result of checking the whole log.
#[derive(Debug, Default)]
pub struct Report {
    pub chains: usize,
    pub records: u64,
    pub checkpoints: usize,
    /// Records from before the chains, still under a seal that holds.
    pub legacy: usize,
    /// Anchors checked.
    pub anchors: usize,
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

impl Marks {
    /// Some scimgate process signed something about this chain.
    fn signed(&self) -> bool {
        self.start.is_some() || self.prune.is_some() || !self.checkpoints.is_empty()
    }
}

/// A place someone saw: the hash there, and who.
struct Sight {
    hash: String,
    by: String,
}

/// Per replica, per seq: who saw what there.
type Sights = BTreeMap<String, BTreeMap<i64, Vec<Sight>>>;

fn saw(sights: &mut Sights, r: &Ref, by: String) {
    sights
        .entry(r.replica.clone())
        .or_default()
        .entry(r.seq)
        .or_default()
        .push(Sight {
            hash: r.hash.clone(),
            by,
        });
}

/// Where the walk through one chain stands.
struct Walk {
    replica: String,
    expected: i64,
    last_hash: String,
    last_id: Option<String>,
    marks: Marks,
    sights: BTreeMap<i64, Vec<Sight>>,
}

/// Recompute every chain, mark and checkpoint in `store`, check every place a signed mark or an
/// anchor saw, and the records from before the chains against their seal.
pub async fn verify(store: &dyn Store, verifier: &Verifier, anchors: &[Anchor]) -> crate::store::Result<Report> {
    let mut report = Report::default();
    let mut marks: BTreeMap<String, Marks> = BTreeMap::new();
    let mut legacy = Marks::default();
    let mut seals: Vec<ChainMark> = Vec::new();
    let mut sights = Sights::new();
    for m in store.chain_marks(&MarkFilter::default()).await? {
        let Some(signed) = holds(verifier, &m) else {
            report.problems.push(Problem::BadMark {
                replica: m.replica.clone(),
                kind: m.kind.clone(),
                seq: m.seq,
            });
            continue;
        };
        let detail = signed.detail.unwrap_or_default();
        let by = || match m.kind.as_str() {
            "start" => format!("the start of replica {}", m.replica),
            kind => format!("{kind} {} of replica {}", m.seq, m.replica),
        };
        // What it saw: other replicas' checkpoints, the seal, and for a prune mark the mark it
        // was recomputed up to.
        for r in detail.refs.iter().chain(&detail.seal).chain(&detail.against) {
            saw(&mut sights, r, by());
        }
        let e = if m.replica == LEGACY {
            &mut legacy
        } else {
            marks.entry(m.replica.clone()).or_default()
        };
        match m.kind.as_str() {
            "start" => e.start = Some(m),
            "prune" if e.prune.as_ref().is_none_or(|p| p.seq < m.seq) => e.prune = Some(m),
            "checkpoint" => {
                report.checkpoints += 1;
                e.checkpoints.insert(m.seq, m);
            }
            "seal" if m.replica == LEGACY => seals.push(m),
            _ => {}
        }
    }
    for a in anchors {
        report.anchors += 1;
        let r = Ref {
            replica: a.replica.clone(),
            seq: a.seq,
            hash: a.hash.clone(),
        };
        saw(&mut sights, &r, format!("the {} anchor at {}", a.kind, a.source));
    }

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
                walk = Some(begin(&l.replica, &mut marks, &mut sights, &mut report));
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
    // Chains whose every record is gone, and replicas only others saw.
    let rest: Vec<String> = marks
        .keys()
        .chain(sights.keys())
        .filter(|r| *r != LEGACY)
        .cloned()
        .collect();
    for replica in rest {
        if marks.contains_key(&replica) || sights.contains_key(&replica) {
            let w = begin(&replica, &mut marks, &mut sights, &mut report);
            finish(w, &mut report);
        }
    }
    verify_legacy(
        store,
        legacy,
        &seals,
        sights.remove(LEGACY).unwrap_or_default(),
        &mut report,
    )
    .await?;
    Ok(report)
}

fn begin(replica: &str, marks: &mut BTreeMap<String, Marks>, sights: &mut Sights, report: &mut Report) -> Walk {
    let marks = marks.remove(replica).unwrap_or_default();
    if marks.signed() {
        report.chains += 1;
    }
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
        // Places in the sealed records are checked against them, never against records that
        // merely claim the seal's name.
        sights: if replica == LEGACY {
            BTreeMap::new()
        } else {
            sights.remove(replica).unwrap_or_default()
        },
    }
}

fn step(w: &mut Walk, r: &DecisionRecord, l: &Link, report: &mut Report) {
    if !w.marks.signed() {
        report.problems.push(Problem::Inserted {
            id: r.id.clone(),
            why: format!(
                "replica {} has no signed mark: its marks were removed, or no scimgate process wrote it",
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
    for s in w.sights.remove(&l.seq).into_iter().flatten() {
        if s.hash != l.hash {
            report.problems.push(Problem::Unseen {
                replica: w.replica.clone(),
                seq: l.seq,
                by: s.by,
                why: format!(
                    "the record there ({}) has another hash now: the chain was rewritten",
                    r.id
                ),
            });
        }
    }
    w.expected = l.seq + 1;
    w.last_hash = l.hash.clone();
    w.last_id = Some(r.id.clone());
}

fn finish(w: Walk, report: &mut Report) {
    let end = w.expected - 1;
    let last_signed = w.marks.checkpoints.keys().next_back().copied().unwrap_or(0);
    if last_signed > end {
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
    if w.marks.start.is_none() && w.marks.signed() {
        report.problems.push(Problem::Unseen {
            replica: w.replica.clone(),
            seq: 0,
            by: "its own checkpoints and prune marks".into(),
            why: "its signed start mark is gone".into(),
        });
    }
    // What others saw past the end (in a gap, it is named as removed already).
    let pruned = w.marks.prune.as_ref();
    let mut beyond: Option<(i64, Sight)> = None;
    for (seq, seen) in w.sights {
        for s in seen {
            if seq == 0 {
                if w.marks.start.is_none() && !w.marks.signed() {
                    report.problems.push(Problem::Unseen {
                        replica: w.replica.clone(),
                        seq,
                        by: s.by,
                        why: "no record or mark of the replica is left".into(),
                    });
                }
            } else if pruned.is_some_and(|p| seq == p.seq && s.hash != p.hash) {
                report.problems.push(Problem::Unseen {
                    replica: w.replica.clone(),
                    seq,
                    by: s.by,
                    why: "the prune mark there vouches for another hash".into(),
                });
            } else if seq > end && beyond.as_ref().is_none_or(|(b, _)| seq > *b) {
                beyond = Some((seq, s));
            }
        }
    }
    if let Some((seq, s)) = beyond {
        let why = if end == 0 && !w.marks.signed() {
            "no record or mark of the replica is left: it was removed".to_string()
        } else {
            format!("the chain ends at {end}: the records after it were removed")
        };
        report.problems.push(Problem::Unseen {
            replica: w.replica.clone(),
            seq,
            by: s.by,
            why,
        });
    }
    let tail = end - last_signed.max(pruned.map_or(0, |p| p.seq));
    if tail > CHECKPOINT_RECORDS as i64 {
        report.problems.push(Problem::Unsigned {
            replica: w.replica,
            records: tail,
        });
    } else if tail > 0 && w.marks.signed() {
        report.unsigned_tail.insert(w.replica, tail);
    }
}

/// The records in no chain: those under the seal must hash to it (from the last legacy prune
/// mark on), and any other is named.
async fn verify_legacy(
    store: &dyn Store,
    marks: Marks,
    seals: &[ChainMark],
    sights: BTreeMap<i64, Vec<Sight>>,
    report: &mut Report,
) -> crate::store::Result<()> {
    // Several seals only if processes of this version raced at the first start over different
    // records (an older version still writing): the largest covers the most.
    let seal = seals.iter().max_by_key(|m| m.seq);
    let from = marks
        .prune
        .as_ref()
        .map_or_else(|| (0, ZERO.to_string()), |p| (p.seq, p.hash.clone()));
    let pruned = from.0;
    let mut sealed_left = 0;
    let mut broken = false;
    let mut outside: Vec<String> = Vec::new();
    // A seal that is there satisfies whoever saw it (whether the records still hash to it is
    // checked below, once); other places are checked as the walk reaches them.
    let mut sights = sights;
    for (seq, seen) in sights.iter_mut() {
        seen.retain(|s| !seals.iter().any(|m| m.seq == *seq && m.hash == s.hash));
    }
    let mut contradicted: Vec<(i64, Sight)> = Vec::new();
    let (n, _) = hash_legacy(store, from, |n, h, r| {
        // A legacy prune mark's anchor names a place in the sealed records.
        for s in sights.remove(&n).into_iter().flatten() {
            if s.hash != h {
                contradicted.push((n, s));
            }
        }
        match seal {
            Some(s) if n < s.seq => sealed_left += 1,
            Some(s) if n == s.seq => {
                sealed_left += 1;
                broken = h != s.hash;
            }
            _ => outside.push(r.id.clone()),
        }
        true
    })
    .await?;
    // What the walk did not reach: a seal, or a place pruned past.
    let prune = marks.prune.as_ref();
    for (seq, seen) in sights {
        for s in seen {
            let pruned = prune.is_some_and(|p| seq < p.seq || (seq == p.seq && s.hash == p.hash));
            if !pruned {
                contradicted.push((seq, s));
            }
        }
    }
    for (seq, s) in contradicted {
        report.problems.push(Problem::Unseen {
            replica: LEGACY.into(),
            seq,
            by: s.by,
            why: "no such seal or place under it is in the log".into(),
        });
    }
    let Some(seal) = seal else {
        for id in outside {
            report.problems.push(Problem::Inserted {
                id,
                why: "in no chain, and no seal covers records from before the chains (a server of this version \
                      seals them once, at its first start)"
                    .into(),
            });
        }
        return Ok(());
    };
    let what = format!(
        "the seal of {} over {} records from before the chains{}",
        seal.at,
        seal.seq,
        if pruned > 0 {
            format!(" ({pruned} of them pruned since)")
        } else {
            String::new()
        }
    );
    if n.min(seal.seq) < seal.seq {
        report.problems.push(Problem::Seal {
            why: format!("{what}: only {sealed_left} are left; records under it were removed"),
        });
    } else if broken {
        // Which record changed cannot be told from one digest; the records after the seal's
        // count are then no more suspect than the others, so none is named.
        report.problems.push(Problem::Seal {
            why: format!("{what} does not hold: a record under it was edited, removed or inserted"),
        });
    } else {
        report.legacy = sealed_left;
        for id in outside {
            report.problems.push(Problem::Inserted {
                id,
                why: format!("in no chain, and not under {what}"),
            });
        }
    }
    Ok(())
}
