//! Signed access tokens for Docker token auth: the Bearer tokens `/auth/token` hands out and
//! every protected request presents.
//!
//! The format is the one distribution's registry understands (`docs/spec/auth/jwt.md`,
//! "Getting a Bearer Token"): a JWT in JWS compact serialization,
//! `base64url(header) "." base64url(claims) "." base64url(signature)`, without padding.
//!
//! - **Header** (jwt.md, item 1 "Headers"): `{"alg":"ES256","typ":"JWT","kid":"<key id>"}`. The
//!   key id has the libtrust form distribution uses (`PYYO:TEWU:...`, see [`SigningKey::key_id`]).
//! - **Claims** (jwt.md, item 2 "Claim Set"): `iss`, `sub` (the account; `""` for anonymous),
//!   `aud` (the service name from the `WWW-Authenticate` challenge), `exp`, `nbf`, `iat`, `jti`,
//!   and the private `access` claim listing `{type, name, actions}` entries. The token server
//!   puts only the intersection of what was asked and what is allowed there (token.md,
//!   "Requesting a Token"); this module signs what it is given and checks nothing about roles.
//! - **Signature** (jwt.md, item 3 "Signature"): ES256, ECDSA on P-256 with SHA-256, as the
//!   64-byte `r || s` of JWA section 3.4. ES256 is what jwt.md specifies and what distribution's
//!   own token verifier expects; an asymmetric key also means a verifier never holds the means
//!   to mint tokens, and the public key alone is enough to check them (jwt.md, "Verifying the
//!   token": "the registry only needs to be supplied with the trusted public keys").
//!
//! Verification (jwt.md, "Verifying the token") accepts ES256 only, whatever the header says,
//! so `none`, `HS256` (with the public key as an HMAC secret) and `RS256` are refused before
//! any key is touched. The signature is checked before the claims are even parsed. Each
//! refusal is its own [`TokenError`] variant, for logs and tests; the server answers all of
//! them with 401 `UNAUTHORIZED`.
//!
//! Clock skew: `nbf` is given [`CLOCK_SKEW`] (60 s) of leeway, so a replica whose clock runs
//! behind the issuing one still accepts a fresh token. `exp` gets none: a token is refused
//! from its `exp` second on (`exp <= now`). Refusing a token a little early costs the client
//! one more round trip to `/auth/token` (clients do that on any 401), while accepting one late
//! would stretch the life of a leaked token beyond what was issued.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::rand::{SecureRandom, SystemRandom};
use ring::signature::{
    ECDSA_P256_SHA256_FIXED, ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair,
    UnparsedPublicKey,
};
use serde::{Deserialize, Serialize};

/// The only signature algorithm issued or accepted.
pub const ALGORITHM: &str = "ES256";

/// Tokens longer than this are refused before any decoding. Ours are a few hundred bytes plus
/// about 60 per access entry; 8 KiB also keeps the `Authorization` header within what common
/// proxies forward.
pub const MAX_TOKEN_LEN: usize = 8 * 1024;

/// Leeway granted on `nbf` for clocks that disagree between replicas. None is granted on
/// `exp` (see the module documentation).
pub const CLOCK_SKEW: Duration = Duration::from_secs(60);

/// How long a token lives unless configured otherwise.
pub const DEFAULT_LIFETIME: Duration = Duration::from_secs(5 * 60);

/// The shortest lifetime issued: token.md ("Token Response Fields", `expires_in`) says a token
/// "should never be returned with less than 60 seconds to live".
pub const MIN_LIFETIME: Duration = Duration::from_secs(60);

