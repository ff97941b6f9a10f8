//! The access matrix: for every role, every action, on a public and on a private project, what
//! the registry answers. [`TABLE`] is the specification, written once; one server runs it all,
//! each row over real HTTP and twice, once per way a client carries credentials:
//!
//! - **token**: the Docker token flow. `GET /auth/token` with the role's Basic credentials (none
//!   for anonymous) and the scopes the action needs, then the token as `Bearer`. Tokens grant
//!   the intersection of what was asked and what is allowed, so on `/v2` every refusal is a 401
//!   `UNAUTHORIZED` challenge for the missing scope marked `error="insufficient_scope"`, never
//!   a 403.
//! - **basic**: Basic credentials on every request (anonymous sends none). A refused account
//!   gets 403 `DENIED`; anonymous gets the 401 challenge naming the scope.
//!
//! The management API decides by the account behind either kind of credential, so its
//! outcomes are the same for both (the token asked for the management scope; robots never
//! get it, and are refused there however they sign in).
//!
//! The projects: `pub` (public) and `priv` (private), each holding `<project>/app:v1`; the
//! members of both are `guest`, `developer`, `maintainer` and `owner` (admin), and five robot
//! accounts hold one set of actions on both. `vault` is private with no member but the system
//! administrator; `outsider` administers `other` and belongs to neither `pub` nor `priv`.

use std::collections::HashMap;

use berth_meta::{RobotPermission, Role};
use berth_registry::Principal;
use futures_util::StreamExt as _;
use reqwest::{Method, Response, StatusCode};
use serde_json::{Value, json};

use crate::common::*;

use Action::*;
use Expect::*;
use On::*;
use Who::*;

/// Who asks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Who {
    /// No credentials at all.
    Anonymous,
    /// Members of `pub` and `priv` with that role.
    Guest,
    Developer,
    Maintainer,
    ProjectAdmin,
    /// Robot accounts granted these actions on `pub` and `priv`.
    RobotPull,
    RobotPush,
    RobotPullPush,
    RobotDelete,
    RobotPullPushDelete,
    /// The admin of another project, `other`; no member of `pub` or `priv`.
    OtherProjectAdmin,
    /// `admin`, the system administrator, no member of any project.
    SystemAdmin,
}

const EVERYONE: [Who; 12] = [
    Anonymous,
    Guest,
    Developer,
    Maintainer,
    ProjectAdmin,
    RobotPull,
    RobotPush,
    RobotPullPush,
    RobotDelete,
    RobotPullPushDelete,
    OtherProjectAdmin,
    SystemAdmin,
];

/// What is tried. `<repo>` is `pub/app` or `priv/app`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Action {
    /// `GET /v2/<repo>/manifests/v1`, then its layer: the bytes as pushed.
    Pull,
    /// Two blobs (`POST ?digest=`), then a manifest under a new tag.
    Push,
    /// `POST /v2/<repo>/blobs/uploads/?mount=<d>&from=priv/base`: a layer of the private
    /// project's other repository.
    MountFromPriv,
    /// The same `from=vault/src`, a private project none of the roles belongs to.
    MountFromVault,
    /// `DELETE /v2/<repo>/manifests/<tag>`
    DeleteTag,
    /// `DELETE /v2/<repo>/manifests/<digest>`
    DeleteManifest,
    /// `GET /v2/_catalog`: is `<repo>` listed?
    Catalog,
    /// `GET /api/v1/projects/<project>/members`
    ListMembers,
    /// `PUT /api/v1/projects/<project>/members/spare` as guest.
    AddMember,
    /// `PATCH /api/v1/projects/<project>` with `public` as it is (the check, not a change).
    SetVisibility,
    /// `POST /api/v1/robots` with pull on the project.
    CreateRobot,
    /// `GET /api/v1/users`
    ListUsers,
    /// `POST /api/v1/users`
    CreateUser,
}

const EVERY_ACTION: [Action; 13] = [
    Pull,
    Push,
    MountFromPriv,
    MountFromVault,
    DeleteTag,
    DeleteManifest,
    Catalog,
    ListMembers,
    AddMember,
    SetVisibility,
    CreateRobot,
    ListUsers,
    CreateUser,
];

impl Action {
    fn on_registry_api(self) -> bool {
        matches!(
            self,
            Pull | Push | MountFromPriv | MountFromVault | DeleteTag | DeleteManifest | Catalog
        )
    }

    /// The projects the action is tried on.
    fn places(self) -> &'static [On] {
        match self {
            ListUsers | CreateUser => &[Registry],
            _ => &[Public, Private],
        }
    }

    /// The scopes a client asks a token for, as docker does (a push asks pull,push; a mount
    /// adds pull on the source).
    fn scopes(self, repo: &str) -> Vec<String> {
        let on = |r: &str, actions: &str| format!("repository:{r}:{actions}");
        match self {
            Pull => vec![on(repo, "pull")],
            Push => vec![on(repo, "pull,push")],
            MountFromPriv => vec![on(repo, "pull,push"), on("priv/base", "pull")],
            MountFromVault => vec![on(repo, "pull,push"), on("vault/src", "pull")],
            DeleteTag | DeleteManifest => vec![on(repo, "delete")],
            Catalog => vec!["registry:catalog:*".into()],
            _ => Vec::new(),
        }
    }

    /// The scope a `/v2` refusal challenges for.
    fn challenged_scope(self, repo: &str) -> Option<String> {
        match self {
            Pull => Some(format!("repository:{repo}:pull")),
            Push | MountFromPriv | MountFromVault => Some(format!("repository:{repo}:pull,push")),
            DeleteTag | DeleteManifest => Some(format!("repository:{repo}:delete")),
            _ => None,
        }
    }
}

