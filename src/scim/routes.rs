//! SCIM over HTTP: the axum router under `/scim/v2`, bearer-token auth, request bodies with a size
//! limit, content types, ETag/If-Match/If-None-Match, and the discovery endpoints.
//! Errors become RFC 7644 bodies through [`super::Error`]'s one `IntoResponse`.

use super::bulk;
use super::error::{Error, Result, CONTENT_TYPE};
use super::schema::{self, ResourceType};
use super::service::{self, ListQuery, Service, MAX_RESULTS};
use crate::metrics::{self, Metrics, ScimResource};
use crate::store::Scope;
use crate::token::{Denied, Tokens};
use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, MatchedPath, Path, Query, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use axum::Router;
use serde_json::{json, Value};
use std::time::Instant;

pub const BASE_PATH: &str = "/scim/v2";

#[derive(Clone)]
pub struct ScimState {
    pub service: Service,
    pub tokens: Tokens,
    pub metrics: Metrics,
    /// `https://host/scim/v2` as clients reach us; when unset, taken from each request's Host.
    pub public_url: Option<String>,
    pub body_limit: usize,
}

/// The SCIM base URL for this request: `--public-url`, else `https://<authority>/scim/v2` from
/// the HTTP/2 `:authority` or the HTTP/1.1 `Host` header.
pub struct Base(pub String);

impl FromRequestParts<ScimState> for Base {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, st: &ScimState) -> Result<Self> {
        if let Some(url) = &st.public_url {
            return Ok(Base(url.trim_end_matches('/').to_string()));
        }
        let host = parts
            .uri
            .authority()
            .map(|a| a.as_str().to_string())
            .or_else(|| {
                parts
                    .headers
                    .get(header::HOST)
                    .and_then(|h| h.to_str().ok())
                    .map(String::from)
            })
            .filter(|h| h.chars().all(|c| c.is_ascii_alphanumeric() || ".-:[]".contains(c)))
            .unwrap_or_else(|| "localhost".to_string());
        Ok(Base(format!("https://{host}{BASE_PATH}")))
    }
}

/// The SCIM router, to be nested at [`BASE_PATH`].
pub fn router(state: ScimState) -> Router {
    let discovery = Router::new()
        .route(
            "/ServiceProviderConfig",
            get(service_provider_config).fallback(method_not_allowed),
        )
        .route("/Schemas", get(schemas).fallback(method_not_allowed))
        .route("/Schemas/{id}", get(schema_by_id).fallback(method_not_allowed))
        .route("/ResourceTypes", get(resource_types).fallback(method_not_allowed))
        .route(
            "/ResourceTypes/{id}",
            get(resource_type_by_id).fallback(method_not_allowed),
        );
    let resources = Router::new()
        .route("/Users", get(list_users).post(create_user))
        .route("/Groups", get(list_groups).post(create_group))
        .route("/Agents", get(list_agents).post(create_agent))
        .route("/Users/.search", post(search_users))
        .route("/Groups/.search", post(search_groups))
        .route("/Agents/.search", post(search_agents))
        .route("/.search", post(search_root))
        .route(
            "/Users/{id}",
            get(get_user).put(put_user).patch(patch_user).delete(delete_user),
        )
        .route(
            "/Groups/{id}",
            get(get_group).put(put_group).patch(patch_group).delete(delete_group),
        )
        .route(
            "/Agents/{id}",
            get(get_agent).put(put_agent).patch(patch_agent).delete(delete_agent),
        )
        .route("/Bulk", post(bulk_handler))
        .route("/Me", any(me))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_scim_token));
    discovery
        .merge(resources)
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(state.clone(), observe))
        .with_state(state)
}

