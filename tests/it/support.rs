//! Test fixtures: an in-process server on loopback with its own data dir, and a client that
//! trusts the generated CA and speaks HTTP/2 like the IdPs' and the API server's clients do.

use reqwest::{Method, StatusCode, Version};
use scimgate::app::{self, Listeners, Server};
use scimgate::cli::ServeArgs;
use scimgate::config::Config;
use serde_json::Value;
use tokio::net::TcpListener;

pub struct TestServer {
    /// Kept alive for the test; its tasks end when it is dropped.
    _server: Server,
    pub dir: tempfile::TempDir,
    pub base: String,
    /// `https://localhost:PORT` of the admission listener.
    pub admission: String,
    pub ops: String,
    pub token: String,
    pub client: reqwest::Client,
}

pub struct Resp {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub version: Version,
    pub body: Value,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
    pub fn scim_type(&self) -> Option<&str> {
        self.body.get("scimType").and_then(Value::as_str)
    }
    pub fn id(&self) -> String {
        self.body["id"].as_str().unwrap_or_default().to_string()
    }
}

pub fn client_for(ca_pem: &[u8]) -> reqwest::Client {
    let ca = reqwest::Certificate::from_pem(ca_pem).expect("CA pem");
    reqwest::Client::builder()
        .add_root_certificate(ca)
        .https_only(true)
        .timeout(std::time::Duration::from_secs(30))
        .build()
        .expect("client")
}

impl TestServer {
    pub async fn start() -> TestServer {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(tweak: impl FnOnce(&mut ServeArgs)) -> TestServer {
        let dir = tempfile::tempdir().expect("tempdir");
        Self::start_in(dir, tweak).await
    }

    pub async fn start_in(dir: tempfile::TempDir, tweak: impl FnOnce(&mut ServeArgs)) -> TestServer {
        let mut args = ServeArgs {
            dev: true,
            data_dir: Some(dir.path().to_path_buf()),
            ..Default::default()
        };
        tweak(&mut args);
        let data_dir = args.data_dir.clone().unwrap_or_else(|| dir.path().to_path_buf());
        let cfg = Config::from_args(&args).expect("config");
        let listeners = Listeners {
            admission: TcpListener::bind("127.0.0.1:0").await.expect("bind"),
            scim: TcpListener::bind("127.0.0.1:0").await.expect("bind"),
            ops: TcpListener::bind("127.0.0.1:0").await.expect("bind"),
        };
        let server = app::start(cfg, listeners).await.expect("start");
        let ca = std::fs::read(data_dir.join("tls/ca.crt")).expect("ca");
        let base = format!("https://localhost:{}/scim/v2", server.scim_addr.port());
        let admission = format!("https://localhost:{}", server.admission_addr.port());
        let ops = format!("http://{}", server.ops_addr);
        let token = server.dev_token.clone().expect("dev token");
        TestServer {
            _server: server,
            dir,
            base,
            admission,
            ops,
            token,
            client: client_for(&ca),
        }
    }

    /// The SCIM listener's port, as text.
    pub fn scim_port(&self) -> String {
        self.base
            .split(':')
            .nth(2)
            .and_then(|p| p.split('/').next())
            .unwrap_or_default()
            .to_string()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn send(&self, rb: reqwest::RequestBuilder) -> Resp {
        let resp = rb.send().await.expect("request");
        let status = resp.status();
        let headers = resp.headers().clone();
        let version = resp.version();
        let bytes = resp.bytes().await.expect("body");
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap_or(Value::String(String::from_utf8_lossy(&bytes).into()))
        };
        Resp {
            status,
            headers,
            version,
            body,
        }
    }

    pub fn authed(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        self.client.request(method, self.url(path)).bearer_auth(&self.token)
    }

    pub async fn call(&self, method: Method, path: &str, body: Option<Value>) -> Resp {
        let mut rb = self.authed(method, path);
        if let Some(b) = body {
            rb = rb.header("content-type", "application/scim+json").body(b.to_string());
        }
        self.send(rb).await
    }

    pub async fn get(&self, path: &str) -> Resp {
        self.call(Method::GET, path, None).await
    }
    pub async fn post(&self, path: &str, body: Value) -> Resp {
        self.call(Method::POST, path, Some(body)).await
    }
    pub async fn put(&self, path: &str, body: Value) -> Resp {
        self.call(Method::PUT, path, Some(body)).await
    }
    pub async fn patch(&self, path: &str, body: Value) -> Resp {
        self.call(Method::PATCH, path, Some(body)).await
    }
    pub async fn delete(&self, path: &str) -> Resp {
        self.call(Method::DELETE, path, None).await
    }

    pub async fn create_user(&self, user_name: &str) -> String {
        let r = self
            .post(
                "/Users",
                serde_json::json!({"schemas": [USER], "userName": user_name, "active": true}),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
        r.id()
    }

    pub async fn create_group(&self, name: &str, members: &[&str]) -> String {
        let m: Vec<Value> = members.iter().map(|m| serde_json::json!({"value": m})).collect();
        let r = self
            .post(
                "/Groups",
                serde_json::json!({"schemas": [GROUP], "displayName": name, "members": m}),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
        r.id()
    }
}

pub const USER: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
pub const GROUP: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
pub const PATCH: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";

pub fn ops(operations: Value) -> Value {
    serde_json::json!({"schemas": [PATCH], "Operations": operations})
}

pub fn enc(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A new, empty database on the test PostgreSQL cluster that `scripts/test.sh` starts (its URL
/// in `SCIMGATE_TEST_POSTGRES`).
pub async fn postgres_db() -> String {
    use sqlx::Connection;
    let base = std::env::var("SCIMGATE_TEST_POSTGRES").expect(
        "SCIMGATE_TEST_POSTGRES is not set: the PostgreSQL tests need the cluster `bash scripts/test.sh` starts \
         (or `scripts/postgres.sh start DIR PORT` and export the URL it prints)",
    );
    let name = format!("t_{}", uuid::Uuid::new_v4().simple());
    let mut admin = sqlx::PgConnection::connect(&base)
        .await
        .expect("connect to the test cluster");
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut admin)
        .await
        .expect("create database");
    let _ = admin.close().await;
    let mut url = url::Url::parse(&base).expect("url");
    url.set_path(&name);
    url.to_string()
}
