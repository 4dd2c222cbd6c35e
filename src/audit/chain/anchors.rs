//! Anchors: places in the chains published outside the database as they were signed — the
//! structured log line every mark is published with ([`super::publish`]) and the metric of each
//! replica's last checkpoint — read back from whatever collected them, for `audit verify --log
//! --anchors FILE` to check the database against.
//!
//! The file may mix both, and anything else: a line is an anchor when it holds a JSON object
//! with the log line's fields (after any prefix a log pipeline adds, such as a timestamp and
//! stream name), or when it is a Prometheus text-exposition sample of the checkpoint metric.
//! Every other line is skipped. A log line carries the mark's signature, which must verify and
//! agree; a metric sample carries none, so a forged one can only make the check fail, never
//! pass.

use super::{Problem, LOG};
use crate::stamp::Verifier;
use serde_json::Value;
use std::collections::BTreeSet;

/// The metric of a replica's last checkpoint: `{replica, hash}` labels, the seq as its value.
pub const METRIC: &str = "scimgate_decision_log_checkpoint";

/// One place in a chain seen outside the database.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Anchor {
    pub replica: String,
    pub seq: i64,
    pub hash: String,
    /// `start`, `checkpoint`, `prune` or `seal`.
    pub kind: String,
    /// Where it was read (`FILE:LINE`).
    pub source: String,
}

/// The anchors in `text` (read from `name`), each place once, and the problems with lines that
/// claim to be anchors but whose signature does not hold.
pub fn parse(text: &str, name: &str, verifier: &Verifier) -> (Vec<Anchor>, Vec<Problem>) {
    let mut places = BTreeSet::new();
    let mut anchors = Vec::new();
    let mut problems = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let source = format!("{name}:{}", i + 1);
        let found = if line.trim_start().starts_with(METRIC) {
            metric_sample(line)
        } else if let Some(at) = line.find('{') {
            log_line(&line[at..], verifier).unwrap_or_else(|why| {
                problems.push(Problem::BadAnchor {
                    source: source.clone(),
                    why,
                });
                None
            })
        } else {
            None
        };
        if let Some((replica, seq, hash, kind)) = found {
            if places.insert((replica.clone(), seq, hash.clone())) {
                anchors.push(Anchor {
                    replica,
                    seq,
                    hash,
                    kind,
                    source,
                });
            }
        }
    }
    (anchors, problems)
}

type Place = (String, i64, String, String);

/// A JSON log line of a published mark; `Err` when its signature does not hold.
fn log_line(json: &str, verifier: &Verifier) -> Result<Option<Place>, String> {
    let Ok(v) = serde_json::from_str::<Value>(json) else {
        return Ok(None);
    };
    // tracing's JSON format puts fields at the top level with `flatten_event`, and under
    // `fields` without it.
    let f = if v.get("replica").is_some() { &v } else { &v["fields"] };
    let (Some(replica), Some(seq), Some(hash), Some(kind)) = (
        f["replica"].as_str(),
        f["seq"].as_i64(),
        f["hash"].as_str(),
        f["kind"].as_str(),
    ) else {
        return Ok(None);
    };
    if !matches!(kind, "start" | "checkpoint" | "prune" | "seal") {
        return Ok(None);
    }
    let Some(signature) = f["signature"].as_str() else {
        return Err("a published mark without its signature".into());
    };
    let claims = verifier
        .verify(signature)
        .map_err(|e| format!("its signature does not verify ({e})"))?;
    let agrees = claims["log"] == LOG
        && claims["replica"] == replica
        && claims["seq"] == seq
        && claims["kind"] == kind
        && claims["hash"] == hash;
    if !agrees {
        return Err("its fields are not what its signature says".into());
    }
    Ok(Some((replica.into(), seq, hash.into(), kind.into())))
}

/// `scimgate_decision_log_checkpoint{replica="…",hash="…"} SEQ [TIMESTAMP]`.
fn metric_sample(line: &str) -> Option<Place> {
    let rest = &line[line.find('{')? + 1..];
    let close = rest.find('}')?;
    let (mut replica, mut hash) = (None, None);
    for pair in rest[..close].split(',') {
        let Some((k, v)) = pair.split_once('=') else { continue };
        // Replica names and hashes need no escapes: host names, dashes and hex digits.
        let v = v.trim().trim_matches('"').to_string();
        match k.trim() {
            "replica" => replica = Some(v),
            "hash" => hash = Some(v),
            _ => {}
        }
    }
    let seq = rest[close + 1..]
        .split_whitespace()
        .next()
        .and_then(|v| v.parse::<f64>().ok())
        .filter(|v| v.fract() == 0.0 && *v >= 1.0 && *v < 2f64.powi(53))
        .map(|v| v as i64);
    Some((replica?, seq?, hash?, "checkpoint".into()))
}
