//! The store conformance suite: one body of checks, run unchanged against the embedded store and
//! against PostgreSQL.

use scimgate::audit::query::DecisionQuery;
use scimgate::model::{ChainMark, DecisionRecord, Link};
use scimgate::scim::schema::ResourceType;
use scimgate::store::{self, Change, Error, Location, MarkFilter, Record, Scope, Seq, Store, TokenRecord, TokenUse};
use std::sync::Arc;

fn user(id: &str, name: &str, version: i64, active: bool) -> Record {
    Record {
        rt: ResourceType::User,
        id: Arc::from(id),
        unique_key: Arc::from(scimgate::model::name::fold(name)),
        version,
        body: Arc::from(serde_json::json!({"id": id, "userName": name, "active": active}).to_string()),
    }
}

fn group(id: &str, name: &str, version: i64, members: &[&str]) -> Record {
    let m: Vec<_> = members.iter().map(|m| serde_json::json!({"value": m})).collect();
    Record {
        rt: ResourceType::Group,
        id: Arc::from(id),
        unique_key: Arc::from(scimgate::model::name::fold(name)),
        version,
        body: Arc::from(serde_json::json!({"id": id, "displayName": name, "members": m}).to_string()),
    }
}

fn put(r: Record, previous: Option<i64>) -> Change {
    Change::Put { record: r, previous }
}

/// Commit `changes` as the commit after `base`, or [`Error::Behind`] if another came first.
async fn commit(s: &dyn Store, changes: &[Change], base: Seq) -> Result<Seq, Error> {
    let mut head = base;
    let seq = s
        .commit_with(base, &mut |d| {
            head = d.seq;
            if d.seq == base {
                changes.to_vec()
            } else {
                Vec::new()
            }
        })
        .await?;
    if head != base {
        return Err(Error::Behind { base, head });
    }
    Ok(seq)
}

/// A chain mark as the store keeps it (the store checks no signature).
fn mark(replica: &str, seq: i64, kind: &str) -> ChainMark {
    ChainMark {
        replica: replica.into(),
        seq,
        kind: kind.into(),
        hash: format!("hash-{replica}-{seq}"),
        at: scimgate::model::clock::now(),
        signature: "signature".into(),
    }
}

/// The decision log's chains: marks by filter, each replica's latest checkpoint, the replicas
/// retention looks at, and a prune that takes a prefix and the marks it makes moot.
async fn chains(s: &dyn Store, cutoff: &str) {
    let seed = crate::audit::seed("u1", "u4");
    let linked = |replica: &str, from: usize, n: usize| -> Vec<DecisionRecord> {
        (0..n)
            .map(|i| DecisionRecord {
                id: format!("{replica}-{i:03}"),
                link: Some(Link {
                    replica: replica.into(),
                    seq: i as i64 + 1,
                    prev_hash: String::new(),
                    hash: format!("hash-{replica}-{}", i + 1),
                }),
                ..seed[from + i].clone()
            })
            .collect()
    };
    // r-a: ten records from 40 days ago on; r-b: five recent ones; r-c: marks and no start.
    let (a, b) = (linked("r-a", 0, 10), linked("r-b", 30, 5));
    let marks = [
        mark("r-a", 0, "start"),
        mark("r-a", 5, "checkpoint"),
        mark("r-a", 10, "checkpoint"),
        mark("r-b", 0, "start"),
        mark("r-b", 5, "checkpoint"),
        mark("r-c", 3, "checkpoint"),
    ];
    s.record_decisions(&a, &marks[..3]).await.expect("r-a");
    s.record_decisions(&b, &marks[3..]).await.expect("r-b");
    s.record_decisions(&[], &marks)
        .await
        .expect("storing marks again is harmless");
    let latest = s.latest_checkpoints().await.expect("latest");
    assert_eq!(
        latest,
        vec![marks[2].clone(), marks[4].clone()],
        "by start mark, the highest seq"
    );
    let some = s
        .chain_marks(&MarkFilter {
            replica: Some("r-a".into()),
            kind: Some("checkpoint"),
            seqs: Some((1, 7)),
        })
        .await
        .expect("marks");
    assert_eq!(some, vec![marks[1].clone()]);
    assert_eq!(s.chain_marks(&MarkFilter::default()).await.expect("all").len(), 7);
    assert_eq!(
        s.prune_candidates(cutoff).await.expect("candidates"),
        vec!["r-a".to_string()]
    );
    // Pruning r-a up to 5: its records and checkpoints there go, the mark stays.
    let p = mark("r-a", 5, "prune");
    assert_eq!(s.prune_decisions(&p, None).await.expect("prune"), 5);
    let left = s
        .chain_marks(&MarkFilter {
            replica: Some("r-a".into()),
            ..MarkFilter::default()
        })
        .await
        .expect("marks");
    assert_eq!(left, vec![marks[0].clone(), p, marks[2].clone()]);
    let page = s.chain_page(None, 100).await.expect("page");
    assert_eq!(page, [&a[5..], &b[..]].concat(), "what is left, in chain order");
    assert_eq!(
        s.chain_page(Some(&("r-a".into(), 9)), 2).await.expect("page"),
        vec![a[9].clone(), b[0].clone()]
    );
}

