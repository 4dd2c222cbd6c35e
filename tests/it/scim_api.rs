//! The SCIM API over a real TLS listener: discovery, auth, CRUD, ETags, list features, errors.

use crate::scim_client::{assert_error, columns, post_raw, strings};
use crate::support::{enc, ops, Resp, TestServer, GROUP, USER};
use reqwest::{Method, StatusCode, Version};
use serde_json::{json, Value};

#[tokio::test]
async fn discovery_endpoints_publish_what_we_support() {
    let s = TestServer::start().await;
    // No token needed: discovery holds no personal data and tells clients how to authenticate.
    let r = s.send(s.client.get(s.url("/ServiceProviderConfig"))).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.version, Version::HTTP_2);
    assert_eq!(r.header("content-type"), Some("application/scim+json"));
    assert_eq!(r.body["patch"]["supported"], true);
    assert_eq!(r.body["bulk"]["maxOperations"], 1000);
    assert_eq!(r.body["bulk"]["maxPayloadSize"], 1024 * 1024);
    let r = s.get("/Schemas").await;
    assert_eq!(r.body["totalResults"], 4);
    let ids = strings(&r.body["Resources"], "/id");
    assert!([
        USER,
        GROUP,
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
    ]
    .iter()
    .all(|want| ids.iter().any(|id| id == want)));
    let r = s.get(&format!("/Schemas/{USER}")).await;
    assert_eq!((r.status, r.body["name"].as_str()), (StatusCode::OK, Some("User")));
    let r = s.get("/ResourceTypes/User").await;
    assert_eq!(
        r.body["schemaExtensions"][0]["schema"],
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
    );
    let r = s.post("/Schemas", json!({})).await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(r.body["status"], "405");
    let r = s
        .get(&format!("/ResourceTypes?filter={}", enc("name eq \"User\"")))
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn auth_is_required_and_scoped() {
    let s = TestServer::start().await;
    let r = s.send(s.client.get(s.url("/Users"))).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(r.header("www-authenticate").is_some_and(|h| h.starts_with("Bearer")));
    assert_eq!(r.body["schemas"][0], "urn:ietf:params:scim:api:messages:2.0:Error");
    let r = s
        .send(s.client.get(s.url("/Users")).bearer_auth("sgt_not-a-token"))
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn create_get_and_etags() {
    let s = TestServer::start().await;
    let body = json!({"schemas": [USER], "userName": "Alice@Example.com", "externalId": "x1",
        "name": {"givenName": "Alice"}, "emails": [{"value": "alice@example.com", "type": "work", "primary": true}],
        "password": "hunter2"});
    let r = s.post("/Users", body.clone()).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!(r.header("location"), r.body["meta"]["location"].as_str());
    assert!(r.header("location").is_some_and(|l| l.starts_with(&s.base)));
    assert_eq!(r.header("etag"), r.body["meta"]["version"].as_str());
    assert!(r.body.get("password").is_none(), "password is never returned");
    for key in ["resourceType", "created", "lastModified", "version", "location"] {
        assert!(r.body["meta"].get(key).is_some(), "meta.{key}");
    }
    let id = r.id();
    let etag = r.header("etag").unwrap_or_default().to_string();

    // userName unique case-insensitively; externalId not unique.
    let dup = s
        .post("/Users", json!({"schemas": [USER], "userName": "alice@example.COM"}))
        .await;
    assert_error(&dup, StatusCode::CONFLICT, "uniqueness");
    let same_ext = s
        .post(
            "/Users",
            json!({"schemas": [USER], "userName": "bob@example.com", "externalId": "x1"}),
        )
        .await;
    assert_eq!(same_ext.status, StatusCode::CREATED);

    let r = s
        .send(
            s.authed(Method::GET, &format!("/Users/{id}"))
                .header("if-none-match", &etag),
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_MODIFIED);
    let r = s
        .send(
            s.authed(Method::GET, &format!("/Users/{id}"))
                .header("if-none-match", "W/\"999\""),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);

    let replace = json!({"schemas": [USER], "userName": "alice@example.com", "displayName": "Alice"});
    let stale = s
        .send(
            s.authed(Method::PUT, &format!("/Users/{id}"))
                .header("if-match", "W/\"7\"")
                .header("content-type", "application/scim+json")
                .body(replace.to_string()),
        )
        .await;
    assert_eq!(stale.status, StatusCode::PRECONDITION_FAILED);
    let ok = s
        .send(
            s.authed(Method::PUT, &format!("/Users/{id}"))
                .header("if-match", &etag)
                .header("content-type", "application/scim+json")
                .body(replace.to_string()),
        )
        .await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.body);
    assert_eq!(ok.body["displayName"], "Alice");
    assert!(
        ok.body.get("emails").is_none(),
        "PUT replaces: attributes not sent are gone"
    );
    assert_eq!(ok.body["meta"]["created"], r.body["meta"]["created"]);
    assert_ne!(ok.header("etag"), Some(etag.as_str()));

    let r = s.delete(&format!("/Users/{id}")).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let r = s.get(&format!("/Users/{id}")).await;
    assert_eq!(
        (r.status, r.body["status"].as_str()),
        (StatusCode::NOT_FOUND, Some("404"))
    );
}