/// Which project.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum On {
    /// `pub`
    Public,
    /// `priv`
    Private,
    /// Not about a project.
    Registry,
}

impl On {
    fn project(self) -> &'static str {
        match self {
            Public => "pub",
            Private | Registry => "priv",
        }
    }
}

/// The answer, as a client with Basic credentials sees it (see the module doc for tokens).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expect {
    /// 2xx, and it happened: the bytes as pushed, the manifest stored, the tag gone, the
    /// blob linked, the repository listed, the JSON answer.
    Allowed,
    /// A mount answered with an upload session (202): the blob is not linked.
    NotMounted,
    /// The catalog answers 200 without the repository.
    Unlisted,
    /// 401 `UNAUTHORIZED` with a `WWW-Authenticate: Bearer` challenge.
    Unauthorized,
    /// 403 `DENIED`.
    Denied,
    /// 404 `NOT_FOUND`: the project is hidden.
    NotFound,
}

const TABLE: &[(Who, Action, On, Expect)] = &[
    // Anonymous: pulls and lists what is public, nothing else.
    (Anonymous, Pull, Public, Allowed),
    (Anonymous, Pull, Private, Unauthorized),
    (Anonymous, Push, Public, Unauthorized),
    (Anonymous, Push, Private, Unauthorized),
    (Anonymous, MountFromPriv, Public, Unauthorized),
    (Anonymous, MountFromPriv, Private, Unauthorized),
    (Anonymous, MountFromVault, Public, Unauthorized),
    (Anonymous, MountFromVault, Private, Unauthorized),
    (Anonymous, DeleteTag, Public, Unauthorized),
    (Anonymous, DeleteTag, Private, Unauthorized),
    (Anonymous, DeleteManifest, Public, Unauthorized),
    (Anonymous, DeleteManifest, Private, Unauthorized),
    (Anonymous, Catalog, Public, Allowed),
    (Anonymous, Catalog, Private, Unlisted),
    (Anonymous, ListMembers, Public, Unauthorized),
    (Anonymous, ListMembers, Private, Unauthorized),
    (Anonymous, AddMember, Public, Unauthorized),
    (Anonymous, AddMember, Private, Unauthorized),
    (Anonymous, SetVisibility, Public, Unauthorized),
    (Anonymous, SetVisibility, Private, Unauthorized),
    (Anonymous, CreateRobot, Public, Unauthorized),
    (Anonymous, CreateRobot, Private, Unauthorized),
    (Anonymous, ListUsers, Registry, Unauthorized),
    (Anonymous, CreateUser, Registry, Unauthorized),
    // Guest: pull.
    (Guest, Pull, Public, Allowed),
    (Guest, Pull, Private, Allowed),
    (Guest, Push, Public, Denied),
    (Guest, Push, Private, Denied),
    (Guest, MountFromPriv, Public, Denied),
    (Guest, MountFromPriv, Private, Denied),
    (Guest, MountFromVault, Public, Denied),
    (Guest, MountFromVault, Private, Denied),
    (Guest, DeleteTag, Public, Denied),
    (Guest, DeleteTag, Private, Denied),
    (Guest, DeleteManifest, Public, Denied),
    (Guest, DeleteManifest, Private, Denied),
    (Guest, Catalog, Public, Allowed),
    (Guest, Catalog, Private, Allowed),
    (Guest, ListMembers, Public, Allowed),
    (Guest, ListMembers, Private, Allowed),
    (Guest, AddMember, Public, Denied),
    (Guest, AddMember, Private, Denied),
    (Guest, SetVisibility, Public, Denied),
    (Guest, SetVisibility, Private, Denied),
    (Guest, CreateRobot, Public, Denied),
    (Guest, CreateRobot, Private, Denied),
    (Guest, ListUsers, Registry, Denied),
    (Guest, CreateUser, Registry, Denied),
    // Developer: pull and push; mounts from what it may read.
    (Developer, Pull, Public, Allowed),
    (Developer, Pull, Private, Allowed),
    (Developer, Push, Public, Allowed),
    (Developer, Push, Private, Allowed),
    (Developer, MountFromPriv, Public, Allowed),
    (Developer, MountFromPriv, Private, Allowed),
    (Developer, MountFromVault, Public, NotMounted),
    (Developer, MountFromVault, Private, NotMounted),
    (Developer, DeleteTag, Public, Denied),
    (Developer, DeleteTag, Private, Denied),
    (Developer, DeleteManifest, Public, Denied),
    (Developer, DeleteManifest, Private, Denied),
    (Developer, Catalog, Public, Allowed),
    (Developer, Catalog, Private, Allowed),
    (Developer, ListMembers, Public, Allowed),
    (Developer, ListMembers, Private, Allowed),
    (Developer, AddMember, Public, Denied),
    (Developer, AddMember, Private, Denied),
    (Developer, SetVisibility, Public, Denied),
    (Developer, SetVisibility, Private, Denied),
    (Developer, CreateRobot, Public, Denied),
    (Developer, CreateRobot, Private, Denied),
    (Developer, ListUsers, Registry, Denied),
    (Developer, CreateUser, Registry, Denied),
    // Maintainer: pull, push and delete; does not manage the project.
    (Maintainer, Pull, Public, Allowed),
    (Maintainer, Pull, Private, Allowed),
    (Maintainer, Push, Public, Allowed),
    (Maintainer, Push, Private, Allowed),
    (Maintainer, MountFromPriv, Public, Allowed),
    (Maintainer, MountFromPriv, Private, Allowed),
    (Maintainer, MountFromVault, Public, NotMounted),
    (Maintainer, MountFromVault, Private, NotMounted),
    (Maintainer, DeleteTag, Public, Allowed),
    (Maintainer, DeleteTag, Private, Allowed),
    (Maintainer, DeleteManifest, Public, Allowed),
    (Maintainer, DeleteManifest, Private, Allowed),
    (Maintainer, Catalog, Public, Allowed),
    (Maintainer, Catalog, Private, Allowed),
    (Maintainer, ListMembers, Public, Allowed),
    (Maintainer, ListMembers, Private, Allowed),
    (Maintainer, AddMember, Public, Denied),
    (Maintainer, AddMember, Private, Denied),
    (Maintainer, SetVisibility, Public, Denied),
    (Maintainer, SetVisibility, Private, Denied),
    (Maintainer, CreateRobot, Public, Denied),
    (Maintainer, CreateRobot, Private, Denied),
    (Maintainer, ListUsers, Registry, Denied),
    (Maintainer, CreateUser, Registry, Denied),
    // Project admin: everything in the project; no user administration.
    (ProjectAdmin, Pull, Public, Allowed),
    (ProjectAdmin, Pull, Private, Allowed),
    (ProjectAdmin, Push, Public, Allowed),
    (ProjectAdmin, Push, Private, Allowed),
    (ProjectAdmin, MountFromPriv, Public, Allowed),
    (ProjectAdmin, MountFromPriv, Private, Allowed),
    (ProjectAdmin, MountFromVault, Public, NotMounted),
    (ProjectAdmin, MountFromVault, Private, NotMounted),
    (ProjectAdmin, DeleteTag, Public, Allowed),
    (ProjectAdmin, DeleteTag, Private, Allowed),
    (ProjectAdmin, DeleteManifest, Public, Allowed),
    (ProjectAdmin, DeleteManifest, Private, Allowed),
    (ProjectAdmin, Catalog, Public, Allowed),
    (ProjectAdmin, Catalog, Private, Allowed),
    (ProjectAdmin, ListMembers, Public, Allowed),
    (ProjectAdmin, ListMembers, Private, Allowed),
    (ProjectAdmin, AddMember, Public, Allowed),
    (ProjectAdmin, AddMember, Private, Allowed),
    (ProjectAdmin, SetVisibility, Public, Allowed),
    (ProjectAdmin, SetVisibility, Private, Allowed),
    (ProjectAdmin, CreateRobot, Public, Allowed),
    (ProjectAdmin, CreateRobot, Private, Allowed),
    (ProjectAdmin, ListUsers, Registry, Denied),
    (ProjectAdmin, CreateUser, Registry, Denied),
    // Robot granted pull.
    (RobotPull, Pull, Public, Allowed),
    (RobotPull, Pull, Private, Allowed),
    (RobotPull, Push, Public, Denied),
    (RobotPull, Push, Private, Denied),
    (RobotPull, MountFromPriv, Public, Denied),
    (RobotPull, MountFromPriv, Private, Denied),
    (RobotPull, MountFromVault, Public, Denied),
    (RobotPull, MountFromVault, Private, Denied),
    (RobotPull, DeleteTag, Public, Denied),
    (RobotPull, DeleteTag, Private, Denied),
    (RobotPull, DeleteManifest, Public, Denied),
    (RobotPull, DeleteManifest, Private, Denied),
    (RobotPull, Catalog, Public, Allowed),
    (RobotPull, Catalog, Private, Allowed),
    (RobotPull, ListMembers, Public, Denied),
    (RobotPull, ListMembers, Private, Denied),
    (RobotPull, AddMember, Public, Denied),
    (RobotPull, AddMember, Private, Denied),
    (RobotPull, SetVisibility, Public, Denied),
    (RobotPull, SetVisibility, Private, Denied),
    (RobotPull, CreateRobot, Public, Denied),
    (RobotPull, CreateRobot, Private, Denied),
    (RobotPull, ListUsers, Registry, Denied),
    (RobotPull, CreateUser, Registry, Denied),
    // Robot granted push alone: pushes, reads only what is public, so mounts nothing.
    (RobotPush, Pull, Public, Allowed),
    (RobotPush, Pull, Private, Denied),
    (RobotPush, Push, Public, Allowed),
    (RobotPush, Push, Private, Allowed),
    (RobotPush, MountFromPriv, Public, NotMounted),
    (RobotPush, MountFromPriv, Private, NotMounted),
    (RobotPush, MountFromVault, Public, NotMounted),
    (RobotPush, MountFromVault, Private, NotMounted),
    (RobotPush, DeleteTag, Public, Denied),
    (RobotPush, DeleteTag, Private, Denied),
    (RobotPush, DeleteManifest, Public, Denied),
    (RobotPush, DeleteManifest, Private, Denied),
    (RobotPush, Catalog, Public, Allowed),
    (RobotPush, Catalog, Private, Unlisted),
    (RobotPush, ListMembers, Public, Denied),
    (RobotPush, ListMembers, Private, Denied),
    (RobotPush, AddMember, Public, Denied),
    (RobotPush, AddMember, Private, Denied),
    (RobotPush, SetVisibility, Public, Denied),
    (RobotPush, SetVisibility, Private, Denied),
    (RobotPush, CreateRobot, Public, Denied),
    (RobotPush, CreateRobot, Private, Denied),
    (RobotPush, ListUsers, Registry, Denied),
    (RobotPush, CreateUser, Registry, Denied),
    // Robot granted pull and push: a developer that manages nothing.
    (RobotPullPush, Pull, Public, Allowed),
    (RobotPullPush, Pull, Private, Allowed),
    (RobotPullPush, Push, Public, Allowed),
    (RobotPullPush, Push, Private, Allowed),
    (RobotPullPush, MountFromPriv, Public, Allowed),
    (RobotPullPush, MountFromPriv, Private, Allowed),
    (RobotPullPush, MountFromVault, Public, NotMounted),
    (RobotPullPush, MountFromVault, Private, NotMounted),
    (RobotPullPush, DeleteTag, Public, Denied),
    (RobotPullPush, DeleteTag, Private, Denied),
    (RobotPullPush, DeleteManifest, Public, Denied),
    (RobotPullPush, DeleteManifest, Private, Denied),
    (RobotPullPush, Catalog, Public, Allowed),
    (RobotPullPush, Catalog, Private, Allowed),
    (RobotPullPush, ListMembers, Public, Denied),
    (RobotPullPush, ListMembers, Private, Denied),
    (RobotPullPush, AddMember, Public, Denied),
    (RobotPullPush, AddMember, Private, Denied),
    (RobotPullPush, SetVisibility, Public, Denied),
    (RobotPullPush, SetVisibility, Private, Denied),
    (RobotPullPush, CreateRobot, Public, Denied),
    (RobotPullPush, CreateRobot, Private, Denied),
    (RobotPullPush, ListUsers, Registry, Denied),
    (RobotPullPush, CreateUser, Registry, Denied),
    // Robot granted delete alone: deletes, reads only what is public.
    (RobotDelete, Pull, Public, Allowed),
    (RobotDelete, Pull, Private, Denied),
    (RobotDelete, Push, Public, Denied),
    (RobotDelete, Push, Private, Denied),
    (RobotDelete, MountFromPriv, Public, Denied),
    (RobotDelete, MountFromPriv, Private, Denied),
    (RobotDelete, MountFromVault, Public, Denied),
    (RobotDelete, MountFromVault, Private, Denied),
    (RobotDelete, DeleteTag, Public, Allowed),
    (RobotDelete, DeleteTag, Private, Allowed),
    (RobotDelete, DeleteManifest, Public, Allowed),
    (RobotDelete, DeleteManifest, Private, Allowed),
    (RobotDelete, Catalog, Public, Allowed),
    (RobotDelete, Catalog, Private, Unlisted),
    (RobotDelete, ListMembers, Public, Denied),
    (RobotDelete, ListMembers, Private, Denied),
    (RobotDelete, AddMember, Public, Denied),
    (RobotDelete, AddMember, Private, Denied),
    (RobotDelete, SetVisibility, Public, Denied),
    (RobotDelete, SetVisibility, Private, Denied),
    (RobotDelete, CreateRobot, Public, Denied),
    (RobotDelete, CreateRobot, Private, Denied),
    (RobotDelete, ListUsers, Registry, Denied),
    (RobotDelete, CreateUser, Registry, Denied),
    // Robot granted pull, push and delete: a maintainer that manages nothing.
    (RobotPullPushDelete, Pull, Public, Allowed),
    (RobotPullPushDelete, Pull, Private, Allowed),
    (RobotPullPushDelete, Push, Public, Allowed),
    (RobotPullPushDelete, Push, Private, Allowed),
    (RobotPullPushDelete, MountFromPriv, Public, Allowed),
    (RobotPullPushDelete, MountFromPriv, Private, Allowed),
    (RobotPullPushDelete, MountFromVault, Public, NotMounted),
    (RobotPullPushDelete, MountFromVault, Private, NotMounted),
    (RobotPullPushDelete, DeleteTag, Public, Allowed),
    (RobotPullPushDelete, DeleteTag, Private, Allowed),
    (RobotPullPushDelete, DeleteManifest, Public, Allowed),
    (RobotPullPushDelete, DeleteManifest, Private, Allowed),
    (RobotPullPushDelete, Catalog, Public, Allowed),
    (RobotPullPushDelete, Catalog, Private, Allowed),
    (RobotPullPushDelete, ListMembers, Public, Denied),
    (RobotPullPushDelete, ListMembers, Private, Denied),
    (RobotPullPushDelete, AddMember, Public, Denied),
    (RobotPullPushDelete, AddMember, Private, Denied),
    (RobotPullPushDelete, SetVisibility, Public, Denied),
    (RobotPullPushDelete, SetVisibility, Private, Denied),
    (RobotPullPushDelete, CreateRobot, Public, Denied),
    (RobotPullPushDelete, CreateRobot, Private, Denied),
    (RobotPullPushDelete, ListUsers, Registry, Denied),
    (RobotPullPushDelete, CreateUser, Registry, Denied),
    // The admin of another project: what anyone signed in may do, no more.
    (OtherProjectAdmin, Pull, Public, Allowed),
    (OtherProjectAdmin, Pull, Private, Denied),
    (OtherProjectAdmin, Push, Public, Denied),
    (OtherProjectAdmin, Push, Private, Denied),
    (OtherProjectAdmin, MountFromPriv, Public, Denied),
    (OtherProjectAdmin, MountFromPriv, Private, Denied),
    (OtherProjectAdmin, MountFromVault, Public, Denied),
    (OtherProjectAdmin, MountFromVault, Private, Denied),
    (OtherProjectAdmin, DeleteTag, Public, Denied),
    (OtherProjectAdmin, DeleteTag, Private, Denied),
    (OtherProjectAdmin, DeleteManifest, Public, Denied),
    (OtherProjectAdmin, DeleteManifest, Private, Denied),
    (OtherProjectAdmin, Catalog, Public, Allowed),
    (OtherProjectAdmin, Catalog, Private, Unlisted),
    (OtherProjectAdmin, ListMembers, Public, NotFound),
    (OtherProjectAdmin, ListMembers, Private, NotFound),
    (OtherProjectAdmin, AddMember, Public, Denied),
    (OtherProjectAdmin, AddMember, Private, NotFound),
    (OtherProjectAdmin, SetVisibility, Public, Denied),
    (OtherProjectAdmin, SetVisibility, Private, NotFound),
    (OtherProjectAdmin, CreateRobot, Public, Denied),
    (OtherProjectAdmin, CreateRobot, Private, NotFound),
    (OtherProjectAdmin, ListUsers, Registry, Denied),
    (OtherProjectAdmin, CreateUser, Registry, Denied),
    // The system administrator: everything, mounts from anywhere.
    (SystemAdmin, Pull, Public, Allowed),
    (SystemAdmin, Pull, Private, Allowed),
    (SystemAdmin, Push, Public, Allowed),
    (SystemAdmin, Push, Private, Allowed),
    (SystemAdmin, MountFromPriv, Public, Allowed),
    (SystemAdmin, MountFromPriv, Private, Allowed),
    (SystemAdmin, MountFromVault, Public, Allowed),
    (SystemAdmin, MountFromVault, Private, Allowed),
    (SystemAdmin, DeleteTag, Public, Allowed),
    (SystemAdmin, DeleteTag, Private, Allowed),
    (SystemAdmin, DeleteManifest, Public, Allowed),
    (SystemAdmin, DeleteManifest, Private, Allowed),
    (SystemAdmin, Catalog, Public, Allowed),
    (SystemAdmin, Catalog, Private, Allowed),
    (SystemAdmin, ListMembers, Public, Allowed),
    (SystemAdmin, ListMembers, Private, Allowed),
    (SystemAdmin, AddMember, Public, Allowed),
    (SystemAdmin, AddMember, Private, Allowed),
    (SystemAdmin, SetVisibility, Public, Allowed),
    (SystemAdmin, SetVisibility, Private, Allowed),
    (SystemAdmin, CreateRobot, Public, Allowed),
    (SystemAdmin, CreateRobot, Private, Allowed),
    (SystemAdmin, ListUsers, Registry, Allowed),
    (SystemAdmin, CreateUser, Registry, Allowed),
];

