//! Logging: a tracing subscriber writing text or JSON lines to stderr, filtered by `RUST_LOG`
//! (default `info`). Never log SCIM bodies or AdmissionReviews: ids, kinds and decisions only.

use std::fmt::Write as _;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::EnvFilter;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // A second init (tests, embedding) keeps the first subscriber.
    let _ = match format {
        LogFormat::Text => tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .try_init(),
        LogFormat::Json => json(filter, std::io::stderr).try_init().map_err(Into::into),
    };
}

/// The JSON format: one object a line, each event's fields at its top level. The decision log's
/// anchors are read back from these lines (`audit::chain::anchors`), so they share this one
/// definition.
pub fn json<W>(filter: EnvFilter, writer: W) -> impl tracing::Subscriber + Send + Sync
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .json()
        .flatten_event(true)
        .finish()
}

/// The most of one caller-supplied string a log line carries (a Kubernetes uid is 36 bytes, a
/// namespace at most 63, a name at most 253).
pub const FIELD_MAX: usize = 256;

/// A caller-supplied string as a log field: at most [`FIELD_MAX`] bytes of it, then
/// `…[truncated, N bytes]`; control characters escaped, so a text-format line stays one line.
/// For fields an unauthenticated caller chooses (an AdmissionReview's uid and namespace can be
/// megabytes): a log line must not grow with the input.
pub fn field(s: &str) -> Field<'_> {
    Field(s)
}

/// See [`field`].
#[derive(Debug, Clone, Copy)]
pub struct Field<'a>(&'a str);

impl std::fmt::Display for Field<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let shown = crate::model::decision::prefix(self.0, FIELD_MAX);
        for c in shown.chars() {
            if c.is_control() {
                write!(f, "{}", c.escape_default())?;
            } else {
                f.write_char(c)?;
            }
        }
        if shown.len() < self.0.len() {
            write!(f, "…[truncated, {} bytes]", self.0.len())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_bounded_and_stay_on_one_line() {
        assert_eq!(field("team-a").to_string(), "team-a");
        assert_eq!(field("a\nb\u{1b}[31m").to_string(), "a\\nb\\u{1b}[31m");
        let huge = "é".repeat(100_000);
        let shown = field(&huge).to_string();
        assert!(shown.len() < FIELD_MAX + 40, "{}", shown.len());
        assert!(shown.ends_with("…[truncated, 200000 bytes]"), "{shown}");
    }
}
