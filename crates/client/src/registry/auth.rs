//! How the registry wants to be authenticated: the scheme learnt from `GET /v2/`, the
//! `Authorization` header of a request, tokens fetched per scope and cached
//! (distribution's `docs/spec/auth/token.md`; `oauth.md` for the refresh-token grant).

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use base64::Engine as _;
use reqwest::header::{self, HeaderMap, HeaderValue};
use reqwest::{Method, StatusCode, Url};
use serde::Deserialize;

use crate::challenge::{self, Challenge, Scheme};
use crate::error::{ClientError, Result};

use super::{ATTEMPTS, Login, RegistryClient, backoff, lock};

/// What the registry's `GET /v2/` said about authentication.
#[derive(Clone, Debug)]
pub(super) enum AuthScheme {
    None,
    Basic,
    Bearer { realm: Url, service: Option<String> },
}

#[derive(Clone)]
pub(super) struct CachedToken {
    token: String,
    expires: Instant,
}

#[derive(Deserialize)]
struct TokenResponse {
    token: Option<String>,
    access_token: Option<String>,
    expires_in: Option<u64>,
    refresh_token: Option<String>,
}

impl RegistryClient {
    /// `GET /v2/` without credentials, to learn the auth scheme.
    pub(super) async fn ping(&self) -> Result<()> {
        let url = self.url("v2/")?;
        let resp = self
            .http
            .get(url)
            .send()
            .await
            .map_err(|source| self.connect_error(source))?;
        let scheme = match resp.status() {
            StatusCode::UNAUTHORIZED => {
                let challenges = parse_challenges(resp.headers());
                if let Some(c) = challenges.iter().find(|c| c.scheme == Scheme::Bearer) {
                    let realm = c.realm().ok_or_else(|| {
                        ClientError::Protocol(format!(
                            "{}: Bearer challenge without a realm",
                            self.domain
                        ))
                    })?;
                    let realm = self.base.join(realm).map_err(|e| {
                        ClientError::Protocol(format!(
                            "{}: bad token realm {realm:?}: {e}",
                            self.domain
                        ))
                    })?;
                    AuthScheme::Bearer {
                        realm,
                        service: c.service().map(str::to_string),
                    }
                } else if challenges.iter().any(|c| c.scheme == Scheme::Basic) {
                    AuthScheme::Basic
                } else {
                    return Err(ClientError::Protocol(format!(
                        "{} answered GET /v2/ with 401 and no challenge berth understands",
                        self.domain
                    )));
                }
            }
            s if s.is_success() => AuthScheme::None,
            s => {
                return Err(ClientError::Protocol(format!(
                    "{} answered GET /v2/ with {s}: is it a registry?",
                    self.domain
                )));
            }
        };
        *lock(&self.scheme) = scheme;
        Ok(())
    }

    /// Checks the login against the registry: a token for no particular scope (or an
    /// authenticated `GET /v2/`). Returns the refresh token when the token server gave one,
    /// to be stored as docker's `identitytoken`.
    pub async fn verify_login(&self) -> Result<Option<String>> {
        let scheme = lock(&self.scheme).clone();
        match scheme {
            AuthScheme::None => Ok(None),
            AuthScheme::Basic => {
                let resp = self.send(Method::GET, "v2/", &[], Ok).await?;
                if resp.status() == StatusCode::UNAUTHORIZED {
                    return Err(ClientError::BadCredentials {
                        registry: self.domain.clone(),
                    });
                }
                self.expect_success(resp, "GET", "/v2/").await.map(|_| None)
            }
            AuthScheme::Bearer { realm, service } => {
                if self.login.is_none() {
                    return Err(ClientError::AuthenticationRequired {
                        registry: self.domain.clone(),
                    });
                }
                let token = self
                    .fetch_token(&realm, service.as_deref(), &[], true)
                    .await?;
                // The token must also open /v2/ itself.
                let resp = self
                    .http
                    .get(self.url("v2/")?)
                    .bearer_auth(&token.token)
                    .send()
                    .await
                    .map_err(|source| self.connect_error(source))?;
                if resp.status() == StatusCode::UNAUTHORIZED {
                    return Err(ClientError::BadCredentials {
                        registry: self.domain.clone(),
                    });
                }
                self.expect_success(resp, "GET", "/v2/").await?;
                Ok(lock(&self.refresh_token).clone())
            }
        }
    }