async fn observe(State(st): State<ScimState>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    // Labels and log fields from closed sets only: the method a client sent can be any token
    // up to the header limit, the path anything at all (see `crate::metrics`).
    let method = metrics::Method::of(req.method());
    let resource = resource(req.extensions().get::<MatchedPath>());
    let resp = next.run(req).await;
    let status = metrics::Status::of(resp.status());
    st.metrics.scim_request(method, resource, status, started.elapsed());
    tracing::debug!(
        method = method.as_str(),
        resource = resource.as_str(),
        status = resp.status().as_u16(),
        micros = started.elapsed().as_micros() as u64,
        "scim"
    );
    resp
}

/// The endpoint of the route that matched: its template (`/scim/v2/Users/{id}`), never the
/// path the client sent. No route (the fallback's 404s): `other`.
fn resource(matched: Option<&MatchedPath>) -> ScimResource {
    let Some(route) = matched.map(MatchedPath::as_str) else {
        return ScimResource::Other;
    };
    let route = route.strip_prefix(BASE_PATH).unwrap_or(route);
    match route.trim_start_matches('/').split('/').next() {
        Some("Users") => ScimResource::Users,
        Some("Groups") => ScimResource::Groups,
        Some("Agents") => ScimResource::Agents,
        Some(".search") => ScimResource::Search,
        Some("Bulk") => ScimResource::Bulk,
        Some("Me") => ScimResource::Me,
        Some("Schemas") => ScimResource::Schemas,
        Some("ResourceTypes") => ScimResource::ResourceTypes,
        Some("ServiceProviderConfig") => ScimResource::ServiceProviderConfig,
        _ => ScimResource::Other,
    }
}

async fn require_scim_token(State(st): State<ScimState>, req: Request, next: Next) -> Response {
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.strip_prefix("Bearer ").or_else(|| h.strip_prefix("bearer ")))
        .map(str::trim);
    let Some(presented) = presented else {
        st.metrics.auth("missing");
        return Error::status(
            StatusCode::UNAUTHORIZED,
            "a bearer token is required (scimgate token create --scope scim)",
        )
        .into_response();
    };
    // Decided before the request is handed on; recorded (in memory, see `crate::token`) once it
    // succeeded.
    let write = is_write(req.method(), req.uri().path());
    match st.tokens.authorize(presented, Scope::Scim) {
        Ok(grant) => {
            st.metrics.auth("ok");
            let resp = next.run(req).await;
            if write && resp.status().is_success() {
                grant.wrote();
            }
            resp
        }
        Err(Denied::Scope(have)) => {
            st.metrics.auth("scope");
            Error::status(
                StatusCode::FORBIDDEN,
                format!("this token has scope '{}'; SCIM needs 'scim'", have.as_str()),
            )
            .into_response()
        }
        Err(Denied::Unknown) => {
            st.metrics.auth("invalid");
            Error::status(StatusCode::UNAUTHORIZED, "the bearer token is unknown or revoked").into_response()
        }
    }
}

/// Whether a request to a resource route writes: a create, replace, patch or delete, or a
/// `/Bulk`; a `.search` is a read sent as POST.
fn is_write(method: &Method, path: &str) -> bool {
    matches!(*method, Method::POST | Method::PUT | Method::PATCH | Method::DELETE) && !path.ends_with("/.search")
}

async fn not_found(req: Request) -> Error {
    Error::not_found(format!("no SCIM endpoint at {}", req.uri().path()))
}

async fn method_not_allowed(method: Method) -> Error {
    Error::status(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("{method} is not allowed here; discovery endpoints are read-only"),
    )
}

async fn me() -> Error {
    Error::status(
        StatusCode::NOT_IMPLEMENTED,
        "/Me is not supported: scimgate tokens belong to provisioning clients, not users",
    )
}

// ------------------------------------------------------------------ bodies and responses

/// A JSON request body within the configured size limit.
pub struct ScimBody(pub Value);

impl FromRequest<ScimState> for ScimBody {
    type Rejection = Error;

