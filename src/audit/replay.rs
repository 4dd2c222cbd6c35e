//! `scimgate policy replay`: re-evaluate recorded decisions under another policy and report what
//! flips — newly denied, newly allowed — with counts by rule, namespace and group, and examples.
//! Uses what each record kept from decision time (groups, run-as, templates, submitter), so the
//! answer is about the policy change alone, not about later directory changes.
//!
//! An agent's decision (`on_behalf_of` set) is replayed for the agent's own rights, as recorded;
//! its sponsor's groups are not in the record, so a denial the agent alone would now pass is
//! counted apart ([`Report::sponsor_unknown`]), never as newly allowed.

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
    /// Replayed decisions an agent made on a person's behalf (among `replayed`).
    pub on_behalf: usize,
    /// Of those, denied then and allowed for the agent now: whether its sponsor may is unknown.
    pub sponsor_unknown: usize,
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
            submitted_for: vec![],
        };
        let d = policy::evaluate(p, &req, &who);
        report.replayed += 1;
        let agent = r.on_behalf_of.is_some();
        report.on_behalf += usize::from(agent);
        let now_denied = d.outcome != Outcome::Allowed;
        let why = if now_denied {
            d.reason.clone()
        } else {
            format!("allowed by rule {}", d.rule.clone().unwrap_or_default())
        };
        match (denied(&r.outcome), now_denied) {
            (false, true) => report.newly_denied.push((r.clone(), why)),
            (true, false) if agent => report.sponsor_unknown += 1,
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
                json!({"id": r.id, "at": r.at, "requester": r.requester, "onBehalfOf": r.on_behalf_of, "action": r.action,
                    "kind": r.kind, "namespace": r.namespace, "name": r.name, "was": r.outcome, "now": why})
            })
            .collect()
    };
    json!({
        "replayed": rep.replayed, "skipped": rep.skipped,
        "newlyDenied": {"count": rep.newly_denied.len(), "counts": counts(&rep.newly_denied), "examples": ex(&rep.newly_denied)},
        "newlyAllowed": {"count": rep.newly_allowed.len(), "counts": counts(&rep.newly_allowed), "examples": ex(&rep.newly_allowed)},
        "onBehalf": {"count": rep.on_behalf, "sponsorUnknown": rep.sponsor_unknown},
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
    if rep.on_behalf > 0 {
        out.push_str(&format!(
            "{} of them were agents' decisions on a person's behalf, replayed for the agent's own rights (the record \
             keeps no sponsor's groups); {} denied then would pass for the agent now, not counted as newly allowed\n",
            rep.on_behalf, rep.sponsor_unknown
        ));
    }
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
                "  e.g. {} {}{} {} {}/{} ({}): {why}\n",
                r.at,
                r.requester,
                r.on_behalf_of
                    .as_deref()
                    .map(|p| format!(" on behalf of {p}"))
                    .unwrap_or_default(),
                r.action,
                r.namespace,
                r.name,
                r.kind
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: &str = "apiVersion: scimgate.io/v1\nkind: Policy\nidentity:\n  usernamePrefix: \"oidc:\"\nrules:\n  - name: ml-submit\n    allow: [submit]\n    groups: [ml]\n    namespaces: [\"ml-*\"]\n";

    fn decision(id: &str, outcome: &str, namespace: &str, on_behalf_of: Option<&str>) -> DecisionRecord {
        DecisionRecord {
            id: id.into(),
            at: "2026-12-03T07:00:00.000Z".into(),
            kind: "Workflow".into(),
            namespace: namespace.into(),
            name: "train-".into(),
            action: "submit".into(),
            requester: "oidc:pipeline-bot".into(),
            user_id: Some("a-bot".into()),
            groups: "ml".into(),
            outcome: outcome.into(),
            run_as: "default".into(),
            on_behalf_of: on_behalf_of.map(String::from),
            ..Default::default()
        }
    }

    #[test]
    fn an_agents_decision_is_replayed_for_the_agent_and_never_called_newly_allowed() {
        let p = Policy::parse(POLICY, "new.yaml").expect("policy");
        let rep = replay(
            &[
                // Denied then (perhaps alice lacked the right): the agent alone passes now, but
                // whether alice does the record cannot say.
                decision("d-1", "denied", "ml-team", Some("u-alice")),
                // Allowed then; the agent's own rights fail now: newly denied.
                decision("d-2", "allowed", "prod", Some("u-alice")),
                // A person's denial that passes now is newly allowed, as before.
                decision("d-3", "denied", "ml-team", None),
            ],
            &p,
        );
        assert_eq!(rep.replayed, 3);
        assert_eq!((rep.on_behalf, rep.sponsor_unknown), (2, 1));
        assert_eq!(
            rep.newly_denied.iter().map(|(r, _)| r.id.as_str()).collect::<Vec<_>>(),
            ["d-2"]
        );
        assert_eq!(
            rep.newly_allowed.iter().map(|(r, _)| r.id.as_str()).collect::<Vec<_>>(),
            ["d-3"]
        );
        let j = to_json(&rep, 5);
        assert_eq!(j["newlyDenied"]["examples"][0]["onBehalfOf"], "u-alice");
        assert_eq!(j["onBehalf"]["sponsorUnknown"], 1);
        let t = to_text(&rep, 5);
        assert!(
            t.contains("oidc:pipeline-bot on behalf of u-alice submit prod/train-"),
            "{t}"
        );
        assert!(t.contains("2 of them were agents' decisions"), "{t}");
    }
}