#[tokio::test]
async fn bad_input_gets_rfc_errors_and_writes_nothing() {
    let s = TestServer::start_with(|a| a.body_limit = Some(4096)).await;
    let r = post_raw(&s, "/Users", "application/scim+json", "{\"userName\": ").await;
    assert_error(&r, StatusCode::BAD_REQUEST, "invalidSyntax");
    let big = json!({"schemas": [USER], "userName": "x", "displayName": "y".repeat(5000)});
    let r = s.post("/Users", big).await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(r.body["status"], "413");
    let r = s
        .post(
            "/Users",
            json!({"schemas": [USER], "userName": "x", "active": "perhaps"}),
        )
        .await;
    assert_error(&r, StatusCode::BAD_REQUEST, "invalidValue");
    let r = s
        .post("/Users", json!({"schemas": [USER], "displayName": "no userName"}))
        .await;
    assert_eq!(r.scim_type(), Some("invalidValue"));
    let r = s.get(&format!("/Users?filter={}", enc("userName eq"))).await;
    assert_error(&r, StatusCode::BAD_REQUEST, "invalidFilter");
    let r = s.get("/Users?startIndex=abc").await;
    assert_eq!(r.scim_type(), Some("invalidValue"));
    let r = post_raw(&s, "/Users", "text/plain", "{}").await;
    assert_eq!(r.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let r = s.get("/Nope").await;
    assert_eq!(
        (r.status, r.body["status"].as_str()),
        (StatusCode::NOT_FOUND, Some("404"))
    );
    let r = s.get("/Me").await;
    assert_eq!(r.status, StatusCode::NOT_IMPLEMENTED);
    // Plain application/json is accepted too.
    let r = post_raw(&s, "/Users", "application/json", &json!({"userName": "ok"}).to_string()).await;
    assert_eq!(r.status, StatusCode::CREATED);
    let list = s.get("/Users").await;
    assert_eq!(list.body["totalResults"], 1, "only the valid user was written");
}

#[tokio::test]
async fn patch_is_atomic_and_returns_the_resource() {
    let s = TestServer::start().await;
    let id = s.create_user("carol@example.com").await;
    let before = s.get(&format!("/Users/{id}")).await;
    let r = s
        .patch(&format!("/Users/{id}"), ops(json!([{"op": "replace", "path": "displayName", "value": "C"}, {"op": "remove", "path": "emails[type eq \"home\"]"}])))
        .await;
    assert_error(&r, StatusCode::BAD_REQUEST, "noTarget");
    let after = s.get(&format!("/Users/{id}")).await;
    assert_eq!(before.body, after.body, "a failed PATCH changes nothing");
    let r = s
        .patch(
            &format!("/Users/{id}"),
            ops(json!([{"op": "add", "path": "displayName", "value": "Carol"}])),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["displayName"], "Carol");
    assert_eq!(r.body["meta"]["version"], "W/\"2\"");
}

#[tokio::test]
async fn list_paging_sorting_projection() {
    let s = TestServer::start().await;
    for name in ["dave", "alice", "carol", "bob", "erin"] {
        let r = s.post("/Users", json!({"schemas": [USER], "userName": name, "emails": [{"value": format!("{name}@corp.example"), "type": "work"}], "title": if name < "c" { "eng" } else { "ops" }})).await;
        assert_eq!(r.status, StatusCode::CREATED);
    }
    let names = |r: &Resp| strings(&r.body["Resources"], "/userName");
    let r = s.get("/Users?sortBy=userName&startIndex=2&count=2").await;
    assert_eq!(
        (
            r.body["totalResults"].as_u64(),
            r.body["startIndex"].as_u64(),
            r.body["itemsPerPage"].as_u64()
        ),
        (Some(5), Some(2), Some(2))
    );
    assert_eq!(names(&r), vec!["bob", "carol"]);
    let r = s.get("/Users?sortBy=userName&sortOrder=descending&count=1").await;
    assert_eq!(names(&r), vec!["erin"]);
    let r = s.get("/Users?count=0").await;
    assert_eq!(
        (r.body["totalResults"].as_u64(), r.body["itemsPerPage"].as_u64()),
        (Some(5), Some(0))
    );
    // Unsorted pages are in a stable order: the pages tile the whole set.
    let mut seen = Vec::new();
    for start in [1, 3, 5] {
        seen.extend(names(&s.get(&format!("/Users?startIndex={start}&count=2")).await));
    }
    seen.sort();
    assert_eq!(seen, vec!["alice", "bob", "carol", "dave", "erin"]);
    let r = s
        .get(&format!(
            "/Users?filter={}&sortBy=userName",
            enc("title eq \"eng\" and emails co \"corp\"")
        ))
        .await;
    assert_eq!(names(&r), vec!["alice", "bob"]);
    let r = s.get("/Users?attributes=emails.value&count=1").await;
    let first = &r.body["Resources"][0];
    assert!(first.get("id").is_some() && first.get("userName").is_none());
    assert_eq!(first["emails"][0].as_object().map(|o| o.len()), Some(1));
    let r = s.get("/Users?excludedAttributes=emails,id&count=1").await;
    assert!(
        r.body["Resources"][0].get("emails").is_none() && r.body["Resources"][0].get("id").is_some(),
        "id is returned always"
    );
    let r = s.post("/Users/.search", json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"], "filter": "userName sw \"c\" or userName sw \"d\"", "sortBy": "userName", "attributes": ["userName"]})).await;
    assert_eq!(names(&r), vec!["carol", "dave"]);
    let r = s.post("/.search", json!({"filter": "userName eq \"erin\""})).await;
    assert_eq!(r.body["totalResults"], 1, "{}", r.body);
}