#[test]
fn the_table_has_one_row_per_cell() {
    let mut count: HashMap<(Who, Action, On), usize> = HashMap::new();
    for &(who, action, on, _) in TABLE {
        *count.entry((who, action, on)).or_default() += 1;
    }
    let mut cells = 0;
    for who in EVERYONE {
        for action in EVERY_ACTION {
            for &on in action.places() {
                cells += 1;
                assert_eq!(
                    count.get(&(who, action, on)),
                    Some(&1),
                    "({who:?}, {action:?}, {on:?}) must have exactly one row"
                );
            }
        }
    }
    assert_eq!(TABLE.len(), cells, "rows for cells that do not exist");
}

/// How a row's requests carry the role's credentials (see the module doc).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Transport {
    Token,
    Basic,
}

/// What a request sequence came to, compared with what [`expected`] derives from the table.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Allowed,
    NotMounted,
    Unlisted,
    Unauthorized {
        scope: Option<String>,
        insufficient_scope: bool,
    },
    Denied,
    NotFound,
    Unexpected(String),
}

fn expected(action: Action, on: On, expect: Expect, transport: Transport) -> Outcome {
    let repo = format!("{}/app", on.project());
    let v2 = action.on_registry_api();
    match expect {
        Allowed => Outcome::Allowed,
        NotMounted => Outcome::NotMounted,
        Unlisted => Outcome::Unlisted,
        NotFound => Outcome::NotFound,
        Denied if !(v2 && transport == Transport::Token) => Outcome::Denied,
        Denied | Unauthorized => Outcome::Unauthorized {
            scope: action.challenged_scope(&repo).filter(|_| v2),
            insufficient_scope: v2 && transport == Transport::Token,
        },
    }
}

