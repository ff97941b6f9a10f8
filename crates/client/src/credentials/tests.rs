use std::sync::Mutex;

use serde_json::json;

use super::*;

const HUB: &str = "https://index.docker.io/v1/";

fn read_json(path: &Path) -> Value {
    let bytes = std::fs::read(path).expect("config written");
    serde_json::from_slice(&bytes).expect("config is JSON")
}

fn write_json(path: &Path, v: &Value) {
    std::fs::write(path, serde_json::to_vec(v).expect("serializable")).expect("write config");
}

#[test]
fn keys_like_docker() {
    let cases = [
        ("docker.io", HUB),
        ("index.docker.io", HUB),
        ("registry-1.docker.io", HUB),
        (HUB, HUB),
        ("https://index.docker.io/v1", HUB),
        ("localhost:5000", "localhost:5000"),
        ("https://myreg:5000", "myreg:5000"),
        ("http://myreg:5000/v1/", "myreg:5000"),
        ("myreg.example.com/", "myreg.example.com"),
        ("ghcr.io", "ghcr.io"),
    ];
    for (input, want) in cases {
        assert_eq!(registry_key(input), want, "{input}");
    }
}

#[test]
fn missing_and_empty_files_are_empty_configs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("nope/config.json");
    let store = CredentialStore::open(&missing).expect("missing file is fine");
    assert_eq!(store.get(HUB).expect("get"), None);
    let empty = dir.path().join("empty.json");
    std::fs::write(&empty, "\n").expect("write");
    assert!(
        DockerConfig::load(&empty)
            .expect("empty file")
            .json()
            .is_empty()
    );

    let bad = [
        ("[]", "expected a JSON object"),
        (r#"{"auths": []}"#, "\"auths\" must be an object"),
        (r#"{"auths": {"a": 1}}"#, "auths[\"a\"] must be an object"),
        (r#"{"credsStore": 1}"#, "\"credsStore\" must be a string"),
        (
            r#"{"credHelpers": {"a": 1}}"#,
            "credHelpers[\"a\"] must be a string",
        ),
    ];
    for (text, message) in bad {
        std::fs::write(&empty, text).expect("write");
        let err = DockerConfig::load(&empty).expect_err(text);
        assert!(err.to_string().ends_with(message), "{text}: {err}");
    }
    std::fs::write(&empty, "{").expect("write");
    assert!(matches!(
        DockerConfig::load(&empty),
        Err(CredentialsError::Parse { .. })
    ));
}

#[test]
fn file_round_trip_keeps_other_keys_and_is_private() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("fresh/config.json");
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    write_json(
        &path,
        &json!({
            "auths": {"other:5000": {"auth": BASE64.encode("o:p"), "email": "x@y"}},
            "psFormat": "table {{.ID}}",
            "plugins": {"buildx": {"x": "y"}},
            "currentContext": "desktop",
        }),
    );

    let mut store = CredentialStore::open(&path).expect("open");
    let stored = store
        .store("localhost:5000", &Credential::password("alice", "s3cr:et"))
        .expect("store");
    assert_eq!(stored, StoredIn::File(path.clone()));
    let stored = store
        .store(HUB, &Credential::identity_token("bob", "refresh-token"))
        .expect("store");
    assert_eq!(stored, StoredIn::File(path.clone()));

    let v = read_json(&path);
    assert_eq!(v["psFormat"], "table {{.ID}}");
    assert_eq!(v["plugins"]["buildx"]["x"], "y");
    assert_eq!(v["currentContext"], "desktop");
    assert_eq!(v["auths"]["other:5000"]["email"], "x@y");
    assert_eq!(
        v["auths"]["localhost:5000"],
        json!({"auth": BASE64.encode("alice:s3cr:et")})
    );
    assert_eq!(
        v["auths"][HUB],
        json!({"auth": BASE64.encode("bob:"), "identitytoken": "refresh-token"})
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&path).expect("stat").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let leftovers: Vec<_> = std::fs::read_dir(path.parent().expect("parent"))
        .expect("readdir")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name())
        .collect();
    assert_eq!(leftovers, [std::ffi::OsString::from("config.json")]);

    let store = CredentialStore::open(&path).expect("reopen");
    assert_eq!(
        store.get("localhost:5000").expect("get"),
        Some(Credential::password("alice", "s3cr:et"))
    );
    assert_eq!(
        store.get(&registry_key("docker.io")).expect("get"),
        Some(Credential::identity_token("bob", "refresh-token"))
    );
    assert_eq!(
        store.get("other:5000").expect("get"),
        Some(Credential::password("o", "p"))
    );
    assert_eq!(store.get("nowhere:1").expect("get"), None);

    let mut store = store;
    assert!(store.erase("localhost:5000").expect("erase"));
    assert!(!store.erase("localhost:5000").expect("erase again"));
    let v = read_json(&path);
    assert_eq!(v["auths"].get("localhost:5000"), None);
    assert_eq!(v["psFormat"], "table {{.ID}}");
}

