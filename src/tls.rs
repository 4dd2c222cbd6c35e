//! TLS: rustls server configs with HTTP/2 and HTTP/1.1 ALPN, serving certificates that reload
//! when their files change (Kubernetes Secret volumes swap a symlink, so we poll and compare a
//! content hash rather than watch inodes), and the CA + serving certificate that `--dev` and
//! `scimgate certs` generate.

use crate::metrics::{Listener, Metrics};
use arc_swap::ArcSwap;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("reading {path}: {cause}")]
    Read { path: PathBuf, cause: std::io::Error },
    #[error("writing {path}: {cause}")]
    Write { path: PathBuf, cause: std::io::Error },
    #[error("{path}: {why}")]
    Pem { path: PathBuf, why: String },
    #[error("certificate and key don't form a usable pair: {0}")]
    Key(rustls::Error),
    #[error("generating certificates: {0}")]
    Generate(rcgen::Error),
}

// The cause is part of each message, not a `source`: `{:#}` would print it twice.
impl From<rustls::Error> for Error {
    fn from(e: rustls::Error) -> Self {
        Error::Key(e)
    }
}

impl From<rcgen::Error> for Error {
    fn from(e: rcgen::Error) -> Self {
        Error::Generate(e)
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Where a serving certificate and its key live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|cause| Error::Read {
        path: path.to_path_buf(),
        cause,
    })
}

fn load(files: &CertFiles) -> Result<(Arc<CertifiedKey>, [u8; 32])> {
    let cert_pem = read(&files.cert)?;
    let key_pem = read(&files.key)?;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| Error::Pem {
            path: files.cert.clone(),
            why: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(Error::Pem {
            path: files.cert.clone(),
            why: "no certificate in file".into(),
        });
    }
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| Error::Pem {
        path: files.key.clone(),
        why: e.to_string(),
    })?;
    let provider = rustls::crypto::ring::default_provider();
    let certified = CertifiedKey::from_der(certs, key, &provider)?;
    let mut h = Sha256::new();
    h.update(&cert_pem);
    h.update(&key_pem);
    Ok((Arc::new(certified), h.finalize().into()))
}

/// Where a serving certificate's expiry is reported: the metrics, for each listener it serves.
#[derive(Debug, Clone)]
pub struct ExpiryReport {
    pub metrics: Metrics,
    pub listeners: Vec<Listener>,
}

/// A certificate resolver whose certificate can be swapped while connections are served.
#[derive(Debug)]
pub struct Reloading {
    files: CertFiles,
    current: ArcSwap<CertifiedKey>,
    hash: ArcSwap<[u8; 32]>,
    report: Option<ExpiryReport>,
}

impl ResolvesServerCert for Reloading {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

impl Reloading {
    pub fn open(files: CertFiles) -> Result<Arc<Reloading>> {
        Self::open_reporting(files, None)
    }

    /// Like [`open`](Self::open), and the expiry of the chain served is reported to `report`
    /// now and at every reload that swaps it.
    pub fn open_reporting(files: CertFiles, report: Option<ExpiryReport>) -> Result<Arc<Reloading>> {
        let (key, hash) = load(&files)?;
        let reloading = Reloading {
            files,
            current: ArcSwap::new(key),
            hash: ArcSwap::new(Arc::new(hash)),
            report,
        };
        reloading.report_expiry();
        Ok(Arc::new(reloading))
    }

    /// When the chain served now stops being valid: the earliest notAfter among its
    /// certificates, in Unix seconds (`None` if one can't be read).
    pub fn not_after(&self) -> Option<i64> {
        let current = self.current.load();
        current.cert.iter().map(|c| not_after(c)).min().flatten()
    }

    fn report_expiry(&self) {
        let Some(report) = &self.report else { return };
        match self.not_after() {
            Some(t) => {
                for &l in &report.listeners {
                    report.metrics.tls_certificate_expiry(l, t);
                }
            }
            None => tracing::warn!(
                file = %self.files.cert.display(),
                "the serving certificate's expiry can't be read; it is not in the metrics"
            ),
        }
    }

    /// Re-read the files; swap in the new pair if their content changed. A broken new pair keeps
    /// the old one serving. Returns whether a new certificate was loaded.
    pub fn reload(&self) -> Result<bool> {
        let (key, hash) = load(&self.files)?;
        if *self.hash.load_full() == hash {
            return Ok(false);
        }
        self.current.store(key);
        self.hash.store(Arc::new(hash));
        self.report_expiry();
        Ok(true)
    }