const ADMIN_PASSWORD: &str = "admin-secret-1";

/// The v1 image of a project: manifest bytes, its layer's digest and bytes.
struct Image {
    manifest: Vec<u8>,
    layer_digest: String,
    layer: Vec<u8>,
}

struct Matrix {
    /// Signed in as the system administrator with a token for every repository the rows
    /// touch: sets rows up and checks their effects.
    app: TestApp,
    /// Without default credentials: each row sends its own.
    http: reqwest::Client,
    credentials: HashMap<Who, (String, String)>,
    /// A token per role asked for the management scope (`registry:management:*`, granted to
    /// account credentials, never to robots or anonymous), for the management API.
    logins: HashMap<Who, String>,
    images: HashMap<On, Image>,
}

impl Matrix {
    async fn start() -> Matrix {
        let app = TestApp::start_with(|c| {
            c.auth.enabled = true;
            c.auth.admin_password = ADMIN_PASSWORD.into();
            // Outlives the test, so the setup token never expires under a slow machine.
            c.auth.token_lifetime_secs = 3600;
        })
        .await;
        let registry = app.app.services();
        let users = [
            (Guest, "guest"),
            (Developer, "developer"),
            (Maintainer, "maintainer"),
            (ProjectAdmin, "owner"),
            (OtherProjectAdmin, "outsider"),
        ];
        let mut credentials: HashMap<Who, (String, String)> = HashMap::new();
        credentials.insert(SystemAdmin, ("admin".into(), ADMIN_PASSWORD.into()));
        let created = futures_util::future::join_all(users.iter().map(|(_, name)| async move {
            registry
                .create_account(name, &format!("{name}-pw-1"), false, false)
                .await
        }))
        .await;
        for ((who, name), result) in users.iter().zip(created) {
            result.expect("account");
            credentials.insert(*who, (name.to_string(), format!("{name}-pw-1")));
        }
        registry
            .create_account("spare", "spare-pw-1", false, false)
            .await
            .expect("spare account");
        let user = |name: &str, system_admin| Principal::User {
            name: name.into(),
            system_admin,
        };
        let owner = user("owner", false);
        for (who, project, public) in [
            (&owner, "pub", true),
            (&owner, "priv", false),
            (&user("admin", true), "vault", false),
            (&user("outsider", false), "other", false),
        ] {
            registry
                .admin_create_project(who, project, public)
                .await
                .expect("project");
        }
        for project in ["pub", "priv"] {
            for (name, role) in [
                ("guest", Role::Guest),
                ("developer", Role::Developer),
                ("maintainer", Role::Maintainer),
            ] {
                registry
                    .admin_set_member(&owner, project, name, role)
                    .await
                    .expect("member");
            }
        }
        for (who, name, actions) in [
            (RobotPull, "r-pull", &["pull"][..]),
            (RobotPush, "r-push", &["push"][..]),
            (RobotPullPush, "r-pull-push", &["pull", "push"][..]),
            (RobotDelete, "r-delete", &["delete"][..]),
            (
                RobotPullPushDelete,
                "r-all",
                &["pull", "push", "delete"][..],
            ),
        ] {
            let grant = |project: &str| RobotPermission {
                project: project.into(),
                actions: actions.iter().map(|a| a.to_string()).collect(),
            };
            let robot = registry
                .admin_create_robot(&owner, name, vec![grant("pub"), grant("priv")], None)
                .await
                .expect("robot");
            credentials.insert(who, (robot.login, robot.secret));
        }

        let http = reqwest::Client::new();
        let mut matrix = Matrix {
            app,
            http,
            credentials,
            logins: HashMap::new(),
            images: HashMap::new(),
        };
        let setup = matrix
            .token(
                SystemAdmin,
                &[
                    "repository:pub/app:pull,push,delete".into(),
                    "repository:priv/app:pull,push,delete".into(),
                    "repository:priv/base:pull,push".into(),
                    "repository:vault/src:pull,push".into(),
                ],
            )
            .await;
        matrix.app.authorize(Some(&format!("Bearer {setup}")));
        for on in [Public, Private] {
            let seed = on.project();
            let (manifest, _) = matrix
                .app
                .push_image(&format!("{seed}/app"), "v1", seed)
                .await;
            // The layer as `push_image` makes it.
            let layer = format!("layer of {seed}").repeat(100).into_bytes();
            let image = Image {
                manifest,
                layer_digest: sha256(&layer),
                layer,
            };
            matrix.images.insert(on, image);
        }
        for who in EVERYONE {
            let login = matrix
                .token(who, &["registry:management:*".to_string()])
                .await;
            matrix.logins.insert(who, login);
        }
        matrix
    }

