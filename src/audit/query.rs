//! Decision-log queries: the filters `scimgate audit query` and `GET /api/v1/decisions` take,
//! time expressions (`7d`, RFC 3339), and the output formats (table, JSON, JSON lines, CSV).

use super::DecisionRecord;

pub use crate::model::decision::{DecisionQuery, DEFAULT_LIMIT, MAX_LIMIT};
use crate::policy::{Action, Kind, Outcome};
use serde::{Deserialize, Serialize};

/// What a record is of: an admission action, the offboarding sweep's finding (and scimgate's
/// own offboarding write), or an identity report written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RecordAction {
    Submit,
    Approve,
    Cancel,
    Update,
    Delete,
    Offboard,
    Report,
}

impl RecordAction {
    pub fn as_str(self) -> &'static str {
        match self {
            RecordAction::Submit => Action::Submit.as_str(),
            RecordAction::Approve => Action::Approve.as_str(),
            RecordAction::Cancel => Action::Cancel.as_str(),
            RecordAction::Update => Action::Update.as_str(),
            RecordAction::Delete => Action::Delete.as_str(),
            RecordAction::Offboard => crate::offboarding::sweep::ACTION,
            RecordAction::Report => crate::reports::ACTION,
        }
    }
}

/// The filters of `scimgate audit query` and of `GET /api/v1/decisions`, by the names both take:
/// one type for the flags, the query string, and the client between them.
#[derive(Debug, Clone, Default, PartialEq, clap::Args, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Filters {
    /// userName, SCIM id, or the requester as Kubernetes named it (oidc:…, system:serviceaccount:…);
    /// a person's decisions include what their agents did on their behalf.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// SCIM group (at decision time).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    #[arg(long, short = 'n')]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Workflow, CronWorkflow, WorkflowTemplate, ClusterWorkflowTemplate, PipelineRun, TaskRun.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<Kind>,
    /// The object's name (or generateName, for a run created with one).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// submit, approve, cancel, update, delete; offboard (the offboarding sweep and scimgate's
    /// own offboarding writes); report (identity reports written).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action: Option<RecordAction>,
    /// allowed, denied, dry-run-deny.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outcome: Option<Outcome>,
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    /// Only decisions newer than this: 7d, 12h, 30m, or an RFC 3339 time.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
    /// Only decisions at or after this RFC 3339 time (or 7d…).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// Only decisions before this RFC 3339 time (or 7d…).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    /// Page size (at most 10000; default 100).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    /// Continue after this decision id (printed at the end of a full page).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub after: Option<String>,
}

