//! Management of accounts, projects, members and robot accounts, each operation checking who
//! asks: system administrators may do everything, project admins manage their project, every
//! account may change its own password and create projects.

use berth_meta::{Accounts, ProjectRecord, RobotPermission, RobotRecord, Role, UserRecord};
use berth_oci::Repository;

use crate::access::allowed_actions;
use crate::accounts::{
    ANONYMOUS, RESERVED_NAMES, ROBOT_PREFIX, hash, new_account_id, reserved, validate_name_grammar,
    validate_password,
};
use crate::passwords::generate_secret;
use crate::{Error, Principal, Registry, Result};

/// A robot account just created: its login name and its secret, shown once.
#[derive(Debug)]
pub struct NewRobot {
    pub login: String,
    pub secret: String,
}

fn system_admin(who: &Principal) -> bool {
    matches!(
        who,
        Principal::User {
            system_admin: true,
            ..
        }
    )
}

/// Refuses anyone but a system administrator (`Denied`).
pub fn require_system_admin(who: &Principal) -> Result<()> {
    if system_admin(who) {
        Ok(())
    } else {
        Err(Error::Denied(
            "only a system administrator may do this".into(),
        ))
    }
}

fn require_account(who: &Principal) -> Result<&str> {
    match who {
        Principal::User { name, .. } => Ok(name),
        Principal::Anonymous => Err(Error::Denied("sign in first".into())),
        Principal::Robot { .. } => Err(Error::Denied(
            "robot accounts cannot manage the registry".into(),
        )),
    }
}

/// Refuses a project name `who` may not take: reserved words and another account's personal
/// namespace (its name, even while no such project exists) are for system administrators (and
/// that account) only. Also the rule for projects created by a push (`auto_create_projects`).
pub(crate) async fn may_create_project(
    accounts: &dyn Accounts,
    who: &Principal,
    name: &str,
) -> Result<()> {
    let me = require_account(who)?;
    validate_name_grammar("project", name)?;
    if system_admin(who) || me == name {
        return Ok(());
    }
    if RESERVED_NAMES.contains(&name) {
        return Err(reserved(name));
    }
    if accounts.user(name).await?.is_some() {
        return Err(Error::Denied(format!(
            "{name:?} is the personal namespace of the account of that name: only it and \
             system administrators may create it"
        )));
    }
    Ok(())
}

fn not_found(what: &str, name: &str) -> Error {
    Error::Meta(berth_meta::MetaError::NotFound(format!("{what} {name:?}")))
}

impl Registry {
    pub(crate) async fn require_project_admin(
        &self,
        who: &Principal,
        project: &str,
    ) -> Result<ProjectRecord> {
        require_account(who)?;
        let record = self
            .meta
            .project(project)
            .await?
            .ok_or_else(|| not_found("project", project))?;
        let repository: Repository = project.parse().map_err(|_| not_found("project", project))?;
        let allowed = allowed_actions(self.meta.as_ref(), who, &repository).await?;
        if !allowed.pull {
            // A private project is invisible to outsiders: the same answer as a missing one.
            return Err(not_found("project", project));
        }
        if !allowed.manage {
            return Err(Error::Denied(format!(
                "only an admin of project {project} may do this"
            )));
        }
        Ok(record)
    }

    /// Creates an account with a private personal namespace; returns the namespace's name,
    /// or `None` when a project of that name exists already (made before the account: it stays
    /// whose it was, and the account gets no namespace). A system administrator may use a
    /// reserved word, but never `anonymous`, the audit log's name for callers without one.
    pub async fn admin_create_user(
        &self,
        who: &Principal,
        name: &str,
        password: &str,
        make_admin: bool,
    ) -> Result<Option<String>> {
        require_system_admin(who)?;
        validate_name_grammar("account", name)?;
        if name == ANONYMOUS {
            return Err(Error::Invalid(format!(
                "the name {ANONYMOUS:?} is what the audit log calls callers without an account"
            )));
        }
        validate_password(password)?;
        let namespace_free = self.meta.project(name).await?.is_none();
        self.insert_account(name, password, make_admin, namespace_free.then_some(false))
            .await?;
        Ok(namespace_free.then(|| name.to_string()))
    }

    pub async fn admin_users(&self, who: &Principal) -> Result<Vec<UserRecord>> {
        require_system_admin(who)?;
        Ok(self.meta.users().await?)
    }

    pub async fn admin_delete_user(&self, who: &Principal, name: &str) -> Result<()> {
        require_system_admin(who)?;
        if matches!(who, Principal::User { name: me, .. } if me == name) {
            return Err(Error::Invalid("you cannot remove your own account".into()));
        }
        if !self.meta.delete_user(name).await? {
            return Err(not_found("user", name));
        }
        Ok(())
    }

    /// An account changes its own password; a system administrator anyone's.
    pub async fn change_password(&self, who: &Principal, name: &str, password: &str) -> Result<()> {
        let me = require_account(who)?;
        if me != name {
            require_system_admin(who)?;
        }
        validate_password(password)?;
        let hash = hash(password.to_string()).await?;
        if !self.meta.set_password(name, &hash).await? {
            return Err(not_found("user", name));
        }
        Ok(())
    }

