//! Who is calling, and what they may do: the one access policy behind every `/v2` request, the
//! token endpoint (`grants.rs`) and the management API. The server only turns the
//! `Authorization` header into [`Credentials`], and a refusal into its status and challenge.
//!
//! A caller is anonymous, an account with checked credentials (`Basic`: a user's password or a
//! robot's secret, through the login limiter), or a token from the token endpoint, verified
//! (signature, `iss`, `aud`, `exp`, `nbf`) and only as good as its account now (immutable id and
//! token stamp). A token decides by its `access` claims; an account and anonymous by the role
//! rules of [`crate::permissions`] on the project as it is now. With accounts off
//! (`[auth] enabled = false`) every caller is anonymous and may do everything: the open
//! development registry.
//!
//! Refusals are [`Error::Unauthenticated`] (401 with a challenge: no, bad or too little
//! credentials), [`Error::Denied`] (403: an account without the right),
//! [`Error::ManagementScopeMissing`] (403 with a challenge), [`Error::LoginLocked`] (429) and,
//! at the token endpoint, [`Error::TokenRefused`].

mod grants;
#[cfg(test)]
mod tests;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::SystemTime;

use berth_meta::{Accounts, AuditLog, MetaStore, ProjectRecord, RobotPermission, SharedClock};
use berth_oci::Repository;

use crate::accounts::{ROBOT_PREFIX, dummy_hash, is_login_name, verify};
use crate::audit::{Audit, AuditAction, escape_control};
use crate::login_limit::{self, LimitError, LimitPolicy, LoginLimiter};
use crate::permissions::{Actions, Subject, allowed};
use crate::token::{AccountClaim, Claims, MANAGEMENT_SCOPE};
use crate::{Error, Result};

pub use grants::{IssuedTokens, Tokens};

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

/// What a request's `Authorization` header holds, as the server read it.
pub enum Credentials {
    /// No header.
    None,
    /// `Basic`: a user's name and password, or `robot$<name>` and its secret.
    Basic { user: String, password: String },
    /// `Bearer`: a token from the token endpoint.
    Bearer(String),
    /// A header that is neither (too long, another scheme, not decodable): refused with these
    /// words whenever accounts are on.
    Malformed(&'static str),
}

/// The caller of a request, authenticated.
#[derive(Clone, Debug)]
pub enum Caller {
    Anonymous,
    /// Basic credentials, checked (or a refresh token, at the token endpoint), with what a
    /// token issued to the account must carry.
    Account(Principal, AccountClaim),
    /// A verified token: what it grants, and whose it is (for the catalog).
    Token {
        claims: Claims,
        principal: Principal,
    },
}

impl Caller {
    pub fn principal(&self) -> Principal {
        match self {
            Caller::Anonymous => Principal::Anonymous,
            Caller::Account(p, _) | Caller::Token { principal: p, .. } => p.clone(),
        }
    }

    /// Whether the caller may use the management API: account credentials may, a token only
    /// when it was granted the management scope (`registry:management:*`).
    pub fn has_management_scope(&self) -> bool {
        match self {
            Caller::Anonymous => false,
            Caller::Account(..) => true,
            Caller::Token { claims, .. } => {
                claims.allows(MANAGEMENT_SCOPE.0, MANAGEMENT_SCOPE.1, "*")
            }
        }
    }
}

/// The `[auth]` settings the policy follows.
#[derive(Clone, Copy, Debug, Default)]
pub struct AccessOptions {
    /// A signed-in user's push to a project that does not exist creates it, private, with the
    /// user as its admin (`auto_create_projects`).
    pub auto_create_projects: bool,
    /// Anyone may create an account (`allow_signup`).
    pub allow_signup: bool,
}

/// The access service: authentication, the access decisions, token grants.
pub struct Access {
    accounts: Arc<dyn Accounts>,
    audit: Arc<dyn AuditLog>,
    /// The metadata store's: robots expire and rows are dated by it.
    clock: SharedClock,
    login_limiter: LoginLimiter,
    /// `None` when accounts are off (`[auth] enabled = false`).
    tokens: Option<Tokens>,
    options: AccessOptions,
}

impl Access {
    /// The policy over `meta`'s accounts, projects and robots. Without `tokens` accounts are
    /// off: everyone is anonymous and may do everything on `/v2`, and no token is issued.
    pub fn new(meta: Arc<dyn MetaStore>, tokens: Option<Tokens>, options: AccessOptions) -> Access {
        Access {
            accounts: meta.clone(),
            audit: meta.clone(),
            clock: meta.clock().clone(),
            login_limiter: LoginLimiter::new(meta, LimitPolicy::default()),
            tokens,
            options,
        }
    }