    fn credentials(&self, who: Who) -> Option<(&str, &str)> {
        self.credentials
            .get(&who)
            .map(|(u, p)| (u.as_str(), p.as_str()))
    }

    /// A token from `/auth/token` for `scopes`, with the role's Basic credentials. The
    /// endpoint issues one to anyone who signs in correctly (or not at all): what it grants
    /// is the intersection.
    async fn token(&self, who: Who, scopes: &[String]) -> String {
        let mut query = vec![("service", "berth")];
        query.extend(scopes.iter().map(|s| ("scope", s.as_str())));
        let url = format!(
            "{}/auth/token?{}",
            self.app.base,
            serde_urlencoded::to_string(query).expect("query")
        );
        let mut request = self.http.get(url);
        if let Some((u, p)) = self.credentials(who) {
            request = request.header("authorization", basic(u, p));
        }
        let r = request.send().await.expect("token request");
        assert_eq!(r.status(), StatusCode::OK, "token for {who:?}, {scopes:?}");
        let body: Value = r.json().await.expect("token json");
        body["token"].as_str().expect("token").to_string()
    }

    /// The `Authorization` header of a row's requests.
    async fn authorization(
        &self,
        who: Who,
        action: Action,
        on: On,
        t: Transport,
    ) -> Option<String> {
        match t {
            Transport::Basic => self.credentials(who).map(|(u, p)| basic(u, p)),
            Transport::Token if action.on_registry_api() => {
                let repo = format!("{}/app", on.project());
                let token = self.token(who, &action.scopes(&repo)).await;
                Some(format!("Bearer {token}"))
            }
            Transport::Token => Some(format!("Bearer {}", self.logins[&who])),
        }
    }