/// Why a token could not be issued or was refused.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum TokenError {
    #[error("token is {len} bytes, over the {limit} byte limit")]
    TooLarge { len: usize, limit: usize },
    #[error("token is not three base64url parts separated by '.'")]
    NotCompact,
    #[error("token {part} is not valid unpadded base64url")]
    Base64 { part: &'static str },
    #[error("token {part} is not the expected JSON: {reason}")]
    Json { part: &'static str, reason: String },
    #[error("token algorithm {0:?} is not accepted, only ES256")]
    UnsupportedAlgorithm(String),
    #[error("token header marks extensions as critical, none are supported")]
    CriticalHeader,
    #[error("token header has no key id")]
    MissingKeyId,
    #[error("token was signed with unknown key {0:?}")]
    UnknownKey(String),
    #[error("token signature does not verify")]
    BadSignature,
    #[error("token issuer {found:?} is not trusted")]
    WrongIssuer { found: String },
    #[error("token audience {found:?} is not this service")]
    WrongAudience { found: String },
    #[error("token expired at {exp}, it is now {now} (seconds since the epoch)")]
    Expired { exp: u64, now: u64 },
    #[error("token is not valid before {nbf}, it is now {now} (seconds since the epoch)")]
    NotYetValid { nbf: u64, now: u64 },
    #[error("the clock reads a time before 1970")]
    ClockBeforeEpoch,
    #[error("signing key rejected: {0}")]
    InvalidKey(String),
    #[error("{0} failed")]
    Crypto(&'static str),
}

pub type Result<T, E = TokenError> = std::result::Result<T, E>;

/// The key tokens are signed with: an ECDSA P-256 key pair, kept as PKCS#8 so the server can
/// store it with the metadata and every replica signs with the same key.
pub struct SigningKey {
    pair: EcdsaKeyPair,
    pkcs8: Vec<u8>,
    key_id: String,
    rng: SystemRandom,
}

impl SigningKey {
    /// A new random key.
    pub fn generate() -> Result<Self> {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .map_err(|_| TokenError::Crypto("generating a signing key"))?;
        Self::from_pkcs8(pkcs8.as_ref())
    }

    /// A key stored earlier with [`SigningKey::pkcs8`].
    pub fn from_pkcs8(pkcs8: &[u8]) -> Result<Self> {
        let rng = SystemRandom::new();
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8, &rng)
            .map_err(|e| TokenError::InvalidKey(e.to_string()))?;
        let key_id = key_id_of(pair.public_key().as_ref());
        Ok(Self {
            pair,
            pkcs8: pkcs8.to_vec(),
            key_id,
            rng,
        })
    }

    /// The PKCS#8 document to persist. Secret: whoever holds it can mint tokens.
    pub fn pkcs8(&self) -> &[u8] {
        &self.pkcs8
    }

    /// The `kid` written in token headers, derived from the public key only, so it is the same
    /// on every replica and after a restart. It is libtrust's key id, as in distribution and
    /// jwt.md's example: SHA-256 of the DER `SubjectPublicKeyInfo`, first 240 bits, base32,
    /// in colon-separated groups of four (`PYYO:TEWU:V7JH:...`).
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// The public key as an uncompressed SEC1 point (`0x04 || x || y`, 65 bytes).
    pub fn public_key(&self) -> &[u8] {
        self.pair.public_key().as_ref()
    }

    /// What a verifier needs to check this key's tokens.
    pub fn verification_key(&self) -> VerificationKey {
        VerificationKey {
            key_id: self.key_id.clone(),
            public_key: self.public_key().to_vec(),
        }
    }

    fn sign(&self, message: &[u8]) -> Result<Vec<u8>> {
        let signature = self
            .pair
            .sign(&self.rng, message)
            .map_err(|_| TokenError::Crypto("signing a token"))?;
        Ok(signature.as_ref().to_vec())
    }
}

impl fmt::Debug for SigningKey {
    // Never print the private key.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

/// A public key tokens may be signed with, and its key id. A verifier holds one per key it
/// trusts, so a retired key can keep verifying its last tokens after a rotation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerificationKey {
    key_id: String,
    public_key: Vec<u8>,
}

impl VerificationKey {
    /// A P-256 public key as an uncompressed SEC1 point (`0x04 || x || y`), as returned by
    /// [`SigningKey::public_key`]. Its key id is derived the same way.
    pub fn from_public_key(public_key: &[u8]) -> Result<Self> {
        if public_key.len() != 65 || public_key[0] != 0x04 {
            return Err(TokenError::InvalidKey(
                "not an uncompressed P-256 public key (65 bytes starting with 0x04)".into(),
            ));
        }
        Ok(Self {
            key_id: key_id_of(public_key),
            public_key: public_key.to_vec(),
        })
    }

    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    pub fn public_key(&self) -> &[u8] {
        &self.public_key
    }
}

/// One entry of the `access` claim (jwt.md, "Claim Set"): the actions granted on one
/// resource, e.g. `{"type":"repository","name":"team/web","actions":["pull","push"]}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceAccess {
    #[serde(rename = "type")]
    pub resource_type: String,
    pub name: String,
    pub actions: Vec<String>,
}

