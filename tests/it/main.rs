//! One integration-test binary: real listeners on 127.0.0.1:0, real TLS, HTTP/2.

mod admission;
mod audit;
mod cli_docs;
mod crash;
mod ha;
mod interop;
mod manifests;
mod readme;
mod review;
mod scim_api;
mod store;
mod support;
mod tokens_and_certs;
