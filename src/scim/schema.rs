//! The SCIM schemas we publish (RFC 7643 §4 and §8.7): User, the enterprise User extension and
//! Group, as attribute definitions that the rest of `scim/` consults for names, types, case
//! exactness, mutability and `returned`.
//!
//! Everything published here is supported: normalising, filtering, sorting, PATCH and projection all
//! read these definitions, so an attribute is either here and works, or absent and ignored.

use serde_json::{json, Map, Value};
use std::sync::LazyLock;

pub const USER: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
pub const GROUP: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
pub const ENTERPRISE_USER: &str = crate::model::resource::ENTERPRISE_USER;
/// draft-abbey-scim-agent-extension-00 §5.1.4; draft-wzdk-scim-agent-resource-00 uses the same URN.
pub const AGENT: &str = "urn:ietf:params:scim:schemas:core:2.0:Agent";
pub const LIST_RESPONSE: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";
pub const PATCH_OP: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
pub const SEARCH_REQUEST: &str = "urn:ietf:params:scim:api:messages:2.0:SearchRequest";
pub const BULK_REQUEST: &str = "urn:ietf:params:scim:api:messages:2.0:BulkRequest";
pub const BULK_RESPONSE: &str = "urn:ietf:params:scim:api:messages:2.0:BulkResponse";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Type {
    String,
    Boolean,
    Decimal,
    Integer,
    DateTime,
    Binary,
    Reference,
    Complex,
}

impl Type {
    fn as_str(self) -> &'static str {
        match self {
            Type::String => "string",
            Type::Boolean => "boolean",
            Type::Decimal => "decimal",
            Type::Integer => "integer",
            Type::DateTime => "dateTime",
            Type::Binary => "binary",
            Type::Reference => "reference",
            Type::Complex => "complex",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mutability {
    ReadOnly,
    ReadWrite,
    Immutable,
    WriteOnly,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Returned {
    Always,
    Never,
    Default,
    Request,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Uniqueness {
    None,
    Server,
}

#[derive(Debug, Clone)]
pub struct Attribute {
    pub name: &'static str,
    pub ty: Type,
    pub multi: bool,
    pub required: bool,
    pub case_exact: bool,
    pub mutability: Mutability,
    pub returned: Returned,
    pub uniqueness: Uniqueness,
    pub description: &'static str,
    pub canonical: &'static [&'static str],
    pub reference_types: &'static [&'static str],
    pub sub: Vec<Attribute>,
}

impl Attribute {
    fn new(name: &'static str, ty: Type, description: &'static str) -> Self {
        Attribute {
            name,
            ty,
            multi: false,
            required: false,
            case_exact: false,
            mutability: Mutability::ReadWrite,
            returned: Returned::Default,
            uniqueness: Uniqueness::None,
            description,
            canonical: &[],
            reference_types: &[],
            sub: Vec::new(),
        }
    }
    fn multi(mut self) -> Self {
        self.multi = true;
        self
    }
    fn required(mut self) -> Self {
        self.required = true;
        self
    }
    fn case_exact(mut self) -> Self {
        self.case_exact = true;
        self
    }
    fn mutability(mut self, m: Mutability) -> Self {
        self.mutability = m;
        self
    }
    fn returned(mut self, r: Returned) -> Self {
        self.returned = r;
        self
    }
    fn unique(mut self) -> Self {
        self.uniqueness = Uniqueness::Server;
        self
    }
    fn canonical(mut self, c: &'static [&'static str]) -> Self {
        self.canonical = c;
        self
    }
    fn refs(mut self, r: &'static [&'static str]) -> Self {
        self.reference_types = r;
        self
    }
    fn sub(mut self, sub: Vec<Attribute>) -> Self {
        self.sub = sub;
        self
    }

    /// Sub-attribute by case-insensitive name.
    pub fn sub_attr(&self, name: &str) -> Option<&Attribute> {
        self.sub.iter().find(|a| a.name.eq_ignore_ascii_case(name))
    }

