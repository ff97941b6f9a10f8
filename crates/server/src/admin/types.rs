//! The documents of the management API: request and response bodies, as the OpenAPI
//! document describes them.

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// The error body of every failed request, as on `/v2`.
#[derive(Serialize, ToSchema)]
pub(crate) struct Errors {
    pub(crate) errors: Vec<ErrorItem>,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct ErrorItem {
    /// `UNAUTHORIZED`, `DENIED`, `NAME_UNKNOWN`, `UNSUPPORTED`, `TOOMANYREQUESTS`, ...
    pub(crate) code: String,
    pub(crate) message: String,
    pub(crate) detail: Option<serde_json::Value>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewUser {
    pub(crate) name: String,
    /// At least 8 characters.
    pub(crate) password: String,
    /// A system administrator.
    #[serde(default)]
    pub(crate) admin: bool,
}

/// An account just created, and its personal namespace.
#[derive(Serialize, ToSchema)]
pub(crate) struct NewUserCreated {
    #[serde(flatten)]
    pub(crate) user: User,
    /// The personal namespace made for it (private); `null` when a project of the account's
    /// name existed before it, which stays as it was.
    pub(crate) namespace: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct User {
    pub(crate) name: String,
    pub(crate) admin: bool,
    pub(crate) disabled: bool,
    /// Unix seconds.
    pub(crate) created_at: i64,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewPassword {
    /// At least 8 characters.
    pub(crate) password: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewProject {
    pub(crate) name: String,
    /// Anyone, even anonymous, may pull.
    #[serde(default)]
    pub(crate) public: bool,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct Project {
    pub(crate) name: String,
    pub(crate) public: bool,
    /// The account whose personal namespace this is.
    pub(crate) owner: Option<String>,
    /// Unix seconds (absent in the answer to a creation).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) created_at: Option<i64>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ProjectUpdate {
    pub(crate) public: bool,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct ProjectVisibility {
    pub(crate) name: String,
    pub(crate) public: bool,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct Member {
    pub(crate) user: String,
    /// `guest`, `developer`, `maintainer` or `admin`.
    pub(crate) role: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Membership {
    /// `guest` (pull), `developer` (push), `maintainer` (delete), `admin` (manage).
    pub(crate) role: String,
}

#[derive(Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Grant {
    pub(crate) project: String,
    /// A subset of `pull`, `push`, `delete`.
    pub(crate) actions: Vec<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewRobot {
    /// The login becomes `robot$<name>`.
    pub(crate) name: String,
    /// `[{"project": "team", "actions": ["pull", "push"]}]`; the caller must administer
    /// every project named.
    pub(crate) permissions: Vec<Grant>,
    /// Days until the robot stops working; absent: never.
    pub(crate) expires_in_days: Option<u32>,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct CreatedRobot {
    /// `robot$<name>`: the login.
    pub(crate) name: String,
    /// Shown once; stored only hashed.
    pub(crate) secret: String,
    /// Unix seconds.
    pub(crate) expires_at: Option<i64>,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct Robot {
    /// `robot$<name>`.
    pub(crate) name: String,
    pub(crate) permissions: Vec<Grant>,
    /// Unix seconds.
    pub(crate) expires_at: Option<i64>,
    pub(crate) disabled: bool,
    pub(crate) created_at: i64,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RobotUpdate {
    pub(crate) disabled: bool,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct RobotState {
    pub(crate) name: String,
    pub(crate) disabled: bool,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Signup {
    /// Also the personal namespace: a project name, not a reserved one.
    pub(crate) name: String,
    /// At least 8 characters.
    pub(crate) password: String,
    /// Whether the personal namespace is public [default: true, as on Docker Hub].
    pub(crate) public: Option<bool>,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct SignedUp {
    pub(crate) name: String,
    pub(crate) namespace: String,
    pub(crate) public: bool,
}

/// Which events to read; every parameter narrows.
#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct AuditParams {
    /// An account, or `robot$name`.
    pub(crate) actor: Option<String>,
    /// An action (`push`, `delete.tag`, `login.failed`, `member.set`, ...) or a prefix ending
    /// in `.` (`delete.`).
    pub(crate) action: Option<String>,
    /// Required unless the caller is a system administrator.
    pub(crate) project: Option<String>,
    /// Only events at or after these Unix seconds.
    pub(crate) since: Option<i64>,
    /// Only events with a smaller id: the next page (see the `Link` header).
    pub(crate) before: Option<i64>,
    /// At most this many events [default 100, at most 1000].
    pub(crate) limit: Option<u32>,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct AuditEntry {
    pub(crate) id: i64,
    /// Unix seconds.
    pub(crate) at: i64,
    /// The same instant, RFC 3339 UTC.
    pub(crate) time: String,
    /// An account, `robot$name`, or `anonymous`.
    pub(crate) actor: String,
    /// The client's address.
    pub(crate) source: Option<String>,
    pub(crate) action: String,
    pub(crate) project: Option<String>,
    pub(crate) resource: String,
    pub(crate) detail: String,
}

#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct GcRequest {
    /// Report what would go; delete nothing.
    pub(crate) dry_run: bool,
    /// Also collect untagged manifests (not those an index lists or a referrer names).
    pub(crate) delete_untagged: bool,
    /// Content younger than this many seconds is kept [default: `[gc] grace_secs`].
    pub(crate) grace_secs: Option<u64>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Quota {
    /// Bytes the project may hold (each blob and manifest counted once); `null`: no limit.
    pub(crate) quota_bytes: Option<u64>,
}

#[derive(Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct TagPatterns {
    /// Tag patterns (`*` and `?` wildcards, e.g. `v*`, `release-*`) whose tags, once pushed,
    /// cannot be overwritten or deleted. Empty: none.
    pub(crate) patterns: Vec<String>,
}

#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct RetentionRun {
    /// Report what would go; delete nothing.
    pub(crate) dry_run: bool,
}