    /// Poll every `every` until `shutdown` fires.
    pub async fn watch(self: Arc<Self>, every: Duration, shutdown: tokio::sync::watch::Receiver<bool>) {
        poll("serving certificate", &self.files.cert, every, shutdown, || {
            self.reload()
        })
        .await
    }

    /// HTTP/2 and HTTP/1.1; with `clients`, a client certificate it accepts is required.
    pub fn server_config(self: &Arc<Self>, clients: Option<Arc<ClientAuth>>) -> Arc<rustls::ServerConfig> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap_or_else(|_| rustls::ServerConfig::builder());
        let builder = match clients {
            Some(c) => builder.with_client_cert_verifier(c),
            None => builder.with_no_client_auth(),
        };
        let mut cfg = builder.with_cert_resolver(self.clone());
        cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Arc::new(cfg)
    }
}

/// A certificate's notAfter in Unix seconds, read from its DER: Certificate ::= SEQUENCE {
/// tbsCertificate SEQUENCE { [0] version OPTIONAL, serialNumber, signature, issuer, validity
/// SEQUENCE { notBefore, notAfter }, … }, … } (RFC 5280 §4.1). `None` for anything else.
pub fn not_after(der: &[u8]) -> Option<i64> {
    /// One DER element: its tag, its content and what follows it.
    fn element(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
        let (&tag, rest) = input.split_first()?;
        let (&first, rest) = rest.split_first()?;
        let (len, rest) = if first < 0x80 {
            (usize::from(first), rest)
        } else {
            let n = usize::from(first & 0x7f);
            if n == 0 || n > 4 || rest.len() < n {
                return None;
            }
            let (bytes, rest) = rest.split_at(n);
            (bytes.iter().fold(0usize, |acc, &b| (acc << 8) | usize::from(b)), rest)
        };
        if rest.len() < len {
            return None;
        }
        let (content, rest) = rest.split_at(len);
        Some((tag, content, rest))
    }
    const SEQUENCE: u8 = 0x30;
    let (SEQUENCE, cert, _) = element(der)? else {
        return None;
    };
    let (SEQUENCE, tbs, _) = element(cert)? else {
        return None;
    };
    let (tag, _, mut rest) = element(tbs)?;
    if tag == 0xa0 {
        (_, _, rest) = element(rest)?; // the version came first; this is the serial number
    }
    let (_, _, rest) = element(rest)?; // signature algorithm
    let (_, _, rest) = element(rest)?; // issuer
    let (SEQUENCE, validity, _) = element(rest)? else {
        return None;
    };
    let (_, _, after) = element(validity)?; // notBefore
    let (tag, time, _) = element(after)?;
    let text = std::str::from_utf8(time).ok()?;
    // UTCTime: YYMMDDHHMMSSZ, years 1950–2049; GeneralizedTime: YYYYMMDDHHMMSSZ.
    let (year, rest) = match tag {
        0x17 => {
            let yy: i32 = text.get(..2)?.parse().ok()?;
            (if yy >= 50 { 1900 + yy } else { 2000 + yy }, text.get(2..)?)
        }
        0x18 => (text.get(..4)?.parse().ok()?, text.get(4..)?),
        _ => return None,
    };
    if rest.len() != 11 || !rest.ends_with('Z') {
        return None;
    }
    let num = |at: usize| -> Option<u32> { rest.get(at..at + 2)?.parse().ok() };
    let at = chrono::NaiveDate::from_ymd_opt(year, num(0)?, num(2)?)?.and_hms_opt(num(4)?, num(6)?, num(8)?)?;
    Some(at.and_utc().timestamp())
}

/// Call `reload` every `every` until `shutdown` fires, logging what it did with `what` (read
/// from `path`); a failed reload keeps the current one.
async fn poll(
    what: &str,
    path: &Path,
    every: Duration,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
    reload: impl Fn() -> Result<bool>,
) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = shutdown.changed() => return,
        }
        match reload() {
            Ok(true) => tracing::info!(file = %path.display(), "{what} reloaded"),
            Ok(false) => {}
            Err(e) => tracing::warn!(error = %e, "new {what} unusable; keeping the current one"),
        }
    }
}

