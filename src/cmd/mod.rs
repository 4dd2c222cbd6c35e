//! The commands other than `serve` (whose wiring is `app`): one file per command family. Each reads
//! its arguments from `cli`, does its work through the library's modules, and prints; `Denied`
//! turns a denial into exit code 1.

pub mod access;
pub mod audit;
pub mod certs;
pub mod doctor;
pub mod policy;
pub mod review;
pub mod token;

use crate::cli::{AuditCommand, Cli, Command};
use crate::stamp::Verifier;
use crate::store::Store;
use anyhow::Context;
use std::path::Path;
use std::sync::Arc;

/// Run one command line.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(args) => crate::app::serve(&args).await,
        Command::Token(cmd) => token::run(cmd).await,
        Command::Certs(args) => certs::run(&args),
        Command::Audit(AuditCommand::Query(a)) => audit::query(*a).await,
        Command::Audit(AuditCommand::Verify(a)) => audit::verify(a).await,
        Command::Audit(AuditCommand::Who(a)) => audit::who(a).await,
        Command::Audit(AuditCommand::Offboarding(a)) => audit::offboarding(a).await,
        Command::Review(a) => review::command(a).await,
        Command::Policy(cmd) => policy::run(cmd).await,
        Command::Doctor(a) => doctor::run(a).await,
        Command::Access(cmd) => access::run(cmd).await,
    }
}

/// `review` found a denial: exit 1 without an error message of our own.
#[derive(Debug, thiserror::Error)]
#[error("denied")]
pub struct Denied;

/// Open the store a command names, saying which on failure.
async fn open_store(args: &crate::cli::StoreArgs) -> anyhow::Result<Arc<dyn Store>> {
    let location = args.location().map_err(anyhow::Error::msg)?;
    crate::store::open(&location)
        .await
        .with_context(|| format!("opening {}", location.describe()))
}

/// A JWKS from a file or an http(s) URL.
pub(crate) async fn load_jwks(jwks: &str, ca: Option<&Path>) -> anyhow::Result<Verifier> {
    let doc: serde_json::Value = if jwks.starts_with("https://") || jwks.starts_with("http://") {
        cli_client(ca)?
            .get(jwks)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await
            .context("the JWKS URL did not answer JSON")?
    } else {
        serde_json::from_slice(&std::fs::read(jwks).with_context(|| format!("reading {jwks}"))?)
            .context("the JWKS file is not JSON")?
    };
    Ok(Verifier::from_jwks(&doc)?)
}

/// An HTTPS client for the CLI's calls to a server, trusting `ca` when given.
pub(crate) fn cli_client(ca: Option<&Path>) -> anyhow::Result<reqwest::Client> {
    let mut b = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(30))
        .use_rustls_tls();
    if let Some(ca) = ca {
        let pem = std::fs::read(ca).with_context(|| format!("reading {}", ca.display()))?;
        b = b.add_root_certificate(reqwest::Certificate::from_pem(&pem)?);
    }
    Ok(b.build()?)
}
