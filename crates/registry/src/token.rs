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
    /// same name, or its stamp has moved on (`Registry::principal_of_token`).
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
mod tests {
    use super::*;

    const ISSUER: &str = "berth-token";
    const SERVICE: &str = "registry.example.com";

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    const NOW: u64 = 1_800_000_000;

    fn issuer() -> TokenIssuer {
        TokenIssuer::new(
            SigningKey::generate().expect("key"),
            ISSUER,
            SERVICE,
            DEFAULT_LIFETIME,
        )
    }

    fn web_access() -> Vec<ResourceAccess> {
        vec![ResourceAccess::repository("team/web", &["pull", "push"])]
    }

    fn b64(bytes: &[u8]) -> String {
        URL_SAFE_NO_PAD.encode(bytes)
    }

    fn claims_json(iss: &str, aud: &str, nbf: u64, exp: u64) -> String {
        format!(
            r#"{{"iss":"{iss}","sub":"alice","aud":"{aud}","exp":{exp},"nbf":{nbf},"iat":{nbf},"jti":"00","access":[]}}"#
        )
    }

    /// A token over arbitrary header and claim bytes, really signed with `key`.
    fn sign_raw(key: &SigningKey, header: &str, claims: &[u8]) -> String {
        let input = format!("{}.{}", b64(header.as_bytes()), b64(claims));
        let signature = key.sign(input.as_bytes()).expect("sign");
        format!("{input}.{}", b64(&signature))
    }

