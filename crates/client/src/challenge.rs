//! `WWW-Authenticate` challenges (RFC 7235 section 4.1) and token scopes (the docker registry
//! token auth spec, `docs/spec/auth/token.md` in distribution/distribution).
//!
//! One header value may hold several challenges, and commas separate both challenges and their
//! parameters: `Basic realm="x", Bearer realm="y",scope="repository:a:pull,push"`. A name
//! followed by `=` is a parameter of the current challenge; a bare name starts the next one.
//! Unquoted values are read up to the next comma or space, which also accepts the
//! `realm=https://auth.example/token` that some registries send without quotes.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChallengeError {
    #[error("invalid WWW-Authenticate header: expected an auth scheme at byte {at}")]
    ExpectedScheme { at: usize },
    #[error("invalid WWW-Authenticate header: expected a parameter name at byte {at}")]
    ExpectedParam { at: usize },
    #[error("invalid WWW-Authenticate header: unexpected {found:?} after the scheme at byte {at}")]
    UnexpectedAfterScheme { at: usize, found: char },
    #[error("invalid WWW-Authenticate header: unterminated quoted string starting at byte {at}")]
    UnterminatedQuote { at: usize },
    #[error("invalid scope {scope:?}: {reason}")]
    InvalidScope { scope: String, reason: &'static str },
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Scheme {
    Bearer,
    Basic,
    /// Any other scheme (`Negotiate`, `Digest`, ...), as spelled in the header.
    Other(String),
}

impl Scheme {
    fn from_name(name: &str) -> Scheme {
        if name.eq_ignore_ascii_case("bearer") {
            Scheme::Bearer
        } else if name.eq_ignore_ascii_case("basic") {
            Scheme::Basic
        } else {
            Scheme::Other(name.to_string())
        }
    }
}

impl fmt::Display for Scheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scheme::Bearer => f.write_str("Bearer"),
            Scheme::Basic => f.write_str("Basic"),
            Scheme::Other(s) => f.write_str(s),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    pub scheme: Scheme,
    /// Parameter names are lowercased (they are case-insensitive); values are unquoted and
    /// unescaped. A repeated name keeps its last value, as docker's parser does.
    pub params: BTreeMap<String, String>,
    /// The `token68` form (`Negotiate YIIC...`), which registries do not use.
    pub token68: Option<String>,
}

impl Challenge {
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .get(&name.to_ascii_lowercase())
            .map(String::as_str)
    }

    pub fn realm(&self) -> Option<&str> {
        self.param("realm")
    }

    pub fn service(&self) -> Option<&str> {
        self.param("service")
    }

    /// The raw `scope` parameter: space-separated scopes.
    pub fn scope(&self) -> Option<&str> {
        self.param("scope")
    }

    /// The `scope` parameter parsed, with actions on the same resource merged.
    pub fn scopes(&self) -> Result<Vec<Scope>, ChallengeError> {
        self.scope().map_or(Ok(Vec::new()), parse_scopes)
    }

    /// `insufficient_scope`, `invalid_token`, ... (RFC 6750 section 3.1).
    pub fn error(&self) -> Option<&str> {
        self.param("error")
    }
}

/// Parses one `WWW-Authenticate` header value. An empty or blank value gives no challenges.
pub fn parse(header: &str) -> Result<Vec<Challenge>, ChallengeError> {
    let mut p = Parser {
        s: header,
        b: header.as_bytes(),
        pos: 0,
    };
    let mut out = Vec::new();
    loop {
        p.skip_list_separators();
        if p.eof() {
            return Ok(out);
        }
        let at = p.pos;
        let name = p.token();
        if name.is_empty() {
            return Err(ChallengeError::ExpectedScheme { at });
        }
        match p.peek() {
            None | Some(b' ' | b'\t' | b',') => {}
            Some(_) => {
                return Err(ChallengeError::UnexpectedAfterScheme {
                    at: p.pos,
                    found: p.peek_char(),
                });
            }
        }
        let mut challenge = Challenge {
            scheme: Scheme::from_name(name),
            params: BTreeMap::new(),
            token68: None,
        };
        p.skip_ws();
        challenge.token68 = p.token68();
        p.params(&mut challenge)?;
        out.push(challenge);
    }
}

