//! `/Agents` over a real TLS listener: every example of draft-abbey-scim-agent-extension-00 and
//! the draft-wzdk-scim-agent-resource-00 body shape, owners (validated, typed, PATCHed), parents,
//! ETags, lists, Bulk, discovery, agents as group members, a deleted owner, and agents surviving
//! a restart on both stores.
//!
//! The draft examples are files under `tests/fixtures/agents/` (see its README for where each
//! came from; those invalid as published are the minimal fixed copies, `*.fixed.json`).

use crate::scim_client::{assert_error, columns, post_raw, strings};
use crate::support::{enc, ops, postgres_db, until, Resp, TestServer, GROUP, USER};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::time::Duration;

const AGENT: &str = "urn:ietf:params:scim:schemas:core:2.0:Agent";

fn fixture_text(name: &str) -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/agents")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn fixture(name: &str) -> Value {
    serde_json::from_str(&fixture_text(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// The request target of a draft's `GET /scim/v2/Agents?filter=…` line, relative to our base and
/// percent-encoded as a client sends it (the drafts print it with "escaping removed for
/// readability").
fn draft_query(name: &str) -> String {
    let line = fixture_text(name);
    let target = line.trim().strip_prefix("GET ").expect("a GET line");
    let (path, query) = target.split_once('?').expect("a query");
    let (key, value) = query.split_once('=').expect("key=value");
    format!("{}?{key}={}", path.trim_start_matches("/scim/v2"), enc(value))
}

/// POSTs an agent that must be created; the response, to compare with what was sent.
async fn post_agent(s: &TestServer, body: Value) -> Resp {
    let r = s.post("/Agents", body).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    r
}

async fn create_agent(s: &TestServer, body: Value) -> String {
    post_agent(s, body).await.id()
}

fn names(list: &Value) -> Vec<String> {
    strings(&list["Resources"], "/name")
}

#[tokio::test]
async fn abbey_minimal_agent_round_trips() {
    let s = TestServer::start().await;
    // §5.1.4.1.1 is a representation as a server returns it; POSTed, its `id` and `meta` are
    // read-only and ours replace them.
    let draft = fixture("abbey-00-s5.1.4.1.1-minimal-agent.json");
    let r = post_agent(&s, draft.clone()).await;
    assert_eq!(r.body["schemas"], draft["schemas"]);
    assert_eq!(r.body["name"], draft["name"]);
    assert_ne!(r.body["id"], draft["id"], "the server assigns ids");
    assert_eq!(r.body["meta"]["resourceType"], "Agent");
    let location = format!("{}/Agents/{}", s.base, r.id());
    assert_eq!(r.body["meta"]["location"], location);
    assert_eq!(r.header("location"), Some(location.as_str()));
    assert_eq!(r.header("etag"), r.body["meta"]["version"].as_str());
    let got = s.get(&format!("/Agents/{}", r.id())).await;
    assert_eq!((got.status, &got.body), (StatusCode::OK, &r.body));
}

#[tokio::test]
async fn abbey_full_agent_round_trips() {
    let s = TestServer::start().await;
    let draft = fixture("abbey-00-s5.1.4.1.2-full-agent.fixed.json");
    // The draft's owner is a Group and its parent an Agent, by ids of its own: ours exist first.
    let owner = s.create_group("US Employees", &[]).await;
    let parent = create_agent(&s, json!({"schemas": [AGENT], "name": "Clippy 1.0"})).await;
    let mut body = draft.clone();
    body["owners"][0]["value"] = json!(owner);
    body["parent"]["value"] = json!(parent);
    let r = post_agent(&s, body).await;
    let id = r.id();
    for key in [
        "schemas",
        "externalId",
        "name",
        "active",
        "agentType",
        "x509Certificates",
        "entitlements",
        "roles",
        "applications",
        "subject",
        "protocols",
    ] {
        assert_eq!(r.body[key], draft[key], "{key}");
    }
    // Owners: the client's value and display; `type` filled in; `$ref` ours, absolute.
    assert_eq!(
        r.body["owners"],
        json!([{"value": owner, "$ref": format!("{}/Groups/{owner}", s.base), "display": "US Employees", "type": "Group"}])
    );
    assert_eq!(
        r.body["parent"],
        json!({"value": parent, "$ref": format!("{}/Agents/{parent}", s.base), "display": "Clippy 1.0"})
    );
    // `groups` is read-only (the server's): the draft's three ids are nobody here, so none yet.
    assert!(r.body.get("groups").is_none(), "{}", r.body);
    let mut groups = Vec::new();
    for g in draft["groups"].as_array().into_iter().flatten() {
        let display = g["display"].as_str().unwrap_or_default();
        groups.push((s.create_group(display, &[&id]).await, display.to_string()));
    }
    let got = s.get(&format!("/Agents/{id}")).await;
    assert_eq!(got.status, StatusCode::OK);
    for key in [
        "name",
        "owners",
        "parent",
        "x509Certificates",
        "protocols",
        "applications",
    ] {
        assert_eq!(got.body[key], r.body[key], "{key}");
    }
    let listed = columns(&got.body["groups"], ["/value", "/display", "/type"]);
    assert_eq!(listed.len(), 3, "{}", got.body);
    for (gid, display) in &groups {
        assert!(
            listed.contains(&[gid.clone(), display.clone(), "direct".into()]),
            "{display}"
        );
    }
    // The draft's spelling in §6.1, `specifiationUrl`, is taken as `specificationUrl`.
    let typo = post_agent(
        &s,
        json!({"schemas": [AGENT], "name": "typo", "protocols": [{"type": "MCP-Server", "specifiationUrl": "https://x/mcp"}]}),
    )
    .await;
    assert_eq!(
        typo.body["protocols"],
        json!([{"type": "MCP-Server", "specificationUrl": "https://x/mcp"}])
    );
}

#[tokio::test]
async fn abbey_filter_examples_work_as_published_and_as_rfc_7644_spells_them() {
    let s = TestServer::start().await;
    let helpdesk = create_agent(
        &s,
        json!({"schemas": [AGENT], "name": "Helpdesk bot", "externalId": "8ccc535b-716d-4d32-b3e9-57c8be449c82"}),
    )
    .await;
    create_agent(&s, json!({"schemas": [AGENT], "name": "Other bot", "externalId": "x"})).await;
    // abbey-00 §5.1.2 writes `name eq 'Helpdesk bot'`: single quotes, which RFC 7644 §3.4.2.2
    // does not allow. We accept them (the `singleQuotedStrings` quirk, on by default): `'` means
    // nothing else in the grammar, so no RFC filter reads differently, and an IdP that follows
    // the draft is served. The same filters in double quotes work too.
    for file in [
        "abbey-00-s5.1.2-filter-name.http",
        "abbey-00-s5.1.2-filter-externalid.http",
    ] {
        let published = draft_query(file);
        let rfc = published.replace("%27", "%22");
        for query in [published, rfc] {
            let r = s.get(&query).await;
            assert_eq!(r.status, StatusCode::OK, "{query}: {}", r.body);
            assert_eq!(r.body["totalResults"], 1, "{query}: {}", r.body);
            assert_eq!(r.body["Resources"][0]["id"], json!(helpdesk), "{query}");
        }
    }
    // `name` is compared ignoring ASCII case, as `uniqueness: server` names are.
    let r = s
        .get(&format!("/Agents?filter={}", enc("name eq \"HELPDESK BOT\"")))
        .await;
    assert_eq!(r.body["totalResults"], 1);
    let r = s.get(&format!("/Agents?filter={}", enc("name eq 'unterminated"))).await;
    assert_error(&r, StatusCode::BAD_REQUEST, "invalidFilter");
}

#[tokio::test]
async fn with_the_quirks_off_single_quotes_and_unknown_schemas_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = dir.path().join("config.yaml");
    std::fs::write(
        &cfg,
        "scim:\n  quirks:\n    singleQuotedStrings: false\n    ignoreUnknownSchemas: false\n",
    )
    .expect("config");
    let s = TestServer::start_in(dir, move |a| a.config = Some(cfg)).await;
    let r = s.get(&draft_query("abbey-00-s5.1.2-filter-name.http")).await;
    assert_error(&r, StatusCode::BAD_REQUEST, "invalidFilter");
    let r = s
        .post(
            "/Agents",
            json!({"schemas": [AGENT, "urn:example:agent-extension"], "name": "a"}),
        )
        .await;
    assert_error(&r, StatusCode::BAD_REQUEST, "invalidValue");
    let r = s.post("/Agents", json!({"schemas": [USER], "name": "a"})).await;
    assert_error(&r, StatusCode::BAD_REQUEST, "invalidValue");
}

#[tokio::test]
async fn wzdk_bodies_are_accepted_and_returned_in_one_form() {
    let s = TestServer::start().await;
    // wzdk-00's `agentUserName` is stored and returned as abbey-00's `name`.
    let request = fixture("wzdk-00-secondary-mcguinness-federation-A.1-request.json");
    let r = post_agent(&s, request.clone()).await;
    assert_eq!(r.body["name"], request["agentUserName"]);
    assert!(r.body.get("agentUserName").is_none(), "one canonical form: {}", r.body);
    for key in ["externalId", "displayName", "active"] {
        assert_eq!(r.body[key], request[key], "{key}");
    }
    // The response example's extension (a third draft's, not wzdk's) is not ours: its schema is
    // ignored, as unknown schemas are by default.
    let response = fixture("wzdk-00-secondary-mcguinness-federation-A.1-response.json");
    let mut other = response.clone();
    other["agentUserName"] = json!("another-agent");
    let r2 = post_agent(&s, other).await;
    assert_eq!(r2.body["schemas"], json!([AGENT]));
    let provisioning = fixture("wzdk-00-secondary-mcguinness-workload-provisioning.json");
    let r3 = post_agent(&s, provisioning.clone()).await;
    assert_eq!(
        (&r3.body["name"], &r3.body["displayName"], &r3.body["active"]),
        (
            &provisioning["agentUserName"],
            &provisioning["displayName"],
            &provisioning["active"]
        )
    );

    // Either name in filters, sorting, PATCH paths and `attributes`.
    let q = format!(
        "/Agents?filter={}&attributes=agentUserName",
        enc("agentUserName eq \"ANALYSIS-agent-7\"")
    );
    let found = s.get(&q).await;
    assert_eq!(found.body["totalResults"], 1, "{}", found.body);
    assert_eq!(found.body["Resources"][0]["name"], "analysis-agent-7");
    assert!(found.body["Resources"][0].get("displayName").is_none());
    let id = r.id();
    let p = s
        .patch(
            &format!("/Agents/{id}"),
            ops(
                json!([{"op": "replace", "path": "agentUserName", "value": "analysis-agent-8"},
                       {"op": "replace", "value": {"active": true}}]),
            ),
        )
        .await;
    assert_eq!(p.status, StatusCode::OK, "{}", p.body);
    assert_eq!(
        (&p.body["name"], &p.body["active"]),
        (&json!("analysis-agent-8"), &json!(true))
    );
    // Both names, different: which one was meant?
    let both = s
        .post(
            "/Agents",
            json!({"schemas": [AGENT], "name": "a", "agentUserName": "b"}),
        )
        .await;
    assert_error(&both, StatusCode::BAD_REQUEST, "invalidValue");
    // The unique name is one namespace whichever draft's word set it.
    let dup = s
        .post("/Agents", json!({"schemas": [AGENT], "name": "Analysis-Agent-8"}))
        .await;
    assert_error(&dup, StatusCode::CONFLICT, "uniqueness");
}

#[tokio::test]
async fn malformed_agents_get_rfc_7644_errors() {
    let s = TestServer::start().await;
    let alice = s.create_user("alice@example.com").await;
    let bot = create_agent(
        &s,
        json!({"schemas": [AGENT], "name": "bot", "owners": [{"value": alice}]}),
    )
    .await;
    let cases = [
        (
            "no name",
            json!({"schemas": [AGENT], "agentType": "Assistant"}),
            "invalidValue",
        ),
        ("blank name", json!({"schemas": [AGENT], "name": "  "}), "invalidValue"),
        (
            "padded name",
            json!({"schemas": [AGENT], "name": " bot2"}),
            "invalidValue",
        ),
        (
            "name not a string",
            json!({"schemas": [AGENT], "name": 5}),
            "invalidValue",
        ),
        (
            "active not a boolean",
            json!({"schemas": [AGENT], "name": "b", "active": "maybe"}),
            "invalidValue",
        ),
        (
            "owners not objects",
            json!({"schemas": [AGENT], "name": "b", "owners": ["x"]}),
            "invalidValue",
        ),
        (
            "owner without value",
            json!({"schemas": [AGENT], "name": "b", "owners": [{"display": "x"}]}),
            "invalidValue",
        ),
        (
            "unknown owner",
            json!({"schemas": [AGENT], "name": "b", "owners": [{"value": "nobody-here"}]}),
            "invalidValue",
        ),
        (
            "an agent as owner",
            json!({"schemas": [AGENT], "name": "b", "owners": [{"value": bot}]}),
            "invalidValue",
        ),
        (
            "unknown parent",
            json!({"schemas": [AGENT], "name": "b", "parent": {"value": "nobody-here"}}),
            "invalidValue",
        ),
        (
            "a user as parent",
            json!({"schemas": [AGENT], "name": "b", "parent": {"value": alice}}),
            "invalidValue",
        ),
        (
            "bad certificate",
            json!({"schemas": [AGENT], "name": "b", "x509Certificates": [{"value": "%%%"}]}),
            "invalidValue",
        ),
    ];
    for (what, body, scim_type) in cases {
        let r = s.post("/Agents", body).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{what}: {}", r.body);
        assert_eq!(r.scim_type(), Some(scim_type), "{what}: {}", r.body);
        assert_eq!(
            r.body["schemas"][0], "urn:ietf:params:scim:api:messages:2.0:Error",
            "{what}"
        );
        assert_eq!(r.body["status"], "400", "{what}");
    }
    let r = s
        .post(
            "/Agents",
            json!({"schemas": [AGENT], "name": "b", "owners": [{"value": "nobody-here"}]}),
        )
        .await;
    assert!(
        r.body["detail"].as_str().is_some_and(|d| d.contains("nobody-here")),
        "{}",
        r.body
    );
    let r = s.post("/Agents", json!({"schemas": [AGENT], "name": "BOT"})).await;
    assert_error(&r, StatusCode::CONFLICT, "uniqueness");
    assert_eq!(r.body["status"], "409");
    let r = post_raw(&s, "/Agents", "application/scim+json", "{\"name\": ").await;
    assert_error(&r, StatusCode::BAD_REQUEST, "invalidSyntax");
    // A parent loop, however long, is refused.
    let a = create_agent(&s, json!({"schemas": [AGENT], "name": "a"})).await;
    let b = create_agent(&s, json!({"schemas": [AGENT], "name": "b", "parent": {"value": a}})).await;
    let c = create_agent(&s, json!({"schemas": [AGENT], "name": "c", "parent": {"value": b}})).await;
    let r = s
        .patch(
            &format!("/Agents/{a}"),
            ops(json!([{"op": "add", "path": "parent", "value": {"value": c}}])),
        )
        .await;
    assert_error(&r, StatusCode::BAD_REQUEST, "invalidValue");
    let r = s
        .patch(
            &format!("/Agents/{a}"),
            ops(json!([{"op": "add", "path": "parent.value", "value": a}])),
        )
        .await;
    assert_error(&r, StatusCode::BAD_REQUEST, "invalidValue");
    let r = s.get("/Agents/not-an-agent").await;
    assert_eq!((r.status, &r.body["status"]), (StatusCode::NOT_FOUND, &json!("404")));
    // Users and agents are different resources: an agent's id is no User.
    let r = s.get(&format!("/Users/{bot}")).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn owners_are_patched_like_members() {
    let s = TestServer::start().await;
    let alice = s.create_user("alice@example.com").await;
    let bob = s.create_user("bob@example.com").await;
    let team = s.create_group("ml-team", &[&bob]).await;
    let id = create_agent(
        &s,
        json!({"schemas": [AGENT], "name": "ci-bot", "owners": [{"value": alice, "display": "Alice"}]}),
    )
    .await;
    let path = format!("/Agents/{id}");
    let owners = |v: &Value| columns(&v["owners"], ["/value", "/type"]);
    // Entra-style capitalised op and `$ref: null`; a repeated owner is listed once.
    let r = s
        .patch(
            &path,
            ops(json!([{"op": "Add", "path": "owners", "value": [{"$ref": null, "value": team}, {"value": alice}, {"value": bob}]}])),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(
        owners(&r.body),
        [
            [alice.as_str(), "User"],
            [team.as_str(), "Group"],
            [bob.as_str(), "User"]
        ]
    );
    assert_eq!(r.body["owners"][1]["$ref"], json!(format!("{}/Groups/{team}", s.base)));
    assert_eq!(r.body["owners"][0]["display"], "Alice");
    let r = s
        .patch(
            &path,
            ops(json!([{"op": "remove", "path": format!("owners[value eq \"{alice}\"]")}])),
        )
        .await;
    assert_eq!(owners(&r.body), [[team.as_str(), "Group"], [bob.as_str(), "User"]]);
    // A value filter in single quotes too (the same quirk as in filters).
    let r = s
        .patch(
            &path,
            ops(json!([{"op": "remove", "path": format!("owners[type eq 'User']")}])),
        )
        .await;
    assert_eq!(owners(&r.body), [[team.as_str(), "Group"]], "{}", r.body);
    // Entra's legacy remove form: only the listed ones.
    let r = s
        .patch(
            &path,
            ops(json!([{"op": "add", "path": "owners", "value": [{"value": alice}]},
                       {"op": "Remove", "path": "owners", "value": [{"value": team}]}])),
        )
        .await;
    assert_eq!(owners(&r.body), [[alice.as_str(), "User"]]);
    // An unknown owner fails the whole PATCH, which changes nothing.
    let before = s.get(&path).await;
    let r = s
        .patch(
            &path,
            ops(json!([{"op": "add", "path": "owners", "value": [{"value": bob}]},
                       {"op": "add", "path": "owners", "value": [{"value": "ghost"}]}])),
        )
        .await;
    assert_error(&r, StatusCode::BAD_REQUEST, "invalidValue");
    assert!(r.body["detail"].as_str().is_some_and(|d| d.contains("ghost")));
    let after = s.get(&path).await;
    assert_eq!(before.body, after.body);
    // Replace all, then filter by owner.
    let r = s
        .patch(
            &path,
            ops(json!([{"op": "replace", "path": "owners", "value": [{"value": bob}]}])),
        )
        .await;
    assert_eq!(owners(&r.body), [[bob.as_str(), "User"]]);
    let found = s
        .get(&format!(
            "/Agents?filter={}",
            enc(&format!("owners.value eq \"{bob}\""))
        ))
        .await;
    assert_eq!(names(&found.body), vec!["ci-bot".to_string()]);
    let found = s
        .get(&format!(
            "/Agents?filter={}",
            enc(&format!("owners[value eq \"{alice}\"]"))
        ))
        .await;
    assert_eq!(found.body["totalResults"], 0);
    let r = s.patch(&path, ops(json!([{"op": "remove", "path": "owners"}]))).await;
    assert!(r.body.get("owners").is_none(), "{}", r.body);
}

#[tokio::test]
async fn etags_and_if_match_guard_agents() {
    let s = TestServer::start().await;
    let r = s.post("/Agents", json!({"schemas": [AGENT], "name": "etag-bot"})).await;
    let id = r.id();
    let path = format!("/Agents/{id}");
    let etag = r.header("etag").unwrap_or_default().to_string();
    let r = s
        .send(s.authed(Method::GET, &path).header("if-none-match", &etag))
        .await;
    assert_eq!(r.status, StatusCode::NOT_MODIFIED);
    let put = |tag: &str| {
        s.authed(Method::PUT, &path)
            .header("if-match", tag)
            .header("content-type", "application/scim+json")
            .body(json!({"schemas": [AGENT], "name": "etag-bot", "agentType": "Assistant"}).to_string())
    };
    let r = s.send(put("W/\"7\"")).await;
    assert_eq!(r.status, StatusCode::PRECONDITION_FAILED);
    let r = s.send(put(&etag)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let new_tag = r.header("etag").unwrap_or_default().to_string();
    assert_ne!(new_tag, etag);
    assert_eq!(r.body["meta"]["version"], json!(new_tag));
    // PUT replaces: what it leaves out is gone.
    let r = s.put(&path, json!({"schemas": [AGENT], "name": "etag-bot"})).await;
    assert!(r.body.get("agentType").is_none());
    // A PUT that changes nothing keeps the version.
    let again = s.put(&path, json!({"schemas": [AGENT], "name": "etag-bot"})).await;
    assert_eq!(again.header("etag"), r.header("etag"));
    let r = s
        .send(
            s.authed(Method::PATCH, &path)
                .header("if-match", &etag)
                .header("content-type", "application/scim+json")
                .body(ops(json!([{"op": "replace", "path": "active", "value": false}])).to_string()),
        )
        .await;
    assert_eq!(r.status, StatusCode::PRECONDITION_FAILED);
    let r = s.send(s.authed(Method::DELETE, &path).header("if-match", &etag)).await;
    assert_eq!(r.status, StatusCode::PRECONDITION_FAILED);
    let current = s.get(&path).await.header("etag").unwrap_or_default().to_string();
    let r = s
        .send(s.authed(Method::DELETE, &path).header("if-match", &current))
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert_eq!(s.get(&path).await.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn agents_list_filter_sort_page_and_project() {
    let s = TestServer::start().await;
    let alice = s.create_user("alice@example.com").await;
    for (name, kind, subject) in [
        ("charlie-bot", "Assistant", "system:serviceaccount:ci:charlie"),
        ("alpha-bot", "Chat bot", "0oa1ALPHA"),
        ("bravo-bot", "Assistant", "0oa1bravo"),
    ] {
        create_agent(
            &s,
            json!({"schemas": [AGENT], "name": name, "agentType": kind, "subject": subject, "owners": [{"value": alice}]}),
        )
        .await;
    }
    let r = s.get("/Agents?sortBy=name&sortOrder=descending").await;
    assert_eq!(names(&r.body), ["charlie-bot", "bravo-bot", "alpha-bot"]);
    let r = s.get("/Agents?sortBy=name&startIndex=2&count=1").await;
    assert_eq!(
        (&r.body["totalResults"], &r.body["startIndex"], &r.body["itemsPerPage"]),
        (&json!(3), &json!(2), &json!(1))
    );
    assert_eq!(names(&r.body), ["bravo-bot"]);
    let r = s
        .get(&format!(
            "/Agents?filter={}&sortBy=name",
            enc("agentType eq \"assistant\"")
        ))
        .await;
    assert_eq!(names(&r.body), ["bravo-bot", "charlie-bot"]);
    // `subject` is compared exactly: it is a token's `sub` or a Kubernetes username.
    let r = s
        .get(&format!("/Agents?filter={}", enc("subject eq \"0oa1ALPHA\"")))
        .await;
    assert_eq!(names(&r.body), ["alpha-bot"]);
    let r = s
        .get(&format!("/Agents?filter={}", enc("subject eq \"0oa1alpha\"")))
        .await;
    assert_eq!(r.body["totalResults"], 0);
    let r = s
        .get(&format!(
            "/Agents?filter={}",
            enc("subject sw \"system:serviceaccount:\"")
        ))
        .await;
    assert_eq!(names(&r.body), ["charlie-bot"]);
    let r = s.get("/Agents?attributes=name&sortBy=name&count=1").await;
    let first = &r.body["Resources"][0];
    assert_eq!(first["name"], "alpha-bot");
    assert!(first.get("id").is_some() && first.get("owners").is_none() && first.get("agentType").is_none());
    let r = s.get("/Agents?excludedAttributes=owners,subject&count=1").await;
    let first = &r.body["Resources"][0];
    assert!(first.get("owners").is_none() && first.get("subject").is_none() && first.get("name").is_some());
    let r = s.get("/Agents?filter=bogus%20xx").await;
    assert_error(&r, StatusCode::BAD_REQUEST, "invalidFilter");
    // POST /Agents/.search and the root /.search, which lists every resource type.
    let r = s
        .post(
            "/Agents/.search",
            json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"],
                   "filter": "name co \"a-b\"", "attributes": ["name"]}),
        )
        .await;
    assert_eq!(names(&r.body), ["alpha-bot"], "{}", r.body);
    let r = s
        .post(
            "/.search",
            json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"], "count": 10}),
        )
        .await;
    assert_eq!(r.body["totalResults"], 4, "{}", r.body);
    let kinds = strings(&r.body["Resources"], "/meta/resourceType");
    assert_eq!(kinds, ["User", "Agent", "Agent", "Agent"]);
    let r = s
        .post(
            "/.search",
            json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"], "filter": "agentType pr"}),
        )
        .await;
    assert_eq!(r.body["totalResults"], 3, "{}", r.body);
}

#[tokio::test]
async fn bulk_creates_a_group_owner_and_an_agent_that_references_it() {
    let s = TestServer::start().await;
    let body = json!({
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:BulkRequest"],
        "Operations": [
            // Out of order on purpose: the agent waits for the group it names, the group for its member.
            {"method": "POST", "path": "/Agents", "bulkId": "agent",
             "data": {"schemas": [AGENT], "name": "bulk-bot", "owners": [{"value": "bulkId:team"}]}},
            {"method": "POST", "path": "/Groups", "bulkId": "team",
             "data": {"schemas": [GROUP], "displayName": "bulk-team", "members": [{"value": "bulkId:alice"}]}},
            {"method": "POST", "path": "/Users", "bulkId": "alice",
             "data": {"schemas": [USER], "userName": "alice@example.com"}},
            {"method": "PATCH", "path": "/Agents/bulkId:agent",
             "data": ops(json!([{"op": "replace", "path": "agentType", "value": "Assistant"}]))},
            {"method": "POST", "path": "/Agents", "bulkId": "orphan",
             "data": {"schemas": [AGENT], "name": "orphan-bot", "owners": [{"value": "not-here"}]}}
        ]
    });
    let r = s.post("/Bulk", body).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let results = r.body["Operations"].as_array().cloned().unwrap_or_default();
    let status_of = |bulk_id: &str| {
        results
            .iter()
            .find(|o| o["bulkId"] == bulk_id)
            .map(|o| o["status"].clone())
            .unwrap_or_default()
    };
    assert_eq!(status_of("agent"), "201");
    assert_eq!(status_of("team"), "201");
    assert_eq!(status_of("orphan"), "400");
    let orphan = results
        .iter()
        .find(|o| o["bulkId"] == "orphan")
        .cloned()
        .unwrap_or_default();
    assert_eq!(orphan["response"]["scimType"], "invalidValue");
    assert!(
        results.iter().any(|o| o["method"] == "PATCH" && o["status"] == "200"),
        "{}",
        r.body
    );
    let location = results
        .iter()
        .find(|o| o["bulkId"] == "agent")
        .and_then(|o| o["location"].as_str())
        .unwrap_or_default()
        .to_string();
    assert!(location.starts_with(&format!("{}/Agents/", s.base)), "{location}");
    let agent = s.get(location.trim_start_matches(&s.base)).await;
    let team = s
        .get(&format!("/Groups?filter={}", enc("displayName eq \"bulk-team\"")))
        .await;
    let team_id = team.body["Resources"][0]["id"].clone();
    assert_eq!(agent.body["owners"][0]["value"], team_id);
    assert_eq!(agent.body["owners"][0]["type"], "Group");
    assert_eq!(agent.body["agentType"], "Assistant");
    // A DELETE of an agent in a bulk request, too.
    let r = s
        .post(
            "/Bulk",
            json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:BulkRequest"],
                   "Operations": [{"method": "DELETE", "path": location.trim_start_matches(&s.base)}]}),
        )
        .await;
    assert_eq!(r.body["Operations"][0]["status"], "204", "{}", r.body);
}

#[tokio::test]
async fn discovery_publishes_agents_as_abbey_00_describes() {
    let s = TestServer::start().await;
    // §4.1: "SCIM endpoints that support Agent extensions MUST advertise this support".
    let r = s.get("/ServiceProviderConfig").await;
    assert_eq!(
        r.body["agentExtension"],
        json!({"supported": true, "agentsSupported": true, "agenticApplicationsSupported": false})
    );
    // §5.1.1: the Agent resource type, every attribute as the draft gives it.
    let draft = fixture("abbey-00-s5.1.1-agent-resource-type.json");
    let r = s.get("/ResourceTypes/Agent").await;
    assert_eq!(r.status, StatusCode::OK);
    for (key, value) in draft.as_object().into_iter().flatten() {
        assert_eq!(&r.body[key], value, "{key}");
    }
    let r = s.get("/ResourceTypes").await;
    let ids = strings(&r.body["Resources"], "/id");
    assert_eq!(ids, ["User", "Group", "Agent"]);
    // §5.2.1's AgenticApplication is not served: §4.1's `agenticApplicationsSupported: false`
    // says so, and nothing in the drafts' Agent discovery needs it.
    let app = fixture("abbey-00-s5.2.1-agentic-application-resource-type.fixed.json");
    let r = s
        .get(&format!("/ResourceTypes/{}", app["id"].as_str().unwrap_or_default()))
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = s.get("/AgenticApplications").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);

    // §6.1: the Agent schema. Every attribute and sub-attribute the draft lists is published
    // with its type and multiValued (`specifiationUrl` is the draft's typo of §5.1.4's
    // `specificationUrl`); `name` as required and unique.
    let schema = fixture("abbey-00-s6.1-agent-schema.fixed.json");
    let r = s.get("/Schemas").await;
    assert_eq!(r.body["totalResults"], 4);
    let r = s.get(&format!("/Schemas/{AGENT}")).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!((&r.body["id"], &r.body["name"]), (&schema["id"], &schema["name"]));
    let ours = r.body["attributes"].as_array().cloned().unwrap_or_default();
    let find = |list: &[Value], name: &str| list.iter().find(|a| a["name"] == name).cloned();
    for attr in schema["attributes"].as_array().into_iter().flatten() {
        let name = attr["name"].as_str().unwrap_or_default();
        let mine = find(&ours, name).unwrap_or_else(|| panic!("{name} is not published"));
        for key in ["type", "multiValued"] {
            assert_eq!(mine[key], attr[key], "{name}.{key}");
        }
        let subs = mine["subAttributes"].as_array().cloned().unwrap_or_default();
        for sub in attr["subAttributes"].as_array().into_iter().flatten() {
            let sub_name = sub["name"]
                .as_str()
                .unwrap_or_default()
                .replace("specifiationUrl", "specificationUrl");
            assert!(find(&subs, &sub_name).is_some(), "{name}.{sub_name}");
        }
    }
    let name = find(&ours, "name").unwrap_or_default();
    assert_eq!(
        (&name["required"], &name["uniqueness"]),
        (&json!(true), &json!("server"))
    );
    // Where §6.1 says readOnly and §5.1.4 has the client set it, the prose wins.
    for writable in ["owners", "subject", "parent"] {
        assert_eq!(
            find(&ours, writable).unwrap_or_default()["mutability"],
            "readWrite",
            "{writable}"
        );
    }
    assert_eq!(find(&ours, "groups").unwrap_or_default()["mutability"], "readOnly");
    // Group members may be agents.
    let r = s.get(&format!("/Schemas/{GROUP}")).await;
    let members = find(
        r.body["attributes"].as_array().map(Vec::as_slice).unwrap_or_default(),
        "members",
    )
    .unwrap_or_default();
    let member_type = find(
        members["subAttributes"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default(),
        "type",
    )
    .unwrap_or_default();
    assert_eq!(member_type["canonicalValues"], json!(["User", "Group", "Agent"]));
}

#[tokio::test]
async fn groups_may_have_agents_as_members() {
    let s = TestServer::start().await;
    let alice = s.create_user("alice@example.com").await;
    let bot = create_agent(
        &s,
        json!({"schemas": [AGENT], "name": "member-bot", "owners": [{"value": alice}]}),
    )
    .await;
    let r = s
        .post(
            "/Groups",
            json!({"schemas": [GROUP], "displayName": "ml-team", "members": [{"value": alice}, {"value": bot}]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let team = r.id();
    assert_eq!(
        r.body["members"][1],
        json!({"value": bot, "$ref": format!("{}/Agents/{bot}", s.base), "type": "Agent"})
    );
    let nested = s.create_group("all-teams", &[&team]).await;
    let got = s.get(&format!("/Agents/{bot}")).await;
    let groups = columns(&got.body["groups"], ["/value", "/type"]);
    assert!(
        groups.contains(&[team.clone(), "direct".into()]) && groups.contains(&[nested.clone(), "indirect".into()]),
        "{groups:?}"
    );
    let found = s
        .get(&format!("/Groups?filter={}", enc(&format!("members eq \"{bot}\""))))
        .await;
    assert_eq!(found.body["totalResults"], 1);
    let found = s
        .get(&format!(
            "/Agents?filter={}",
            enc(&format!("groups.value eq \"{nested}\""))
        ))
        .await;
    assert_eq!(names(&found.body), ["member-bot"]);
    // Excluding `groups` leaves them out.
    let got = s.get(&format!("/Agents/{bot}?excludedAttributes=groups")).await;
    assert!(got.body.get("groups").is_none());
    // Deleting the agent takes it out of the group in the same write.
    assert_eq!(s.delete(&format!("/Agents/{bot}")).await.status, StatusCode::NO_CONTENT);
    let g = s.get(&format!("/Groups/{team}")).await;
    assert_eq!(
        g.body["members"],
        json!([{"value": alice, "$ref": format!("{}/Users/{alice}", s.base), "type": "User"}])
    );
}

#[tokio::test]
async fn deleting_an_owner_leaves_the_agent_listing_it() {
    let s = TestServer::start().await;
    let alice = s.create_user("alice@example.com").await;
    let bob = s.create_user("bob@example.com").await;
    let team = s.create_group("owners", &[&bob]).await;
    let bot = create_agent(
        &s,
        json!({"schemas": [AGENT], "name": "kept-bot", "owners": [{"value": alice, "display": "Alice"}, {"value": team}]}),
    )
    .await;
    let path = format!("/Agents/{bot}");
    // Deleting a User (or Group) that owns agents is allowed; the agent keeps the id, which
    // admission treats as an owner who is gone.
    assert_eq!(
        s.delete(&format!("/Users/{alice}")).await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        s.delete(&format!("/Groups/{team}")).await.status,
        StatusCode::NO_CONTENT
    );
    let got = s.get(&path).await;
    assert_eq!(
        got.body["owners"],
        json!([{"value": alice, "$ref": format!("{}/Users/{alice}", s.base), "display": "Alice", "type": "User"},
               {"value": team, "$ref": format!("{}/Groups/{team}", s.base), "type": "Group"}])
    );
    // The IdP can still deactivate it, replace it with what it holds, and name a new owner; only
    // a dangling id it adds is refused.
    let r = s
        .patch(&path, ops(json!([{"op": "replace", "value": {"active": false}}])))
        .await;
    assert_eq!(
        (r.status, &r.body["active"]),
        (StatusCode::OK, &json!(false)),
        "{}",
        r.body
    );
    let r = s
        .put(
            &path,
            json!({"schemas": [AGENT], "name": "kept-bot", "active": false, "owners": [{"value": alice}, {"value": bob}]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["owners"][0]["type"], "User");
    let r = s
        .patch(
            &path,
            ops(json!([{"op": "add", "path": "owners", "value": [{"value": team}]}])),
        )
        .await;
    assert_error(&r, StatusCode::BAD_REQUEST, "invalidValue");
}

/// An agent written, then the server stopped and started on the same data (or, with
/// PostgreSQL, a second replica): it is there, indexed by name and subject.
async fn check_reloaded(s: &TestServer, id: &str) {
    let got = s.get(&format!("/Agents/{id}")).await;
    assert_eq!(got.status, StatusCode::OK, "{}", got.body);
    assert_eq!(got.body["owners"][0]["type"], "User");
    let r = s
        .get(&format!(
            "/Agents?filter={}",
            enc("name eq \"DURABLE-bot\" and subject eq \"sub-1\"")
        ))
        .await;
    assert_eq!(r.body["totalResults"], 1, "{}", r.body);
}

async fn provision_durable(s: &TestServer) -> String {
    let alice = s.create_user("alice@example.com").await;
    create_agent(
        s,
        json!({"schemas": [AGENT], "name": "durable-bot", "subject": "sub-1", "owners": [{"value": alice}]}),
    )
    .await
}

#[tokio::test]
async fn agents_survive_a_restart_on_the_embedded_store() {
    let s = TestServer::start().await;
    let id = provision_durable(&s).await;
    let dir = s.stop().await;
    let s = TestServer::start_in(dir, |_| {}).await;
    check_reloaded(&s, &id).await;
    let dup = s
        .post("/Agents", json!({"schemas": [AGENT], "name": "durable-BOT"}))
        .await;
    assert_eq!(dup.status, StatusCode::CONFLICT);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_replicate_and_survive_a_restart_on_postgres() {
    let Some(url) = postgres_db("agents_replicate_and_survive_a_restart_on_postgres").await else {
        return;
    };
    let replica = |url: String| TestServer::start_with(move |a| a.store = Some(url));
    let a = replica(url.clone()).await;
    let b = replica(url.clone()).await;
    let id = provision_durable(&a).await;
    // Read-after-write on the other replica.
    check_reloaded(&b, &id).await;
    // A change on B reaches A.
    let r = b
        .patch(
            &format!("/Agents/{id}"),
            ops(json!([{"op": "replace", "path": "agentType", "value": "Assistant"}])),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let seen = until(Duration::from_secs(20), async || {
        a.get(&format!("/Agents/{id}")).await.body["agentType"] == "Assistant"
    })
    .await;
    assert!(seen.is_some(), "the change on B reached A");
    // Uniqueness across replicas.
    let dup = a
        .post("/Agents", json!({"schemas": [AGENT], "name": "Durable-Bot"}))
        .await;
    assert_error(&dup, StatusCode::CONFLICT, "uniqueness");
    a.stop().await;
    b.stop().await;
    let c = replica(url).await;
    check_reloaded(&c, &id).await;
}
