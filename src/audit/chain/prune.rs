//! Retention: delete each chain's records older than the cutoff, as a prefix, and sign a prune
//! mark where the chain now starts — only over a prefix recomputed here, up to a hash a signed
//! checkpoint (or the seal, for the records from before the chains) vouches for.
//!
//! Why both rules: a prune mark is signed, so whatever it vouches for, `verify` believes. Cutting
//! "every record older than the cutoff" let one edited `at` in the middle of a chain extend the
//! cut over the records before it, and the mark then vouched for a hash nobody had checked. Now
//! the cut stops at the first record that is not old (an old `at` after it extends nothing), and
//! a chain that does not recompute, or that no signed checkpoint vouches for, is left as it is,
//! for `audit verify --log` to name.

use super::{hash, hash_legacy, holds, latest, mark, MarkDetail, Ref, CHECKPOINT_RECORDS, LEGACY, PAGE, ZERO};
use crate::model::ChainMark;
use crate::stamp::{Signer, Verifier};
use crate::store::{MarkFilter, Store};
use std::collections::BTreeMap;

/// Why retention left (part of) a chain alone. A bounded set: it labels a metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The chain does not recompute: a record edited, removed or inserted.
    Broken,
    /// More records than a replica ever leaves unsigned, and no signed checkpoint after them.
    Unvouched,
}

impl Refusal {
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::Broken => "broken",
            Refusal::Unvouched => "unvouched",
        }
    }
}

/// A chain retention did not cut (or cut short), and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    pub replica: String,
    pub reason: Refusal,
    pub why: String,
}

/// What one prune did.
#[derive(Debug, Default)]
pub struct Pruned {
    /// Records deleted.
    pub deleted: u64,
    /// The prune marks stored (to [`super::publish`]).
    pub marks: Vec<ChainMark>,
    pub refused: Vec<Refused>,
}

/// Where a cut may end: the place, the signed mark it was recomputed up to, and for records in
/// no chain, the last record's `(at, id)`.
struct Cut {
    seq: i64,
    hash: String,
    against: Ref,
    last: Option<(String, String)>,
}

/// Delete what is older than `before` (RFC 3339): each chain's verified prefix, and the sealed
/// records from before the chains. Marks of other keys verify with `verifier`.
pub async fn prune(
    store: &dyn Store,
    signer: &Signer,
    verifier: &Verifier,
    before: &str,
) -> crate::store::Result<Pruned> {
    let mut out = Pruned::default();
    for replica in store.prune_candidates(before).await? {
        if replica != LEGACY {
            let plan = chain_cut(store, verifier, &replica, before).await?;
            cut(store, signer, &replica, plan, &mut out).await?;
        }
    }
    let plan = legacy_cut(store, verifier, before).await?;
    cut(store, signer, LEGACY, plan, &mut out).await?;
    Ok(out)
}

/// Carry out one chain's plan at once, so little happens between its check and its cut.
async fn cut(
    store: &dyn Store,
    signer: &Signer,
    replica: &str,
    plan: Plan,
    out: &mut Pruned,
) -> crate::store::Result<()> {
    let (cut, refused) = plan;
    out.refused.extend(refused.map(|(reason, why)| Refused {
        replica: replica.into(),
        reason,
        why,
    }));
    let Some(cut) = cut else { return Ok(()) };
    let m = mark(
        signer,
        replica,
        cut.seq,
        "prune",
        &cut.hash,
        &MarkDetail {
            against: Some(cut.against),
            ..MarkDetail::default()
        },
    );
    out.deleted += store.prune_decisions(&m, cut.last.as_ref()).await?;
    out.marks.push(m);
    Ok(())
}

type Plan = (Option<Cut>, Option<(Refusal, String)>);

