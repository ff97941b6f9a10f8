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
