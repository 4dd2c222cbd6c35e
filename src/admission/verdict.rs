//! The verdict, the stage of a decision that asks the policy: every action a request contains is
//! judged on its own (an approval that also changes the spec is an approval *and* an update, and
//! both must be allowed), as the requester, on what the run executes. Identity state too old to
//! trust refuses (or warns, as the operator chose). No I/O.

use super::asker::Asker;
use crate::policy::{self, Action, Kind, OnBehalfOf, Outcome, Policy, RunRequest};

/// What the policy said of one request.
pub enum Verdict {
    /// Every action allowed; the decision per action (`allow:<rule>`), the first's rule.
    Allowed {
        decisions: Vec<(Action, String)>,
        rule: String,
        /// An agent's request: the person whose rights carried each action (each may be
        /// another owner's).
        on_behalf_of: Vec<(Action, OnBehalfOf)>,
    },
    /// The first action refused, why, and under which rule if one came close.
    Refused {
        action: Action,
        why: String,
        rule: Option<String>,
        /// In dry-run: the decision per action (`allow:<rule>` or `dry-run-deny[:<rule>]`).
        decisions: Vec<(Action, String)>,
    },
}

/// The decision of a delete the policy does not judge (`enforceDeletes: false`).
pub const RECORDED_ONLY: &str = "allow:";

/// What a verdict needs to know about the run.
pub struct Run<'a> {
    pub kind: Kind,
    pub namespace: &'a str,
    pub run_as: &'a [String],
    pub templates: &'a [String],
    pub submitter_id: Option<String>,
    /// Whose run an agent's run also counts as (`identity::submitted_for`).
    pub submitted_for: Vec<String>,
}

/// Judge `actions` (at least one). `stale` is the directory's staleness as a refusal (fail closed)
/// when the operator chose so.
pub fn judge(policy: &Policy, asker: &Asker, actions: &[Action], run: &Run<'_>, stale: Option<String>) -> Verdict {
    let first = super::asker::recorded_action(actions);
    let refused_all = |why: String| Verdict::Refused {
        action: first,
        why,
        rule: None,
        decisions: actions.iter().map(|a| (*a, "dry-run-deny".to_string())).collect(),
    };
    if let Some(why) = stale {
        return refused_all(why);
    }
    let requester = match &asker.person {
        Ok(r) => r,
        Err(why) => return refused_all(why.clone()),
    };
    let mut decisions = Vec::new();
    let mut refusal: Option<(Action, String, Option<String>)> = None;
    let mut first_rule = String::new();
    let mut on_behalf_of = Vec::new();
    for (i, action) in actions.iter().enumerate() {
        // A delete is judged only where the policy enforces deletes; elsewhere it is recorded.
        if *action == Action::Delete && !policy.enforce_deletes {
            decisions.push((*action, RECORDED_ONLY.to_string()));
            continue;
        }
        let d = policy::evaluate(policy, &request(run, *action), requester);
        let rule = d.rule.clone().unwrap_or_default();
        if i == 0 {
            first_rule = rule.clone();
        }
        if let Some(by) = &d.on_behalf_of {
            on_behalf_of.push((*action, by.clone()));
        }
        if d.outcome == Outcome::Allowed {
            decisions.push((*action, format!("allow:{rule}")));
        } else {
            decisions.push((
                *action,
                d.rule
                    .as_ref()
                    .map_or_else(|| "dry-run-deny".to_string(), |r| format!("dry-run-deny:{r}")),
            ));
            refusal.get_or_insert((*action, d.reason, d.rule));
        }
    }
    match refusal {
        None => Verdict::Allowed {
            decisions,
            rule: first_rule,
            on_behalf_of,
        },
        Some((action, why, rule)) => Verdict::Refused {
            action,
            why,
            rule,
            decisions,
        },
    }
}

fn request(run: &Run<'_>, action: Action) -> RunRequest {
    RunRequest {
        kind: run.kind,
        namespace: run.namespace.to_string(),
        action,
        run_as: run.run_as.to_vec(),
        templates: run.templates.to_vec(),
        submitter_id: run.submitter_id.clone(),
        submitted_for: run.submitted_for.clone(),
    }
}

/// An agent's first active owner: whom it acts for, when no one's rights carried the request.
pub fn first_sponsor(asker: &Asker) -> Option<String> {
    match &asker.person {
        Ok(crate::policy::Requester::Agent { sponsors, .. }) => {
            sponsors.first().and_then(|p| p.scim_id()).map(str::to_string)
        }
        _ => None,
    }
}

/// The person's (or agent's) id and groups, for the record.
pub fn person_of(asker: &Asker) -> Option<(&str, &[String])> {
    let who = asker.person.as_ref().ok()?;
    Some((who.scim_id()?, who.groups()))
}
