//! API bearer tokens: created by `scimgate token create`, stored only as SHA-256 hashes, checked
//! in constant time. A running server re-reads the token table every few seconds, so a new
//! token works and a revoked one stops working without a restart.
//!
//! A token may expire (`token create --expires 90d`): past its time it is refused like an
//! unknown one (401), and the server says so in its log (once a minute per token).
//!
//! Use is recorded in memory on the request path — two atomic maxima per token, no lock, no
//! allocation — and flushed to the store every [`FLUSH`] and when the server stops, only for
//! the tokens whose times moved. The store keeps the later of its time and the one flushed, so
//! replicas sharing a database may flush in any order. What a server shows ([`Tokens::usage`],
//! the last-write metric) is the later of its own times and the store's as last re-read, so a
//! replica sees its peers' use within one flush and one refresh.

use crate::store::{self, Scope, Store, TokenRecord, TokenUse};
use arc_swap::ArcSwap;
use base64::Engine;
use rand::RngCore;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use subtle::ConstantTimeEq;

/// How often a server re-reads the token table.
pub const REFRESH: Duration = Duration::from_secs(2);

/// How often a server writes its tokens' last use and last write to the store (and once more
/// when it stops). Not a write per request: one short transaction per interval, and none when
/// no token was used.
pub const FLUSH: Duration = Duration::from_secs(30);

/// How often the log says a given expired token was refused.
const EXPIRED_LOG_EVERY_MS: i64 = 60_000;

pub fn hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// A new random token: `sgt_` + 32 random bytes, base64url.
pub fn generate() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    format!("sgt_{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

/// Create and store a token that never expires; returns the record and the secret (shown once).
pub async fn create(store: &dyn Store, name: &str, scope: Scope) -> store::Result<(TokenRecord, String)> {
    create_expiring(store, name, scope, None).await
}

/// Create and store a token that expires at `expires_at` (RFC 3339 UTC, see [`parse_expiry`];
/// `None`: never); returns the record and the secret (shown once).
pub async fn create_expiring(
    store: &dyn Store,
    name: &str,
    scope: Scope,
    expires_at: Option<String>,
) -> store::Result<(TokenRecord, String)> {
    let secret = generate();
    let record = TokenRecord {
        id: uuid::Uuid::new_v4().to_string(),
        name: name.to_string(),
        scope,
        hash: hash(&secret),
        created_at: crate::model::clock::now(),
        revoked_at: None,
        expires_at,
        last_used_at: None,
        last_write_at: None,
    };
    store.insert_token(&record).await?;
    Ok((record, secret))
}

/// `--expires`: a lifetime from `now` (`90d`, `12h`, `30m`) or an RFC 3339 time, which must be
/// in the future; as the store keeps times (RFC 3339 UTC, milliseconds).
pub fn parse_expiry(s: &str, now: chrono::DateTime<chrono::Utc>) -> Result<String, String> {
    let s = s.trim();
    let at = if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        t.with_timezone(&chrono::Utc)
    } else {
        let (n, unit) = s.split_at(s.len().saturating_sub(1));
        let n: i64 = n
            .parse()
            .map_err(|_| format!("'{s}' is neither a lifetime like 90d/12h/30m nor an RFC 3339 time"))?;
        if n <= 0 {
            return Err(format!("'{s}': a lifetime must be positive"));
        }
        let d = match unit {
            "d" => chrono::Duration::try_days(n),
            "h" => chrono::Duration::try_hours(n),
            "m" => chrono::Duration::try_minutes(n),
            _ => return Err(format!("'{s}': the unit must be d, h or m")),
        };
        d.and_then(|d| now.checked_add_signed(d))
            .ok_or_else(|| format!("'{s}' is too far in the future"))?
    };
    if at <= now {
        return Err(format!("'{s}' is not in the future"));
    }
    Ok(crate::model::clock::text(at))
}

/// Milliseconds since the Unix epoch, now.
fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// A stored time as milliseconds since the epoch; 0 for none. A time that does not parse counts
/// as long ago (`i64::MIN` for an expiry: an unreadable expiry refuses the token).
fn millis(t: Option<&str>) -> i64 {
    t.and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .map_or(0, |t| t.timestamp_millis())
}

/// Milliseconds since the epoch as the store's text; 0 is none.
fn text(ms: i64) -> Option<String> {
    (ms > 0)
        .then(|| chrono::DateTime::from_timestamp_millis(ms))
        .flatten()
        .map(crate::model::clock::text)
}

