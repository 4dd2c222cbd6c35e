//! Audit: the record of every admission decision, written off the hot path in batches.
//! Must not sit on the admission path: handlers hand records to the recorder and move on.

pub mod api;
pub mod chain;
pub mod query;
pub mod recorder;
pub mod replay;
pub mod verify;
pub mod who;

pub use crate::model::DecisionRecord;
