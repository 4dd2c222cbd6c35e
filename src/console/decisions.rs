//! The decision log: the filters of `audit query` (user, group, namespace, kind, name, action,
//! outcome, rule, time) as a GET form, so every view is a link; newest first, paged by the last
//! id; exported as CSV or JSON lines with the same filters.

use super::html::{self, esc, Tab};
use super::{html_response, St};
use crate::audit::api::{self, Error as FilterError};
use crate::audit::query::{self, Filters, Format, RecordAction};
use crate::audit::DecisionRecord;
use crate::model::DecisionQuery;
use crate::policy::{Kind, Outcome};
use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use std::fmt::Write as _;

/// Rows on a page unless `limit` says otherwise, and at most.
pub const PAGE: u32 = 50;
pub const PAGE_MAX: u32 = 500;

/// The filters a URL's query names, in the order the form shows them.
const TEXT_FILTERS: [(&str, &str); 7] = [
    ("user", "User (userName, SCIM id or requester)"),
    ("group", "Group"),
    ("namespace", "Namespace"),
    ("name", "Object name"),
    ("rule", "Rule"),
    ("since", "Since (7d, 12h, 30m or a time)"),
    ("to", "Before (RFC 3339 or 7d…)"),
];

/// The query string as pairs, empty values left out (an unset form field sends `user=`).
fn pairs(raw: Option<&str>) -> Vec<(String, String)> {
    url::form_urlencoded::parse(raw.unwrap_or_default().as_bytes())
        .map(|(k, v)| (k.into_owned(), v.trim().to_string()))
        .filter(|(_, v)| !v.is_empty())
        .collect()
}

fn get<'a>(p: &'a [(String, String)], key: &str) -> Option<&'a str> {
    p.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

/// The filters, as `audit query` takes them; an unknown name or value is the reader's mistake.
pub(super) fn filters(p: &[(String, String)]) -> Result<Filters, String> {
    let mut f = Filters::default();
    for (k, v) in p {
        let v = v.clone();
        match k.as_str() {
            "user" => f.user = Some(v),
            "group" => f.group = Some(v.to_lowercase()),
            "namespace" => f.namespace = Some(v),
            "name" => f.name = Some(v),
            "rule" => f.rule = Some(v),
            "since" => f.since = Some(v),
            "from" => f.from = Some(v),
            "to" => f.to = Some(v),
            "after" => f.after = Some(v),
            "kind" => {
                f.kind = Some(
                    serde_json::from_value::<Kind>(serde_json::Value::String(v.clone()))
                        .map_err(|_| format!("'{v}' is not a kind scimgate judges"))?,
                )
            }
            "action" => {
                f.action = Some(
                    serde_json::from_value::<RecordAction>(serde_json::Value::String(v.clone()))
                        .map_err(|_| format!("'{v}' is not an action"))?,
                )
            }
            "outcome" => f.outcome = Some(v.parse::<Outcome>().map_err(|_| format!("'{v}' is not an outcome"))?),
            "limit" => {
                let n: u32 = v.parse().map_err(|_| format!("limit '{v}' is not a number"))?;
                f.limit = Some(n.clamp(1, PAGE_MAX));
            }
            other => return Err(format!("'{other}' is not a filter")),
        }
    }
    Ok(f)
}

/// The records the filters select: newest first, at most `limit`; and the id to continue after
/// when the page is full.
async fn read(st: &St, f: Filters, limit: u32) -> Result<(Vec<DecisionRecord>, Option<String>), Failure> {
    let mut q: DecisionQuery = api::to_query(&*st.c.store, f).await.map_err(|e| match e {
        FilterError::Store(e) => Failure::Store(e.to_string()),
        e => Failure::Filter(e.to_string()),
    })?;
    q.limit = limit;
    let records =
        st.c.store
            .query_decisions(&q)
            .await
            .map_err(|e| Failure::Store(e.to_string()))?;
    let next = (records.len() as u32 == limit)
        .then(|| records.last().map(|r| r.id.clone()))
        .flatten();
    Ok((records, next))
}

enum Failure {
    /// The filters do not make a query (shown above the form).
    Filter(String),
    Store(String),
}