/// One token's times, in milliseconds since the epoch (0: none).
#[derive(Debug, Default)]
struct Usage {
    /// This process's last authenticated request and last successful write with the token.
    used: AtomicI64,
    wrote: AtomicI64,
    /// The store's, as last read (other replicas' flushes included) or written.
    stored_used: AtomicI64,
    stored_wrote: AtomicI64,
    /// The latest of `used` / `wrote` handed to the store.
    flushed_used: AtomicI64,
    flushed_wrote: AtomicI64,
    /// When the log last said this token was refused as expired.
    expired_said: AtomicI64,
}

impl Usage {
    fn pending(&self) -> bool {
        self.used.load(Relaxed) > self.flushed_used.load(Relaxed)
            || self.wrote.load(Relaxed) > self.flushed_wrote.load(Relaxed)
    }
    fn last_used(&self) -> i64 {
        self.used.load(Relaxed).max(self.stored_used.load(Relaxed))
    }
    fn last_write(&self) -> i64 {
        self.wrote.load(Relaxed).max(self.stored_wrote.load(Relaxed))
    }
}

/// A live (unrevoked) token as a server holds it.
struct Entry {
    record: TokenRecord,
    /// Milliseconds since the epoch.
    expires: Option<i64>,
    usage: Arc<Usage>,
}

impl Entry {
    fn expired(&self, now: i64) -> bool {
        self.expires.is_some_and(|e| e <= now)
    }
}

#[derive(Default)]
struct Shared {
    live: ArcSwap<Vec<Entry>>,
    /// Every token with times this process may still have to flush, by id: the live ones and,
    /// until flushed, any revoked since they were used.
    usage: Mutex<HashMap<String, Arc<Usage>>>,
}

/// The live tokens a server accepts, and their use.
#[derive(Clone, Default)]
pub struct Tokens(Arc<Shared>);

/// An accepted token, to record what the request it authenticated did.
pub struct Grant {
    usage: Arc<Usage>,
}

impl Grant {
    /// The request wrote (a SCIM create, replace, patch or delete that succeeded).
    pub fn wrote(&self) {
        self.usage.wrote.fetch_max(now_ms(), Relaxed);
    }
}