    fn to_json(&self) -> Value {
        let mut v = json!({
            "name": self.name,
            "type": self.ty.as_str(),
            "multiValued": self.multi,
            "description": self.description,
            "required": self.required,
            "caseExact": self.case_exact,
            "mutability": match self.mutability {
                Mutability::ReadOnly => "readOnly",
                Mutability::ReadWrite => "readWrite",
                Mutability::Immutable => "immutable",
                Mutability::WriteOnly => "writeOnly",
            },
            "returned": match self.returned {
                Returned::Always => "always",
                Returned::Never => "never",
                Returned::Default => "default",
                Returned::Request => "request",
            },
            "uniqueness": match self.uniqueness {
                Uniqueness::None => "none",
                Uniqueness::Server => "server",
            },
        });
        if let Some(obj) = v.as_object_mut() {
            if !self.canonical.is_empty() {
                obj.insert("canonicalValues".into(), json!(self.canonical));
            }
            if self.ty == Type::Reference {
                obj.insert("referenceTypes".into(), json!(self.reference_types));
            }
            if self.ty == Type::Complex {
                let sub: Vec<Value> = self.sub.iter().map(Attribute::to_json).collect();
                obj.insert("subAttributes".into(), Value::Array(sub));
            }
        }
        v
    }
}

#[derive(Debug, Clone)]
pub struct Schema {
    pub id: &'static str,
    pub name: &'static str,
    pub description: &'static str,
    pub attributes: Vec<Attribute>,
}

impl Schema {
    pub fn attr(&self, name: &str) -> Option<&Attribute> {
        self.attributes.iter().find(|a| a.name.eq_ignore_ascii_case(name))
    }

    pub fn to_json(&self, base: &str) -> Value {
        json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Schema"],
            "id": self.id,
            "name": self.name,
            "description": self.description,
            "attributes": self.attributes.iter().map(Attribute::to_json).collect::<Vec<_>>(),
            "meta": {"resourceType": "Schema", "location": format!("{base}/Schemas/{}", self.id)},
        })
    }
}

pub use crate::model::ResourceType;

/// The SCIM schemas of each resource type.
impl ResourceType {
    pub fn core(self) -> &'static Schema {
        match self {
            ResourceType::User => &USER_SCHEMA,
            ResourceType::Group => &GROUP_SCHEMA,
            ResourceType::Agent => &AGENT_SCHEMA,
        }
    }
    pub fn extensions(self) -> &'static [&'static Schema] {
        static USER_EXT: LazyLock<[&'static Schema; 1]> = LazyLock::new(|| [&*ENTERPRISE_SCHEMA]);
        match self {
            ResourceType::User => &*USER_EXT,
            ResourceType::Group | ResourceType::Agent => &[],
        }
    }

    /// Resolve an attribute name, optionally URN-qualified, to its schema and definition.
    /// Returns `None` for `urn` naming a schema this type doesn't have.
    ///
    /// An Agent's `agentUserName` (draft-wzdk-scim-agent-resource-00's name for it) resolves to
    /// `name` (draft-abbey-scim-agent-extension-00 §5.1.4), the one we store and return, so
    /// bodies, filters, PATCH paths and `attributes=` in either draft's words reach it.
    pub fn resolve(self, urn: Option<&str>, name: &str) -> Option<(Option<&'static Schema>, &'static Attribute)> {
        let name = match self {
            ResourceType::Agent if name.eq_ignore_ascii_case(AGENT_USER_NAME) => "name",
            _ => name,
        };
        let schemas = std::iter::once(self.core()).chain(self.extensions().iter().copied());
        match urn {
            Some(urn) => {
                let schema = schemas.into_iter().find(|s| s.id.eq_ignore_ascii_case(urn))?;
                if let Some(a) = schema.attr(name) {
                    return Some((Some(schema), a));
                }
                // Common attributes may be qualified with the core URN too.
                if std::ptr::eq(schema, self.core()) {
                    return COMMON.attr(name).map(|a| (None, a));
                }
                None
            }
            None => {
                if let Some(a) = COMMON.attr(name) {
                    return Some((None, a));
                }
                self.core().attr(name).map(|a| (Some(self.core()), a))
            }
        }
    }

    pub fn resource_type_json(self, base: &str) -> Value {
        let ext: Vec<Value> = self
            .extensions()
            .iter()
            .map(|s| json!({"schema": s.id, "required": false}))
            .collect();
        let mut v = json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ResourceType"],
            "id": self.name(),
            "name": self.name(),
            "endpoint": format!("/{}", self.endpoint()),
            "description": match self {
                ResourceType::User => "User Account",
                ResourceType::Group => "Group",
                // draft-abbey-scim-agent-extension-00 §5.1.1.
                ResourceType::Agent => "Agent identities",
            },
            "schema": self.core().id,
            "meta": {"resourceType": "ResourceType", "location": format!("{base}/ResourceTypes/{}", self.name())},
        });
        if !ext.is_empty() {
            if let Some(o) = v.as_object_mut() {
                o.insert("schemaExtensions".into(), Value::Array(ext));
            }
        }
        v
    }
}

