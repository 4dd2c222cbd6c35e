//! Identity health: what the directory holds and how current it is, each token with its last
//! use and (for the IdP's `scim` tokens) its last SCIM write, and the replicas writing the
//! decision log with their latest checkpoints.

use super::html::{self, esc, Tab};
use super::{html_response, St};
use crate::model::ResourceType;
use crate::token::TokenUsage;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::Response;
use std::fmt::Write as _;

/// Replicas listed at most (every process start begins a chain: restarts add replicas).
const MAX_REPLICAS: usize = 50;
/// A replica whose latest checkpoint is older than this has probably stopped (a running one
/// checkpoints at least every 10 s while it records, and at shutdown).
const QUIET_SECS: u64 = 15 * 60;

pub(super) async fn page(State(st): State<St>, uri: Uri, headers: HeaderMap) -> Response {
    let signed = match st.session(&headers).await {
        Ok(s) => s,
        Err(r) => return r.page(&uri),
    };
    let mut body = directory(&st);
    body.push_str(&tokens_table(&st.c.tokens.usage()));
    match st.c.store.latest_checkpoints().await {
        Ok(marks) => body.push_str(&replicas(marks)),
        Err(e) => {
            let _ = write!(
                body,
                "<p class=\"error\">Replicas unavailable: {}</p>",
                esc(&e.to_string())
            );
        }
    }
    html_response(
        StatusCode::OK,
        html::page("Identity health", Some(&signed.nav(Tab::Health)), &body),
    )
}

fn directory(st: &St) -> String {
    let snap = st.c.directory.load();
    let users = snap.user_count();
    let active = snap.users().filter(|(_, u)| u.active).count();
    let groups = snap.group_count();
    let agents = snap.count(ResourceType::Agent);
    let changed = match snap.published {
        Some(at) => format!("{} ago", html::age(at.elapsed().as_secs())),
        None => "not since this replica started".into(),
    };
    let f = &st.c.freshness;
    let (sync, stale) = if f.shared() {
        let age = f.age();
        (
            format!(
                "{} ago (limit {}, then admission {})",
                html::age(age.as_secs()),
                html::age(f.max_staleness.as_secs()),
                match f.when_stale {
                    crate::freshness::WhenStale::Deny => "denies",
                    crate::freshness::WhenStale::Allow => "allows with a warning",
                }
            ),
            f.stale_age().is_some(),
        )
    } else {
        (
            "always current: this replica is the store's only writer (embedded store)".into(),
            false,
        )
    };
    let badge = if stale {
        "<span class=\"badge bad\">stale</span>"
    } else {
        "<span class=\"badge ok\">current</span>"
    };
    format!(
        "<section><h2>Directory</h2><table class=\"kv\"><tbody>\
         <tr><th>Users</th><td class=\"num\" id=\"users\">{users}</td><td>{active} active, {} deactivated</td></tr>\
         <tr><th>Groups</th><td class=\"num\" id=\"groups\">{groups}</td><td></td></tr>\
         <tr><th>Agents</th><td class=\"num\">{agents}</td><td></td></tr>\
         <tr><th>Last change</th><td colspan=\"2\">{changed} (generation {}, store commit {})</td></tr>\
         <tr><th>Synced with the store</th><td colspan=\"2\">{badge} {}</td></tr>\
         </tbody></table></section>",
        users - active,
        snap.generation,
        snap.seq,
        esc(&sync)
    )
}

fn time_or(t: Option<&str>, none: &str) -> String {
    t.map(html::when)
        .unwrap_or_else(|| format!("<span class=\"none\">{}</span>", esc(none)))
}