struct Parser<'a> {
    s: &'a str,
    b: &'a [u8],
    pos: usize,
}

/// RFC 7230 `tchar`.
fn is_tchar(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&c)
}

fn is_token68_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"-._~+/".contains(&c)
}

impl<'a> Parser<'a> {
    fn eof(&self) -> bool {
        self.pos >= self.b.len()
    }

    fn peek(&self) -> Option<u8> {
        self.b.get(self.pos).copied()
    }

    fn peek_char(&self) -> char {
        self.s
            .get(self.pos..)
            .and_then(|rest| rest.chars().next())
            .unwrap_or('?')
    }

    fn skip_ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.pos += 1;
        }
    }

    fn skip_list_separators(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b',')) {
            self.pos += 1;
        }
    }

    /// Slices between ASCII positions, which are always char boundaries.
    fn slice(&self, start: usize, end: usize) -> &'a str {
        self.s.get(start..end).unwrap_or("")
    }

    fn token(&mut self) -> &'a str {
        let start = self.pos;
        while self.peek().is_some_and(is_tchar) {
            self.pos += 1;
        }
        self.slice(start, self.pos)
    }

    /// `token68` directly after the scheme: only when what follows it is the end of the
    /// challenge, so `realm="x"` (a parameter) is never taken for one.
    fn token68(&mut self) -> Option<String> {
        let start = self.pos;
        let mut end = start;
        while self.b.get(end).copied().is_some_and(is_token68_char) {
            end += 1;
        }
        if end == start {
            return None;
        }
        while self.b.get(end) == Some(&b'=') {
            end += 1;
        }
        let mut after = end;
        while matches!(self.b.get(after), Some(b' ' | b'\t')) {
            after += 1;
        }
        if !matches!(self.b.get(after), None | Some(b',')) {
            return None;
        }
        // `Basic, Bearer ...`: a bare name followed by a comma is the next challenge's
        // scheme, not a token68; a token68 either has padding or ends the header.
        let has_padding = self.b.get(end - 1) == Some(&b'=');
        if !has_padding && self.b.get(after).is_some() {
            return None;
        }
        self.pos = after;
        Some(self.slice(start, end).to_string())
    }

    /// Parameters up to the end, or up to a bare name (the next challenge's scheme).
    fn params(&mut self, challenge: &mut Challenge) -> Result<(), ChallengeError> {
        loop {
            self.skip_list_separators();
            if self.eof() {
                return Ok(());
            }
            let at = self.pos;
            let name = self.token();
            if name.is_empty() {
                return Err(ChallengeError::ExpectedParam { at });
            }
            self.skip_ws();
            if self.peek() != Some(b'=') {
                self.pos = at;
                return Ok(());
            }
            self.pos += 1;
            self.skip_ws();
            let value = if self.peek() == Some(b'"') {
                self.quoted()?
            } else {
                self.unquoted().to_string()
            };
            challenge.params.insert(name.to_ascii_lowercase(), value);
        }
    }

    fn quoted(&mut self) -> Result<String, ChallengeError> {
        let at = self.pos;
        self.pos += 1;
        let mut value = Vec::new();
        loop {
            match self.peek() {
                None => return Err(ChallengeError::UnterminatedQuote { at }),
                Some(b'"') => {
                    self.pos += 1;
                    // Removing ASCII backslashes keeps the bytes valid UTF-8.
                    return String::from_utf8(value)
                        .map_err(|_| ChallengeError::UnterminatedQuote { at });
                }
                Some(b'\\') => {
                    self.pos += 1;
                    match self.peek() {
                        None => return Err(ChallengeError::UnterminatedQuote { at }),
                        Some(c) => value.push(c),
                    }
                    self.pos += 1;
                }
                Some(c) => {
                    value.push(c);
                    self.pos += 1;
                }
            }
        }
    }

    fn unquoted(&mut self) -> &'a str {
        let start = self.pos;
        while !matches!(self.peek(), None | Some(b' ' | b'\t' | b',')) {
            self.pos += 1;
        }
        self.slice(start, self.pos)
    }
}