/// Find a schema we publish by id.
pub fn by_id(id: &str) -> Option<&'static Schema> {
    all().into_iter().find(|s| s.id == id)
}

pub fn all() -> [&'static Schema; 4] {
    [&*USER_SCHEMA, &*ENTERPRISE_SCHEMA, &*GROUP_SCHEMA, &*AGENT_SCHEMA]
}

/// draft-wzdk-scim-agent-resource-00's required unique name of an Agent; accepted as `name`.
pub const AGENT_USER_NAME: &str = "agentUserName";

/// `id`, `externalId` and `meta`: on every resource, defined by RFC 7643 §3.1 outside any schema.
pub static COMMON: LazyLock<Schema> = LazyLock::new(|| Schema {
    id: "common",
    name: "Common",
    description: "Attributes every resource carries",
    attributes: vec![
        Attribute::new("id", Type::String, "Identifier issued by the service provider.")
            .case_exact()
            .mutability(Mutability::ReadOnly)
            .returned(Returned::Always)
            .unique(),
        Attribute::new(
            "externalId",
            Type::String,
            "Identifier issued by the provisioning client.",
        )
        .case_exact(),
        Attribute::new("meta", Type::Complex, "Resource metadata.")
            .mutability(Mutability::ReadOnly)
            .sub(vec![
                Attribute::new("resourceType", Type::String, "Name of the resource type.")
                    .case_exact()
                    .mutability(Mutability::ReadOnly),
                Attribute::new("created", Type::DateTime, "When the resource was added.")
                    .mutability(Mutability::ReadOnly),
                Attribute::new("lastModified", Type::DateTime, "When the resource was last changed.")
                    .mutability(Mutability::ReadOnly),
                Attribute::new("location", Type::Reference, "URI of the resource.")
                    .case_exact()
                    .mutability(Mutability::ReadOnly)
                    .refs(&["uri"]),
                Attribute::new("version", Type::String, "Entity tag of the current version.")
                    .case_exact()
                    .mutability(Mutability::ReadOnly),
            ]),
    ],
});

fn multi_complex(
    name: &'static str,
    description: &'static str,
    value_type: Type,
    kinds: &'static [&'static str],
) -> Attribute {
    Attribute::new(name, Type::Complex, description).multi().sub(vec![
        Attribute::new("value", value_type, "The value."),
        Attribute::new("display", Type::String, "A human-readable label."),
        Attribute::new("type", Type::String, "Its function, e.g. 'work' or 'home'.").canonical(kinds),
        Attribute::new("primary", Type::Boolean, "Whether this is the preferred value."),
    ])
}

