//! The stamp's keys: signing (Ed25519, compact JWS with `alg: EdDSA`), verification by `kid`
//! with retired keys kept after rotations, and the JWKS that publishes them. Keys live in the data
//! dir (generated on first start). Knows nothing of what is signed: that is `claims`.

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use ring::signature::{Ed25519KeyPair, UnparsedPublicKey, ED25519};
use serde_json::{json, Value};
use std::path::Path;
use subtle::ConstantTimeEq;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("signing key {path}: {why}")]
    Key { path: String, why: String },
    #[error("attestation: {0}")]
    Invalid(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Attestations this process signed lately, with their claims: the validating webhook sees the
/// stamp the mutating one made milliseconds before, and a lookup replaces a 50 µs verification.
/// Keyed by the signing input (`header.payload`, which the presenter sent and knows), never by
/// the signature: a map lookup compares keys with an early exit, and the signature is the one
/// part to be compared only in constant time (see [`Verifier::verify`]).
#[derive(Debug, Default)]
struct Recent {
    /// Signing input → (encoded signature, claims).
    signed: std::collections::HashMap<String, (String, Value)>,
    order: std::collections::VecDeque<String>,
}

/// How many recent attestations are remembered.
const RECENT: usize = 1024;

impl Recent {
    fn remember(&mut self, input: String, signature: String, claims: Value) {
        if self.order.len() >= RECENT {
            if let Some(old) = self.order.pop_front() {
                self.signed.remove(&old);
            }
        }
        self.order.push_back(input.clone());
        self.signed.insert(input, (signature, claims));
    }

    /// The claims of `input`, if we signed it lately and `signature` is the one we made.
    fn claims(&self, input: &str, signature: &str) -> Option<Value> {
        let (ours, claims) = self.signed.get(input)?;
        bool::from(ours.as_bytes().ct_eq(signature.as_bytes())).then(|| claims.clone())
    }
}

type RecentCache = std::sync::Arc<std::sync::Mutex<Recent>>;

/// The signing key and its id (`kid`: first 16 hex chars of SHA-256 of the public key).
pub struct Signer {
    /// Signing uses ed25519-dalek: its precomputed base-point tables sign in about two thirds of
    /// ring's time, and signing is most of `/mutate`'s cost. Verification stays with ring.
    key: ed25519_dalek::SigningKey,
    pub kid: String,
    /// The encoded JWS header, the same for every stamp.
    header: String,
    recent: RecentCache,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Signer({})", self.kid)
    }
}

fn kid_of(public: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(public)
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl Signer {
    pub fn generate() -> Result<(Signer, Vec<u8>)> {
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).map_err(|_| Error::Key {
            path: "-".into(),
            why: "generation failed".into(),
        })?;
        let signer = Signer::from_pkcs8(pkcs8.as_ref(), "-")?;
        Ok((signer, pkcs8.as_ref().to_vec()))
    }

    fn from_pkcs8(der: &[u8], path: &str) -> Result<Signer> {
        use ed25519_dalek::pkcs8::DecodePrivateKey;
        let key = ed25519_dalek::SigningKey::from_pkcs8_der(der).map_err(|e| Error::Key {
            path: path.to_string(),
            why: format!("not an Ed25519 PKCS#8 key: {e}"),
        })?;
        let kid = kid_of(key.verifying_key().as_bytes());
        let header = B64.encode(json!({"alg": "EdDSA", "kid": kid, "typ": "JWT"}).to_string());
        Ok(Signer {
            key,
            kid,
            header,
            recent: RecentCache::default(),
        })
    }

    /// Read `path` (PKCS#8 DER), or create it (mode 0600) if it doesn't exist.
    pub fn load_or_create(path: &Path) -> Result<Signer> {
        let shown = path.display().to_string();
        match std::fs::read(path) {
            Ok(der) => Signer::from_pkcs8(&der, &shown),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let (signer, der) = Signer::generate()?;
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir).map_err(|e| Error::Key {
                        path: shown.clone(),
                        why: e.to_string(),
                    })?;
                }
                write_secret(path, &der).map_err(|e| Error::Key {
                    path: shown.clone(),
                    why: e.to_string(),
                })?;
                Ok(signer)
            }
            Err(e) => Err(Error::Key {
                path: shown,
                why: e.to_string(),
            }),
        }
    }

    pub fn public_key(&self) -> Vec<u8> {
        self.key.verifying_key().as_bytes().to_vec()
    }

    /// Compact JWS over `claims` (kept, not copied, for the recent-stamp cache).
    pub fn sign(&self, claims: Value) -> String {
        use ed25519_dalek::Signer as _;
        let input = format!("{}.{}", self.header, B64.encode(claims.to_string()));
        let sig = B64.encode(self.key.sign(input.as_bytes()).to_bytes());
        let jws = format!("{input}.{sig}");
        if let Ok(mut r) = self.recent.lock() {
            r.remember(input, sig, claims);
        }
        jws
    }

    pub fn jwks(&self) -> Value {
        Verifier::from_signer(self).jwks()
    }
}

