//! Time, in the one textual form scimgate stores and shows it: RFC 3339, UTC, milliseconds (the
//! form SCIM's `meta.created`/`lastModified` use).

use chrono::{DateTime, SecondsFormat, Utc};

/// Now, as text.
pub fn now() -> String {
    text(Utc::now())
}

/// `t` as text.
pub fn text(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

#[cfg(test)]
mod tests {
    #[test]
    fn millisecond_utc_text() {
        let t = chrono::DateTime::parse_from_rfc3339("2026-12-01T10:00:00.123456+01:00")
            .expect("time")
            .with_timezone(&chrono::Utc);
        assert_eq!(super::text(t), "2026-12-01T09:00:00.123Z");
    }
}
