//! The identity resource types (SCIM Users and Groups) as the store, the directory and the SCIM
//! service name them. Their schemas belong to `scim::schema`.

/// The resource types we serve.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ResourceType {
    User,
    Group,
}

impl ResourceType {
    pub fn name(self) -> &'static str {
        match self {
            ResourceType::User => "User",
            ResourceType::Group => "Group",
        }
    }
    pub fn endpoint(self) -> &'static str {
        match self {
            ResourceType::User => "Users",
            ResourceType::Group => "Groups",
        }
    }
    pub fn from_name(s: &str) -> Option<Self> {
        match s {
            "User" | "Users" => Some(ResourceType::User),
            "Group" | "Groups" => Some(ResourceType::Group),
            _ => None,
        }
    }
}
