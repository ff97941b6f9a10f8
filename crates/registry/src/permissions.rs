//! Who may do what in a project: the rules, as one pure function, so that the token server,
//! Basic auth on `/v2/`, the catalog filter and the admin API all decide alike.
//!
//! | who | public project | private project |
//! |---|---|---|
//! | anonymous | pull | nothing |
//! | any signed-in account | pull | nothing |
//! | member: guest | pull | pull |
//! | member: developer | pull, push | pull, push |
//! | member: maintainer | pull, push, delete | pull, push, delete |
//! | member: admin | everything, and manages the project | the same |
//! | system administrator | everything | everything |
//! | robot account | its granted actions in the project (plus pull if public) | its granted actions |
//!
//! A project that does not exist allows nothing to anyone (pushing there is refused with a
//! message naming it, unless projects are created on push).

use berth_meta::{ProjectRecord, Role};

use crate::Action;

/// A set of actions on one project.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Actions {
    pub pull: bool,
    pub push: bool,
    pub delete: bool,
    /// Members, settings and robots of the project (not a registry API action).
    pub manage: bool,
}

impl Actions {
    pub const NONE: Actions = Actions {
        pull: false,
        push: false,
        delete: false,
        manage: false,
    };
    pub const ALL: Actions = Actions {
        pull: true,
        push: true,
        delete: true,
        manage: true,
    };

    pub fn allows(self, action: Action) -> bool {
        match action {
            Action::Pull => self.pull,
            Action::Push => self.push,
            Action::Delete => self.delete,
        }
    }

    pub fn union(self, other: Actions) -> Actions {
        Actions {
            pull: self.pull || other.pull,
            push: self.push || other.push,
            delete: self.delete || other.delete,
            manage: self.manage || other.manage,
        }
    }

    /// What a member with `role` may do.
    pub fn of_role(role: Role) -> Actions {
        match role {
            Role::Guest => Actions {
                pull: true,
                ..Actions::NONE
            },
            Role::Developer => Actions {
                pull: true,
                push: true,
                ..Actions::NONE
            },
            Role::Maintainer => Actions {
                pull: true,
                push: true,
                delete: true,
                manage: false,
            },
            Role::Admin => Actions::ALL,
        }
    }

    /// From a robot's granted action names (`pull`, `push`, `delete`); unknown names grant
    /// nothing. Robots never manage.
    pub fn of_names<'a>(names: impl IntoIterator<Item = &'a str>) -> Actions {
        names.into_iter().fold(Actions::NONE, |acc, n| Actions {
            pull: acc.pull || n == "pull",
            push: acc.push || n == "push",
            delete: acc.delete || n == "delete",
            manage: false,
        })
    }

    /// The registry API action names, as token `access` claims list them.
    pub fn names(self) -> Vec<&'static str> {
        let mut out = Vec::new();
        if self.pull {
            out.push("pull");
        }
        if self.push {
            out.push("push");
        }
        if self.delete {
            out.push("delete");
        }
        out
    }
}

/// Who is asking, once authenticated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Subject<'a> {
    Anonymous,
    /// A signed-in account; `role` is its membership in the project, if any.
    User {
        system_admin: bool,
        role: Option<Role>,
    },
    /// A robot account, with the actions it was granted on this project (if any).
    Robot {
        granted: Option<&'a [String]>,
    },
}

/// What `who` may do on `project` (`None`: the project does not exist).
pub fn allowed(who: &Subject<'_>, project: Option<&ProjectRecord>) -> Actions {
    let Some(project) = project else {
        return Actions::NONE;
    };
    let public = Actions {
        pull: project.public,
        ..Actions::NONE
    };
    match who {
        Subject::Anonymous => public,
        Subject::User {
            system_admin: true, ..
        } => Actions::ALL,
        Subject::User { role, .. } => role.map_or(public, |r| public.union(Actions::of_role(r))),
        Subject::Robot { granted } => public.union(granted.map_or(Actions::NONE, |g| {
            Actions::of_names(g.iter().map(String::as_str))
        })),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn project(public: bool) -> ProjectRecord {
        ProjectRecord {
            name: "team".into(),
            public,
            owner: None,
            created_at: 0,
        }
    }

    /// The matrix of the module doc, written once: (who, public?, expected "pull,push,...").
    #[test]
    fn every_subject_on_public_and_private_projects() {
        let pull = ["pull".to_string()];
        let push = ["pull".to_string(), "push".to_string()];
        let del = ["delete".to_string()];
        let user = |role| Subject::User {
            system_admin: false,
            role,
        };
        let cases: Vec<(&str, Subject<'_>, bool, &str)> = vec![
            ("anonymous", Subject::Anonymous, true, "pull"),
            ("anonymous", Subject::Anonymous, false, ""),
            ("non-member", user(None), true, "pull"),
            ("non-member", user(None), false, ""),
            ("guest", user(Some(Role::Guest)), true, "pull"),
            ("guest", user(Some(Role::Guest)), false, "pull"),
            ("developer", user(Some(Role::Developer)), true, "pull,push"),
            ("developer", user(Some(Role::Developer)), false, "pull,push"),
            (
                "maintainer",
                user(Some(Role::Maintainer)),
                false,
                "pull,push,delete",
            ),
            (
                "admin",
                user(Some(Role::Admin)),
                false,
                "pull,push,delete,manage",
            ),
            (
                "system admin",
                Subject::User {
                    system_admin: true,
                    role: None,
                },
                false,
                "pull,push,delete,manage",
            ),
            (
                "robot pull",
                Subject::Robot {
                    granted: Some(&pull),
                },
                false,
                "pull",
            ),
            (
                "robot push",
                Subject::Robot {
                    granted: Some(&push),
                },
                false,
                "pull,push",
            ),
            (
                "robot delete",
                Subject::Robot {
                    granted: Some(&del),
                },
                false,
                "delete",
            ),
            (
                "robot delete",
                Subject::Robot {
                    granted: Some(&del),
                },
                true,
                "pull,delete",
            ),
            (
                "robot elsewhere",
                Subject::Robot { granted: None },
                false,
                "",
            ),
            (
                "robot elsewhere",
                Subject::Robot { granted: None },
                true,
                "pull",
            ),
        ];
        for (label, who, public, expected) in cases {
            let a = allowed(&who, Some(&project(public)));
            let mut names = a.names();
            if a.manage {
                names.push("manage");
            }
            let visibility = if public { "public" } else { "private" };
            assert_eq!(
                names.join(","),
                expected,
                "{label} on a {visibility} project"
            );
        }
    }

    #[test]
    fn a_missing_project_allows_nothing_even_to_admins() {
        for who in [
            Subject::Anonymous,
            Subject::User {
                system_admin: true,
                role: None,
            },
        ] {
            assert_eq!(allowed(&who, None), Actions::NONE);
        }
    }

    #[test]
    fn unknown_robot_actions_grant_nothing() {
        assert_eq!(Actions::of_names(["PULL", "admin", "*"]), Actions::NONE);
        assert!(Actions::of_names(["push"]).allows(Action::Push));
        assert!(!Actions::of_names(["push"]).allows(Action::Pull));
    }
}
