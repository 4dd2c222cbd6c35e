//! The console (`/console/`): its refusals and headers over plain HTTPS, and the pages in a real
//! headless browser — Debian's `chromium` driven through `chromedriver` (WebDriver) — with a
//! screenshot of each page saved under `target/console-screenshots/`. Without chromium and
//! chromedriver the browser test says it was skipped and why; `scripts/test.sh` installs them.

use crate::actors::kubectl;
use crate::support::{allowed, refused, scimgate, until, World};
use fantoccini::{Client, ClientBuilder, Locator};
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const SESSION: &str = "__Host-scimgate-session";
const SIGNIN: &str = "__Host-scimgate-signin";
/// A group name a page would run as script if it were not escaped.
const HOSTILE_GROUP: &str = "<script>alert('x')</script>";
/// The name of the console's audit token.
const AUDITOR: &str = "console-auditor";

fn run(ns: &str, name: &str) -> Value {
    json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "Workflow", "metadata": {"name": name, "namespace": ns},
        "spec": {"entrypoint": "main", "templates": [{"name": "main", "container": {"image": "busybox"}}]}})
}

/// A world with a story to show: alice's run `team-a/train-1` whose stored stamp was then
/// edited to name bob (forged), eve (in a group named like a script) refused in `team-a` and
/// dry-run-denied in `legacy-x`; and an audit token the server already accepts.
async fn story() -> (World, String) {
    let w = World::new().await;
    let eve = w.s.create_user("eve@example.com").await;
    w.s.create_group(HOSTILE_GROUP, &[&eve]).await;
    let created = allowed(
        kubectl(&w.api, "alice@example.com")
            .create(&run("team-a", "train-1"))
            .await,
    )
    .object;
    let mut forged = w.api.stored(&created).expect("stored");
    forged["metadata"]["annotations"]["scimgate.io/submitted-by"] = json!("bob@example.com");
    w.api.put(forged);
    refused(
        kubectl(&w.api, "eve@example.com")
            .create(&run("team-a", "eves-1"))
            .await,
    );
    allowed(
        kubectl(&w.api, "eve@example.com")
            .create(&run("legacy-x", "eves-2"))
            .await,
    );
    assert_eq!(w.decisions(3).await.len(), 3);
    let (code, out, err) = scimgate(&[
        "token".as_ref(),
        "create".as_ref(),
        "--data-dir".as_ref(),
        w.s.dir.path().as_os_str(),
        "--name".as_ref(),
        AUDITOR.as_ref(),
        "--scope".as_ref(),
        "audit".as_ref(),
    ]);
    assert_eq!(code, 0, "{err}");
    let token = out.lines().last().unwrap_or_default().to_string();
    let api = w.s.base.replace("/scim/v2", "/api/v1/decisions");
    let accepted = until(Duration::from_secs(10), async || {
        w.s.client
            .get(&api)
            .bearer_auth(&token)
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
    })
    .await;
    assert!(accepted.is_some(), "the server takes up the new token");
    (w, token)
}

fn origin(w: &World) -> String {
    w.s.base.replace("/scim/v2", "")
}

/// A client that shows redirects instead of following them.
fn no_redirects(w: &World) -> reqwest::Client {
    let ca = std::fs::read(w.s.dir.path().join("tls/ca.crt")).expect("ca");
    reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&ca).expect("pem"))
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client")
}

fn set_cookie(r: &reqwest::Response, name: &str) -> Option<String> {
    r.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(&format!("{name}=")))
        .map(String::from)
}

fn cookie_value(set_cookie: &str) -> String {
    set_cookie
        .split(';')
        .next()
        .and_then(|kv| kv.split_once('='))
        .map(|(_, v)| v.to_string())
        .unwrap_or_default()
}

