//! One run's chain of custody: who submitted, updated, approved, cancelled or deleted it, when
//! and under which rule — from the decision log — and, when scimgate can read the cluster, the
//! stamps on the live object, each verified as `audit who` verifies them (valid, forged,
//! missing, inherited from its owner).

use super::decisions::{outcome_badge, run_link};
use super::html::{self, esc, Tab};
use super::{html_response, St};
use crate::audit::who;
use crate::model::DecisionQuery;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::Response;
use serde_json::Value;
use std::fmt::Write as _;
use std::time::Duration;

/// Decisions about one object shown at most (a run is written a handful of times).
const MAX_DECISIONS: u32 = 500;
/// How long the cluster may take to answer.
const CLUSTER_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(serde::Deserialize, Default)]
pub(super) struct Target {
    #[serde(default)]
    kind: String,
    #[serde(default)]
    namespace: String,
    #[serde(default)]
    name: String,
}

/// A Kubernetes name or namespace as the API server allows them (DNS subdomain characters, at
/// most 253): anything else never reaches the kube client's URL.
fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
}

pub(super) async fn page(
    State(st): State<St>,
    uri: Uri,
    headers: HeaderMap,
    q: Result<Query<Target>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let signed = match st.session(&headers).await {
        Ok(s) => s,
        Err(r) => return r.page(&uri),
    };
    let nav = signed.nav(Tab::Run);
    let t = q.map(|Query(t)| t).unwrap_or_default();
    let mut body = lookup_form(&t);
    if t.kind.is_empty() && t.name.is_empty() {
        body.push_str(
            "<p class=\"hint\">Name a run, or follow an object's link from the <a href=\"/console/decisions\">decision log</a>.</p>",
        );
        return html_response(StatusCode::OK, html::page("Chain of custody", Some(&nav), &body));
    }
    let target = if t.namespace.is_empty() {
        format!("{}/{}", t.kind, t.name)
    } else {
        format!("{}/{}/{}", t.namespace, t.kind, t.name)
    };
    let parsed = who::parse_target(&target, false);
    let (ar, ns) = match parsed {
        Ok((ar, ns, _))
            if valid_name(&t.name)
                && ns.as_deref().is_none_or(valid_name)
                && (ns.is_some() || t.namespace.is_empty()) =>
        {
            (ar, ns)
        }
        Ok(_) => return bad(&nav, body, "That is not a Kubernetes name and namespace."),
        Err(e) => return bad(&nav, body, &e.to_string()),
    };
    let title = format!(
        "{} {}",
        ar.kind,
        run_link(&ar.kind, ns.as_deref().unwrap_or_default(), &t.name)
    );
    let _ = write!(body, "<h2>{title}</h2>");

    // The live object, verified, with the decisions its stamps name.
    let mut decisions: Vec<Row> = Vec::new();
    match &st.c.client {
        None => body.push_str(
            "<p class=\"note\">This scimgate has no Kubernetes API access: the stamps on the live object \
             cannot be read here (<code>scimgate audit who</code> reads them with your kubeconfig). \
             What follows is the decision log's.</p>",
        ),
        Some(client) => {
            let fetched = tokio::time::timeout(
                CLUSTER_TIMEOUT,
                who::fetch(client.clone(), &ar, ns.as_deref(), Some(&t.name), None),
            )
            .await;
            match fetched {
                Err(_) => body.push_str("<p class=\"error\">The cluster did not answer in time.</p>"),
                Ok(Err(e)) => {
                    let _ = write!(
                        body,
                        "<p class=\"note\">Not read from the cluster: {}. The decision log's record follows.</p>",
                        esc(&format!("{e:#}"))
                    );
                }
                Ok(Ok(objects)) => {
                    for obj in &objects {
                        match who::explain(&st.c.verifier, Some(&*st.c.store), obj).await {
                            Ok((report, _)) => {
                                body.push_str(&live(&report, "Stamps on the live object"));
                                decisions.extend(
                                    report["decisions"]
                                        .as_array()
                                        .into_iter()
                                        .flatten()
                                        .map(Row::from_report),
                                );
                                // A child with no stamp of its own: who is behind its owner.
                                if let Some(owner) = owner_report(&st, &report, obj).await {
                                    body.push_str(&live(&owner, "Its owner's stamps"));
                                }
                            }
                            Err(e) => {
                                let _ = write!(body, "<p class=\"error\">{}</p>", esc(&format!("{e:#}")));
                            }
                        }
                    }
                }
            }
        }
    }

    // Every decision about it the log holds: by kind, namespace and name.
    let q = DecisionQuery {
        kind: Some(ar.kind.clone()),
        namespace: ns.clone(),
        name: Some(t.name.clone()),
        limit: MAX_DECISIONS,
        ..Default::default()
    };
    match st.c.store.query_decisions(&q).await {
        Ok(records) => decisions.extend(records.iter().map(Row::from_record)),
        Err(e) => {
            let _ = write!(
                body,
                "<p class=\"error\">The decision log is unavailable: {}</p>",
                esc(&e.to_string())
            );
        }
    }
    let mut seen = std::collections::HashSet::new();
    decisions.retain(|d| seen.insert(d.id.clone()));
    decisions.sort_by(|a, b| a.at.cmp(&b.at));
    body.push_str(&custody(&decisions));
    html_response(StatusCode::OK, html::page("Chain of custody", Some(&nav), &body))
}