#[test]
fn creates_a_private_directory() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("a/b/config.json");
    let mut store = CredentialStore::open(&path).expect("open");
    store
        .store("r:1", &Credential::password("u", "p"))
        .expect("store");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        for d in [dir.path().join("a"), dir.path().join("a/b")] {
            let mode = std::fs::metadata(&d).expect("stat").permissions().mode();
            assert_eq!(mode & 0o777, 0o700, "{}", d.display());
        }
    }
    assert_eq!(
        read_json(&path)["auths"]["r:1"]["auth"],
        BASE64.encode("u:p")
    );
}

#[test]
fn finds_legacy_keys_with_scheme_and_path() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("config.json");
    write_json(
        &path,
        &json!({"auths": {
            "https://myreg:5000": {"auth": BASE64.encode("a:1")},
            "http://other:5000/v1/": {"username": "b", "password": "2"},
            "index.docker.io": {"auth": BASE64.encode("c:3\u{0}")},
            "broken:1": {"auth": "!!not base64"},
            "nouser:1": {"auth": BASE64.encode(":pw")},
            "empty:1": {},
        }}),
    );
    let mut store = CredentialStore::open(&path).expect("open");
    let cases = [
        ("myreg:5000", Some(Credential::password("a", "1"))),
        ("other:5000", Some(Credential::password("b", "2"))),
        (HUB, Some(Credential::password("c", "3"))),
        ("empty:1", None),
        ("myreg:5001", None),
    ];
    for (key, want) in cases {
        assert_eq!(store.get(key).expect(key), want, "{key}");
    }
    for key in ["broken:1", "nouser:1"] {
        let err = store.get(key).expect_err(key);
        assert!(err.to_string().contains("is not base64"), "{err}");
    }
    assert!(store.erase("myreg:5000").expect("erase"));
    assert!(store.erase(HUB).expect("erase"));
    let auths = read_json(&path)["auths"].clone();
    assert_eq!(auths.get("https://myreg:5000"), None);
    assert_eq!(auths.get("index.docker.io"), None);
    assert!(auths.get("http://other:5000/v1/").is_some());
}

#[cfg(unix)]
#[test]
fn symlinked_config_stays_a_symlink() {
    let dir = tempfile::tempdir().expect("tempdir");
    let real = dir.path().join("real.json");
    write_json(&real, &json!({"keep": true}));
    let link = dir.path().join("config.json");
    std::os::unix::fs::symlink(&real, &link).expect("symlink");
    let mut store = CredentialStore::open(&link).expect("open");
    store
        .store("r:1", &Credential::password("u", "p"))
        .expect("store");
    assert!(
        std::fs::symlink_metadata(&link)
            .expect("stat")
            .file_type()
            .is_symlink()
    );
    let v = read_json(&real);
    assert_eq!(v["keep"], true);
    assert_eq!(v["auths"]["r:1"]["auth"], BASE64.encode("u:p"));
}

#[test]
fn debug_hides_secrets() {
    let shown = format!("{:?}", Credential::password("alice", "hunter2"));
    assert!(
        shown.contains("alice") && !shown.contains("hunter2"),
        "{shown}"
    );
    let shown = format!("{:?}", Credential::identity_token("alice", "tok123"));
    assert!(!shown.contains("tok123"), "{shown}");
}

/// A `docker-credential-test` that keeps one file per server next to itself, speaking the
/// helper protocol (secrets in files, "not found" on stdout with exit 1, like the real ones).
#[cfg(unix)]
const FAKE_HELPER: &str = r#"#!/bin/sh
dir="$(dirname "$0")/secrets"
mkdir -p "$dir"
input=$(cat)
file_for() { printf '%s' "$1" | tr -c 'A-Za-z0-9' '_'; }
case "$1" in
store)
    url=$(printf '%s' "$input" | sed -n 's/.*"ServerURL":"\([^"]*\)".*/\1/p')
    printf '%s' "$input" > "$dir/$(file_for "$url")"
    ;;
get)
    f="$dir/$(file_for "$input")"
    if [ -f "$f" ]; then cat "$f"; else echo "credentials not found in native keychain"; exit 1; fi
    ;;
erase)
    f="$dir/$(file_for "$input")"
    if [ -f "$f" ]; then rm "$f"; else echo "credentials not found in native keychain"; exit 1; fi
    ;;
*)
    echo "unknown action $1" >&2; exit 2
    ;;
esac
"#;

/// Executing a script while another thread of this test binary holds it open for writing
/// (between its fork and exec) fails with ETXTBSY; the helper tests take turns.
#[cfg(unix)]
static HELPER_TESTS: Mutex<()> = Mutex::new(());

#[cfg(unix)]
fn install_helper(dir: &Path, name: &str, script: &str) {
    use std::os::unix::fs::PermissionsExt as _;
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).expect("mkdir bin");
    let path = bin.join(format!("{HELPER_PREFIX}{name}"));
    std::fs::write(&path, script).expect("write helper");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
}

#[cfg(unix)]
fn helper_store(dir: &Path, config: Value) -> (PathBuf, CredentialStore) {
    let path = dir.join("config.json");
    write_json(&path, &config);
    let store = CredentialStore::open(&path)
        .expect("open")
        .with_helper_path(vec![dir.join("missing"), dir.join("bin")]);
    (path, store)
}