pub static USER_SCHEMA: LazyLock<Schema> = LazyLock::new(|| Schema {
    id: USER,
    name: "User",
    description: "User Account",
    attributes: vec![
        Attribute::new(
            "userName",
            Type::String,
            "Unique login name of the user; compared case-insensitively.",
        )
        .required()
        .unique(),
        Attribute::new("name", Type::Complex, "The parts of the user's name.").sub(vec![
            Attribute::new("formatted", Type::String, "The full name, ready for display."),
            Attribute::new("familyName", Type::String, "Family name."),
            Attribute::new("givenName", Type::String, "Given name."),
            Attribute::new("middleName", Type::String, "Middle name."),
            Attribute::new("honorificPrefix", Type::String, "Title before the name."),
            Attribute::new("honorificSuffix", Type::String, "Suffix after the name."),
        ]),
        Attribute::new("displayName", Type::String, "Name suitable for display."),
        Attribute::new("nickName", Type::String, "Casual name."),
        Attribute::new("profileUrl", Type::Reference, "URL of the user's profile.").refs(&["external"]),
        Attribute::new("title", Type::String, "Job title."),
        Attribute::new(
            "userType",
            Type::String,
            "Relationship to the organisation, e.g. 'Employee'.",
        ),
        Attribute::new(
            "preferredLanguage",
            Type::String,
            "Preferred language (RFC 7231 Accept-Language).",
        ),
        Attribute::new("locale", Type::String, "Locale for localising values."),
        Attribute::new("timezone", Type::String, "Time zone in IANA database form."),
        Attribute::new(
            "active",
            Type::Boolean,
            "Whether the account may be used; false denies admission.",
        ),
        Attribute::new(
            "password",
            Type::String,
            "Accepted for compatibility; never stored, never returned.",
        )
        .mutability(Mutability::WriteOnly)
        .returned(Returned::Never),
        multi_complex("emails", "Email addresses.", Type::String, &["work", "home", "other"]),
        multi_complex(
            "phoneNumbers",
            "Phone numbers.",
            Type::String,
            &["work", "home", "mobile", "fax", "pager", "other"],
        ),
        multi_complex(
            "ims",
            "Instant messaging addresses.",
            Type::String,
            &["aim", "gtalk", "icq", "xmpp", "msn", "skype", "qq", "yahoo"],
        ),
        multi_complex("photos", "URLs of photos.", Type::Reference, &["photo", "thumbnail"]).sub(vec![
            Attribute::new("value", Type::Reference, "URL of the image.").refs(&["external"]),
            Attribute::new("display", Type::String, "A human-readable label."),
            Attribute::new("type", Type::String, "'photo' or 'thumbnail'.").canonical(&["photo", "thumbnail"]),
            Attribute::new("primary", Type::Boolean, "Whether this is the preferred photo."),
        ]),
        Attribute::new("addresses", Type::Complex, "Physical mailing addresses.")
            .multi()
            .sub(vec![
                Attribute::new("formatted", Type::String, "The full address, ready for display."),
                Attribute::new("streetAddress", Type::String, "Street and house number."),
                Attribute::new("locality", Type::String, "City or locality."),
                Attribute::new("region", Type::String, "State or region."),
                Attribute::new("postalCode", Type::String, "Postal code."),
                Attribute::new("country", Type::String, "Country (ISO 3166-1 alpha-2)."),
                Attribute::new("type", Type::String, "'work', 'home' or 'other'.")
                    .canonical(&["work", "home", "other"]),
                Attribute::new("primary", Type::Boolean, "Whether this is the preferred address."),
            ]),
        Attribute::new(
            "groups",
            Type::Complex,
            "Groups the user belongs to, directly or through nested groups; maintained by the server.",
        )
        .multi()
        .mutability(Mutability::ReadOnly)
        .sub(vec![
            Attribute::new("value", Type::String, "Group id.").mutability(Mutability::ReadOnly),
            Attribute::new("$ref", Type::Reference, "URI of the group.")
                .refs(&["User", "Group"])
                .mutability(Mutability::ReadOnly),
            Attribute::new("display", Type::String, "Group displayName.").mutability(Mutability::ReadOnly),
            Attribute::new("type", Type::String, "'direct' or 'indirect'.")
                .canonical(&["direct", "indirect"])
                .mutability(Mutability::ReadOnly),
        ]),
        multi_complex("entitlements", "Entitlements of the user.", Type::String, &[]),
        multi_complex("roles", "Roles of the user.", Type::String, &[]),
        multi_complex(
            "x509Certificates",
            "Certificates of the user (DER, base64).",
            Type::Binary,
            &[],
        ),
    ],
});

