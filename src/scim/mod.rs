//! The SCIM 2.0 service provider (RFC 7643 / RFC 7644): schemas, filters, PATCH, IdP quirks,
//! resource operations and HTTP routes. Knows nothing about Kubernetes.

pub mod bulk;
pub mod error;
pub mod filter;
pub mod patch;
pub mod path;
pub mod quirks;
pub mod resource;
pub mod routes;
pub mod schema;
pub mod service;

pub use error::{Error, Result, ScimType};