    /// Whether accounts are on (`[auth] enabled`).
    pub fn enabled(&self) -> bool {
        self.tokens.is_some()
    }

    /// The failed-login counts, for pruning them in the background.
    pub fn login_limiter(&self) -> &LoginLimiter {
        &self.login_limiter
    }

    /// The caller of a `/v2` or management request. With accounts off everyone is anonymous:
    /// the credentials are not looked at.
    pub async fn authenticate(
        &self,
        credentials: &Credentials,
        client: Option<IpAddr>,
    ) -> Result<Caller> {
        if !self.enabled() {
            return Ok(Caller::Anonymous);
        }
        self.identify(credentials, client).await
    }

    /// Who the credentials name: bad credentials or a bad token are `Unauthenticated`.
    async fn identify(&self, credentials: &Credentials, client: Option<IpAddr>) -> Result<Caller> {
        match credentials {
            Credentials::None => Ok(Caller::Anonymous),
            Credentials::Malformed(reason) => Err(unauthenticated(reason)),
            Credentials::Basic { user, password } => {
                match self.check_password(user, password, client).await? {
                    Some((p, claim)) => Ok(Caller::Account(p, claim)),
                    None => Err(unauthenticated("incorrect username or password")),
                }
            }
            Credentials::Bearer(token) => {
                let Some(tokens) = &self.tokens else {
                    return Err(unauthenticated("this registry issues no tokens"));
                };
                let claims = tokens
                    .verifier
                    .verify(token, SystemTime::now())
                    .map_err(|e| {
                        tracing::info!(error = %e, "token refused");
                        unauthenticated("invalid or expired token")
                    })?;
                let principal = if claims.sub.is_empty() {
                    Principal::Anonymous
                } else {
                    let current = self
                        .principal_of_token(&claims.sub, claims.account.as_ref())
                        .await?;
                    match current {
                        Some(p) => p,
                        None => {
                            return Err(unauthenticated(
                                "the token was revoked (a password or role change, a disabled or \
                                 removed account): log in again",
                            ));
                        }
                    }
                };
                Ok(Caller::Token { claims, principal })
            }
        }
    }