pub static ENTERPRISE_SCHEMA: LazyLock<Schema> = LazyLock::new(|| Schema {
    id: ENTERPRISE_USER,
    name: "EnterpriseUser",
    description: "Enterprise User",
    attributes: vec![
        Attribute::new(
            "employeeNumber",
            Type::String,
            "Identifier assigned by the organisation.",
        ),
        Attribute::new("costCenter", Type::String, "Cost center."),
        Attribute::new("organization", Type::String, "Organisation."),
        Attribute::new("division", Type::String, "Division."),
        Attribute::new("department", Type::String, "Department."),
        Attribute::new("manager", Type::Complex, "The user's manager.").sub(vec![
            Attribute::new("value", Type::String, "id of the manager's User resource."),
            Attribute::new("$ref", Type::Reference, "URI of the manager's User resource.").refs(&["User"]),
            Attribute::new("displayName", Type::String, "Manager's display name.").mutability(Mutability::ReadOnly),
        ]),
    ],
});

pub static GROUP_SCHEMA: LazyLock<Schema> = LazyLock::new(|| Schema {
    id: GROUP,
    name: "Group",
    description: "Group",
    attributes: vec![
        Attribute::new(
            "displayName",
            Type::String,
            "Name of the group; unique, compared case-insensitively; what policies name.",
        )
        .required()
        .unique(),
        Attribute::new(
            "members",
            Type::Complex,
            "Users, agents and groups in this group; groups nest.",
        )
        .multi()
        .sub(vec![
            Attribute::new("value", Type::String, "id of the member resource.")
                .case_exact()
                .mutability(Mutability::Immutable),
            Attribute::new("$ref", Type::Reference, "URI of the member resource.")
                .refs(&["User", "Group", "Agent"])
                .mutability(Mutability::Immutable),
            Attribute::new("display", Type::String, "Name of the member, as the client sent it."),
            Attribute::new("type", Type::String, "'User', 'Group' or 'Agent'; set by the server.")
                .canonical(&["User", "Group", "Agent"])
                .mutability(Mutability::Immutable),
        ]),
    ],
});

