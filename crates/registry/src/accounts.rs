//! Accounts as the registry uses them: the first administrator, checking a login, and what an
//! authenticated caller may do on a repository (the rules are in [`crate::permissions`]).

use berth_meta::{ProjectRecord, RobotPermission, UserRecord, unix_now};
use berth_oci::Repository;

use crate::passwords::{generate_secret, hash_password, verify_password};
use crate::permissions::{Actions, Subject, allowed};
use crate::{Error, Principal, Registry, Result};

/// The first account of an empty registry.
pub const ADMIN_USER: &str = "admin";
/// Basic-auth usernames of robot accounts start with this (as in Harbor): `robot$ci`.
pub const ROBOT_PREFIX: &str = "robot$";

/// Names no account or personal namespace may take.
pub const RESERVED_NAMES: [&str; 12] = [
    "admin", "api", "auth", "library", "root", "robot", "system", "v2", "berth", "registry",
    "public", "static",
];

/// How the first administrator got its password.
#[derive(Debug, PartialEq, Eq)]
pub enum AdminBootstrap {
    /// Accounts already existed; nothing was done.
    Existing,
    /// Created with the password given (`BERTH_ADMIN_PASSWORD`).
    Created,
    /// Created with this generated password, to be shown once.
    Generated(String),
}

impl Registry {
    /// On an empty registry, creates the `admin` system administrator with `password`, or with
    /// a generated one that the caller shows once. Never a fixed default password.
    pub async fn bootstrap_admin(&self, password: Option<&str>) -> Result<AdminBootstrap> {
        if self.meta.count_users().await? > 0 {
            return Ok(AdminBootstrap::Existing);
        }
        let (password, outcome) = match password {
            Some(p) if !p.is_empty() => (p.to_string(), AdminBootstrap::Created),
            _ => {
                let p = generate_secret();
                (p.clone(), AdminBootstrap::Generated(p))
            }
        };
        let user = UserRecord {
            name: ADMIN_USER.to_string(),
            password_hash: hash(password).await?,
            system_admin: true,
            disabled: false,
            created_at: unix_now(),
        };
        match self.meta.create_user(&user, None).await {
            Ok(()) => Ok(outcome),
            // Another replica created it first.
            Err(berth_meta::MetaError::Conflict(_)) => Ok(AdminBootstrap::Existing),
            Err(e) => Err(e.into()),
        }
    }

    /// Creates an account and its personal namespace (a project named after it, public or
    /// not), as Docker Hub does.
    pub async fn create_account(
        &self,
        name: &str,
        password: &str,
        system_admin: bool,
        public_namespace: bool,
    ) -> Result<()> {
        validate_account_name(name)?;
        let now = unix_now();
        let user = UserRecord {
            name: name.to_string(),
            password_hash: hash(password.to_string()).await?,
            system_admin,
            disabled: false,
            created_at: now,
        };
        let personal = ProjectRecord {
            name: name.to_string(),
            public: public_namespace,
            owner: Some(name.to_string()),
            created_at: now,
        };
        self.meta
            .create_user(&user, Some(&personal))
            .await
            .map_err(|e| match e {
                berth_meta::MetaError::Conflict(_) => {
                    Error::Invalid(format!("the name {name:?} is taken"))
                }
                other => other.into(),
            })
    }

    /// Checks a username and password (or `robot$<name>` and its secret). `None` when they do
    /// not match, the account is disabled or the robot expired; which of these is not told.
    pub async fn authenticate(&self, username: &str, password: &str) -> Result<Option<Principal>> {
        if let Some(robot) = username.strip_prefix(ROBOT_PREFIX) {
            let Some(r) = self.meta.robot(robot).await? else {
                return Ok(None);
            };
            let expired = r.expires_at.is_some_and(|t| t <= unix_now());
            if r.disabled || expired || !verify(password, r.secret_hash).await? {
                return Ok(None);
            }
            return Ok(Some(Principal::Robot {
                name: r.name,
                permissions: r.permissions,
            }));
        }
        let Some(u) = self.meta.user(username).await? else {
            // Spend the same work as a real check, so timing does not tell names apart.
            let _ = verify(password, dummy_hash()?).await?;
            return Ok(None);
        };
        if u.disabled || !verify(password, u.password_hash).await? {
            return Ok(None);
        }
        Ok(Some(Principal::User {
            name: u.name,
            system_admin: u.system_admin,
        }))
    }