#[tokio::test]
async fn nested_groups_member_checks_and_delete_cascade() {
    let s = TestServer::start().await;
    let alice = s.create_user("alice").await;
    let ml = s.create_group("ml-engineers", &[&alice]).await;
    let eng = s.create_group("engineering", &[&ml]).await;
    let r = s.get(&format!("/Groups/{eng}")).await;
    assert_eq!(r.body["members"][0]["type"], "Group");
    assert_eq!(r.body["members"][0]["$ref"], format!("{}/Groups/{ml}", s.base));
    let r = s.get(&format!("/Users/{alice}")).await;
    let groups = columns(&r.body["groups"], ["/display", "/type"]);
    assert_eq!(groups, [["engineering", "indirect"], ["ml-engineers", "direct"]]);
    let r = s
        .post(
            "/Groups",
            json!({"schemas": [GROUP], "displayName": "ghosts", "members": [{"value": "no-such-id"}]}),
        )
        .await;
    assert_error(&r, StatusCode::BAD_REQUEST, "invalidValue");
    let r = s
        .post("/Groups", json!({"schemas": [GROUP], "displayName": "ML-Engineers"}))
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    let r = s
        .get(&format!("/Groups?filter={}", enc(&format!("members eq \"{alice}\""))))
        .await;
    assert_eq!(r.body["totalResults"], 1);
    assert_eq!(
        s.delete(&format!("/Users/{alice}")).await.status,
        StatusCode::NO_CONTENT
    );
    let r = s.get(&format!("/Groups/{ml}")).await;
    assert!(
        r.body.get("members").is_none(),
        "a deleted user leaves every group: {}",
        r.body
    );
}

