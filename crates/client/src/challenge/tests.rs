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
