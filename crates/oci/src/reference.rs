//! Image references as users type them: `[registry/][project/]image[:tag][@digest]`.
//!
//! Normalization follows docker exactly (`ParseNormalizedNamed`, `FamiliarString` in
//! `github.com/distribution/reference`, files `normalize.go`, `reference.go`, `regexp.go`):
//! - the first component is a registry host only if it contains `.` or `:`, is `localhost`, or
//!   holds an uppercase letter; otherwise the default domain (`docker.io`) is put in front;
//! - `index.docker.io` is `docker.io`; on `docker.io` a one-component path gets `library/`;
//! - the repository path must be lowercase; a bare 64-hex string is refused (it is an image ID);
//! - domain + `/` + path is at most 255 characters.

use std::fmt;
use std::str::FromStr;

use crate::digest::{Digest, DigestError};
use crate::name::{Repository, Tag, valid_component};

/// Docker's default registry, as it appears in normalized names.
pub const DEFAULT_DOMAIN: &str = "docker.io";
/// The legacy name of the default registry, normalized to [`DEFAULT_DOMAIN`].
pub const LEGACY_DEFAULT_DOMAIN: &str = "index.docker.io";
/// The host that actually serves `docker.io`'s registry API.
pub const DEFAULT_REGISTRY_HOST: &str = "registry-1.docker.io";
/// The key under which docker stores `docker.io` credentials in `config.json`.
pub const DEFAULT_CREDENTIALS_KEY: &str = "https://index.docker.io/v1/";
/// The tag meant when none is given.
pub const DEFAULT_TAG: &str = "latest";
/// Longest `domain/path` accepted (distribution/reference `NameTotalLengthMax`).
pub const MAX_NAME_LEN: usize = 255;

const OFFICIAL_REPO_PREFIX: &str = "library/";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ReferenceError {
    #[error("invalid reference format: repository name must have at least one component")]
    Empty,
    #[error("invalid reference format: {0:?}")]
    Format(String),
    #[error("invalid reference format: repository name ({0}) must be lowercase")]
    Uppercase(String),
    #[error("invalid reference format: repository name must not be more than 255 characters")]
    TooLong,
    #[error("invalid repository name ({0}), cannot specify 64-byte hexadecimal strings")]
    HexIdentifier(String),
    #[error("invalid reference format: invalid tag {0:?}")]
    Tag(String),
    #[error("invalid reference format: {0}")]
    Digest(#[from] DigestError),
}

/// A fully normalized image reference: domain, repository path, and a tag and/or digest.
///
/// `Display` gives the full form (`docker.io/library/nginx:latest`), [`Reference::familiar`]
/// the short form docker prints (`nginx:latest`).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Reference {
    domain: String,
    repository: Repository,
    tag: Option<Tag>,
    digest: Option<Digest>,
}

impl Reference {
    /// Parses like `docker pull` does, with `docker.io` as the default registry.
    pub fn parse_normalized(s: &str) -> Result<Self, ReferenceError> {
        Self::parse_normalized_with_domain(s, DEFAULT_DOMAIN)
    }

    /// Parses like `docker pull`, with `default_domain` standing in for `docker.io` (an
    /// air-gapped site's own registry). `library/` is only added on `docker.io`.
    pub fn parse_normalized_with_domain(
        s: &str,
        default_domain: &str,
    ) -> Result<Self, ReferenceError> {
        if is_hex_identifier(s) {
            return Err(ReferenceError::HexIdentifier(s.to_string()));
        }
        let (domain, remainder) = split_domain(s, default_domain);
        let remote = remainder.split(':').next().unwrap_or(&remainder);
        if remote.to_lowercase() != remote {
            return Err(ReferenceError::Uppercase(remote.to_string()));
        }
        Self::parse_full(&domain, &remainder, s)
    }

