//! The access policy's pure parts: the management scope, and which requested scopes a token
//! grants. The role rules themselves are tested in `permissions.rs`; the decisions on a real
//! database in `tests/accounts.rs`.

use berth_oci::Repository;

use super::grants::{add_grant, granted_actions, management_granted, parse_scope};
use super::{Caller, Principal};
use crate::permissions::Actions;
use crate::token::{AccountClaim, Claims, ResourceAccess};

fn user() -> Principal {
    Principal::User {
        name: "alice".into(),
        system_admin: false,
    }
}

fn robot() -> Principal {
    Principal::Robot {
        name: "ci".into(),
        permissions: Vec::new(),
    }
}

fn claim() -> AccountClaim {
    AccountClaim {
        id: "0123".into(),
        stamp: 0,
    }
}

fn token(access: Vec<ResourceAccess>) -> Caller {
    Caller::Token {
        claims: Claims {
            iss: "berth".into(),
            sub: "alice".into(),
            aud: "berth".into(),
            exp: 2,
            nbf: 1,
            iat: 1,
            jti: "j".into(),
            access,
            account: Some(claim()),
        },
        principal: user(),
    }
}

fn repo(name: &str) -> Repository {
    name.parse().expect("repository")
}

#[test]
fn account_credentials_and_management_tokens_reach_the_management_api() {
    let management = ResourceAccess {
        resource_type: "registry".into(),
        name: "management".into(),
        actions: vec!["*".into()],
    };
    let cases = [
        ("anonymous", Caller::Anonymous, false),
        ("basic", Caller::Account(user(), claim()), true),
        ("management token", token(vec![management]), true),
        (
            "repository token",
            token(vec![ResourceAccess::repository("alice/app", &["*"])]),
            false,
        ),
        ("empty token", token(Vec::new()), false),
    ];
    for (label, caller, expected) in cases {
        assert_eq!(caller.has_management_scope(), expected, "{label}");
    }
}

#[test]
fn the_management_scope_goes_to_a_users_credentials_and_only_for_star() {
    let basic_user = Caller::Account(user(), claim());
    let basic_robot = Caller::Account(robot(), claim());
    assert!(management_granted(&basic_user, "*"));
    assert!(management_granted(&basic_user, "pull,*"));
    assert!(!management_granted(&basic_user, "pull"));
    assert!(!management_granted(&basic_robot, "*"), "never a robot");
    assert!(!management_granted(&Caller::Anonymous, "*"));
    assert!(
        !management_granted(&token(Vec::new()), "*"),
        "a token is not a login"
    );
}

#[test]
fn scopes_are_three_parts_and_the_actions_keep_their_colons() {
    assert_eq!(
        parse_scope("repository:team/app:pull,push"),
        Some(("repository", "team/app", "pull,push"))
    );
    assert_eq!(
        parse_scope("repository:team/app:pull:x"),
        Some(("repository", "team/app", "pull:x"))
    );
    assert_eq!(parse_scope("repository:team/app"), None);
    assert_eq!(parse_scope("garbage"), None);
}

#[test]
fn only_allowed_and_known_actions_are_granted_in_the_order_asked() {
    let developer = Actions {
        pull: true,
        push: true,
        ..Actions::NONE
    };
    assert_eq!(
        granted_actions("push,delete,pull,*,PULL", developer),
        ["push", "pull"]
    );
    assert!(granted_actions("pull,push", Actions::NONE).is_empty());
    assert_eq!(granted_actions("delete", Actions::ALL), ["delete"]);
}

#[test]
fn a_repository_asked_for_twice_gets_one_entry_with_each_action_once() {
    let mut access = Vec::new();
    add_grant(&mut access, &repo("team/app"), vec!["pull".into()]);
    add_grant(&mut access, &repo("team/db"), Vec::new());
    add_grant(
        &mut access,
        &repo("team/app"),
        vec!["push".into(), "pull".into()],
    );
    assert_eq!(
        access,
        [
            ResourceAccess::repository("team/app", &["pull", "push"]),
            ResourceAccess::repository("team/db", &[]),
        ]
    );
}