    fn es256_header(key: &SigningKey) -> String {
        format!(r#"{{"alg":"ES256","typ":"JWT","kid":"{}"}}"#, key.key_id())
    }

    /// Splits a token into its decoded header and claims and its raw signature part.
    fn parts(token: &str) -> (Vec<u8>, Vec<u8>, String) {
        let p: Vec<&str> = token.split('.').collect();
        assert_eq!(p.len(), 3);
        (
            URL_SAFE_NO_PAD.decode(p[0]).expect("header"),
            URL_SAFE_NO_PAD.decode(p[1]).expect("claims"),
            p[2].to_string(),
        )
    }

    #[test]
    fn token_round_trip() {
        let issuer = issuer();
        let issued = issuer.issue("alice", web_access(), at(NOW)).expect("issue");
        assert_eq!(issued.expires_in, 300);
        assert_eq!(issued.issued_at, at(NOW));

        let claims = issuer
            .verifier()
            .verify(&issued.token, at(NOW + 10))
            .expect("verify");
        assert_eq!(claims.iss, ISSUER);
        assert_eq!(claims.sub, "alice");
        assert_eq!(claims.aud, SERVICE);
        assert_eq!((claims.iat, claims.nbf, claims.exp), (NOW, NOW, NOW + 300));
        assert_eq!(claims.access, web_access());
        assert_eq!(claims.jti.len(), 32);
        assert!(claims.jti.bytes().all(|b| b.is_ascii_hexdigit()));

        let (header, payload, signature) = parts(&issued.token);
        let header: serde_json::Value = serde_json::from_slice(&header).expect("json");
        assert_eq!(
            header,
            serde_json::json!({"alg": "ES256", "typ": "JWT", "kid": issuer.key().key_id()})
        );
        let payload: serde_json::Value = serde_json::from_slice(&payload).expect("json");
        assert_eq!(
            payload["access"],
            serde_json::json!([{"type": "repository", "name": "team/web", "actions": ["pull", "push"]}])
        );
        // Fixed-size r || s, not DER.
        assert_eq!(URL_SAFE_NO_PAD.decode(signature).expect("sig").len(), 64);
    }

    #[test]
    fn the_account_claim_round_trips_and_is_absent_when_not_given() {
        let issuer = issuer();
        let account = AccountClaim {
            id: "0123456789abcdef0123456789abcdef".into(),
            stamp: 7,
        };
        let issued = issuer
            .issue_to("alice", Some(account.clone()), web_access(), at(NOW))
            .expect("issue");
        let claims = issuer
            .verifier()
            .verify(&issued.token, at(NOW))
            .expect("verify");
        assert_eq!(claims.account, Some(account));
        let (_, payload, _) = parts(&issued.token);
        let payload: serde_json::Value = serde_json::from_slice(&payload).expect("json");
        assert_eq!(
            payload["account"],
            serde_json::json!({"id": "0123456789abcdef0123456789abcdef", "stamp": 7})
        );

        let plain = issuer.issue("alice", vec![], at(NOW)).expect("issue");
        let (_, payload, _) = parts(&plain.token);
        let payload: serde_json::Value = serde_json::from_slice(&payload).expect("json");
        assert!(payload.get("account").is_none(), "{payload}");
        let claims = issuer.verifier().verify(&plain.token, at(NOW)).expect("ok");
        assert_eq!(claims.account, None);
    }

    #[test]
    fn anonymous_token_has_empty_subject() {
        let issuer = issuer();
        let issued = issuer.issue("", vec![], at(NOW)).expect("issue");
        let claims = issuer
            .verifier()
            .verify(&issued.token, at(NOW))
            .expect("ok");
        assert_eq!(claims.sub, "");
        assert!(claims.access.is_empty());
    }

    #[test]
    fn token_ids_are_unique() {
        let issuer = issuer();
        let verifier = issuer.verifier();
        let a = issuer.issue("alice", vec![], at(NOW)).expect("issue");
        let b = issuer.issue("alice", vec![], at(NOW)).expect("issue");
        let ja = verifier.verify(&a.token, at(NOW)).expect("ok").jti;
        let jb = verifier.verify(&b.token, at(NOW)).expect("ok").jti;
        assert_ne!(ja, jb);
    }

    #[test]
    fn refuses_alg_none() {
        let issuer = issuer();
        let header = format!(
            r#"{{"alg":"none","typ":"JWT","kid":"{}"}}"#,
            issuer.key().key_id()
        );
        let claims = claims_json(ISSUER, SERVICE, NOW, NOW + 300);
        let unsigned = format!("{}.{}", b64(header.as_bytes()), b64(claims.as_bytes()));
        // The usual form, with an empty signature part.
        assert_eq!(
            issuer.verifier().verify(&format!("{unsigned}."), at(NOW)),
            Err(TokenError::UnsupportedAlgorithm("none".into()))
        );
        // With the signature part left out altogether.
        assert_eq!(
            issuer.verifier().verify(&unsigned, at(NOW)),
            Err(TokenError::NotCompact)
        );
        // With a valid signature of ours attached: the header still decides, and says none.
        let signed = format!(
            "{unsigned}.{}",
            b64(&issuer.key().sign(unsigned.as_bytes()).expect("sign"))
        );
        assert_eq!(
            issuer.verifier().verify(&signed, at(NOW)),
            Err(TokenError::UnsupportedAlgorithm("none".into()))
        );
    }

    #[test]
    fn refuses_hs256_and_rs256() {
        let issuer = issuer();
        let claims = claims_json(ISSUER, SERVICE, NOW, NOW + 300);
        for alg in ["HS256", "RS256", "ES384", "es256", ""] {
            let header = format!(
                r#"{{"alg":"{alg}","typ":"JWT","kid":"{}"}}"#,
                issuer.key().key_id()
            );
            // An HMAC "keyed" with the public key, the classic algorithm-confusion attack.
            let input = format!("{}.{}", b64(header.as_bytes()), b64(claims.as_bytes()));
            let mac = ring::hmac::sign(
                &ring::hmac::Key::new(ring::hmac::HMAC_SHA256, issuer.key().public_key()),
                input.as_bytes(),
            );
            let token = format!("{input}.{}", b64(mac.as_ref()));
            assert_eq!(
                issuer.verifier().verify(&token, at(NOW)),
                Err(TokenError::UnsupportedAlgorithm(alg.into()))
            );
        }
    }

    #[test]
    fn refuses_tampered_payload() {
        let issuer = issuer();
        let issued = issuer
            .issue(
                "alice",
                vec![ResourceAccess::repository("team/web", &["pull"])],
                at(NOW),
            )
            .expect("issue");
        let (_, payload, _) = parts(&issued.token);
        let forged = String::from_utf8(payload)
            .expect("utf8")
            .replace(r#"["pull"]"#, r#"["pull","push","delete"]"#);
        let p: Vec<&str> = issued.token.split('.').collect();
        let token = format!("{}.{}.{}", p[0], b64(forged.as_bytes()), p[2]);
        assert_eq!(
            issuer.verifier().verify(&token, at(NOW)),
            Err(TokenError::BadSignature)
        );
    }

    #[test]
    fn refuses_tampered_header() {
        let issuer = issuer();
        let issued = issuer.issue("alice", web_access(), at(NOW)).expect("issue");
        let header = format!(
            r#"{{"typ":"JWT","alg":"ES256","kid":"{}"}}"#,
            issuer.key().key_id()
        );
        let p: Vec<&str> = issued.token.split('.').collect();
        let token = format!("{}.{}.{}", b64(header.as_bytes()), p[1], p[2]);
        assert_eq!(
            issuer.verifier().verify(&token, at(NOW)),
            Err(TokenError::BadSignature)
        );
    }

    #[test]
    fn refuses_flipped_signature_bits() {
        let issuer = issuer();
        let issued = issuer.issue("alice", web_access(), at(NOW)).expect("issue");
        let (_, _, signature) = parts(&issued.token);
        let signature = URL_SAFE_NO_PAD.decode(signature).expect("sig");
        let p: Vec<&str> = issued.token.split('.').collect();
        for bit in [0, 7, 255, 256, 511] {
            let mut flipped = signature.clone();
            flipped[bit / 8] ^= 1 << (bit % 8);
            let token = format!("{}.{}.{}", p[0], p[1], b64(&flipped));
            assert_eq!(
                issuer.verifier().verify(&token, at(NOW)),
                Err(TokenError::BadSignature),
                "bit {bit}"
            );
        }
        // Truncated, and DER-length, signatures.
        for len in [0, 63, 65, 72] {
            let mut sig = signature.clone();
            sig.resize(len, 0);
            let token = format!("{}.{}.{}", p[0], p[1], b64(&sig));
            assert_eq!(
                issuer.verifier().verify(&token, at(NOW)),
                Err(TokenError::BadSignature),
                "length {len}"
            );
        }
    }

    #[test]
    fn refuses_token_from_another_key() {
        let ours = issuer();
        let theirs = issuer();
        let issued = theirs.issue("alice", web_access(), at(NOW)).expect("issue");
        assert_eq!(
            ours.verifier().verify(&issued.token, at(NOW)),
            Err(TokenError::UnknownKey(theirs.key().key_id().into()))
        );

        // Another key pretending to be ours through the kid.
        let claims = claims_json(ISSUER, SERVICE, NOW, NOW + 300);
        let token = sign_raw(theirs.key(), &es256_header(ours.key()), claims.as_bytes());
        assert_eq!(
            ours.verifier().verify(&token, at(NOW)),
            Err(TokenError::BadSignature)
        );
    }

    #[test]
    fn refuses_missing_kid_and_critical_headers() {
        let issuer = issuer();
        let key = issuer.key();
        let claims = claims_json(ISSUER, SERVICE, NOW, NOW + 300);
        let token = sign_raw(key, r#"{"alg":"ES256","typ":"JWT"}"#, claims.as_bytes());
        assert_eq!(
            issuer.verifier().verify(&token, at(NOW)),
            Err(TokenError::MissingKeyId)
        );
        let header = format!(
            r#"{{"alg":"ES256","kid":"{}","crit":["exp"],"exp":1}}"#,
            key.key_id()
        );
        let token = sign_raw(key, &header, claims.as_bytes());
        assert_eq!(
            issuer.verifier().verify(&token, at(NOW)),
            Err(TokenError::CriticalHeader)
        );
        // A duplicated alg must not let a second value slip past the check.
        let header = format!(r#"{{"alg":"ES256","alg":"none","kid":"{}"}}"#, key.key_id());
        let token = sign_raw(key, &header, claims.as_bytes());
        assert!(matches!(
            issuer.verifier().verify(&token, at(NOW)),
            Err(TokenError::Json { part: "header", .. })
        ));
    }

    #[test]
    fn refuses_expired_token_without_leeway() {
        let issuer = issuer();
        let verifier = issuer.verifier();
        let issued = issuer.issue("alice", web_access(), at(NOW)).expect("issue");
        assert!(verifier.verify(&issued.token, at(NOW + 299)).is_ok());
        // Sub-second parts of `now` do not extend the token.
        let just_before = at(NOW + 299) + Duration::from_millis(999);
        assert!(verifier.verify(&issued.token, just_before).is_ok());
        assert_eq!(
            verifier.verify(&issued.token, at(NOW + 300)),
            Err(TokenError::Expired {
                exp: NOW + 300,
                now: NOW + 300
            })
        );
        assert!(matches!(
            verifier.verify(&issued.token, at(NOW + 86_400)),
            Err(TokenError::Expired { .. })
        ));
    }

    #[test]
    fn refuses_token_not_yet_valid_beyond_skew() {
        let issuer = issuer();
        let verifier = issuer.verifier();
        // Issued by a replica whose clock runs ahead.
        let within = issuer.issue("alice", vec![], at(NOW + 60)).expect("issue");
        assert!(verifier.verify(&within.token, at(NOW)).is_ok());
        let beyond = issuer.issue("alice", vec![], at(NOW + 61)).expect("issue");
        assert_eq!(
            verifier.verify(&beyond.token, at(NOW)),
            Err(TokenError::NotYetValid {
                nbf: NOW + 61,
                now: NOW
            })
        );
        let far = issuer
            .issue("alice", vec![], at(NOW + 3_600))
            .expect("issue");
        assert!(matches!(
            verifier.verify(&far.token, at(NOW)),
            Err(TokenError::NotYetValid { .. })
        ));
    }

    #[test]
    fn refuses_wrong_audience() {
        let key = SigningKey::generate().expect("key");
        let verifier = TokenVerifier::new(ISSUER, SERVICE, &key);
        let other = TokenIssuer::new(key, ISSUER, "other.example.com", DEFAULT_LIFETIME);
        let issued = other.issue("alice", web_access(), at(NOW)).expect("issue");
        assert_eq!(
            verifier.verify(&issued.token, at(NOW)),
            Err(TokenError::WrongAudience {
                found: "other.example.com".into()
            })
        );
    }

    #[test]
    fn refuses_wrong_issuer() {
        let key = SigningKey::generate().expect("key");
        let verifier = TokenVerifier::new(ISSUER, SERVICE, &key);
        let other = TokenIssuer::new(key, "someone-else", SERVICE, DEFAULT_LIFETIME);
        let issued = other.issue("alice", web_access(), at(NOW)).expect("issue");
        assert_eq!(
            verifier.verify(&issued.token, at(NOW)),
            Err(TokenError::WrongIssuer {
                found: "someone-else".into()
            })
        );
    }

    #[test]
    fn refuses_garbage() {
        let issuer = issuer();
        let verifier = issuer.verifier();
        let valid = issuer.issue("alice", web_access(), at(NOW)).expect("issue");
        let p: Vec<&str> = valid.token.split('.').collect();
        for token in [
            "",
            "garbage",
            "a.b",
            "a.b.c.d",
            "...",
            &format!("{}.", valid.token),
        ] {
            assert!(
                verifier.verify(token, at(NOW)).is_err(),
                "{token:?} was accepted"
            );
        }
        for token in ["", "garbage", "a.b", "a.b.c.d", "...."] {
            assert_eq!(
                verifier.verify(token, at(NOW)),
                Err(TokenError::NotCompact),
                "{token:?}"
            );
        }
        for (token, part) in [
            ("!!!.e30.AAAA".to_string(), "header"),
            ("ZXlK=.e30.AAAA".to_string(), "header"),
            (format!("{}+/.{}.{}", p[0], p[1], p[2]), "header"),
            (format!("{}.{}.{}=", p[0], p[1], p[2]), "signature"),
            (format!("{}.{}.é", p[0], p[1]), "signature"),
        ] {
            assert_eq!(
                verifier.verify(&token, at(NOW)),
                Err(TokenError::Base64 { part }),
                "{token:?}"
            );
        }
        for header in ["not json", "[]", "{}", r#"{"alg":5}"#, "\u{0}"] {
            let token = format!("{}.e30.AAAA", b64(header.as_bytes()));
            assert!(
                matches!(
                    verifier.verify(&token, at(NOW)),
                    Err(TokenError::Json { part: "header", .. })
                ),
                "{header:?}"
            );
        }
        // A valid header and signature with a claims part that is not base64url.
        let token = format!("{}.%%%.{}", p[0], p[2]);
        assert_eq!(
            verifier.verify(&token, at(NOW)),
            Err(TokenError::BadSignature)
        );
    }

    #[test]
    fn refuses_oversized_token_before_decoding() {
        let verifier = issuer().verifier();
        let huge = "A".repeat(9 * 1024);
        let token = format!("{huge}.{huge}.{huge}");
        assert_eq!(
            verifier.verify(&token, at(NOW)),
            Err(TokenError::TooLarge {
                len: token.len(),
                limit: MAX_TOKEN_LEN
            })
        );
        // Even garbage of exactly 9 KiB is refused for its size, not its shape.
        let junk = "!".repeat(9 * 1024);
        assert!(matches!(
            verifier.verify(&junk, at(NOW)),
            Err(TokenError::TooLarge { len: 9216, .. })
        ));
        // At the limit, the size check passes and the shape is judged.
        let at_limit = "!".repeat(MAX_TOKEN_LEN);
        assert_eq!(
            verifier.verify(&at_limit, at(NOW)),
            Err(TokenError::NotCompact)
        );
    }

    #[test]
    fn refuses_signed_claims_that_are_not_json() {
        let issuer = issuer();
        let key = issuer.key();
        let header = es256_header(key);
        for claims in [
            &b"not json"[..],
            b"",
            b"[]",
            b"\xff\xfe",
            // Missing exp.
            br#"{"iss":"berth-token","sub":"","aud":"registry.example.com","nbf":1,"iat":1,"jti":"0"}"#,
            // Negative and fractional times.
            br#"{"iss":"berth-token","sub":"","aud":"registry.example.com","exp":-1,"nbf":1,"iat":1,"jti":"0"}"#,
            br#"{"iss":"berth-token","sub":"","aud":"registry.example.com","exp":1.5e10,"nbf":1,"iat":1,"jti":"0"}"#,
            // An audience list is not what we issue.
            br#"{"iss":"berth-token","sub":"","aud":["registry.example.com"],"exp":9999999999,"nbf":1,"iat":1,"jti":"0"}"#,
        ] {
            let token = sign_raw(key, &header, claims);
            assert!(
                matches!(
                    issuer.verifier().verify(&token, at(NOW)),
                    Err(TokenError::Json { part: "claims", .. })
                ),
                "{:?}",
                String::from_utf8_lossy(claims)
            );
        }
    }

    #[test]
    fn verifier_with_several_keys_accepts_each() {
        let old = issuer();
        let new = issuer();
        let verifier = TokenVerifier::with_keys(
            ISSUER,
            SERVICE,
            [old.key().verification_key(), new.key().verification_key()],
        );
        for issuer in [&old, &new] {
            let issued = issuer.issue("alice", web_access(), at(NOW)).expect("issue");
            assert!(verifier.verify(&issued.token, at(NOW)).is_ok());
        }
        let stranger = issuer().issue("alice", vec![], at(NOW)).expect("issue");
        assert!(matches!(
            verifier.verify(&stranger.token, at(NOW)),
            Err(TokenError::UnknownKey(_))
        ));
    }

    #[test]
    fn allows_matches_type_name_and_action() {
        let claims = Claims {
            iss: ISSUER.into(),
            sub: "alice".into(),
            aud: SERVICE.into(),
            exp: 0,
            nbf: 0,
            iat: 0,
            jti: String::new(),
            access: vec![
                ResourceAccess::repository("team/web", &["pull", "push"]),
                ResourceAccess::repository("team/db", &["pull"]),
                ResourceAccess::repository("team/all", &["*"]),
                ResourceAccess {
                    resource_type: "registry".into(),
                    name: "catalog".into(),
                    actions: vec!["*".into()],
                },
            ],
            account: None,
        };
        assert!(claims.allows("repository", "team/web", "pull"));
        assert!(claims.allows("repository", "team/web", "push"));
        assert!(!claims.allows("repository", "team/web", "delete"));
        assert!(claims.allows("repository", "team/db", "pull"));
        assert!(!claims.allows("repository", "team/db", "push"));
        assert!(claims.allows("repository", "team/all", "delete"));
        assert!(claims.allows("registry", "catalog", "*"));
        // Names and types match exactly: no prefixes, no case folding.
        assert!(!claims.allows("repository", "team", "pull"));
        assert!(!claims.allows("repository", "team/web/sub", "pull"));
        assert!(!claims.allows("repository", "Team/Web", "pull"));
        assert!(!claims.allows("registry", "team/web", "pull"));
        assert!(!claims.allows("repository", "catalog", "pull"));
        assert!(!claims.allows("repository", "team/web", "PULL"));
        assert!(!claims.allows("repository", "team/web", ""));

        let nothing = Claims {
            access: vec![],
            ..claims
        };
        assert!(!nothing.allows("repository", "team/web", "pull"));
    }

    #[test]
    fn persisted_key_verifies_tokens_of_the_original() {
        let original = SigningKey::generate().expect("key");
        let restored = SigningKey::from_pkcs8(original.pkcs8()).expect("restore");
        assert_eq!(restored.key_id(), original.key_id());
        assert_eq!(restored.public_key(), original.public_key());

        let issuer = TokenIssuer::new(original, ISSUER, SERVICE, DEFAULT_LIFETIME);
        let issued = issuer.issue("alice", web_access(), at(NOW)).expect("issue");
        let verifier = TokenVerifier::new(ISSUER, SERVICE, &restored);
        assert_eq!(
            verifier.verify(&issued.token, at(NOW)).expect("ok").access,
            web_access()
        );

        // And the other way round.
        let replica = TokenIssuer::new(restored, ISSUER, SERVICE, DEFAULT_LIFETIME);
        let issued = replica.issue("bob", vec![], at(NOW)).expect("issue");
        assert!(issuer.verifier().verify(&issued.token, at(NOW)).is_ok());
    }

    #[test]
    fn refuses_bad_key_material() {
        assert!(matches!(
            SigningKey::from_pkcs8(b"not a key"),
            Err(TokenError::InvalidKey(_))
        ));
        assert!(matches!(
            VerificationKey::from_public_key(&[4; 33]),
            Err(TokenError::InvalidKey(_))
        ));
        assert!(VerificationKey::from_public_key(&[]).is_err());
    }

    #[test]
    fn debug_does_not_print_the_private_key() {
        let key = SigningKey::generate().expect("key");
        let shown = format!("{key:?}");
        assert!(shown.contains(key.key_id()));
        assert!(!shown.contains("pkcs8"));
        assert_eq!(format!("{:?}", issuer()).matches("key_id").count(), 1);
    }

    /// jwt.md's example key, header and claims. The signature printed in jwt.md does not verify
    /// against its own key (Python `cryptography` refuses it too), so this one was made with
    /// jwt.md's private key `d` by that independent ES256 implementation, to check our
    /// `r || s` handling and signing input against it.
    #[test]
    fn verifies_the_example_token_from_jwt_md() {
        let x = URL_SAFE_NO_PAD
            .decode("m7zUpx3b-zmVE5cymSs64POG9QcyEpJaYCD82-549_Q")
            .expect("x");
        let y = URL_SAFE_NO_PAD
            .decode("dU3biz8sZ_8GPB-odm8Wxz3lNDr1xcAQQPQaOcr1fmc")
            .expect("y");
        let public_key = [&[4u8][..], &x, &y].concat();
        let key = VerificationKey::from_public_key(&public_key).expect("key");
        assert_eq!(
            key.key_id(),
            "PYYO:TEWU:V7JH:26JV:AQTZ:LJC3:SXVJ:XGHA:34F2:2LAQ:ZRMK:Z7Q6"
        );

        let token = "eyJ0eXAiOiJKV1QiLCJhbGciOiJFUzI1NiIsImtpZCI6IlBZWU86VEVXVTpWN0pIOjI2SlY6QVFUWjpMSkMzOlNYVko6WEdIQTozNEYyOjJMQVE6WlJNSzpaN1E2In0.eyJpc3MiOiJhdXRoLmRvY2tlci5jb20iLCJzdWIiOiJqbGhhd24iLCJhdWQiOiJyZWdpc3RyeS5kb2NrZXIuY29tIiwiZXhwIjoxNDE1Mzg3MzE1LCJuYmYiOjE0MTUzODcwMTUsImlhdCI6MTQxNTM4NzAxNSwianRpIjoidFlKQ08xYzZjbnl5N2tBbjBjN3JLUGdiVjFIMWJGd3MiLCJhY2Nlc3MiOlt7InR5cGUiOiJyZXBvc2l0b3J5IiwibmFtZSI6InNhbWFsYmEvbXktYXBwIiwiYWN0aW9ucyI6WyJwdXNoIl19XX0.6FwzvzCt1hnIH9NjBTpsZFHyrEWJcI9LmR0h5neC61YLiCBvry_DKroqcs0SopCNWxJZXLlnvk2r7DzgzSfklg";
        let verifier = TokenVerifier::with_keys("auth.docker.com", "registry.docker.com", [key]);
        let claims = verifier.verify(token, at(1_415_387_100)).expect("verify");
        assert_eq!(claims.sub, "jlhawn");
        assert!(claims.allows("repository", "samalba/my-app", "push"));
        assert!(!claims.allows("repository", "samalba/my-app", "pull"));
        assert!(matches!(
            verifier.verify(token, at(1_415_387_315)),
            Err(TokenError::Expired { .. })
        ));
    }

    #[test]
    fn key_id_is_libtrust_shaped_and_stable() {
        let key = SigningKey::generate().expect("key");
        let id = key.key_id();
        assert_eq!(id.len(), 12 * 4 + 11);
        assert!(id.split(':').all(|g| {
            g.len() == 4
                && g.bytes()
                    .all(|b| b.is_ascii_uppercase() || (b'2'..=b'7').contains(&b))
        }));
        assert_eq!(
            VerificationKey::from_public_key(key.public_key())
                .expect("key")
                .key_id(),
            id
        );
        assert_ne!(SigningKey::generate().expect("key").key_id(), id);
    }

    #[test]
    fn base32_matches_rfc_4648_vectors() {
        for (input, expected) in [
            ("", ""),
            ("f", "MY"),
            ("fo", "MZXQ"),
            ("foo", "MZXW6"),
            ("foob", "MZXW6YQ"),
            ("fooba", "MZXW6YTB"),
            ("foobar", "MZXW6YTBOI"),
        ] {
            assert_eq!(base32(input.as_bytes()), expected);
        }
    }

    #[test]
    fn lifetime_is_at_least_a_minute() {
        let short = TokenIssuer::new(
            SigningKey::generate().expect("key"),
            ISSUER,
            SERVICE,
            Duration::from_secs(5),
        );
        assert_eq!(short.lifetime(), MIN_LIFETIME);
        let issued = short.issue("alice", vec![], at(NOW)).expect("issue");
        assert_eq!(issued.expires_in, 60);
        let long = TokenIssuer::new(
            SigningKey::generate().expect("key"),
            ISSUER,
            SERVICE,
            Duration::from_millis(3_600_500),
        );
        assert_eq!(long.lifetime(), Duration::from_secs(3_600));
    }

    #[test]
    fn times_before_1970_are_refused() {
        let issuer = issuer();
        let before = UNIX_EPOCH - Duration::from_secs(1);
        assert_eq!(
            issuer.issue("alice", vec![], before),
            Err(TokenError::ClockBeforeEpoch)
        );
        let issued = issuer.issue("alice", vec![], at(NOW)).expect("issue");
        assert_eq!(
            issuer.verifier().verify(&issued.token, before),
            Err(TokenError::ClockBeforeEpoch)
        );
    }

    #[test]
    fn issued_at_text_is_rfc3339_utc() {
        for (secs, text) in [
            (0, "1970-01-01T00:00:00Z"),
            (59, "1970-01-01T00:00:59Z"),
            (86_399, "1970-01-01T23:59:59Z"),
            (951_782_400, "2000-02-29T00:00:00Z"),
            (1_415_387_315, "2014-11-07T19:08:35Z"),
            (1_709_208_000, "2024-02-29T12:00:00Z"),
            (1_709_251_199, "2024-02-29T23:59:59Z"),
            (1_709_251_200, "2024-03-01T00:00:00Z"),
            (1_735_689_599, "2024-12-31T23:59:59Z"),
            (4_102_444_799, "2099-12-31T23:59:59Z"),
            (253_402_300_799, "9999-12-31T23:59:59Z"),
        ] {
            assert_eq!(rfc3339_utc(secs), text, "{secs}");
        }
        let issued = issuer()
            .issue(
                "alice",
                vec![],
                at(1_709_208_000) + Duration::from_millis(750),
            )
            .expect("issue");
        assert_eq!(issued.issued_at_text(), "2024-02-29T12:00:00Z");
    }
}
