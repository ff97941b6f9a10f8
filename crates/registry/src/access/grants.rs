//! The token endpoint's decisions (distribution's `docs/spec/auth/token.md`, `oauth.md`,
//! `scope.md`): who logs in (account credentials, or a refresh token), and which of the scopes
//! asked for a token grants: the intersection of what was asked and what is allowed ("Requesting
//! a Token"), a scope the caller may not use left out, not refused.

use std::net::IpAddr;
use std::time::{Duration, SystemTime};

use berth_oci::Repository;

use super::{Access, Caller, Credentials, Principal};
use crate::accounts::ROBOT_PREFIX;
use crate::audit::{Audit, AuditAction};
use crate::permissions::Actions;
use crate::token::{
    IssuedToken, MANAGEMENT_SCOPE, ResourceAccess, SigningKey, TokenIssuer, TokenVerifier,
};
use crate::{Error, Result};

/// Refresh tokens (`grant_type=refresh_token`) live this long.
const REFRESH_LIFETIME: Duration = Duration::from_secs(30 * 24 * 3600);

/// At most this many scopes of one request are looked at.
const MAX_SCOPES: usize = 32;

/// The token issuer and verifier of this registry, and refresh tokens (same key, another
/// audience, so one can never be used as the other).
pub struct Tokens {
    pub issuer: TokenIssuer,
    pub verifier: TokenVerifier,
    refresh_issuer: TokenIssuer,
    refresh_verifier: TokenVerifier,
}

impl Tokens {
    pub fn new(pkcs8: &[u8], service: &str, lifetime: Duration) -> Result<Tokens, String> {
        let key = || SigningKey::from_pkcs8(pkcs8).map_err(|e| e.to_string());
        let issuer = TokenIssuer::new(key()?, "berth", service, lifetime);
        let refresh_audience = format!("{service}/refresh");
        let refresh_issuer = TokenIssuer::new(key()?, "berth", &refresh_audience, REFRESH_LIFETIME);
        Ok(Tokens {
            verifier: issuer.verifier(),
            refresh_verifier: refresh_issuer.verifier(),
            issuer,
            refresh_issuer,
        })
    }
}

/// What the token endpoint hands out: an access token, and a refresh token when one was asked
/// for by an account.
#[derive(Debug)]
pub struct IssuedTokens {
    pub access: IssuedToken,
    pub refresh_token: Option<String>,
}

impl Access {
    /// The caller of a token request's `GET`: anonymous without credentials, else an account
    /// by its Basic credentials; a token is not a login.
    pub async fn token_caller(
        &self,
        credentials: &Credentials,
        client: Option<IpAddr>,
    ) -> Result<Caller> {
        if matches!(credentials, Credentials::None) {
            return Ok(Caller::Anonymous);
        }
        match self.identify(credentials, client).await {
            Ok(c @ Caller::Account(..)) => Ok(c),
            Ok(_) => Err(Error::TokenRefused("invalid credentials".into())),
            Err(Error::Unauthenticated { .. }) => {
                Err(Error::TokenRefused("incorrect username or password".into()))
            }
            Err(e) => Err(e),
        }
    }

    /// `grant_type=password` (oauth.md): the account of a name and password.
    pub async fn login(
        &self,
        user: &str,
        password: &str,
        client: Option<IpAddr>,
    ) -> Result<Caller> {
        match self.check_password(user, password, client).await? {
            Some((p, claim)) => Ok(Caller::Account(p, claim)),
            None => Err(Error::TokenRefused("incorrect username or password".into())),
        }
    }

    /// `grant_type=refresh_token` (oauth.md): the account a refresh token was issued to, as
    /// long as it may still log in.
    pub async fn refresh(&self, refresh_token: &str, client: Option<IpAddr>) -> Result<Caller> {
        let Some(tokens) = &self.tokens else {
            return Err(Error::TokenRefused("this registry issues no tokens".into()));
        };
        let Ok(claims) = tokens
            .refresh_verifier
            .verify(refresh_token, SystemTime::now())
        else {
            return Err(Error::TokenRefused("invalid refresh token".into()));
        };
        let current = self
            .principal_of_token(&claims.sub, claims.account.as_ref())
            .await?;
        match (current, claims.account) {
            (Some(p), Some(claim)) => Ok(Caller::Account(p, claim)),
            _ => {
                // A login by a known account that may no longer log in (a validly signed
                // refresh token: this cannot be sent in bulk by a stranger).
                let event = Audit::new(AuditAction::LoginFailed, &claims.sub).detail(
                    "refresh token revoked: password or role changed, account disabled, \
                     expired, removed or created again",
                );
                self.record(&claims.sub, client, event).await;
                Err(Error::TokenRefused(
                    "the refresh token was revoked (a password or role change, a disabled or \
                     removed account): log in again"
                        .into(),
                ))
            }
        }
    }