    /// Parses `domain/remainder` where the domain was already split off; `original` is what
    /// the user typed, for error messages.
    fn parse_full(domain: &str, remainder: &str, original: &str) -> Result<Self, ReferenceError> {
        if original.is_empty() {
            return Err(ReferenceError::Empty);
        }
        let format = || ReferenceError::Format(original.chars().take(300).collect());
        let (name_and_tag, digest) = match remainder.split_once('@') {
            Some((left, digest)) => (left, Some(digest)),
            None => (remainder, None),
        };
        // A tag can't hold `/`, so a `:` after the last `/` separates it.
        let last_slash = name_and_tag.rfind('/').map_or(0, |i| i + 1);
        let (path, tag) = match name_and_tag[last_slash..].find(':') {
            Some(i) => (
                &name_and_tag[..last_slash + i],
                Some(&name_and_tag[last_slash + i + 1..]),
            ),
            None => (name_and_tag, None),
        };
        if !valid_domain(domain) || path.is_empty() || !path.split('/').all(valid_component) {
            return Err(if original.to_lowercase() != original {
                ReferenceError::Uppercase(path.to_string())
            } else {
                format()
            });
        }
        if domain.len() + 1 + path.len() > MAX_NAME_LEN {
            return Err(ReferenceError::TooLong);
        }
        let repository = path.parse::<Repository>().map_err(|_| format())?;
        let tag = match tag {
            Some(t) => Some(
                t.parse::<Tag>()
                    .map_err(|_| ReferenceError::Tag(t.to_string()))?,
            ),
            None => None,
        };
        let digest = match digest {
            Some(d) => Some(d.parse::<Digest>()?),
            None => None,
        };
        Ok(Reference {
            domain: domain.to_string(),
            repository,
            tag,
            digest,
        })
    }

    /// A reference to `repository` on `domain`, with neither tag nor digest.
    pub fn new(domain: &str, repository: Repository) -> Result<Self, ReferenceError> {
        if !valid_domain(domain) {
            return Err(ReferenceError::Format(domain.to_string()));
        }
        if domain.len() + 1 + repository.as_str().len() > MAX_NAME_LEN {
            return Err(ReferenceError::TooLong);
        }
        Ok(Reference {
            domain: domain.to_string(),
            repository,
            tag: None,
            digest: None,
        })
    }

    /// The registry, e.g. `docker.io` or `localhost:5000`.
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// The repository path on the registry, e.g. `library/nginx`.
    pub fn repository(&self) -> &Repository {
        &self.repository
    }

    pub fn tag(&self) -> Option<&Tag> {
        self.tag.as_ref()
    }

    pub fn digest(&self) -> Option<&Digest> {
        self.digest.as_ref()
    }

    /// Adds `latest` when the reference names neither a tag nor a digest (docker's
    /// `TagNameOnly`).
    pub fn with_default_tag(mut self) -> Self {
        if self.tag.is_none() && self.digest.is_none() {
            self.tag = Some(Tag::from_str(DEFAULT_TAG).expect("`latest` is a valid tag"));
        }
        self
    }

    pub fn with_tag(&self, tag: Tag) -> Self {
        Reference {
            tag: Some(tag),
            digest: None,
            ..self.clone()
        }
    }

    pub fn with_digest(&self, digest: Digest) -> Self {
        Reference {
            tag: None,
            digest: Some(digest),
            ..self.clone()
        }
    }

    /// Only the name, without tag or digest: `docker.io/library/nginx`.
    pub fn name(&self) -> String {
        format!("{}/{}", self.domain, self.repository)
    }

    /// The name as docker prints it: `nginx`, `someone/app`, `localhost:5000/team/web`.
    pub fn familiar_name(&self) -> String {
        if self.domain != DEFAULT_DOMAIN {
            return self.name();
        }
        let path = self.repository.as_str();
        match path.strip_prefix(OFFICIAL_REPO_PREFIX) {
            Some(rest) if !rest.contains('/') => rest.to_string(),
            _ => path.to_string(),
        }
    }

    /// The whole reference as docker prints it: `nginx:latest`, `nginx@sha256:...`.
    pub fn familiar(&self) -> String {
        let mut s = self.familiar_name();
        self.push_suffix(&mut s);
        s
    }

    /// The host to connect to: `docker.io` is served by `registry-1.docker.io`.
    pub fn registry_host(&self) -> &str {
        registry_host(&self.domain)
    }

    fn push_suffix(&self, s: &mut String) {
        if let Some(tag) = &self.tag {
            s.push(':');
            s.push_str(tag.as_str());
        }
        if let Some(digest) = &self.digest {
            s.push('@');
            s.push_str(&digest.to_string());
        }
    }
}

/// The host that serves a registry domain's API (`docker.io` -> `registry-1.docker.io`).
pub fn registry_host(domain: &str) -> &str {
    if domain == DEFAULT_DOMAIN || domain == LEGACY_DEFAULT_DOMAIN {
        DEFAULT_REGISTRY_HOST
    } else {
        domain
    }
}

impl FromStr for Reference {
    type Err = ReferenceError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Reference::parse_normalized(s)
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = self.name();
        self.push_suffix(&mut s);
        f.write_str(&s)
    }
}