async fn conformance(s: Arc<dyn Store>) {
    // Identity state: the sequence, inserts, conflicts.
    let empty = s.load().await.expect("load");
    assert_eq!((empty.records.len(), empty.seq), (0, 0));
    assert_eq!(s.head().await.expect("head"), 0);
    let seq = commit(
        &*s,
        &[
            put(user("u1", "Alice", 1, true), None),
            put(user("u2", "bob", 1, true), None),
        ],
        0,
    )
    .await
    .expect("commit");
    assert_eq!(seq, 1);
    let behind = commit(&*s, &[put(user("u3", "carol", 1, true), None)], 0).await;
    assert!(matches!(behind, Err(Error::Behind { base: 0, head: 1 })), "{behind:?}");
    let dup = commit(&*s, &[put(user("u3", "ALICE", 1, true), None)], 1).await;
    assert!(
        matches!(dup, Err(Error::Unique(_))),
        "userName is unique case-insensitively: {dup:?}"
    );
    let stale = commit(&*s, &[put(user("u1", "Alice", 3, false), Some(2))], 1).await;
    assert!(matches!(stale, Err(Error::Version(_))), "{stale:?}");
    // A failed commit takes no number and leaves nothing behind.
    assert_eq!(s.head().await.expect("head"), 1);
    assert_eq!(s.load().await.expect("load").records.len(), 2);

    // Updates, groups and deletes, each one commit; the change log replays them.
    assert_eq!(
        commit(&*s, &[put(user("u1", "Alice", 2, false), Some(1))], 1)
            .await
            .expect("update"),
        2
    );
    assert_eq!(
        commit(&*s, &[put(group("g1", "ML", 1, &["u1", "u2"]), None)], 2)
            .await
            .expect("group"),
        3
    );
    let u2 = user("u2", "bob", 1, true);
    assert_eq!(
        commit(&*s, &[Change::Delete { record: u2 }], 3).await.expect("delete"),
        4
    );
    let delta = s.changes_since(1).await.expect("changes").expect("log reaches back");
    assert_eq!(delta.seq, 4);
    let mut puts: Vec<(String, i64)> = delta.puts.iter().map(|r| (r.id.to_string(), r.version)).collect();
    puts.sort();
    assert_eq!(puts, vec![("g1".to_string(), 1), ("u1".to_string(), 2)]);
    assert_eq!(delta.deletes.len(), 1);
    let (rt, id, tombstone) = &delta.deletes[0];
    assert_eq!((*rt, &**id), (ResourceType::User, "u2"));
    assert_eq!(tombstone.as_ref().map(|t| &*t.unique_key), Some("bob"));
    assert!(s.changes_since(4).await.expect("changes").expect("current").is_empty());
    let everything = s.changes_since(0).await.expect("changes").expect("from the start");
    assert_eq!((everything.puts.len(), everything.deletes.len()), (2, 1));
    let loaded = s.load().await.expect("load");
    assert_eq!((loaded.seq, loaded.records.len(), loaded.tombstones.len()), (4, 2, 1));
    // Re-creating the name clears the tombstone.
    assert_eq!(
        commit(&*s, &[put(user("u4", "Bob", 1, true), None)], 4)
            .await
            .expect("recreate"),
        5
    );
    assert!(s.load().await.expect("load").tombstones.is_empty());
    // Once the log is pruned, a replica that far behind is told to reload.
    let future = (chrono::Utc::now() + chrono::Duration::minutes(1)).to_rfc3339();
    assert!(s.prune_changes(&future).await.expect("prune") >= 5);
    assert_eq!(s.changes_since(2).await.expect("changes"), None);
    assert!(s.changes_since(5).await.expect("changes").expect("current").is_empty());

    // Tokens.
    let t = TokenRecord {
        id: "t1".into(),
        name: "okta".into(),
        scope: Scope::Scim,
        hash: [7; 32],
        created_at: scimgate::model::clock::now(),
        revoked_at: None,
        expires_at: Some("2030-01-01T00:00:00.000Z".into()),
        last_used_at: None,
        last_write_at: None,
    };
    s.insert_token(&t).await.expect("token");
    assert!(matches!(s.insert_token(&t).await, Err(Error::TokenExists(_))));
    assert_eq!(s.tokens().await.expect("tokens"), vec![t.clone()]);
    // Use, flushed by replicas in any order: each time only moves forward.
    let times = |used: Option<&str>, wrote: Option<&str>| TokenUse {
        id: "t1".into(),
        last_used_at: used.map(String::from),
        last_write_at: wrote.map(String::from),
    };
    let stored = async || {
        let t = s.tokens().await.expect("tokens").remove(0);
        (t.last_used_at, t.last_write_at)
    };
    s.record_token_use(&[times(Some("2026-01-02T00:00:00.000Z"), None)])
        .await
        .expect("use");
    assert_eq!(stored().await, (Some("2026-01-02T00:00:00.000Z".into()), None));
    s.record_token_use(&[times(
        Some("2026-01-01T00:00:00.000Z"),
        Some("2026-01-01T00:00:00.000Z"),
    )])
    .await
    .expect("an older use");
    assert_eq!(
        stored().await,
        (
            Some("2026-01-02T00:00:00.000Z".into()),
            Some("2026-01-01T00:00:00.000Z".into())
        )
    );
    s.record_token_use(&[
        times(None, Some("2026-01-03T00:00:00.000Z")),
        TokenUse {
            id: "no-such-token".into(),
            last_used_at: Some("2026-01-03T00:00:00.000Z".into()),
            last_write_at: None,
        },
    ])
    .await
    .expect("a later write, and a token gone");
    assert_eq!(
        stored().await,
        (
            Some("2026-01-02T00:00:00.000Z".into()),
            Some("2026-01-03T00:00:00.000Z".into())
        )
    );
    s.record_token_use(&[]).await.expect("nothing");
    assert!(s
        .revoke_token("okta", &scimgate::model::clock::now())
        .await
        .expect("revoke"));
    assert!(!s
        .revoke_token("t1", &scimgate::model::clock::now())
        .await
        .expect("revoke twice"));
    assert!(s.tokens().await.expect("tokens")[0].revoked_at.is_some());

    // Decision log: the audit queries read the same on both backends.
    let all = crate::audit::seed("u1", "u4");
    s.record_decisions(&all, &[]).await.expect("record");
    s.record_decisions(&all[..5], &[])
        .await
        .expect("recording twice is harmless");
    assert_eq!(s.decision_count().await.expect("count"), 40);
    let ids = |q: DecisionQuery| {
        let s = s.clone();
        async move {
            s.query_decisions(&q)
                .await
                .expect("query")
                .into_iter()
                .map(|r| r.id)
                .collect::<Vec<_>>()
        }
    };
    let alice = ids(DecisionQuery {
        user_id: Some("u1".into()),
        ..Default::default()
    })
    .await;
    assert_eq!(alice.len(), 20);
    assert!(alice.windows(2).all(|w| w[0] > w[1]), "newest first");
    let page = ids(DecisionQuery {
        user_id: Some("u1".into()),
        limit: 7,
        after: Some(alice[6].clone()),
        ..Default::default()
    })
    .await;
    assert_eq!(page, alice[7..14].to_vec());
    let prod_denied = ids(DecisionQuery {
        namespace: Some("prod-pay".into()),
        outcome: Some("denied".into()),
        ..Default::default()
    })
    .await;
    let expected: Vec<String> = all
        .iter()
        .rev()
        .filter(|r| r.namespace == "prod-pay" && r.outcome == "denied")
        .map(|r| r.id.clone())
        .collect();
    assert_eq!(prod_denied, expected);
    let by_group = ids(DecisionQuery {
        group: Some("ML".into()),
        ..Default::default()
    })
    .await;
    assert_eq!(by_group.len(), 20);
    let cutoff = (chrono::Utc::now() - chrono::Duration::days(30)).to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let recent = ids(DecisionQuery {
        from: Some(cutoff.clone()),
        ..Default::default()
    })
    .await;
    assert_eq!(recent.len(), all.iter().filter(|r| r.at >= cutoff).count());
    // Records in no chain, in the order the legacy seal hashes them: (at, id), paged.
    let mut by_time: Vec<(String, String)> = all.iter().map(|r| (r.at.clone(), r.id.clone())).collect();
    by_time.sort();
    let key = |r: &DecisionRecord| (r.at.clone(), r.id.clone());
    let legacy: Vec<_> = s
        .legacy_page(None, 1000)
        .await
        .expect("legacy")
        .iter()
        .map(key)
        .collect();
    assert_eq!(legacy, by_time);
    let page: Vec<_> = s
        .legacy_page(Some(&by_time[9]), 5)
        .await
        .expect("legacy page")
        .iter()
        .map(key)
        .collect();
    assert_eq!(page, by_time[10..15].to_vec());
    // A legacy prune takes them up to an (at, id), and stores its mark.
    let old = all.iter().filter(|r| r.at < cutoff).count();
    let legacy_prune = mark("(legacy)", old as i64, "prune");
    assert_eq!(
        s.prune_decisions(&legacy_prune, Some(&by_time[old - 1]))
            .await
            .expect("prune"),
        old as u64
    );
    assert_eq!(s.decision_count().await.expect("count"), (40 - old) as i64);
    assert_eq!(s.legacy_page(None, 1).await.expect("legacy")[0].id, by_time[old].1);
    chains(&*s, &cutoff).await;
    assert_eq!(s.user_id_for("ALICE").await.expect("live"), Some("u1".into()));
    assert_eq!(s.user_id_for("nobody").await.expect("unknown"), None);
    offboarding_claims(&*s).await;
}

