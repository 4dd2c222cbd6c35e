//! Issue 12 §3, identities that look alike: names compare ignoring ASCII case only, as the
//! identity providers compare them, on write (uniqueness) and on every lookup — the requester's
//! userName, policy `users` and `groups`, `audit query --user`. A look-alike letter whose Unicode
//! case mapping lands in ASCII (KELVIN SIGN U+212A lower-cases to `k`; U+0130 and U+0131, the
//! Turkish dotted and dotless I, and U+017F long s upper- or case-fold to `i`/`I`/`s`) names
//! someone else, or no one. Every request goes through the API-server emulator.

use crate::actors::kubectl;
use crate::support::{allowed, enc, refused, workflow, World, POLICY};
use reqwest::StatusCode;

/// POLICY with rules naming kate by userName and a `kube-builders` group.
fn policy() -> String {
    format!(
        "{POLICY}  - name: kate-submit
    allow: [submit]
    users: [Kate@Example.com]
    namespaces: [\"team-*\"]
  - name: builders-submit
    allow: [submit]
    groups: [kube-builders]
    namespaces: [\"team-*\"]
"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_look_alike_requester_is_not_the_person_it_resembles() {
    let w = World::with(&policy(), "").await;
    w.s.create_user("kate@example.com").await;
    // kate herself, in any ASCII case, through the rule that names her.
    for name in ["kate@example.com", "KATE@example.com", "Kate@Example.COM"] {
        allowed(kubectl(&w.api, name).create(&workflow("team-a")).await);
    }
    // KELVIN SIGN for `k`: before, Unicode lower-casing made this kate.
    for name in ["\u{212A}ate@example.com", "\u{212A}ATE@EXAMPLE.COM"] {
        let r = refused(kubectl(&w.api, name).create(&workflow("team-a")).await);
        assert!(
            r.message
                .contains(&format!("{name} is not a user provisioned from the identity provider")),
            "{name}: {}",
            r.message
        );
    }
    // The Turkish I's and long s, against alice (in pipeline-users) and a user with an `s`.
    w.s.create_user("sam@example.com").await;
    for name in [
        "AL\u{0130}CE@example.com",
        "al\u{0131}ce@example.com",
        "AL\u{0131}CE@EXAMPLE.COM",
        "\u{017F}am@example.com",
        "\u{017F}AM@example.com",
    ] {
        let r = refused(kubectl(&w.api, name).create(&workflow("team-a")).await);
        assert!(
            r.message
                .contains("is not a user provisioned from the identity provider"),
            "{name}: {}",
            r.message
        );
    }
    allowed(kubectl(&w.api, "ALICE@example.com").create(&workflow("team-a")).await);

    // A look-alike the identity provider did provision is its own person: not kate, so not
    // allowed by the rule that names kate.
    let kelvin = w.s.create_user("\u{212A}ate@example.com").await;
    let r = refused(
        kubectl(&w.api, "\u{212A}ate@example.com")
            .create(&workflow("team-a"))
            .await,
    );
    assert!(!r.message.contains("not a user provisioned"), "{}", r.message);
    let ds = w.decisions(1).await;
    let last = ds.last().expect("a decision");
    assert_eq!(last.user_id.as_deref(), Some(kelvin.as_str()), "{last:?}");

    // `audit query --user` (the audit API's `user`) folds the same way: kate's decisions under
    // her name in any ASCII case, the look-alike's under its own.
    let token = w.s.audit_token();
    let by_user = async |user: &str| -> Vec<String> {
        let url =
            w.s.base
                .replace("/scim/v2", &format!("/api/v1/decisions?limit=1000&user={}", enc(user)));
        // A token made by `scimgate token create` reaches the running server within moments.
        let mut v = serde_json::Value::Null;
        for _ in 0..50 {
            let rb = w.s.client.get(&url).bearer_auth(&token);
            v = rb.send().await.expect("audit API").json().await.expect("json");
            if v.get("items").is_some() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        v["items"]
            .as_array()
            .unwrap_or_else(|| panic!("{user}: {v}"))
            .iter()
            .filter_map(|d| d["requester"].as_str().map(String::from))
            .collect()
    };
    let kates = by_user("KATE@EXAMPLE.COM").await;
    assert_eq!(kates.len(), 3, "{kates:?}");
    assert!(
        kates.iter().all(|r| r.eq_ignore_ascii_case("oidc:kate@example.com")),
        "{kates:?}"
    );
    assert_eq!(
        by_user("\u{212A}ate@example.com").await,
        vec!["oidc:\u{212A}ate@example.com".to_string()]
    );
}

/// A group whose displayName only looks like a policy's group is not that group: mallory in
/// `\u{212A}ube-builders` gets nothing the policy gives `kube-builders`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_look_alike_group_is_not_the_group_it_resembles() {
    let w = World::with(&policy(), "").await;
    let users =
        w.s.get(&format!("/Users?filter={}", enc("userName eq \"mallory@example.com\"")))
            .await;
    let mallory = users.body["Resources"][0]["id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let fake = w.s.create_group("\u{212A}ube-builders", &[&mallory]).await;
    let r = refused(kubectl(&w.api, "mallory@example.com").create(&workflow("team-a")).await);
    assert!(r.message.contains("mallory@example.com"), "{}", r.message);
    // The real group, in another ASCII case, does count.
    w.s.create_group("KUBE-Builders", &[&mallory]).await;
    allowed(kubectl(&w.api, "mallory@example.com").create(&workflow("team-a")).await);
    // Without the real group, the look-alike alone gives nothing again.
    let real =
        w.s.get(&format!("/Groups?filter={}", enc("displayName eq \"kube-builders\"")))
            .await;
    let real = real.body["Resources"][0]["id"].as_str().unwrap_or_default().to_string();
    assert_eq!(
        w.s.delete(&format!("/Groups/{real}")).await.status,
        StatusCode::NO_CONTENT
    );
    refused(kubectl(&w.api, "mallory@example.com").create(&workflow("team-a")).await);
    assert!(w.s.get(&format!("/Groups/{fake}")).await.status == StatusCode::OK);
}