/// The Agent resource (`/Agents`) of draft-abbey-scim-agent-extension-00 §5.1.4 (prose) and §6.1
/// (schema JSON), which draft-wzdk-scim-agent-resource-00 shares the URN and endpoint of.
///
/// Where the two drafts differ, both shapes are accepted on input and one is stored and returned
/// (see [`crate::scim::resource::agent_aliases`]): abbey's `name` (wzdk's `agentUserName` is taken
/// as it), abbey's `protocols[].specificationUrl` (its §6.1 typo `specifiationUrl` is taken as it).
/// wzdk's `displayName` and `description` (in abbey's prose, missing from its §6.1) are here;
/// wzdk makes `displayName` and `active` required, abbey does not: optional, so abbey's minimal
/// agent (§5.1.4.1.1) is valid.
///
/// Departures from abbey-00 §6.1, each where its prose (§5.1.4) says otherwise:
/// - `owners`, `subject`, `parent`, `protocols` and `applications` are readWrite: §6.1 marks them
///   readOnly, but §5.1.4 has the client set them (`subject`: "clients may specify when
///   provisioning an agent"; `owners` "defines the User or Group objects that are owners"; `parent`
///   "defines the parent Agent"; `protocols` "informs service providers"), and §5.1.4.1.2's full
///   agent sends them. An IdP must be able to provision who answers for an agent.
/// - `owners` gains the `type` sub-attribute ('User' or 'Group', set by the server), as Group
///   `members` have it; §6.1 has none, though its `$ref` names both types.
/// - `subject` is caseExact: it is matched against a token's `sub` (OIDC Core §2: case-sensitive)
///   and a Kubernetes username, both compared exactly; §6.1 says caseExact false.
/// - `applications` gains `type`, which §5.1.4.1.2 sends ("Web"), and its `$ref` is an `external`
///   reference (§6.1: "AgenticApplication", a type this server does not host); `groups.$ref` refers to Groups
///   only (§6.1 copied "User" from RFC 7643). `protocols[].type` carries the prose's canonical
///   values; `specificationUrl` is a reference.
pub static AGENT_SCHEMA: LazyLock<Schema> = LazyLock::new(|| {
    Schema {
    id: AGENT,
    name: "Agent",
    description: "An automation or AI agent, accountable to its owners",
    attributes: vec![
        Attribute::new(
            "name",
            Type::String,
            "Unique name of the agent, compared case-insensitively (draft-wzdk-scim-agent-resource-00's \
             'agentUserName' is accepted as this attribute). REQUIRED.",
        )
        .required()
        .unique(),
        Attribute::new("displayName", Type::String, "Name suitable for display; 'name' when unassigned."),
        Attribute::new("description", Type::String, "What the agent is for."),
        Attribute::new(
            "agentType",
            Type::String,
            "Classifies like agents, e.g. 'Assistant', 'Researcher', 'Chat bot', 'Unknown'; any value may be used.",
        ),
        Attribute::new(
            "active",
            Type::Boolean,
            "Whether the agent may act; false (or every owner gone or deactivated) denies admission. Absent means true.",
        ),
        Attribute::new(
            "subject",
            Type::String,
            "What the agent signs in as: the 'sub' of its inbound tokens, or the Kubernetes username it is \
             bound to; compared exactly. Set by the client when provisioning (abbey-00 §5.1.4).",
        )
        .case_exact(),
        Attribute::new(
            "owners",
            Type::Complex,
            "The Users or Groups accountable for the agent; it acts only within what an active owner may do.",
        )
        .multi()
        .sub(vec![
            Attribute::new("value", Type::String, "id of the owning User or Group.")
                .case_exact()
                .mutability(Mutability::Immutable),
            Attribute::new("$ref", Type::Reference, "URI of the owning User or Group; computed by the server.")
                .refs(&["User", "Group"])
                .mutability(Mutability::Immutable),
            Attribute::new("display", Type::String, "Name of the owner, as the client sent it."),
            Attribute::new("type", Type::String, "'User' or 'Group'; set by the server.")
                .canonical(&["User", "Group"])
                .mutability(Mutability::Immutable),
        ]),
        Attribute::new(
            "parent",
            Type::Complex,
            "The parent Agent in a hierarchy of agents.",
        )
        .sub(vec![
            Attribute::new("value", Type::String, "id of the parent Agent.").case_exact(),
            Attribute::new("$ref", Type::Reference, "URI of the parent Agent; computed by the server.")
                .refs(&["Agent"]),
            Attribute::new("display", Type::String, "Name of the parent Agent, as the client sent it."),
        ]),
        Attribute::new(
            "groups",
            Type::Complex,
            "Groups the agent belongs to, directly or through nested groups; maintained by the server.",
        )
        .multi()
        .mutability(Mutability::ReadOnly)
        .sub(vec![
            Attribute::new("value", Type::String, "Group id.").mutability(Mutability::ReadOnly),
            Attribute::new("$ref", Type::Reference, "URI of the group.")
                .refs(&["Group"])
                .mutability(Mutability::ReadOnly),
            Attribute::new("display", Type::String, "Group displayName.").mutability(Mutability::ReadOnly),
            Attribute::new("type", Type::String, "'direct' or 'indirect'.")
                .canonical(&["direct", "indirect"])
                .mutability(Mutability::ReadOnly),
        ]),
        multi_complex("entitlements", "Entitlements of the agent.", Type::String, &[]),
        multi_complex("roles", "Roles the agent assumes.", Type::String, &[]),
        multi_complex(
            "x509Certificates",
            "Certificates of the agent (DER, base64).",
            Type::Binary,
            &[],
        ),
        Attribute::new(
            "applications",
            Type::Complex,
            "Agentic applications the agent shares a trust boundary with, as the client listed them \
             (this server hosts no /AgenticApplications).",
        )
        .multi()
        .sub(vec![
            Attribute::new("value", Type::String, "id of the agentic application."),
            // §6.1 says ["AgenticApplication"]; we host no such type, so from here it is external.
            Attribute::new("$ref", Type::Reference, "URI of the agentic application.").refs(&["external"]),
            Attribute::new("display", Type::String, "Name of the application."),
            Attribute::new("type", Type::String, "Kind of application, e.g. 'Web'."),
        ]),
        Attribute::new(
            "protocols",
            Type::Complex,
            "Protocols the agent can be reached by; none means only through its application.",
        )
        .multi()
        .sub(vec![
            Attribute::new("type", Type::String, "The protocol.").canonical(&["A2A", "OpenAPI", "MCP-Server"]),
            Attribute::new(
                "specificationUrl",
                Type::Reference,
                "URL of the agent's document for that protocol (e.g. an A2A agent card).",
            )
            .case_exact()
            .refs(&["external"]),
        ]),
    ],
}
});