/// One replica sweeps a departure: the first to claim it, for as long as it renews; another once
/// its time ran out; nobody once it is done. Another departure of the same person is new.
async fn offboarding_claims(s: &dyn Store) {
    use scimgate::store::{Claim, OffboardingClaim};
    let claim = |replica: &'static str, now: &'static str, until: &'static str| async move {
        let c = OffboardingClaim {
            user_id: "u1",
            departure: "deactivated@3",
            replica,
            now,
            until,
        };
        s.claim_offboarding(&c).await.expect("claim")
    };
    let (t0, t1, t2, t3) = (
        "2026-12-03T10:00:00.000Z",
        "2026-12-03T10:01:00.000Z",
        "2026-12-03T10:02:00.000Z",
        "2026-12-03T10:03:00.000Z",
    );
    assert_eq!(claim("a", t0, t1).await, Claim::Mine);
    assert_eq!(claim("b", t0, t1).await, Claim::Held);
    assert_eq!(claim("a", t0, t2).await, Claim::Mine, "renewed");
    assert_eq!(claim("b", t1, t2).await, Claim::Held, "not run out yet");
    assert_eq!(
        claim("b", t2, t3).await,
        Claim::Held,
        "runs out after its time, not at it"
    );
    assert_eq!(
        claim("b", "2026-12-03T10:02:00.001Z", t3).await,
        Claim::Mine,
        "taken over"
    );
    assert_eq!(claim("a", t2, t3).await, Claim::Held, "lost");
    let done = OffboardingClaim {
        user_id: "u1",
        departure: "deactivated@3",
        replica: "a",
        now: t2,
        until: t3,
    };
    s.finish_offboarding(&done).await.expect("finish");
    assert_eq!(claim("b", t2, t3).await, Claim::Done);
    assert_eq!(claim("a", "2026-12-04T00:00:00.000Z", t3).await, Claim::Done);
    let later = OffboardingClaim {
        departure: "deactivated@5",
        ..done
    };
    assert_eq!(
        s.claim_offboarding(&later).await.expect("claim"),
        Claim::Mine,
        "a later departure"
    );
}