#[cfg(unix)]
#[test]
fn cred_helpers_and_creds_store() {
    let _turn = HELPER_TESTS.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().expect("tempdir");
    install_helper(dir.path(), "test", FAKE_HELPER);
    install_helper(dir.path(), "other", "#!/bin/sh\necho unused; exit 3\n");

    for config in [
        json!({"credHelpers": {"helped:5000": "test"}, "auths": {}}),
        json!({"credsStore": "test", "credHelpers": {"elsewhere:1": "other"}}),
    ] {
        let (path, mut store) = helper_store(dir.path(), config.clone());
        assert_eq!(store.get("helped:5000").expect("get"), None, "{config}");

        let stored = store
            .store(
                "helped:5000",
                &Credential::password("alice", "pw \"quoted\""),
            )
            .expect("store");
        assert_eq!(stored, StoredIn::Helper("test".into()));
        let v = read_json(&path);
        assert_eq!(v["auths"]["helped:5000"], json!({}), "{config}");
        assert_eq!(
            store.get("helped:5000").expect("get"),
            Some(Credential::password("alice", "pw \"quoted\""))
        );

        // Identity tokens travel as username "<token>".
        store
            .store("helped:5000", &Credential::identity_token("alice", "tok"))
            .expect("store token");
        assert_eq!(
            store.get("helped:5000").expect("get"),
            Some(Credential {
                username: String::new(),
                password: String::new(),
                identity_token: Some("tok".into()),
            })
        );

        assert!(store.erase("helped:5000").expect("erase"));
        assert_eq!(read_json(&path)["auths"].get("helped:5000"), None);
        assert_eq!(store.get("helped:5000").expect("get"), None);
        assert!(!store.erase("helped:5000").expect("erase again"));
        let secrets = std::fs::read_dir(dir.path().join("bin/secrets"))
            .expect("secrets dir")
            .count();
        assert_eq!(secrets, 0);
    }

    // credHelpers wins over credsStore; other registries still go to credsStore.
    let (_, store) = helper_store(
        dir.path(),
        json!({"credsStore": "test", "credHelpers": {"failing:1": "other"}}),
    );
    let err = store.get("failing:1").expect_err("helper exits 3");
    let msg = err.to_string();
    assert!(
        msg.contains("docker-credential-other")
            && msg.contains("failed to get credentials for failing:1")
            && msg.contains("unused"),
        "{msg}"
    );
    assert_eq!(store.get("fine:1").expect("credsStore"), None);
    assert_eq!(store.config().helper_for("failing:1"), Some("other"));
    assert_eq!(store.config().helper_for("fine:1"), Some("test"));
}

#[cfg(unix)]
#[test]
fn helper_errors_are_clear() {
    let _turn = HELPER_TESTS.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().expect("tempdir");
    install_helper(
        dir.path(),
        "broken",
        "#!/bin/sh\ncat >/dev/null\necho 'keychain locked' >&2\nexit 1\n",
    );
    install_helper(
        dir.path(),
        "garbage",
        "#!/bin/sh\ncat >/dev/null\necho 'not json'\n",
    );
    install_helper(
        dir.path(),
        "stderr-not-found",
        "#!/bin/sh\necho 'credentials not found in native keychain' >&2\nexit 1\n",
    );

    let (path, mut store) = helper_store(dir.path(), json!({"credsStore": "broken"}));
    let err = store
        .store("r:1", &Credential::password("u", "p"))
        .expect_err("helper fails");
    let msg = err.to_string();
    assert!(
        msg.contains("docker-credential-broken failed to store credentials for r:1")
            && msg.contains("stderr: keychain locked"),
        "{msg}"
    );
    // A failed store leaves the file alone.
    assert_eq!(read_json(&path), json!({"credsStore": "broken"}));
    assert!(store.erase("r:1").is_err());

    let (_, store) = helper_store(dir.path(), json!({"credsStore": "garbage"}));
    let msg = store.get("r:1").expect_err("bad json").to_string();
    assert!(
        msg.contains("invalid answer") && msg.contains("not json"),
        "{msg}"
    );

    let (_, store) = helper_store(dir.path(), json!({"credsStore": "stderr-not-found"}));
    assert_eq!(store.get("r:1").expect("not found"), None);

    for name in ["absent", "../bin/docker-credential-garbage"] {
        let (_, store) = helper_store(dir.path(), json!({"credsStore": name}));
        let err = store.get("r:1").expect_err("no such helper");
        assert!(
            matches!(&err, CredentialsError::HelperNotFound { helper } if helper == name),
            "{err}"
        );
    }
    // An empty credsStore means the file.
    let (_, store) = helper_store(
        dir.path(),
        json!({"credsStore": "", "auths": {"r:1": {"auth": BASE64.encode("u:p")}}}),
    );
    assert_eq!(
        store.get("r:1").expect("file"),
        Some(Credential::password("u", "p"))
    );
}
