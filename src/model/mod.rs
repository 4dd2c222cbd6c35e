//! The data every layer shares and none owns: the identity resource types, the decision record
//! and its query, and the clock. Lives below `scim`, `store`, `directory` and `audit`, so each can
//! use it without importing another that imports it back. Holds data and plain helpers only: no
//! I/O, no protocol.

pub mod clock;
pub mod decision;
pub mod name;
pub mod resource;

pub use decision::{ChainMark, DecisionQuery, DecisionRecord, Link};
pub use resource::ResourceType;