/// The client certificates the admission listener requires (`--admission-client-ca`): chained
/// to a CA read from a file, naming the clientAuth extended key usage, optionally carrying one
/// of a set of DNS names. The CA file is re-read like the serving pair, so rotating it needs no
/// restart.
#[derive(Debug)]
pub struct ClientAuth {
    ca: PathBuf,
    names: Vec<String>,
    current: ArcSwap<Trusted>,
    hash: ArcSwap<[u8; 32]>,
}

/// One reading of the CA file: rustls' verifier for it, and its roots and the signature
/// algorithms it accepts, for the usage check.
#[derive(Debug)]
struct Trusted {
    verifier: Arc<dyn ClientCertVerifier>,
    roots: Arc<rustls::RootCertStore>,
    algorithms: rustls::crypto::WebPkiSupportedAlgorithms,
}

/// id-kp-clientAuth (1.3.6.1.5.5.7.3.2, RFC 5280 §4.2.1.12), DER-encoded as webpki compares it.
const CLIENT_AUTH: &[u8] = &[43, 6, 1, 5, 5, 7, 3, 2];

fn load_ca(path: &Path) -> Result<(Trusted, [u8; 32])> {
    let pem = read(path)?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.map_err(|e| Error::Pem {
            path: path.to_path_buf(),
            why: e.to_string(),
        })?;
        roots.add(cert).map_err(|e| Error::Pem {
            path: path.to_path_buf(),
            why: format!("not a usable CA certificate: {e}"),
        })?;
    }
    if roots.is_empty() {
        return Err(Error::Pem {
            path: path.to_path_buf(),
            why: "no CA certificate in file".into(),
        });
    }
    let roots = Arc::new(roots);
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let algorithms = provider.signature_verification_algorithms;
    let verifier = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider)
        .build()
        .map_err(|e| Error::Pem {
            path: path.to_path_buf(),
            why: e.to_string(),
        })?;
    let trusted = Trusted {
        verifier,
        roots,
        algorithms,
    };
    Ok((trusted, Sha256::digest(&pem).into()))
}

impl ClientAuth {
    /// `names` empty: any client certificate the CA signed; otherwise one with a DNS name among
    /// them.
    pub fn open(ca: PathBuf, names: Vec<String>) -> Result<Arc<ClientAuth>> {
        let (trusted, hash) = load_ca(&ca)?;
        Ok(Arc::new(ClientAuth {
            ca,
            names,
            current: ArcSwap::new(Arc::new(trusted)),
            hash: ArcSwap::new(Arc::new(hash)),
        }))
    }

    /// Re-read the CA file; a broken one keeps the current CA. Returns whether it changed.
    pub fn reload(&self) -> Result<bool> {
        let (trusted, hash) = load_ca(&self.ca)?;
        if *self.hash.load_full() == hash {
            return Ok(false);
        }
        self.current.store(Arc::new(trusted));
        self.hash.store(Arc::new(hash));
        Ok(true)
    }

    pub async fn watch(self: Arc<Self>, every: Duration, shutdown: tokio::sync::watch::Receiver<bool>) {
        poll("admission client CA", &self.ca, every, shutdown, || self.reload()).await
    }

    fn inner(&self) -> Arc<dyn ClientCertVerifier> {
        self.current.load().verifier.clone()
    }
}

/// A certificate the CA signed but that may not authenticate a client here.
fn rejected(e: webpki::Error) -> rustls::Error {
    let why = match e {
        webpki::Error::RequiredEkuNotFoundContext(_) => rustls::CertificateError::InvalidPurpose,
        other => rustls::CertificateError::Other(rustls::OtherError(Arc::new(other))),
    };
    rustls::Error::InvalidCertificate(why)
}