    /// Any account may create a project; it becomes the project's admin.
    pub async fn admin_create_project(
        &self,
        who: &Principal,
        name: &str,
        public: bool,
    ) -> Result<()> {
        let me = require_account(who)?.to_string();
        may_create_project(self.meta.as_ref(), who, name).await?;
        let project = ProjectRecord {
            name: name.to_string(),
            public,
            owner: None,
            created_at: self.now(),
        };
        self.meta
            .create_project(&project, Some(&me))
            .await
            .map_err(Error::from)
    }

    /// The projects the caller can see: public ones, its own, all for a system administrator.
    pub async fn admin_projects(&self, who: &Principal) -> Result<Vec<ProjectRecord>> {
        let mut out = Vec::new();
        for p in self.meta.projects().await? {
            let Ok(repository) = p.name.parse::<Repository>() else {
                continue;
            };
            if p.public
                || allowed_actions(self.meta.as_ref(), who, &repository)
                    .await?
                    .pull
            {
                out.push(p);
            }
        }
        Ok(out)
    }

    pub async fn admin_set_project_public(
        &self,
        who: &Principal,
        name: &str,
        public: bool,
    ) -> Result<()> {
        self.require_project_admin(who, name).await?;
        self.meta.set_project_public(name, public).await?;
        Ok(())
    }

    /// Removes the project record (its members and robot grants); its repositories stay until
    /// deleted, unreachable to anyone but system administrators.
    pub async fn admin_delete_project(&self, who: &Principal, name: &str) -> Result<()> {
        self.require_project_admin(who, name).await?;
        self.meta.delete_project(name).await?;
        Ok(())
    }

    pub async fn admin_members(
        &self,
        who: &Principal,
        project: &str,
    ) -> Result<Vec<(String, Role)>> {
        // Members (and system administrators) see who else is; outsiders, even of a public
        // project, and robots do not.
        let me = require_account(who)?;
        let exists = self.meta.project(project).await?.is_some();
        if !exists || (!system_admin(who) && self.meta.role(project, me).await?.is_none()) {
            return Err(not_found("project", project));
        }
        Ok(self.meta.members(project).await?)
    }

    pub async fn admin_set_member(
        &self,
        who: &Principal,
        project: &str,
        user: &str,
        role: Role,
    ) -> Result<()> {
        self.require_project_admin(who, project).await?;
        Ok(self.meta.set_member(project, user, role).await?)
    }

    pub async fn admin_remove_member(
        &self,
        who: &Principal,
        project: &str,
        user: &str,
    ) -> Result<()> {
        self.require_project_admin(who, project).await?;
        if !self.meta.remove_member(project, user).await? {
            return Err(not_found("member", user));
        }
        Ok(())
    }

    /// Creates a robot account limited to `permissions`; the caller must administer every
    /// project named. The secret is returned once and stored only hashed.
    pub async fn admin_create_robot(
        &self,
        who: &Principal,
        name: &str,
        permissions: Vec<RobotPermission>,
        expires_at: Option<i64>,
    ) -> Result<NewRobot> {
        // Robots live in their own namespace (`robot$…`): reserved words are fine there.
        validate_name_grammar("robot", name)?;
        if permissions.is_empty() {
            return Err(Error::Invalid(
                "a robot account needs at least one project".into(),
            ));
        }
        for p in &permissions {
            self.require_project_admin(who, &p.project).await?;
            if p.actions.is_empty()
                || !p
                    .actions
                    .iter()
                    .all(|a| matches!(a.as_str(), "pull" | "push" | "delete"))
            {
                return Err(Error::Invalid(format!(
                    "robot actions are pull, push and delete (got {:?} for {})",
                    p.actions, p.project
                )));
            }
        }
        let secret = generate_secret();
        let secret_hash = hash(secret.clone()).await?;
        self.meta
            .create_robot(&RobotRecord {
                id: new_account_id(),
                name: name.to_string(),
                secret_hash,
                permissions,
                expires_at,
                disabled: false,
                created_at: self.now(),
                token_stamp: 0,
            })
            .await?;
        Ok(NewRobot {
            login: format!("{ROBOT_PREFIX}{name}"),
            secret,
        })
    }

    pub async fn admin_robots(&self, who: &Principal) -> Result<Vec<RobotRecord>> {
        require_system_admin(who)?;
        Ok(self.meta.robots().await?)
    }

    pub async fn admin_set_robot_disabled(
        &self,
        who: &Principal,
        name: &str,
        disabled: bool,
    ) -> Result<()> {
        require_system_admin(who)?;
        if !self.meta.set_robot_disabled(name, disabled).await? {
            return Err(not_found("robot account", name));
        }
        Ok(())
    }

    pub async fn admin_delete_robot(&self, who: &Principal, name: &str) -> Result<()> {
        require_system_admin(who)?;
        if !self.meta.delete_robot(name).await? {
            return Err(not_found("robot account", name));
        }
        Ok(())
    }
}
