//! The console's HTML: escaping (every value a page shows passes through [`esc`] — names,
//! reasons, annotations and group names are attacker-controlled), query-string encoding, and the
//! page shell every page is drawn in. No script anywhere: the pages are plain HTML and CSS.

use std::fmt::Write as _;

/// `s` made safe for HTML text and for attribute values in double or single quotes.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            // Control characters render as nothing useful and can confuse a reader's terminal
            // when the page is saved; NUL is never valid in HTML.
            c if c.is_control() && c != '\n' && c != '\t' => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

/// A query string (`a=1&b=2`, no `?`) from pairs, each key and value percent-encoded.
pub fn query(pairs: &[(&str, &str)]) -> String {
    let mut s = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        s.append_pair(k, v);
    }
    s.finish()
}

/// `path?query`, escaped for an `href` attribute.
pub fn href(path: &str, pairs: &[(&str, &str)]) -> String {
    let q = query(pairs);
    if q.is_empty() {
        esc(path)
    } else {
        esc(&format!("{path}?{q}"))
    }
}

/// The pages in the navigation bar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tab {
    Decisions,
    Run,
    Denials,
    Health,
    None,
}

/// Who is signed in, for the navigation bar and its sign-out form.
pub struct Nav<'a> {
    pub token_name: &'a str,
    /// The session's CSRF token, posted back by the sign-out form.
    pub csrf: &'a str,
    pub tab: Tab,
}

/// A whole page: `body` is HTML already (built with [`esc`]); `title` is text.
pub fn page(title: &str, nav: Option<&Nav<'_>>, body: &str) -> String {
    let mut out = String::with_capacity(body.len() + 2048);
    let _ = write!(
        out,
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{} · scimgate</title>\
         <link rel=\"stylesheet\" href=\"/console/assets/console.css\">\
         <link rel=\"icon\" href=\"/console/assets/favicon.svg\" type=\"image/svg+xml\">\
         </head><body>",
        esc(title)
    );
    out.push_str("<header><a class=\"brand\" href=\"/console/decisions\">scimgate</a>");
    if let Some(nav) = nav {
        out.push_str("<nav>");
        for (tab, path, label) in [
            (Tab::Decisions, "/console/decisions", "Decisions"),
            (Tab::Run, "/console/run", "Chain of custody"),
            (Tab::Denials, "/console/denials", "Denials"),
            (Tab::Health, "/console/health", "Identity health"),
        ] {
            let current = if tab == nav.tab { " aria-current=\"page\"" } else { "" };
            let _ = write!(out, "<a href=\"{path}\"{current}>{label}</a>");
        }
        let _ = write!(
            out,
            "</nav><form class=\"signout\" method=\"post\" action=\"/console/sign-out\">\
             <span class=\"who\">signed in with token <b>{}</b></span>\
             <input type=\"hidden\" name=\"csrf\" value=\"{}\">\
             <button type=\"submit\">Sign out</button></form>",
            esc(nav.token_name),
            esc(nav.csrf)
        );
    }
    let _ = write!(out, "</header><main><h1>{}</h1>", esc(title));
    out.push_str(body);
    out.push_str("</main></body></html>\n");
    out
}

/// A short, human age: `42 s`, `5 min`, `3 h`, `2 d`.
pub fn age(secs: u64) -> String {
    match secs {
        0..=119 => format!("{secs} s"),
        120..=7199 => format!("{} min", secs / 60),
        7200..=172_799 => format!("{} h", secs / 3600),
        _ => format!("{} d", secs / 86_400),
    }
}

/// Seconds from the RFC 3339 time `at` to now (`None` if it does not parse or is ahead).
pub fn secs_since(at: &str) -> Option<u64> {
    let t = chrono::DateTime::parse_from_rfc3339(at).ok()?;
    u64::try_from((chrono::Utc::now() - t.with_timezone(&chrono::Utc)).num_seconds()).ok()
}

/// `at` with its age: `2026-12-03T07:00:00.000Z (5 min ago)`, escaped.
pub fn when(at: &str) -> String {
    match secs_since(at) {
        Some(s) => format!("{} <span class=\"age\">({} ago)</span>", esc(at), age(s)),
        None => esc(at),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup_quotes_and_controls() {
        assert_eq!(
            esc("<script>alert('x')</script> & \"q\"\u{0}"),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;q&quot;\u{FFFD}"
        );
        assert_eq!(
            href("/console/decisions", &[("user", "a&b \"c\"")]),
            "/console/decisions?user=a%26b+%22c%22"
        );
        let p = page("<x>", None, "");
        assert!(p.contains("<title>&lt;x&gt; · scimgate</title>"), "{p}");
        assert!(!p.contains("<script"), "{p}");
    }

    #[test]
    fn ages() {
        assert_eq!(age(5), "5 s");
        assert_eq!(age(600), "10 min");
        assert_eq!(age(4 * 3600), "4 h");
        assert_eq!(age(3 * 86_400), "3 d");
    }
}