    /// What `who` may do on `repository`'s project.
    pub async fn allowed_actions(
        &self,
        who: &Principal,
        repository: &Repository,
    ) -> Result<Actions> {
        let project_name = repository.project();
        let project = self.meta.project(project_name).await?;
        let subject = match who {
            Principal::Anonymous => Subject::Anonymous,
            Principal::User { name, system_admin } => Subject::User {
                system_admin: *system_admin,
                role: match &project {
                    Some(_) if !system_admin => self.meta.role(project_name, name).await?,
                    _ => None,
                },
            },
            Principal::Robot { permissions, .. } => Subject::Robot {
                granted: robot_actions(permissions, project_name),
            },
        };
        Ok(allowed(&subject, project.as_ref()))
    }
}

fn robot_actions<'a>(permissions: &'a [RobotPermission], project: &str) -> Option<&'a [String]> {
    permissions
        .iter()
        .find(|p| p.project == project)
        .map(|p| p.actions.as_slice())
}

/// An account name is a project name (it becomes the personal namespace): one repository path
/// component, at most 64 characters, and not reserved.
pub fn validate_account_name(name: &str) -> Result<()> {
    let valid = name.len() <= 64 && !name.contains('/') && name.parse::<Repository>().is_ok();
    if !valid {
        return Err(Error::Invalid(format!(
            "invalid account name {:?}: lowercase letters, digits and . _ - between them, at most \
             64 characters",
            name.chars().take(80).collect::<String>()
        )));
    }
    if RESERVED_NAMES.contains(&name) {
        return Err(Error::Invalid(format!("the name {name:?} is reserved")));
    }
    Ok(())
}

/// An argon2id hash of a random password nobody knows, checked when a username is unknown.
fn dummy_hash() -> Result<String> {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    if let Some(h) = DUMMY.get() {
        return Ok(h.clone());
    }
    let h = hash_password(&generate_secret())?;
    Ok(DUMMY.get_or_init(|| h).clone())
}

/// argon2 is deliberately slow: keep it off the async workers.
pub(crate) async fn hash(password: String) -> Result<String> {
    tokio::task::spawn_blocking(move || hash_password(&password))
        .await
        .map_err(|e| Error::Internal(format!("password hashing task: {e}")))?
}

async fn verify(password: &str, stored: String) -> Result<bool> {
    let password = password.to_string();
    tokio::task::spawn_blocking(move || verify_password(&password, &stored))
        .await
        .map_err(|e| Error::Internal(format!("password check task: {e}")))
}

impl Registry {
    /// Creates `repository`'s project, private, with `admin` as its admin, unless it exists
    /// (`auto_create_projects`). Returns whether it was created.
    pub async fn ensure_project(&self, repository: &Repository, admin: &str) -> Result<bool> {
        let name = repository.project();
        if self.meta.project(name).await?.is_some() {
            return Ok(false);
        }
        let project = ProjectRecord {
            name: name.to_string(),
            public: false,
            owner: None,
            created_at: unix_now(),
        };
        match self.meta.create_project(&project, Some(admin)).await {
            Ok(()) => Ok(true),
            // Created meanwhile by another request.
            Err(berth_meta::MetaError::Conflict(_)) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Whether `repository`'s project exists.
    pub async fn project_exists(&self, repository: &Repository) -> Result<bool> {
        Ok(self.meta.project(repository.project()).await?.is_some())
    }

    /// The account behind a token's subject, as it is now (it may have been disabled or
    /// removed since the token was issued).
    pub async fn principal_of(&self, username: &str) -> Result<Option<Principal>> {
        if let Some(robot) = username.strip_prefix(ROBOT_PREFIX) {
            return Ok(self.meta.robot(robot).await?.and_then(|r| {
                let expired = r.expires_at.is_some_and(|t| t <= unix_now());
                (!r.disabled && !expired).then_some(Principal::Robot {
                    name: r.name,
                    permissions: r.permissions,
                })
            }));
        }
        Ok(self.meta.user(username).await?.and_then(|u| {
            (!u.disabled).then_some(Principal::User {
                name: u.name,
                system_admin: u.system_admin,
            })
        }))
    }
}