    /// The `Authorization` header for a request needing `scopes`, fetching a token if needed.
    pub(super) async fn authorization(
        &self,
        scopes: &BTreeSet<String>,
    ) -> Result<Option<HeaderValue>> {
        let scheme = lock(&self.scheme).clone();
        let value = match scheme {
            AuthScheme::None => return Ok(None),
            AuthScheme::Basic => match &self.login {
                Some(Login::Password { username, password }) => basic(username, password),
                Some(Login::IdentityToken { .. }) | None => return Ok(None),
            },
            AuthScheme::Bearer { realm, service } => {
                let key = scope_key(scopes);
                let cached = lock(&self.tokens).get(&key).cloned();
                let token = match cached {
                    Some(t) if t.expires > Instant::now() => t,
                    _ => {
                        let scopes: Vec<String> = scopes.iter().cloned().collect();
                        let t = self
                            .fetch_token(&realm, service.as_deref(), &scopes, false)
                            .await?;
                        lock(&self.tokens).insert(key, t.clone());
                        t
                    }
                };
                format!("Bearer {}", token.token)
            }
        };
        HeaderValue::from_str(&value).map(Some).map_err(|_| {
            ClientError::Protocol("credentials hold characters not allowed in a header".into())
        })
    }

    /// Asks the token server for a token (token.md "Requesting a Token"; oauth.md for the
    /// refresh-token grant).
    async fn fetch_token(
        &self,
        realm: &Url,
        service: Option<&str>,
        scopes: &[String],
        offline: bool,
    ) -> Result<CachedToken> {
        let mut attempt = 0;
        let resp = loop {
            attempt += 1;
            let req = match &self.login {
                Some(Login::IdentityToken { token, .. }) => {
                    let mut form = vec![
                        ("grant_type", "refresh_token".to_string()),
                        ("refresh_token", token.clone()),
                        ("client_id", "berth".to_string()),
                        ("access_type", "offline".to_string()),
                    ];
                    if let Some(s) = service {
                        form.push(("service", s.to_string()));
                    }
                    if !scopes.is_empty() {
                        form.push(("scope", scopes.join(" ")));
                    }
                    let body = serde_urlencoded::to_string(&form).map_err(|e| {
                        ClientError::Protocol(format!("cannot encode token request: {e}"))
                    })?;
                    self.http
                        .post(realm.clone())
                        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                        .body(body)
                }
                login => {
                    let mut url = realm.clone();
                    {
                        let mut q = url.query_pairs_mut();
                        if let Some(s) = service {
                            q.append_pair("service", s);
                        }
                        for s in scopes {
                            q.append_pair("scope", s);
                        }
                        if offline {
                            q.append_pair("offline_token", "true");
                            q.append_pair("client_id", "berth");
                        }
                    }
                    let req = self.http.get(url);
                    match login {
                        Some(Login::Password { username, password }) => {
                            req.header(header::AUTHORIZATION, basic(username, password))
                        }
                        _ => req,
                    }
                }
            };
            match req.send().await {
                Ok(r) if r.status().is_server_error() && attempt < ATTEMPTS => {
                    backoff(attempt).await
                }
                Ok(r) => break r,
                Err(e) if attempt < ATTEMPTS && (e.is_connect() || e.is_timeout()) => {
                    backoff(attempt).await
                }
                Err(source) => return Err(self.connect_error(source)),
            }
        };
        let status = resp.status();
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            return Err(if matches!(self.login, Some(Login::IdentityToken { .. })) {
                ClientError::LoginRevoked {
                    registry: self.domain.clone(),
                }
            } else if self.login.is_some() {
                ClientError::BadCredentials {
                    registry: self.domain.clone(),
                }
            } else {
                ClientError::AuthenticationRequired {
                    registry: self.domain.clone(),
                }
            });
        }
        let resp = self.expect_success(resp, "GET", realm.path()).await?;
        let body = resp
            .bytes()
            .await
            .map_err(|source| self.connect_error(source))?;
        let parsed: TokenResponse = serde_json::from_slice(&body).map_err(|e| {
            ClientError::Protocol(format!(
                "{}: token server sent invalid JSON: {e}",
                self.domain
            ))
        })?;
        let token = parsed
            .token
            .or(parsed.access_token)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                ClientError::Protocol(format!("{}: token server sent no token", self.domain))
            })?;
        if let Some(refresh) = parsed.refresh_token {
            *lock(&self.refresh_token) = Some(refresh);
        }
        // token.md: expires_in defaults to 60 seconds; keep a margin for slow requests.
        let lifetime = parsed.expires_in.unwrap_or(60).max(60);
        Ok(CachedToken {
            token,
            expires: Instant::now() + Duration::from_secs(lifetime.saturating_sub(10)),
        })
    }
}

pub(super) fn scope_key(scopes: &BTreeSet<String>) -> String {
    scopes.iter().cloned().collect::<Vec<_>>().join(" ")
}

fn basic(username: &str, password: &str) -> String {
    let encoded =
        base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"));
    format!("Basic {encoded}")
}

pub(super) fn parse_challenges(headers: &HeaderMap) -> Vec<Challenge> {
    headers
        .get_all(header::WWW_AUTHENTICATE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| challenge::parse(v).unwrap_or_default())
        .collect()
}