    /// Which of the requested `scopes` (`type:name:actions`, the first [`MAX_SCOPES`]) the
    /// caller is granted: repository actions its account may take, and the management scope
    /// (last) for account credentials only (a password or a refresh token), never a robot's,
    /// since the management API acts as the whole account.
    pub async fn grant_token_scopes(
        &self,
        caller: &Caller,
        scopes: &[&str],
    ) -> Result<Vec<ResourceAccess>> {
        let mut access: Vec<ResourceAccess> = Vec::new();
        let mut management = false;
        for scope in scopes.iter().take(MAX_SCOPES) {
            let Some((kind, name, actions)) = parse_scope(scope) else {
                continue;
            };
            if (kind, name) == MANAGEMENT_SCOPE {
                management = management_granted(caller, actions);
                continue;
            }
            if kind != "repository" {
                continue;
            }
            let Ok(repository) = name.parse::<Repository>() else {
                continue;
            };
            let allowed = self.allowed(caller, &repository).await?;
            add_grant(&mut access, &repository, granted_actions(actions, allowed));
        }
        if management {
            access.push(ResourceAccess {
                resource_type: MANAGEMENT_SCOPE.0.into(),
                name: MANAGEMENT_SCOPE.1.into(),
                actions: vec!["*".into()],
            });
        }
        Ok(access)
    }

    /// A token for `caller` granting what [`Access::grant_token_scopes`] grants of `scopes`,
    /// for `service` (this registry's, when named), with a refresh token when `offline` and
    /// the caller is an account. A token with the management scope is recorded in the audit
    /// log, from `client`.
    pub async fn issue_token(
        &self,
        service: Option<&str>,
        caller: &Caller,
        scopes: &[&str],
        offline: bool,
        client: Option<IpAddr>,
    ) -> Result<IssuedTokens> {
        let Some(tokens) = &self.tokens else {
            return Err(Error::TokenRefused("this registry issues no tokens".into()));
        };
        if let Some(s) = service
            && s != tokens.issuer.service()
        {
            return Err(Error::TokenRefused("unknown service".into()));
        }
        let access = self.grant_token_scopes(caller, scopes).await?;
        let management = access
            .iter()
            .any(|a| (a.resource_type.as_str(), a.name.as_str()) == MANAGEMENT_SCOPE);
        let subject = match caller.principal() {
            Principal::Anonymous => String::new(),
            Principal::User { name, .. } => name,
            Principal::Robot { name, .. } => format!("{ROBOT_PREFIX}{name}"),
        };
        let account = match caller {
            Caller::Account(_, claim) => Some(claim.clone()),
            _ => None,
        };
        let now = SystemTime::now();
        let issued = tokens
            .issuer
            .issue_to(&subject, account.clone(), access, now)
            .map_err(|e| Error::Internal(e.to_string()))?;
        let refresh_token = if offline && !subject.is_empty() {
            let refresh = tokens
                .refresh_issuer
                .issue_to(&subject, account, Vec::new(), now)
                .map_err(|e| Error::Internal(e.to_string()))?;
            Some(refresh.token)
        } else {
            None
        };
        if management {
            let scope = format!("{}:{}:*", MANAGEMENT_SCOPE.0, MANAGEMENT_SCOPE.1);
            let event = Audit::new(AuditAction::TokenManagement, scope)
                .detail(format!("expires_in={}", issued.expires_in));
            self.record(&subject, client, event).await;
        }
        Ok(IssuedTokens {
            access: issued,
            refresh_token,
        })
    }
}

/// `type:name:actions` (scope.md); the name may hold no `:`, the actions may.
pub(super) fn parse_scope(scope: &str) -> Option<(&str, &str, &str)> {
    let mut parts = scope.splitn(3, ':');
    Some((parts.next()?, parts.next()?, parts.next()?))
}

/// Whether a request for the management scope with `actions` is granted to `caller`: only
/// `*`, only to a user's account credentials.
pub(super) fn management_granted(caller: &Caller, actions: &str) -> bool {
    matches!(caller, Caller::Account(Principal::User { .. }, _))
        && actions.split(',').any(|a| a == "*")
}

/// The requested repository actions (`pull,push,...`) that `allowed` grants, in the order
/// asked; unknown ones are left out.
pub(super) fn granted_actions(requested: &str, allowed: Actions) -> Vec<String> {
    requested
        .split(',')
        .filter(|a| match *a {
            "pull" => allowed.pull,
            "push" => allowed.push,
            "delete" => allowed.delete,
            _ => false,
        })
        .map(str::to_string)
        .collect()
}

/// Adds `granted` on `repository` to `access`: to its entry when the repository was asked for
/// already (each action once), else as a new entry, even when nothing was granted.
pub(super) fn add_grant(
    access: &mut Vec<ResourceAccess>,
    repository: &Repository,
    granted: Vec<String>,
) {
    match access.iter_mut().find(|a| a.name == repository.as_str()) {
        Some(existing) => {
            for g in granted {
                if !existing.actions.contains(&g) {
                    existing.actions.push(g);
                }
            }
        }
        None => access.push(ResourceAccess {
            resource_type: "repository".into(),
            name: repository.to_string(),
            actions: granted,
        }),
    }
}