impl ResourceAccess {
    /// Access to a repository, the usual kind.
    pub fn repository(name: impl Into<String>, actions: &[&str]) -> Self {
        Self {
            resource_type: "repository".into(),
            name: name.into(),
            actions: actions.iter().map(|a| a.to_string()).collect(),
        }
    }
}

/// The claim set of a token (jwt.md, "Claim Set"). Times are seconds since the epoch.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The token server that issued the token.
    pub iss: String,
    /// The account the token was issued to; empty for an anonymous client.
    pub sub: String,
    /// The service the token is meant for.
    pub aud: String,
    pub exp: u64,
    pub nbf: u64,
    pub iat: u64,
    /// Unique per token (16 random bytes, hex).
    pub jti: String,
    #[serde(default)]
    pub access: Vec<ResourceAccess>,
    /// berth's own claim: the account's immutable id and token stamp when the token was
    /// issued. The server refuses the token once the account is gone, re-created under the
    /// same name, or its stamp has moved on (`access::Access`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<AccountClaim>,
}

/// Which account a token was issued to, beyond its name (see [`Claims::account`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountClaim {
    pub id: String,
    pub stamp: i64,
}

/// The resource type and name of the management API's scope (`registry:management:*`),
/// which `berth admin` asks for and a repository-scoped token lacks.
pub const MANAGEMENT_SCOPE: (&str, &str) = ("registry", "management");

impl Claims {
    /// Whether the token grants `action` on the resource. An entry whose actions include `*`
    /// grants every action on that resource, as in distribution's token access controller;
    /// the token server decides whether it ever issues one.
    pub fn allows(&self, resource_type: &str, name: &str, action: &str) -> bool {
        self.access.iter().any(|entry| {
            entry.resource_type == resource_type
                && entry.name == name
                && entry.actions.iter().any(|a| a == action || a == "*")
        })
    }
}

/// A freshly signed token and what the `/auth/token` response says about it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IssuedToken {
    pub token: String,
    /// Seconds the token lives from `issued_at` (token.md, `expires_in`).
    pub expires_in: u64,
    /// When it was issued, to the second (the `iat` claim).
    pub issued_at: SystemTime,
}

impl IssuedToken {
    /// `issued_at` in RFC 3339 UTC, e.g. `2026-11-29T04:00:00Z`, for the response's
    /// `issued_at` field (token.md, "Token Response Fields").
    pub fn issued_at_text(&self) -> String {
        let secs = self
            .issued_at
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        rfc3339_utc(secs)
    }
}

/// Signs tokens for one service.
#[derive(Debug)]
pub struct TokenIssuer {
    key: SigningKey,
    issuer: String,
    service: String,
    lifetime: Duration,
}

impl TokenIssuer {
    /// `issuer` goes in `iss`, `service` in `aud`. A `lifetime` under [`MIN_LIFETIME`] is
    /// raised to it; sub-second parts are dropped.
    pub fn new(
        key: SigningKey,
        issuer: impl Into<String>,
        service: impl Into<String>,
        lifetime: Duration,
    ) -> Self {
        Self {
            key,
            issuer: issuer.into(),
            service: service.into(),
            lifetime: Duration::from_secs(lifetime.max(MIN_LIFETIME).as_secs()),
        }
    }

    pub fn key(&self) -> &SigningKey {
        &self.key
    }

    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    pub fn service(&self) -> &str {
        &self.service
    }

