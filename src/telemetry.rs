//! Logging: a tracing subscriber writing text or JSON lines to stderr, filtered by `RUST_LOG`
//! (default `info`). Never log SCIM bodies or AdmissionReviews: ids, kinds and decisions only.

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