/// Attribute lookup used by filters and PATCH paths: schema-qualified or plain, case-insensitive.
pub fn schemas_json(base: &str) -> Vec<Value> {
    all().iter().map(|s| s.to_json(base)).collect()
}

/// Case-insensitive lookup of a key in a JSON object, returning the key as stored.
pub fn find_key<'a>(obj: &'a Map<String, Value>, name: &str) -> Option<&'a String> {
    obj.keys().find(|k| k.eq_ignore_ascii_case(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_plain_qualified_and_common_names() {
        let (s, a) = ResourceType::User.resolve(None, "USERNAME").expect("userName");
        assert_eq!(a.name, "userName");
        assert_eq!(s.map(|s| s.id), Some(USER));
        let (s, a) = ResourceType::User
            .resolve(Some(ENTERPRISE_USER), "employeenumber")
            .expect("employeeNumber");
        assert_eq!((s.map(|s| s.id), a.name), (Some(ENTERPRISE_USER), "employeeNumber"));
        assert_eq!(
            ResourceType::User.resolve(Some(USER), "id").map(|(_, a)| a.name),
            Some("id")
        );
        assert!(ResourceType::Group
            .resolve(Some(ENTERPRISE_USER), "department")
            .is_none());
        assert!(ResourceType::Group.resolve(None, "userName").is_none());
    }

    #[test]
    fn agent_schema_takes_both_drafts_names() {
        let (s, a) = ResourceType::Agent.resolve(None, "agentUserName").expect("alias");
        assert_eq!((s.map(|s| s.id), a.name), (Some(AGENT), "name"));
        let (_, a) = ResourceType::Agent.resolve(Some(AGENT), "OWNERS").expect("owners");
        assert_eq!(a.sub_attr("type").map(|t| t.canonical), Some(&["User", "Group"][..]));
        assert!(ResourceType::User.resolve(None, "agentUserName").is_none());
        assert_eq!(by_id(AGENT).map(|s| s.name), Some("Agent"));
        let rt = ResourceType::Agent.resource_type_json("https://x/scim/v2");
        assert_eq!(
            (rt["endpoint"].as_str(), rt["schema"].as_str()),
            (Some("/Agents"), Some(AGENT))
        );
        // Members may be agents.
        let members = GROUP_SCHEMA.attr("members").expect("members");
        assert!(members.sub_attr("type").is_some_and(|t| t.canonical.contains(&"Agent")));
    }

    #[test]
    fn published_schemas_carry_every_subattribute() {
        let users = USER_SCHEMA.to_json("https://x/scim/v2");
        let emails = users["attributes"]
            .as_array()
            .and_then(|a| a.iter().find(|a| a["name"] == "emails"))
            .expect("emails");
        assert_eq!(emails["subAttributes"].as_array().map(Vec::len), Some(4));
        assert_eq!(users["meta"]["location"], format!("https://x/scim/v2/Schemas/{USER}"));
    }
}