pub(super) async fn page(State(st): State<St>, uri: Uri, headers: HeaderMap, RawQuery(raw): RawQuery) -> Response {
    let signed = match st.session(&headers).await {
        Ok(s) => s,
        Err(r) => return r.page(&uri),
    };
    let p = pairs(raw.as_deref());
    let mut body = form(&p);
    let (status, records, next) = match filters(&p) {
        Err(e) => (StatusCode::BAD_REQUEST, Err(e), None),
        Ok(f) => {
            let limit = f.limit.unwrap_or(PAGE);
            match read(&st, f, limit).await {
                Ok((r, next)) => (StatusCode::OK, Ok(r), next),
                Err(Failure::Filter(e)) => (StatusCode::BAD_REQUEST, Err(e), None),
                Err(Failure::Store(e)) => (
                    StatusCode::SERVICE_UNAVAILABLE,
                    Err(format!("the decision log is unavailable: {e}")),
                    None,
                ),
            }
        }
    };
    match records {
        Err(e) => {
            let _ = write!(body, "<p class=\"error\" role=\"alert\">{}</p>", esc(&e));
        }
        Ok(records) => {
            body.push_str(&exports(&p));
            body.push_str(&table(&records));
            body.push_str(&pager(&p, next.as_deref()));
        }
    }
    html_response(
        status,
        html::page("Decisions", Some(&signed.nav(Tab::Decisions)), &body),
    )
}

/// The filter form: GET, so the URL it makes is the link to this view.
fn form(p: &[(String, String)]) -> String {
    let mut out = String::from("<form class=\"filters\" method=\"get\" action=\"/console/decisions\">");
    for (key, label) in TEXT_FILTERS {
        let _ = write!(
            out,
            "<label>{label}<input name=\"{key}\" value=\"{}\"></label>",
            esc(get(p, key).unwrap_or_default())
        );
    }
    let kinds: Vec<&str> = Kind::ALL.iter().map(|k| k.as_str()).collect();
    let actions = ["submit", "approve", "cancel", "update", "delete", "offboard", "report"];
    let outcomes = ["allowed", "denied", "dry-run-deny"];
    for (key, label, options) in [
        ("kind", "Kind", kinds.as_slice()),
        ("action", "Action", actions.as_slice()),
        ("outcome", "Outcome", outcomes.as_slice()),
    ] {
        let chosen = get(p, key).unwrap_or_default();
        let _ = write!(
            out,
            "<label>{label}<select name=\"{key}\"><option value=\"\">any</option>"
        );
        for o in options {
            let sel = if *o == chosen { " selected" } else { "" };
            let _ = write!(out, "<option{sel}>{}</option>", esc(o));
        }
        out.push_str("</select></label>");
    }
    let _ = write!(
        out,
        "<label>Per page<input name=\"limit\" inputmode=\"numeric\" value=\"{}\"></label>\
         <button type=\"submit\">Filter</button> <a class=\"button\" href=\"/console/decisions\">Clear</a></form>",
        esc(get(p, "limit").unwrap_or_default())
    );
    out
}

/// The current filters without paging.
fn kept<'a>(p: &'a [(String, String)], drop: &[&str]) -> Vec<(&'a str, &'a str)> {
    p.iter()
        .filter(|(k, _)| !drop.contains(&k.as_str()))
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect()
}

fn exports(p: &[(String, String)]) -> String {
    let f = kept(p, &["after", "limit"]);
    format!(
        "<p class=\"exports\">Export these filters (newest first, up to {}): \
         <a href=\"{}\">CSV</a> · <a href=\"{}\">JSON lines</a></p>",
        query::MAX_LIMIT,
        html::href("/console/decisions.csv", &f),
        html::href("/console/decisions.jsonl", &f)
    )
}

fn pager(p: &[(String, String)], next: Option<&str>) -> String {
    let mut out = String::from("<nav class=\"pager\">");
    if get(p, "after").is_some() {
        let _ = write!(
            out,
            "<a href=\"{}\">⇤ Newest</a> ",
            html::href("/console/decisions", &kept(p, &["after"]))
        );
    }
    if let Some(next) = next {
        let mut f = kept(p, &["after"]);
        f.push(("after", next));
        let _ = write!(
            out,
            "<a rel=\"next\" href=\"{}\">Older →</a>",
            html::href("/console/decisions", &f)
        );
    }
    out.push_str("</nav>");
    out
}

