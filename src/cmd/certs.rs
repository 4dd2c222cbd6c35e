//! `scimgate certs`: a CA, a serving certificate for the webhooks' Service and the stamp-signing
//! key, written to a directory; the caBundle printed. With `--api-server-client`, also the API
//! server's client certificate and the two files kube-apiserver reads to present it.

use crate::cli::CertsArgs;
use crate::stamp::Signer;
use crate::tls;
use base64::Engine;
use serde_json::json;

/// The kubeconfig kube-apiserver reads for its webhook client credentials.
pub const KUBECONFIG: &str = "admission-kubeconfig.yaml";
/// The `--admission-control-config-file` naming it.
pub const ADMISSION_CONFIG: &str = "admission-config.yaml";

pub fn run(args: &CertsArgs) -> anyhow::Result<()> {
    let service_host = format!("{}.{}.svc", args.service, args.namespace);
    let mut names = vec![
        service_host.clone(),
        format!("{service_host}.cluster.local"),
        format!("{}.{}", args.service, args.namespace),
        args.service.clone(),
    ];
    names.extend(args.names.iter().cloned());
    let client = args.api_server_client.as_deref();
    let generated = tls::generate(&names, &format!("scimgate CA ({})", args.namespace), client)?;
    let files = tls::write(&args.out, &generated)?;
    // Replicas sharing a PostgreSQL store must sign stamps with one key; an existing key is
    // kept, so re-issuing certificates never rotates it.
    let signing = args.out.join("signing.key");
    Signer::load_or_create(&signing)?;
    eprintln!(
        "wrote {} and {} (and ca.crt, ca.key, and the stamp-signing key {}) for {}",
        files.cert.display(),
        files.key.display(),
        signing.display(),
        names.join(", ")
    );
    if let (Some(name), Some((cert, key))) = (client, &generated.client) {
        let write = |file: &str, doc: &serde_json::Value, secret: bool| -> anyhow::Result<()> {
            let path = args.out.join(file);
            tls::write_file(&path, serde_yaml_ng::to_string(doc)?.as_bytes(), secret)
                .map_err(|e| anyhow::anyhow!("writing {}: {e}", path.display()))
        };
        write(KUBECONFIG, &kubeconfig(&service_host, cert, key), true)?;
        write(
            ADMISSION_CONFIG,
            &admission_config(&args.control_plane_dir.join(KUBECONFIG).to_string_lossy()),
            false,
        )?;
        eprintln!(
            "wrote the API server's client certificate {} ({name}), {KUBECONFIG} and {ADMISSION_CONFIG}: copy both \
             to {} on every control-plane node, start kube-apiserver with \
             --admission-control-config-file={}, and serve with --admission-client-ca ca.crt \
             --admission-client-name {name}",
            tls::CLIENT_CERT,
            args.control_plane_dir.display(),
            args.control_plane_dir.join(ADMISSION_CONFIG).display(),
        );
    }
    eprintln!("caBundle for the webhook configurations:");
    println!(
        "{}",
        base64::engine::general_purpose::STANDARD.encode(generated.ca_pem.as_bytes())
    );
    Ok(())
}

/// A kubeconfig whose one user is named after the webhook Service's host. kube-apiserver picks
/// webhook credentials by that name: `<service>.<namespace>.svc:<port>`, then the same without
/// `:443`, then `*.`-prefixed suffixes (k8s.io/apiserver `pkg/util/webhook/authentication.go`,
/// `defaultAuthenticationInfoResolver.clientConfig`); our Service listens on 443.
fn kubeconfig(service_host: &str, cert_pem: &str, key_pem: &str) -> serde_json::Value {
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s.as_bytes());
    json!({
        "apiVersion": "v1",
        "kind": "Config",
        "users": [{
            "name": service_host,
            "user": {
                "client-certificate-data": b64(cert_pem),
                "client-key-data": b64(key_pem),
            },
        }],
    })
}

/// The `AdmissionConfiguration` (apiserver.config.k8s.io/v1, `pkg/apis/apiserver/v1/types.go`)
/// giving both webhook plugins a `WebhookAdmissionConfiguration` that names the kubeconfig
/// (`pkg/admission/plugin/webhook/config/apis/webhookadmission/v1`).
fn admission_config(kubeconfig_path: &str) -> serde_json::Value {
    let plugin = |name: &str| {
        json!({
            "name": name,
            "configuration": {
                "apiVersion": "apiserver.config.k8s.io/v1",
                "kind": "WebhookAdmissionConfiguration",
                "kubeConfigFile": kubeconfig_path,
            },
        })
    };
    json!({
        "apiVersion": "apiserver.config.k8s.io/v1",
        "kind": "AdmissionConfiguration",
        "plugins": [plugin("ValidatingAdmissionWebhook"), plugin("MutatingAdmissionWebhook")],
    })
}