#[tokio::test]
async fn embedded_store_conforms() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = store::open(&Location::Embedded(dir.path().to_path_buf()))
        .await
        .expect("open");
    assert!(
        s.feed().await.expect("feed").is_none(),
        "nobody else writes an embedded store"
    );
    conformance(s).await;
}

#[tokio::test]
async fn postgres_store_conforms() {
    let Some(url) = crate::support::postgres_db("postgres_store_conforms").await else {
        return;
    };
    // Two processes starting on an empty database migrate it once, together.
    let at = Location::Postgres(url);
    let (a, b) = tokio::join!(store::open(&at), store::open(&at));
    let (s, _other) = (a.expect("open"), b.expect("open concurrently"));
    assert!(s.feed().await.expect("feed").is_some());
    conformance(s).await;
}

/// Issue 12 §3: userName / displayName keys fold ASCII case only. A database written before keyed
/// them with Unicode lower-casing; the migration recomputes every key from the stored name, so a
/// look-alike stored under kate's key (KELVIN SIGN U+212A lower-cases to `k`) gets its own and
/// kate can be provisioned beside it. `unapply` makes the database look as it did before the
/// migration (its row in `_sqlx_migrations` gone), so reopening runs it.
async fn rekeys_names_stored_before_ascii_folding<F, Fut>(open: impl Fn() -> F, unapply: impl Fn() -> Fut)
where
    F: std::future::Future<Output = Arc<dyn Store>>,
    Fut: std::future::Future<Output = ()>,
{
    let old_key = |name: &str, r: Record| Record {
        unique_key: Arc::from(name.to_lowercase()),
        ..r
    };
    let s = open().await;
    let kelvin = "\u{212A}ate@example.com";
    commit(
        &*s,
        &[
            put(old_key(kelvin, user("u-kelvin", kelvin, 1, true)), None),
            put(
                old_key("Ärger@Example.com", user("u-arger", "Ärger@Example.com", 1, true)),
                None,
            ),
            put(old_key("\u{212A}ube", group("g-kelvin", "\u{212A}ube", 1, &[])), None),
        ],
        0,
    )
    .await
    .expect("commit with the old keys");
    // The old key at work: kate's name finds the look-alike.
    assert_eq!(
        s.user_id_for("kate@example.com").await.expect("old"),
        Some("u-kelvin".into())
    );
    drop(s);
    unapply().await;
    let s = open().await;
    let keys: Vec<(String, String)> = s
        .load()
        .await
        .expect("load")
        .records
        .iter()
        .map(|r| (r.id.to_string(), r.unique_key.to_string()))
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    assert_eq!(
        keys,
        vec![
            ("g-kelvin".into(), "\u{212A}ube".into()),
            ("u-arger".into(), "Ärger@example.com".into()),
            ("u-kelvin".into(), kelvin.into()),
        ]
    );
    assert_eq!(
        s.user_id_for("\u{212A}ATE@EXAMPLE.COM").await.expect("kelvin"),
        Some("u-kelvin".into())
    );
    assert_eq!(s.user_id_for("kate@example.com").await.expect("kate"), None);
    assert_eq!(
        s.user_id_for("ÄRGER@example.com").await.expect("arger"),
        Some("u-arger".into())
    );
    let head = s.head().await.expect("head");
    commit(
        &*s,
        &[
            put(user("u-kate", "kate@example.com", 1, true), None),
            put(group("g-kube", "kube", 1, &[]), None),
        ],
        head,
    )
    .await
    .expect("kate and kube beside their look-alikes");
    assert_eq!(
        s.user_id_for("KATE@example.com").await.expect("kate"),
        Some("u-kate".into())
    );
}

