use berth_meta::RobotPermission;
use berth_oci::Repository;

/// Who makes a request, once authenticated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Principal {
    Anonymous,
    User {
        name: String,
        system_admin: bool,
    },
    /// A robot account (`robot$<name>` in Basic auth), with its grants per project.
    Robot {
        name: String,
        permissions: Vec<RobotPermission>,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    Pull,
    Push,
    Delete,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Pull => "pull",
            Action::Push => "push",
            Action::Delete => "delete",
        }
    }
}

/// Decides whether a principal may act on a repository.
pub trait AccessPolicy: Send + Sync {
    fn allows(&self, who: &Principal, repository: &Repository, action: Action) -> bool;
}

/// Everyone may do everything: the policy of an open development registry.
#[derive(Clone, Copy, Debug, Default)]
pub struct AllowAll;

impl AccessPolicy for AllowAll {
    fn allows(&self, _: &Principal, _: &Repository, _: Action) -> bool {
        true
    }
}
