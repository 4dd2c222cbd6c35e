//! `scimgate certs`: a CA, a serving certificate for the webhooks' Service and the stamp-signing
//! key, written to a directory; the caBundle printed.

use crate::cli::CertsArgs;
use crate::stamp::Signer;
use crate::tls;

pub fn run(args: &CertsArgs) -> anyhow::Result<()> {
    let mut names = vec![
        format!("{}.{}.svc", args.service, args.namespace),
        format!("{}.{}.svc.cluster.local", args.service, args.namespace),
        format!("{}.{}", args.service, args.namespace),
        args.service.clone(),
    ];
    names.extend(args.names.iter().cloned());
    let generated = tls::generate(&names, &format!("scimgate CA ({})", args.namespace))?;
    let files = tls::write(&args.out, &generated)?;
    // Replicas sharing a PostgreSQL store must sign stamps with one key; an existing key is
    // kept, so re-issuing certificates never rotates it.
    let signing = args.out.join("signing.key");
    Signer::load_or_create(&signing)?;
    use base64::Engine;
    eprintln!(
        "wrote {} and {} (and ca.crt, ca.key, and the stamp-signing key {}) for {}",
        files.cert.display(),
        files.key.display(),
        signing.display(),
        names.join(", ")
    );
    eprintln!("caBundle for the webhook configurations:");
    println!(
        "{}",
        base64::engine::general_purpose::STANDARD.encode(generated.ca_pem.as_bytes())
    );
    Ok(())
}