/// Sign in as a browser would: fetch the form (its CSRF cookie), post the token back with it.
async fn sign_in(w: &World, c: &reqwest::Client, token: &str) -> reqwest::Response {
    let o = origin(w);
    let form = c.get(format!("{o}/console/sign-in")).send().await.expect("form");
    let csrf = cookie_value(&set_cookie(&form, SIGNIN).expect("csrf cookie"));
    c.post(format!("{o}/console/sign-in"))
        .header("origin", &o)
        .header("cookie", format!("{SIGNIN}={csrf}"))
        .form(&[
            ("token", token),
            ("csrf", csrf.as_str()),
            ("next", "/console/decisions"),
        ])
        .send()
        .await
        .expect("sign in")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_refuses_strangers_and_forgeries_and_ends_with_the_token() {
    let (w, token) = story().await;
    let c = no_redirects(&w);
    let o = origin(&w);
    // No cookie: a page sends you to sign in (coming back afterwards), a download is refused.
    let r = c
        .get(format!("{o}/console/decisions?outcome=denied"))
        .send()
        .await
        .expect("page");
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        r.headers()["location"],
        "/console/sign-in?next=%2Fconsole%2Fdecisions%3Foutcome%3Ddenied"
    );
    let r = c.get(format!("{o}/console/decisions.csv")).send().await.expect("csv");
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    // A made-up session id is no session.
    let r = c
        .get(format!("{o}/console/health"))
        .header("cookie", format!("{SESSION}=bm90LWEtc2Vzc2lvbg"))
        .send()
        .await
        .expect("page");
    assert_eq!(r.status(), StatusCode::SEE_OTHER);

    // The sign-in page, and every console response: the headers that keep it to itself.
    let r = c.get(format!("{o}/console/sign-in")).send().await.expect("form");
    assert_eq!(r.status(), StatusCode::OK);
    for (h, v) in [
        ("x-content-type-options", "nosniff"),
        ("referrer-policy", "no-referrer"),
        ("cache-control", "no-store"),
        ("x-frame-options", "DENY"),
    ] {
        assert_eq!(r.headers()[h], v, "{h}");
    }
    let csp = r.headers()["content-security-policy"]
        .to_str()
        .expect("csp")
        .to_string();
    assert!(csp.starts_with("default-src 'self'; frame-ancestors 'none'"), "{csp}");
    let csrf_cookie = set_cookie(&r, SIGNIN).expect("csrf cookie");
    assert!(
        csrf_cookie.contains("; Path=/; Secure; HttpOnly; SameSite=Strict"),
        "{csrf_cookie}"
    );
    let csrf = cookie_value(&csrf_cookie);
    let body = r.text().await.expect("html");
    assert!(body.contains(&format!("name=\"csrf\" value=\"{csrf}\"")), "{body}");
    assert!(!body.contains("<script"), "no script at all: {body}");

    // A right token posted without the form's CSRF cookie, or from another origin: refused.
    let post = |origin: &str, cookie: Option<&str>, form_csrf: &str, tok: &str| {
        let mut rb = c
            .post(format!("{o}/console/sign-in"))
            .header("origin", origin)
            .form(&[("token", tok), ("csrf", form_csrf)]);
        if let Some(v) = cookie {
            rb = rb.header("cookie", format!("{SIGNIN}={v}"));
        }
        rb.send()
    };
    let r = post(&o, None, &csrf, &token).await.expect("post");
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert!(set_cookie(&r, SESSION).is_none());
    let r = post(&o, Some(&csrf), "another", &token).await.expect("post");
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert!(set_cookie(&r, SESSION).is_none());
    let r = post("https://evil.example", Some(&csrf), &csrf, &token)
        .await
        .expect("post");
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert!(set_cookie(&r, SESSION).is_none());
    // A wrong token, and the IdP's scim token: refused, no session.
    let r = sign_in(&w, &c, "sgt_not-a-token").await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(set_cookie(&r, SESSION).is_none());
    assert!(r
        .text()
        .await
        .expect("html")
        .contains("that token is unknown, revoked or expired"));
    let r = sign_in(&w, &c, &w.s.token).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert!(set_cookie(&r, SESSION).is_none());
    assert!(r
        .text()
        .await
        .expect("html")
        .contains("this token has scope &#39;scim&#39;"));

    // The audit token: a session cookie, to the page asked for.
    let r = sign_in(&w, &c, &token).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(r.headers()["location"], "/console/decisions");
    let session_cookie = set_cookie(&r, SESSION).expect("session cookie");
    assert!(
        session_cookie.contains("; Path=/; Secure; HttpOnly; SameSite=Strict"),
        "{session_cookie}"
    );
    let session = cookie_value(&session_cookie);
    assert_eq!(session.len(), 43, "256 bits, base64url");
    let get = |path: String| {
        c.get(format!("{o}{path}"))
            .header("cookie", format!("{SESSION}={session}"))
            .send()
    };
    let r = get("/console/decisions?outcome=denied".into()).await.expect("page");
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.headers()["content-security-policy"]
        .to_str()
        .is_ok_and(|v| v.contains("frame-ancestors 'none'")));
    let page = r.text().await.expect("html");
    assert!(page.contains("eves-1") && !page.contains("train-1"), "{page}");
    assert!(
        page.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;"),
        "escaped: {page}"
    );
    assert!(!page.contains(HOSTILE_GROUP));
    // The export: the same filters, CSV with the CLI's columns.
    let r = get("/console/decisions.csv?namespace=team-a".into())
        .await
        .expect("csv");
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.headers()["content-disposition"]
        .to_str()
        .is_ok_and(|v| v.starts_with("attachment")));
    let csv = r.text().await.expect("csv");
    assert!(csv.starts_with("id,at,request_uid,"), "{csv}");
    assert_eq!(csv.lines().count(), 3, "two decisions in team-a: {csv}");
    let r = get("/console/decisions.jsonl?outcome=dry-run-deny".into())
        .await
        .expect("jsonl");
    let lines: Vec<Value> = r
        .text()
        .await
        .expect("jsonl")
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect();
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["name"], "eves-2");
    // A bad filter is the reader's mistake, said on the page.
    let r = get("/console/decisions?kind=Deployment".into()).await.expect("page");
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    // Sign-out needs the session's CSRF token.
    let r = c
        .post(format!("{o}/console/sign-out"))
        .header("origin", &o)
        .header("cookie", format!("{SESSION}={session}"))
        .form(&[("csrf", "guess")])
        .send()
        .await
        .expect("sign out");
    assert_eq!(r.status(), StatusCode::FORBIDDEN);

    // Revoking the token ends its sessions within seconds.
    let (code, _, err) = scimgate(&[
        "token".as_ref(),
        "revoke".as_ref(),
        "--data-dir".as_ref(),
        w.s.dir.path().as_os_str(),
        AUDITOR.as_ref(),
    ]);
    assert_eq!(code, 0, "{err}");
    let ended = until(Duration::from_secs(10), async || {
        get("/console/health".into())
            .await
            .is_ok_and(|r| r.status() == StatusCode::SEE_OTHER)
    })
    .await;
    assert!(ended.is_some(), "a revoked token's session ends");
}

