//! Ten thousand people in five hundred groups over two hundred namespaces, for `bench/access.sh`:
//! the emulator and its HTTP face for a scimgate the script started (release build,
//! `--kubeconfig` naming this face), with 200 namespaces and the roles of
//! `manifests/components/access`. Once the script has seeded the directory (10k users, 500 groups
//! of 60, every tenth nesting the one before) it turns access on by writing the policy file the
//! server reloads — each group granted `scimgate-runs-view` in two namespaces: 1,000 RoleBindings
//! — and times the reconcile from empty; then deactivates 100 people over SCIM, one at a time,
//! each timed from the SCIM response until no binding names them. Writes the figures to
//! `result`. Not a test: ignored, run by the script.

use crate::apiserver::{ApiServer, Key};
use crate::kube_face::KubeFace;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const NAMESPACES: usize = 200;
const GROUPS: usize = 500;
const LEAVERS: usize = 100;

async fn wait_for(path: &Path) -> String {
    for _ in 0..12_000 {
        if let Ok(text) = std::fs::read_to_string(path) {
            if !text.is_empty() {
                return text;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{} never came", path.display());
}

fn names(o: &Value, user: &str) -> bool {
    o["subjects"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|s| s["name"] == user)
}

/// How many managed RoleBindings there are, and the keys of those naming `user`.
fn bindings(api: &ApiServer, user: Option<&str>) -> (usize, Vec<Key>) {
    let storage = api.storage();
    let s = storage.lock().expect("storage");
    let ours = s.objects.iter().filter(|(k, o)| {
        k.1 == "rolebindings" && o["metadata"]["labels"]["scimgate.io/managed-by"] == "scimgate-access"
    });
    let (mut all, mut naming) = (0, Vec::new());
    for (k, o) in ours {
        all += 1;
        if user.is_some_and(|u| names(o, u)) {
            naming.push(k.clone());
        }
    }
    (all, naming)
}

/// Whether any of the bindings at `keys` still names `user` (a read of those few only, so the
/// polling does not hold the store from the writes it waits for).
fn still_named(api: &ApiServer, keys: &[Key], user: &str) -> bool {
    let storage = api.storage();
    let s = storage.lock().expect("storage");
    keys.iter().any(|k| s.objects.get(k).is_some_and(|o| names(o, user)))
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i].as_secs_f64() * 1000.0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run by bench/access.sh"]
async fn ten_thousand_people_in_five_hundred_groups_over_two_hundred_namespaces() {
    let out = PathBuf::from(std::env::var("SCIMGATE_BENCH_OUT").expect("SCIMGATE_BENCH_OUT is not set"));
    let mut face = KubeFace::bind().await;
    // No webhook of scimgate's sees RBAC objects: the admission address is never called.
    let api = ApiServer::at("https://127.0.0.1:9", reqwest::Client::new());
    for i in 0..NAMESPACES {
        api.create_namespace(&format!("team-{i:03}"));
    }
    api.apply_manifests(&Path::new(env!("CARGO_MANIFEST_DIR")).join("manifests/components/access/roles.yaml"));
    face.serve(&api);
    face.write_kubeconfig(&out.join("kubeconfig"));

    // The script seeded the directory and says where SCIM and the policy file are.
    let seeded = wait_for(&out.join("seeded")).await;
    let [scim, token, ca, policy]: [&str; 4] = seeded.lines().collect::<Vec<_>>().try_into().expect("4 lines");
    let client = crate::support::client_for(&std::fs::read(ca).expect("CA"));
    let mut text = std::fs::read_to_string(policy).expect("policy");
    text.push_str("access:\n  bindings:\n");
    for g in 0..GROUPS {
        let (a, b) = (g % NAMESPACES, (g + NAMESPACES / 2) % NAMESPACES);
        text.push_str(&format!(
            "    - group: load-group-{g}\n      clusterRole: scimgate-runs-view\n      namespaces: [team-{a:03}, team-{b:03}]\n"
        ));
    }
    let (requests0, writes0) = (face.requests(), face.rbac_writes());
    std::fs::write(policy, text).expect("policy");
    let t0 = Instant::now();
    let (mut first, mut last, mut seen) = (None, t0, writes0);
    loop {
        tokio::time::sleep(Duration::from_millis(10)).await;
        let writes = face.rbac_writes();
        if writes != seen {
            first.get_or_insert_with(Instant::now);
            (last, seen) = (Instant::now(), writes);
        }
        if bindings(&api, None).0 == GROUPS * 2 && last.elapsed() > Duration::from_secs(2) {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(300),
            "{} bindings after 5 minutes",
            bindings(&api, None).0
        );
    }
    let from_empty = json!({"bindings": bindings(&api, None).0, "secondsFromPolicyWrite": (last - t0).as_secs_f64(),
        "secondsFirstToLastWrite": (last - first.unwrap_or(t0)).as_secs_f64(),
        "writes": face.rbac_writes() - writes0, "requests": face.requests() - requests0});

    // One deactivation at a time, timed from the SCIM response to the last binding without them.
    let mut lags = Vec::new();
    let (requests1, writes1) = (face.requests(), face.rbac_writes());
    let mut touched = 0;
    for i in 0..LEAVERS {
        let user = format!("load-{i}@example.com");
        let subject = format!("oidc:{user}");
        let keys = bindings(&api, Some(&subject)).1;
        if keys.is_empty() {
            continue;
        }
        touched += keys.len();
        let filter = format!("{scim}/Users?filter=userName%20eq%20%22{user}%22&attributes=id");
        let found: Value = client
            .get(filter)
            .bearer_auth(token)
            .send()
            .await
            .expect("GET")
            .json()
            .await
            .expect("json");
        let id = found["Resources"][0]["id"].as_str().expect("id").to_string();
        let r = client
            .patch(format!("{scim}/Users/{id}"))
            .bearer_auth(token)
            .header("content-type", "application/scim+json")
            .body(
                json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                "Operations": [{"op": "replace", "value": {"active": false}}]})
                .to_string(),
            )
            .send()
            .await
            .expect("PATCH");
        let answered = Instant::now();
        assert!(r.status().is_success(), "{}", r.text().await.unwrap_or_default());
        while still_named(&api, &keys, &subject) {
            assert!(answered.elapsed() < Duration::from_secs(30), "{user} still bound");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        lags.push(answered.elapsed());
    }
    lags.sort();
    let leavers = json!({"people": lags.len(), "bindingsChanged": touched, "p50Ms": percentile(&lags, 0.5),
        "p99Ms": percentile(&lags, 0.99), "maxMs": percentile(&lags, 1.0),
        "writes": face.rbac_writes() - writes1, "requests": face.requests() - requests1});
    let result = json!({"fromEmpty": from_empty, "leavers": leavers});
    std::fs::write(out.join("result"), result.to_string()).expect("result");
}