/// What became of the request, as a badge.
pub(super) fn outcome_badge(outcome: &str) -> String {
    let class = match outcome {
        "allowed" => "ok",
        "denied" => "bad",
        _ => "warn",
    };
    format!("<span class=\"badge {class}\">{}</span>", esc(outcome))
}

/// The link to an object's chain of custody.
pub(super) fn run_link(kind: &str, namespace: &str, name: &str) -> String {
    let text = if namespace.is_empty() {
        name.to_string()
    } else {
        format!("{namespace}/{name}")
    };
    format!(
        "<a href=\"{}\">{}</a>",
        html::href(
            "/console/run",
            &[("kind", kind), ("namespace", namespace), ("name", name)]
        ),
        esc(&text)
    )
}

fn table(records: &[DecisionRecord]) -> String {
    if records.is_empty() {
        return "<p class=\"empty\">No decisions match.</p>".into();
    }
    let mut out = String::from(
        "<table class=\"decisions\"><thead><tr><th>At</th><th>Outcome</th><th>Action</th><th>Kind</th>\
         <th>Object</th><th>Requester</th><th>Groups</th><th>Rule</th><th>Reason</th></tr></thead><tbody>",
    );
    for r in records {
        let who = match &r.on_behalf_of {
            Some(p) => format!(
                "{} <span class=\"obo\">on behalf of {}</span>",
                esc(&r.requester),
                esc(p)
            ),
            None => esc(&r.requester),
        };
        let _ = write!(
            out,
            "<tr><td class=\"at\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{who}</td>\
             <td>{}</td><td>{}</td><td class=\"reason\">{}</td></tr>",
            esc(&r.at),
            outcome_badge(&r.outcome),
            esc(&r.action),
            esc(&r.kind),
            run_link(&r.kind, &r.namespace, &r.name),
            esc(&r.groups),
            esc(r.rule.as_deref().unwrap_or("-")),
            esc(&r.reason),
        );
    }
    out.push_str("</tbody></table>");
    out
}

pub(super) async fn csv(st: State<St>, uri: Uri, headers: HeaderMap, raw: RawQuery) -> Response {
    export(st, uri, headers, raw, Format::Csv).await
}

pub(super) async fn jsonl(st: State<St>, uri: Uri, headers: HeaderMap, raw: RawQuery) -> Response {
    export(st, uri, headers, raw, Format::Jsonl).await
}

/// Up to `MAX_LIMIT` records as `audit query -o csv|jsonl` prints them; a full export names the
/// id to continue after in `X-Scimgate-Next-After` (add `after=` to the URL).
async fn export(
    State(st): State<St>,
    _uri: Uri,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
    format: Format,
) -> Response {
    if let Err(r) = st.session(&headers).await {
        return r.status();
    }
    let p = pairs(raw.as_deref());
    let f = match filters(&p) {
        Ok(f) => f,
        Err(e) => return (StatusCode::BAD_REQUEST, format!("{e}\n")).into_response(),
    };
    let (records, next) = match read(&st, f, query::MAX_LIMIT).await {
        Ok(r) => r,
        Err(Failure::Filter(e)) => return (StatusCode::BAD_REQUEST, format!("{e}\n")).into_response(),
        Err(Failure::Store(e)) => return (StatusCode::SERVICE_UNAVAILABLE, format!("{e}\n")).into_response(),
    };
    let (body, kind, file) = match format {
        // A spreadsheet must not run what a requester put in a name or a reason.
        Format::Csv => (
            query::render(&records.iter().map(defuse).collect::<Vec<_>>(), Format::Csv),
            "text/csv; charset=utf-8",
            "scimgate-decisions.csv",
        ),
        _ => (
            query::render(&records, Format::Jsonl),
            "application/x-ndjson",
            "scimgate-decisions.jsonl",
        ),
    };
    let mut r = (
        [
            (header::CONTENT_TYPE, kind.to_string()),
            (header::CONTENT_DISPOSITION, format!("attachment; filename=\"{file}\"")),
        ],
        body,
    )
        .into_response();
    if let Some(v) = next.and_then(|n| HeaderValue::from_str(&n).ok()) {
        r.headers_mut().insert("x-scimgate-next-after", v);
    }
    r
}