    /// Runs one row one way; `None` when the answer is the expected one.
    async fn check(&self, n: usize, transport: Transport) -> Option<String> {
        let (who, action, on, expect) = TABLE[n];
        let want = expected(action, on, expect, transport);
        let got = self.run(n, transport).await;
        (got != want).then(|| {
            format!(
                "row {n} ({who:?}, {action:?}, {on:?}, {expect:?}) by {transport:?}: expected \
                 {want:?}, got {got:?}"
            )
        })
    }

    async fn run(&self, n: usize, transport: Transport) -> Outcome {
        let (who, action, on, _) = TABLE[n];
        let auth = self.authorization(who, action, on, transport).await;
        let send = |method: Method, path: &str| {
            let request = self.http.request(method, self.app.url(path));
            match &auth {
                Some(a) => request.header("authorization", a),
                None => request,
            }
        };
        let project = on.project();
        let repo = format!("{project}/app");
        // Unique per row and transport, so rows never share a tag, blob or name.
        let unique = format!("{n}-{}", format!("{transport:?}").to_lowercase());
        match action {
            Pull => {
                let image = &self.images[&on];
                let r = send(Method::GET, &format!("/v2/{repo}/manifests/v1"))
                    .header("accept", OCI_MANIFEST)
                    .send()
                    .await
                    .expect("GET manifest");
                if r.status() != StatusCode::OK {
                    return refusal(r).await;
                }
                if r.bytes().await.ok().as_deref() != Some(&image.manifest[..]) {
                    return Outcome::Unexpected("the manifest is not as pushed".into());
                }
                let path = format!("/v2/{repo}/blobs/{}", image.layer_digest);
                let r = send(Method::GET, &path).send().await.expect("GET blob");
                if r.status() != StatusCode::OK {
                    return refusal(r).await;
                }
                if r.bytes().await.ok().as_deref() != Some(&image.layer[..]) {
                    return Outcome::Unexpected("the layer is not as pushed".into());
                }
                Outcome::Allowed
            }
            Push => {
                let config =
                    format!("{{\"architecture\":\"amd64\",\"os\":\"linux\",\"row\":\"{unique}\"}}");
                let layer = format!("layer pushed by row {unique}").into_bytes();
                for blob in [config.as_bytes(), &layer[..]] {
                    let path = format!("/v2/{repo}/blobs/uploads/?digest={}", sha256(blob));
                    let r = send(Method::POST, &path)
                        .header("content-type", "application/octet-stream")
                        .body(blob.to_vec())
                        .send()
                        .await
                        .expect("POST blob");
                    if r.status() != StatusCode::CREATED {
                        return refusal(r).await;
                    }
                }
                let manifest = image_manifest(
                    &sha256(config.as_bytes()),
                    config.len(),
                    &[(&sha256(&layer), layer.len())],
                    None,
                    None,
                );
                let tag = format!("push-{unique}");
                let r = send(Method::PUT, &format!("/v2/{repo}/manifests/{tag}"))
                    .header("content-type", OCI_MANIFEST)
                    .body(manifest.clone())
                    .send()
                    .await
                    .expect("PUT manifest");
                if r.status() != StatusCode::CREATED {
                    return refusal(r).await;
                }
                let stored = self.app.get(&format!("/v2/{repo}/manifests/{tag}")).await;
                if stored.bytes().await.ok().as_deref() != Some(&manifest[..]) {
                    return Outcome::Unexpected("201, but the manifest is not stored".into());
                }
                Outcome::Allowed
            }
            MountFromPriv | MountFromVault => {
                let source = if action == MountFromPriv {
                    "priv/base"
                } else {
                    "vault/src"
                };
                let digest = self
                    .app
                    .push_blob(
                        source,
                        format!("{source} layer for row {unique}").as_bytes(),
                    )
                    .await;
                let r = send(
                    Method::POST,
                    &format!("/v2/{repo}/blobs/uploads/?mount={digest}&from={source}"),
                )
                .send()
                .await
                .expect("POST mount");
                let linked = self
                    .app
                    .head(&format!("/v2/{repo}/blobs/{digest}"))
                    .await
                    .status()
                    == StatusCode::OK;
                let session = r
                    .headers()
                    .get("location")
                    .and_then(|l| l.to_str().ok())
                    .is_some_and(|l| l.starts_with(&format!("/v2/{repo}/blobs/uploads/")));
                match r.status() {
                    StatusCode::CREATED if linked => Outcome::Allowed,
                    StatusCode::ACCEPTED if session && !linked => Outcome::NotMounted,
                    s if s.is_success() => {
                        Outcome::Unexpected(format!("{s}, the blob linked: {linked}"))
                    }
                    _ if linked => Outcome::Unexpected("refused, yet the blob is linked".into()),
                    _ => refusal(r).await,
                }
            }
            DeleteTag | DeleteManifest => {
                let tag = format!("victim-{unique}");
                let (_, digest) = self.app.push_image(&repo, &tag, &unique).await;
                let (target, check) = if action == DeleteTag {
                    (tag.clone(), tag)
                } else {
                    (digest.clone(), digest)
                };
                let r = send(Method::DELETE, &format!("/v2/{repo}/manifests/{target}"))
                    .send()
                    .await
                    .expect("DELETE");
                let left = self
                    .app
                    .get(&format!("/v2/{repo}/manifests/{check}"))
                    .await
                    .status();
                match (r.status(), left) {
                    (StatusCode::ACCEPTED, StatusCode::NOT_FOUND) => Outcome::Allowed,
                    (s, StatusCode::OK) if !s.is_success() => refusal(r).await,
                    (s, left) => Outcome::Unexpected(format!("{s}, then a GET answers {left}")),
                }
            }
            Catalog => {
                let r = send(Method::GET, "/v2/_catalog")
                    .send()
                    .await
                    .expect("GET catalog");
                if r.status() != StatusCode::OK {
                    return refusal(r).await;
                }
                let body: Value = r.json().await.unwrap_or_default();
                let Some(names) = body["repositories"].as_array() else {
                    return Outcome::Unexpected(format!("no repositories: {body}"));
                };
                if names.iter().any(|n| n == repo.as_str()) {
                    Outcome::Allowed
                } else {
                    Outcome::Unlisted
                }
            }
            ListMembers => {
                let path = format!("/api/v1/projects/{project}/members");
                let r = send(Method::GET, &path).send().await.expect("members");
                let owner = json!({"user": "owner", "role": "admin"});
                json_answer(r, StatusCode::OK, |b| {
                    b.as_array().is_some_and(|m| m.contains(&owner))
                })
                .await
            }
            AddMember => {
                let path = format!("/api/v1/projects/{project}/members/spare");
                let r = send(Method::PUT, &path)
                    .json(&json!({"role": "guest"}))
                    .send()
                    .await
                    .expect("add member");
                json_answer(r, StatusCode::OK, |b| {
                    *b == json!({"user": "spare", "role": "guest"})
                })
                .await
            }
            SetVisibility => {
                let public = on == Public;
                let r = send(Method::PATCH, &format!("/api/v1/projects/{project}"))
                    .json(&json!({ "public": public }))
                    .send()
                    .await
                    .expect("set visibility");
                json_answer(r, StatusCode::OK, |b| b["public"] == public).await
            }
            CreateRobot => {
                let name = format!("made-{unique}");
                let r = send(Method::POST, "/api/v1/robots")
                    .json(&json!({"name": name, "permissions": [{"project": project, "actions": ["pull"]}]}))
                    .send()
                    .await
                    .expect("create robot");
                json_answer(r, StatusCode::CREATED, |b| {
                    b["name"] == format!("robot${name}") && b["secret"].is_string()
                })
                .await
            }
            ListUsers => {
                let r = send(Method::GET, "/api/v1/users")
                    .send()
                    .await
                    .expect("users");
                json_answer(r, StatusCode::OK, |b| {
                    b.as_array()
                        .is_some_and(|u| u.iter().any(|u| u["name"] == "admin"))
                })
                .await
            }
            CreateUser => {
                let name = format!("made-{unique}");
                let r = send(Method::POST, "/api/v1/users")
                    .json(&json!({"name": name, "password": "made-pw-123"}))
                    .send()
                    .await
                    .expect("create user");
                json_answer(r, StatusCode::CREATED, |b| b["name"] == name.as_str()).await
            }
        }
    }
}