#[tokio::test]
async fn embedded_store_rekeys_names_stored_before_ascii_folding() {
    let dir = tempfile::tempdir().expect("tempdir");
    let at = Location::Embedded(dir.path().to_path_buf());
    let db = dir.path().join(scimgate::store::embedded::FILE);
    rekeys_names_stored_before_ascii_folding(
        async || store::open(&at).await.expect("open"),
        async || {
            use sqlx::Connection;
            let mut c = sqlx::SqliteConnection::connect(&format!("sqlite://{}", db.display()))
                .await
                .expect("connect");
            sqlx::query("DELETE FROM _sqlx_migrations WHERE version = 7")
                .execute(&mut c)
                .await
                .expect("unapply");
            let _ = c.close().await;
        },
    )
    .await;
}

#[tokio::test]
async fn postgres_store_rekeys_names_stored_before_ascii_folding() {
    let Some(url) = crate::support::postgres_db("postgres_store_rekeys_names_stored_before_ascii_folding").await else {
        return;
    };
    let at = Location::Postgres(url.clone());
    rekeys_names_stored_before_ascii_folding(
        async || store::open(&at).await.expect("open"),
        async || {
            use sqlx::Connection;
            let mut c = sqlx::PgConnection::connect(&url).await.expect("connect");
            sqlx::query("DELETE FROM _sqlx_migrations WHERE version = 4")
                .execute(&mut c)
                .await
                .expect("unapply");
            let _ = c.close().await;
        },
    )
    .await;
}
