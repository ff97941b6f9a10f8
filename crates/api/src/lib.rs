//! The management API's documents: the request and response bodies of `/api/v1/...`, defined
//! once for the server (which derives their OpenAPI schemas, feature `openapi`) and the typed
//! client `berth admin` uses, and the API's paths with every segment escaped ([`paths`]).

use serde::{Deserialize, Serialize};

/// The error body of every failed request, as on `/v2`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Errors {
    pub errors: Vec<ErrorItem>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorItem {
    /// `UNAUTHORIZED`, `DENIED`, `NAME_UNKNOWN`, `UNSUPPORTED`, `TOOMANYREQUESTS`, ...
    pub code: String,
    pub message: String,
    pub detail: Option<serde_json::Value>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct NewUser {
    pub name: String,
    /// At least 8 characters.
    pub password: String,
    /// A system administrator.
    #[serde(default)]
    pub admin: bool,
}

/// An account just created, and its personal namespace.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NewUserCreated {
    #[serde(flatten)]
    pub user: User,
    /// The personal namespace made for it (private); `null` when a project of the account's
    /// name existed before it, which stays as it was.
    pub namespace: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct User {
    pub name: String,
    pub admin: bool,
    pub disabled: bool,
    /// Unix seconds.
    pub created_at: i64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct NewPassword {
    /// At least 8 characters.
    pub password: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct NewProject {
    pub name: String,
    /// Anyone, even anonymous, may pull.
    #[serde(default)]
    pub public: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Project {
    pub name: String,
    pub public: bool,
    /// The account whose personal namespace this is.
    pub owner: Option<String>,
    /// Unix seconds (absent in the answer to a creation).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created_at: Option<i64>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ProjectUpdate {
    pub public: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ProjectVisibility {
    pub name: String,
    pub public: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Member {
    pub user: String,
    /// `guest`, `developer`, `maintainer` or `admin`.
    pub role: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Membership {
    /// `guest` (pull), `developer` (push), `maintainer` (delete), `admin` (manage).
    pub role: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Grant {
    pub project: String,
    /// A subset of `pull`, `push`, `delete`.
    pub actions: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct NewRobot {
    /// The login becomes `robot$<name>`.
    pub name: String,
    /// `[{"project": "team", "actions": ["pull", "push"]}]`; the caller must administer
    /// every project named.
    pub permissions: Vec<Grant>,
    /// Days until the robot stops working; absent: never.
    pub expires_in_days: Option<u32>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CreatedRobot {
    /// `robot$<name>`: the login.
    pub name: String,
    /// Shown once; stored only hashed.
    pub secret: String,
    /// Unix seconds.
    pub expires_at: Option<i64>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Robot {
    /// `robot$<name>`.
    pub name: String,
    pub permissions: Vec<Grant>,
    /// Unix seconds.
    pub expires_at: Option<i64>,
    pub disabled: bool,
    pub created_at: i64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct RobotUpdate {
    pub disabled: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RobotState {
    pub name: String,
    pub disabled: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Signup {
    /// Also the personal namespace: a project name, not a reserved one.
    pub name: String,
    /// At least 8 characters.
    pub password: String,
    /// Whether the personal namespace is public [default: true, as on Docker Hub].
    pub public: Option<bool>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SignedUp {
    pub name: String,
    pub namespace: String,
    pub public: bool,
}

/// Which events to read; every parameter narrows.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams), into_params(parameter_in = Query))]
#[serde(deny_unknown_fields)]
pub struct AuditParams {
    /// An account, or `robot$name`.
    pub actor: Option<String>,
    /// An action (`push`, `delete.tag`, `login.failed`, `member.set`, ...) or a prefix ending
    /// in `.` (`delete.`).
    pub action: Option<String>,
    /// Required unless the caller is a system administrator.
    pub project: Option<String>,
    /// Only events at or after these Unix seconds.
    pub since: Option<i64>,
    /// Only events with a smaller id: the next page (see the `Link` header).
    pub before: Option<i64>,
    /// At most this many events [default 100, at most 1000].
    pub limit: Option<u32>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AuditEntry {
    pub id: i64,
    /// Unix seconds.
    pub at: i64,
    /// The same instant, RFC 3339 UTC.
    pub time: String,
    /// An account, `robot$name`, or `anonymous`.
    pub actor: String,
    /// The client's address.
    pub source: Option<String>,
    pub action: String,
    pub project: Option<String>,
    pub resource: String,
    pub detail: String,
}

#[derive(Clone, Debug, PartialEq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields, default)]
pub struct GcRequest {
    /// Report what would go; delete nothing.
    pub dry_run: bool,
    /// Also collect untagged manifests (not those an index lists or a referrer names).
    pub delete_untagged: bool,
    /// Content younger than this many seconds is kept [default: `[gc] grace_secs`].
    pub grace_secs: Option<u64>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Quota {
    /// Bytes the project may hold (each blob and manifest counted once); `null`: no limit.
    pub quota_bytes: Option<u64>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct TagPatterns {
    /// Tag patterns (`*` and `?` wildcards, e.g. `v*`, `release-*`) whose tags, once pushed,
    /// cannot be overwritten or deleted. Empty: none.
    pub patterns: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields, default)]
pub struct RetentionRun {
    /// Report what would go; delete nothing.
    pub dry_run: bool,
}

/// The management API's paths. Names are escaped as path segments, so a name can never reach
/// another route (`a/b`, `..`, `?x`).
pub mod paths {
    use percent_encoding::{AsciiSet, CONTROLS, utf8_percent_encode};

    /// Everything but unreserved characters (RFC 3986 2.3) is escaped in a segment.
    const SEGMENT: &AsciiSet = &CONTROLS
        .add(b' ')
        .add(b'"')
        .add(b'#')
        .add(b'$')
        .add(b'%')
        .add(b'&')
        .add(b'\'')
        .add(b'+')
        .add(b',')
        .add(b'/')
        .add(b':')
        .add(b';')
        .add(b'<')
        .add(b'=')
        .add(b'>')
        .add(b'?')
        .add(b'@')
        .add(b'[')
        .add(b'\\')
        .add(b']')
        .add(b'^')
        .add(b'`')
        .add(b'{')
        .add(b'|')
        .add(b'}');

    fn seg(name: &str) -> String {
        let escaped = utf8_percent_encode(name, SEGMENT).to_string();
        // `.` and `..` alone are path syntax, not names.
        match escaped.as_str() {
            "." => "%2E".into(),
            ".." => "%2E%2E".into(),
            _ => escaped,
        }
    }

    pub const USERS: &str = "/api/v1/users";
    pub const PROJECTS: &str = "/api/v1/projects";
    pub const ROBOTS: &str = "/api/v1/robots";
    pub const AUDIT: &str = "/api/v1/audit";
    pub const GC: &str = "/api/v1/gc";
    pub const SIGNUP: &str = "/api/v1/signup";

    pub fn user(name: &str) -> String {
        format!("{USERS}/{}", seg(name))
    }

    pub fn user_password(name: &str) -> String {
        format!("{}/password", user(name))
    }

    pub fn project(name: &str) -> String {
        format!("{PROJECTS}/{}", seg(name))
    }

    pub fn members(project: &str) -> String {
        format!("{}/members", self::project(project))
    }

    pub fn member(project: &str, user: &str) -> String {
        format!("{}/{}", members(project), seg(user))
    }

    pub fn usage(project: &str) -> String {
        format!("{}/usage", self::project(project))
    }

    pub fn quota(project: &str) -> String {
        format!("{}/quota", self::project(project))
    }

    pub fn immutable_tags(project: &str) -> String {
        format!("{}/immutable-tags", self::project(project))
    }

    pub fn retention(project: &str) -> String {
        format!("{}/retention", self::project(project))
    }

    pub fn retention_run(project: &str) -> String {
        format!("{}/run", retention(project))
    }

    pub fn robot(name: &str) -> String {
        format!("{ROBOTS}/{}", seg(name))
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn names_are_one_escaped_segment() {
            assert_eq!(user("bob"), "/api/v1/users/bob");
            assert_eq!(robot("robot$ci"), "/api/v1/robots/robot%24ci");
            assert_eq!(member("team", "a/b"), "/api/v1/projects/team/members/a%2Fb");
            assert_eq!(project(".."), "/api/v1/projects/%2E%2E");
            assert_eq!(user_password("x?y#z"), "/api/v1/users/x%3Fy%23z/password");
            assert_eq!(
                retention_run("my-team.1_x"),
                "/api/v1/projects/my-team.1_x/retention/run"
            );
            assert_eq!(project("café"), "/api/v1/projects/caf%C3%A9");
        }
    }
}