    /// Checks a password through the login limiter: a locked account or address is refused
    /// before any hashing work ([`Error::LoginLocked`]); failures and successes are recorded.
    /// A user name no account can have (`is_login_name`) fails without a password check, and
    /// is logged escaped (a newline or an escape sequence in it must not reach a terminal).
    async fn check_password(
        &self,
        user: &str,
        password: &str,
        client: Option<IpAddr>,
    ) -> Result<Option<(Principal, AccountClaim)>> {
        let shown;
        let (user, valid_name) = if is_login_name(user) {
            (user, true)
        } else {
            shown = escape_control(&user.chars().take(80).collect::<String>());
            (shown.as_str(), false)
        };
        let address = client.unwrap_or(IpAddr::from([0, 0, 0, 0]));
        let limiter = &self.login_limiter;
        let now = login_limit::now_millis();
        let checked = match limiter.check(user, address, now).await {
            Ok(checked) => checked,
            Err(LimitError::Locked(locked)) => {
                return Err(Error::LoginLocked {
                    retry_after_secs: locked.retry_after_secs(now),
                });
            }
            Err(LimitError::Meta(e)) => return Err(e.into()),
        };
        let found = if valid_name {
            self.authenticate_password(user, password).await?
        } else {
            None
        };
        let now = login_limit::now_millis();
        match &found {
            Some(_) => limiter.succeeded(user, checked, now).await?,
            None => {
                tracing::info!(account = user, %address, "failed login");
                // Requests refused during a lock-out (above) are not recorded: they cost
                // nothing, and an attacker must not be able to fill the log.
                let reason = if valid_name {
                    "incorrect username or password, or a disabled account"
                } else {
                    "a user name no account can have (shown escaped)"
                };
                let event = Audit::new(AuditAction::LoginFailed, user).detail(reason);
                self.record(user, client, event).await;
                // The limiter logs a lock-out itself; the answer says when to try again.
                if let Some(locked) = limiter.failed(user, address, now).await? {
                    let event = Audit::new(AuditAction::LoginFailed, user)
                        .detail(format!("locked out for {} s", locked.retry_after_secs(now)));
                    self.record(user, client, event).await;
                    return Err(Error::LoginLocked {
                        retry_after_secs: locked.retry_after_secs(now),
                    });
                }
            }
        }
        Ok(found)
    }

    /// Checks a username and password (or `robot$<name>` and its secret), without the login
    /// limiter: `None` when they do not match, the account is disabled or the robot expired;
    /// which of these is not told. With it, what a token issued to the account must carry.
    pub async fn authenticate_password(
        &self,
        username: &str,
        password: &str,
    ) -> Result<Option<(Principal, AccountClaim)>> {
        // Every refusal costs one password check, like a wrong password for a live account,
        // so that timing tells apart neither names nor disabled and expired accounts.
        if let Some(robot) = username.strip_prefix(ROBOT_PREFIX) {
            let Some(r) = self.accounts.robot(robot).await? else {
                let _ = verify(password, dummy_hash()?).await?;
                return Ok(None);
            };
            let expired = r.expires_at.is_some_and(|t| t <= self.clock.now());
            let matches = verify(password, r.secret_hash).await?;
            if r.disabled || expired || !matches {
                return Ok(None);
            }
            let claim = AccountClaim {
                id: r.id,
                stamp: r.token_stamp,
            };
            let principal = Principal::Robot {
                name: r.name,
                permissions: r.permissions,
            };
            return Ok(Some((principal, claim)));
        }
        let Some(u) = self.accounts.user(username).await? else {
            let _ = verify(password, dummy_hash()?).await?;
            return Ok(None);
        };
        let matches = verify(password, u.password_hash).await?;
        if u.disabled || !matches {
            return Ok(None);
        }
        let claim = AccountClaim {
            id: u.id,
            stamp: u.token_stamp,
        };
        let principal = Principal::User {
            name: u.name,
            system_admin: u.system_admin,
        };
        Ok(Some((principal, claim)))
    }

    /// The account a token was issued to, as it is now: `None` when it is disabled, expired
    /// or removed, when the name now belongs to another account (another id), or when its
    /// token stamp has moved on since (a password change, a lowered role, ...). A token
    /// without an account claim names no account and is refused.
    async fn principal_of_token(
        &self,
        username: &str,
        claim: Option<&AccountClaim>,
    ) -> Result<Option<Principal>> {
        let Some(claim) = claim else {
            return Ok(None);
        };
        if let Some(robot) = username.strip_prefix(ROBOT_PREFIX) {
            return Ok(self.accounts.robot(robot).await?.and_then(|r| {
                let expired = r.expires_at.is_some_and(|t| t <= self.clock.now());
                let current = r.id == claim.id && r.token_stamp == claim.stamp;
                (current && !r.disabled && !expired).then_some(Principal::Robot {
                    name: r.name,
                    permissions: r.permissions,
                })
            }));
        }
        Ok(self.accounts.user(username).await?.and_then(|u| {
            let current = u.id == claim.id && u.token_stamp == claim.stamp;
            (current && !u.disabled).then_some(Principal::User {
                name: u.name,
                system_admin: u.system_admin,
            })
        }))
    }

