//! The request sequences Okta and Entra ID really send (shared/scim-interop.md), end to end.

use crate::support::{enc, ops, TestServer};
use reqwest::StatusCode;
use serde_json::json;

#[tokio::test]
async fn okta_user_lifecycle_and_group_push() {
    let s = TestServer::start().await;
    let r = s
        .get(&format!(
            "/Users?filter={}&startIndex=1&count=100",
            enc("userName eq \"bob@example.com\"")
        ))
        .await;
    assert_eq!(
        (
            r.body["totalResults"].as_u64(),
            r.body["Resources"].as_array().map(Vec::len)
        ),
        (Some(0), Some(0))
    );
    let r = s
        .post(
            "/Users",
            json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "bob@example.com",
                "name": {"givenName": "Bob", "familyName": "Smith"}, "emails": [{"primary": true, "value": "bob@example.com", "type": "work"}],
                "displayName": "Bob Smith", "locale": "en-US", "externalId": "00ujl29u0le5T6Aj10h7", "groups": [], "password": "1mz050nq", "active": true}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let id = r.id();
    let r = s
        .get(&format!(
            "/Users?filter={}&startIndex=1&count=100",
            enc("userName eq \"BOB@example.com\"")
        ))
        .await;
    assert_eq!(r.body["totalResults"], 1);
    // Full PUT after GET, including id, meta and groups as received.
    let mut full = s.get(&format!("/Users/{id}")).await.body;
    full["name"]["familyName"] = json!("Smith-Jones");
    let r = s.put(&format!("/Users/{id}"), full).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["name"]["familyName"], "Smith-Jones");
    // Path-less deactivation.
    let r = s
        .patch(
            &format!("/Users/{id}"),
            ops(json!([{"op": "replace", "value": {"active": false}}])),
        )
        .await;
    assert_eq!((r.status, r.body["active"].as_bool()), (StatusCode::OK, Some(false)));
    assert_eq!(r.body["userName"], "bob@example.com", "the user stays readable");

    let alice = s.create_user("alice@example.com").await;
    let r = s
        .post(
            "/Groups",
            json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": "ml", "members": []}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let gid = r.id();
    s.patch(
        &format!("/Groups/{gid}"),
        ops(json!([{"op": "add", "path": "members", "value": [{"value": alice}]}])),
    )
    .await;
    let r = s
        .patch(
            &format!("/Groups/{gid}"),
            ops(json!([
                {"op": "replace", "value": {"id": gid, "displayName": "ml-engineers"}},
                {"op": "remove", "path": format!("members[value eq \"{alice}\"]")},
                {"op": "add", "path": "members", "value": [{"value": id, "display": "bob@example.com"}]}])),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["displayName"], "ml-engineers");
    let members: Vec<&str> = r.body["members"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| m["value"].as_str())
        .collect();
    assert_eq!(members, vec![id.as_str()]);
    let r = s
        .patch(
            &format!("/Groups/{gid}"),
            ops(json!([{"op": "replace", "path": "members", "value": [{"value": alice}]}])),
        )
        .await;
    assert_eq!(r.body["members"][0]["value"], alice.as_str());
}