impl ClientCertVerifier for ClientAuth {
    fn root_hint_subjects(&self) -> &[rustls::DistinguishedName] {
        // The hints would borrow from a verifier that a reload may drop; clients (kube-apiserver
        // included) present their one configured certificate without them.
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: rustls::pki_types::UnixTime,
    ) -> std::result::Result<ClientCertVerified, rustls::Error> {
        let trusted = self.current.load_full();
        let verified = trusted.verifier.verify_client_cert(end_entity, intermediates, now)?;
        let cert = webpki::EndEntityCert::try_from(end_entity).map_err(rejected)?;
        // rustls (webpki's `KeyUsage::client_auth`) accepts a certificate without the extended
        // key usage extension, which RFC 5280 reads as "any purpose": then a serving certificate
        // or one issued for anything else that lacks the extension would pass for the API
        // server. Only one that names clientAuth may: the chain is built again with the usage
        // required.
        cert.verify_for_usage(
            trusted.algorithms.all,
            &trusted.roots.roots,
            intermediates,
            now,
            webpki::KeyUsage::required(CLIENT_AUTH),
            None,
            None,
        )
        .map_err(rejected)?;
        if self.names.is_empty() {
            return Ok(verified);
        }
        let named = self.names.iter().any(|n| {
            rustls::pki_types::ServerName::try_from(n.as_str())
                .is_ok_and(|sn| cert.verify_is_valid_for_subject_name(&sn).is_ok())
        });
        if named {
            Ok(verified)
        } else {
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::NotValidForName,
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> std::result::Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner().verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> std::result::Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner().verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.inner().supported_verify_schemes()
    }
}

/// Why a TLS handshake failed, for the metrics: the client certificate's fault or another.
pub fn handshake_failure(e: &std::io::Error) -> &'static str {
    match e.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>()) {
        Some(rustls::Error::NoCertificatesPresented) => "no-client-certificate",
        Some(rustls::Error::InvalidCertificate(_)) => "client-certificate-rejected",
        _ => "other",
    }
}

/// A generated CA and a serving certificate it signed; optionally a client certificate too.
pub struct Generated {
    pub ca_pem: String,
    pub ca_key_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
    /// The API server's client certificate and key (PEM), when asked for.
    pub client: Option<(String, String)>,
}

/// A CA valid for ten years and a serving certificate for `names` (DNS names or IPs) valid for
/// one; with `client`, also a client certificate (clientAuth only) for that DNS name.
pub fn generate(names: &[String], ca_name: &str, client: Option<&str>) -> Result<Generated> {
    use rcgen::{
        BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
        KeyUsagePurpose,
    };
    let now = time_now();
    let ca_key = KeyPair::generate()?;
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.distinguished_name = DistinguishedName::new();
    ca.distinguished_name.push(DnType::CommonName, ca_name);
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    ca.not_before = now - days(1);
    ca.not_after = now + days(3650);
    let ca_cert = ca.self_signed(&ca_key)?;
    let ca_key_pem = ca_key.serialize_pem();

    let key = KeyPair::generate()?;
    let mut leaf = CertificateParams::new(names.to_vec())?;
    leaf.distinguished_name = DistinguishedName::new();
    leaf.distinguished_name.push(
        DnType::CommonName,
        names.first().map(String::as_str).unwrap_or("scimgate"),
    );
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    leaf.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
    leaf.not_before = now - days(1);
    leaf.not_after = now + days(365);
    let issuer = Issuer::new(ca, ca_key);
    let cert = leaf.signed_by(&key, &issuer)?;
    let client = match client {
        Some(name) => {
            let key = KeyPair::generate()?;
            let mut params = CertificateParams::new(vec![name.to_string()])?;
            params.distinguished_name = DistinguishedName::new();
            params.distinguished_name.push(DnType::CommonName, name);
            // Client authentication only: a serving certificate can't stand in for it, nor it
            // for one.
            params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
            params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
            params.not_before = now - days(1);
            params.not_after = now + days(365);
            let cert = params.signed_by(&key, &issuer)?;
            Some((cert.pem(), key.serialize_pem()))
        }
        None => None,
    };
    Ok(Generated {
        ca_pem: ca_cert.pem(),
        ca_key_pem,
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
        client,
    })
}

fn time_now() -> time::OffsetDateTime {
    time::OffsetDateTime::now_utc()
}

fn days(n: i64) -> time::Duration {
    time::Duration::days(n)
}

/// Where [`write`] puts the API server's client certificate and key.
pub const CLIENT_CERT: &str = "apiserver-client.crt";
pub const CLIENT_KEY: &str = "apiserver-client.key";

/// Write `dir/ca.crt`, `dir/tls.crt`, `dir/tls.key` (and `ca.key`, and the client pair when
/// generated), private keys mode 0600.
pub fn write(dir: &Path, g: &Generated) -> Result<CertFiles> {
    std::fs::create_dir_all(dir).map_err(|cause| Error::Write {
        path: dir.to_path_buf(),
        cause,
    })?;
    let put = |name: &str, body: &str, secret: bool| -> Result<PathBuf> {
        let path = dir.join(name);
        write_file(&path, body.as_bytes(), secret).map_err(|cause| Error::Write {
            path: path.clone(),
            cause,
        })?;
        Ok(path)
    };
    put("ca.crt", &g.ca_pem, false)?;
    put("ca.key", &g.ca_key_pem, true)?;
    let cert = put("tls.crt", &g.cert_pem, false)?;
    let key = put("tls.key", &g.key_pem, true)?;
    if let Some((cert, key)) = &g.client {
        put(CLIENT_CERT, cert, false)?;
        put(CLIENT_KEY, key, true)?;
    }
    Ok(CertFiles { cert, key })
}

