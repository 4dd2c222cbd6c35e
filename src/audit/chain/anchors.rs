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
    let f = if v["replica"].is_string() { &v } else { &v["fields"] };
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
    let (mut exported_replica, mut exported_hash) = (None, None);
    for pair in rest[..close].split(',') {
        let Some((k, v)) = pair.split_once('=') else { continue };
        // Replica names and hashes need no escapes: host names, dashes and hex digits.
        let v = v.trim().trim_matches('"').to_string();
        match k.trim() {
            "replica" => replica = Some(v),
            "hash" => hash = Some(v),
            // What Prometheus renames a label to when a target label of that name exists.
            "exported_replica" => exported_replica = Some(v),
            "exported_hash" => exported_hash = Some(v),
            _ => {}
        }
    }
    let (replica, hash) = (exported_replica.or(replica), exported_hash.or(hash));
    let seq = rest[close + 1..]
        .split_whitespace()
        .next()
        .and_then(|v| v.parse::<f64>().ok())
        .filter(|v| v.fract() == 0.0 && *v >= 1.0 && *v < 2f64.powi(53))
        .map(|v| v as i64);
    Some((replica?, seq?, hash?, "checkpoint".into()))
}

#[cfg(test)]
mod tests {
    use super::super::{mark, MarkDetail};
    use super::*;
    use crate::stamp::Signer;

    /// A checkpoint's log line as `--log-format json` prints it (fields at the top level).
    fn json_line(m: &crate::model::ChainMark) -> String {
        serde_json::json!({
            "timestamp": "2026-12-03T10:00:00.000000Z", "level": "INFO", "message": "decision log checkpoint",
            "replica": m.replica, "seq": m.seq, "kind": m.kind, "hash": m.hash, "at": m.at,
            "signature": m.signature, "target": "scimgate::audit::recorder",
        })
        .to_string()
    }

    /// Checkpoint 1500 of replica host-0a1b2c3d, signed by `signer`.
    fn checkpoint(signer: &Signer) -> crate::model::ChainMark {
        mark(
            signer,
            "host-0a1b2c3d",
            1500,
            "checkpoint",
            "ab12",
            &MarkDetail::default(),
        )
    }

    #[test]
    fn log_lines_and_metric_samples_are_anchors_and_nothing_else_is() {
        let (signer, _) = Signer::generate().unwrap();
        let verifier = Verifier::from_signer(&signer);
        let cp = checkpoint(&signer);
        let start = mark(
            &signer,
            "host-0a1b2c3d",
            0,
            "start",
            super::super::ZERO,
            &MarkDetail::default(),
        );
        let mut nested: Value = serde_json::from_str(&json_line(&start)).unwrap();
        nested["fields"] = nested.clone();
        nested["replica"] = Value::Null;
        let text = [
            "# HELP scimgate_decision_log_checkpoint …".to_string(),
            json_line(&cp),
            format!("2026-12-03T10:00:00.1Z stderr F {}", json_line(&cp)),
            format!("{nested}"),
            r#"{"message":"scimgate serving","scim_addr":"0.0.0.0:9443"}"#.into(),
            r#"scimgate_decisions_total{outcome="recorded"} 5"#.into(),
            r#"scimgate_decision_log_checkpoint{replica="host-9f8e7d6c",hash="cd34"} 2000"#.into(),
            r#"scimgate_decision_log_checkpoint{replica="host-9f8e7d6c",hash="ef56"} 3000 1733220000000"#.into(),
            r#"scimgate_decision_log_checkpoint{exported_replica="host-1a2b3c4d",hash="0707",job="scimgate",replica="prom-0"} 42"#.into(),
            "plain text".into(),
        ]
        .join("\n");
        let (anchors, problems) = parse(&text, "a.log", &verifier);
        assert!(problems.is_empty(), "{problems:?}");
        let places: Vec<(&str, i64, &str, &str, &str)> = anchors
            .iter()
            .map(|a| {
                (
                    a.replica.as_str(),
                    a.seq,
                    a.hash.as_str(),
                    a.kind.as_str(),
                    a.source.as_str(),
                )
            })
            .collect();
        assert_eq!(
            places,
            vec![
                ("host-0a1b2c3d", 1500, "ab12", "checkpoint", "a.log:2"),
                ("host-0a1b2c3d", 0, super::super::ZERO, "start", "a.log:4"),
                ("host-9f8e7d6c", 2000, "cd34", "checkpoint", "a.log:7"),
                ("host-9f8e7d6c", 3000, "ef56", "checkpoint", "a.log:8"),
                ("host-1a2b3c4d", 42, "0707", "checkpoint", "a.log:9"),
            ],
            "one anchor a place, whatever prefix or nesting the pipeline added"
        );
    }

    #[test]
    fn a_log_line_whose_signature_does_not_hold_is_a_problem_not_an_anchor() {
        let (signer, _) = Signer::generate().unwrap();
        let (other, _) = Signer::generate().unwrap();
        let verifier = Verifier::from_signer(&signer);
        let cp = checkpoint(&signer);
        let moved = json_line(&cp).replace("\"seq\":1500", "\"seq\":2500");
        let foreign = json_line(&checkpoint(&other));
        let unsigned = json_line(&cp)
            .replace(&cp.signature, "")
            .replace(",\"signature\":\"\"", "");
        let text = [moved, foreign, unsigned].join("\n");
        let (anchors, problems) = parse(&text, "a.log", &verifier);
        assert!(anchors.is_empty(), "{anchors:?}");
        let sources: Vec<String> = problems
            .iter()
            .map(|p| match p {
                Problem::BadAnchor { source, .. } => source.clone(),
                other => format!("{other}"),
            })
            .collect();
        assert_eq!(sources, vec!["a.log:1", "a.log:2", "a.log:3"], "{problems:?}");
    }
}
