//! The identity resource types (SCIM Users, Groups and Agents) as the store, the directory and
//! the SCIM service name them. Their schemas belong to `scim::schema`.

/// The enterprise User extension's schema (RFC 7643 §4.3), whose `manager` and string
/// attributes the directory reads.
pub const ENTERPRISE_USER: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";

/// The resource types we serve.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ResourceType {
    User,
    Group,
    /// An automation or AI agent with owners (the SCIM agent drafts' `/Agents`).
    Agent,
}

impl ResourceType {
    /// Every type, in the order discovery lists them.
    pub const ALL: [ResourceType; 3] = [ResourceType::User, ResourceType::Group, ResourceType::Agent];

    pub fn name(self) -> &'static str {
        match self {
            ResourceType::User => "User",
            ResourceType::Group => "Group",
            ResourceType::Agent => "Agent",
        }
    }
    pub fn endpoint(self) -> &'static str {
        match self {
            ResourceType::User => "Users",
            ResourceType::Group => "Groups",
            ResourceType::Agent => "Agents",
        }
    }
    pub fn from_name(s: &str) -> Option<Self> {
        match s {
            "User" | "Users" => Some(ResourceType::User),
            "Group" | "Groups" => Some(ResourceType::Group),
            "Agent" | "Agents" => Some(ResourceType::Agent),
            _ => None,
        }
    }
}