impl fmt::Debug for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Reference({self})")
    }
}

/// `^[a-f0-9]{64}$`: an image ID, not a name (distribution/reference `anchoredIdentifierRegexp`).
fn is_hex_identifier(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// docker's `splitDockerDomain`.
fn split_domain(s: &str, default_domain: &str) -> (String, String) {
    let (mut domain, mut remainder) = match s.split_once('/') {
        Some((first, rest))
            if first.contains(['.', ':'])
                || first == "localhost"
                || first.to_lowercase() != first =>
        {
            (first.to_string(), rest.to_string())
        }
        _ => (default_domain.to_string(), s.to_string()),
    };
    if domain == LEGACY_DEFAULT_DOMAIN {
        domain = DEFAULT_DOMAIN.to_string();
    }
    if domain == DEFAULT_DOMAIN && !remainder.contains('/') {
        remainder = format!("{OFFICIAL_REPO_PREFIX}{remainder}");
    }
    (domain, remainder)
}

/// `host[:port]` where host is a DNS name (components of letters, digits and inner `-`,
/// joined by `.`) or a bracketed IPv6 address (distribution/reference `domainAndPort`).
fn valid_domain(domain: &str) -> bool {
    let (host, port) = if let Some(rest) = domain.strip_prefix('[') {
        let Some((v6, after)) = rest.split_once(']') else {
            return false;
        };
        if v6.is_empty() || !v6.bytes().all(|b| b.is_ascii_hexdigit() || b == b':') {
            return false;
        }
        match after {
            "" => return true,
            p => match p.strip_prefix(':') {
                Some(port) => ("", Some(port)),
                None => return false,
            },
        }
    } else {
        match domain.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (domain, None),
        }
    };
    let host_ok = domain.starts_with('[')
        || (!host.is_empty()
            && host.split('.').all(|c| {
                let b = c.as_bytes();
                !b.is_empty()
                    && b[0].is_ascii_alphanumeric()
                    && b[b.len() - 1].is_ascii_alphanumeric()
                    && b.iter().all(|&x| x.is_ascii_alphanumeric() || x == b'-')
            }));
    let port_ok = port.is_none_or(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    host_ok && port_ok
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:dbcc1c35ac38df41fd2f5e4130b32ffdb93ebae8b3dbe638c23575912276fc9c";

    /// (input, full normalized form, familiar form); most from distribution/reference's
    /// `normalize_test.go` and `reference_test.go`.
    #[test]
    #[rustfmt::skip]
    fn normalizes_like_docker() {
        let hex64 = "1a3f5e7d9c1b3a5f7e9d1c3b5a7f9e1d3c5b7a9f1e3d5d7c9b1a3f5e7d9c1b3a";
        let cases: Vec<(String, String, String)> = [
            ("nginx", "docker.io/library/nginx", "nginx"),
            ("nginx:latest", "docker.io/library/nginx:latest", "nginx:latest"),
            ("redis:7.2-alpine", "docker.io/library/redis:7.2-alpine", "redis:7.2-alpine"),
            ("library/debian", "docker.io/library/debian", "debian"),
            ("docker.io/debian", "docker.io/library/debian", "debian"),
            ("docker.io/library/debian", "docker.io/library/debian", "debian"),
            ("index.docker.io/debian", "docker.io/library/debian", "debian"),
            ("index.docker.io/docker/docker", "docker.io/docker/docker", "docker/docker"),
            ("docker/docker", "docker.io/docker/docker", "docker/docker"),
            ("fooo/bar", "docker.io/fooo/bar", "fooo/bar"),
            ("other/library", "docker.io/other/library", "other/library"),
            ("library/foo/bar", "docker.io/library/foo/bar", "library/foo/bar"),
            ("store/foo/bar", "docker.io/store/foo/bar", "store/foo/bar"),
            ("test_com/foo", "docker.io/test_com/foo", "test_com/foo"),
            ("docker-rules/docker", "docker.io/docker-rules/docker", "docker-rules/docker"),
            ("docker---rules/docker", "docker.io/docker---rules/docker", "docker---rules/docker"),
            ("dock__er/docker", "docker.io/dock__er/docker", "dock__er/docker"),
            ("d/docker", "docker.io/d/docker", "d/docker"),
            ("jess/t", "docker.io/jess/t", "jess/t"),
            ("ubuntu-12.04-base", "docker.io/library/ubuntu-12.04-base", "ubuntu-12.04-base"),
            ("dbcc1", "docker.io/library/dbcc1", "dbcc1"),
            ("192.168.0.1", "docker.io/library/192.168.0.1", "192.168.0.1"),
            ("192.168.0.1:80", "docker.io/library/192.168.0.1:80", "192.168.0.1:80"),
            ("localhost:5000", "docker.io/library/localhost:5000", "localhost:5000"),
            ("localhost/foo", "localhost/foo", "localhost/foo"),
            ("localhost:5000/team/web:0.1", "localhost:5000/team/web:0.1", "localhost:5000/team/web:0.1"),
            ("127.0.0.1:5000/debian", "127.0.0.1:5000/debian", "127.0.0.1:5000/debian"),
            ("192.168.0.1:8/debian", "192.168.0.1:8/debian", "192.168.0.1:8/debian"),
            ("example.com/private/moonbase", "example.com/private/moonbase", "example.com/private/moonbase"),
            ("example.com:8000/privatebasee", "example.com:8000/privatebasee", "example.com:8000/privatebasee"),
            ("test-com:8080/foo", "test-com:8080/foo", "test-com:8080/foo"),
            ("xn--n3h.com:18080/foo", "xn--n3h.com:18080/foo", "xn--n3h.com:18080/foo"),
            ("Foo/bar", "Foo/bar", "Foo/bar"),
            ("DOCKER/docker", "DOCKER/docker", "DOCKER/docker"),
            ("[fc00::1]:5000/docker", "[fc00::1]:5000/docker", "[fc00::1]:5000/docker"),
            ("[fc00:1:2:3:4:5:6:7]:5000/library/debian", "[fc00:1:2:3:4:5:6:7]:5000/library/debian", "[fc00:1:2:3:4:5:6:7]:5000/library/debian"),
            ("ghcr.io/owner/app:v1", "ghcr.io/owner/app:v1", "ghcr.io/owner/app:v1"),
            ("thisisthesongthatneverendsitgoesonandonandonthisisthesongthatnev", "docker.io/library/thisisthesongthatneverendsitgoesonandonandonthisisthesongthatnev", "thisisthesongthatneverendsitgoesonandonandonthisisthesongthatnev"),
        ]
        .iter()
        .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()))
        .chain([
            (format!("redis@{D}"), format!("docker.io/library/redis@{D}"), format!("redis@{D}")),
            (format!("dmcgowan/myapp@{D}"), format!("docker.io/dmcgowan/myapp@{D}"), format!("dmcgowan/myapp@{D}")),
            (format!("busybox:latest@{D}"), format!("docker.io/library/busybox:latest@{D}"), format!("busybox:latest@{D}")),
            (format!("docker.io/{hex64}"), format!("docker.io/library/{hex64}"), hex64.to_string()),
            (hex64[..63].to_string(), format!("docker.io/library/{}", &hex64[..63]), hex64[..63].to_string()),
        ])
        .collect();
        for (input, full, familiar) in &cases {
            let r = Reference::parse_normalized(input)
                .unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(&r.to_string(), full, "full form of {input}");
            assert_eq!(&r.familiar(), familiar, "familiar form of {input}");
            // The normalized forms parse back to the same reference.
            assert_eq!(Reference::parse_normalized(full).as_ref(), Ok(&r), "{full}");
            if !is_hex_identifier(familiar) {
                assert_eq!(Reference::parse_normalized(familiar).as_ref(), Ok(&r), "{familiar}");
            }
        }
        assert!(cases.len() >= 40, "{} cases", cases.len());
    }

    #[test]
    #[rustfmt::skip]
    fn refuses_what_docker_refuses() {
        let hex64 = "1a3f5e7d9c1b3a5f7e9d1c3b5a7f9e1d3c5b7a9f1e3d5d7c9b1a3f5e7d9c1b3a";
        let long_ns = "a".repeat(250);
        let long = format!("{long_ns}/docker");
        type Expect = fn(&ReferenceError) -> bool;
        let cases: Vec<(&str, Expect)> = vec![
            ("", |e| matches!(e, ReferenceError::Empty)),
            ("https://github.com/docker/docker", |e| matches!(e, ReferenceError::Format(_))),
            ("docker/Docker", |e| matches!(e, ReferenceError::Uppercase(_))),
            ("docker.io/docker/Docker", |e| matches!(e, ReferenceError::Uppercase(_))),
            ("Nginx", |e| matches!(e, ReferenceError::Uppercase(_))),
            ("localhost:5000/Team/web", |e| matches!(e, ReferenceError::Uppercase(_))),
            ("-docker", |e| matches!(e, ReferenceError::Format(_))),
            ("-docker/docker", |e| matches!(e, ReferenceError::Format(_))),
            ("-docker.io/docker/docker", |e| matches!(e, ReferenceError::Format(_))),
            ("docker-/docker", |e| matches!(e, ReferenceError::Format(_))),
            ("docker///docker", |e| matches!(e, ReferenceError::Format(_))),
            ("docker.io/docker///docker", |e| matches!(e, ReferenceError::Format(_))),
            ("____/____", |e| matches!(e, ReferenceError::Format(_))),
            ("_docker/_docker", |e| matches!(e, ReferenceError::Format(_))),
            ("dock..er/docker", |e| matches!(e, ReferenceError::Format(_))),
            ("dock_.er/docker", |e| matches!(e, ReferenceError::Format(_))),
            ("dock-.er/docker", |e| matches!(e, ReferenceError::Format(_))),
            ("docker/", |e| matches!(e, ReferenceError::Format(_))),
            ("[fc00::1]", |e| matches!(e, ReferenceError::Format(_))),
            ("[fc00::1]:5000", |e| matches!(e, ReferenceError::Format(_))),
            ("fc00::1:5000/debian", |e| matches!(e, ReferenceError::Format(_))),
            ("[fe80::1%eth0]:5000/debian", |e| matches!(e, ReferenceError::Format(_))),
            ("[2001:db8:3:4::192.0.2.33]:5000/debian", |e| matches!(e, ReferenceError::Format(_))),
            (hex64, |e| matches!(e, ReferenceError::HexIdentifier(_))),
            (&long, |e| matches!(e, ReferenceError::TooLong)),
            ("nginx:", |e| matches!(e, ReferenceError::Tag(_))),
            ("nginx:-bad", |e| matches!(e, ReferenceError::Tag(_))),
            ("nginx:a/b", |e| matches!(e, ReferenceError::Format(_))),
            ("nginx@sha256:abc", |e| matches!(e, ReferenceError::Digest(_))),
            ("nginx@md5:d41d8cd98f00b204e9800998ecf8427e", |e| matches!(e, ReferenceError::Digest(_))),
            ("nginx@sha256:x@y", |e| matches!(e, ReferenceError::Digest(_))),
            ("a b", |e| matches!(e, ReferenceError::Format(_))),
            ("localhost:port/foo", |e| matches!(e, ReferenceError::Format(_))),
        ];
        for (input, expected) in cases {
            let err = Reference::parse_normalized(input).expect_err(input);
            assert!(expected(&err), "{input}: unexpected error {err:?}");
            assert!(err.to_string().starts_with("invalid"), "{input}: {err}");
        }
    }

    #[test]
    fn accessors_defaults_and_hosts() {
        let r = Reference::parse_normalized("nginx").unwrap();
        assert_eq!(r.domain(), "docker.io");
        assert_eq!(r.repository().as_str(), "library/nginx");
        assert_eq!(r.tag(), None);
        assert_eq!(r.registry_host(), "registry-1.docker.io");
        let r = r.with_default_tag();
        assert_eq!(r.to_string(), "docker.io/library/nginx:latest");
        assert_eq!(r.name(), "docker.io/library/nginx");
        let d: Digest = D.parse().unwrap();
        assert_eq!(r.with_digest(d.clone()).familiar(), format!("nginx@{D}"));
        let pinned = Reference::parse_normalized(&format!("nginx@{D}")).unwrap();
        assert_eq!(
            pinned.clone().with_default_tag(),
            pinned,
            "a digest needs no tag"
        );
        let local = Reference::parse_normalized("localhost:5000/team/web").unwrap();
        assert_eq!(local.registry_host(), "localhost:5000");
        assert_eq!(local.repository().project(), "team");
    }

    #[test]
    fn another_default_domain() {
        let r =
            Reference::parse_normalized_with_domain("team/web:1", "registry.corp:5000").unwrap();
        assert_eq!(r.to_string(), "registry.corp:5000/team/web:1");
        let r = Reference::parse_normalized_with_domain("web", "registry.corp").unwrap();
        assert_eq!(
            r.to_string(),
            "registry.corp/web",
            "library/ is docker.io's alone"
        );
        let r =
            Reference::parse_normalized_with_domain("docker.io/nginx", "registry.corp").unwrap();
        assert_eq!(r.to_string(), "docker.io/library/nginx");
    }
}