    async fn from_request(req: Request, st: &ScimState) -> Result<Self> {
        if let Some(ct) = req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()) {
            let mime = ct.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
            if !(mime == CONTENT_TYPE || mime == "application/json" || mime.is_empty()) {
                return Err(Error::status(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    format!("send {CONTENT_TYPE} or application/json, not {mime}"),
                ));
            }
        }
        let bytes: Bytes = axum::body::to_bytes(req.into_body(), st.body_limit)
            .await
            .map_err(|e| {
                let too_big = std::error::Error::source(&e).is_some_and(|s| s.is::<http_body_util::LengthLimitError>())
                    || e.to_string().contains("length limit");
                if too_big {
                    Error::status(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        format!("request body over {} bytes", st.body_limit),
                    )
                } else {
                    Error::invalid_syntax(format!("could not read the body: {e}"))
                }
            })?;
        serde_json::from_slice(&bytes)
            .map(ScimBody)
            .map_err(|e| Error::invalid_syntax(format!("invalid JSON: {e}")))
    }
}

fn scim_json(status: StatusCode, body: &Value) -> Response {
    let mut resp = (status, body.to_string()).into_response();
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
    resp
}

fn resource_response(st: &ScimState, base: &str, status: StatusCode, record: &crate::store::Record) -> Response {
    let snapshot = st.service.snapshot();
    let body = Value::Object(service::render(&snapshot, record, base, &Default::default()));
    let mut resp = scim_json(status, &body);
    if let Ok(v) = HeaderValue::from_str(&service::etag(record)) {
        resp.headers_mut().insert(header::ETAG, v);
    }
    if status == StatusCode::CREATED {
        let location = format!("{base}/{}/{}", record.rt.endpoint(), record.id);
        if let Ok(v) = HeaderValue::from_str(&location) {
            resp.headers_mut().insert(header::LOCATION, v);
        }
    }
    resp
}

fn header_string(headers: &HeaderMap, name: header::HeaderName) -> Option<String> {
    headers.get(name).and_then(|v| v.to_str().ok()).map(String::from)
}

// ------------------------------------------------------------------ discovery

async fn service_provider_config(
    State(st): State<ScimState>,
    Base(base): Base,
    q: Query<Vec<(String, String)>>,
) -> Result<Response> {
    reject_filter(&q)?;
    let body = json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"],
        "documentationUri": "https://github.com/scimgate/scimgate#connecting-an-identity-provider",
        "patch": {"supported": true},
        "bulk": {"supported": true, "maxOperations": bulk::MAX_OPERATIONS, "maxPayloadSize": st.body_limit},
        "filter": {"supported": true, "maxResults": MAX_RESULTS},
        "changePassword": {"supported": false},
        "sort": {"supported": true},
        "etag": {"supported": true},
        // draft-abbey-scim-agent-extension-00 §4.1: servers supporting agents MUST say so here.
        // No /AgenticApplications: nothing here would use them, and §4.1 lets us say so.
        "agentExtension": {"supported": true, "agentsSupported": true, "agenticApplicationsSupported": false},
        "authenticationSchemes": [{
            "type": "oauthbearertoken",
            "name": "Bearer token",
            "description": "A token from `scimgate token create --scope scim`, sent as 'Authorization: Bearer <token>'",
            "specUri": "https://www.rfc-editor.org/info/rfc6750",
            "primary": true
        }],
        "meta": {"resourceType": "ServiceProviderConfig", "location": format!("{base}/ServiceProviderConfig")},
    });
    Ok(scim_json(StatusCode::OK, &body))
}

/// RFC 7644 §4: a filter on a discovery endpoint gets 403, so nobody mistakes it for applied.
fn reject_filter(q: &Query<Vec<(String, String)>>) -> Result<()> {
    if q.0.iter().any(|(k, _)| k.eq_ignore_ascii_case("filter")) {
        return Err(Error::status(
            StatusCode::FORBIDDEN,
            "discovery endpoints take no filter",
        ));
    }
    Ok(())
}

