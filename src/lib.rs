//! scimgate: identity providers push users and groups in over SCIM 2.0; the Kubernetes API
//! server asks us about Argo Workflows and Tekton runs; we answer from the IdP's current truth.
//! See DESIGN.md in the shared folder for the architecture and the interface contract.

pub mod access;
pub mod admission;
pub mod app;
pub mod audit;
pub mod cli;
pub mod cluster;
pub mod cmd;
pub mod config;
pub mod console;
pub mod directory;
pub mod doctor;
pub mod follower;
pub mod freshness;
pub mod identity;
pub mod listener;
pub mod metrics;
pub mod model;
pub mod offboarding;
pub mod ops;
pub mod policy;
pub mod reports;
pub mod scim;
pub mod stamp;
pub mod store;
pub mod telemetry;
pub mod tls;
pub mod token;
pub mod writer;