/// How far `replica`'s chain may be cut: walk it from its prune mark (or its start), recomputing
/// every link, while records are older than `before`; then on to the first signed checkpoint,
/// which vouches for everything walked. Without one, back to the last checkpoint inside the
/// prefix.
async fn chain_cut(store: &dyn Store, verifier: &Verifier, replica: &str, before: &str) -> crate::store::Result<Plan> {
    let from = latest(store, verifier, replica, "prune").await?;
    let from_seq = from.as_ref().map_or(0, |p| p.seq);
    let mut expected = from_seq + 1;
    let mut last_hash = from.map_or_else(|| ZERO.to_string(), |p| p.hash);
    // The end of the old prefix; the last checkpoint within it; one past it.
    let mut prefix: Option<(i64, String)> = None;
    let mut inside: Option<Ref> = None;
    let mut past: Option<Ref> = None;
    let mut broken: Option<String> = None;
    let mut after = (replica.to_string(), from_seq);
    'walk: loop {
        let page: Vec<_> = store
            .chain_page(Some(&after), PAGE)
            .await?
            .into_iter()
            .filter(|r| r.link.as_ref().is_some_and(|l| l.replica == replica))
            .collect();
        let (Some(first), Some(last)) = (page.first(), page.last()) else {
            break;
        };
        let seqs = (
            first.link.as_ref().map_or(0, |l| l.seq),
            last.link.as_ref().map_or(0, |l| l.seq),
        );
        let checkpoints: BTreeMap<i64, ChainMark> = store
            .chain_marks(&MarkFilter {
                replica: Some(replica.into()),
                kind: Some("checkpoint"),
                seqs: Some(seqs),
            })
            .await?
            .into_iter()
            .filter(|m| holds(verifier, m).is_some())
            .map(|m| (m.seq, m))
            .collect();
        for r in &page {
            let Some(l) = &r.link else { continue };
            if l.seq != expected {
                broken = Some(format!("record {expected} is missing"));
            } else if l.prev_hash != last_hash {
                broken = Some(format!("record {} does not chain to the one before it", l.seq));
            } else if hash(&l.prev_hash, replica, l.seq, r) != l.hash {
                broken = Some(format!("record {} no longer matches its hash", l.seq));
            } else if checkpoints.get(&l.seq).is_some_and(|c| c.hash != l.hash) {
                broken = Some(format!("record {} differs from the signed checkpoint there", l.seq));
            }
            if broken.is_some() {
                break 'walk;
            }
            expected += 1;
            last_hash.clone_from(&l.hash);
            // Old, and right after the prefix so far: an old `at` past a newer record extends nothing.
            let old = r.at.as_str() < before && prefix.as_ref().is_none_or(|(s, _)| *s == l.seq - 1);
            if old {
                prefix = Some((l.seq, l.hash.clone()));
            } else if prefix.is_none() {
                // The chain's first record is not old: nothing to cut, whatever comes later.
                break 'walk;
            }
            if let Some(c) = checkpoints.get(&l.seq) {
                let c = Ref {
                    replica: replica.into(),
                    seq: c.seq,
                    hash: c.hash.clone(),
                };
                if old {
                    inside = Some(c);
                } else {
                    past = Some(c);
                    break 'walk;
                }
            }
        }
        if page.len() < PAGE as usize {
            break;
        }
        after = (replica.to_string(), seqs.1);
    }
    let cut = match (&prefix, past, inside) {
        (Some((seq, hash)), Some(against), _) => Some(Cut {
            seq: *seq,
            hash: hash.clone(),
            against,
            last: None,
        }),
        (Some(_), None, Some(against)) => Some(Cut {
            seq: against.seq,
            hash: against.hash.clone(),
            against,
            last: None,
        }),
        _ => None,
    };
    let refused = match broken {
        // Another replica pruned this chain meanwhile: its records went from under the walk.
        Some(_)
            if latest(store, verifier, replica, "prune")
                .await?
                .is_some_and(|p| p.seq > from_seq) =>
        {
            None
        }
        Some(why) => Some((Refusal::Broken, why)),
        None if cut.is_none() && prefix.is_some() && expected - 1 - from_seq > CHECKPOINT_RECORDS as i64 => Some((
            Refusal::Unvouched,
            format!(
                "records {}–{} are under no signed checkpoint",
                from_seq + 1,
                expected - 1
            ),
        )),
        // A crash's unsigned tail (at most CHECKPOINT_RECORDS): left as it is, vouched by nothing.
        None => None,
    };
    Ok((cut, refused))
}

/// How far the records from before the chains may be cut: every one still under the seal is
/// rehashed (the seal is over all of them) and the cut is the prefix older than `before`.
async fn legacy_cut(store: &dyn Store, verifier: &Verifier, before: &str) -> crate::store::Result<Plan> {
    let Some(seal) = latest(store, verifier, LEGACY, "seal").await? else {
        return Ok((None, None));
    };
    let oldest = store.legacy_page(None, 1).await?;
    if oldest.first().is_none_or(|r| r.at.as_str() >= before) {
        return Ok((None, None));
    }
    let from = latest(store, verifier, LEGACY, "prune").await?;
    let from = from.map_or_else(|| (0, ZERO.to_string()), |p| (p.seq, p.hash));
    if from.0 >= seal.seq {
        // Every sealed record is gone already; what is left in no chain is not under the seal.
        return Ok((None, None));
    }
    let mut prefix: Option<(i64, String, (String, String))> = None;
    let (n, h) = hash_legacy(store, from, |n, h, r| {
        if n <= seal.seq && r.at.as_str() < before && prefix.as_ref().is_none_or(|(s, _, _)| *s == n - 1) {
            prefix = Some((n, h.to_string(), (r.at.clone(), r.id.clone())));
        }
        n < seal.seq
    })
    .await?;
    if n != seal.seq || h != seal.hash {
        return Ok((
            None,
            Some((
                Refusal::Broken,
                "the records from before the chains no longer hash to their seal".into(),
            )),
        ));
    }
    Ok((
        prefix.map(|(seq, hash, last)| Cut {
            seq,
            hash,
            against: Ref {
                replica: LEGACY.into(),
                seq: seal.seq,
                hash: seal.hash.clone(),
            },
            last: Some(last),
        }),
        None,
    ))
}