/// chromedriver on a port of its choosing, and a headless chromium session through it.
struct Browser {
    driver: std::process::Child,
    client: Client,
}

impl Browser {
    /// `None` (said on stderr) when chromium or chromedriver is not installed.
    async fn start(test: &str) -> Option<Browser> {
        if !Path::new(CHROMIUM).exists() || !Path::new(CHROMEDRIVER).exists() {
            eprintln!(
                "skipped {test}: {CHROMIUM} and {CHROMEDRIVER} are needed (apt-get install chromium chromium-driver; \
                 `bash scripts/test.sh` installs them when run as root)"
            );
            return None;
        }
        // Through sh, closing the descriptors a caller left open without close-on-exec (the
        // lock `flock … cargo` holds): a chromedriver outliving a killed test must not hold it.
        let mut driver = std::process::Command::new("/bin/sh")
            .args([
                "-c",
                "exec 3>&- 4>&- 5>&- 6>&- 7>&- 8>&- 9>&-; exec \"$0\" --port=0",
                CHROMEDRIVER,
            ])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("chromedriver");
        let port = driver_port(&mut driver);
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            json!({"binary": CHROMIUM, "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                "--disable-dev-shm-usage", "--window-size=1400,1000", "--no-first-run",
                "--disable-background-networking", "--disable-component-update"]}),
        );
        // The server's certificate is signed by the CA the test server made: trusted for this
        // session only.
        caps.insert("acceptInsecureCerts".into(), json!(true));
        let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
            .expect("a chromium session");
        Some(Browser { driver, client })
    }

    async fn stop(self) {
        let _ = self.client.clone().close().await;
    }
}

/// Also when a test fails: chromedriver (and with it chromium) ends with the test.
impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// The port chromedriver says it started on ("… started successfully on port 38179.").
fn driver_port(driver: &mut std::process::Child) -> u16 {
    let mut out = driver.stdout.take().expect("stdout");
    let mut seen = Vec::new();
    let mut buf = [0u8; 256];
    let started = std::time::Instant::now();
    while started.elapsed() < Duration::from_secs(20) {
        let n = out.read(&mut buf).expect("read chromedriver");
        if n == 0 {
            break;
        }
        seen.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&seen);
        if let Some(rest) = text.split("started successfully on port ").nth(1) {
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            if rest.len() > digits.len() {
                return digits.parse().expect("port");
            }
        }
    }
    panic!("chromedriver did not start: {}", String::from_utf8_lossy(&seen));
}

fn screenshots() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    let dir = target.join("console-screenshots");
    std::fs::create_dir_all(&dir).expect("screenshot dir");
    dir
}