    pub fn lifetime(&self) -> Duration {
        self.lifetime
    }

    /// A verifier for the tokens this issuer signs.
    pub fn verifier(&self) -> TokenVerifier {
        TokenVerifier::with_keys(
            self.issuer.clone(),
            self.service.clone(),
            [self.key.verification_key()],
        )
    }

    /// A token for `subject` (`""` for anonymous) granting exactly `access`, valid from `now`
    /// for the issuer's lifetime.
    pub fn issue(
        &self,
        subject: &str,
        access: Vec<ResourceAccess>,
        now: SystemTime,
    ) -> Result<IssuedToken> {
        self.issue_to(subject, None, access, now)
    }

    /// As [`TokenIssuer::issue`], naming the account by its id and stamp as well.
    pub fn issue_to(
        &self,
        subject: &str,
        account: Option<AccountClaim>,
        access: Vec<ResourceAccess>,
        now: SystemTime,
    ) -> Result<IssuedToken> {
        let now = unix_secs(now)?;
        let lifetime = self.lifetime.as_secs();
        let claims = Claims {
            iss: self.issuer.clone(),
            sub: subject.to_owned(),
            aud: self.service.clone(),
            exp: now.saturating_add(lifetime),
            nbf: now,
            iat: now,
            jti: self.random_id()?,
            access,
            account,
        };
        let header = Header {
            alg: ALGORITHM,
            typ: "JWT",
            kid: &self.key.key_id,
        };
        let mut token = format!("{}.{}", encode_json(&header)?, encode_json(&claims)?);
        let signature = self.key.sign(token.as_bytes())?;
        token.push('.');
        token.push_str(&URL_SAFE_NO_PAD.encode(signature));
        Ok(IssuedToken {
            token,
            expires_in: lifetime,
            issued_at: UNIX_EPOCH + Duration::from_secs(now),
        })
    }

    fn random_id(&self) -> Result<String> {
        let mut bytes = [0u8; 16];
        self.key
            .rng
            .fill(&mut bytes)
            .map_err(|_| TokenError::Crypto("generating a token id"))?;
        Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
    }
}

/// Checks tokens presented to one service.
#[derive(Clone, Debug)]
pub struct TokenVerifier {
    issuer: String,
    service: String,
    keys: Vec<VerificationKey>,
}

impl TokenVerifier {
    /// Trusts tokens from `issuer` for `service` signed with `key`.
    pub fn new(issuer: impl Into<String>, service: impl Into<String>, key: &SigningKey) -> Self {
        Self::with_keys(issuer, service, [key.verification_key()])
    }

    /// Trusts tokens signed with any of `keys`, e.g. the current key and a retired one.
    pub fn with_keys(
        issuer: impl Into<String>,
        service: impl Into<String>,
        keys: impl IntoIterator<Item = VerificationKey>,
    ) -> Self {
        Self {
            issuer: issuer.into(),
            service: service.into(),
            keys: keys.into_iter().collect(),
        }
    }

    /// The claims of `token` if it is well formed, signed with ES256 by a trusted key, from
    /// the trusted issuer, for this service, and valid at `now`.
    pub fn verify(&self, token: &str, now: SystemTime) -> Result<Claims> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(TokenError::TooLarge {
                len: token.len(),
                limit: MAX_TOKEN_LEN,
            });
        }
        let mut parts = token.split('.');
        let (Some(header_b64), Some(claims_b64), Some(signature_b64), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::NotCompact);
        };

        let header: ReceivedHeader = decode_json(header_b64, "header")?;
        if header.alg != ALGORITHM {
            return Err(TokenError::UnsupportedAlgorithm(header.alg));
        }
        if header.crit.is_some() {
            return Err(TokenError::CriticalHeader);
        }
        let kid = header.kid.ok_or(TokenError::MissingKeyId)?;
        let key = self
            .keys
            .iter()
            .find(|k| k.key_id == kid)
            .ok_or(TokenError::UnknownKey(kid))?;

        let signature = decode_part(signature_b64, "signature")?;
        // The signing input is the two encoded parts exactly as received (RFC 7515 5.2).
        let signed_len = header_b64.len() + 1 + claims_b64.len();
        let signing_input = &token.as_bytes()[..signed_len];
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, &key.public_key)
            .verify(signing_input, &signature)
            .map_err(|_| TokenError::BadSignature)?;

        let claims: Claims = decode_json(claims_b64, "claims")?;
        if claims.iss != self.issuer {
            return Err(TokenError::WrongIssuer { found: claims.iss });
        }
        if claims.aud != self.service {
            return Err(TokenError::WrongAudience { found: claims.aud });
        }
        let now = unix_secs(now)?;
        if claims.exp <= now {
            return Err(TokenError::Expired {
                exp: claims.exp,
                now,
            });
        }
        if claims.nbf > now.saturating_add(CLOCK_SKEW.as_secs()) {
            return Err(TokenError::NotYetValid {
                nbf: claims.nbf,
                now,
            });
        }
        Ok(claims)
    }
}