fn write_secret(path: &Path, body: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path)?;
    f.write_all(body)?;
    f.sync_all()
}

/// Verification keys by `kid` (the current key and any retired ones, for rotation).
#[derive(Clone, Default)]
pub struct Verifier {
    keys: Vec<(String, Vec<u8>)>,
    recent: Option<RecentCache>,
    /// The signing key, when this process holds it: Ed25519 signatures are deterministic
    /// (RFC 8032 §5.1.6), so signing the same input again and comparing costs half a
    /// verification and proves the same. Replicas share the key, so a stamp another replica made
    /// is checked this way too.
    own: Option<(String, ed25519_dalek::SigningKey)>,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kids: Vec<&str> = self.keys.iter().map(|(k, _)| k.as_str()).collect();
        write!(f, "Verifier({})", kids.join(", "))
    }
}

impl Verifier {
    /// The signer's key plus retired keys kept after rotations: every `*.key` (PKCS#8) in `dir`.
    /// Old stamps keep verifying; only the current key signs.
    pub fn with_retired(s: &Signer, dir: &Path) -> Result<Verifier> {
        let mut v = Verifier::from_signer(s);
        let Ok(entries) = std::fs::read_dir(dir) else {
            return Ok(v);
        };
        let mut paths: Vec<std::path::PathBuf> = entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "key"))
            .collect();
        paths.sort();
        for path in paths {
            let shown = path.display().to_string();
            let der = std::fs::read(&path).map_err(|e| Error::Key {
                path: shown.clone(),
                why: e.to_string(),
            })?;
            let old = Signer::from_pkcs8(&der, &shown)?;
            if !v.keys.iter().any(|(kid, _)| *kid == old.kid) {
                v.keys.push((old.kid.clone(), old.public_key()));
            }
        }
        Ok(v)
    }

    /// The JWKS of every key this verifier accepts, current first.
    pub fn jwks(&self) -> Value {
        let keys: Vec<Value> = self
            .keys
            .iter()
            .map(|(kid, x)| json!({"kty": "OKP", "crv": "Ed25519", "use": "sig", "alg": "EdDSA", "kid": kid, "x": B64.encode(x)}))
            .collect();
        json!({ "keys": keys })
    }

    pub fn from_signer(s: &Signer) -> Verifier {
        Verifier {
            keys: vec![(s.kid.clone(), s.public_key())],
            recent: Some(s.recent.clone()),
            own: Some((s.kid.clone(), s.key.clone())),
        }
    }

    /// Keys from a JWKS document (`{"keys": [{"kty": "OKP", "crv": "Ed25519", "kid", "x"}]}`):
    /// the current key and any retired ones a rotation kept published.
    pub fn from_jwks(jwks: &Value) -> Result<Verifier> {
        let mut keys = Vec::new();
        for k in jwks.get("keys").and_then(Value::as_array).into_iter().flatten() {
            if k.get("kty").and_then(Value::as_str) != Some("OKP")
                || k.get("crv").and_then(Value::as_str) != Some("Ed25519")
            {
                continue;
            }
            let kid = k.get("kid").and_then(Value::as_str).unwrap_or_default().to_string();
            let x = k
                .get("x")
                .and_then(Value::as_str)
                .and_then(|x| B64.decode(x).ok())
                .filter(|x| x.len() == 32)
                .ok_or_else(|| Error::Invalid(format!("JWKS key '{kid}' has no valid Ed25519 'x'")))?;
            keys.push((kid, x));
        }
        if keys.is_empty() {
            return Err(Error::Invalid("the JWKS holds no Ed25519 keys".into()));
        }
        Ok(Verifier {
            keys,
            recent: None,
            own: None,
        })
    }

    /// Verify a compact JWS; returns its claims.
    pub fn verify(&self, jws: &str) -> Result<Value> {
        let Some((input, s)) = jws.rsplit_once('.') else {
            return Err(Error::Invalid("not a compact JWS".into()));
        };
        // Byte-for-byte one we signed: nothing to check cryptographically.
        if let Some(claims) = self.recent.as_ref().and_then(|r| r.lock().ok()?.claims(input, s)) {
            return Ok(claims);
        }
        let mut parts = input.split('.');
        let (Some(h), Some(p), None) = (parts.next(), parts.next(), parts.next()) else {
            return Err(Error::Invalid("not a compact JWS".into()));
        };
        let header: Value = B64
            .decode(h)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or_else(|| Error::Invalid("bad header".into()))?;
        if header.get("alg").and_then(Value::as_str) != Some("EdDSA") {
            return Err(Error::Invalid("alg must be EdDSA".into()));
        }
        let kid = header.get("kid").and_then(Value::as_str).unwrap_or_default();
        let (_, key) = self
            .keys
            .iter()
            .find(|(k, _)| k == kid)
            .ok_or_else(|| Error::Invalid(format!("unknown key id '{kid}'")))?;
        let sig = B64
            .decode(s)
            .map_err(|_| Error::Invalid("bad signature encoding".into()))?;
        // Signed again, the signature over these claims is exactly what a forger is after: it is
        // compared in constant time, or how long a wrong one takes to be told apart would give it
        // away a byte at a time.
        let resigned = self.own.as_ref().filter(|(k, _)| k == kid).is_some_and(|(_, key)| {
            use ed25519_dalek::Signer as _;
            bool::from(key.sign(input.as_bytes()).to_bytes().as_slice().ct_eq(sig.as_slice()))
        });
        if !resigned {
            UnparsedPublicKey::new(&ED25519, key)
                .verify(input.as_bytes(), &sig)
                .map_err(|_| Error::Invalid("signature does not verify".into()))?;
        }
        B64.decode(p)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or_else(|| Error::Invalid("bad payload".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_verify_and_tamper() {
        let (s, _) = Signer::generate().expect("key");
        let v = Verifier::from_signer(&s);
        let jws = s.sign(json!({"sub": "u1", "uid": "req-1"}));
        assert_eq!(v.verify(&jws).expect("verify")["sub"], "u1");
        // Verified for real, not from the signer's memory of what it signed.
        let fresh = Verifier {
            keys: v.keys.clone(),
            recent: None,
            own: None,
        };
        assert_eq!(fresh.verify(&jws).expect("verify")["sub"], "u1");
        // A replica holding the key, which did not sign it: checked by signing again.
        let replica = Verifier {
            recent: None,
            ..v.clone()
        };
        assert_eq!(replica.verify(&jws).expect("verify")["sub"], "u1");
        // A wrong signature over the right claims fails on every path: the signer's memory,
        // signing again, and verifying.
        let (input, sig) = jws.rsplit_once('.').expect("jws");
        let mut sig = B64.decode(sig).expect("signature");
        sig[63] ^= 1;
        let wrong = format!("{input}.{}", B64.encode(&sig));
        let short = format!("{input}.{}", B64.encode(&sig[..32]));
        for forged in [&wrong, &short, &format!("{input}.")] {
            for (path, verifier) in [("memory", &v), ("signing again", &replica), ("verifying", &fresh)] {
                assert!(verifier.verify(forged).is_err(), "{path}: {forged}");
            }
        }
        let mut parts: Vec<&str> = jws.split('.').collect();
        let forged = B64.encode(json!({"sub": "u2", "uid": "req-1"}).to_string());
        parts[1] = &forged;
        assert!(v.verify(&parts.join(".")).is_err(), "altered claims fail");
        assert!(
            replica.verify(&parts.join(".")).is_err(),
            "also without the signer's memory"
        );
        let (other, _) = Signer::generate().expect("key");
        assert!(v.verify(&other.sign(json!({}))).is_err(), "unknown key fails");
        assert_eq!(s.jwks()["keys"][0]["kid"], s.kid.as_str());
    }

    #[test]
    fn key_persists_across_loads() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("keys/signing.key");
        let a = Signer::load_or_create(&path).expect("create");
        let b = Signer::load_or_create(&path).expect("load");
        assert_eq!(a.kid, b.kid);
    }
}

#[cfg(test)]
mod rotation_tests {
    use super::*;

    #[test]
    fn retired_keys_keep_old_stamps_verifying() {
        let dir = tempfile::tempdir().expect("dir");
        let key = dir.path().join("signing.key");
        let old = Signer::load_or_create(&key).expect("old");
        let old_stamp = old.sign(json!({"sub": "u1"}));
        // Rotate: retire the key file, start with a fresh one.
        std::fs::create_dir_all(dir.path().join("retired")).expect("mkdir");
        std::fs::rename(&key, dir.path().join("retired").join(format!("{}.key", old.kid))).expect("retire");
        let new = Signer::load_or_create(&key).expect("new");
        assert_ne!(new.kid, old.kid);
        let fresh = Verifier {
            keys: Verifier::with_retired(&new, &dir.path().join("retired"))
                .expect("verifier")
                .keys,
            recent: None,
            own: None,
        };
        assert_eq!(fresh.verify(&old_stamp).expect("old stamp")["sub"], "u1");
        assert_eq!(fresh.jwks()["keys"].as_array().map(Vec::len), Some(2));
        assert_eq!(
            fresh.jwks()["keys"][0]["kid"],
            new.kid.as_str(),
            "the current key comes first"
        );
        let only_new = Verifier {
            keys: Verifier::from_signer(&new).keys,
            recent: None,
            own: None,
        };
        assert!(only_new.verify(&old_stamp).is_err());
    }
}
