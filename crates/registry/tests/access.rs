//! The access service's decisions on a real database (SQLite): who a request's credentials
//! name, and what they may do on `/v2`, at the token endpoint and on the management API. The
//! server's API suite checks the same through HTTP (statuses and challenges).

use std::sync::Arc;
use std::time::Duration;

use berth_meta::{Accounts, AuditLog, AuditQuery, ProjectRecord, Role, SqliteMeta};
use berth_oci::Repository;
use berth_registry::access::Tokens;
use berth_registry::token::{ResourceAccess, SigningKey};
use berth_registry::{
    Access, AccessOptions, Action, Caller, Credentials, Error, Limits, Principal, Registry,
};
use berth_storage::FilesystemStore;

struct Setup {
    registry: Registry,
    access: Access,
    meta: Arc<SqliteMeta>,
}

async fn open(dir: &std::path::Path, enabled: bool, options: AccessOptions) -> Setup {
    let meta = Arc::new(SqliteMeta::open(&dir.join("meta.db")).await.expect("meta"));
    let blobs = Arc::new(FilesystemStore::open(dir).await.expect("blobs"));
    let registry = Registry::new(meta.clone(), blobs, Limits::default());
    let tokens = enabled.then(|| {
        let key = SigningKey::generate().expect("key");
        Tokens::new(key.pkcs8(), "berth", Duration::from_secs(300)).expect("tokens")
    });
    let access = Access::new(meta.clone(), tokens, options);
    Setup {
        registry,
        access,
        meta,
    }
}

fn repo(s: &str) -> Repository {
    s.parse().expect("repository")
}

fn basic(user: &str, password: &str) -> Credentials {
    Credentials::Basic {
        user: user.into(),
        password: password.into(),
    }
}

/// The caller a token issued for `scopes` makes, presented as a Bearer token.
async fn token_caller(access: &Access, caller: &Caller, scopes: &[&str]) -> Caller {
    let issued = access
        .issue_token(None, caller, scopes, false, None)
        .await
        .expect("issue");
    access
        .authenticate(&Credentials::Bearer(issued.access.token), None)
        .await
        .expect("bearer")
}

/// Alice owns a private namespace and is a developer of the private `team`.
async fn alice_and_team(s: &Setup) -> Caller {
    s.registry
        .create_account("alice", "pw-alice-1", false, false)
        .await
        .expect("alice");
    s.meta
        .create_project(
            &ProjectRecord {
                name: "team".into(),
                public: false,
                owner: None,
                created_at: 0,
            },
            None,
        )
        .await
        .expect("team");
    s.meta
        .set_member("team", "alice", Role::Developer)
        .await
        .expect("member");
    s.access
        .authenticate(&basic("alice", "pw-alice-1"), None)
        .await
        .expect("alice logs in")
}

#[tokio::test(flavor = "multi_thread")]
async fn anonymous_accounts_and_tokens_are_refused_each_in_their_own_way() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = open(dir.path(), true, AccessOptions::default()).await;
    let alice = alice_and_team(&s).await;
    let team = repo("team/web");

    assert!(matches!(
        s.access.authorize(&Caller::Anonymous, &team, Action::Pull, None).await,
        Err(Error::Unauthenticated { message, scope: Some((r, Action::Pull)), insufficient_scope: false })
            if message == "authentication required" && r == team
    ));
    s.access
        .authorize(&alice, &team, Action::Push, None)
        .await
        .expect("a developer pushes");
    match s
        .access
        .authorize(&alice, &team, Action::Delete, None)
        .await
    {
        Err(Error::Denied(message)) => assert_eq!(
            message,
            "requested access to the resource is denied: delete on team/web"
        ),
        other => panic!("a developer may not delete: {other:?}"),
    }

    let pull_only = token_caller(&s.access, &alice, &["repository:team/web:pull"]).await;
    s.access
        .authorize(&pull_only, &team, Action::Pull, None)
        .await
        .expect("the token grants pull");
    assert!(matches!(
        s.access
            .authorize(&pull_only, &team, Action::Push, None)
            .await,
        Err(Error::Unauthenticated {
            scope: Some((_, Action::Push)),
            insufficient_scope: true,
            ..
        })
    ));

    assert!(matches!(
        s.access.authorize_base(&Caller::Anonymous),
        Err(Error::Unauthenticated { scope: None, .. })
    ));
    s.access.authorize_base(&alice).expect("signed in");
    assert!(matches!(
        s.access.authenticate(&basic("alice", "wrong-pw"), None).await,
        Err(Error::Unauthenticated { message, .. }) if message == "incorrect username or password"
    ));
    assert!(matches!(
        s.access
            .authenticate(&Credentials::Malformed("unsupported authorization scheme"), None)
            .await,
        Err(Error::Unauthenticated { message, .. }) if message == "unsupported authorization scheme"
    ));
}