fn tokens_table(tokens: &[TokenUsage]) -> String {
    let mut out = String::from(
        "<section><h2>Tokens</h2><table class=\"tokens\"><thead><tr><th>Name</th><th>Scope</th><th>State</th>\
         <th>Created</th><th>Expires</th><th>Last used</th><th>Last SCIM write</th></tr></thead><tbody>",
    );
    let mut sorted: Vec<&TokenUsage> = tokens.iter().collect();
    // The IdP's tokens first, then by name.
    sorted.sort_by(|a, b| {
        (a.scope != crate::store::Scope::Scim)
            .cmp(&(b.scope != crate::store::Scope::Scim))
            .then_with(|| a.name.cmp(&b.name))
    });
    for t in sorted {
        let state = if t.expired {
            "<span class=\"badge warn\">expired</span>"
        } else {
            "<span class=\"badge ok\">live</span>"
        };
        let write = match t.scope {
            crate::store::Scope::Scim => time_or(t.last_write_at.as_deref(), "never"),
            _ => "<span class=\"none\">—</span>".into(),
        };
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{state}</td><td>{}</td><td>{}</td><td>{}</td><td>{write}</td></tr>",
            esc(&t.name),
            esc(t.scope.as_str()),
            html::when(&t.created_at),
            time_or(t.expires_at.as_deref(), "never"),
            time_or(t.last_used_at.as_deref(), "never"),
        );
    }
    if tokens.is_empty() {
        out.push_str("<tr><td colspan=\"7\" class=\"empty\">No live token.</td></tr>");
    }
    out.push_str(
        "</tbody></table><p class=\"hint\">Live tokens (revoked ones are not accepted and not listed: \
         <code>scimgate token list</code>). This replica's use at once, other replicas' as they flush it.</p></section>",
    );
    out
}

fn replicas(mut marks: Vec<crate::model::ChainMark>) -> String {
    marks.sort_by(|a, b| b.at.cmp(&a.at));
    let mut out = String::from(
        "<section><h2>Replicas</h2><p class=\"hint\">Every process that records decisions keeps a chain in the \
         decision log; its latest signed checkpoint says when it last wrote. This replica's directory sync is above.</p>\
         <table class=\"replicas\"><thead><tr><th>Replica</th><th>Latest checkpoint</th><th>Records</th><th>State</th>\
         </tr></thead><tbody>",
    );
    for m in marks.iter().take(MAX_REPLICAS) {
        let quiet = html::secs_since(&m.at).is_none_or(|s| s > QUIET_SECS);
        let state = if quiet {
            "<span class=\"badge warn\">quiet</span>"
        } else {
            "<span class=\"badge ok\">recording</span>"
        };
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{}</td><td class=\"num\">{}</td><td>{state}</td></tr>",
            esc(&m.replica),
            html::when(&m.at),
            m.seq
        );
    }
    if marks.is_empty() {
        out.push_str("<tr><td colspan=\"4\" class=\"empty\">No checkpoint yet.</td></tr>");
    }
    if marks.len() > MAX_REPLICAS {
        let _ = write!(
            out,
            "<tr><td colspan=\"4\" class=\"note\">and {} older chains</td></tr>",
            marks.len() - MAX_REPLICAS
        );
    }
    out.push_str("</tbody></table></section>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_show_their_use_and_names_are_escaped() {
        let t = |name: &str, scope, write: Option<&str>| TokenUsage {
            id: name.into(),
            name: name.into(),
            scope,
            created_at: "2026-12-01T00:00:00.000Z".into(),
            expires_at: None,
            expired: false,
            last_used_at: write.map(String::from),
            last_write_at: write.map(String::from),
        };
        let html = tokens_table(&[
            t("auditor", crate::store::Scope::Audit, None),
            t("<okta>", crate::store::Scope::Scim, Some("2026-12-02T00:00:00.000Z")),
        ]);
        assert!(html.contains("&lt;okta&gt;") && !html.contains("<okta>"), "{html}");
        assert!(html.contains("2026-12-02T00:00:00.000Z"), "{html}");
        let first = html.find("&lt;okta&gt;").unwrap_or(usize::MAX);
        assert!(
            first < html.find(">auditor<").unwrap_or(0),
            "the IdP's tokens first: {html}"
        );
    }
}
