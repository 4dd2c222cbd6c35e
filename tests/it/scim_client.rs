//! What the SCIM API tests (`scim_api`, `scim_agents`) do alike to a response: check an RFC 7644
//! error, read a field out of every item of a list, and send a body `TestServer::post` cannot
//! (not JSON, or not with SCIM's media type).

use crate::support::{Resp, TestServer};
use reqwest::{Method, StatusCode};
use serde_json::Value;

/// The response is an error with this status and `scimType`; the body is shown if it is not.
#[track_caller]
pub fn assert_error(r: &Resp, status: StatusCode, scim_type: &str) {
    assert_eq!((r.status, r.scim_type()), (status, Some(scim_type)), "{}", r.body);
}

/// The string at `pointer` (a JSON pointer, such as `/meta/resourceType`) in each item of the
/// array `items`, in order; an item without one is left out.
pub fn strings(items: &Value, pointer: &str) -> Vec<String> {
    items
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|x| x.pointer(pointer).and_then(Value::as_str).map(String::from))
        .collect()
}

/// The strings at `pointers` in each item of the array `items`, in order; one an item lacks is "".
pub fn columns<const N: usize>(items: &Value, pointers: [&str; N]) -> Vec<[String; N]> {
    items
        .as_array()
        .into_iter()
        .flatten()
        .map(|x| pointers.map(|p| x.pointer(p).and_then(Value::as_str).unwrap_or_default().to_string()))
        .collect()
}

/// POSTs `body` as it is, with this `content-type`.
pub async fn post_raw(s: &TestServer, path: &str, content_type: &str, body: &str) -> Resp {
    s.send(
        s.authed(Method::POST, path)
            .header("content-type", content_type)
            .body(body.to_string()),
    )
    .await
}