    /// The one access check of a `/v2` request on `repository`: a token by its `access` claims
    /// (short of them: `Unauthenticated` naming the scope, marked `insufficient_scope`, as
    /// token.md and RFC 6750 3.1 say), an account by its rights now (`Denied`), anonymous
    /// likewise (`Unauthenticated` naming the scope). A signed-in user allowed to push to a
    /// project that does not exist (`auto_create_projects`) creates it here, recorded in the
    /// audit log from `client`.
    pub async fn authorize(
        &self,
        caller: &Caller,
        repository: &Repository,
        action: Action,
        client: Option<IpAddr>,
    ) -> Result<()> {
        if !self.enabled() {
            return Ok(());
        }
        let scope = || Some((repository.clone(), action));
        match caller {
            Caller::Token { claims, .. } => {
                if !claims.allows("repository", repository.as_str(), action.as_str()) {
                    return Err(Error::Unauthenticated {
                        message: "the token does not grant this".into(),
                        scope: scope(),
                        insufficient_scope: true,
                    });
                }
            }
            Caller::Anonymous => {
                if !self.allowed(caller, repository).await?.allows(action) {
                    return Err(Error::Unauthenticated {
                        message: "authentication required".into(),
                        scope: scope(),
                        insufficient_scope: false,
                    });
                }
            }
            Caller::Account(..) => {
                if !self.allowed(caller, repository).await?.allows(action) {
                    return Err(Error::Denied(format!(
                        "requested access to the resource is denied: {} on {repository}",
                        action.as_str()
                    )));
                }
            }
        }
        if action == Action::Push
            && self.options.auto_create_projects
            && let Principal::User { name, .. } = caller.principal()
            && self.ensure_project(repository, &name).await?
        {
            let project = repository.project();
            tracing::info!(project, user = %name, "project created on push");
            let event = Audit::new(AuditAction::ProjectCreate, project)
                .project(project)
                .detail("created by a push (auto_create_projects)");
            self.record(&name, client, event).await;
        }
        Ok(())
    }

    /// `GET /v2/`: with accounts on, an anonymous caller is answered `Unauthenticated` (with the
    /// challenge), which is how clients learn where tokens come from (token.md).
    pub fn authorize_base(&self, caller: &Caller) -> Result<()> {
        if self.enabled() && matches!(caller, Caller::Anonymous) {
            return Err(unauthenticated("authentication required"));
        }
        Ok(())
    }

    /// Whether the catalog lists `repository` to the caller: what its account may pull now.
    pub async fn may_pull(&self, caller: &Caller, repository: &Repository) -> Result<bool> {
        Ok(!self.enabled() || self.allowed(caller, repository).await?.pull)
    }

    /// Whether a push may mount a blob from `source`: pull there by the account's rights as
    /// they are now and, for a token, by its claims too (docker asks for
    /// `repository:<from>:pull` with the mount's token; a token without it does not mount,
    /// whatever the account could do). A mount without a source would search repositories the
    /// caller may not read: never, with accounts on.
    pub async fn may_mount_from(
        &self,
        caller: &Caller,
        source: Option<&Repository>,
    ) -> Result<bool> {
        if !self.enabled() {
            return Ok(true);
        }
        let Some(source) = source else {
            return Ok(false);
        };
        if let Caller::Token { claims, .. } = caller
            && !claims.allows("repository", source.as_str(), Action::Pull.as_str())
        {
            return Ok(false);
        }
        Ok(self.allowed(caller, source).await?.pull)
    }

