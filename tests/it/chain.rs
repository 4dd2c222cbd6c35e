//! A decision log that shows tampering: records written through the hash chain, then edited,
//! deleted and inserted directly in SQLite and in PostgreSQL, and `audit verify --log` naming
//! each; an untouched log of 100k records holds; retention leaves a signed prune marker.

use crate::actors::kubectl;
use crate::support::{allowed, refused, scimgate, workflow, World};
use scimgate::audit::chain::{self, Chain, Problem};
use scimgate::audit::DecisionRecord;
use scimgate::stamp::{Signer, Verifier};
use scimgate::store::Store;
use std::sync::Arc;

fn record(i: usize, at: chrono::DateTime<chrono::Utc>) -> DecisionRecord {
    DecisionRecord {
        id: format!("{:016x}-{i:08}", at.timestamp_millis()),
        at: at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        request_uid: format!("uid-{i}"),
        hook: "validate".into(),
        kind: "Workflow".into(),
        namespace: format!("team-{}", i % 7),
        name: format!("run-{i}"),
        action: "submit".into(),
        requester: format!("oidc:user-{}@example.com", i % 13),
        user_id: Some(format!("u-{}", i % 13)),
        groups: "pipeline-users".into(),
        rule: Some("team-submit".into()),
        outcome: if i % 5 == 0 { "denied".into() } else { "allowed".into() },
        mode: "enforce".into(),
        latency_us: 90,
        policy: "digest".into(),
        run_as: "default".into(),
        ..Default::default()
    }
}

/// `n` records a millisecond apart from now on, written as the recorder writes them: linked into
/// one chain in batches of 2,000, a checkpoint whenever one is due (at this rate: every batch)
/// and at the end.
async fn write_chain(store: &dyn Store, signer: &Arc<Signer>, n: usize) -> Vec<DecisionRecord> {
    let (mut c, start) = Chain::start(signer.clone());
    let now = chrono::Utc::now();
    let all: Vec<DecisionRecord> = (0..n)
        .map(|i| record(i, now + chrono::Duration::milliseconds(i as i64 + 1)))
        .collect();
    let mut marks = vec![start];
    let mut written = Vec::with_capacity(n);
    for chunk in all.chunks(2_000) {
        let mut batch = chunk.to_vec();
        c.link(&mut batch);
        if c.due() || written.len() + batch.len() == n {
            marks.extend(c.checkpoint());
        }
        store.record_decisions(&batch, &marks).await.expect("record");
        marks.clear();
        written.extend(batch);
    }
    written
}

async fn verify(store: &dyn Store, signer: &Signer) -> chain::Report {
    chain::verify(store, &Verifier::from_signer(signer))
        .await
        .expect("verify")
}

