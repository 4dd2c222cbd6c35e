//! A decision log that shows tampering: records written through the hash chain, then edited,
//! deleted and inserted directly in SQLite and in PostgreSQL, and `audit verify --log` naming
//! each; an untouched log of 100k records holds; retention leaves a signed prune marker.

use crate::actors::kubectl;
use crate::support::{allowed, refused, scimgate, workflow, World};
use scimgate::audit::chain::{self, Chain, Problem};
use scimgate::audit::DecisionRecord;
use scimgate::model::{ChainMark, Link};
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
    let now = chrono::Utc::now();
    let tag = format!("{:016x}", now.timestamp_millis());
    process_in(store, signer, &tag, &times(now, n), true).await
}

async fn verify(store: &dyn Store, signer: &Signer) -> chain::Report {
    chain::verify(store, &Verifier::from_signer(signer), &[])
        .await
        .expect("verify")
}

/// Retention as the server runs it; the records it deleted.
async fn prune(store: &dyn Store, signer: &Signer, before: &str) -> u64 {
    chain::prune(store, signer, &Verifier::from_signer(signer), before)
        .await
        .expect("prune")
        .deleted
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
    assert_eq!(prune(&store, &signer, &cutoff).await, 40_000);
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

// ---------------------------------------------------------------------------------------------
// The second security review's finding 5: rewrites a database writer without the key could make
// that `audit verify --log` called sound. Each attack beside the legitimate case it must not
// break, on both backends.

/// A fresh store of either backend, and a way to run SQL on it behind the store's back.
struct Db {
    store: Arc<dyn Store>,
    sql: Sql,
    /// Where it is, to open it again.
    at: scimgate::store::Location,
    _dir: Option<tempfile::TempDir>,
}

enum Sql {
    Lite(sqlx::SqlitePool),
    Pg(sqlx::PgPool),
}

impl Db {
    async fn sqlite() -> Db {
        let dir = tempfile::tempdir().expect("tempdir");
        let at = scimgate::store::Location::Embedded(dir.path().to_path_buf());
        let store = scimgate::store::open(&at).await.expect("store");
        let url = format!(
            "sqlite://{}",
            dir.path().join(scimgate::store::embedded::FILE).display()
        );
        let pool = sqlx::SqlitePool::connect(&url).await.expect("sqlite");
        Db {
            store,
            sql: Sql::Lite(pool),
            at,
            _dir: Some(dir),
        }
    }

    async fn postgres(test: &str) -> Option<Db> {
        let url = crate::support::postgres_db(test).await?;
        let at = scimgate::store::Location::Postgres(url.clone());
        let store = scimgate::store::open(&at).await.expect("store");
        let pool = sqlx::PgPool::connect(&url).await.expect("pg");
        Some(Db {
            store,
            sql: Sql::Pg(pool),
            at,
            _dir: None,
        })
    }

    /// The database as it was before this version's migration (its indexes dropped, its row in
    /// `_sqlx_migrations` gone), so that opening it again runs the migration over what is there.
    async fn unapply_anchor_migration(&self) {
        self.run("DROP INDEX decision_marks_kind").await;
        self.run("DROP INDEX decisions_legacy").await;
        let version = match self.sql {
            Sql::Lite(_) => 8,
            Sql::Pg(_) => 5,
        };
        self.run(&format!("DELETE FROM _sqlx_migrations WHERE version = {version}"))
            .await;
    }

    /// Open the store again, as a new process does (and migrate it).
    async fn reopen(&mut self) {
        self.store = scimgate::store::open(&self.at).await.expect("reopen");
    }

    /// Run one statement as a database writer would.
    async fn run(&self, q: &str) {
        match &self.sql {
            Sql::Lite(p) => sqlx::query(q).execute(p).await.map(|_| ()),
            Sql::Pg(p) => sqlx::query(q).execute(p).await.map(|_| ()),
        }
        .unwrap_or_else(|e| panic!("{q}: {e}"));
    }
}

/// One test per backend for an attack scenario `$name(Db)`.
macro_rules! on_both_backends {
    ($name:ident) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name(super::Db::sqlite().await).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                if let Some(db) = super::Db::postgres(concat!("chain_", stringify!($name))).await {
                    super::$name(db).await;
                }
            }
        }
    };
}

fn key() -> Arc<Signer> {
    Arc::new(Signer::generate().expect("key").0)
}