fn list_of(items: Vec<Value>) -> Value {
    json!({"schemas": [schema::LIST_RESPONSE], "totalResults": items.len(), "startIndex": 1, "itemsPerPage": items.len(), "Resources": items})
}

async fn schemas(Base(base): Base, q: Query<Vec<(String, String)>>) -> Result<Response> {
    reject_filter(&q)?;
    Ok(scim_json(StatusCode::OK, &list_of(schema::schemas_json(&base))))
}

async fn schema_by_id(Base(base): Base, Path(id): Path<String>) -> Result<Response> {
    let s = schema::by_id(&id).ok_or_else(|| Error::not_found(format!("no schema '{id}'")))?;
    Ok(scim_json(StatusCode::OK, &s.to_json(&base)))
}

async fn resource_types(Base(base): Base, q: Query<Vec<(String, String)>>) -> Result<Response> {
    reject_filter(&q)?;
    let items = ResourceType::ALL
        .iter()
        .map(|rt| rt.resource_type_json(&base))
        .collect();
    Ok(scim_json(StatusCode::OK, &list_of(items)))
}

async fn resource_type_by_id(Base(base): Base, Path(id): Path<String>) -> Result<Response> {
    let rt = ResourceType::ALL
        .into_iter()
        .find(|rt| rt.name() == id)
        .ok_or_else(|| Error::not_found(format!("no resource type '{id}'")))?;
    Ok(scim_json(StatusCode::OK, &rt.resource_type_json(&base)))
}

// ------------------------------------------------------------------ list and search

fn list_query(params: &[(String, String)]) -> Result<ListQuery> {
    let mut q = ListQuery {
        start_index: 1,
        ..Default::default()
    };
    for (k, v) in params {
        let num = |v: &str| -> Result<i64> {
            v.trim()
                .parse::<i64>()
                .map_err(|_| Error::invalid_value(format!("'{k}' must be an integer, not '{v}'")))
        };
        match k.to_ascii_lowercase().as_str() {
            "filter" => q.filter = Some(v.clone()),
            "sortby" => q.sort_by = Some(v.clone()),
            "sortorder" => q.descending = sort_order(v)?,
            "startindex" => q.start_index = usize::try_from(num(v)?.max(1)).unwrap_or(1),
            "count" => q.count = Some(usize::try_from(num(v)?.max(0)).unwrap_or(0)),
            "attributes" => q.attributes = Some(v.clone()),
            "excludedattributes" => q.excluded_attributes = Some(v.clone()),
            _ => {}
        }
    }
    Ok(q)
}

fn sort_order(v: &str) -> Result<bool> {
    match v.to_ascii_lowercase().as_str() {
        "ascending" | "" => Ok(false),
        "descending" => Ok(true),
        _ => Err(Error::invalid_value(format!(
            "sortOrder must be 'ascending' or 'descending', not '{v}'"
        ))),
    }
}

fn search_query(body: Value) -> Result<ListQuery> {
    let Value::Object(body) = body else {
        return Err(Error::invalid_syntax("a SearchRequest must be an object"));
    };
    let mut q = ListQuery {
        start_index: 1,
        ..Default::default()
    };
    let names = |v: &Value, key: &str| -> Result<String> {
        match v {
            Value::String(s) => Ok(s.clone()),
            Value::Array(a) => a
                .iter()
                .map(|x| {
                    x.as_str()
                        .map(String::from)
                        .ok_or_else(|| Error::invalid_value(format!("'{key}' must list strings")))
                })
                .collect::<Result<Vec<_>>>()
                .map(|v| v.join(",")),
            _ => Err(Error::invalid_value(format!(
                "'{key}' must be an array of attribute names"
            ))),
        }
    };
    for (k, v) in &body {
        let int = || {
            v.as_i64()
                .ok_or_else(|| Error::invalid_value(format!("'{k}' must be an integer")))
        };
        let string = || {
            v.as_str()
                .map(String::from)
                .ok_or_else(|| Error::invalid_value(format!("'{k}' must be a string")))
        };
        match k.to_ascii_lowercase().as_str() {
            "filter" => q.filter = Some(string()?),
            "sortby" => q.sort_by = Some(string()?),
            "sortorder" => q.descending = sort_order(&string()?)?,
            "startindex" => q.start_index = usize::try_from(int()?.max(1)).unwrap_or(1),
            "count" => q.count = Some(usize::try_from(int()?.max(0)).unwrap_or(0)),
            "attributes" => q.attributes = Some(names(v, k)?),
            "excludedattributes" => q.excluded_attributes = Some(names(v, k)?),
            _ => {}
        }
    }
    Ok(q)
}