#[tokio::test]
async fn entra_user_and_group_sequence() {
    let s = TestServer::start().await;
    let create = json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User", "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"],
        "externalId": "0a21f0f2-8d2a-4f8e-bf98-7363c4aed4ef", "userName": "alice@contoso.com", "active": true,
        "emails": [{"primary": true, "type": "work", "value": "alice@contoso.com"}], "meta": {"resourceType": "User"},
        "name": {"formatted": "Alice Liddell", "familyName": "Liddell", "givenName": "Alice"}, "roles": []});
    // Entra appends its feature flag to the tenant URL.
    let r = s.post("/Users?aadOptscim062020", create).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let uid = r.id();
    let r = s
        .get(&format!(
            "/Users?filter={}",
            enc("externalId eq \"0a21f0f2-8d2a-4f8e-bf98-7363c4aed4ef\"")
        ))
        .await;
    assert_eq!(r.body["totalResults"], 1);
    let r = s
        .get(&format!(
            "/Users?filter={}",
            enc("emails[type eq \"work\"].value eq \"alice@contoso.com\"")
        ))
        .await;
    assert_eq!(r.body["totalResults"], 1);
    let r = s
        .patch(
            &format!("/Users/{uid}"),
            ops(json!([
                {"op": "Replace", "path": "emails[type eq \"work\"].value", "value": "alice@fabrikam.com"},
                {"op": "Replace", "path": "name.familyName", "value": "Liddell-Hart"},
                {"op": "Replace", "path": "active", "value": "False"}])),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(
        (r.body["emails"][0]["value"].as_str(), r.body["active"].as_bool()),
        (Some("alice@fabrikam.com"), Some(false))
    );
    let r = s
        .patch(
            &format!("/Users/{uid}"),
            ops(
                json!([{"op": "replace", "value": {"name.givenName": "Al", "active": true,
                "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber": "701"}}]),
            ),
        )
        .await;
    assert_eq!(r.body["name"]["givenName"], "Al");
    assert_eq!(
        r.body["urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"]["employeeNumber"],
        "701"
    );
    assert_eq!(
        r.body["schemas"][1],
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
    );

    let r = s
        .post(
            "/Groups",
            json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group", "http://schemas.microsoft.com/2006/11/ResourceManagement/ADSCIM/2.0/Group"],
                "externalId": "8aa1a0c0-c4c3-4bc0-b4a5-2ef676900159", "displayName": "ml-engineers", "meta": {"resourceType": "Group"}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let gid = r.id();
    let other = s.create_user("bob@contoso.com").await;
    for member in [&uid, &other] {
        let r = s
            .patch(
                &format!("/Groups/{gid}"),
                ops(json!([{"op": "Add", "path": "members", "value": [{"$ref": null, "value": member}]}])),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    }
    let check = enc(&format!("id eq \"{gid}\" and members eq \"{uid}\""));
    let r = s
        .get(&format!("/Groups?filter={check}&excludedAttributes=members"))
        .await;
    assert_eq!(r.body["totalResults"], 1);
    assert!(r.body["Resources"][0].get("members").is_none());
    let r = s
        .get(&format!(
            "/Groups?excludedAttributes=members&filter={}",
            enc("displayName eq \"ml-engineers\"")
        ))
        .await;
    assert_eq!(r.body["totalResults"], 1);
    let r = s.get(&format!("/Groups/{gid}?excludedAttributes=members")).await;
    assert!(r.body.get("members").is_none() && r.body["displayName"] == "ml-engineers");
    // Legacy remove: only the listed member goes.
    let r = s
        .patch(
            &format!("/Groups/{gid}"),
            ops(json!([{"op": "Remove", "path": "members", "value": [{"$ref": null, "value": uid}]}])),
        )
        .await;
    let members: Vec<&str> = r.body["members"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| m["value"].as_str())
        .collect();
    assert_eq!(members, vec![other.as_str()]);
    let r = s
        .get(&format!("/Groups?filter={check}&excludedAttributes=members"))
        .await;
    assert_eq!(r.body["totalResults"], 0);
    // With the flag: remove by filter.
    let r = s
        .patch(
            &format!("/Groups/{gid}?aadOptscim062020"),
            ops(json!([{"op": "remove", "path": format!("members[value eq \"{other}\"]")}])),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.body.get("members").is_none());
    // Soft delete, then delete.
    let r = s
        .patch(
            &format!("/Users/{uid}"),
            ops(json!([{"op": "Replace", "path": "active", "value": "False"}])),
        )
        .await;
    assert_eq!(r.body["active"], false);
    assert_eq!(s.delete(&format!("/Users/{uid}")).await.status, StatusCode::NO_CONTENT);
}