fn iso(t: chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// A process's chain as the recorder writes it: one record per `ats` (in that order), batches of
/// 2,000, a checkpoint whenever one is due and at the end (a clean stop) when `stop` says so.
/// `tag` keeps ids apart between chains.
async fn process(
    db: &Db,
    signer: &Arc<Signer>,
    tag: &str,
    ats: &[chrono::DateTime<chrono::Utc>],
    stop: bool,
) -> Vec<DecisionRecord> {
    process_in(&*db.store, signer, tag, ats, stop).await
}

async fn process_in(
    store: &dyn Store,
    signer: &Arc<Signer>,
    tag: &str,
    ats: &[chrono::DateTime<chrono::Utc>],
    stop: bool,
) -> Vec<DecisionRecord> {
    let (mut c, mut marks) = Chain::start(signer.clone(), Verifier::from_signer(signer), store)
        .await
        .expect("start");
    let all: Vec<DecisionRecord> = ats
        .iter()
        .enumerate()
        .map(|(i, at)| DecisionRecord {
            id: format!("{tag}-{i:08}"),
            ..record(i, *at)
        })
        .collect();
    let mut written = Vec::with_capacity(all.len());
    for chunk in all.chunks(2_000) {
        let mut batch = chunk.to_vec();
        c.link(&mut batch);
        if c.due() || (stop && written.len() + batch.len() == all.len()) {
            marks.extend(c.checkpoint(store).await);
        }
        store.record_decisions(&batch, &marks).await.expect("record");
        marks.clear();
        written.extend(batch);
    }
    if all.is_empty() {
        store.record_decisions(&[], &marks).await.expect("record");
    }
    written
}

/// `n` timestamps a millisecond apart from `from`.
fn times(from: chrono::DateTime<chrono::Utc>, n: usize) -> Vec<chrono::DateTime<chrono::Utc>> {
    (0..n)
        .map(|i| from + chrono::Duration::milliseconds(i as i64 + 1))
        .collect()
}

fn replica(recs: &[DecisionRecord]) -> String {
    recs[0].link.as_ref().expect("link").replica.clone()
}

async fn holds(db: &Db, signer: &Signer) -> chain::Report {
    let r = verify(&*db.store, signer).await;
    assert!(r.holds(), "{:#?}", r.problems);
    r
}

async fn tampered(db: &Db, signer: &Signer) -> chain::Report {
    let r = verify(&*db.store, signer).await;
    assert!(!r.holds(), "the tampering went unnoticed: {r:#?}");
    r
}

/// Deleting one replica's records and all its marks: the next process started after it and
/// signed what it saw of it.
async fn a_deleted_replica(db: Db) {
    let signer = key();
    let now = chrono::Utc::now();
    let a = process(&db, &signer, "a", &times(now - chrono::Duration::hours(2), 2_500), true).await;
    process(&db, &signer, "b", &times(now - chrono::Duration::hours(1), 10), true).await;
    holds(&db, &signer).await;
    let gone = replica(&a);
    db.run(&format!("DELETE FROM decisions WHERE replica = '{gone}'")).await;
    db.run(&format!("DELETE FROM decision_marks WHERE replica = '{gone}'"))
        .await;
    let r = tampered(&db, &signer).await;
    assert!(
        r.problems
            .iter()
            .any(|p| matches!(p, Problem::Unseen { replica, seq: 2_500, .. } if *replica == gone)),
        "{:#?}",
        r.problems
    );
}
on_both_backends!(a_deleted_replica);

/// Deleting a stopped chain's last checkpoints with the records after them.
async fn a_truncated_chain(db: Db) {
    let signer = key();
    let now = chrono::Utc::now();
    let a = process(&db, &signer, "a", &times(now - chrono::Duration::hours(2), 2_500), true).await;
    let b = process(&db, &signer, "b", &times(now - chrono::Duration::hours(1), 10), true).await;
    holds(&db, &signer).await;
    let cut = replica(&a);
    db.run(&format!("DELETE FROM decisions WHERE replica = '{cut}' AND seq > 2000"))
        .await;
    db.run(&format!(
        "DELETE FROM decision_marks WHERE replica = '{cut}' AND kind = 'checkpoint' AND seq > 2000"
    ))
    .await;
    let r = tampered(&db, &signer).await;
    assert_eq!(
        r.problems,
        vec![Problem::Unseen {
            replica: cut.clone(),
            seq: 2_500,
            by: format!("the start of replica {}", replica(&b)),
            why: "the chain ends at 2000: the records after it were removed".into(),
        }]
    );
}
on_both_backends!(a_truncated_chain);

/// Recompute every hash after `recs[i]` (whose row the caller edited to `edited`), as someone
/// without the key but with the hash function would.
async fn rehash_from(db: &Db, recs: &[DecisionRecord], i: usize, edited: &DecisionRecord) {
    let mut prev = recs[i].link.as_ref().expect("link").prev_hash.clone();
    for (j, r) in recs.iter().enumerate().skip(i) {
        let r = if j == i { edited } else { r };
        let l = r.link.as_ref().expect("link");
        let h = chain::hash(&prev, &l.replica, l.seq, r);
        db.run(&format!(
            "UPDATE decisions SET prev_hash = '{prev}', hash = '{h}' WHERE id = '{}'",
            r.id
        ))
        .await;
        prev = h;
    }
}

/// Someone without the key turns `recs[i]` into an allow, recomputes every hash after it, and
/// drops the checkpoints after `keep` that no longer agree.
async fn rewrite(db: &Db, recs: &[DecisionRecord], i: usize, keep: i64) {
    let mut edited = recs[i].clone();
    edited.outcome = "allowed".into();
    db.run(&format!(
        "UPDATE decisions SET outcome = 'allowed' WHERE id = '{}'",
        edited.id
    ))
    .await;
    rehash_from(db, recs, i, &edited).await;
    db.run(&format!(
        "DELETE FROM decision_marks WHERE replica = '{}' AND kind = 'checkpoint' AND seq > {keep}",
        replica(recs)
    ))
    .await;
}

/// Editing a record, recomputing every hash after it and dropping the checkpoints that no longer
/// agree; beside it, a crash's unsigned tail, which is no tampering.
async fn a_rewritten_chain(db: Db) {
    let signer = key();
    let now = chrono::Utc::now();
    // A crash: 600 records written, never signed. Legitimate, and named only as a note.
    let crashed = process(
        &db,
        &signer,
        "crashed",
        &times(now - chrono::Duration::hours(4), 600),
        false,
    )
    .await;
    let r = holds(&db, &signer).await;
    assert_eq!(r.unsigned_tail.get(&replica(&crashed)), Some(&600), "{r:?}");

    // Rewritten from record 101 on, every checkpoint dropped: more unsigned records than a
    // replica ever leaves.
    let a = process(&db, &signer, "a", &times(now - chrono::Duration::hours(3), 2_500), true).await;
    holds(&db, &signer).await;
    rewrite(&db, &a, 100, 0).await;
    let r = tampered(&db, &signer).await;
    let unsigned = Problem::Unsigned {
        replica: replica(&a),
        records: 2_500,
    };
    assert_eq!(r.problems, vec![unsigned.clone()]);

    // Rewritten only after its second-last checkpoint (500 records, as few as a crash leaves),
    // its last checkpoint dropped: the next process's start saw that checkpoint.
    let c = process(&db, &signer, "c", &times(now - chrono::Duration::hours(2), 2_500), true).await;
    let d = process(&db, &signer, "d", &times(now - chrono::Duration::hours(1), 10), true).await;
    rewrite(&db, &c, 2_100, 2_000).await;
    let r = tampered(&db, &signer).await;
    let (rewritten, next) = (replica(&c), format!("the start of replica {}", replica(&d)));
    assert!(
        r.problems
            .iter()
            .any(|p| matches!(p, Problem::Unseen { replica, seq: 2_500, by, .. }
            if *replica == rewritten && *by == next)),
        "{:#?}",
        r.problems
    );
    assert_eq!(r.problems.len(), 2, "{:#?}", r.problems);
}
on_both_backends!(a_rewritten_chain);

/// An old `at` on a recent record: retention must not cut the chain up to it, nor sign a prune
/// mark over a hash nobody checked; a prefix really past retention is cut.
async fn an_old_date_and_retention(db: Db) {
    let signer = key();
    let now = chrono::Utc::now();
    // 2,000 records from 100 days ago, then 500 from today.
    let mut ats = times(now - chrono::Duration::days(100), 2_000);
    ats.extend(times(now - chrono::Duration::hours(1), 500));
    let a = process(&db, &signer, "a", &ats, true).await;
    let before = iso(now - chrono::Duration::days(90));
    db.run(&format!(
        "UPDATE decisions SET at = '2001-01-01T00:00:00.000Z' WHERE id = '{}'",
        a[2_300].id
    ))
    .await;
    // The legitimate prefix goes, up to its checkpoint; the edited record stays, retention says
    // the chain does not recompute past it, and verify names it.
    let pruned = chain::prune(&*db.store, &signer, &Verifier::from_signer(&signer), &before)
        .await
        .expect("prune");
    assert_eq!(pruned.deleted, 2_000);
    assert_eq!(
        pruned.refused,
        vec![chain::Refused {
            replica: replica(&a),
            reason: chain::Refusal::Broken,
            why: "record 2301 no longer matches its hash".into(),
        }]
    );
    let r = tampered(&db, &signer).await;
    assert!(
        r.problems
            .iter()
            .any(|p| matches!(p, Problem::Edited { id, .. } if *id == a[2_300].id)),
        "{:#?}",
        r.problems
    );
    assert_eq!(r.records, 500);

    // The same with the hashes after it recomputed and the checkpoints after it dropped: the
    // chain is consistent again, but nothing signed vouches for it, so nothing is cut.
    let b = process(&db, &signer, "b", &times(now - chrono::Duration::hours(1), 2_500), true).await;
    let mut edited = b[1_500].clone();
    edited.at = "2001-01-01T00:00:00.000Z".into();
    db.run(&format!(
        "UPDATE decisions SET at = '{}' WHERE id = '{}'",
        edited.at, edited.id
    ))
    .await;
    rehash_from(&db, &b, 1_500, &edited).await;
    db.run(&format!(
        "DELETE FROM decision_marks WHERE replica = '{}' AND kind = 'checkpoint' AND seq > 1000",
        replica(&b)
    ))
    .await;
    assert_eq!(prune(&*db.store, &signer, &before).await, 0);
    let left: i64 = db.store.decision_count().await.expect("count");
    assert_eq!(left, 3_000, "nothing of b was cut");

    // A record edited inside a prefix that really is past retention: cutting it and signing
    // where the chain now starts would launder the edit. Retention recomputes first, cuts
    // nothing it cannot vouch for, and the edit stays for verify to name.
    let mut ats = times(now - chrono::Duration::days(100), 2_000);
    ats.extend(times(now - chrono::Duration::minutes(30), 500));
    let e = process(&db, &signer, "e", &ats, true).await;
    db.run(&format!(
        "UPDATE decisions SET outcome = 'allowed' WHERE id = '{}'",
        e[1_500].id
    ))
    .await;
    let pruned = chain::prune(&*db.store, &signer, &Verifier::from_signer(&signer), &before)
        .await
        .expect("prune");
    assert!(
        pruned
            .refused
            .iter()
            .any(|r| r.replica == replica(&e) && r.reason == chain::Refusal::Broken),
        "{pruned:?}"
    );
    assert!(
        pruned.marks.iter().all(|m| m.replica != replica(&e)),
        "no prune mark vouches for e: {pruned:?}"
    );
    let r = tampered(&db, &signer).await;
    assert!(
        r.problems
            .iter()
            .any(|p| matches!(p, Problem::Edited { id, .. } if *id == e[1_500].id)),
        "{:#?}",
        r.problems
    );
}
on_both_backends!(an_old_date_and_retention);

/// A forged record dated before the first chain; beside it, records really written before the
/// chain existed, which the first start seals.
async fn a_forged_record_before_the_chains(db: Db) {
    let signer = key();
    let now = chrono::Utc::now();
    process(&db, &signer, "a", &times(now - chrono::Duration::hours(1), 100), true).await;
    holds(&db, &signer).await;
    db.run(
        "INSERT INTO decisions (id, at, request_uid, hook, kind, namespace, name, action, requester, groups, outcome, \
         mode, reason, latency_us, policy, run_as, templates) VALUES ('forged-old', '2020-01-01T00:00:00.000Z', 'u', \
         'validate', 'Workflow', 'team-a', 'x', 'approve', 'oidc:bob@example.com', '', 'allowed', 'enforce', '', 1, \
         'p', '', '')",
    )
    .await;
    let r = tampered(&db, &signer).await;
    assert!(
        matches!(&r.problems[..], [Problem::Inserted { id, .. }] if id == "forged-old"),
        "{:#?}",
        r.problems
    );
}
on_both_backends!(a_forged_record_before_the_chains);

/// A mark as the first chain version signed it: no `detail` claim.
fn first_version_mark(signer: &Signer, replica: &str, seq: i64, kind: &str, hash: &str, at: &str) -> ChainMark {
    ChainMark {
        replica: replica.into(),
        seq,
        kind: kind.into(),
        hash: hash.into(),
        at: at.into(),
        signature: signer.sign(serde_json::json!({
            "log": "scimgate-decision-log", "replica": replica, "seq": seq, "kind": kind, "hash": hash, "at": at,
        })),
    }
}

/// An upgrade: records from before any chain, a chain of the first chain version, and a record
/// inserted by hand after that chain began, all in a database of the schema before this
/// version. The first start of this version migrates it and seals only what predates the chains;
/// the seal then holds through retention, and records slipped in among the sealed ones, removed,
/// or removed with the seal itself are found — a restart does not seal again.
async fn an_upgrade_seals_what_predates_the_chains(mut db: Db) {
    let signer = key();
    let now = chrono::Utc::now();
    let days = chrono::Duration::days;
    db.unapply_anchor_migration().await;
    let legacy: Vec<DecisionRecord> = (0..30)
        .map(|i| DecisionRecord {
            id: format!("legacy-{i:03}"),
            ..record(i, now - days(50 - i as i64))
        })
        .collect();
    db.store.record_decisions(&legacy, &[]).await.expect("legacy");
    let old = "old-host-0a1b2c3d";
    let started = now - days(10);
    let mut prev = chain::ZERO.to_string();
    let chained: Vec<DecisionRecord> = times(started, 20)
        .into_iter()
        .enumerate()
        .map(|(i, at)| {
            let mut r = DecisionRecord {
                id: format!("old-{i:03}"),
                ..record(i, at)
            };
            let h = chain::hash(&prev, old, i as i64 + 1, &r);
            r.link = Some(Link {
                replica: old.into(),
                seq: i as i64 + 1,
                prev_hash: std::mem::replace(&mut prev, h.clone()),
                hash: h,
            });
            r
        })
        .collect();
    let marks = [
        first_version_mark(&signer, old, 0, "start", chain::ZERO, &iso(started)),
        first_version_mark(
            &signer,
            old,
            20,
            "checkpoint",
            &prev,
            &iso(started + chrono::Duration::seconds(1)),
        ),
    ];
    db.store.record_decisions(&chained, &marks).await.expect("old chain");
    let forged = DecisionRecord {
        id: "forged-recent".into(),
        ..record(99, now - days(5))
    };
    db.store.record_decisions(&[forged], &[]).await.expect("forged");

    db.reopen().await;
    process(&db, &signer, "new", &times(now - chrono::Duration::hours(1), 10), true).await;
    let r = tampered(&db, &signer).await;
    assert!(
        matches!(&r.problems[..], [Problem::Inserted { id, .. }] if id == "forged-recent"),
        "only the record inserted after the chains began is named: {:#?}",
        r.problems
    );
    assert_eq!(r.legacy, 30);
    db.run("DELETE FROM decisions WHERE id = 'forged-recent'").await;
    let r = holds(&db, &signer).await;
    assert_eq!((r.legacy, r.chains, r.records), (30, 2, 30));

    // Retention cuts the sealed records past it (a day apart: those 41 days old and older).
    let before = iso(now - days(40) - chrono::Duration::hours(1));
    let verifier = Verifier::from_signer(&signer);
    let pruned = chain::prune(&*db.store, &signer, &verifier, &before)
        .await
        .expect("prune");
    assert_eq!(pruned.deleted, 10);
    assert_eq!(holds(&db, &signer).await.legacy, 20);
    // The seal and the prune mark, had their log lines been collected, are anchors that hold.
    let seal = db
        .store
        .chain_marks(&scimgate::store::MarkFilter {
            replica: Some(chain::LEGACY.into()),
            kind: Some("seal"),
            seqs: None,
        })
        .await
        .expect("seal");
    let anchors: Vec<chain::Anchor> = seal
        .iter()
        .chain(&pruned.marks)
        .map(|m| chain::Anchor {
            replica: m.replica.clone(),
            seq: m.seq,
            hash: m.hash.clone(),
            kind: m.kind.clone(),
            source: "collected".into(),
        })
        .collect();
    assert_eq!(anchors.len(), 2, "{anchors:?}");
    let r = chain::verify(&*db.store, &verifier, &anchors).await.expect("verify");
    assert!(r.holds(), "{:#?}", r.problems);

    // A record slipped in among the sealed ones: which one cannot be told, but the seal fails.
    let slipped = DecisionRecord {
        id: "slipped".into(),
        ..record(98, now - days(35) + chrono::Duration::minutes(1))
    };
    db.store.record_decisions(&[slipped], &[]).await.expect("slipped");
    let r = tampered(&db, &signer).await;
    assert!(matches!(&r.problems[..], [Problem::Seal { .. }]), "{:#?}", r.problems);
    db.run("DELETE FROM decisions WHERE id = 'slipped'").await;
    holds(&db, &signer).await;

    // A sealed record removed.
    db.run("DELETE FROM decisions WHERE id = 'legacy-015'").await;
    let r = tampered(&db, &signer).await;
    assert!(matches!(&r.problems[..], [Problem::Seal { .. }]), "{:#?}", r.problems);

    // The seal removed with every record under it: the start mark saw the seal. A restart
    // after that does not seal anything again.
    db.run("DELETE FROM decisions WHERE replica IS NULL").await;
    db.run(&format!(
        "DELETE FROM decision_marks WHERE replica = '{}'",
        chain::LEGACY
    ))
    .await;
    process(
        &db,
        &signer,
        "restarted",
        &times(now - chrono::Duration::minutes(30), 5),
        true,
    )
    .await;
    let r = tampered(&db, &signer).await;
    assert!(
        r.problems
            .iter()
            .all(|p| matches!(p, Problem::Unseen { replica, seq: 30, .. } if replica == chain::LEGACY)),
        "{:#?}",
        r.problems
    );
    assert!(!r.problems.is_empty());
    let seals = db
        .store
        .chain_marks(&scimgate::store::MarkFilter {
            replica: Some(chain::LEGACY.into()),
            ..Default::default()
        })
        .await
        .expect("marks");
    assert!(seals.is_empty(), "{seals:?}");
}
on_both_backends!(an_upgrade_seals_what_predates_the_chains);

/// What the JSON log format writes, kept as a log pipeline would keep it.
#[derive(Clone, Default)]
struct Captured(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("log buffer").extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'w> tracing_subscriber::fmt::MakeWriter<'w> for Captured {
    type Writer = Captured;
    fn make_writer(&'w self) -> Captured {
        self.clone()
    }
}

/// One server process as far as its decision log goes: the recorder records `n` decisions and
/// stops, signing its tail.
async fn recorder_run(dir: &std::path::Path, signer: &Arc<Signer>, metrics: &scimgate::metrics::Metrics, n: usize) {
    let store = scimgate::store::open(&scimgate::store::Location::Embedded(dir.to_path_buf()))
        .await
        .expect("store");
    let (chain, marks) = Chain::start(signer.clone(), Verifier::from_signer(signer), &*store)
        .await
        .expect("chain");
    let (recorder, task) = scimgate::audit::recorder::Recorder::start(store.clone(), metrics.clone(), chain, marks);
    let tag = uuid::Uuid::new_v4().simple().to_string();
    for (i, at) in times(chrono::Utc::now(), n).into_iter().enumerate() {
        recorder
            .record(DecisionRecord {
                id: format!("{tag}-{i:08}"),
                ..record(i, at)
            })
            .await;
    }
    drop(recorder);
    task.await.expect("recorder");
    drop(store);
}

/// The database files (SQLite and its WAL), copied aside or back.
fn copy_db(from: &std::path::Path, to: &std::path::Path) {
    for suffix in ["", "-wal", "-shm"] {
        let name = format!("{}{suffix}", scimgate::store::embedded::FILE);
        let _ = std::fs::remove_file(to.join(&name));
        if from.join(&name).exists() {
            std::fs::copy(from.join(&name), to.join(&name)).expect("copy");
        }
    }
}

/// A whole database replaced by an older copy of itself holds on its own: every chain in it is
/// intact. Anchors collected meanwhile — the log lines the server printed in its JSON format
/// and a scrape of its metrics — name what the copy lacks; against the real database they hold.
/// Current-thread runtime: the recorder's log lines go to this test's subscriber.
#[tokio::test(flavor = "current_thread")]
async fn anchors_find_a_database_replaced_by_an_older_copy() {
    let logs = Captured::default();
    let _logging = tracing::subscriber::set_default(scimgate::telemetry::json(
        tracing_subscriber::EnvFilter::new("info"),
        logs.clone(),
    ));
    let dir = tempfile::tempdir().expect("tempdir");
    let old = tempfile::tempdir().expect("tempdir");
    let signer = Arc::new(Signer::load_or_create(&dir.path().join("keys/signing.key")).expect("key"));
    recorder_run(dir.path(), &signer, &scimgate::metrics::Metrics::new(), 1_500).await;
    copy_db(dir.path(), old.path());
    let metrics = scimgate::metrics::Metrics::new();
    recorder_run(dir.path(), &signer, &metrics, 1_500).await;

    let captured = String::from_utf8(logs.0.lock().expect("logs").clone()).expect("utf-8");
    let anchors = dir.path().join("anchors.txt");
    std::fs::write(&anchors, format!("{captured}{}", metrics.encode())).expect("anchors");
    let (found, _) = chain::anchors::parse(&captured, "logs", &Verifier::from_signer(&signer));
    let kinds: Vec<&str> = found.iter().map(|a| a.kind.as_str()).collect();
    assert_eq!(
        kinds.iter().filter(|k| **k == "start").count(),
        2,
        "both starts were published: {captured}"
    );
    assert!(kinds.contains(&"checkpoint"), "{captured}");
    let second = found.last().expect("an anchor").replica.clone();
    assert!(
        metrics
            .encode()
            .contains(&format!("scimgate_decision_log_checkpoint{{replica=\"{second}\"")),
        "{}",
        metrics.encode()
    );
    let verify_cli = |anchors: Option<&std::path::Path>| {
        let mut args: Vec<&std::ffi::OsStr> = vec![
            "audit".as_ref(),
            "verify".as_ref(),
            "--log".as_ref(),
            "--data-dir".as_ref(),
            dir.path().as_os_str(),
        ];
        if let Some(a) = anchors {
            args.extend(["--anchors".as_ref(), a.as_os_str()]);
        }
        scimgate(&args)
    };
    let (code, out, err) = verify_cli(Some(&anchors));
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("the log holds: 3000 records in 2 chains"), "{out}");

    copy_db(old.path(), dir.path());
    let (code, out, err) = verify_cli(None);
    assert_eq!(code, 0, "the older copy is consistent in itself: {out}{err}");
    assert!(out.contains("the log holds: 1500 records in 1 chains"), "{out}");
    let (code, out, err) = verify_cli(Some(&anchors));
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        out.contains(&format!(
            "MISSING   record 1500 of replica {second}, which the checkpoint anchor at"
        )),
        "{out}"
    );

    // An anchor file someone edited: the line no longer agrees with its signature.
    let edited = dir.path().join("edited.txt");
    let first_line = captured
        .lines()
        .find(|l| l.contains("decision log checkpoint"))
        .expect("a checkpoint line");
    std::fs::write(&edited, first_line.replace("\"seq\":", "\"seq\":1")).expect("edited");
    let (code, out, _) = verify_cli(Some(&edited));
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("ANCHOR    "), "{out}");
}