/// The same tampering on either backend; `sql` runs a statement against it.
async fn tampering_is_named<F>(store: &dyn Store, sql: F)
where
    F: AsyncFn(&str),
{
    let (signer, _) = Signer::generate().expect("key");
    let signer = Arc::new(signer);
    let recs = write_chain(store, &signer, 2_500).await;
    let clean = verify(store, &signer).await;
    assert!(clean.holds(), "{:?}", clean.problems);
    assert_eq!(clean.records, 2_500);
    assert!(clean.checkpoints >= 2, "{}", clean.checkpoints);
    assert!(clean.unsigned_tail.is_empty(), "{:?}", clean.unsigned_tail);

    // An edited record: its content no longer hashes to its hash.
    let edited = &recs[100];
    sql(&format!(
        "UPDATE decisions SET outcome = 'allowed' WHERE id = '{}'",
        edited.id
    ))
    .await;
    // A removed one.
    let removed = &recs[200];
    sql(&format!("DELETE FROM decisions WHERE id = '{}'", removed.id)).await;
    // One inserted by hand, in no chain.
    sql(&format!(
        "INSERT INTO decisions (id, at, request_uid, hook, kind, namespace, name, action, requester, groups, outcome, \
         mode, reason, latency_us, policy, run_as, templates) VALUES ('forged-1', '{}', 'u', 'validate', 'Workflow', \
         'team-a', 'x', 'approve', 'oidc:bob@example.com', '', 'allowed', 'enforce', '', 1, 'p', '', '')",
        recs[300].at
    ))
    .await;
    // One edited by someone who knows the hash and rewrote it: the next record no longer chains
    // to it, and the checkpoint covering it disagrees.
    let rehashed = &recs[400];
    let mut forged = rehashed.clone();
    forged.outcome = "allowed".into();
    forged.user_id = Some("u-someone-else".into());
    let link = forged.link.clone().expect("link");
    let new_hash = chain::hash(&link.prev_hash, &link.replica, link.seq, &forged);
    sql(&format!(
        "UPDATE decisions SET user_id = 'u-someone-else', outcome = 'allowed', hash = '{new_hash}' WHERE id = '{}'",
        rehashed.id
    ))
    .await;
    // The newest records, under the last checkpoint, removed.
    for r in &recs[2_497..] {
        sql(&format!("DELETE FROM decisions WHERE id = '{}'", r.id)).await;
    }

    let report = verify(store, &signer).await;
    assert!(!report.holds());
    let p = &report.problems;
    assert!(
        p.iter()
            .any(|x| matches!(x, Problem::Edited { id, .. } if *id == edited.id)),
        "{p:#?}"
    );
    let seq = |r: &DecisionRecord| r.link.as_ref().expect("link").seq;
    assert!(
        p.iter()
            .any(|x| matches!(x, Problem::Removed { from, to, .. } if *from == seq(removed) && *to == seq(removed))),
        "{p:#?}"
    );
    assert!(
        p.iter()
            .any(|x| matches!(x, Problem::Inserted { id, .. } if id == "forged-1")),
        "{p:#?}"
    );
    assert!(
        p.iter()
            .any(|x| matches!(x, Problem::Edited { id, .. } if *id == rehashed.id)),
        "{p:#?}"
    );
    assert!(
        p.iter()
            .any(|x| matches!(x, Problem::Removed { from, to, .. } if *from == seq(&recs[2_497]) && *to == 2_500)),
        "{p:#?}"
    );
    assert_eq!(p.len(), 5, "nothing else is reported: {p:#?}");
    // Nothing untouched is named.
    for r in [&recs[0], &recs[99], &recs[101], &recs[1_500]] {
        assert!(
            !p.iter().any(|x| x.to_string().contains(&r.id)),
            "{} named: {p:#?}",
            r.id
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_tampering_is_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = scimgate::store::embedded::Embedded::open(dir.path())
        .await
        .expect("store");
    let url = format!(
        "sqlite://{}",
        dir.path().join(scimgate::store::embedded::FILE).display()
    );
    let pool = sqlx::SqlitePool::connect(&url).await.expect("sqlite");
    tampering_is_named(&store, async |q: &str| {
        sqlx::query(q).execute(&pool).await.expect(q);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_tampering_is_named() {
    let Some(url) = crate::support::postgres_db("postgres_tampering_is_named").await else {
        return;
    };
    let store = scimgate::store::postgres::Postgres::open(&url).await.expect("store");
    let pool = sqlx::PgPool::connect(&url).await.expect("pg");
    tampering_is_named(&store, async |q: &str| {
        sqlx::query(q).execute(&pool).await.expect(q);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untouched_log_of_100k_records_holds_and_survives_retention() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = scimgate::store::embedded::Embedded::open(dir.path())
        .await
        .expect("store");
    let signer = Arc::new(Signer::load_or_create(&dir.path().join("keys/signing.key")).expect("key"));
    let recs = write_chain(&store, &signer, 100_000).await;
    let report = verify(&store, &signer).await;
    assert!(report.holds(), "{:?}", report.problems);
    assert_eq!((report.records, report.chains), (100_000, 1));
    assert_eq!(report.checkpoints, 100_000 / 2_000);

    // Retention deletes the oldest part of the chain and leaves a signed marker where it now
    // starts: the rest still holds.
    let cutoff = recs[40_000].at.clone();
    assert_eq!(chain::prune(&store, &signer, &cutoff).await.expect("prune"), 40_000);
    let report = verify(&store, &signer).await;
    assert!(report.holds(), "{:?}", report.problems);
    assert_eq!(report.records, 60_000);
    // Deleting the new first record is still seen.
    let pool = sqlx::SqlitePool::connect(&format!(
        "sqlite://{}",
        dir.path().join(scimgate::store::embedded::FILE).display()
    ))
    .await
    .expect("sqlite");
    sqlx::query("DELETE FROM decisions WHERE id = ?")
        .bind(&recs[40_000].id)
        .execute(&pool)
        .await
        .expect("delete");
    drop(store);
    // The CLI, on the data dir with its signing key: exit 1, the gap named.
    let (code, out, err) = scimgate(&[
        "audit".as_ref(),
        "verify".as_ref(),
        "--log".as_ref(),
        "--data-dir".as_ref(),
        dir.path().as_os_str(),
    ]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.contains("REMOVED   record 40001 of replica"), "{out}");
    assert!(out.contains("TAMPERED: 59999 records in 1 chains"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_servers_own_log_holds_until_someone_edits_it() {
    let w = World::new().await;
    let alice = kubectl(&w.api, "alice@example.com");
    allowed(alice.create(&workflow("team-a")).await);
    refused(kubectl(&w.api, "mallory@example.com").create(&workflow("team-a")).await);
    let decisions = w.decisions(2).await;
    assert_eq!(decisions.len(), 2, "{decisions:?}");
    let dir = w.s.stop().await;
    let verify_cli = || {
        scimgate(&[
            "audit".as_ref(),
            "verify".as_ref(),
            "--log".as_ref(),
            "--data-dir".as_ref(),
            dir.path().as_os_str(),
        ])
    };
    // Stopping signed the tail: everything holds, nothing unsigned.
    let (code, out, err) = verify_cli();
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("the log holds: 2 records in 1 chains"), "{out}");
    assert!(!out.contains("not yet under a signed checkpoint"), "{out}");
    // Mallory's denial turned into an allow.
    let denied = decisions.iter().find(|d| d.outcome == "denied").expect("denied");
    let pool = sqlx::SqlitePool::connect(&format!(
        "sqlite://{}",
        dir.path().join(scimgate::store::embedded::FILE).display()
    ))
    .await
    .expect("sqlite");
    sqlx::query("UPDATE decisions SET outcome = 'allowed' WHERE id = ?")
        .bind(&denied.id)
        .execute(&pool)
        .await
        .expect("edit");
    let (code, out, _) = verify_cli();
    assert_eq!(code, 1, "{out}");
    assert!(out.contains(&format!("EDITED    {}", denied.id)), "{out}");
}