/// The JOSE header as written.
#[derive(Serialize)]
struct Header<'a> {
    alg: &'a str,
    typ: &'a str,
    kid: &'a str,
}

/// The JOSE header as read: only what verification looks at. `typ` is optional in JWS and
/// not checked.
#[derive(Deserialize)]
struct ReceivedHeader {
    alg: String,
    kid: Option<String>,
    crit: Option<serde_json::Value>,
}

fn encode_json(value: &impl Serialize) -> Result<String> {
    let json = serde_json::to_vec(value).map_err(|e| TokenError::Json {
        part: "being issued",
        reason: e.to_string(),
    })?;
    Ok(URL_SAFE_NO_PAD.encode(json))
}

fn decode_part(text: &str, part: &'static str) -> Result<Vec<u8>> {
    URL_SAFE_NO_PAD
        .decode(text)
        .map_err(|_| TokenError::Base64 { part })
}

fn decode_json<T: for<'de> Deserialize<'de>>(text: &str, part: &'static str) -> Result<T> {
    let bytes = decode_part(text, part)?;
    serde_json::from_slice(&bytes).map_err(|e| TokenError::Json {
        part,
        reason: e.to_string(),
    })
}

fn unix_secs(time: SystemTime) -> Result<u64> {
    time.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .map_err(|_| TokenError::ClockBeforeEpoch)
}

/// DER of `SubjectPublicKeyInfo { id-ecPublicKey, prime256v1 }` up to the BIT STRING holding
/// the 65-byte point.
const P256_SPKI_PREFIX: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a,
    0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];

/// libtrust's key id of a P-256 public key (see [`SigningKey::key_id`]).
fn key_id_of(public_key: &[u8]) -> String {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(&P256_SPKI_PREFIX);
    ctx.update(public_key);
    let digest = ctx.finish();
    let encoded = base32(&digest.as_ref()[..30]);
    let groups: Vec<&str> = encoded
        .as_bytes()
        .chunks(4)
        .filter_map(|c| std::str::from_utf8(c).ok())
        .collect();
    groups.join(":")
}

/// RFC 4648 base32 without padding.
fn base32(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut out = String::with_capacity(bytes.len().div_ceil(5) * 8);
    let (mut buffer, mut bits) = (0u32, 0u32);
    for &byte in bytes {
        buffer = (buffer << 8) | u32::from(byte);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(char::from(ALPHABET[((buffer >> bits) & 31) as usize]));
        }
    }
    if bits > 0 {
        out.push(char::from(ALPHABET[((buffer << (5 - bits)) & 31) as usize]));
    }
    out
}

/// Seconds since the epoch as `YYYY-MM-DDTHH:MM:SSZ`. The date is Howard Hinnant's
/// `civil_from_days`, shifted so that years start on March 1st and leap days come last.
pub fn rfc3339_utc(secs: u64) -> String {
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let z = days + 719_468; // days from 0000-03-01 to 1970-01-01
    let era = z / 146_097;
    let day_of_era = z % 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153; // 0 = March
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    };
    let year = year_of_era + era * 400 + u64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3_600,
        rem % 3_600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests;
