//! Any body: AdmissionReview decoding → decision → stamp. Never panics; a decodable review gets
//! an answer; any patch we return applies to the object it was made for.
#![no_main]

use arc_swap::ArcSwap;
use libfuzzer_sys::fuzz_target;
use scimgate::admission::{codec, decide, Decider, Hook};
use scimgate::directory::Snapshot;
use scimgate::policy::{Policy, EXAMPLE};
use scimgate::stamp::{Signer, Verifier};
use scimgate::store::{Change, Record};
use scimgate::scim::schema::ResourceType;
use std::sync::{Arc, OnceLock};

fn decider() -> &'static Decider {
    static D: OnceLock<Decider> = OnceLock::new();
    D.get_or_init(|| {
        let mut s = Snapshot::default();
        let user = |id: &str, name: &str| Change::Put {
            record: Record {
                rt: ResourceType::User,
                id: id.into(),
                unique_key: name.into(),
                version: 1,
                body: serde_json::json!({"id": id, "userName": name, "active": true}).to_string().into(),
            },
            previous: None,
        };
        let group = Change::Put {
            record: Record {
                rt: ResourceType::Group,
                id: "g1".into(),
                unique_key: "ml-engineers".into(),
                version: 1,
                body: serde_json::json!({"id": "g1", "displayName": "ml-engineers", "members": [{"value": "u1"}]}).to_string().into(),
            },
            previous: None,
        };
        s.apply(&[user("u1", "alice@example.com"), user("u2", "bob@example.com"), group]);
        let (signer, _) = Signer::generate().expect("key");
        Decider {
            directory: Arc::new(ArcSwap::from_pointee(s)),
            policy: Arc::new(ArcSwap::from_pointee(Policy::parse(EXAMPLE, "example").expect("policy"))),
            verifier: Verifier::from_signer(&signer),
            signer: Arc::new(signer),
            freshness: Arc::new(scimgate::freshness::Freshness::sole_writer()),
            stamp_max_age: scimgate::config::DEFAULT_STAMP_MAX_AGE_SECONDS,
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(r) = codec::decode(data) else { return };
    let Ok(req) = r.request else { return };
    for hook in [Hook::Mutate, Hook::Validate] {
        let answer = decide(decider(), &req, hook);
        let out = codec::encode(&r.api_version, &r.uid, &answer);
        assert_eq!(out["response"]["uid"].as_str(), Some(r.uid.as_str()));
        if !answer.patch.is_empty() {
            let mut obj = req.object.clone().expect("a patch needs an object");
            let patch: json_patch::Patch = serde_json::from_value(serde_json::Value::Array(answer.patch.clone())).expect("valid RFC 6902");
            json_patch::patch(&mut obj, &patch).expect("our patch applies to the object it was made for");
        }
    }
});