/// One token as [`Tokens::usage`] reports it: what the console's health page and `token list`
/// show. Times are RFC 3339 UTC with milliseconds.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TokenUsage {
    pub id: String,
    pub name: String,
    pub scope: Scope,
    pub created_at: String,
    /// `None`: never expires.
    pub expires_at: Option<String>,
    /// Past `expires_at`: refused.
    pub expired: bool,
    /// The last request it authenticated, on any replica (this one's at once, others' once
    /// flushed); `None`: never.
    pub last_used_at: Option<String>,
    /// The last successful SCIM write with it (POST, PUT, PATCH or DELETE other than a
    /// `.search`; a `/Bulk` request counts as one); `None`: never.
    pub last_write_at: Option<String>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Tokens {
    /// Take the store's tokens (revoked ones included; they are dropped here), keeping what this
    /// process recorded of their use.
    pub fn set(&self, all: Vec<TokenRecord>) {
        let mut usage = lock(&self.0.usage);
        let mut live = Vec::with_capacity(all.len());
        for record in all {
            let stored_used = millis(record.last_used_at.as_deref());
            let stored_wrote = millis(record.last_write_at.as_deref());
            if record.revoked_at.is_some() {
                if let Some(u) = usage.get(&record.id) {
                    u.stored_used.fetch_max(stored_used, Relaxed);
                    u.stored_wrote.fetch_max(stored_wrote, Relaxed);
                }
                continue;
            }
            let u = usage.entry(record.id.clone()).or_default().clone();
            u.stored_used.fetch_max(stored_used, Relaxed);
            u.stored_wrote.fetch_max(stored_wrote, Relaxed);
            let expires = record.expires_at.as_deref().map(|e| match millis(Some(e)) {
                0 => i64::MIN,
                ms => ms,
            });
            live.push(Entry {
                record,
                expires,
                usage: u,
            });
        }
        usage.retain(|id, u| u.pending() || live.iter().any(|e| &e.record.id == id));
        drop(usage);
        self.0.live.store(Arc::new(live));
    }

    /// The name of the token `presented` is, if it is live, unexpired and has `scope`; records
    /// the use.
    pub fn check(&self, presented: &str, scope: Scope) -> Result<String, Denied> {
        self.admit(presented, scope, |e| e.record.name.clone())
    }

    /// [`Tokens::check`] without the name: a [`Grant`] to record a write with once the request
    /// has succeeded.
    pub fn authorize(&self, presented: &str, scope: Scope) -> Result<Grant, Denied> {
        self.admit(presented, scope, |e| Grant { usage: e.usage.clone() })
    }

    fn admit<T>(&self, presented: &str, scope: Scope, grant: impl FnOnce(&Entry) -> T) -> Result<T, Denied> {
        let digest = hash(presented);
        let tokens = self.0.live.load();
        // Compare against every token so timing says nothing about which one (nearly) matched.
        let mut found: Option<&Entry> = None;
        for t in tokens.iter() {
            if bool::from(t.record.hash.ct_eq(&digest)) {
                found = Some(t);
            }
        }
        let Some(t) = found else {
            return Err(Denied::Unknown);
        };
        let now = now_ms();
        if t.expired(now) {
            // Refused as an unknown token is (nothing tells the client it once worked); the log
            // tells the operator, without a line for every retry.
            let said = t.usage.expired_said.load(Relaxed);
            if now - said >= EXPIRED_LOG_EVERY_MS
                && t.usage
                    .expired_said
                    .compare_exchange(said, now, Relaxed, Relaxed)
                    .is_ok()
            {
                tracing::warn!(
                    token = %t.record.name,
                    scope = t.record.scope.as_str(),
                    expires_at = t.record.expires_at.as_deref().unwrap_or_default(),
                    "refused an expired token (401); create a new one with scimgate token create"
                );
            }
            return Err(Denied::Unknown);
        }
        if t.record.scope != scope {
            return Err(Denied::Scope(t.record.scope));
        }
        t.usage.used.fetch_max(now, Relaxed);
        Ok(grant(t))
    }

    /// Every live (unrevoked) token with its expiry and its last use and last write — this
    /// process's, or another replica's as flushed to the store, whichever is later — oldest
    /// first. Cheap: no store access.
    pub fn usage(&self) -> Vec<TokenUsage> {
        let now = now_ms();
        self.0
            .live
            .load()
            .iter()
            .map(|e| TokenUsage {
                id: e.record.id.clone(),
                name: e.record.name.clone(),
                scope: e.record.scope,
                created_at: e.record.created_at.clone(),
                expires_at: e.record.expires_at.clone(),
                expired: e.expired(now),
                last_used_at: text(e.usage.last_used()),
                last_write_at: text(e.usage.last_write()),
            })
            .collect()
    }

    /// Write the times that moved since the last flush to the store, in one transaction;
    /// returns for how many tokens. Nothing to write: no store access at all.
    pub async fn flush(&self, store: &dyn Store) -> store::Result<usize> {
        let batch: Vec<(Arc<Usage>, TokenUse, i64, i64)> = lock(&self.0.usage)
            .iter()
            .filter(|(_, u)| u.pending())
            .map(|(id, u)| {
                let (used, wrote) = (u.used.load(Relaxed), u.wrote.load(Relaxed));
                let moved = |t: i64, flushed: &AtomicI64| if t > flushed.load(Relaxed) { text(t) } else { None };
                let uses = TokenUse {
                    id: id.clone(),
                    last_used_at: moved(used, &u.flushed_used),
                    last_write_at: moved(wrote, &u.flushed_wrote),
                };
                (u.clone(), uses, used, wrote)
            })
            .collect();
        if batch.is_empty() {
            return Ok(0);
        }
        let uses: Vec<TokenUse> = batch.iter().map(|(_, u, _, _)| u.clone()).collect();
        store.record_token_use(&uses).await?;
        for (u, _, used, wrote) in &batch {
            u.flushed_used.fetch_max(*used, Relaxed);
            u.flushed_wrote.fetch_max(*wrote, Relaxed);
            u.stored_used.fetch_max(*used, Relaxed);
            u.stored_wrote.fetch_max(*wrote, Relaxed);
        }
        Ok(batch.len())
    }

    /// [`Tokens::flush`], logging a failure (the times stay pending for the next one).
    pub async fn flush_logged(&self, store: &dyn Store) {
        match self.flush(store).await {
            Ok(0) => {}
            Ok(n) => tracing::debug!(tokens = n, "token use flushed"),
            Err(e) => tracing::warn!(error = %e, "could not write the tokens' last use; will retry"),
        }
    }

    /// Live `scim` tokens that have written, with the time of their last write in seconds since
    /// the epoch: the last-write metric's series.
    fn last_writes(&self) -> Vec<(String, f64)> {
        self.0
            .live
            .load()
            .iter()
            .filter(|e| e.record.scope == Scope::Scim)
            .filter_map(|e| match e.usage.last_write() {
                0 => None,
                ms => Some((e.record.name.clone(), ms as f64 / 1000.0)),
            })
            .collect()
    }

    /// Live tokens that have not expired.
    fn accepted(&self) -> usize {
        let now = now_ms();
        self.0.live.load().iter().filter(|e| !e.expired(now)).count()
    }

    /// Poll the store until `shutdown` fires; every [`FLUSH`], and when `shutdown` fires, write
    /// the tokens' use first.
    pub async fn refresh(
        self,
        store: Arc<dyn Store>,
        metrics: crate::metrics::Metrics,
        mut shutdown: tokio::sync::watch::Receiver<bool>,
    ) {
        let mut flushed = tokio::time::Instant::now();
        loop {
            if flushed.elapsed() >= FLUSH {
                self.flush_logged(&*store).await;
                flushed = tokio::time::Instant::now();
            }
            match store.tokens().await {
                Ok(all) => {
                    self.set(all);
                    metrics.token_refresh(true, self.accepted());
                }
                Err(e) => {
                    metrics.token_refresh(false, self.accepted());
                    tracing::warn!(error = %e, "could not re-read tokens; keeping the last set");
                }
            }
            metrics.token_last_writes(&self.last_writes());
            tokio::select! {
                _ = tokio::time::sleep(REFRESH) => {}
                _ = shutdown.changed() => {
                    self.flush_logged(&*store).await;
                    return;
                }
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denied {
    /// Unknown, revoked or expired.
    Unknown,
    Scope(Scope),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(name: &str, secret: &str, scope: Scope, revoked_at: Option<&str>) -> TokenRecord {
        TokenRecord {
            id: name.into(),
            name: name.into(),
            scope,
            hash: hash(secret),
            created_at: "t".into(),
            revoked_at: revoked_at.map(String::from),
            expires_at: None,
            last_used_at: None,
            last_write_at: None,
        }
    }

    #[test]
    fn checks_hash_and_scope_and_ignores_revoked() {
        let tokens = Tokens::default();
        let live = generate();
        let revoked = generate();
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

    #[test]
    fn an_expired_token_is_refused_like_an_unknown_one() {
        let tokens = Tokens::default();
        let (old, fresh, forever, garbled) = (generate(), generate(), generate(), generate());
        let with_expiry = |name, secret: &str, expires: &str| TokenRecord {
            expires_at: Some(expires.to_string()),
            ..rec(name, secret, Scope::Scim, None)
        };
        let later = crate::model::clock::text(chrono::Utc::now() + chrono::Duration::hours(1));
        tokens.set(vec![
            with_expiry("old", &old, "2020-01-01T00:00:00.000Z"),
            with_expiry("fresh", &fresh, &later),
            rec("forever", &forever, Scope::Scim, None),
            with_expiry("garbled", &garbled, "next tuesday"),
        ]);
        assert_eq!(tokens.check(&old, Scope::Scim), Err(Denied::Unknown));
        assert_eq!(
            tokens.check(&old, Scope::Audit),
            Err(Denied::Unknown),
            "not even a scope hint"
        );
        assert_eq!(tokens.check(&fresh, Scope::Scim), Ok("fresh".into()));
        assert_eq!(tokens.check(&forever, Scope::Scim), Ok("forever".into()));
        assert_eq!(
            tokens.check(&garbled, Scope::Scim),
            Err(Denied::Unknown),
            "fails closed"
        );
        let usage = tokens.usage();
        let old = usage.iter().find(|u| u.name == "old").expect("listed");
        assert!(old.expired && old.last_used_at.is_none(), "{old:?}");
        assert!(!usage.iter().find(|u| u.name == "fresh").expect("listed").expired);
        assert_eq!(tokens.accepted(), 2);
    }

    #[test]
    fn expiry_parses_lifetimes_and_times() {
        let now = chrono::DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
            .expect("time")
            .with_timezone(&chrono::Utc);
        for (input, want) in [
            ("90d", "2026-04-01T00:00:00.000Z"),
            ("12h", "2026-01-01T12:00:00.000Z"),
            ("30m", "2026-01-01T00:30:00.000Z"),
            ("2026-06-01T10:00:00+02:00", "2026-06-01T08:00:00.000Z"),
        ] {
            assert_eq!(parse_expiry(input, now).as_deref(), Ok(want), "{input}");
        }
        for bad in [
            "0d",
            "-5d",
            "90",
            "90s",
            "d",
            "",
            "2025-01-01T00:00:00Z",
            "99999999999999d",
        ] {
            assert!(parse_expiry(bad, now).is_err(), "{bad}");
        }
    }

    #[test]
    fn use_and_writes_are_recorded_in_memory_and_survive_a_refresh() {
        let tokens = Tokens::default();
        let secret = generate();
        tokens.set(vec![rec("okta", &secret, Scope::Scim, None)]);
        assert_eq!(tokens.usage()[0].last_used_at, None);
        let grant = tokens.authorize(&secret, Scope::Scim).expect("accepted");
        let after_use = tokens.usage();
        assert!(after_use[0].last_used_at.is_some());
        assert_eq!(after_use[0].last_write_at, None, "a read is no write");
        grant.wrote();
        assert!(tokens.last_writes()[0].1 > 0.0);
        // A refresh with the store's (older) times keeps this process's.
        let mut stored = rec("okta", &secret, Scope::Scim, None);
        stored.last_used_at = Some("2020-01-01T00:00:00.000Z".into());
        stored.last_write_at = Some("2020-01-01T00:00:00.000Z".into());
        tokens.set(vec![stored.clone()]);
        assert!(tokens.usage()[0].last_write_at.as_deref() > Some("2020-01-01T00:00:00.000Z"));
        // Another replica's later times, read from the store, show.
        stored.last_used_at = Some("2999-01-01T00:00:00.000Z".into());
        tokens.set(vec![stored]);
        assert_eq!(
            tokens.usage()[0].last_used_at.as_deref(),
            Some("2999-01-01T00:00:00.000Z")
        );
        // Refused and wrong-scope requests are no use.
        let other = Tokens::default();
        other.set(vec![rec("auditor", &secret, Scope::Audit, None)]);
        assert!(other.authorize(&secret, Scope::Scim).is_err());
        assert_eq!(other.usage()[0].last_used_at, None);
        assert!(other.last_writes().is_empty());
    }

    #[tokio::test]
    async fn flushes_only_what_moved_and_never_moves_a_time_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = crate::store::embedded::Embedded::open(dir.path()).await.expect("store");
        let (record, secret) = create(&store, "okta", Scope::Scim).await.expect("create");
        let tokens = Tokens::default();
        tokens.set(store.tokens().await.expect("tokens"));
        assert_eq!(
            tokens.flush(&store).await.expect("flush"),
            0,
            "nothing used, nothing written"
        );
        for _ in 0..100 {
            tokens.authorize(&secret, Scope::Scim).expect("accepted").wrote();
        }
        let stored = store.tokens().await.expect("tokens");
        assert_eq!(stored[0].last_used_at, None, "no store write per request");
        assert_eq!(
            tokens.flush(&store).await.expect("flush"),
            1,
            "one row for 100 requests"
        );
        let stored = store.tokens().await.expect("tokens");
        let shown = tokens.usage();
        assert_eq!(stored[0].last_used_at, shown[0].last_used_at);
        assert_eq!(stored[0].last_write_at, shown[0].last_write_at);
        assert!(stored[0].last_write_at.is_some());
        assert_eq!(tokens.flush(&store).await.expect("flush"), 0, "flushed already");
        // Another replica flushing an older time leaves the later one.
        store
            .record_token_use(&[TokenUse {
                id: record.id.clone(),
                last_used_at: Some("2020-01-01T00:00:00.000Z".into()),
                last_write_at: None,
            }])
            .await
            .expect("older");
        let again = store.tokens().await.expect("tokens");
        assert_eq!(again[0].last_used_at, stored[0].last_used_at);
        assert_eq!(again[0].last_write_at, stored[0].last_write_at);
        // A later one wins.
        store
            .record_token_use(&[TokenUse {
                id: record.id.clone(),
                last_used_at: None,
                last_write_at: Some("2999-01-01T00:00:00.000Z".into()),
            }])
            .await
            .expect("later");
        let again = store.tokens().await.expect("tokens");
        assert_eq!(again[0].last_used_at, stored[0].last_used_at);
        assert_eq!(again[0].last_write_at.as_deref(), Some("2999-01-01T00:00:00.000Z"));
        // Used, then revoked before the flush: the use is still written.
        tokio::time::sleep(Duration::from_millis(5)).await;
        tokens.authorize(&secret, Scope::Scim).expect("accepted");
        store
            .revoke_token("okta", &crate::model::clock::now())
            .await
            .expect("revoke");
        tokens.set(store.tokens().await.expect("tokens"));
        assert!(tokens.usage().is_empty());
        assert_eq!(tokens.flush(&store).await.expect("flush"), 1);
        assert_eq!(tokens.flush(&store).await.expect("flush"), 0);
        tokens.set(store.tokens().await.expect("tokens"));
        assert!(
            lock(&tokens.0.usage).is_empty(),
            "a revoked token's times are dropped once written"
        );
    }
}
