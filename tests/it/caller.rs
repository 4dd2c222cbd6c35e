//! Only the API server may ask: with `--admission-client-ca` the admission listener requires a
//! client certificate from that CA naming the clientAuth usage (and, with
//! `--admission-client-name`, for that name), issued
//! by `scimgate certs --api-server-client` together with the kubeconfig and
//! AdmissionConfiguration kube-apiserver reads; decision records say the caller was
//! authenticated.

use crate::actors::kubectl;
use crate::apiserver::ApiServer;
use crate::support::{allowed, scimgate, until, workflow, TestServer, POLICY};
use base64::Engine;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A client trusting `ca`, presenting `identity` (PEM cert + key) when given.
fn client(ca: &[u8], identity: Option<(&Path, &Path)>) -> reqwest::Client {
    let mut b = reqwest::Client::builder()
        .use_rustls_tls()
        .add_root_certificate(reqwest::Certificate::from_pem(ca).expect("ca"))
        .timeout(Duration::from_secs(10));
    if let Some((cert, key)) = identity {
        let mut pem = std::fs::read(cert).expect("cert");
        pem.extend(std::fs::read(key).expect("key"));
        b = b.identity(reqwest::Identity::from_pem(&pem).expect("identity"));
    }
    b.build().expect("client")
}

fn review() -> Value {
    json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "u-1",
            "kind": {"group": "", "version": "v1", "kind": "ConfigMap"},
            "resource": {"group": "", "version": "v1", "resource": "configmaps"},
            "operation": "CREATE",
            "namespace": "team-a",
            "userInfo": {"username": "oidc:alice@example.com"},
            "object": {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x", "namespace": "team-a"}}
        }
    })
}