#[tokio::test]
async fn bulk_with_bulk_id_references() {
    let s = TestServer::start().await;
    let r = s
        .post(
            "/Bulk",
            json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:BulkRequest"], "Operations": [
                {"method": "POST", "path": "/Groups", "bulkId": "g", "data": {"schemas": [GROUP], "displayName": "bulk-group", "members": [{"value": "bulkId:u"}]}},
                {"method": "POST", "path": "/Users", "bulkId": "u", "data": {"schemas": [USER], "userName": "bulk-user"}},
                {"method": "PATCH", "path": "/Users/bulkId:u", "data": {"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": [{"op": "add", "path": "displayName", "value": "B"}]}},
                {"method": "POST", "path": "/Users", "bulkId": "dup", "data": {"schemas": [USER], "userName": "BULK-USER"}},
                {"method": "DELETE", "path": "/Users/missing"}
            ]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let statuses = strings(&r.body["Operations"], "/status");
    assert_eq!(statuses, ["201", "201", "200", "409", "404"]);
    let group = s
        .get(&format!("/Groups?filter={}", enc("displayName eq \"bulk-group\"")))
        .await;
    let user = s
        .get(&format!("/Users?filter={}", enc("userName eq \"bulk-user\"")))
        .await;
    assert_eq!(
        group.body["Resources"][0]["members"][0]["value"],
        user.body["Resources"][0]["id"]
    );
    assert_eq!(user.body["Resources"][0]["displayName"], "B");
    let too_many: Vec<Value> = (0..1001)
        .map(|i| json!({"method": "DELETE", "path": format!("/Users/{i}")}))
        .collect();
    let r = s
        .post(
            "/Bulk",
            json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:BulkRequest"], "Operations": too_many}),
        )
        .await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test]
async fn metrics_and_health() {
    let s = TestServer::start().await;
    s.create_user("m").await;
    let plain = reqwest::Client::new();
    assert_eq!(
        plain
            .get(format!("{}/healthz", s.ops))
            .send()
            .await
            .map(|r| r.status())
            .ok(),
        Some(StatusCode::OK)
    );
    assert_eq!(
        plain
            .get(format!("{}/readyz", s.ops))
            .send()
            .await
            .map(|r| r.status())
            .ok(),
        Some(StatusCode::OK)
    );
    let text = plain
        .get(format!("{}/metrics", s.ops))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(text.contains("scimgate_directory_users 1"), "{text}");
    assert!(
        text.contains("scimgate_scim_requests_total{method=\"POST\",resource=\"Users\",status=\"201\"} 1"),
        "{text}"
    );
}

/// Issue 12 §3: a userName with surrounding whitespace or a control character is refused (400
/// `invalidValue`, saying why) on every write that sets it — POST, PUT, PATCH and inside Bulk —
/// while a write that leaves a stored userName alone is not judged by it.
#[tokio::test]
async fn user_names_with_surrounding_whitespace_or_control_characters_are_refused() {
    let s = TestServer::start().await;
    let bad = [
        " kate@example.com",
        "kate@example.com\n",
        "kate@example.com\u{00A0}",
        "\tkate@example.com",
        "ka\u{0007}te@example.com",
        "kate\u{0000}@example.com",
        "kate@example.com\u{001B}[0m",
    ];
    for name in bad {
        let r = s.post("/Users", json!({"schemas": [USER], "userName": name})).await;
        assert_eq!(
            (r.status, r.scim_type()),
            (StatusCode::BAD_REQUEST, Some("invalidValue")),
            "POST {name:?}: {}",
            r.body
        );
        let detail = r.body["detail"].as_str().unwrap_or_default();
        assert!(
            detail.contains("userName") && (detail.contains("whitespace") || detail.contains("control character")),
            "{detail}"
        );
    }
    assert_eq!(s.get("/Users").await.body["totalResults"], 0, "nothing was stored");

    let id = s.create_user("kate@example.com").await;
    for name in bad {
        let r = s
            .put(&format!("/Users/{id}"), json!({"schemas": [USER], "userName": name}))
            .await;
        assert_eq!(
            (r.status, r.scim_type()),
            (StatusCode::BAD_REQUEST, Some("invalidValue")),
            "PUT {name:?}: {}",
            r.body
        );
        let r = s
            .patch(
                &format!("/Users/{id}"),
                ops(json!([{"op": "replace", "path": "userName", "value": name}])),
            )
            .await;
        assert_eq!(
            (r.status, r.scim_type()),
            (StatusCode::BAD_REQUEST, Some("invalidValue")),
            "PATCH {name:?}: {}",
            r.body
        );
        // A PATCH without a path carries the userName in its value.
        let r = s
            .patch(
                &format!("/Users/{id}"),
                ops(json!([{"op": "replace", "value": {"userName": name}}])),
            )
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "PATCH value {name:?}: {}", r.body);
    }
    let kate = s.get(&format!("/Users/{id}")).await;
    assert_eq!(kate.body["userName"], "kate@example.com");
    // Inner spaces and look-alike letters are a name's own business (the latter is simply
    // another name): not refused.
    let r = s
        .patch(
            &format!("/Users/{id}"),
            ops(json!([{"op": "replace", "path": "displayName", "value": " Kate "}])),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(
        s.post("/Users", json!({"schemas": [USER], "userName": "Kate Smith"}))
            .await
            .status,
        StatusCode::CREATED
    );

    let r = s
        .post(
            "/Bulk",
            json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:BulkRequest"], "Operations": [
                {"method": "POST", "path": "/Users", "bulkId": "a", "data": {"schemas": [USER], "userName": "bulk@example.com "}},
                {"method": "PUT", "path": format!("/Users/{id}"), "data": {"schemas": [USER], "userName": "\u{0085}kate@example.com"}},
                {"method": "PATCH", "path": format!("/Users/{id}"), "data": ops(json!([{"op": "replace", "path": "userName", "value": "kate\r@example.com"}]))},
                {"method": "POST", "path": "/Users", "bulkId": "b", "data": {"schemas": [USER], "userName": "bulk@example.com"}}
            ]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let results = columns(&r.body["Operations"], ["/status", "/response/scimType"]);
    assert_eq!(
        results,
        [
            ["400", "invalidValue"],
            ["400", "invalidValue"],
            ["400", "invalidValue"],
            ["201", ""]
        ]
    );
}

