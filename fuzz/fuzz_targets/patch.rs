//! Any JSON body: PATCH parses or fails with a 400, applies or fails with a 400, never panics; and
//! whatever it produces is still a valid resource (normalising it again succeeds).
#![no_main]

use libfuzzer_sys::fuzz_target;
use scimgate::scim::patch;
use scimgate::scim::quirks::Quirks;
use scimgate::scim::resource;
use scimgate::scim::schema::ResourceType;

fuzz_target!(|data: &[u8]| {
    let Ok(body) = serde_json::from_slice::<serde_json::Value>(data) else { return };
    let q = Quirks::default();
    let ops = match patch::parse(body, &q) {
        Ok(ops) => ops,
        Err(e) => {
            assert_eq!(e.status.as_u16(), 400, "{e}");
            return;
        }
    };
    let user = serde_json::json!({"userName": "alice", "active": true, "name": {"givenName": "A"},
        "emails": [{"value": "a@x", "type": "work", "primary": true}],
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"manager": {"value": "m"}}});
    let group = serde_json::json!({"displayName": "g", "members": [{"value": "u1", "type": "User"}, {"value": "u2"}]});
    for (rt, start) in [(ResourceType::User, user), (ResourceType::Group, group)] {
        let serde_json::Value::Object(mut attrs) = start else { return };
        match patch::apply(rt, &mut attrs, &ops, &q) {
            Ok(()) => {
                let again = resource::normalize(rt, serde_json::Value::Object(attrs.clone()), &q);
                assert!(again.is_ok(), "patched resource no longer valid: {again:?} {attrs:?}");
            }
            Err(e) => assert_eq!(e.status.as_u16(), 400, "{e}"),
        }
    }
});
