use std::fmt;
use std::str::FromStr;

use crate::digest::{Digest, DigestError};

/// Longest repository name accepted (distribution-spec: clients limit host + `/` + name to 255).
pub const MAX_REPOSITORY_LEN: usize = 255;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum NameError {
    #[error(
        "invalid repository name {0:?}: lowercase letters, digits and the separators . _ __ - \
         between path components joined by /, at most 255 characters"
    )]
    Repository(String),
    #[error("invalid tag {0:?}: [a-zA-Z0-9_][a-zA-Z0-9._-]{{0,127}}")]
    Tag(String),
    #[error(transparent)]
    Digest(#[from] DigestError),
}

/// A repository name such as `team/web` (distribution-spec "Pulling manifests", `<name>`):
/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(\/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*`.
///
/// Every component starts and ends with an alphanumeric, so `..`, `.` and empty components are
/// impossible and the name can never address a path outside the data directory.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Repository(String);

impl Repository {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The first path component: the project (Harbor) or namespace (Docker Hub).
    pub fn project(&self) -> &str {
        self.0.split('/').next().unwrap_or(&self.0)
    }
}

pub(crate) fn valid_component(c: &str) -> bool {
    let b = c.as_bytes();
    let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    if b.is_empty() || !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && !alnum(b[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|x| x == b'-');
        if !ok {
            return false;
        }
    }
    true
}

impl FromStr for Repository {
    type Err = NameError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() || s.len() > MAX_REPOSITORY_LEN || !s.split('/').all(valid_component) {
            return Err(NameError::Repository(s.chars().take(300).collect()));
        }
        Ok(Repository(s.to_string()))
    }
}

impl fmt::Display for Repository {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Repository {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

/// A tag: `[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tag(String);

impl Tag {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for Tag {
    type Err = NameError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let b = s.as_bytes();
        let ok = !b.is_empty()
            && b.len() <= 128
            && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
            && b[1..]
                .iter()
                .all(|&x| x.is_ascii_alphanumeric() || x == b'_' || x == b'.' || x == b'-');
        if !ok {
            return Err(NameError::Tag(s.chars().take(200).collect()));
        }
        Ok(Tag(s.to_string()))
    }
}

impl fmt::Display for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

/// The `<reference>` of `/v2/<name>/manifests/<reference>`: a tag or a digest. A tag cannot
/// contain `:`, so the two never overlap.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum ManifestRef {
    Tag(Tag),
    Digest(Digest),
}

impl FromStr for ManifestRef {
    type Err = NameError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.contains(':') {
            Ok(ManifestRef::Digest(s.parse()?))
        } else {
            Ok(ManifestRef::Tag(s.parse()?))
        }
    }
}

impl fmt::Display for ManifestRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ManifestRef::Tag(t) => t.fmt(f),
            ManifestRef::Digest(d) => d.fmt(f),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repository_names() {
        let good = [
            "a",
            "library/alpine",
            "team/web",
            "a/b/c/d/e/f/g/h",
            "my-app",
            "my--app",
            "my_app",
            "my__app",
            "my.app",
            "a0/b1.c2_d3__e4-f5",
        ];
        for g in good {
            assert_eq!(g.parse::<Repository>().expect(g).as_str(), g);
        }
        let too_long = "a".repeat(256);
        let bad = [
            "",
            "/",
            "a/",
            "/a",
            "a//b",
            "..",
            "a/../b",
            "a/./b",
            "%2e%2e",
            "A",
            "Team/web",
            "a___b",
            "a.-b",
            "-a",
            "a-",
            "a_",
            ".a",
            "a b",
            "a\\b",
            "a:b",
            too_long.as_str(),
        ];
        for b in bad {
            assert!(b.parse::<Repository>().is_err(), "{b:?} should be refused");
        }
        assert!("a".repeat(255).parse::<Repository>().is_ok());
        assert_eq!(
            "team/web/api"
                .parse::<Repository>()
                .expect("valid")
                .project(),
            "team"
        );
    }

    #[test]
    fn tags() {
        for g in ["latest", "v1.0.0", "_x", "A-b_c.d", &"a".repeat(128)] {
            assert!(g.parse::<Tag>().is_ok(), "{g}");
        }
        for b in ["", ".x", "-x", "a/b", "a:b", "a b", &"a".repeat(129)] {
            assert!(b.parse::<Tag>().is_err(), "{b}");
        }
    }

    #[test]
    fn manifest_refs() {
        assert!(matches!("latest".parse(), Ok(ManifestRef::Tag(_))));
        assert!(matches!(
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855".parse(),
            Ok(ManifestRef::Digest(_))
        ));
        assert!("sha256:xyz".parse::<ManifestRef>().is_err());
    }
}