    /// The management API's rule: authenticated, never a robot, and holding the management
    /// scope when the caller came with a token. Returns who acts.
    pub fn authorize_management(&self, caller: &Caller) -> Result<Principal> {
        let principal = caller.principal();
        if principal == Principal::Anonymous {
            return Err(unauthenticated("authentication required"));
        }
        if matches!(principal, Principal::Robot { .. }) {
            return Err(Error::Denied(
                "robot accounts cannot use the management API".into(),
            ));
        }
        if !caller.has_management_scope() {
            return Err(Error::ManagementScopeMissing);
        }
        Ok(principal)
    }

    /// Sign-up is open only with accounts on and `allow_signup`.
    pub fn authorize_signup(&self) -> Result<()> {
        if !self.enabled() || !self.options.allow_signup {
            return Err(Error::Denied(
                "sign-up is closed on this registry; ask an administrator for an account".into(),
            ));
        }
        Ok(())
    }

    /// What `who` may do on `repository`'s project.
    pub async fn allowed_actions(
        &self,
        who: &Principal,
        repository: &Repository,
    ) -> Result<Actions> {
        allowed_actions(self.accounts.as_ref(), who, repository).await
    }

    /// What the caller's account may do on `repository`, with `auto_create_projects` letting a
    /// signed-in user push to a project that does not exist yet.
    async fn allowed(&self, caller: &Caller, repository: &Repository) -> Result<Actions> {
        let principal = caller.principal();
        let actions = self.allowed_actions(&principal, repository).await?;
        if actions == Actions::NONE
            && self.options.auto_create_projects
            && matches!(principal, Principal::User { .. })
            && self.accounts.project(repository.project()).await?.is_none()
            // The same names a user may not create through the API (reserved words, another
            // account's namespace) are not created by a push either.
            && crate::admin::may_create_project(
                self.accounts.as_ref(),
                &principal,
                repository.project(),
            )
            .await
            .is_ok()
        {
            return Ok(Actions {
                pull: true,
                push: true,
                ..Actions::NONE
            });
        }
        Ok(actions)
    }

    /// Creates `repository`'s project, private, with `admin` as its admin, unless it exists
    /// (`auto_create_projects`). Returns whether it was created.
    async fn ensure_project(&self, repository: &Repository, admin: &str) -> Result<bool> {
        let name = repository.project();
        if self.accounts.project(name).await?.is_some() {
            return Ok(false);
        }
        let project = ProjectRecord {
            name: name.to_string(),
            public: false,
            owner: None,
            created_at: self.clock.now(),
        };
        match self.accounts.create_project(&project, Some(admin)).await {
            Ok(()) => Ok(true),
            // Created meanwhile by another request.
            Err(berth_meta::MetaError::Conflict(_)) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    async fn record(&self, actor: &str, client: Option<IpAddr>, event: Audit) {
        let now = self.clock.now();
        crate::audit::record(self.audit.as_ref(), now, actor, client, event).await;
    }
}

/// What `who` may do on `repository`'s project, by the rules of [`crate::permissions`] on the
/// project, membership and robot grants as the database holds them now.
pub(crate) async fn allowed_actions(
    accounts: &dyn Accounts,
    who: &Principal,
    repository: &Repository,
) -> Result<Actions> {
    let project_name = repository.project();
    let project = accounts.project(project_name).await?;
    let subject = match who {
        Principal::Anonymous => Subject::Anonymous,
        Principal::User { name, system_admin } => Subject::User {
            system_admin: *system_admin,
            role: match &project {
                Some(_) if !system_admin => accounts.role(project_name, name).await?,
                _ => None,
            },
        },
        Principal::Robot { permissions, .. } => Subject::Robot {
            granted: robot_actions(permissions, project_name),
        },
    };
    Ok(allowed(&subject, project.as_ref()))
}

fn robot_actions<'a>(permissions: &'a [RobotPermission], project: &str) -> Option<&'a [String]> {
    permissions
        .iter()
        .find(|p| p.project == project)
        .map(|p| p.actions.as_slice())
}

fn unauthenticated(message: &str) -> Error {
    Error::Unauthenticated {
        message: message.to_string(),
        scope: None,
        insufficient_scope: false,
    }
}