fn query_params(
    q: std::result::Result<Query<Vec<(String, String)>>, axum::extract::rejection::QueryRejection>,
) -> Result<Vec<(String, String)>> {
    q.map(|q| q.0)
        .map_err(|e| Error::invalid_syntax(format!("bad query string: {e}")))
}

async fn list(st: ScimState, base: String, rt: ResourceType, params: Vec<(String, String)>) -> Result<Response> {
    let q = list_query(&params)?;
    Ok(scim_json(StatusCode::OK, &st.service.list(Some(rt), &q, &base).await?))
}

async fn list_users(
    State(st): State<ScimState>,
    Base(base): Base,
    q: std::result::Result<Query<Vec<(String, String)>>, axum::extract::rejection::QueryRejection>,
) -> Result<Response> {
    list(st, base, ResourceType::User, query_params(q)?).await
}

async fn list_groups(
    State(st): State<ScimState>,
    Base(base): Base,
    q: std::result::Result<Query<Vec<(String, String)>>, axum::extract::rejection::QueryRejection>,
) -> Result<Response> {
    list(st, base, ResourceType::Group, query_params(q)?).await
}

async fn search(st: ScimState, base: String, rt: Option<ResourceType>, body: Value) -> Result<Response> {
    let q = search_query(body)?;
    Ok(scim_json(StatusCode::OK, &st.service.list(rt, &q, &base).await?))
}

async fn search_users(State(st): State<ScimState>, Base(base): Base, ScimBody(body): ScimBody) -> Result<Response> {
    search(st, base, Some(ResourceType::User), body).await
}

async fn search_groups(State(st): State<ScimState>, Base(base): Base, ScimBody(body): ScimBody) -> Result<Response> {
    search(st, base, Some(ResourceType::Group), body).await
}

async fn list_agents(
    State(st): State<ScimState>,
    Base(base): Base,
    q: std::result::Result<Query<Vec<(String, String)>>, axum::extract::rejection::QueryRejection>,
) -> Result<Response> {
    list(st, base, ResourceType::Agent, query_params(q)?).await
}

async fn search_agents(State(st): State<ScimState>, Base(base): Base, ScimBody(body): ScimBody) -> Result<Response> {
    search(st, base, Some(ResourceType::Agent), body).await
}

async fn search_root(State(st): State<ScimState>, Base(base): Base, ScimBody(body): ScimBody) -> Result<Response> {
    search(st, base, None, body).await
}

// ------------------------------------------------------------------ single resources

async fn get_one(
    st: ScimState,
    base: String,
    headers: HeaderMap,
    rt: ResourceType,
    id: String,
    params: Vec<(String, String)>,
) -> Result<Response> {
    let record = st.service.get(rt, &id).await?;
    let tag = service::etag(&record);
    if let Some(inm) = header_string(&headers, header::IF_NONE_MATCH) {
        if inm.split(',').map(str::trim).any(|t| t == "*" || t == tag) {
            let mut resp = StatusCode::NOT_MODIFIED.into_response();
            if let Ok(v) = HeaderValue::from_str(&tag) {
                resp.headers_mut().insert(header::ETAG, v);
            }
            return Ok(resp);
        }
    }
    let q = list_query(&params)?;
    let projection = super::resource::Projection::parse(rt, q.attributes.as_deref(), q.excluded_attributes.as_deref())?;
    let body = Value::Object(service::render(&st.service.snapshot(), &record, &base, &projection));
    let mut resp = scim_json(StatusCode::OK, &body);
    if let Ok(v) = HeaderValue::from_str(&tag) {
        resp.headers_mut().insert(header::ETAG, v);
    }
    Ok(resp)
}

