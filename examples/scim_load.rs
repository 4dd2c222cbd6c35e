//! Load generator for SCIM benchmarks (bench/scim.sh drives it). Talks to any SCIM server — ours
//! or the Python reference `scim2-server` — over HTTP/1.1 or HTTP/2 with a fixed number of
//! closed-loop clients, and prints one line of figures per run.
//!
//!   scim_load URL TOKEN CA|- seed-users START COUNT CLIENTS
//!   scim_load URL TOKEN CA|- seed-groups COUNT MEMBERS USERS CLIENTS
//!   scim_load URL TOKEN CA|- filter USERS SECONDS CLIENTS
//!   scim_load URL TOKEN CA|- post START COUNT CLIENTS
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test, benchmark and example code: a failed assumption is a failed run"
)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn user_name(i: usize) -> String {
    format!("load-{i}@example.com")
}

fn arg<T: std::str::FromStr>(args: &[String], i: usize, what: &str) -> T {
    args.get(i)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("argument {i}: {what}"))
}

struct Run {
    done: usize,
    elapsed: Duration,
    latencies: Vec<Duration>,
}

impl Run {
    fn report(&self, what: &str) {
        let mut l = self.latencies.clone();
        l.sort();
        let pct = |p: f64| {
            l.get(((l.len() as f64 * p) as usize).min(l.len().saturating_sub(1)))
                .copied()
                .unwrap_or_default()
        };
        println!(
            "{what}: {} requests in {:.2}s = {:.0} req/s; latency p50 {:.2} ms, p99 {:.2} ms",
            self.done,
            self.elapsed.as_secs_f64(),
            self.done as f64 / self.elapsed.as_secs_f64(),
            pct(0.50).as_secs_f64() * 1e3,
            pct(0.99).as_secs_f64() * 1e3
        );
    }
}

