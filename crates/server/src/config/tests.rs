use super::*;

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn file_then_env() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("berth.toml");
    std::fs::write(
        &path,
        "listen = \"127.0.0.1:6000\"\ndata_dir = \"/srv/berth\"\nshutdown_grace_secs = 5\n",
    )
    .expect("write");
    let c = Config::load(Some(&path), env(&[])).expect("load");
    assert_eq!(c.listen, "127.0.0.1:6000".parse().expect("addr"));
    assert_eq!(c.data_dir, PathBuf::from("/srv/berth"));
    assert_eq!(c.shutdown_grace_secs, 5);
    let c = Config::load(
        Some(&path),
        env(&[
            ("BERTH_LISTEN", "127.0.0.1:7000"),
            ("BERTH_SHUTDOWN_GRACE_SECS", "9"),
        ]),
    )
    .expect("load");
    assert_eq!(c.listen, "127.0.0.1:7000".parse().expect("addr"));
    assert_eq!(c.shutdown_grace_secs, 9);
    assert_eq!(c.data_dir, PathBuf::from("/srv/berth"));
}

#[test]
fn tls_keys_from_env() {
    let c = Config::load(
        None,
        env(&[
            ("BERTH_TLS_CERT", "/etc/berth/cert.pem"),
            ("BERTH_TLS_KEY", "/etc/berth/key.pem"),
        ]),
    )
    .expect("load");
    assert_eq!(c.tls_cert, "/etc/berth/cert.pem");
    assert_eq!(c.tls_key, "/etc/berth/key.pem");
    assert!(Config::default().tls_cert.is_empty() && Config::default().tls_key.is_empty());
}

#[test]
fn trusted_proxies_from_file_and_env() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("berth.toml");
    std::fs::write(&path, "trusted_proxies = [\"10.0.0.0/8\"]\n").expect("write");
    let c = Config::load(Some(&path), env(&[])).expect("load");
    assert_eq!(c.trusted_proxies, ["10.0.0.0/8"]);
    let c = Config::load(
        Some(&path),
        env(&[("BERTH_TRUSTED_PROXIES", "192.0.2.7, 2001:db8::/32,")]),
    )
    .expect("load");
    assert_eq!(c.trusted_proxies, ["192.0.2.7", "2001:db8::/32"]);
    let bad = Config::load(None, env(&[("BERTH_TRUSTED_PROXIES", "lb.example")]));
    assert!(
        bad.unwrap_err().to_string().contains("lb.example"),
        "names the bad entry"
    );
}

#[test]
fn storage_and_database_from_file_and_env() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("berth.toml");
    std::fs::write(
        &path,
        "[storage]\nbackend = \"s3\"\nbucket = \"berth\"\nendpoint = \"http://127.0.0.1:9000\"\n\
             [database]\nurl = \"postgres://berth@127.0.0.1:5432/berth\"\n",
    )
    .expect("write");
    let c = Config::load(
        Some(&path),
        env(&[
            ("BERTH_STORAGE_PATH_STYLE", "true"),
            ("BERTH_STORAGE_PART_SIZE_MIB", "16"),
            ("BERTH_DATABASE_MAX_CONNECTIONS", "4"),
        ]),
    )
    .expect("load");
    assert_eq!(c.storage.backend, "s3");
    assert_eq!(c.storage.bucket, "berth");
    assert_eq!(c.storage.endpoint, "http://127.0.0.1:9000");
    assert!(c.storage.path_style);
    assert_eq!(c.storage.part_size_mib, 16);
    assert_eq!(c.database.url, "postgres://berth@127.0.0.1:5432/berth");
    assert_eq!(c.database.max_connections, 4);
    for bad in [
        vec![("BERTH_STORAGE_BACKEND", "s3")],
        vec![("BERTH_STORAGE_BACKEND", "ftp")],
        vec![
            ("BERTH_STORAGE_BACKEND", "s3"),
            ("BERTH_STORAGE_BUCKET", "b"),
            ("BERTH_STORAGE_PART_SIZE_MIB", "4"),
        ],
        vec![("BERTH_DATABASE_URL", "mysql://x")],
        vec![("BERTH_DATABASE_MAX_CONNECTIONS", "0")],
    ] {
        assert!(
            matches!(Config::load(None, env(&bad)), Err(ConfigError::Invalid(_))),
            "{bad:?}"
        );
    }
}

#[test]
fn database_urls_are_redacted() {
    let redacted = |url: &str| {
        DatabaseConfig {
            url: url.into(),
            ..DatabaseConfig::default()
        }
        .redacted_url()
    };
    assert_eq!(
        redacted("postgres://berth:s3cr3t@db.example:5432/berth"),
        "postgres://berth@db.example:5432/berth"
    );
    assert_eq!(
        redacted("postgresql://berth:p%40ss:w@[::1]:5432/berth?sslmode=require&password=x"),
        "postgresql://berth@[::1]:5432/berth?sslmode=require"
    );
    assert_eq!(
        redacted("postgres://berth@db/berth?Password=x"),
        "postgres://berth@db/berth"
    );
    assert_eq!(redacted("postgres://db:5432"), "postgres://db:5432");
    assert_eq!(
        redacted("sqlite:///var/lib/berth/meta.db"),
        "sqlite:///var/lib/berth/meta.db"
    );
}

#[test]
fn open_upload_cap_and_pull_auditing_from_file_and_env() {
    let defaults = Config::default();
    assert_eq!(defaults.limits.max_open_uploads_per_account, 100);
    assert!(!defaults.audit.pulls, "pulls are not audited by default");
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("berth.toml");
    std::fs::write(
        &path,
        "[limits]\nmax_open_uploads_per_account = 20\n[audit]\npulls = true\n",
    )
    .expect("write");
    let c = Config::load(Some(&path), env(&[])).expect("load");
    assert_eq!(c.limits.max_open_uploads_per_account, 20);
    assert!(c.audit.pulls);
    let c = Config::load(
        Some(&path),
        env(&[
            ("BERTH_LIMITS_MAX_OPEN_UPLOADS_PER_ACCOUNT", "7"),
            ("BERTH_AUDIT_PULLS", "false"),
        ]),
    )
    .expect("load");
    assert_eq!(c.limits.max_open_uploads_per_account, 7);
    assert!(!c.audit.pulls);
    let zero = Config::load(
        None,
        env(&[("BERTH_LIMITS_MAX_OPEN_UPLOADS_PER_ACCOUNT", "0")]),
    );
    assert!(
        matches!(&zero, Err(ConfigError::Invalid(m)) if m.contains("max_open_uploads_per_account")),
        "{zero:?}"
    );
    for bad in [
        ("BERTH_LIMITS_MAX_OPEN_UPLOADS_PER_ACCOUNT", "-1"),
        ("BERTH_AUDIT_PULLS", "sometimes"),
    ] {
        assert!(
            matches!(
                Config::load(None, env(&[bad])),
                Err(ConfigError::Invalid(_))
            ),
            "{bad:?}"
        );
    }
}

#[test]
fn defaults_and_errors() {
    assert_eq!(
        Config::load(None, env(&[])).expect("load"),
        Config::default()
    );
    assert!(Config::load(None, env(&[("BERTH_SHUTDOWN_GRACE_SECS", "soon")])).is_err());
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, "listne = \"x\"\n").expect("write");
    assert!(matches!(
        Config::load(Some(&path), env(&[])),
        Err(ConfigError::Invalid(_))
    ));
}