/// Two replicas writing at once, each checkpoint signing the other's latest, then pruned by
/// both at the same moment (as every replica runs retention): the log holds throughout, and
/// whatever either prune cut, nothing is refused.
async fn two_replicas_at_once(db: Db) {
    let signer = key();
    let store = &*db.store;
    let verifier = Verifier::from_signer(&signer);
    let start = |tag: &'static str| {
        let (signer, verifier) = (signer.clone(), verifier.clone());
        async move {
            let (c, marks) = Chain::start(signer, verifier, store).await.expect("start");
            (c, marks, tag)
        }
    };
    let (mut a, mut b) = (start("a").await, start("b").await);
    let now = chrono::Utc::now();
    // Six rounds of 1,500 records each, alternating; the first four rounds 100 days old.
    for round in 0..6 {
        let w = if round % 2 == 0 { &mut a } else { &mut b };
        let from = if round < 4 {
            now - chrono::Duration::days(100) + chrono::Duration::hours(round)
        } else {
            now - chrono::Duration::hours(6 - round)
        };
        let mut batch: Vec<DecisionRecord> = times(from, 1_500)
            .into_iter()
            .enumerate()
            .map(|(i, at)| DecisionRecord {
                id: format!("{}-{round}-{i:05}", w.2),
                ..record(i, at)
            })
            .collect();
        w.0.link(&mut batch);
        assert!(w.0.due());
        w.1.extend(w.0.checkpoint(store).await);
        store.record_decisions(&batch, &w.1).await.expect("record");
        w.1.clear();
    }
    let r = holds(&db, &signer).await;
    assert_eq!((r.chains, r.records, r.checkpoints), (2, 9_000, 6));
    let before = iso(now - chrono::Duration::days(90));
    let (x, y) = tokio::join!(
        chain::prune(store, &signer, &verifier, &before),
        chain::prune(store, &signer, &verifier, &before)
    );
    let (x, y) = (x.expect("prune"), y.expect("prune"));
    assert!(x.refused.is_empty() && y.refused.is_empty(), "{x:?} {y:?}");
    assert_eq!(x.deleted + y.deleted, 6_000, "{x:?} {y:?}");
    let r = holds(&db, &signer).await;
    assert_eq!(r.records, 3_000);
}
on_both_backends!(two_replicas_at_once);

