//! API bearer tokens: created by `scimgate token create`, stored only as SHA-256 hashes, checked
//! in constant time. A running server re-reads the token table every few seconds, so a new
//! token works and a revoked one stops working without a restart.

use crate::store::{self, Scope, Store, TokenRecord};
use arc_swap::ArcSwap;
use base64::Engine;
use rand::RngCore;
use sha2::{Digest, Sha256};
use std::sync::Arc;
use std::time::Duration;
use subtle::ConstantTimeEq;

/// How often a server re-reads the token table.
pub const REFRESH: Duration = Duration::from_secs(2);

pub fn hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// A new random token: `sgt_` + 32 random bytes, base64url.
pub fn generate() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    format!("sgt_{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

/// Create and store a token; returns the record and the secret (shown once).
pub async fn create(store: &dyn Store, name: &str, scope: Scope) -> store::Result<(TokenRecord, String)> {
    let secret = generate();
    let record = TokenRecord {
        id: uuid::Uuid::new_v4().to_string(),
        name: name.to_string(),
        scope,
        hash: hash(&secret),
        created_at: crate::model::clock::now(),
        revoked_at: None,
    };
    store.insert_token(&record).await?;
    Ok((record, secret))
}

/// The live tokens a server accepts.
#[derive(Clone, Default)]
pub struct Tokens(Arc<ArcSwap<Vec<TokenRecord>>>);

impl Tokens {
    pub fn set(&self, all: Vec<TokenRecord>) {
        self.0
            .store(Arc::new(all.into_iter().filter(|t| t.revoked_at.is_none()).collect()));
    }

    /// The name of the token `presented` is, if it is live and has `scope`.
    pub fn check(&self, presented: &str, scope: Scope) -> Result<String, Denied> {
        let digest = hash(presented);
        let tokens = self.0.load();
        // Compare against every token so timing says nothing about which one (nearly) matched.
        let mut found: Option<&TokenRecord> = None;
        for t in tokens.iter() {
            if bool::from(t.hash.ct_eq(&digest)) {
                found = Some(t);
            }
        }
        match found {
            Some(t) if t.scope == scope => Ok(t.name.clone()),
            Some(t) => Err(Denied::Scope(t.scope)),
            None => Err(Denied::Unknown),
        }
    }

    /// Poll the store until `shutdown` fires.
    pub async fn refresh(
        self,
        store: Arc<dyn Store>,
        metrics: crate::metrics::Metrics,
        mut shutdown: tokio::sync::watch::Receiver<bool>,
    ) {
        loop {
            match store.tokens().await {
                Ok(all) => {
                    self.set(all);
                    metrics.token_refresh(true, self.0.load().len());
                }
                Err(e) => {
                    metrics.token_refresh(false, self.0.load().len());
                    tracing::warn!(error = %e, "could not re-read tokens; keeping the last set");
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(REFRESH) => {}
                _ = shutdown.changed() => return,
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denied {
    Unknown,
    Scope(Scope),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks_hash_and_scope_and_ignores_revoked() {
        let tokens = Tokens::default();
        let live = generate();
        let revoked = generate();
        let rec = |name: &str, secret: &str, scope, revoked_at: Option<&str>| TokenRecord {
            id: name.into(),
            name: name.into(),
            scope,
            hash: hash(secret),
            created_at: "t".into(),
            revoked_at: revoked_at.map(String::from),
        };
        tokens.set(vec![
            rec("idp", &live, Scope::Scim, None),
            rec("old", &revoked, Scope::Scim, Some("t")),
        ]);
        assert_eq!(tokens.check(&live, Scope::Scim), Ok("idp".to_string()));
        assert_eq!(tokens.check(&live, Scope::Audit), Err(Denied::Scope(Scope::Scim)));
        assert_eq!(tokens.check(&revoked, Scope::Scim), Err(Denied::Unknown));
        assert_eq!(tokens.check("sgt_guess", Scope::Scim), Err(Denied::Unknown));
        assert_ne!(generate(), generate());
    }
}
