//! Accounts, projects, roles and robot accounts: the data behind "who may do what". The rules
//! themselves (which role allows which action) live in the registry crate; this module only
//! stores and finds.

use std::fmt;
use std::str::FromStr;

use async_trait::async_trait;

use crate::Result;

/// A role in a project, weakest first (Harbor's roles).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// Pull.
    Guest,
    /// Pull and push.
    Developer,
    /// Pull, push, delete tags and manifests.
    Maintainer,
    /// Everything in the project, members and settings included.
    Admin,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Guest, Role::Developer, Role::Maintainer, Role::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Guest => "guest",
            Role::Developer => "developer",
            Role::Maintainer => "maintainer",
            Role::Admin => "admin",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("unknown role {0:?}: one of guest, developer, maintainer, admin")]
pub struct UnknownRole(pub String);

impl FromStr for Role {
    type Err = UnknownRole;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| UnknownRole(s.chars().take(50).collect()))
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserRecord {
    /// Given once, never reused: a user deleted and created again under the same name is
    /// another account, and the old one's tokens (which name this id) stay refused.
    pub id: String,
    pub name: String,
    /// argon2id in PHC string form; never the password.
    pub password_hash: String,
    pub system_admin: bool,
    pub disabled: bool,
    /// Unix seconds.
    pub created_at: i64,
    /// Raised whenever the account's tokens must stop (see [`Accounts`]); a token carries the
    /// stamp it was issued under and is refused once it differs.
    pub token_stamp: i64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProjectRecord {
    pub name: String,
    /// Anyone, even anonymous, may pull.
    pub public: bool,
    /// The account whose personal namespace this is.
    pub owner: Option<String>,
    pub created_at: i64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RobotPermission {
    pub project: String,
    /// A subset of `pull`, `push`, `delete`.
    pub actions: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RobotRecord {
    /// As [`UserRecord::id`].
    pub id: String,
    pub name: String,
    pub secret_hash: String,
    pub permissions: Vec<RobotPermission>,
    /// Unix seconds; `None` never expires.
    pub expires_at: Option<i64>,
    pub disabled: bool,
    pub created_at: i64,
    /// As [`UserRecord::token_stamp`].
    pub token_stamp: i64,
}

/// Stores accounts, projects, memberships, robots and the token signing key.
///
/// Token stamps: a user's `token_stamp` goes up, in the same transaction as the change, when
/// its password changes, it is disabled, one of its roles is lowered or removed, or a project
/// it is a member of is deleted; a robot's when it is disabled or a project it has permissions
/// on is deleted. Deleting an account removes its row, and with it the id its tokens name.
#[async_trait]
pub trait Accounts: Send + Sync {
    /// Creates the user and, when given, its personal project (with the user as its admin), in
    /// one transaction. `Conflict` if the name is taken (by a user or, for the personal
    /// project, by a project).
    async fn create_user(&self, user: &UserRecord, personal: Option<&ProjectRecord>) -> Result<()>;
    async fn user(&self, name: &str) -> Result<Option<UserRecord>>;
    async fn users(&self) -> Result<Vec<UserRecord>>;
    async fn count_users(&self) -> Result<u64>;
    async fn set_password(&self, name: &str, password_hash: &str) -> Result<bool>;
    async fn set_user_disabled(&self, name: &str, disabled: bool) -> Result<bool>;
    /// Removes the user and its memberships; its personal project stays, ownerless.
    async fn delete_user(&self, name: &str) -> Result<bool>;

    /// Creates the project; `admin`, when given, becomes its admin member. `Conflict` if it
    /// exists.
    async fn create_project(&self, project: &ProjectRecord, admin: Option<&str>) -> Result<()>;
    async fn project(&self, name: &str) -> Result<Option<ProjectRecord>>;
    async fn projects(&self) -> Result<Vec<ProjectRecord>>;
    async fn set_project_public(&self, name: &str, public: bool) -> Result<bool>;
    async fn delete_project(&self, name: &str) -> Result<bool>;

    /// Adds the member or changes its role. `NotFound` when the project or user is missing.
    async fn set_member(&self, project: &str, user: &str, role: Role) -> Result<()>;
    async fn remove_member(&self, project: &str, user: &str) -> Result<bool>;
    /// Members of a project, by name.
    async fn members(&self, project: &str) -> Result<Vec<(String, Role)>>;
    async fn role(&self, project: &str, user: &str) -> Result<Option<Role>>;

    /// `Conflict` if the name is taken; `NotFound` if a permission names a missing project.
    async fn create_robot(&self, robot: &RobotRecord) -> Result<()>;
    async fn robot(&self, name: &str) -> Result<Option<RobotRecord>>;
    async fn robots(&self) -> Result<Vec<RobotRecord>>;
    async fn set_robot_disabled(&self, name: &str, disabled: bool) -> Result<bool>;
    async fn delete_robot(&self, name: &str) -> Result<bool>;

    /// The token signing key: stores `candidate` if there is none yet and returns the one
    /// stored, so that replicas starting at once agree on one key.
    async fn signing_key(&self, candidate: &[u8]) -> Result<Vec<u8>>;
}
