//! `scimgate audit offboarding USER`: the sweep's decision records for one person, as a person
//! reads them and as JSON. Reads only the records it is handed (oldest first).

use crate::audit::DecisionRecord;
use serde_json::{json, Value};
use std::fmt::Write as _;

/// The option a record's rule names for runs left to finish.
const LEFT_RUNNING: &str = "offboarding.runningRuns: keep";

/// Why and when: the part of a record's reason before its first `;`.
fn departure(r: &DecisionRecord) -> &str {
    r.reason.split(';').next().unwrap_or_default()
}

fn object(r: &DecisionRecord) -> String {
    if r.namespace.is_empty() {
        r.name.clone()
    } else {
        format!("{}/{}", r.namespace, r.name)
    }
}

pub fn text(user: &str, records: &[DecisionRecord]) -> String {
    let Some(first) = records.first() else {
        return format!("no offboarding records for {user}: not departed, not swept yet, or offboarding.mode is off\n");
    };
    let mut out = format!(
        "{}\nswept {} (offboarding.mode {}), {} object(s):\n",
        departure(first),
        first.at,
        first.mode,
        records.len()
    );
    let _ = writeln!(
        out,
        "  {:<24} {:<23} {:<40} {:<14} RULE",
        "WHEN", "KIND", "OBJECT", "OUTCOME"
    );
    for r in records {
        let _ = writeln!(
            out,
            "  {:<24} {:<23} {:<40} {:<14} {}",
            r.at,
            r.kind,
            object(r),
            r.outcome,
            r.rule.as_deref().unwrap_or("-")
        );
    }
    let running: Vec<String> = records
        .iter()
        .filter(|r| r.rule.as_deref() == Some(LEFT_RUNNING))
        .map(|r| format!("{} {}", r.kind, object(r)))
        .collect();
    if !running.is_empty() {
        let _ = writeln!(out, "running when swept, left to finish: {}", running.join(", "));
    }
    out
}

pub fn json(records: &[DecisionRecord]) -> Value {
    let objects: Vec<Value> = records
        .iter()
        .map(|r| {
            json!({"at": r.at, "kind": r.kind, "namespace": r.namespace, "name": r.name, "uid": r.request_uid,
                "outcome": r.outcome, "rule": r.rule, "mode": r.mode, "stampId": r.stamp_id, "reason": r.reason})
        })
        .collect();
    json!({
        "departure": records.first().map(departure),
        "objects": objects,
        "leftRunning": records.iter().filter(|r| r.rule.as_deref() == Some(LEFT_RUNNING))
            .map(|r| json!({"kind": r.kind, "namespace": r.namespace, "name": r.name})).collect::<Vec<_>>(),
    })
}