/// Agents' decisions (issue 21): the person whose rights carried each is read back by both stores,
/// found by that person's query, and under the hash, so rewriting, removing or adding it is named;
/// records from before the column existed verify as they always did.
async fn an_agents_sponsor(mut db: Db) {
    let signer = key();
    let now = chrono::Utc::now();
    // A chain written before agents existed, and the database as it was then: no column.
    let old = process(&db, &signer, "old", &times(now - chrono::Duration::hours(2), 50), true).await;
    db.run("DROP INDEX decisions_on_behalf_of").await;
    db.run("ALTER TABLE decisions DROP COLUMN on_behalf_of").await;
    let version = match db.sql {
        Sql::Lite(_) => 11,
        Sql::Pg(_) => 8,
    };
    db.run(&format!("DELETE FROM _sqlx_migrations WHERE version = {version}"))
        .await;
    db.reopen().await;
    holds(&db, &signer).await;

    // Now an agent acts for alice and for bob, alice for herself.
    let (mut c, mut marks) = Chain::start(signer.clone(), Verifier::from_signer(&signer), &*db.store)
        .await
        .expect("start");
    let at = times(now - chrono::Duration::hours(1), 6);
    let mut recs: Vec<DecisionRecord> = (0..6)
        .map(|i| {
            let r = record(i, at[i]);
            let (requester, user_id, on_behalf_of) = match i % 3 {
                0 => ("oidc:alice@example.com", "u-alice", None),
                1 => ("oidc:pipeline-bot", "a-bot", Some("u-alice")),
                _ => ("oidc:pipeline-bot", "a-bot", Some("u-bob")),
            };
            DecisionRecord {
                id: format!("agents-{i}"),
                requester: requester.into(),
                user_id: Some(user_id.into()),
                on_behalf_of: on_behalf_of.map(String::from),
                ..r
            }
        })
        .collect();
    c.link(&mut recs);
    marks.extend(c.checkpoint(&*db.store).await);
    db.store.record_decisions(&recs, &marks).await.expect("record");
    let report = holds(&db, &signer).await;
    assert_eq!(report.records, 56);

    let query = |q: scimgate::model::DecisionQuery| {
        let store = db.store.clone();
        async move { store.query_decisions(&q).await.expect("query") }
    };
    let mut back = query(scimgate::model::DecisionQuery {
        user_id: Some("a-bot".into()),
        ..Default::default()
    })
    .await;
    back.reverse();
    let written: Vec<_> = recs.iter().filter(|r| r.user_id.as_deref() == Some("a-bot")).collect();
    assert_eq!(
        back.iter().collect::<Vec<_>>(),
        written,
        "read back as written, link and all"
    );
    // alice's query: her own and what the agent did for her.
    let alices: Vec<String> = query(scimgate::model::DecisionQuery {
        user_id: Some("u-alice".into()),
        or_on_behalf_of: Some("u-alice".into()),
        ..Default::default()
    })
    .await
    .into_iter()
    .map(|r| r.id)
    .collect();
    assert_eq!(alices, ["agents-4", "agents-3", "agents-1", "agents-0"]);
    let old_ones = query(scimgate::model::DecisionQuery {
        user_id: old[0].user_id.clone(),
        limit: 1000,
        ..Default::default()
    })
    .await;
    assert!(!old_ones.is_empty() && old_ones.iter().all(|r| r.on_behalf_of.is_none()));

    // A writer without the key rewrites whom the agent acted for, removes it, adds it.
    db.run("UPDATE decisions SET on_behalf_of = 'u-mallory' WHERE id = 'agents-1'")
        .await;
    db.run("UPDATE decisions SET on_behalf_of = NULL WHERE id = 'agents-2'")
        .await;
    db.run("UPDATE decisions SET on_behalf_of = 'u-bob' WHERE id = 'agents-3'")
        .await;
    db.run(&format!(
        "UPDATE decisions SET on_behalf_of = 'u-bob' WHERE id = '{}'",
        old[7].id
    ))
    .await;
    let r = tampered(&db, &signer).await;
    let edited: std::collections::BTreeSet<&str> = r
        .problems
        .iter()
        .filter_map(|p| match p {
            Problem::Edited { id, .. } => Some(id.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(
        edited,
        ["agents-1", "agents-2", "agents-3", old[7].id.as_str()].into(),
        "{:#?}",
        r.problems
    );
    assert_eq!(r.problems.len(), 4, "nothing else: {:#?}", r.problems);
}
on_both_backends!(an_agents_sponsor);
