//! The typed client of berth's management API (`/api/v1/...`), which `berth admin` and `berth
//! signup` use: one method per operation, the request and response bodies from `berth-api`
//! (the same types the server reads and writes), every name escaped into its path segment.
//! Authentication is [`RegistryClient::api`]'s: Basic, or a token for the management scope.

use berth_api::{
    AuditEntry, AuditParams, CreatedRobot, GcRequest, Member, Membership, NewPassword, NewProject,
    NewRobot, NewUser, NewUserCreated, Project, ProjectUpdate, ProjectVisibility, Quota,
    RetentionRun, Robot, RobotState, RobotUpdate, SignedUp, Signup, TagPatterns, User, paths,
};
use reqwest::Method;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::error::{ClientError, Result};
use crate::registry::RegistryClient;

impl RegistryClient {
    /// One management call: `body` sent as JSON, the answer read as `T` (`()` for none).
    async fn admin<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&(impl Serialize + ?Sized)>,
    ) -> Result<T> {
        let body = body
            .map(serde_json::to_value)
            .transpose()
            .map_err(|e| ClientError::Protocol(format!("cannot encode the request: {e}")))?;
        let answer = self.api(method, path, body.as_ref()).await?;
        serde_json::from_value(answer).map_err(|e| {
            ClientError::Protocol(format!(
                "{path} answered with a document berth does not know: {e}"
            ))
        })
    }

    pub async fn admin_create_user(&self, user: &NewUser) -> Result<NewUserCreated> {
        self.admin(Method::POST, paths::USERS, Some(user)).await
    }

    pub async fn admin_users(&self) -> Result<Vec<User>> {
        self.admin(Method::GET, paths::USERS, None::<&()>).await
    }

    pub async fn admin_delete_user(&self, name: &str) -> Result<()> {
        self.admin(Method::DELETE, &paths::user(name), None::<&()>)
            .await
    }

    pub async fn admin_change_password(&self, name: &str, password: &NewPassword) -> Result<()> {
        self.admin(Method::PUT, &paths::user_password(name), Some(password))
            .await
    }

    pub async fn admin_create_project(&self, project: &NewProject) -> Result<Project> {
        self.admin(Method::POST, paths::PROJECTS, Some(project))
            .await
    }

    pub async fn admin_projects(&self) -> Result<Vec<Project>> {
        self.admin(Method::GET, paths::PROJECTS, None::<&()>).await
    }

    pub async fn admin_set_project_public(
        &self,
        name: &str,
        update: &ProjectUpdate,
    ) -> Result<ProjectVisibility> {
        self.admin(Method::PATCH, &paths::project(name), Some(update))
            .await
    }

    pub async fn admin_delete_project(&self, name: &str) -> Result<()> {
        self.admin(Method::DELETE, &paths::project(name), None::<&()>)
            .await
    }

    /// What a project holds (the server's usage report, as it sends it).
    pub async fn admin_project_usage(&self, name: &str) -> Result<Value> {
        self.admin(Method::GET, &paths::usage(name), None::<&()>)
            .await
    }

    pub async fn admin_set_quota(&self, name: &str, quota: &Quota) -> Result<()> {
        self.admin(Method::PUT, &paths::quota(name), Some(quota))
            .await
    }

    pub async fn admin_immutable_tags(&self, name: &str) -> Result<TagPatterns> {
        self.admin(Method::GET, &paths::immutable_tags(name), None::<&()>)
            .await
    }

    pub async fn admin_set_immutable_tags(&self, name: &str, tags: &TagPatterns) -> Result<()> {
        self.admin(Method::PUT, &paths::immutable_tags(name), Some(tags))
            .await
    }

    /// A project's retention policy (`{"rules": [...]}`, as the server documents it).
    pub async fn admin_retention_policy(&self, name: &str) -> Result<Value> {
        self.admin(Method::GET, &paths::retention(name), None::<&()>)
            .await
    }

    pub async fn admin_set_retention_policy(&self, name: &str, policy: &Value) -> Result<()> {
        self.admin(Method::PUT, &paths::retention(name), Some(policy))
            .await
    }

    /// Applies a project's retention policy now; the server's report.
    pub async fn admin_run_retention(&self, name: &str, run: &RetentionRun) -> Result<Value> {
        self.admin(Method::POST, &paths::retention_run(name), Some(run))
            .await
    }

    pub async fn admin_members(&self, project: &str) -> Result<Vec<Member>> {
        self.admin(Method::GET, &paths::members(project), None::<&()>)
            .await
    }

    pub async fn admin_set_member(
        &self,
        project: &str,
        user: &str,
        membership: &Membership,
    ) -> Result<Member> {
        self.admin(Method::PUT, &paths::member(project, user), Some(membership))
            .await
    }

    pub async fn admin_remove_member(&self, project: &str, user: &str) -> Result<()> {
        self.admin(Method::DELETE, &paths::member(project, user), None::<&()>)
            .await
    }

    pub async fn admin_create_robot(&self, robot: &NewRobot) -> Result<CreatedRobot> {
        self.admin(Method::POST, paths::ROBOTS, Some(robot)).await
    }

    pub async fn admin_robots(&self) -> Result<Vec<Robot>> {
        self.admin(Method::GET, paths::ROBOTS, None::<&()>).await
    }

    pub async fn admin_update_robot(&self, name: &str, update: &RobotUpdate) -> Result<RobotState> {
        self.admin(Method::PATCH, &paths::robot(name), Some(update))
            .await
    }

    pub async fn admin_delete_robot(&self, name: &str) -> Result<()> {
        self.admin(Method::DELETE, &paths::robot(name), None::<&()>)
            .await
    }

    /// One page of the audit log, newest first.
    pub async fn admin_audit(&self, params: &AuditParams) -> Result<Vec<AuditEntry>> {
        let query = serde_urlencoded::to_string(params)
            .map_err(|e| ClientError::Protocol(format!("cannot encode the query: {e}")))?;
        let path = format!("{}?{query}", paths::AUDIT);
        self.admin(Method::GET, &path, None::<&()>).await
    }

    /// Collects garbage now; the server's report.
    pub async fn admin_collect_garbage(&self, request: &GcRequest) -> Result<Value> {
        self.admin(Method::POST, paths::GC, Some(request)).await
    }

    /// A new account with its personal namespace, where the registry lets anyone sign up.
    pub async fn signup(&self, signup: &Signup) -> Result<SignedUp> {
        self.admin(Method::POST, paths::SIGNUP, Some(signup)).await
    }
}
