//! The operators' web console, on the SCIM listener under `/console/`: the decision log
//! (filtered, paged, exported), one run's chain of custody with its stamps verified, denials
//! over time, and identity health. Plain HTML and CSS drawn on the server, every asset compiled
//! into the binary, no script at all.
//!
//! Sign-in is with an `audit`-scoped token, POSTed once (never in a URL): the server keeps the
//! session — a random 256-bit id in the `__Host-` cookie, mapped in memory to the token's id —
//! and forgets it when it expires, on sign-out, or as soon as the token is revoked or expires.
//! The only writes (sign-in, sign-out) are POSTs that must come from this origin (`Origin`) and
//! carry a CSRF token: double-submit for sign-in, bound to the session for sign-out. Every
//! response carries a strict Content-Security-Policy and is never cached.

mod custody;
mod decisions;
mod denials;
mod health;
mod html;
mod svg;

use crate::directory::Snapshot;
use crate::freshness::Freshness;
use crate::stamp::Verifier;
use crate::store::{Scope, Store};
use crate::token::{Denied, Tokens};
use arc_swap::ArcSwap;
use axum::extract::{DefaultBodyLimit, Form, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use base64::Engine;
use rand::RngCore;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use subtle::ConstantTimeEq;

/// The session cookie. `__Host-`: the browser keeps it only if it is Secure, has `Path=/` and no
/// `Domain`, so no other host (a sibling subdomain) can set or shadow it.
const SESSION_COOKIE: &str = "__Host-scimgate-session";
/// The sign-in form's double-submit CSRF cookie.
const SIGNIN_COOKIE: &str = "__Host-scimgate-signin";
/// A session ends this long after its last request…
const IDLE: Duration = Duration::from_secs(30 * 60);
/// …and this long after sign-in, whatever happens.
const ABSOLUTE: Duration = Duration::from_secs(8 * 3600);
/// Sessions held at most; past it the oldest goes (each one needs a valid audit token to make).
const MAX_SESSIONS: usize = 4096;
/// What a sign-in or sign-out form may send.
const FORM_LIMIT: usize = 8 * 1024;

/// What the console reads: the decision log and tokens in the store, the live directory and its
/// freshness, the stamp keys, and the cluster when scimgate can read it.
#[derive(Clone)]
pub struct Console {
    pub store: Arc<dyn Store>,
    pub tokens: Tokens,
    pub directory: Arc<ArcSwap<Snapshot>>,
    pub freshness: Arc<Freshness>,
    pub verifier: Verifier,
    /// `None` without Kubernetes API access: the chain of custody then comes from the log only.
    pub client: Option<kube::Client>,
}

struct Session {
    token_id: String,
    token_name: String,
    /// Posted back by the sign-out form.
    csrf: String,
    created: Instant,
    seen: Instant,
}

#[derive(Clone)]
struct St {
    c: Console,
    /// By the SHA-256 of the cookie's value: the lookup's timing says nothing about live ids.
    sessions: Arc<Mutex<HashMap<[u8; 32], Session>>>,
}

/// The console's routes, at their full paths (merged into the SCIM listener's router).
pub fn router(c: Console) -> Router {
    let st = St {
        c,
        sessions: Arc::new(Mutex::new(HashMap::new())),
    };
    Router::new()
        .route("/console", get(home))
        .route("/console/", get(home))
        .route("/console/sign-in", get(sign_in_page).post(sign_in))
        .route("/console/sign-out", post(sign_out))
        .route("/console/decisions", get(decisions::page))
        .route("/console/decisions.csv", get(decisions::csv))
        .route("/console/decisions.jsonl", get(decisions::jsonl))
        .route("/console/run", get(custody::page))
        .route("/console/denials", get(denials::page))
        .route("/console/health", get(health::page))
        .route("/console/assets/console.css", get(css))
        .route("/console/assets/favicon.svg", get(favicon))
        .fallback_service(get(not_found).post(not_found))
        .layer(DefaultBodyLimit::max(FORM_LIMIT))
        .layer(axum::middleware::map_response(headers))
        .with_state(st)
}

/// The security headers of every console response.
async fn headers(mut r: Response) -> Response {
    let h = r.headers_mut();
    for (k, v) in [
        (
            "content-security-policy",
            "default-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'; object-src 'none'",
        ),
        ("x-content-type-options", "nosniff"),
        ("referrer-policy", "no-referrer"),
        ("cache-control", "no-store"),
        ("x-frame-options", "DENY"),
        ("cross-origin-opener-policy", "same-origin"),
        ("cross-origin-resource-policy", "same-origin"),
    ] {
        h.insert(k, HeaderValue::from_static(v));
    }
    r
}

async fn not_found() -> Response {
    html_response(
        StatusCode::NOT_FOUND,
        html::page(
            "Not found",
            None,
            "<p>No such console page. <a href=\"/console/decisions\">The decision log</a>.</p>",
        ),
    )
}

async fn css() -> Response {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        include_str!("assets/console.css"),
    )
        .into_response()
}

