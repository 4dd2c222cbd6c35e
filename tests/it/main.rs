//! One integration-test binary: real listeners on 127.0.0.1:0, real TLS, HTTP/2.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test, benchmark and example code: a failed assumption is a failed run"
)]

mod access;
mod access_bench;
mod actors;
mod admission;
mod agents;
mod apiserver;
mod audit;
mod caller;
mod chain;
mod cli_docs;
mod console;
mod crash;
mod custody;
mod deletes;
mod doctor;
mod ha;
mod hardening;
mod hostile;
mod interop;
mod kube_face;
mod labels;
mod lifecycle;
mod lookalike;
mod manifests;
mod monitoring;
mod offboarding;
mod owner_bench;
mod production;
mod rbac;
mod readme;
mod reports;
mod reports_face;
mod review;
mod review2;
mod scim_agents;
mod scim_api;
mod scim_client;
mod store;
mod support;
mod sweep_bench;
mod tokens_and_certs;
