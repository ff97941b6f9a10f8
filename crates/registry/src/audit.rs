//! The audit log: what is recorded, and who may read it. The server records an event after an
//! operation succeeded (or a login failed), with the client's address it alone knows.

use std::net::IpAddr;

use berth_meta::{AuditEvent, AuditQuery, AuditRecord, unix_now};
use berth_oci::Repository;

use crate::accounts::ROBOT_PREFIX;
use crate::{Error, Principal, Registry, Result};

/// Most events one query returns.
pub const MAX_AUDIT_PAGE: u32 = 1000;

/// What happened. The names are stable: scripts filter on them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuditAction {
    /// A manifest was pushed (with its tags).
    Push,
    DeleteTag,
    DeleteManifest,
    DeleteBlob,
    /// Wrong credentials, an unknown or disabled account, or an account locked out.
    LoginFailed,
    UserCreate,
    UserSignup,
    UserDelete,
    UserPassword,
    ProjectCreate,
    ProjectDelete,
    ProjectVisibility,
    MemberSet,
    MemberRemove,
    RobotCreate,
    RobotDisable,
    RobotEnable,
    RobotDelete,
    /// A garbage collection run, with what it freed.
    GarbageCollection,
    /// A project's quota, immutable tag or retention rules changed.
    ProjectSettings,
    /// A tag deleted by the project's retention policy.
    RetentionDelete,
}

impl AuditAction {
    pub const ALL: [AuditAction; 21] = [
        AuditAction::Push,
        AuditAction::DeleteTag,
        AuditAction::DeleteManifest,
        AuditAction::DeleteBlob,
        AuditAction::LoginFailed,
        AuditAction::UserCreate,
        AuditAction::UserSignup,
        AuditAction::UserDelete,
        AuditAction::UserPassword,
        AuditAction::ProjectCreate,
        AuditAction::ProjectDelete,
        AuditAction::ProjectVisibility,
        AuditAction::MemberSet,
        AuditAction::MemberRemove,
        AuditAction::RobotCreate,
        AuditAction::RobotDisable,
        AuditAction::RobotEnable,
        AuditAction::RobotDelete,
        AuditAction::GarbageCollection,
        AuditAction::ProjectSettings,
        AuditAction::RetentionDelete,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AuditAction::Push => "push",
            AuditAction::DeleteTag => "delete.tag",
            AuditAction::DeleteManifest => "delete.manifest",
            AuditAction::DeleteBlob => "delete.blob",
            AuditAction::LoginFailed => "login.failed",
            AuditAction::UserCreate => "user.create",
            AuditAction::UserSignup => "user.signup",
            AuditAction::UserDelete => "user.delete",
            AuditAction::UserPassword => "user.password",
            AuditAction::ProjectCreate => "project.create",
            AuditAction::ProjectDelete => "project.delete",
            AuditAction::ProjectVisibility => "project.visibility",
            AuditAction::MemberSet => "member.set",
            AuditAction::MemberRemove => "member.remove",
            AuditAction::RobotCreate => "robot.create",
            AuditAction::RobotDisable => "robot.disable",
            AuditAction::RobotEnable => "robot.enable",
            AuditAction::RobotDelete => "robot.delete",
            AuditAction::GarbageCollection => "gc",
            AuditAction::ProjectSettings => "project.settings",
            AuditAction::RetentionDelete => "retention.delete",
        }
    }
}

/// One event to record: what, on which resource, in which project.
#[derive(Clone, Debug)]
pub struct Audit {
    action: AuditAction,
    resource: String,
    project: Option<String>,
    detail: String,
}

impl Audit {
    /// The event as the log stores it: done now by `actor` from `source`.
    pub fn at(self, actor: &str, source: Option<IpAddr>) -> AuditEvent {
        AuditEvent {
            at: unix_now(),
            actor: actor.chars().take(256).collect(),
            source: source.map(|a| a.to_string()),
            action: self.action.as_str().to_string(),
            // Names come from requests (a failed login's user name): bounded like the actor.
            project: self.project,
            resource: self.resource.chars().take(512).collect(),
            detail: self.detail.chars().take(512).collect(),
        }
    }

    pub fn new(action: AuditAction, resource: impl Into<String>) -> Self {
        Self {
            action,
            resource: resource.into(),
            project: None,
            detail: String::new(),
        }
    }

    /// An event on a repository: its project is the repository's.
    pub fn on_repository(action: AuditAction, repository: &Repository, what: String) -> Self {
        Self::new(action, what).project(repository.project())
    }

    pub fn project(mut self, project: impl Into<String>) -> Self {
        self.project = Some(project.into());
        self
    }

    pub fn detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = detail.into();
        self
    }
}

/// How a principal appears in the log.
pub fn actor_name(who: &Principal) -> String {
    match who {
        Principal::Anonymous => "anonymous".into(),
        Principal::User { name, .. } => name.clone(),
        Principal::Robot { name, .. } => format!("{ROBOT_PREFIX}{name}"),
    }
}

impl Registry {
    /// Appends an event. The operation it describes has already happened, so a failure to
    /// record is logged (as an error, with the event) rather than undoing or failing it.
    pub async fn record(&self, actor: &str, source: Option<IpAddr>, event: Audit) {
        let event = event.at(actor, source);
        if let Err(e) = self.meta.record_event(&event).await {
            tracing::error!(error = %e, ?event, "could not write the audit log");
        }
    }

    /// Reads the log: system administrators read everything; a project admin reads the events
    /// of a project it administers (the query must name it).
    pub async fn audit_events(
        &self,
        who: &Principal,
        mut query: AuditQuery,
    ) -> Result<Vec<AuditRecord>> {
        query.limit = query.limit.clamp(1, MAX_AUDIT_PAGE);
        if let Some(action) = &query.action
            && !AuditAction::ALL
                .iter()
                .any(|a| a.as_str() == action || a.as_str().starts_with(action.as_str()))
        {
            return Err(Error::Invalid(format!(
                "unknown audit action {:?}: one of {} (or a prefix ending in '.')",
                action.chars().take(50).collect::<String>(),
                AuditAction::ALL.map(AuditAction::as_str).join(", ")
            )));
        }
        let system_admin = matches!(
            who,
            Principal::User {
                system_admin: true,
                ..
            }
        );
        if !system_admin {
            let Some(project) = &query.project else {
                return Err(Error::Denied(
                    "only a system administrator may read the whole audit log; project admins \
                     name their project"
                        .into(),
                ));
            };
            self.require_project_admin(who, project).await?;
        }
        Ok(self.meta.events(&query).await?)
    }
}
