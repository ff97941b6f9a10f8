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
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn bearer(pairs: &[(&str, &str)]) -> Challenge {
        Challenge {
            scheme: Scheme::Bearer,
            params: params(pairs),
            token68: None,
        }
    }

    fn basic(pairs: &[(&str, &str)]) -> Challenge {
        Challenge {
            scheme: Scheme::Basic,
            params: params(pairs),
            token68: None,
        }
    }

    #[test]
    fn parses_headers() {
        let cases: Vec<(&str, Vec<Challenge>)> = vec![
            ("", vec![]),
            ("   ", vec![]),
            (" , ,", vec![]),
            (
                r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/alpine:pull""#,
                vec![bearer(&[
                    ("realm", "https://auth.docker.io/token"),
                    ("service", "registry.docker.io"),
                    ("scope", "repository:library/alpine:pull"),
                ])],
            ),
            (
                r#"Bearer realm="r",scope="repository:a:pull,push""#,
                vec![bearer(&[
                    ("realm", "r"),
                    ("scope", "repository:a:pull,push"),
                ])],
            ),
            (r#"bEaReR REALM="r""#, vec![bearer(&[("realm", "r")])]),
            (
                r#"Basic realm="Registry Realm""#,
                vec![basic(&[("realm", "Registry Realm")])],
            ),
            ("Basic", vec![basic(&[])]),
            (
                r#"  Bearer   realm = "r" ,  service = "s"  , "#,
                vec![bearer(&[("realm", "r"), ("service", "s")])],
            ),
            (
                r#"Bearer realm="say \"hi\" \\ ok""#,
                vec![bearer(&[("realm", r#"say "hi" \ ok"#)])],
            ),
            (
                "Bearer realm=https://auth.example/token,service=reg",
                vec![bearer(&[
                    ("realm", "https://auth.example/token"),
                    ("service", "reg"),
                ])],
            ),
            (
                r#"Basic realm="a", Bearer realm="b",service="s""#,
                vec![
                    basic(&[("realm", "a")]),
                    bearer(&[("realm", "b"), ("service", "s")]),
                ],
            ),
            (
                r#"Basic, Bearer realm="b""#,
                vec![basic(&[]), bearer(&[("realm", "b")])],
            ),
            (
                r#"Bearer realm="r",error="insufficient_scope",scope="repository:a:push""#,
                vec![bearer(&[
                    ("realm", "r"),
                    ("error", "insufficient_scope"),
                    ("scope", "repository:a:push"),
                ])],
            ),
            (
                r#"Bearer realm="first",realm="second""#,
                vec![bearer(&[("realm", "second")])],
            ),
            (r#"Bearer realm="""#, vec![bearer(&[("realm", "")])]),
            (
                r#"Bearer realm="ünïcode""#,
                vec![bearer(&[("realm", "ünïcode")])],
            ),
            (
                "Negotiate YIIC+w==",
                vec![Challenge {
                    scheme: Scheme::Other("Negotiate".into()),
                    params: BTreeMap::new(),
                    token68: Some("YIIC+w==".into()),
                }],
            ),
            (
                r#"Negotiate abc, Basic realm="x""#,
                vec![
                    Challenge {
                        scheme: Scheme::Other("Negotiate".into()),
                        params: BTreeMap::new(),
                        token68: None,
                    },
                    // `abc` followed by a comma is read as the next scheme.
                    Challenge {
                        scheme: Scheme::Other("abc".into()),
                        params: BTreeMap::new(),
                        token68: None,
                    },
                    basic(&[("realm", "x")]),
                ],
            ),
        ];
        for (header, want) in cases {
            assert_eq!(parse(header), Ok(want), "header {header:?}");
        }
    }

    #[test]
    fn rejects_garbage_without_panicking() {
        let cases = [
            (r#""Bearer""#, ChallengeError::ExpectedScheme { at: 0 }),
            ("=", ChallengeError::ExpectedScheme { at: 0 }),
            (
                "Bearer=x",
                ChallengeError::UnexpectedAfterScheme { at: 6, found: '=' },
            ),
            (
                r#"Bearer realm="unterminated"#,
                ChallengeError::UnterminatedQuote { at: 13 },
            ),
            (
                r#"Bearer realm="ends with backslash\"#,
                ChallengeError::UnterminatedQuote { at: 13 },
            ),
            (
                r#"Bearer realm="r", ="x""#,
                ChallengeError::ExpectedParam { at: 18 },
            ),
            ("ünïcode", ChallengeError::ExpectedScheme { at: 0 }),
            (
                "Bearer\u{0}realm=x",
                ChallengeError::UnexpectedAfterScheme {
                    at: 6,
                    found: '\u{0}',
                },
            ),
            (
                r#"Bearer realm="r" "stray""#,
                ChallengeError::ExpectedParam { at: 17 },
            ),
        ];
        for (header, want) in cases {
            assert_eq!(parse(header), Err(want), "header {header:?}");
        }
        // Random bytes: any answer is fine as long as there is no panic.
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        let alphabet = b"Bearer Basic realm=\"\\,  =x\t\"scope:/";
        for _ in 0..2000 {
            let len = (seed % 24) as usize;
            let s: String = (0..len)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    alphabet[(seed % alphabet.len() as u64) as usize] as char
                })
                .collect();
            let _ = parse(&s);
        }
    }

    #[test]
    fn challenge_accessors() {
        let c = parse(r#"Bearer Realm="r",SERVICE="s",scope="repository:a:pull repository:b:push repository:a:push""#)
            .expect("valid header");
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].realm(), Some("r"));
        assert_eq!(c[0].service(), Some("s"));
        assert_eq!(c[0].param("Service"), Some("s"));
        assert_eq!(c[0].error(), None);
        let scopes = c[0].scopes().expect("valid scopes");
        let shown: Vec<String> = scopes.iter().map(Scope::to_string).collect();
        assert_eq!(shown, ["repository:a:pull,push", "repository:b:push"]);
    }

    #[test]
    fn parses_scopes() {
        let ok = [
            (
                "repository:library/alpine:pull",
                "repository",
                "library/alpine",
                &["pull"][..],
            ),
            (
                "repository:a/b:pull,push",
                "repository",
                "a/b",
                &["pull", "push"],
            ),
            (
                "repository:a:push,pull,push",
                "repository",
                "a",
                &["push", "pull"],
            ),
            ("registry:catalog:*", "registry", "catalog", &["*"]),
            (
                "repository:localhost:5000/a:pull",
                "repository",
                "localhost:5000/a",
                &["pull"],
            ),
            (
                "repository(plugin):vieux/sshfs:pull",
                "repository(plugin)",
                "vieux/sshfs",
                &["pull"],
            ),
        ];
        for (s, ty, name, actions) in ok {
            let scope = Scope::parse(s).expect(s);
            assert_eq!(scope.resource_type, ty, "{s}");
            assert_eq!(scope.name, name, "{s}");
            assert_eq!(scope.actions, actions, "{s}");
        }
        assert_eq!(
            Scope::parse("repository:a:push,pull,push").map(|s| s.to_string()),
            Ok("repository:a:push,pull".to_string())
        );
        let bad = [
            ("", "expected type:name:actions"),
            ("repository", "expected type:name:actions"),
            ("repository:a", "expected type:name:actions"),
            (":a:pull", "empty resource type"),
            ("repository::pull", "empty resource name"),
            ("repository:a:", "no actions"),
            ("repository:a:pull,,push", "empty action"),
            ("repository:a b:pull", "contains whitespace"),
        ];
        for (s, reason) in bad {
            assert_eq!(
                Scope::parse(s),
                Err(ChallengeError::InvalidScope {
                    scope: s.to_string(),
                    reason
                }),
                "{s:?}"
            );
        }
    }

    #[test]
    fn merges_scopes() {
        let merged = merge_scopes([
            Scope::repository("a", &["pull"]),
            Scope::repository("b", &["pull"]),
            Scope::repository("a", &["push", "pull"]),
            Scope::registry_catalog(),
            Scope::new("repository(plugin)", "a", &["pull"]),
        ]);
        let shown: Vec<String> = merged.iter().map(Scope::to_string).collect();
        assert_eq!(
            shown,
            [
                "repository:a:pull,push",
                "repository:b:pull",
                "registry:catalog:*",
                "repository(plugin):a:pull",
            ]
        );
        let mut a = Scope::repository("a", &["pull"]);
        assert!(!a.merge(&Scope::repository("b", &["push"])));
        assert_eq!(a.actions, ["pull"]);
        assert_eq!(
            parse_scopes("  repository:a:pull   repository:a:delete ")
                .map(|v| v.iter().map(Scope::to_string).collect::<Vec<_>>()),
            Ok(vec!["repository:a:pull,delete".to_string()])
        );
        assert!(parse_scopes("repository:a:pull nonsense").is_err());
    }
}