/// Write atomically (temp file + rename), so a reloading server never reads half a file.
pub fn write_file(path: &Path, body: &[u8], secret: bool) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(if secret { 0o600 } else { 0o644 });
    }
    let mut f = opts.open(&tmp)?;
    f.write_all(body)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// For `--dev`: reuse `dir/tls.{crt,key}` if present, otherwise generate a CA and a serving
/// certificate for localhost.
pub fn dev_certs(dir: &Path, extra_names: &[String]) -> Result<CertFiles> {
    let files = CertFiles {
        cert: dir.join("tls.crt"),
        key: dir.join("tls.key"),
    };
    if files.cert.exists() && files.key.exists() && dir.join("ca.crt").exists() {
        return Ok(files);
    }
    let mut names = vec!["localhost".to_string(), "127.0.0.1".to_string(), "::1".to_string()];
    names.extend(extra_names.iter().cloned());
    write(dir, &generate(&names, "scimgate dev CA", None)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A self-signed certificate valid until `year-06-30 12:34:56 UTC`.
    fn until(year: i32) -> (String, String, i64) {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["scimgate.test".to_string()]).unwrap();
        params.not_before = time::OffsetDateTime::now_utc() - time::Duration::days(1);
        let end = time::Date::from_calendar_date(year, time::Month::June, 30)
            .unwrap()
            .with_hms(12, 34, 56)
            .unwrap()
            .assume_utc();
        params.not_after = end;
        let cert = params.self_signed(&key).unwrap();
        (cert.pem(), key.serialize_pem(), end.unix_timestamp())
    }

    /// UTCTime until 2049, GeneralizedTime from 2050 (RFC 5280 §4.1.2.5): both read.
    #[test]
    fn not_after_reads_both_time_forms() {
        for year in [2031, 2049, 2050, 2107] {
            let (pem, _, want) = until(year);
            let der = CertificateDer::from_pem_slice(pem.as_bytes()).unwrap();
            assert_eq!(not_after(&der), Some(want), "{year}");
        }
        assert_eq!(not_after(b""), None);
        assert_eq!(not_after(&[0x30, 0x82, 0xff]), None);
        assert_eq!(not_after(&[0x30, 0x03, 0x30, 0x01, 0x02]), None);
    }

    /// The expiry is in the metrics once loaded, and follows a rotation.
    #[test]
    fn the_expiry_is_reported_when_loaded_and_reloaded() {
        let dir = tempfile::tempdir().unwrap();
        let files = CertFiles {
            cert: dir.path().join("tls.crt"),
            key: dir.path().join("tls.key"),
        };
        let put = |(cert, key, at): (String, String, i64)| {
            write_file(&files.cert, cert.as_bytes(), false).unwrap();
            write_file(&files.key, key.as_bytes(), true).unwrap();
            at
        };
        let first = put(until(2031));
        let metrics = Metrics::new();
        let report = ExpiryReport {
            metrics: metrics.clone(),
            listeners: vec![Listener::Admission, Listener::Scim],
        };
        let certs = Reloading::open_reporting(files.clone(), Some(report)).unwrap();
        assert_eq!(certs.not_after(), Some(first));
        let line =
            |l: &str, t: i64| format!("scimgate_tls_certificate_expiry_timestamp_seconds{{listener=\"{l}\"}} {t}");
        let text = metrics.encode();
        assert!(text.contains(&line("admission", first)), "{text}");
        assert!(text.contains(&line("scim", first)), "{text}");
        let second = put(until(2033));
        assert!(certs.reload().unwrap());
        let text = metrics.encode();
        assert!(text.contains(&line("admission", second)), "{text}");
        assert!(text.contains(&line("scim", second)), "{text}");
        // A broken pair keeps the old one serving, and its expiry.
        std::fs::write(&files.cert, "not a certificate").unwrap();
        assert!(certs.reload().is_err());
        assert!(metrics.encode().contains(&line("scim", second)));
    }
}
