//! Denials over time: the last day, week or month of `denied` (or `dry-run-deny`) decisions in
//! time buckets, stacked by namespace, by group and by rule (the five largest of each, the rest
//! as "other"), drawn on the server as SVG; and the counts as tables.

use super::html::{self, esc, Tab};
use super::svg::{self, Series};
use super::{html_response, St};
use crate::audit::query::MAX_LIMIT;
use crate::audit::DecisionRecord;
use crate::model::DecisionQuery;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::Response;
use std::collections::HashMap;
use std::fmt::Write as _;

/// What a record counts under, for one dimension.
type Keys<'a> = Box<dyn Fn(&DecisionRecord) -> Vec<String> + 'a>;

/// Series drawn per chart before the rest become "other".
const TOP: usize = 5;
/// Rows of each count table.
const TABLE_ROWS: usize = 10;

#[derive(serde::Deserialize, Default)]
pub(super) struct Params {
    window: Option<String>,
    outcome: Option<String>,
}

/// A window: its name, its length in seconds and its number of buckets.
const WINDOWS: [(&str, i64, i64); 3] = [("24h", 86_400, 24), ("7d", 7 * 86_400, 28), ("30d", 30 * 86_400, 30)];

pub(super) async fn page(
    State(st): State<St>,
    uri: Uri,
    headers: HeaderMap,
    q: Result<Query<Params>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let signed = match st.session(&headers).await {
        Ok(s) => s,
        Err(r) => return r.page(&uri),
    };
    let p = q.map(|Query(p)| p).unwrap_or_default();
    let (window, span, buckets) = WINDOWS
        .iter()
        .copied()
        .find(|(w, _, _)| Some(*w) == p.window.as_deref())
        .unwrap_or(WINDOWS[1]);
    let outcome = match p.outcome.as_deref() {
        Some("dry-run-deny") => "dry-run-deny",
        _ => "denied",
    };
    let now = chrono::Utc::now();
    let from = now - chrono::Duration::seconds(span);
    let q = DecisionQuery {
        outcome: Some(outcome.into()),
        from: Some(crate::model::clock::text(from)),
        limit: MAX_LIMIT,
        ..Default::default()
    };
    let mut body = controls(window, outcome);
    let records = match st.c.store.query_decisions(&q).await {
        Ok(r) => r,
        Err(e) => {
            let _ = write!(
                body,
                "<p class=\"error\">The decision log is unavailable: {}</p>",
                esc(&e.to_string())
            );
            return html_response(
                StatusCode::SERVICE_UNAVAILABLE,
                html::page("Denials", Some(&signed.nav(Tab::Denials)), &body),
            );
        }
    };
    body.push_str(&charts(&records, from, span, buckets, outcome));
    html_response(
        StatusCode::OK,
        html::page("Denials", Some(&signed.nav(Tab::Denials)), &body),
    )
}

fn controls(window: &str, outcome: &str) -> String {
    let mut out = String::from("<nav class=\"windows\">");
    for (w, _, _) in WINDOWS {
        for o in ["denied", "dry-run-deny"] {
            let current = if w == window && o == outcome {
                " aria-current=\"page\""
            } else {
                ""
            };
            let _ = write!(
                out,
                "<a href=\"{}\"{current}>{} · {}</a> ",
                html::href("/console/denials", &[("window", w), ("outcome", o)]),
                esc(w),
                esc(o)
            );
        }
    }
    out.push_str("</nav>");
    out
}

/// Which bucket `at` falls in.
fn bucket(at: &str, from: chrono::DateTime<chrono::Utc>, width: i64, buckets: i64) -> Option<usize> {
    let t = chrono::DateTime::parse_from_rfc3339(at)
        .ok()?
        .with_timezone(&chrono::Utc);
    let i = (t - from).num_seconds().div_euclid(width.max(1));
    (0..buckets).contains(&i).then_some(i as usize)
}

/// The series of one dimension: the `TOP` values with the most denials, then "other".
fn by(
    records: &[(usize, &DecisionRecord)],
    buckets: usize,
    keys: impl Fn(&DecisionRecord) -> Vec<String>,
) -> (Vec<Series>, Vec<(String, u32)>) {
    let mut counts: HashMap<String, Vec<u32>> = HashMap::new();
    for (b, r) in records {
        for k in keys(r) {
            let c = counts.entry(k).or_insert_with(|| vec![0; buckets]);
            if let Some(x) = c.get_mut(*b) {
                *x += 1;
            }
        }
    }
    let mut totals: Vec<(String, u32)> = counts.iter().map(|(k, c)| (k.clone(), c.iter().sum())).collect();
    totals.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    let mut series: Vec<Series> = totals
        .iter()
        .take(TOP)
        .map(|(k, _)| Series {
            name: k.clone(),
            counts: counts.get(k).cloned().unwrap_or_default(),
        })
        .collect();
    if totals.len() > TOP {
        let mut other = vec![0; buckets];
        for (k, _) in totals.iter().skip(TOP) {
            for (o, c) in other.iter_mut().zip(counts.get(k).into_iter().flatten()) {
                *o += c;
            }
        }
        series.push(Series {
            name: "other".into(),
            counts: other,
        });
    }
    (series, totals)
}