/// A management API answer: `Allowed` when it has `status` and a body that `fits`.
async fn json_answer(r: Response, status: StatusCode, fits: impl Fn(&Value) -> bool) -> Outcome {
    if !r.status().is_success() {
        return refusal(r).await;
    }
    let got = r.status();
    let body: Value = r.json().await.unwrap_or_default();
    if got == status && fits(&body) {
        Outcome::Allowed
    } else {
        Outcome::Unexpected(format!("{got} {body}"))
    }
}

/// Names a refusal by its status, OCI error code and challenge; anything else is unexpected.
async fn refusal(r: Response) -> Outcome {
    let status = r.status();
    let challenge = r
        .headers()
        .get("www-authenticate")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let text = r.text().await.unwrap_or_default();
    let code = serde_json::from_str::<Value>(&text)
        .ok()
        .and_then(|b| b["errors"][0]["code"].as_str().map(str::to_string));
    let parsed = challenge.as_deref().and_then(BearerChallenge::parse);
    match (status, code.as_deref(), parsed) {
        (StatusCode::UNAUTHORIZED, Some("UNAUTHORIZED"), Some(c)) => Outcome::Unauthorized {
            scope: c.scope,
            insufficient_scope: c.error.as_deref() == Some("insufficient_scope"),
        },
        (StatusCode::FORBIDDEN, Some("DENIED"), None) => Outcome::Denied,
        (StatusCode::NOT_FOUND, Some("NOT_FOUND"), None) => Outcome::NotFound,
        _ => Outcome::Unexpected(format!("{status} challenge {challenge:?}: {text}")),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn every_role_and_action_on_public_and_private_projects() {
    let matrix = Matrix::start().await;
    let runs = (0..TABLE.len()).flat_map(|n| [(n, Transport::Token), (n, Transport::Basic)]);
    let failures: Vec<String> = futures_util::stream::iter(runs)
        .map(|(n, transport)| matrix.check(n, transport))
        .buffer_unordered(8)
        .filter_map(|failure| async move { failure })
        .collect()
        .await;
    assert!(
        failures.is_empty(),
        "{} of {} runs disagree with the table:\n{}",
        failures.len(),
        TABLE.len() * 2,
        failures.join("\n")
    );
}