#[tokio::test(flavor = "multi_thread")]
async fn tokens_get_what_was_asked_and_allowed_and_die_with_a_password_change() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = open(dir.path(), true, AccessOptions::default()).await;
    let alice = alice_and_team(&s).await;
    let granted = s
        .access
        .grant_token_scopes(
            &alice,
            &[
                "repository:team/web:pull,push,delete",
                "repository:other/app:pull",
                "registry:management:*",
            ],
        )
        .await
        .expect("grant");
    assert_eq!(
        granted,
        [
            ResourceAccess::repository("team/web", &["pull", "push"]),
            ResourceAccess::repository("other/app", &[]),
            ResourceAccess {
                resource_type: "registry".into(),
                name: "management".into(),
                actions: vec!["*".into()],
            },
        ]
    );
    let management = token_caller(&s.access, &alice, &["registry:management:*"]).await;
    assert_eq!(
        s.access
            .authorize_management(&management)
            .expect("management"),
        alice.principal()
    );
    let events = s
        .meta
        .events(&AuditQuery {
            action: Some("token.management".into()),
            limit: 10,
            ..AuditQuery::default()
        })
        .await
        .expect("events");
    assert_eq!(events.len(), 1, "the management token was audited");

    let repository_token = token_caller(&s.access, &alice, &["repository:team/web:pull"]).await;
    assert!(matches!(
        s.access.authorize_management(&repository_token),
        Err(Error::ManagementScopeMissing)
    ));
    assert!(matches!(
        s.access.authorize_management(&Caller::Anonymous),
        Err(Error::Unauthenticated { .. })
    ));

    let issued = s
        .access
        .issue_token(None, &alice, &[], false, None)
        .await
        .expect("issue");
    s.meta
        .set_password("alice", "another hash")
        .await
        .expect("password");
    assert!(matches!(
        s.access.authenticate(&Credentials::Bearer(issued.access.token), None).await,
        Err(Error::Unauthenticated { message, .. }) if message.starts_with("the token was revoked")
    ));
    assert!(matches!(
        s.access.issue_token(Some("elsewhere"), &alice, &[], false, None).await,
        Err(Error::TokenRefused(message)) if message == "unknown service"
    ));
}

#[tokio::test(flavor = "multi_thread")]
async fn robots_never_manage_and_a_push_creates_the_project_when_asked() {
    let dir = tempfile::tempdir().expect("tempdir");
    let options = AccessOptions {
        auto_create_projects: true,
        allow_signup: false,
    };
    let s = open(dir.path(), true, options).await;
    let alice = alice_and_team(&s).await;
    let robot = Caller::Account(
        Principal::Robot {
            name: "ci".into(),
            permissions: Vec::new(),
        },
        berth_registry::token::AccountClaim {
            id: "x".into(),
            stamp: 0,
        },
    );
    assert!(matches!(
        s.access.authorize_management(&robot),
        Err(Error::Denied(message)) if message == "robot accounts cannot use the management API"
    ));
    assert!(matches!(s.access.authorize_signup(), Err(Error::Denied(_))));

    s.access
        .authorize(&alice, &repo("fresh/app"), Action::Push, None)
        .await
        .expect("a push to a new project");
    assert_eq!(
        s.meta.role("fresh", "alice").await.expect("role"),
        Some(Role::Admin),
        "created with the pusher as its admin"
    );
    assert!(
        s.access
            .authorize(&alice, &repo("library/app"), Action::Push, None)
            .await
            .is_err(),
        "reserved words are not created by a push"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn with_accounts_off_everyone_is_anonymous_and_may_do_everything() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = open(dir.path(), false, AccessOptions::default()).await;
    let caller = s
        .access
        .authenticate(
            &Credentials::Malformed("the Authorization header is too long"),
            None,
        )
        .await
        .expect("credentials are not looked at");
    assert!(matches!(caller, Caller::Anonymous));
    let private = repo("nosuch/app");
    for action in [Action::Pull, Action::Push, Action::Delete] {
        s.access
            .authorize(&caller, &private, action, None)
            .await
            .expect("allowed");
    }
    s.access.authorize_base(&caller).expect("base");
    assert!(s.access.may_pull(&caller, &private).await.expect("pull"));
    assert!(s.access.may_mount_from(&caller, None).await.expect("mount"));
    assert!(matches!(
        s.access.issue_token(None, &caller, &[], false, None).await,
        Err(Error::TokenRefused(message)) if message == "this registry issues no tokens"
    ));
}