macro_rules! resource_handlers {
    ($rt:expr, $get:ident, $create:ident, $put:ident, $patch:ident, $delete:ident) => {
        async fn $get(
            State(st): State<ScimState>,
            Base(base): Base,
            headers: HeaderMap,
            Path(id): Path<String>,
            q: std::result::Result<Query<Vec<(String, String)>>, axum::extract::rejection::QueryRejection>,
        ) -> Result<Response> {
            get_one(st, base, headers, $rt, id, query_params(q)?).await
        }
        async fn $create(State(st): State<ScimState>, Base(base): Base, ScimBody(body): ScimBody) -> Result<Response> {
            let record = st.service.create($rt, body).await?;
            Ok(resource_response(&st, &base, StatusCode::CREATED, &record))
        }
        async fn $put(
            State(st): State<ScimState>,
            Base(base): Base,
            headers: HeaderMap,
            Path(id): Path<String>,
            ScimBody(body): ScimBody,
        ) -> Result<Response> {
            let record = st
                .service
                .replace($rt, &id, body, header_string(&headers, header::IF_MATCH))
                .await?;
            Ok(resource_response(&st, &base, StatusCode::OK, &record))
        }
        async fn $patch(
            State(st): State<ScimState>,
            Base(base): Base,
            headers: HeaderMap,
            Path(id): Path<String>,
            ScimBody(body): ScimBody,
        ) -> Result<Response> {
            let record = st
                .service
                .patch($rt, &id, body, header_string(&headers, header::IF_MATCH))
                .await?;
            Ok(resource_response(&st, &base, StatusCode::OK, &record))
        }
        async fn $delete(State(st): State<ScimState>, headers: HeaderMap, Path(id): Path<String>) -> Result<Response> {
            st.service
                .delete($rt, &id, header_string(&headers, header::IF_MATCH))
                .await?;
            Ok(StatusCode::NO_CONTENT.into_response())
        }
    };
}

resource_handlers!(
    ResourceType::User,
    get_user,
    create_user,
    put_user,
    patch_user,
    delete_user
);
resource_handlers!(
    ResourceType::Group,
    get_group,
    create_group,
    put_group,
    patch_group,
    delete_group
);

resource_handlers!(
    ResourceType::Agent,
    get_agent,
    create_agent,
    put_agent,
    patch_agent,
    delete_agent
);

async fn bulk_handler(State(st): State<ScimState>, Base(base): Base, ScimBody(body): ScimBody) -> Result<Response> {
    let (status, out) = bulk::run(&st.service, body, &base).await?;
    Ok(scim_json(status, &out))
}

#[cfg(test)]
mod token_use_tests {
    use super::*;

    #[test]
    fn writes_are_the_changing_methods_but_searches() {
        for (method, path, write) in [
            (Method::POST, "/Users", true),
            (Method::PUT, "/Users/1", true),
            (Method::PATCH, "/Groups/1", true),
            (Method::DELETE, "/Agents/1", true),
            (Method::POST, "/Bulk", true),
            (Method::GET, "/Users", false),
            (Method::POST, "/Users/.search", false),
            (Method::POST, "/scim/v2/.search", false),
            (Method::HEAD, "/Users", false),
        ] {
            assert_eq!(is_write(&method, path), write, "{method} {path}");
        }
    }
}
