//! Any input: the filter parser returns a filter or an `invalidFilter` error, never panics, and a
//! parsed filter evaluates without panicking against a user and a group.
#![no_main]

use libfuzzer_sys::fuzz_target;
use scimgate::scim::filter::Filter;
use scimgate::scim::schema::ResourceType;
use scimgate::scim::ScimType;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else { return };
    let user = serde_json::json!({"id": "u1", "userName": "Alice", "active": true, "name": {"givenName": "A"},
        "emails": [{"value": "a@x", "type": "work"}], "meta": {"created": "2026-01-01T00:00:00Z"},
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"employeeNumber": "7"}});
    let group = serde_json::json!({"id": "g1", "displayName": "G", "members": [{"value": "u1", "type": "User"}]});
    for (rt, doc) in [(ResourceType::User, &user), (ResourceType::Group, &group)] {
        match Filter::compile(s, rt) {
            Ok(f) => {
                if let Some(obj) = doc.as_object() {
                    let _ = f.matches(obj);
                }
                let _ = f.index_hint();
            }
            Err(e) => assert_eq!(e.scim_type, Some(ScimType::InvalidFilter), "{e}"),
        }
    }
});