/// `scimgate certs --api-server-client` into `dir`: the serving pair (for localhost), the CA and
/// the API server's client pair, kubeconfig and AdmissionConfiguration.
fn issue(dir: &Path) {
    let (code, _, err) = scimgate(&[
        "certs".as_ref(),
        "--out".as_ref(),
        dir.as_os_str(),
        "--name".as_ref(),
        "localhost".as_ref(),
        "--api-server-client".as_ref(),
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("--admission-client-name kube-apiserver"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certs_write_what_kube_apiserver_reads() {
    let dir = tempfile::tempdir().expect("tempdir");
    issue(dir.path());
    // The AdmissionConfiguration (k8s.io/apiserver pkg/apis/apiserver/v1/types.go) gives both
    // webhook plugins the kubeconfig (webhookadmission/v1 `WebhookAdmissionConfiguration`).
    let config: Value =
        serde_yaml_ng::from_str(&std::fs::read_to_string(dir.path().join("admission-config.yaml")).expect("read"))
            .expect("yaml");
    assert_eq!(config["apiVersion"], "apiserver.config.k8s.io/v1");
    assert_eq!(config["kind"], "AdmissionConfiguration");
    let plugins: Vec<&str> = config["plugins"]
        .as_array()
        .expect("plugins")
        .iter()
        .map(|p| {
            assert_eq!(p["configuration"]["kind"], "WebhookAdmissionConfiguration");
            assert_eq!(
                p["configuration"]["kubeConfigFile"],
                "/etc/kubernetes/scimgate/admission-kubeconfig.yaml"
            );
            p["name"].as_str().expect("name")
        })
        .collect();
    assert_eq!(plugins, ["ValidatingAdmissionWebhook", "MutatingAdmissionWebhook"]);
    // The kubeconfig's user is found by the Service's host, as kube-apiserver looks it up for a
    // webhook Service on port 443 (pkg/util/webhook/authentication.go: `<svc>.<ns>.svc:443`,
    // then without the port); its client certificate is the one written beside it.
    let kc: Value =
        serde_yaml_ng::from_str(&std::fs::read_to_string(dir.path().join("admission-kubeconfig.yaml")).expect("read"))
            .expect("yaml");
    assert_eq!(kc["kind"], "Config");
    let user = &kc["users"][0];
    assert_eq!(user["name"], "scimgate.scimgate.svc");
    let b64 = |k: &str| {
        base64::engine::general_purpose::STANDARD
            .decode(user["user"][k].as_str().expect(k))
            .expect("base64")
    };
    assert_eq!(
        b64("client-certificate-data"),
        std::fs::read(dir.path().join("apiserver-client.crt")).expect("cert")
    );
    assert_eq!(
        b64("client-key-data"),
        std::fs::read(dir.path().join("apiserver-client.key")).expect("key")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_api_servers_certificate_gets_an_answer() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = dir.path().join("tls");
    issue(&pki);
    let policy = dir.path().join("policy.yaml");
    std::fs::write(&policy, POLICY).expect("policy");
    let config = dir.path().join("config.yaml");
    std::fs::write(&config, "certReloadSeconds: 1\n").expect("config");
    let (ca_file, cert, key) = (pki.join("ca.crt"), pki.join("tls.crt"), pki.join("tls.key"));
    let s = TestServer::start_in(dir, |a| {
        a.policy = Some(policy);
        a.config = Some(config);
        a.tls_cert = Some(cert);
        a.tls_key = Some(key);
        a.admission_client_ca = Some(ca_file);
        a.admission_client_names = vec!["kube-apiserver".into()];
    })
    .await;
    let ca = std::fs::read(pki.join("ca.crt")).expect("ca");
    let apiserver = (pki.join("apiserver-client.crt"), pki.join("apiserver-client.key"));
    let post = async |c: &reqwest::Client| c.post(format!("{}/validate", s.admission)).json(&review()).send().await;

    // No certificate: the handshake fails, nothing is answered.
    let anyone = client(&ca, None);
    let e = post(&anyone).await.expect_err("no client certificate");
    assert!(e.is_connect() || e.is_request(), "{e:?}");
    // The serving certificate, from the same CA, is for serving only (no clientAuth usage).
    let serving = client(&ca, Some((&pki.join("tls.crt"), &pki.join("tls.key"))));
    post(&serving)
        .await
        .expect_err("a serving certificate is no client certificate");
    // The API server's: answered.
    let kube = client(&ca, Some((&apiserver.0, &apiserver.1)));
    let r = post(&kube).await.expect("answered");
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.expect("json");
    assert_eq!(body["response"]["uid"], "u-1");

    // Refusals are counted by reason.
    let metrics = s.metrics().await;
    let counted = |reason: &str| {
        metrics.lines().any(|l| {
            l.starts_with("scimgate_tls_handshakes_failed_total")
                && l.contains("listener=\"admission\"")
                && l.contains(&format!("reason=\"{reason}\""))
                && !l.ends_with(" 0")
        })
    };
    assert!(counted("no-client-certificate"), "{metrics}");
    assert!(counted("client-certificate-rejected"), "{metrics}");

    // Through the emulator, presenting the API server's certificate: decisions are recorded as
    // authenticated.
    let alice = s.create_user("alice@example.com").await;
    let ml = s.create_group("ml", &[&alice]).await;
    s.create_group("pipeline-users", &[&ml]).await;
    let api = ApiServer::at(&s.admission, kube.clone());
    let stamped = allowed(kubectl(&api, "alice@example.com").create(&workflow("team-a")).await).object;
    // The stamp says so too, for whoever verifies it later.
    let jws = stamped["metadata"]["annotations"]["scimgate.io/attestation"]
        .as_str()
        .expect("stamped");
    let payload = jws.split('.').nth(1).expect("jws");
    let claims: Value = serde_json::from_slice(
        &base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, payload).expect("b64"),
    )
    .expect("claims");
    assert_eq!(claims["authenticated"], true, "{claims}");
    let records: Vec<_> = s
        .decisions(1)
        .await
        .into_iter()
        .filter(|d| d.action == "submit")
        .collect();
    assert_eq!(records.len(), 1, "{records:?}");
    assert!(records[0].authenticated, "{records:?}");
    // The emulator without the certificate: the webhook can't be called, and with
    // failurePolicy Fail the create fails.
    let stranger = ApiServer::at(&s.admission, anyone.clone());
    let refused = kubectl(&stranger, "alice@example.com")
        .create(&workflow("team-a"))
        .await
        .expect_err("the webhook is unreachable without the certificate");
    assert!(
        refused.message.contains("failed calling webhook"),
        "{}",
        refused.message
    );

    // A new CA replaces the old within the reload interval: the old client certificate stops
    // being accepted without a restart.
    let other = scimgate::tls::generate(&["localhost".into()], "rotated CA", Some("kube-apiserver")).expect("pki");
    std::fs::write(pki.join("ca.crt.new"), &other.ca_pem).expect("write");
    std::fs::rename(pki.join("ca.crt.new"), pki.join("ca.crt")).expect("swap");
    // (A fresh client each time: a connection already open keeps the handshake it made.)
    let rotated = until(Duration::from_secs(10), async || {
        post(&client(&ca, Some((&apiserver.0, &apiserver.1)))).await.is_err()
    })
    .await;
    assert!(
        rotated.is_some(),
        "the old client certificate is still accepted after the CA changed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pinned_name_refuses_other_certificates_of_the_ca() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = dir.path().join("tls");
    issue(&pki);
    let (ca_file, cert, key) = (pki.join("ca.crt"), pki.join("tls.crt"), pki.join("tls.key"));
    let s = TestServer::start_in(dir, |a| {
        a.tls_cert = Some(cert);
        a.tls_key = Some(key);
        a.admission_client_ca = Some(ca_file);
        a.admission_client_names = vec!["someone-else".into()];
    })
    .await;
    let ca = std::fs::read(pki.join("ca.crt")).expect("ca");
    let kube = client(
        &ca,
        Some((&pki.join("apiserver-client.crt"), &pki.join("apiserver-client.key"))),
    );
    let r = kube
        .post(format!("{}/validate", s.admission))
        .json(&review())
        .send()
        .await;
    assert!(r.is_err(), "a certificate for another name was accepted: {r:?}");
    // The SCIM listener never asks for one.
    assert_eq!(s.get("/Users").await.status, 200);
}

/// A CA of the test's own and certificates it signs, written into a directory.
struct Pki {
    dir: std::path::PathBuf,
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
}

impl Pki {
    fn new(dir: &Path) -> Pki {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
        std::fs::create_dir_all(dir).expect("mkdir");
        let key = KeyPair::generate().expect("key");
        let mut ca = CertificateParams::new(Vec::<String>::new()).expect("params");
        ca.distinguished_name.push(DnType::CommonName, "test CA");
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::DigitalSignature];
        let cert = ca.self_signed(&key).expect("CA");
        std::fs::write(dir.join("ca.crt"), cert.pem()).expect("write");
        Pki {
            dir: dir.to_path_buf(),
            issuer: Issuer::new(ca, key),
        }
    }

    /// `file.crt`/`file.key` for DNS name `name` with these extended key usages (none: no
    /// extension at all).
    fn issue(&self, file: &str, name: &str, usages: Vec<rcgen::ExtendedKeyUsagePurpose>) -> (PathBuf, PathBuf) {
        let key = rcgen::KeyPair::generate().expect("key");
        let mut params = rcgen::CertificateParams::new(vec![name.to_string()]).expect("params");
        params.distinguished_name.push(rcgen::DnType::CommonName, name);
        params.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = usages;
        let cert = params.signed_by(&key, &self.issuer).expect("sign");
        let (crt, pem) = (
            self.dir.join(format!("{file}.crt")),
            self.dir.join(format!("{file}.key")),
        );
        std::fs::write(&crt, cert.pem()).expect("write");
        std::fs::write(&pem, key.serialize_pem()).expect("write");
        (crt, pem)
    }
}

/// Finding 14 of the second security review: rustls accepts a client certificate without the
/// extended key usage extension ("any purpose"); docs/security.md promises the clientAuth usage.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_certificate_must_name_the_client_auth_usage() {
    use rcgen::ExtendedKeyUsagePurpose::{ClientAuth, ServerAuth};
    let dir = tempfile::tempdir().expect("tempdir");
    // Where the test server looks for the CA its own clients trust.
    let pki = Pki::new(&dir.path().join("tls"));
    let serving = pki.issue("serving", "localhost", vec![ServerAuth]);
    // All three for the pinned name, from the pinned CA: only the usage tells them apart.
    let no_usage = pki.issue("no-usage", "kube-apiserver", vec![]);
    let server_only = pki.issue("server-only", "kube-apiserver", vec![ServerAuth]);
    let client_auth = pki.issue("client-auth", "kube-apiserver", vec![ClientAuth]);
    let ca_file = pki.dir.join("ca.crt");
    let ca = std::fs::read(&ca_file).expect("ca");
    let s = TestServer::start_in(dir, |a| {
        a.tls_cert = Some(serving.0.clone());
        a.tls_key = Some(serving.1.clone());
        a.admission_client_ca = Some(ca_file);
        a.admission_client_names = vec!["kube-apiserver".into()];
    })
    .await;
    let post = async |identity: &(PathBuf, PathBuf)| {
        client(&ca, Some((&identity.0, &identity.1)))
            .post(format!("{}/validate", s.admission))
            .json(&review())
            .send()
            .await
    };

    let r = post(&no_usage).await;
    assert!(
        r.is_err(),
        "a certificate without extended key usage was accepted: {r:?}"
    );
    let r = post(&server_only).await;
    assert!(r.is_err(), "a serverAuth-only certificate was accepted: {r:?}");
    let r = post(&client_auth).await.expect("a clientAuth certificate is accepted");
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.expect("json");
    assert_eq!(body["response"]["uid"], "u-1");

    // Both refusals counted as the client certificate's fault.
    let rejected = async || {
        let metrics = s.metrics().await;
        metrics.lines().any(|l| {
            l == r#"scimgate_tls_handshakes_failed_total{listener="admission",reason="client-certificate-rejected"} 2"#
        })
    };
    assert!(
        until(Duration::from_secs(5), rejected).await.is_some(),
        "two handshakes counted as client-certificate-rejected"
    );
}