/// One resource scope of a token request: `repository:library/alpine:pull,push`,
/// `registry:catalog:*`, `repository(plugin):name:pull`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Scope {
    pub resource_type: String,
    /// May itself hold `:` (`repository:localhost:5000/a:pull`, per the spec's grammar).
    pub name: String,
    /// In the order first seen, without repeats.
    pub actions: Vec<String>,
}

impl Scope {
    pub fn new(resource_type: &str, name: &str, actions: &[&str]) -> Scope {
        let mut scope = Scope {
            resource_type: resource_type.to_string(),
            name: name.to_string(),
            actions: Vec::new(),
        };
        scope.add_actions(actions.iter().map(|a| a.to_string()));
        scope
    }

    pub fn repository(name: &str, actions: &[&str]) -> Scope {
        Scope::new("repository", name, actions)
    }

    pub fn registry_catalog() -> Scope {
        Scope::new("registry", "catalog", &["*"])
    }

    pub fn parse(s: &str) -> Result<Scope, ChallengeError> {
        let invalid = |reason| ChallengeError::InvalidScope {
            scope: s.to_string(),
            reason,
        };
        if s.chars().any(char::is_whitespace) {
            return Err(invalid("contains whitespace"));
        }
        let (resource_type, rest) = s
            .split_once(':')
            .ok_or_else(|| invalid("expected type:name:actions"))?;
        let (name, actions) = rest
            .rsplit_once(':')
            .ok_or_else(|| invalid("expected type:name:actions"))?;
        if resource_type.is_empty() {
            return Err(invalid("empty resource type"));
        }
        if name.is_empty() {
            return Err(invalid("empty resource name"));
        }
        if actions.is_empty() {
            return Err(invalid("no actions"));
        }
        if actions.split(',').any(str::is_empty) {
            return Err(invalid("empty action"));
        }
        let mut scope = Scope {
            resource_type: resource_type.to_string(),
            name: name.to_string(),
            actions: Vec::new(),
        };
        scope.add_actions(actions.split(',').map(str::to_string));
        Ok(scope)
    }

    /// Whether `other` names the same resource, so their actions can be merged.
    pub fn same_resource(&self, other: &Scope) -> bool {
        self.resource_type == other.resource_type && self.name == other.name
    }

    /// Adds `other`'s actions if it is the same resource; false (and no change) otherwise.
    pub fn merge(&mut self, other: &Scope) -> bool {
        if !self.same_resource(other) {
            return false;
        }
        self.add_actions(other.actions.iter().cloned());
        true
    }

    fn add_actions(&mut self, actions: impl IntoIterator<Item = String>) {
        for a in actions {
            if !self.actions.contains(&a) {
                self.actions.push(a);
            }
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}",
            self.resource_type,
            self.name,
            self.actions.join(",")
        )
    }
}

impl FromStr for Scope {
    type Err = ChallengeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Scope::parse(s)
    }
}

/// Merges scopes on the same resource, keeping the order in which resources first appear.
pub fn merge_scopes(scopes: impl IntoIterator<Item = Scope>) -> Vec<Scope> {
    let mut out: Vec<Scope> = Vec::new();
    for scope in scopes {
        if !out.iter_mut().any(|s| s.merge(&scope)) {
            out.push(scope);
        }
    }
    out
}

/// A space-separated list of scopes (the `scope` challenge parameter), merged.
pub fn parse_scopes(s: &str) -> Result<Vec<Scope>, ChallengeError> {
    let scopes = s
        .split_whitespace()
        .map(Scope::parse)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(merge_scopes(scopes))
}

#[cfg(test)]
mod tests;