async fn owner_report(st: &St, report: &Value, obj: &Value) -> Option<Value> {
    let (kind, ns, name) = who::owner_to_follow(report, obj)?;
    let client = st.c.client.clone()?;
    let (ar, _, _) = who::parse_target(&format!("{ns}/{kind}/{name}"), false).ok()?;
    let owners = tokio::time::timeout(CLUSTER_TIMEOUT, who::fetch(client, &ar, Some(&ns), Some(&name), None))
        .await
        .ok()?
        .ok()?;
    let (r, _) = who::explain(&st.c.verifier, Some(&*st.c.store), owners.first()?)
        .await
        .ok()?;
    Some(r)
}

fn bad(nav: &html::Nav<'_>, mut body: String, msg: &str) -> Response {
    let _ = write!(body, "<p class=\"error\" role=\"alert\">{}</p>", esc(msg));
    html_response(
        StatusCode::BAD_REQUEST,
        html::page("Chain of custody", Some(nav), &body),
    )
}

fn lookup_form(t: &Target) -> String {
    let mut out = String::from(
        "<form class=\"filters\" method=\"get\" action=\"/console/run\"><label>Kind<select name=\"kind\">",
    );
    for k in crate::policy::Kind::ALL {
        let sel = if k.as_str().eq_ignore_ascii_case(&t.kind) {
            " selected"
        } else {
            ""
        };
        let _ = write!(out, "<option{sel}>{}</option>", k.as_str());
    }
    let _ = write!(
        out,
        "</select></label><label>Namespace<input name=\"namespace\" value=\"{}\"></label>\
         <label>Name<input name=\"name\" value=\"{}\"></label><button type=\"submit\">Show</button></form>",
        esc(&t.namespace),
        esc(&t.name)
    );
    out
}

/// The verified stamps and the events they record, from `audit who`'s report.
fn live(report: &Value, heading: &str) -> String {
    let s = |v: &Value, k: &str| v[k].as_str().unwrap_or_default().to_string();
    let mut out = format!(
        "<section class=\"live\"><h3>{} <span class=\"object\">{}</span></h3>",
        esc(heading),
        esc(&s(report, "object"))
    );
    out.push_str("<table class=\"stamps\"><thead><tr><th>Stamp</th><th>By</th><th>Verified</th></tr></thead><tbody>");
    for st in report["stamps"].as_array().into_iter().flatten() {
        let (badge, detail) = match st["status"].as_str() {
            Some("valid") => (
                "<span class=\"badge ok\">valid</span>",
                crate::audit::verify::unauthenticated_note(st["authenticated"].as_bool()).to_string(),
            ),
            Some("missing") => (
                "<span class=\"badge warn\">missing</span>",
                "scimgate never admitted this object, or its stamp was removed".to_string(),
            ),
            Some("inherited") => (
                "<span class=\"badge warn\">inherited</span>",
                format!("none of its own: it carries its owner {}'s stamp", s(st, "owner")),
            ),
            _ => ("<span class=\"badge bad\">forged</span>", s(st, "why")),
        };
        let by = match (s(st, "by"), s(st, "onBehalfOf"), s(st, "for")) {
            (by, obo, _) if !obo.is_empty() => format!("{} on behalf of {}", esc(&by), esc(&obo)),
            (by, _, person) if !person.is_empty() => format!("{} offboarding {}", esc(&by), esc(&person)),
            (by, _, _) => esc(&by),
        };
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{by}</td><td>{badge} {}</td></tr>",
            esc(&s(st, "action")),
            esc(&detail)
        );
    }
    out.push_str("</tbody></table>");
    let events = report["events"].as_array().map(Vec::as_slice).unwrap_or_default();
    if !events.is_empty() {
        out.push_str("<p class=\"sub\">As the object's annotations say (trust them as far as the stamps above verify):</p><ul class=\"events\">");
        for e in events {
            let _ = write!(
                out,
                "<li><b>{}</b> by {} at {}</li>",
                esc(&s(e, "event")),
                esc(&s(e, "by")),
                esc(&s(e, "at"))
            );
        }
        out.push_str("</ul>");
    }
    out.push_str("</section>");
    out
}