/// A field a spreadsheet would take for a formula (`=`, `+`, `-`, `@`, tab, CR first) gets a
/// leading `'`, as OWASP's CSV-injection advice has it.
fn defuse_field(s: &str) -> String {
    if s.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{s}")
    } else {
        s.to_string()
    }
}

fn defuse(r: &DecisionRecord) -> DecisionRecord {
    let o = |s: &Option<String>| s.as_deref().map(defuse_field);
    DecisionRecord {
        id: defuse_field(&r.id),
        at: defuse_field(&r.at),
        request_uid: defuse_field(&r.request_uid),
        hook: defuse_field(&r.hook),
        kind: defuse_field(&r.kind),
        namespace: defuse_field(&r.namespace),
        name: defuse_field(&r.name),
        action: defuse_field(&r.action),
        requester: defuse_field(&r.requester),
        user_id: o(&r.user_id),
        groups: defuse_field(&r.groups),
        rule: o(&r.rule),
        outcome: defuse_field(&r.outcome),
        mode: defuse_field(&r.mode),
        reason: defuse_field(&r.reason),
        latency_us: r.latency_us,
        policy: defuse_field(&r.policy),
        run_as: defuse_field(&r.run_as),
        templates: defuse_field(&r.templates),
        submitter_id: o(&r.submitter_id),
        stamp_id: o(&r.stamp_id),
        authenticated: r.authenticated,
        prior_decision: o(&r.prior_decision),
        on_behalf_of: o(&r.on_behalf_of),
        link: r.link.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(q: &str) -> Vec<(String, String)> {
        pairs(Some(q))
    }

    #[test]
    fn the_url_is_the_filter() {
        let f = filters(&p(
            "user=alice%40example.com&kind=Workflow&outcome=denied&action=approve&group=ML&limit=9999&since=7d&rule=",
        ))
        .expect("filters");
        assert_eq!(f.user.as_deref(), Some("alice@example.com"));
        assert_eq!(f.kind, Some(Kind::Workflow));
        assert_eq!(f.outcome, Some(Outcome::Denied));
        assert_eq!(f.action, Some(RecordAction::Approve));
        assert_eq!(f.group.as_deref(), Some("ml"), "groups are recorded lower-cased");
        assert_eq!(f.limit, Some(PAGE_MAX), "a page is bounded");
        assert_eq!(f.rule, None, "an empty field is no filter");
        assert!(filters(&p("kind=Deployment")).is_err());
        assert!(filters(&p("token=sgt_x")).is_err(), "unknown names are refused");
    }

    #[test]
    fn hostile_values_are_escaped_everywhere() {
        let evil = "<img src=x onerror=alert(1)>\"'";
        let r = DecisionRecord {
            id: "d1".into(),
            at: "2026-12-03T07:00:00.000Z".into(),
            kind: "Workflow".into(),
            namespace: evil.into(),
            name: evil.into(),
            requester: evil.into(),
            groups: evil.into(),
            rule: Some(evil.into()),
            reason: evil.into(),
            outcome: evil.into(),
            action: evil.into(),
            on_behalf_of: Some(evil.into()),
            ..Default::default()
        };
        let html = table(&[r]) + &form(&p(&format!("user={}", &html::query(&[("x", evil)])[2..])));
        assert!(!html.contains("<img"), "{html}");
        assert!(html.contains("&lt;img src=x onerror=alert(1)&gt;&quot;&#39;"), "{html}");
    }

    #[test]
    fn csv_cells_never_start_a_formula() {
        let r = DecisionRecord {
            reason: "=HYPERLINK(\"http://x\")".into(),
            groups: "@admins".into(),
            requester: "oidc:alice".into(),
            ..Default::default()
        };
        let d = defuse(&r);
        assert_eq!(d.reason, "'=HYPERLINK(\"http://x\")");
        assert_eq!(d.groups, "'@admins");
        assert_eq!(d.requester, "oidc:alice");
    }
}