async fn shot(b: &Client, name: &str) {
    let png = b.screenshot().await.expect("screenshot");
    assert!(png.starts_with(b"\x89PNG"), "a PNG");
    std::fs::write(screenshots().join(name), png).expect("write screenshot");
}

/// What the page shows, as text, runs of white space (table cells, lines) made one space.
async fn text(b: &Client) -> String {
    let t = b
        .find(Locator::Css("body"))
        .await
        .expect("body")
        .text()
        .await
        .expect("text");
    t.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Every resource the page loaded, and the page itself, came from `origin`; the page runs no
/// script of its own.
async fn same_origin_only(b: &Client, origin: &str) {
    let v = b
        .execute(
            "return {origin: location.origin, scripts: document.scripts.length, \
             resources: performance.getEntriesByType('resource').map(e => e.name), \
             navigation: performance.getEntriesByType('navigation').map(e => e.name)}",
            vec![],
        )
        .await
        .expect("script");
    assert_eq!(v["origin"], origin);
    assert_eq!(v["scripts"], 0, "no script elements");
    let urls: Vec<&str> = v["resources"]
        .as_array()
        .into_iter()
        .chain(v["navigation"].as_array())
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    assert!(!urls.is_empty());
    for u in urls {
        assert!(u.starts_with(&format!("{origin}/")), "{u} is not from {origin}");
    }
}

/// Wait (a few seconds at most) for the page a click navigates to.
async fn wait_path(b: &Client, prefix: &str) {
    let arrived = until(Duration::from_secs(10), async || path(b).await.starts_with(prefix)).await;
    assert!(arrived.is_some(), "still at {}, not {prefix}", path(b).await);
}

async fn path(b: &Client) -> String {
    let u = b.current_url().await.expect("url");
    match u.query() {
        Some(q) => format!("{}?{q}", u.path()),
        None => u.path().to_string(),
    }
}

/// Fill the sign-in form with `token` and send it.
async fn sign_in_with(b: &Client, token: &str) {
    let field = b.wait().for_element(Locator::Id("token")).await.expect("token field");
    field.clear().await.expect("clear");
    field.send_keys(token).await.expect("type");
    b.find(Locator::Css("form.signin button"))
        .await
        .expect("button")
        .click()
        .await
        .expect("submit");
}

async fn session_cookie(b: &Client) -> Option<fantoccini::cookies::Cookie<'static>> {
    b.get_all_cookies()
        .await
        .expect("cookies")
        .into_iter()
        .find(|c| c.name() == SESSION)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_in_a_real_browser() {
    let Some(browser) = Browser::start("the_console_in_a_real_browser").await else {
        return;
    };
    let (w, token) = story().await;
    let o = origin(&w);
    let b = &browser.client;

    // No cookie: the decision log sends the browser to sign in.
    b.goto(&format!("{o}/console/decisions?outcome=denied"))
        .await
        .expect("goto");
    assert!(path(b).await.starts_with("/console/sign-in?next="), "{}", path(b).await);
    assert!(text(b).await.contains("Sign in to the scimgate console"));
    same_origin_only(b, &o).await;
    shot(b, "console-sign-in.png").await;

    // A wrong token, then the IdP's scim token: refused, with no session cookie.
    sign_in_with(b, "sgt_not-a-token").await;
    let t = text(b).await;
    assert!(t.contains("Refused: that token is unknown, revoked or expired."), "{t}");
    assert!(session_cookie(b).await.is_none());
    shot(b, "console-wrong-token.png").await;
    sign_in_with(b, &w.s.token).await;
    let t = text(b).await;
    assert!(
        t.contains("Refused: this token has scope 'scim'; the console needs a token with scope 'audit'."),
        "{t}"
    );
    assert!(session_cookie(b).await.is_none());

    // The audit token: signed in, back at the page first asked for.
    sign_in_with(b, &token).await;
    wait_path(b, "/console/decisions").await;
    assert_eq!(path(b).await, "/console/decisions?outcome=denied");
    let c = session_cookie(b).await.expect("a session cookie");
    assert_eq!(c.http_only(), Some(true));
    assert_eq!(c.secure(), Some(true));
    assert_eq!(format!("{:?}", c.same_site()), "Some(Strict)");
    assert_eq!(c.path(), Some("/"));
    assert!(
        !path(b).await.contains(&token) && !text(b).await.contains(&token),
        "the token is in no URL or page"
    );

    // A filtered decision list, the filter typed into the form: the URL is the link to it.
    let user = b.find(Locator::Css("input[name=user]")).await.expect("user filter");
    user.send_keys("eve@example.com").await.expect("type");
    b.find(Locator::Css("form.filters button"))
        .await
        .expect("filter")
        .click()
        .await
        .expect("click");
    let filtered = until(Duration::from_secs(10), async || path(b).await.contains("user=")).await;
    assert!(filtered.is_some(), "{}", path(b).await);
    let url = path(b).await;
    assert!(
        url.contains("user=eve%40example.com") && url.contains("outcome=denied"),
        "{url}"
    );
    let t = text(b).await;
    assert!(t.contains("team-a/eves-1") && t.contains("denied"), "{t}");
    assert!(
        !t.contains("train-1") && !t.contains("eves-2"),
        "only eve's denial: {t}"
    );
    // The group named like a script is shown as text, and runs nothing.
    assert!(t.contains(HOSTILE_GROUP), "{t}");
    same_origin_only(b, &o).await;
    shot(b, "console-decisions.png").await;
    // Paging is a link too: one per page, the older one after it.
    b.goto(&format!("{o}/console/decisions?limit=1")).await.expect("goto");
    let older = b.find(Locator::Css("a[rel=next]")).await.expect("older page link");
    let href = older.attr("href").await.expect("href").expect("href");
    assert!(href.contains("after="), "{href}");
    let newest = text(b).await;
    older.click().await.expect("click");
    let paged = until(Duration::from_secs(10), async || path(b).await.contains("after=")).await;
    assert!(paged.is_some(), "{}", path(b).await);
    assert_ne!(text(b).await, newest, "the next page shows another decision");

    // One run's chain of custody: the log's submit, and the live object's stamp shown forged.
    b.goto(&format!("{o}/console/decisions?namespace=team-a&outcome=allowed"))
        .await
        .expect("goto");
    b.find(Locator::LinkText("team-a/train-1"))
        .await
        .expect("run link")
        .click()
        .await
        .expect("click");
    wait_path(b, "/console/run").await;
    assert_eq!(
        path(b).await,
        "/console/run?kind=Workflow&namespace=team-a&name=train-1"
    );
    let t = text(b).await;
    assert!(t.contains("Stamps on the live object"), "{t}");
    assert!(t.contains("forged scimgate.io/submitted-by was altered"), "{t}");
    assert!(
        t.contains("submitted by bob@example.com"),
        "what the edited annotation claims: {t}"
    );
    assert!(
        t.contains("submitted oidc:alice@example.com team-submit allowed"),
        "the decision log says who really submitted, under which rule: {t}"
    );
    let badge = b
        .find(Locator::Css("table.stamps .badge.bad"))
        .await
        .expect("forged badge");
    assert_eq!(badge.text().await.expect("text"), "forged");
    same_origin_only(b, &o).await;
    shot(b, "console-custody.png").await;

    // Denials over time, drawn on the server.
    b.goto(&format!("{o}/console/denials?window=24h")).await.expect("goto");
    let t = text(b).await;
    assert!(t.contains("1 denied decisions since"), "{t}");
    assert_eq!(b.find_all(Locator::Css("svg.chart")).await.expect("charts").len(), 3);
    assert!(!b
        .find_all(Locator::Css("svg.chart rect"))
        .await
        .expect("bars")
        .is_empty());
    same_origin_only(b, &o).await;
    shot(b, "console-denials.png").await;

    // Identity health.
    b.goto(&format!("{o}/console/health")).await.expect("goto");
    let t = text(b).await;
    assert_eq!(
        b.find(Locator::Id("users"))
            .await
            .expect("users")
            .text()
            .await
            .expect("n"),
        "4"
    );
    assert_eq!(
        b.find(Locator::Id("groups"))
            .await
            .expect("groups")
            .text()
            .await
            .expect("n"),
        "4"
    );
    assert!(t.contains("4 active, 0 deactivated"), "{t}");
    assert!(
        t.contains("Last SCIM write") && t.contains("scim") && t.contains(AUDITOR),
        "{t}"
    );
    assert!(t.contains("Replicas"), "{t}");
    same_origin_only(b, &o).await;
    shot(b, "console-health.png").await;

    // Sign out: the session is gone, the pages send the browser to sign in again.
    b.find(Locator::Css("form.signout button"))
        .await
        .expect("sign out")
        .click()
        .await
        .expect("click");
    wait_path(b, "/console/sign-in").await;
    b.goto(&format!("{o}/console/health")).await.expect("goto");
    assert!(path(b).await.starts_with("/console/sign-in"), "{}", path(b).await);
    // A cookie the browser still had would not help either: the server forgot the session.
    if let Some(old) = session_cookie(b).await {
        assert_eq!(old.value(), "", "cleared");
    }
    browser.stop().await;
}
