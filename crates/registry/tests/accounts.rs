//! Accounts on a real registry (SQLite + filesystem): the first administrator, logins, robot
//! accounts and the role rules read from the database.

use std::sync::Arc;

use berth_meta::{Accounts, ProjectRecord, RobotPermission, RobotRecord, Role, SqliteMeta};
use berth_oci::Repository;
use berth_registry::accounts::AdminBootstrap;
use berth_registry::passwords::hash_password;
use berth_registry::{Access, AccessOptions, Limits, Principal, Registry};
use berth_storage::FilesystemStore;

async fn open(dir: &std::path::Path) -> (Registry, Access, Arc<SqliteMeta>) {
    let meta = Arc::new(SqliteMeta::open(&dir.join("meta.db")).await.expect("meta"));
    let blobs = Arc::new(FilesystemStore::open(dir).await.expect("blobs"));
    let registry = Registry::new(meta.clone(), blobs, Limits::default());
    let access = Access::new(meta.clone(), None, AccessOptions::default());
    (registry, access, meta)
}

/// Who a name and password log in as (the access service's check, without the limiter).
async fn login(access: &Access, user: &str, password: &str) -> Option<Principal> {
    access
        .authenticate_password(user, password)
        .await
        .expect("auth")
        .map(|(principal, _)| principal)
}

fn repo(s: &str) -> Repository {
    s.parse().expect("repository")
}

#[tokio::test(flavor = "multi_thread")]
async fn the_first_admin_gets_the_given_or_a_generated_password_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (registry, access, _) = open(dir.path()).await;
    let AdminBootstrap::Generated(password) =
        registry.bootstrap_admin(None).await.expect("bootstrap")
    else {
        panic!("an empty registry without BERTH_ADMIN_PASSWORD generates one");
    };
    assert!(password.len() >= 32);
    assert_eq!(
        registry
            .bootstrap_admin(Some("other"))
            .await
            .expect("again"),
        AdminBootstrap::Existing
    );
    let admin = login(&access, "admin", &password).await;
    assert_eq!(
        admin,
        Some(Principal::User {
            name: "admin".into(),
            system_admin: true
        })
    );
    assert_eq!(login(&access, "admin", "other").await, None);

    let dir = tempfile::tempdir().expect("tempdir");
    let (registry, access, _) = open(dir.path()).await;
    assert_eq!(
        registry
            .bootstrap_admin(Some("from-env"))
            .await
            .expect("bootstrap"),
        AdminBootstrap::Created
    );
    assert!(login(&access, "admin", "from-env").await.is_some());
}

#[tokio::test(flavor = "multi_thread")]
async fn logins_roles_and_robots_from_the_database() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (registry, access, meta) = open(dir.path()).await;
    registry
        .create_account("alice", "pw-alice", false, true)
        .await
        .expect("alice");
    registry
        .create_account("bob", "pw-bob", false, false)
        .await
        .expect("bob");
    for bad in ["admin", "library", "Alice", "a/b", "", "-x"] {
        assert!(
            registry
                .create_account(bad, "pw", false, true)
                .await
                .is_err(),
            "{bad}"
        );
    }
    assert!(
        registry
            .create_account("alice", "again", false, true)
            .await
            .is_err(),
        "taken"
    );

    let alice = login(&access, "alice", "pw-alice").await.expect("alice");
    let bob = login(&access, "bob", "pw-bob").await.expect("bob");
    assert_eq!(login(&access, "bob", "pw-alice").await, None);
    assert_eq!(login(&access, "nobody", "pw").await, None);

    // Personal namespaces: alice's is public, bob's private.
    let a = access
        .allowed_actions(&Principal::Anonymous, &repo("alice/app"))
        .await
        .expect("a");
    assert!(a.pull && !a.push);
    let a = access
        .allowed_actions(&Principal::Anonymous, &repo("bob/app"))
        .await
        .expect("a");
    assert!(!a.pull);
    let a = access
        .allowed_actions(&alice, &repo("alice/app"))
        .await
        .expect("a");
    assert!(a.pull && a.push && a.delete && a.manage);
    let a = access
        .allowed_actions(&alice, &repo("bob/app"))
        .await
        .expect("a");
    assert!(!a.pull, "another user's private namespace is invisible");

    // A private team project with bob as developer.
    meta.create_project(
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
    meta.set_member("team", "bob", Role::Developer)
        .await
        .expect("member");
    let a = access
        .allowed_actions(&bob, &repo("team/web"))
        .await
        .expect("a");
    assert!(a.pull && a.push && !a.delete);
    let a = access
        .allowed_actions(&alice, &repo("team/web"))
        .await
        .expect("a");
    assert_eq!(a, berth_registry::permissions::Actions::NONE);
    let a = access
        .allowed_actions(&bob, &repo("nosuchproject/web"))
        .await
        .expect("a");
    assert_eq!(a, berth_registry::permissions::Actions::NONE);

    // Disabled accounts cannot log in.
    meta.set_user_disabled("bob", true).await.expect("disable");
    assert_eq!(login(&access, "bob", "pw-bob").await, None);

    // Robots: their grants only, never after expiry or disabling.
    let robot = |name: &str, expires_at| RobotRecord {
        id: format!("id-of-{name}"),
        name: name.into(),
        secret_hash: hash_password("s3cret").expect("hash"),
        permissions: vec![RobotPermission {
            project: "team".into(),
            actions: vec!["pull".into()],
        }],
        expires_at,
        disabled: false,
        created_at: 0,
        token_stamp: 0,
    };
    meta.create_robot(&robot("ci", None)).await.expect("robot");
    meta.create_robot(&robot("old", Some(1)))
        .await
        .expect("robot");
    let ci = login(&access, "robot$ci", "s3cret").await.expect("ci");
    let a = access
        .allowed_actions(&ci, &repo("team/web"))
        .await
        .expect("a");
    assert!(a.pull && !a.push);
    let a = access
        .allowed_actions(&ci, &repo("bob/app"))
        .await
        .expect("a");
    assert!(!a.pull);
    assert_eq!(login(&access, "robot$old", "s3cret").await, None, "expired");
    assert_eq!(
        login(&access, "ci", "s3cret").await,
        None,
        "robots log in as robot$"
    );
    meta.set_robot_disabled("ci", true).await.expect("disable");
    assert_eq!(login(&access, "robot$ci", "s3cret").await, None, "disabled");
}