/// Issue 12 §3: userName is unique ignoring ASCII case, as the identity providers compare it —
/// and only ASCII case: a look-alike (KELVIN SIGN U+212A for `k`) is another name, neither a
/// conflict with kate nor found by a filter for her. Filters on `caseExact: false` attributes fold
/// the same way, so `userName eq` finds exactly the user a create would conflict with.
#[tokio::test]
async fn user_name_uniqueness_and_filters_fold_ascii_case_only() {
    let s = TestServer::start().await;
    let kate = s.create_user("kate@example.com").await;
    let r = s
        .post("/Users", json!({"schemas": [USER], "userName": "KATE@example.com"}))
        .await;
    assert_error(&r, StatusCode::CONFLICT, "uniqueness");
    let kelvin = s
        .post(
            "/Users",
            json!({"schemas": [USER], "userName": "\u{212A}ate@example.com"}),
        )
        .await;
    assert_eq!(kelvin.status, StatusCode::CREATED, "not kate's alias: {}", kelvin.body);
    assert_ne!(kelvin.id(), kate);
    let kelvin = kelvin.id();
    // Renaming the look-alike to kate's name in another case conflicts; kate's own case change
    // does not.
    let r = s
        .patch(
            &format!("/Users/{kelvin}"),
            ops(json!([{"op": "replace", "path": "userName", "value": "Kate@Example.com"}])),
        )
        .await;
    assert_error(&r, StatusCode::CONFLICT, "uniqueness");
    let r = s
        .patch(
            &format!("/Users/{kate}"),
            ops(json!([{"op": "replace", "path": "userName", "value": "Kate@Example.com"}])),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);

    let ids = |r: &Resp| strings(&r.body["Resources"], "/id");
    for (filter, want) in [
        ("userName eq \"KATE@EXAMPLE.COM\"", vec![kate.clone()]),
        ("userName eq \"\u{212A}ate@example.com\"", vec![kelvin.clone()]),
        ("userName eq \"\u{212A}ATE@EXAMPLE.COM\"", vec![kelvin.clone()]),
        // Not through the index: the same folding in the filter engine.
        ("userName sw \"kate\"", vec![kate.clone()]),
        ("userName co \"\u{212A}\"", vec![kelvin.clone()]),
    ] {
        let r = s.get(&format!("/Users?filter={}", enc(filter))).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        assert_eq!(ids(&r), want, "{filter}");
    }

    // Group displayNames fold the same way.
    s.create_group("kube-builders", &[]).await;
    let r = s
        .post("/Groups", json!({"schemas": [GROUP], "displayName": "KUBE-builders"}))
        .await;
    assert_error(&r, StatusCode::CONFLICT, "uniqueness");
    let r = s
        .post(
            "/Groups",
            json!({"schemas": [GROUP], "displayName": "\u{212A}ube-builders"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
}