/// `7d`, `12h`, `30m` before `now`, or an RFC 3339 time; returned as RFC 3339 UTC.
pub fn parse_time(s: &str, now: chrono::DateTime<chrono::Utc>) -> Result<String, String> {
    let s = s.trim();
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Ok(t
            .with_timezone(&chrono::Utc)
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true));
    }
    let (n, unit) = s.split_at(s.len().saturating_sub(1));
    let n: i64 = n
        .parse()
        .map_err(|_| format!("'{s}' is neither a duration like 7d/12h/30m nor an RFC 3339 time"))?;
    let d = match unit {
        "d" => chrono::Duration::days(n),
        "h" => chrono::Duration::hours(n),
        "m" => chrono::Duration::minutes(n),
        _ => return Err(format!("'{s}': the unit must be d, h or m")),
    };
    Ok((now - d).to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

const COLUMNS: [&str; 24] = [
    "id",
    "at",
    "request_uid",
    "hook",
    "kind",
    "namespace",
    "name",
    "action",
    "requester",
    "user_id",
    "groups",
    "rule",
    "outcome",
    "mode",
    "reason",
    "latency_us",
    "policy",
    "run_as",
    "templates",
    "submitter_id",
    "stamp_id",
    "authenticated",
    "prior_decision",
    "on_behalf_of",
];

fn fields(r: &DecisionRecord) -> [String; 24] {
    [
        r.id.clone(),
        r.at.clone(),
        r.request_uid.clone(),
        r.hook.clone(),
        r.kind.clone(),
        r.namespace.clone(),
        r.name.clone(),
        r.action.clone(),
        r.requester.clone(),
        r.user_id.clone().unwrap_or_default(),
        r.groups.clone(),
        r.rule.clone().unwrap_or_default(),
        r.outcome.clone(),
        r.mode.clone(),
        r.reason.clone(),
        r.latency_us.to_string(),
        r.policy.clone(),
        r.run_as.clone(),
        r.templates.clone(),
        r.submitter_id.clone().unwrap_or_default(),
        r.stamp_id.clone().unwrap_or_default(),
        r.authenticated.to_string(),
        r.prior_decision.clone().unwrap_or_default(),
        r.on_behalf_of.clone().unwrap_or_default(),
    ]
}

pub fn to_json(r: &DecisionRecord) -> serde_json::Value {
    let f = fields(r);
    let mut m = serde_json::Map::new();
    for (k, v) in COLUMNS.iter().zip(f) {
        let v = match *k {
            "latency_us" => serde_json::json!(r.latency_us),
            "authenticated" => serde_json::json!(r.authenticated),
            "user_id" | "rule" | "submitter_id" | "stamp_id" | "prior_decision" | "on_behalf_of" if v.is_empty() => {
                serde_json::Value::Null
            }
            _ => serde_json::json!(v),
        };
        m.insert((*k).to_string(), v);
    }
    serde_json::Value::Object(m)
}

pub fn from_json(v: &serde_json::Value) -> Option<DecisionRecord> {
    let s = |k: &str| v.get(k).and_then(|x| x.as_str()).map(String::from);
    Some(DecisionRecord {
        id: s("id")?,
        at: s("at")?,
        request_uid: s("request_uid").unwrap_or_default(),
        hook: s("hook").unwrap_or_default(),
        kind: s("kind").unwrap_or_default(),
        namespace: s("namespace").unwrap_or_default(),
        name: s("name").unwrap_or_default(),
        action: s("action").unwrap_or_default(),
        requester: s("requester").unwrap_or_default(),
        user_id: s("user_id"),
        groups: s("groups").unwrap_or_default(),
        rule: s("rule"),
        outcome: s("outcome").unwrap_or_default(),
        mode: s("mode").unwrap_or_default(),
        reason: s("reason").unwrap_or_default(),
        latency_us: v.get("latency_us").and_then(|x| x.as_i64()).unwrap_or(0),
        policy: s("policy").unwrap_or_default(),
        run_as: s("run_as").unwrap_or_default(),
        templates: s("templates").unwrap_or_default(),
        submitter_id: s("submitter_id"),
        stamp_id: s("stamp_id"),
        authenticated: v.get("authenticated").and_then(|x| x.as_bool()).unwrap_or(false),
        prior_decision: s("prior_decision"),
        on_behalf_of: s("on_behalf_of"),
        link: None,
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Json,
    Jsonl,
    Csv,
}

pub fn render(records: &[DecisionRecord], format: Format) -> String {
    match format {
        Format::Json => {
            serde_json::to_string_pretty(&records.iter().map(to_json).collect::<Vec<_>>()).unwrap_or_default() + "\n"
        }
        Format::Jsonl => records.iter().map(|r| to_json(r).to_string() + "\n").collect(),
        Format::Csv => {
            let mut out = COLUMNS.join(",") + "\n";
            for r in records {
                out.push_str(&fields(r).iter().map(|f| csv_field(f)).collect::<Vec<_>>().join(","));
                out.push('\n');
            }
            out
        }
        Format::Table => {
            let mut out = format!(
                "{:<24} {:<12} {:<8} {:<24} {:<32} {:<28} {:<14} {}\n",
                "AT", "OUTCOME", "ACTION", "KIND", "NAMESPACE/NAME", "WHO", "RULE", "REASON"
            );
            for r in records {
                let cut = |s: &str, n: usize| {
                    if s.chars().count() > n {
                        s.chars().take(n - 1).collect::<String>() + "…"
                    } else {
                        s.to_string()
                    }
                };
                out.push_str(&format!(
                    "{:<24} {:<12} {:<8} {:<24} {:<32} {:<28} {:<14} {}\n",
                    cut(&r.at, 24),
                    r.outcome,
                    r.action,
                    cut(&r.kind, 24),
                    cut(&format!("{}/{}", r.namespace, r.name), 32),
                    cut(&r.requester, 28),
                    cut(r.rule.as_deref().unwrap_or("-"), 14),
                    // An agent's decision names the person whose rights carried it.
                    match r.on_behalf_of.as_deref() {
                        Some(p) if r.reason.is_empty() => format!("on behalf of {p}"),
                        Some(p) => format!("on behalf of {p}: {}", cut(&r.reason, 100)),
                        None => cut(&r.reason, 100),
                    }
                ));
            }
            out
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_and_csv() {
        let now = chrono::DateTime::parse_from_rfc3339("2026-11-22T12:00:00Z")
            .expect("t")
            .with_timezone(&chrono::Utc);
        assert_eq!(parse_time("7d", now).as_deref(), Ok("2026-11-15T12:00:00.000Z"));
        assert_eq!(parse_time("90m", now).as_deref(), Ok("2026-11-22T10:30:00.000Z"));
        assert_eq!(
            parse_time("2026-11-01T00:00:00+01:00", now).as_deref(),
            Ok("2026-10-31T23:00:00.000Z")
        );
        assert!(parse_time("7w", now).is_err() && parse_time("soon", now).is_err());
        assert_eq!(csv_field("a,\"b\""), "\"a,\"\"b\"\"\"");
    }

    fn agents() -> DecisionRecord {
        DecisionRecord {
            id: "d-1".into(),
            at: "2026-12-03T07:00:00.000Z".into(),
            action: "submit".into(),
            requester: "oidc:pipeline-bot".into(),
            user_id: Some("a-bot".into()),
            outcome: "allowed".into(),
            rule: Some("ml-submit".into()),
            on_behalf_of: Some("u-alice".into()),
            ..Default::default()
        }
    }

    #[test]
    fn every_format_shows_the_person_an_agent_acted_for() {
        let r = agents();
        let j = to_json(&r);
        assert_eq!(j["on_behalf_of"], "u-alice");
        assert_eq!(from_json(&j), Some(r.clone()), "the audit API's client reads it back");
        let person = DecisionRecord {
            on_behalf_of: None,
            ..r.clone()
        };
        assert_eq!(to_json(&person)["on_behalf_of"], serde_json::Value::Null);
        assert_eq!(from_json(&to_json(&person)), Some(person.clone()));
        let csv = render(std::slice::from_ref(&r), Format::Csv);
        assert!(
            csv.starts_with("id,at,") && csv.lines().next().is_some_and(|h| h.ends_with(",on_behalf_of")),
            "{csv}"
        );
        assert!(csv.lines().nth(1).is_some_and(|l| l.ends_with(",u-alice")), "{csv}");
        let table = render(&[r, person], Format::Table);
        let lines: Vec<&str> = table.lines().collect();
        assert!(lines[1].ends_with("on behalf of u-alice"), "{table}");
        assert!(!lines[2].contains("on behalf of"), "{table}");
        let denied = DecisionRecord {
            reason: "alice may not submit in prod".into(),
            ..agents()
        };
        assert!(
            render(&[denied], Format::Table).ends_with("on behalf of u-alice: alice may not submit in prod\n"),
            "the reason follows"
        );
    }
}
