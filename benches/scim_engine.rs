//! criterion benchmarks of the SCIM engine's pure parts: filter parse, filter evaluation, PATCH.
//!   cargo bench --bench scim_engine
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test, benchmark and example code: a failed assumption is a failed run"
)]

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use scimgate::scim::filter::Filter;
use scimgate::scim::patch;
use scimgate::scim::quirks::Quirks;
use scimgate::scim::schema::ResourceType;
use serde_json::{json, Map, Value};

const FILTERS: &[(&str, &str)] = &[
    ("userName eq", r#"userName eq "alice@example.com""#),
    (
        "entra value path",
        r#"emails[type eq "work"].value eq "alice@example.com""#,
    ),
    (
        "rfc complex",
        r#"userType eq "Employee" and (emails co "example.com" or emails.value co "example.org") and not (active eq false)"#,
    ),
];

fn user() -> Map<String, Value> {
    match json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "id": "2819c223", "userName": "alice@example.com",
        "name": {"givenName": "Alice", "familyName": "Liddell"}, "userType": "Employee", "active": true,
        "emails": [{"value": "alice@example.com", "type": "work", "primary": true}, {"value": "a@home.org", "type": "home"}],
        "meta": {"resourceType": "User", "created": "2026-01-01T00:00:00Z", "lastModified": "2026-01-01T00:00:00Z", "version": "W/\"1\""}})
    {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

fn filters(c: &mut Criterion) {
    let doc = user();
    for (name, f) in FILTERS {
        c.bench_function(&format!("filter parse+resolve: {name}"), |b| {
            b.iter(|| Filter::compile(black_box(f), ResourceType::User))
        });
        let compiled = Filter::compile(f, ResourceType::User).expect("compile");
        c.bench_function(&format!("filter eval: {name}"), |b| {
            b.iter(|| black_box(&compiled).matches(black_box(&doc)))
        });
    }
}

fn patches(c: &mut Criterion) {
    let q = Quirks::default();
    let entra = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": [
        {"op": "Replace", "path": "emails[type eq \"work\"].value", "value": "alice@fabrikam.com"},
        {"op": "Replace", "path": "name.familyName", "value": "Liddell-Hart"},
        {"op": "Replace", "path": "active", "value": "False"}]});
    let ops = patch::parse(entra.clone(), &q).expect("parse");
    let mut attrs = user();
    for k in ["schemas", "id", "meta"] {
        attrs.remove(k);
    }
    c.bench_function("patch parse: entra user update", |b| {
        b.iter(|| patch::parse(black_box(entra.clone()), &q))
    });
    c.bench_function("patch apply: entra user update", |b| {
        b.iter(|| {
            let mut a = attrs.clone();
            patch::apply(ResourceType::User, &mut a, black_box(&ops), &q)
        })
    });
    let members: Vec<Value> = (0..1000)
        .map(|i| json!({"value": format!("u{i}"), "type": "User"}))
        .collect();
    let group = match json!({"displayName": "big", "members": members}) {
        Value::Object(m) => m,
        _ => Map::new(),
    };
    let add = patch::parse(
        json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": [
            {"op": "remove", "path": "members[value eq \"u500\"]"},
            {"op": "add", "path": "members", "value": [{"value": "new"}]}]}),
        &q,
    )
    .expect("parse");
    c.bench_function("patch apply: 1000-member group, remove one + add one", |b| {
        b.iter(|| {
            let mut g = group.clone();
            patch::apply(ResourceType::Group, &mut g, black_box(&add), &q)
        })
    });
}

fn stamps(c: &mut Criterion) {
    let (signer, _) = scimgate::stamp::Signer::generate().expect("key");
    let claims = json!({"iss": "scimgate", "sub": "2819c223-7f76-453a-919d-413861904646", "name": "alice@example.com",
        "action": "submit", "kind": "Workflow", "namespace": "ml-team", "objectName": "train-", "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
        "policy": "9f2c", "stamp": {"scimgate.io/submitted-by": "alice@example.com", "scimgate.io/submitted-at": "2026-11-22T23:00:00.000Z"}});
    c.bench_function("stamp: sign attestation (Ed25519 JWS)", |b| {
        b.iter(|| signer.sign(black_box(claims.clone())))
    });
    let jws = signer.sign(claims.clone());
    let verifier = scimgate::stamp::Verifier::from_signer(&signer);
    c.bench_function("stamp: verify attestation", |b| {
        b.iter(|| verifier.verify(black_box(&jws)))
    });
}

criterion_group!(benches, filters, patches, stamps);
criterion_main!(benches);