/// Run `work(i)` for i in 0..count (or until `deadline`) on `clients` concurrent loops.
async fn drive<F, Fut>(clients: usize, count: usize, deadline: Option<Instant>, work: F) -> Run
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let next = Arc::new(AtomicUsize::new(0));
    let work = Arc::new(work);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (next, work) = (next.clone(), work.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= count || deadline.is_some_and(|d| Instant::now() >= d) {
                    return lat;
                }
                let t = Instant::now();
                work(i).await;
                lat.push(t.elapsed());
            }
        }));
    }
    let mut latencies = Vec::new();
    for t in tasks {
        latencies.extend(t.await.expect("client task"));
    }
    Run {
        done: latencies.len(),
        elapsed: started.elapsed(),
        latencies,
    }
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (url, token, ca, mode) = (args[1].clone(), args[2].clone(), args[3].clone(), args[4].clone());
    let mut builder = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .pool_max_idle_per_host(64);
    if ca != "-" {
        let pem = std::fs::read(&ca).expect("CA file");
        builder = builder.add_root_certificate(reqwest::Certificate::from_pem(&pem).expect("CA pem"));
    }
    let client = builder.build().expect("client");
    let auth = format!("Bearer {token}");
    let ctx = Arc::new((client, url, auth));
    match mode.as_str() {
        "seed-users" | "post" => {
            let (start, count, clients): (usize, usize, usize) =
                (arg(&args, 5, "START"), arg(&args, 6, "COUNT"), arg(&args, 7, "CLIENTS"));
            let c = ctx.clone();
            let run = drive(clients, count, None, move |i| {
                let c = c.clone();
                async move {
                    let name = user_name(start + i);
                    let body = serde_json::json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": name,
                        "name": {"givenName": "Load", "familyName": format!("User {i}")}, "active": true,
                        "emails": [{"value": name, "type": "work", "primary": true}], "externalId": format!("ext-{}", start + i)});
                    let r = c.0.post(format!("{}/Users", c.1)).header("authorization", &c.2).header("content-type", "application/scim+json").body(body.to_string()).send().await.expect("POST");
                    // Read the body whatever the status: dropping an unread HTTP/2 response resets
                    // the stream, and h2 clients give up on a connection after many resets.
                    let status = r.status().as_u16();
                    let text = r.text().await.unwrap_or_default();
                    assert_eq!(status, 201, "POST /Users: {text}");
                }
            })
            .await;
            run.report(&format!("POST /Users ({clients} clients)"));
        }
        "seed-groups" => {
            let (count, members, users, clients): (usize, usize, usize, usize) = (
                arg(&args, 5, "COUNT"),
                arg(&args, 6, "MEMBERS"),
                arg(&args, 7, "USERS"),
                arg(&args, 8, "CLIENTS"),
            );
            // Resolve user ids once.
            let mut ids = Vec::with_capacity(users);
            let mut start = 1;
            while ids.len() < users {
                let r = ctx
                    .0
                    .get(format!("{}/Users?startIndex={start}&count=1000&attributes=id", ctx.1))
                    .header("authorization", &ctx.2)
                    .send()
                    .await
                    .expect("list");
                let v: serde_json::Value = r.json().await.expect("json");
                let page = v["Resources"].as_array().cloned().unwrap_or_default();
                if page.is_empty() {
                    break;
                }
                start += page.len();
                ids.extend(page.into_iter().filter_map(|u| u["id"].as_str().map(String::from)));
            }
            let ids = Arc::new(ids);
            let group_ids: Arc<std::sync::Mutex<Vec<String>>> = Arc::default();
            let c = ctx.clone();
            let gids = group_ids.clone();
            let run = drive(clients, count, None, move |g| {
                let (c, ids, gids) = (c.clone(), ids.clone(), gids.clone());
                async move {
                    let mut m: Vec<serde_json::Value> = (0..members)
                        .map(|k| serde_json::json!({"value": ids[(g * 7919 + k * 104_729) % ids.len()]}))
                        .collect();
                    // Every tenth group nests an earlier one.
                    if g % 10 == 9 {
                        if let Some(prev) = gids.lock().expect("lock").last().cloned() {
                            m.push(serde_json::json!({"value": prev}));
                        }
                    }
                    m.dedup();
                    let body = serde_json::json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": format!("load-group-{g}"), "members": m});
                    let r = c.0.post(format!("{}/Groups", c.1)).header("authorization", &c.2).header("content-type", "application/scim+json").body(body.to_string()).send().await.expect("POST");
                    let status = r.status().as_u16();
                    let v: serde_json::Value = r.json().await.unwrap_or_default();
                    assert_eq!(status, 201, "POST /Groups: {v}");
                    if let Some(id) = v["id"].as_str() {
                        gids.lock().expect("lock").push(id.to_string());
                    }
                }
            })
            .await;
            run.report(&format!("POST /Groups with {members} members ({clients} clients)"));
        }
        "filter" => {
            let (users, seconds, clients): (usize, u64, usize) = (
                arg(&args, 5, "USERS"),
                arg(&args, 6, "SECONDS"),
                arg(&args, 7, "CLIENTS"),
            );
            let deadline = Instant::now() + Duration::from_secs(seconds);
            let c = ctx.clone();
            let run = drive(clients, usize::MAX, Some(deadline), move |i| {
                let c = c.clone();
                async move {
                    let name = user_name((i * 7919) % users);
                    let filter = format!("userName%20eq%20%22{}%22", name.replace('@', "%40"));
                    let r =
                        c.0.get(format!("{}/Users?filter={filter}", c.1))
                            .header("authorization", &c.2)
                            .send()
                            .await
                            .expect("GET");
                    assert_eq!(r.status().as_u16(), 200);
                    let v: serde_json::Value = r.json().await.expect("json");
                    assert_eq!(v["totalResults"], 1, "{name} not found");
                }
            })
            .await;
            run.report(&format!("GET /Users?filter=userName eq ({clients} clients)"));
        }
        other => panic!("unknown mode {other}"),
    }
}
