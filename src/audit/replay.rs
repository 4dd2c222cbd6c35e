//! `scimgate policy replay`: re-evaluate recorded decisions under another policy and report what
//! flips — newly denied, newly allowed — with counts by rule, namespace and group, and examples.
//! Uses what each record kept from decision time (groups, run-as, templates, submitter), so the
//! answer is about the policy change alone, not about later directory changes.

use super::DecisionRecord;
use crate::policy::{self, Action, Kind, Outcome, Policy, Requester, RunRequest};
use serde_json::{json, Value};
use std::collections::BTreeMap;

fn list(s: &str) -> Vec<String> {
    s.split(',').filter(|x| !x.is_empty()).map(String::from).collect()
}

/// The requester as recorded, or `None` when the original denial was about identity (unknown,
/// deactivated, deleted) — which no policy rule changes.
fn requester(r: &DecisionRecord, p: &Policy) -> Option<Requester> {
    if let Some(sa) = r.requester.strip_prefix("system:serviceaccount:") {
        if r.user_id.is_none() {
            let (ns, name) = sa.split_once(':')?;
            return Some(Requester::ServiceAccount {
                namespace: ns.into(),
                name: name.into(),
            });
        }
    }
    let id = r.user_id.clone()?;
    let name = match &p.identity.username_prefix {
        Some(prefix) => r.requester.strip_prefix(prefix.as_str()).unwrap_or(&r.requester),
        None => &r.requester,
    };
    Some(Requester::Person {
        id,
        user_name: name.to_string(),
        groups: list(&r.groups),
    })
}

#[derive(Debug, Default)]
pub struct Report {
    pub replayed: usize,
    pub skipped: usize,
    pub newly_denied: Vec<(DecisionRecord, String)>,
    pub newly_allowed: Vec<(DecisionRecord, String)>,
}

fn denied(outcome: &str) -> bool {
    outcome != "allowed"
}

pub fn replay(records: &[DecisionRecord], p: &Policy) -> Report {
    let mut report = Report::default();
    for r in records {
        let (Some(k), Some(a), Some(who)) = (
            r.kind.parse::<Kind>().ok(),
            r.action.parse::<Action>().ok(),
            requester(r, p),
        ) else {
            report.skipped += 1;
            continue;
        };
        let req = RunRequest {
            kind: k,
            namespace: r.namespace.clone(),
            action: a,
            run_as: list(&r.run_as),
            templates: list(&r.templates),
            submitter_id: r.submitter_id.clone(),
        };
        let d = policy::evaluate(p, &req, &who);
        report.replayed += 1;
        let now_denied = d.outcome != Outcome::Allowed;
        let why = if now_denied {
            d.reason.clone()
        } else {
            format!("allowed by rule {}", d.rule.clone().unwrap_or_default())
        };
        match (denied(&r.outcome), now_denied) {
            (false, true) => report.newly_denied.push((r.clone(), why)),
            (true, false) => report.newly_allowed.push((r.clone(), why)),
            _ => {}
        }
    }
    report
}

fn counts(flips: &[(DecisionRecord, String)]) -> Value {
    let mut by_rule: BTreeMap<String, usize> = BTreeMap::new();
    let mut by_ns: BTreeMap<String, usize> = BTreeMap::new();
    let mut by_group: BTreeMap<String, usize> = BTreeMap::new();
    for (r, _) in flips {
        *by_rule.entry(r.rule.clone().unwrap_or_else(|| "-".into())).or_default() += 1;
        *by_ns.entry(r.namespace.clone()).or_default() += 1;
        for g in list(&r.groups) {
            *by_group.entry(g).or_default() += 1;
        }
    }
    json!({"byRecordedRule": by_rule, "byNamespace": by_ns, "byGroup": by_group})
}

pub fn to_json(rep: &Report, examples: usize) -> Value {
    let ex = |flips: &[(DecisionRecord, String)]| -> Vec<Value> {
        flips
            .iter()
            .take(examples)
            .map(|(r, why)| {
                json!({"id": r.id, "at": r.at, "requester": r.requester, "action": r.action, "kind": r.kind,
                                   "namespace": r.namespace, "name": r.name, "was": r.outcome, "now": why})
            })
            .collect()
    };
    json!({
        "replayed": rep.replayed, "skipped": rep.skipped,
        "newlyDenied": {"count": rep.newly_denied.len(), "counts": counts(&rep.newly_denied), "examples": ex(&rep.newly_denied)},
        "newlyAllowed": {"count": rep.newly_allowed.len(), "counts": counts(&rep.newly_allowed), "examples": ex(&rep.newly_allowed)},
    })
}

pub fn to_text(rep: &Report, examples: usize) -> String {
    let mut out = format!(
        "replayed {} decisions ({} skipped: identity denials or unknown kinds): {} newly denied, {} newly allowed\n",
        rep.replayed,
        rep.skipped,
        rep.newly_denied.len(),
        rep.newly_allowed.len()
    );
    for (title, flips) in [
        ("newly denied", &rep.newly_denied),
        ("newly allowed", &rep.newly_allowed),
    ] {
        if flips.is_empty() {
            continue;
        }
        out.push_str(&format!("\n{title}: {}\n", flips.len()));
        let c = counts(flips);
        for (label, key) in [
            ("by recorded rule", "byRecordedRule"),
            ("by namespace", "byNamespace"),
            ("by group", "byGroup"),
        ] {
            let parts: Vec<String> = c[key]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(k, v)| format!("{k} {v}"))
                .collect();
            if !parts.is_empty() {
                out.push_str(&format!("  {label}: {}\n", parts.join(", ")));
            }
        }
        for (r, why) in flips.iter().take(examples) {
            out.push_str(&format!(
                "  e.g. {} {} {} {}/{} ({}): {why}\n",
                r.at, r.requester, r.action, r.namespace, r.name, r.kind
            ));
        }
    }
    out
}