fn charts(
    records: &[DecisionRecord],
    from: chrono::DateTime<chrono::Utc>,
    span: i64,
    buckets: i64,
    outcome: &str,
) -> String {
    let width = span / buckets.max(1);
    let placed: Vec<(usize, &DecisionRecord)> = records
        .iter()
        .filter_map(|r| bucket(&r.at, from, width, buckets).map(|b| (b, r)))
        .collect();
    let n = usize::try_from(buckets).unwrap_or(0);
    let labels: Vec<String> = (0..buckets)
        .map(|i| {
            let t = from + chrono::Duration::seconds(i * width);
            if width < 86_400 {
                t.format("%m-%d %H:%M").to_string()
            } else {
                t.format("%m-%d").to_string()
            }
        })
        .collect();
    let mut out = String::new();
    let _ = write!(
        out,
        "<p class=\"summary\"><b class=\"total\">{}</b> {} decisions since {} (UTC buckets of {}).</p>",
        placed.len(),
        esc(outcome),
        esc(&crate::model::clock::text(from)),
        html::age(u64::try_from(width).unwrap_or(0))
    );
    if records.len() as u32 >= MAX_LIMIT {
        let _ = write!(
            out,
            "<p class=\"note\">Only the newest {MAX_LIMIT} are counted: the earlier buckets are short.</p>"
        );
    }
    let nonempty = |s: &str| {
        if s.is_empty() {
            "(none)".to_string()
        } else {
            s.to_string()
        }
    };
    let dims: [(&str, Keys<'_>); 3] = [
        ("namespace", Box::new(|r: &DecisionRecord| vec![nonempty(&r.namespace)])),
        (
            "group",
            Box::new(|r: &DecisionRecord| {
                let g: Vec<String> = r
                    .groups
                    .split(',')
                    .map(str::trim)
                    .filter(|g| !g.is_empty())
                    .map(String::from)
                    .collect();
                if g.is_empty() {
                    vec!["(in no group)".into()]
                } else {
                    g
                }
            }),
        ),
        (
            "rule",
            Box::new(|r: &DecisionRecord| vec![nonempty(r.rule.as_deref().unwrap_or_default())]),
        ),
    ];
    for (dim, keys) in dims {
        let (series, totals) = by(&placed, n, keys);
        let _ = write!(out, "<section class=\"chart\" id=\"by-{dim}\"><h2>By {dim}</h2>");
        out.push_str(&svg::stacked_bars(
            &format!("{outcome} decisions over time by {dim}"),
            &labels,
            &series,
        ));
        out.push_str(&svg::legend(&series));
        let _ = write!(
            out,
            "<table class=\"counts\"><thead><tr><th>{dim}</th><th>{outcome}</th></tr></thead><tbody>"
        );
        for (k, c) in totals.iter().take(TABLE_ROWS) {
            let _ = write!(out, "<tr><td>{}</td><td class=\"num\">{c}</td></tr>", esc(k));
        }
        if totals.is_empty() {
            out.push_str("<tr><td colspan=\"2\" class=\"empty\">none</td></tr>");
        }
        out.push_str("</tbody></table></section>");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn denials_are_bucketed_and_stacked_by_the_largest() {
        let from = chrono::DateTime::parse_from_rfc3339("2026-12-01T00:00:00Z")
            .expect("t")
            .with_timezone(&chrono::Utc);
        let r = |at: &str, ns: &str, groups: &str| DecisionRecord {
            at: at.into(),
            namespace: ns.into(),
            groups: groups.into(),
            outcome: "denied".into(),
            ..Default::default()
        };
        let records = vec![
            r("2026-12-01T00:30:00.000Z", "team-a", "ml,pipeline-users"),
            r("2026-12-01T01:30:00.000Z", "team-a", ""),
            r("2026-12-01T01:40:00.000Z", "<evil>", "ml"),
            r("2026-11-30T23:00:00.000Z", "before", ""),
        ];
        let html = charts(&records, from, 86_400, 24, "denied");
        assert!(
            html.contains("<b class=\"total\">3</b>"),
            "the one before the window is left out: {html}"
        );
        assert!(
            html.contains("<tr><td>team-a</td><td class=\"num\">2</td></tr>"),
            "{html}"
        );
        assert!(html.contains("<tr><td>ml</td><td class=\"num\">2</td></tr>"), "{html}");
        assert!(html.contains("(in no group)"), "{html}");
        assert!(!html.contains("<evil>") && html.contains("&lt;evil&gt;"), "{html}");
        assert_eq!(bucket("2026-12-01T01:30:00.000Z", from, 3600, 24), Some(1));
        assert_eq!(bucket("2026-12-02T00:00:00.000Z", from, 3600, 24), None);
    }
}