async fn favicon() -> Response {
    (
        [(header::CONTENT_TYPE, "image/svg+xml")],
        include_bytes!("assets/favicon.svg").as_slice(),
    )
        .into_response()
}

fn html_response(status: StatusCode, body: String) -> Response {
    (status, [(header::CONTENT_TYPE, "text/html; charset=utf-8")], body).into_response()
}

/// 256 random bits, base64url.
fn random_id() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn digest(s: &str) -> [u8; 32] {
    Sha256::digest(s.as_bytes()).into()
}

fn eq(a: &str, b: &str) -> bool {
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// The value of cookie `name` in the request (every `Cookie` header: HTTP/2 may split them).
fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

fn set_cookie(name: &str, value: &str, max_age: Option<u64>) -> String {
    let age = max_age.map(|a| format!("; Max-Age={a}")).unwrap_or_default();
    format!("{name}={value}; Path=/; Secure; HttpOnly; SameSite=Strict{age}")
}

/// `r` with a `Set-Cookie` header for each of `cookies` (from `set_cookie`). Their values are
/// random base64url ids or empty, always valid header values; one that were not would be left out
/// rather than fail the page.
fn with_cookies(mut r: Response, cookies: &[String]) -> Response {
    for c in cookies {
        if let Ok(v) = HeaderValue::from_str(c) {
            r.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    r
}

/// Whether a POST comes from a page of this origin: its `Origin` is `https://` and the host the
/// request was sent to. A browser sends `Origin` with every POST, but as `null` when the page's
/// referrer policy is `no-referrer` (ours is): then, or without one, only the browser's own
/// `Sec-Fetch-Site: same-origin` will do (a page cannot set that header; another site's form
/// gets `cross-site`).
fn same_origin(headers: &HeaderMap, uri: &Uri) -> bool {
    let host = uri.authority().map(|a| a.as_str().to_string()).or_else(|| {
        headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .map(String::from)
    });
    let Some(host) = host else {
        return false;
    };
    let host = host.strip_suffix(":443").unwrap_or(&host).to_ascii_lowercase();
    match headers.get(header::ORIGIN).and_then(|o| o.to_str().ok()) {
        Some(origin) if origin != "null" => origin.to_ascii_lowercase() == format!("https://{host}"),
        _ => headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()) == Some("same-origin"),
    }
}

/// Who a page is for: the signed-in token's name and the session's CSRF token.
pub(crate) struct Signed {
    pub token_name: String,
    pub csrf: String,
}

impl Signed {
    pub fn nav(&self, tab: html::Tab) -> html::Nav<'_> {
        html::Nav {
            token_name: &self.token_name,
            csrf: &self.csrf,
            tab,
        }
    }
}

/// Why a request gets no page: no session, or one that ended (expired, signed out, its token
/// revoked or expired). Sign in (again).
pub(crate) enum Refused {
    SignIn,
}

impl Refused {
    /// A page: back to the sign-in page, coming back here afterwards.
    fn page(self, uri: &Uri) -> Response {
        match self {
            Refused::SignIn => {
                let next = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/console/decisions");
                Redirect::to(&format!("/console/sign-in?{}", html::query(&[("next", next)]))).into_response()
            }
        }
    }

    /// A download or other non-page: a status, no redirect.
    fn status(self) -> Response {
        match self {
            Refused::SignIn => (StatusCode::UNAUTHORIZED, "sign in to the console first\n").into_response(),
        }
    }
}

fn unavailable(e: &str) -> Response {
    html_response(
        StatusCode::SERVICE_UNAVAILABLE,
        html::page(
            "Unavailable",
            None,
            &format!(
                "<p class=\"error\">The identity store cannot be read: {}</p>",
                html::esc(e)
            ),
        ),
    )
}

impl St {
    /// The session the request's cookie names, if it is live and its token still is (not
    /// revoked, not expired): checked on every request against the tokens the server accepts,
    /// which it re-reads from the store every few seconds (`token::REFRESH`).
    async fn session(&self, headers: &HeaderMap) -> Result<Signed, Refused> {
        let id = cookie(headers, SESSION_COOKIE).ok_or(Refused::SignIn)?;
        let key = digest(&id);
        let token_id = {
            let mut sessions = self.sessions.lock().map_err(|_| Refused::SignIn)?;
            let now = Instant::now();
            match sessions.get(&key) {
                Some(s) if now.duration_since(s.seen) < IDLE && now.duration_since(s.created) < ABSOLUTE => {
                    s.token_id.clone()
                }
                Some(_) => {
                    sessions.remove(&key);
                    return Err(Refused::SignIn);
                }
                None => return Err(Refused::SignIn),
            }
        };
        // The server's live tokens (re-read from the store every few seconds): no store access.
        let live = self
            .c
            .tokens
            .usage()
            .iter()
            .any(|t| t.id == token_id && t.scope == Scope::Audit && !t.expired);
        let mut sessions = self.sessions.lock().map_err(|_| Refused::SignIn)?;
        if !live {
            // Revoked or expired since sign-in: this session, and every other on the token, end.
            sessions.retain(|_, s| s.token_id != token_id);
            return Err(Refused::SignIn);
        }
        let s = sessions.get_mut(&key).ok_or(Refused::SignIn)?;
        s.seen = Instant::now();
        Ok(Signed {
            token_name: s.token_name.clone(),
            csrf: s.csrf.clone(),
        })
    }

    fn open(&self, token_id: String, token_name: String) -> String {
        let id = random_id();
        let now = Instant::now();
        if let Ok(mut sessions) = self.sessions.lock() {
            sessions.retain(|_, s| now.duration_since(s.seen) < IDLE && now.duration_since(s.created) < ABSOLUTE);
            if sessions.len() >= MAX_SESSIONS {
                if let Some(oldest) = sessions.iter().min_by_key(|(_, s)| s.seen).map(|(k, _)| *k) {
                    sessions.remove(&oldest);
                }
            }
            sessions.insert(
                digest(&id),
                Session {
                    token_id,
                    token_name,
                    csrf: random_id(),
                    created: now,
                    seen: now,
                },
            );
        }
        id
    }
}

async fn home(State(st): State<St>, headers: HeaderMap) -> Response {
    match st.session(&headers).await {
        Ok(_) => Redirect::to("/console/decisions").into_response(),
        Err(Refused::SignIn) => Redirect::to("/console/sign-in").into_response(),
    }
}

/// Where to go after signing in: a console page of this origin, nothing else.
fn next_page(next: Option<&str>) -> String {
    match next {
        Some(n)
            if n.starts_with("/console/")
                && !n.starts_with("/console/sign-")
                && !n.contains("//")
                && !n.contains('\\')
                && n.chars().all(|c| c.is_ascii_graphic()) =>
        {
            n.to_string()
        }
        _ => "/console/decisions".to_string(),
    }
}

#[derive(serde::Deserialize, Default)]
struct SignInQuery {
    next: Option<String>,
}

async fn sign_in_page(State(st): State<St>, headers: HeaderMap, Query(q): Query<SignInQuery>) -> Response {
    if st.session(&headers).await.is_ok() {
        return Redirect::to(&next_page(q.next.as_deref())).into_response();
    }
    sign_in_form(StatusCode::OK, None, &next_page(q.next.as_deref()))
}

/// The sign-in form, with a fresh double-submit CSRF token in a cookie and in the form.
fn sign_in_form(status: StatusCode, error: Option<&str>, next: &str) -> Response {
    let csrf = random_id();
    let error = error
        .map(|e| format!("<p class=\"error\" role=\"alert\">{}</p>", html::esc(e)))
        .unwrap_or_default();
    let body = format!(
        "{error}<form class=\"signin\" method=\"post\" action=\"/console/sign-in\">\
         <label for=\"token\">Token with scope <code>audit</code></label>\
         <input id=\"token\" name=\"token\" type=\"password\" autocomplete=\"off\" required autofocus>\
         <input type=\"hidden\" name=\"csrf\" value=\"{}\">\
         <input type=\"hidden\" name=\"next\" value=\"{}\">\
         <button type=\"submit\">Sign in</button></form>\
         <p class=\"hint\">Make one with <code>scimgate token create --name NAME --scope audit</code>. \
         It is sent once, in this form's body; the console keeps a session for it (a cookie this \
         origin alone can read, ended when the token is revoked).</p>",
        html::esc(&csrf),
        html::esc(next)
    );
    with_cookies(
        html_response(status, html::page("Sign in to the scimgate console", None, &body)),
        &[set_cookie(SIGNIN_COOKIE, &csrf, Some(3600))],
    )
}

async fn sign_in(
    State(st): State<St>,
    uri: Uri,
    headers: HeaderMap,
    form: Result<Form<HashMap<String, String>>, axum::extract::rejection::FormRejection>,
) -> Response {
    let Ok(Form(form)) = form else {
        return sign_in_form(StatusCode::BAD_REQUEST, Some("The sign-in form was not readable."), "");
    };
    let next = next_page(form.get("next").map(String::as_str));
    if !same_origin(&headers, &uri) {
        return sign_in_form(
            StatusCode::FORBIDDEN,
            Some("Refused: the sign-in did not come from this console's own page."),
            &next,
        );
    }
    let csrf_ok = match (cookie(&headers, SIGNIN_COOKIE), form.get("csrf")) {
        (Some(c), Some(f)) => !c.is_empty() && eq(&c, f),
        _ => false,
    };
    if !csrf_ok {
        return sign_in_form(
            StatusCode::FORBIDDEN,
            Some("Refused: the form had expired or did not come from this page. Try again."),
            &next,
        );
    }
    let presented = form.get("token").map(|t| t.trim()).unwrap_or_default();
    let name = match st.c.tokens.check(presented, Scope::Audit) {
        Ok(name) => name,
        Err(Denied::Scope(s)) => {
            tracing::info!(scope = s.as_str(), "console sign-in refused: token of another scope");
            return sign_in_form(
                StatusCode::FORBIDDEN,
                Some(&format!(
                    "Refused: this token has scope '{}'; the console needs a token with scope 'audit'.",
                    s.as_str()
                )),
                &next,
            );
        }
        Err(_) => {
            tracing::info!("console sign-in refused: unknown, revoked or expired token");
            return sign_in_form(
                StatusCode::UNAUTHORIZED,
                Some("Refused: that token is unknown, revoked or expired."),
                &next,
            );
        }
    };
    // The token's id, for ending the session when the token is revoked (names may repeat).
    let hash = crate::token::hash(presented);
    let record = match st.c.store.tokens().await {
        Ok(all) => all
            .into_iter()
            .find(|t| bool::from(t.hash.ct_eq(&hash)) && t.revoked_at.is_none() && t.scope == Scope::Audit),
        Err(e) => return unavailable(&e.to_string()),
    };
    let Some(record) = record else {
        return sign_in_form(
            StatusCode::UNAUTHORIZED,
            Some("Refused: that token is unknown, revoked or expired."),
            &next,
        );
    };
    let session = st.open(record.id, name.clone());
    tracing::info!(token = %name, "console sign-in");
    with_cookies(
        Redirect::to(&next).into_response(),
        &[
            set_cookie(SESSION_COOKIE, &session, Some(ABSOLUTE.as_secs())),
            set_cookie(SIGNIN_COOKIE, "", Some(0)),
        ],
    )
}

async fn sign_out(
    State(st): State<St>,
    uri: Uri,
    headers: HeaderMap,
    form: Result<Form<HashMap<String, String>>, axum::extract::rejection::FormRejection>,
) -> Response {
    let csrf = form.ok().and_then(|Form(f)| f.get("csrf").cloned()).unwrap_or_default();
    let signed = match st.session(&headers).await {
        Ok(s) => s,
        Err(r) => return r.page(&uri),
    };
    if !same_origin(&headers, &uri) || !eq(&signed.csrf, &csrf) {
        return html_response(
            StatusCode::FORBIDDEN,
            html::page(
                "Refused",
                Some(&signed.nav(html::Tab::None)),
                "<p class=\"error\">Refused: the sign-out did not come from this console's own page.</p>",
            ),
        );
    }
    if let (Some(id), Ok(mut sessions)) = (cookie(&headers, SESSION_COOKIE), st.sessions.lock()) {
        sessions.remove(&digest(&id));
    }
    with_cookies(
        Redirect::to("/console/sign-in").into_response(),
        &[set_cookie(SESSION_COOKIE, "", Some(0))],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_console_pages_are_places_to_go_back_to() {
        assert_eq!(
            next_page(Some("/console/run?kind=Workflow")),
            "/console/run?kind=Workflow"
        );
        for bad in [
            "https://evil.example/",
            "//evil.example/console/",
            "/console//evil",
            "/console/\\evil",
            "/scim/v2/Users",
            "/console/sign-out",
            "/console/x y",
        ] {
            assert_eq!(next_page(Some(bad)), "/console/decisions", "{bad}");
        }
    }

    #[test]
    fn origin_must_be_this_host_over_https() {
        let uri: Uri = "/console/sign-in".parse().expect("uri");
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("localhost:9443"));
        assert!(!same_origin(&h, &uri), "neither Origin nor Sec-Fetch-Site");
        h.insert(header::ORIGIN, HeaderValue::from_static("https://localhost:9443"));
        assert!(same_origin(&h, &uri));
        h.insert(header::ORIGIN, HeaderValue::from_static("https://evil.example"));
        assert!(!same_origin(&h, &uri));
        h.insert(header::ORIGIN, HeaderValue::from_static("http://localhost:9443"));
        assert!(!same_origin(&h, &uri));
        h.insert(header::ORIGIN, HeaderValue::from_static("null"));
        assert!(!same_origin(&h, &uri), "an opaque origin alone proves nothing");
        h.insert("sec-fetch-site", HeaderValue::from_static("cross-site"));
        assert!(!same_origin(&h, &uri));
        h.insert("sec-fetch-site", HeaderValue::from_static("same-origin"));
        assert!(
            same_origin(&h, &uri),
            "no-referrer: Origin null, and the browser says same-origin"
        );
        h.remove(header::ORIGIN);
        assert!(same_origin(&h, &uri));
        let h2: Uri = "https://scimgate.example.com:443/console/sign-in".parse().expect("uri");
        let mut h = HeaderMap::new();
        h.insert(header::ORIGIN, HeaderValue::from_static("https://scimgate.example.com"));
        assert!(same_origin(&h, &h2), "HTTP/2's :authority, the default port left out");
    }

    #[test]
    fn cookies_are_read_from_every_header() {
        let mut h = HeaderMap::new();
        h.append(header::COOKIE, HeaderValue::from_static("a=1; b=2"));
        h.append(header::COOKIE, HeaderValue::from_static("__Host-scimgate-session=xyz"));
        assert_eq!(cookie(&h, SESSION_COOKIE).as_deref(), Some("xyz"));
        assert_eq!(cookie(&h, "b").as_deref(), Some("2"));
        assert_eq!(cookie(&h, "c"), None);
        assert_eq!(
            set_cookie(SESSION_COOKIE, "v", Some(60)),
            "__Host-scimgate-session=v; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age=60"
        );
    }
}