/// One decision about the object.
struct Row {
    id: String,
    at: String,
    action: String,
    outcome: String,
    rule: String,
    requester: String,
    on_behalf_of: String,
    stamp_id: String,
    reason: String,
}

impl Row {
    fn from_record(r: &crate::audit::DecisionRecord) -> Row {
        Row {
            id: r.id.clone(),
            at: r.at.clone(),
            action: r.action.clone(),
            outcome: r.outcome.clone(),
            rule: r.rule.clone().unwrap_or_default(),
            requester: r.requester.clone(),
            on_behalf_of: r.on_behalf_of.clone().unwrap_or_default(),
            stamp_id: r.stamp_id.clone().unwrap_or_default(),
            reason: r.reason.clone(),
        }
    }

    fn from_report(d: &Value) -> Row {
        let s = |k: &str| d[k].as_str().unwrap_or_default().to_string();
        Row {
            id: s("id"),
            at: s("at"),
            action: s("action"),
            outcome: s("outcome"),
            rule: s("rule"),
            requester: s("requester"),
            on_behalf_of: s("onBehalfOf"),
            stamp_id: s("stampId"),
            reason: s("reason"),
        }
    }
}

/// What the action did to the run, as the chain of custody says it.
fn event(action: &str) -> &str {
    match action {
        "submit" => "submitted",
        "update" => "updated",
        "approve" => "approved",
        "cancel" => "cancelled",
        "delete" => "deleted",
        "offboard" => "offboarded",
        "report" => "reported",
        other => other,
    }
}

fn custody(rows: &[Row]) -> String {
    let mut out = String::from("<section class=\"log\"><h3>From the decision log</h3>");
    if rows.is_empty() {
        out.push_str("<p class=\"empty\">The decision log holds nothing about this object.</p></section>");
        return out;
    }
    out.push_str(
        "<table class=\"custody\"><thead><tr><th>At</th><th>Event</th><th>By</th><th>Rule</th><th>Outcome</th>\
         <th>Stamp id</th><th>Reason</th></tr></thead><tbody>",
    );
    for r in rows {
        let by = if r.on_behalf_of.is_empty() {
            esc(&r.requester)
        } else {
            format!(
                "{} <span class=\"obo\">on behalf of {}</span>",
                esc(&r.requester),
                esc(&r.on_behalf_of)
            )
        };
        let rule = if r.rule.is_empty() { "-" } else { r.rule.as_str() };
        let stamp = if r.stamp_id.is_empty() {
            "-"
        } else {
            r.stamp_id.as_str()
        };
        let _ = write!(
            out,
            "<tr><td class=\"at\">{}</td><td>{}</td><td>{by}</td><td>{}</td><td>{}</td><td class=\"id\">{}</td><td class=\"reason\">{}</td></tr>",
            esc(&r.at),
            esc(event(&r.action)),
            esc(rule),
            outcome_badge(&r.outcome),
            esc(stamp),
            esc(&r.reason)
        );
    }
    out.push_str("</tbody></table></section>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn names_that_are_not_kubernetes_names_never_reach_the_client() {
        assert!(valid_name("train-1.x"));
        for bad in ["", "../secrets", "a/b", "A", "a%2Fb", &"a".repeat(254)] {
            assert!(!valid_name(bad), "{bad}");
        }
    }

    #[test]
    fn a_forged_stamp_reads_forged_and_every_value_is_escaped() {
        let report = json!({"object": "team-a/Workflow/<b>x</b>",
            "stamps": [{"status": "forged", "why": "scimgate.io/submitted-by was altered <i>"},
                       {"status": "valid", "action": "approve", "by": "<script>", "authenticated": true},
                       {"status": "missing"}],
            "events": [{"event": "submitted", "by": "\"bob\"", "at": "t"}]});
        let html = live(&report, "Stamps");
        assert!(
            html.contains("<span class=\"badge bad\">forged</span> scimgate.io/submitted-by was altered &lt;i&gt;"),
            "{html}"
        );
        assert!(html.contains("<span class=\"badge ok\">valid</span>"), "{html}");
        assert!(html.contains("<span class=\"badge warn\">missing</span>"), "{html}");
        assert!(
            !html.contains("<script>") && !html.contains("<b>x") && html.contains("&quot;bob&quot;"),
            "{html}"
        );
        let rows = [Row::from_report(
            &json!({"id": "d", "at": "t", "action": "approve", "outcome": "allowed",
            "rule": "team-approve", "requester": "oidc:<bob>", "reason": ""}),
        )];
        let c = custody(&rows);
        assert!(
            c.contains("<td>approved</td><td>oidc:&lt;bob&gt;</td><td>team-approve</td>"),
            "{c}"
        );
    }
}
