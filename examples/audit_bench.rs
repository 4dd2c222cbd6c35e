//! Decision-log benchmark (bench/audit.sh runs it): write N records through the store the way
//! the recorder does (batches of 2,000) twice — plain, as before the hash chain, and chained
//! with signed checkpoints as the recorder writes them now — then seal the plain log (as the
//! first start after an upgrade does), verify the chained log, time queries by user and 7-day
//! range, and prune the older half of the chained log.
//!
//!   audit_bench DATA_DIR RECORDS USERS QUERIES
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test, benchmark and example code: a failed assumption is a failed run"
)]

use scimgate::audit::query::DecisionQuery;
use scimgate::audit::DecisionRecord;
use scimgate::store::embedded::Embedded;
use scimgate::store::Store;
use std::time::Instant;

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let dir = std::path::PathBuf::from(&args[1]);
    let n: usize = args[2].parse().expect("RECORDS");
    let users: usize = args[3].parse().expect("USERS");
    let queries: usize = args[4].parse().expect("QUERIES");
    let start = chrono::Utc::now() - chrono::Duration::days(90);
    let plain = Embedded::open(&dir.join("plain")).await.expect("store");
    let plain_secs = record(&plain, n, users, start, None).await;
    println!(
        "plain:   recorded {n} decisions in {plain_secs:.1} s = {:.0} records/s (durable, batches of 2000)",
        n as f64 / plain_secs
    );
    let (signer, _) = scimgate::stamp::Signer::generate().expect("key");
    let signer = std::sync::Arc::new(signer);
    let verifier = scimgate::stamp::Verifier::from_signer(&signer);
    // The plain store's records are in no chain, as a database from before the chains: the
    // first start of a chain seals them.
    let t = Instant::now();
    let (_, marks) = scimgate::audit::chain::Chain::start(signer.clone(), verifier.clone(), &plain)
        .await
        .expect("seal");
    println!(
        "seal:    {} records from before the chains hashed and sealed at the first start in {:.1} s",
        marks.first().map_or(0, |m| m.seq),
        t.elapsed().as_secs_f64()
    );
    drop(plain);
    let store = Embedded::open(&dir.join("chained")).await.expect("store");
    let (chain, start_marks) = scimgate::audit::chain::Chain::start(signer.clone(), verifier.clone(), &store)
        .await
        .expect("start");
    store.record_decisions(&[], &start_marks).await.expect("start");
    let secs = record(&store, n, users, start, Some(chain)).await;
    println!(
        "chained: recorded {n} decisions in {secs:.1} s = {:.0} records/s (hash chain, a signed checkpoint per batch of 2000, as the recorder at this rate); {:.1}% of the plain rate",
        n as f64 / secs,
        100.0 * plain_secs / secs
    );
    let t = Instant::now();
    let report = scimgate::audit::chain::verify(&store, &verifier, &[])
        .await
        .expect("verify");
    assert!(report.holds(), "{:?}", report.problems);
    println!(
        "audit verify --log: {} records, {} checkpoints checked in {:.1} s",
        report.records,
        report.checkpoints,
        t.elapsed().as_secs_f64()
    );
    query_bench(&store, n, users, queries, start).await;
    // Retention of the older half, as the hourly prune does it: recomputed up to a checkpoint.
    let cutoff = (start + chrono::Duration::days(45)).to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let t = Instant::now();
    let pruned = scimgate::audit::chain::prune(&store, &signer, &verifier, &cutoff)
        .await
        .expect("prune");
    assert!(pruned.refused.is_empty(), "{:?}", pruned.refused);
    println!(
        "prune:   {} records past retention recomputed and deleted in {:.1} s",
        pruned.deleted,
        t.elapsed().as_secs_f64()
    );
}

/// Write `n` records in batches of 2,000 (chained when `chain` is given, with a checkpoint
/// whenever one is due, as the recorder does); returns the seconds it took.
async fn record(
    store: &Embedded,
    n: usize,
    users: usize,
    start: chrono::DateTime<chrono::Utc>,
    mut chain: Option<scimgate::audit::chain::Chain>,
) -> f64 {
    let step_ms = (90 * 24 * 3600 * 1000) / n as i64;
    let t = Instant::now();
    let mut batch = Vec::with_capacity(2000);
    for i in 0..n {
        let at = start + chrono::Duration::milliseconds(step_ms * i as i64);
        let u = (i * 7919) % users;
        batch.push(DecisionRecord {
            id: format!("{:016x}-{i:08}", at.timestamp_millis()),
            at: at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            request_uid: format!("uid-{i}"),
            hook: "validate".into(),
            kind: "Workflow".into(),
            namespace: format!("team-{}", u % 50),
            name: format!("run-{i}"),
            action: "submit".into(),
            requester: format!("oidc:user-{u}@example.com"),
            user_id: Some(format!("user-id-{u}")),
            groups: format!("team-{},all", u % 50),
            rule: Some("team-submit".into()),
            outcome: if i % 10 == 0 { "denied".into() } else { "allowed".into() },
            mode: "enforce".into(),
            reason: String::new(),
            latency_us: 80,
            policy: "digest".into(),
            run_as: "default".into(),
            templates: String::new(),
            submitter_id: None,
            stamp_id: None,
            authenticated: false,
            prior_decision: None,
            on_behalf_of: None,
            link: None,
        });
        if batch.len() == 2000 || i + 1 == n {
            let mut marks = Vec::new();
            if let Some(c) = chain.as_mut() {
                c.link(&mut batch);
                if c.due() || i + 1 == n {
                    marks.extend(c.checkpoint(store).await);
                }
            }
            store.record_decisions(&batch, &marks).await.expect("insert");
            batch.clear();
        }
    }
    t.elapsed().as_secs_f64()
}

async fn query_bench(store: &Embedded, n: usize, users: usize, queries: usize, start: chrono::DateTime<chrono::Utc>) {
    let mut lat = Vec::with_capacity(queries);
    let mut rows = 0;
    for q in 0..queries {
        let u = (q * 104_729) % users;
        let from = start + chrono::Duration::days((q % 80) as i64);
        let query = DecisionQuery {
            user_id: Some(format!("user-id-{u}")),
            from: Some(from.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)),
            to: Some((from + chrono::Duration::days(7)).to_rfc3339_opts(chrono::SecondsFormat::Millis, true)),
            limit: 100,
            ..Default::default()
        };
        let t = Instant::now();
        rows += store.query_decisions(&query).await.expect("query").len();
        lat.push(t.elapsed());
    }
    lat.sort();
    let p = |f: f64| lat[((lat.len() as f64 * f) as usize).min(lat.len() - 1)].as_secs_f64() * 1e3;
    println!(
        "{queries} queries by user + 7-day range over {n} records: p50 {:.2} ms, p99 {:.2} ms ({rows} rows returned)",
        p(0.5),
        p(0.99)
    );
}
