//! `berth serve --check-config` against real backends: the embedded ones, a moto S3 server
//! (bucket present, bucket missing, credentials refused) and a throw-away PostgreSQL cluster
//! (reachable, closed port, wrong password, missing database). One line per backend, exit 0
//! only when all answer; nothing is bound, created or migrated.

use std::path::Path;
use std::process::{Command, Output};

use berth_testkit::postgres::PostgresCluster;
use berth_testkit::s3::S3Server;

use crate::common::*;
use crate::harness::{free_port, text};

/// `berth serve --check-config --data-dir DATA [--config FILE]`, with `env` added.
fn check(data: &Path, config: Option<&Path>, env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_berth"));
    command
        .args(["serve", "--check-config", "--data-dir"])
        .arg(data)
        .env("RUST_LOG", "warn");
    if let Some(config) = config {
        command.arg("--config").arg(config);
    }
    command
        .envs(env.iter().copied())
        .output()
        .expect("run berth")
}

/// The line of `backend` (`database: ...`) in the output.
fn line<'a>(out: &'a str, backend: &str) -> &'a str {
    let prefix = format!("{backend}: ");
    out.lines()
        .find(|l| l.starts_with(&prefix))
        .unwrap_or_else(|| panic!("no {backend} line in:\n{out}"))
}

fn assert_exit(out: &Output, code: i32) -> String {
    let all = text(out);
    assert_eq!(out.status.code(), Some(code), "{all}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn embedded_default_is_ok_and_changes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("new/data");
    // The listen address is taken: a check must not need it.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let listen = taken.local_addr().expect("addr").to_string();
    let out = check(&data, None, &[("BERTH_LISTEN", &listen)]);
    let stdout = assert_exit(&out, 0);
    assert_eq!(
        stdout,
        format!(
            "config: ok (no file: defaults and BERTH_* variables)\n\
             database: ok (sqlite {d}/meta.db; created at start)\n\
             storage: ok (filesystem in {d}; created at start)\n",
            d = data.display()
        )
    );
    assert!(
        !dir.path().join("new").exists(),
        "the check created the data dir"
    );

    // Once `berth serve` has set the data directory up: plain ok, and still nothing added
    // (no administrator account: that would need a write).
    drop(Server::start(&data));
    // The database and its log (not the `-shm` index, which readers update).
    let database =
        || ["meta.db", "meta.db-wal"].map(|f| std::fs::read(data.join(f)).unwrap_or_default());
    let before = database();
    let out = check(&data, None, &[]);
    let stdout = assert_exit(&out, 0);
    assert_eq!(
        line(&stdout, "database"),
        format!("database: ok (sqlite {})", data.join("meta.db").display())
    );
    assert_eq!(
        line(&stdout, "storage"),
        format!("storage: ok (filesystem in {})", data.display())
    );
    assert!(database() == before, "the check changed the database");

    // A configuration that does not load: the loader's message, exit 1.
    let config = dir.path().join("berth.toml");
    std::fs::write(&config, "[storage]\nbackend = \"s3\"\n").expect("write");
    let out = check(&data, Some(&config), &[]);
    assert_exit(&out, 1);
    assert!(
        text(&out).contains("invalid configuration: [storage] backend = \"s3\" needs a bucket"),
        "{}",
        text(&out)
    );
}

/// A config file for `server`'s S3 endpoint and `bucket`.
fn s3_config(dir: &Path, server: &S3Server, bucket: &str) -> std::path::PathBuf {
    let (id, secret) = server.credentials().expect("a local moto");
    let path = dir.join(format!("s3-{bucket}.toml"));
    std::fs::write(
        &path,
        format!(
            "[storage]\nbackend = \"s3\"\nbucket = \"{bucket}\"\nendpoint = \"{}\"\n\
             path_style = true\naccess_key_id = \"{id}\"\nsecret_access_key = \"{secret}\"\n",
            server.endpoint
        ),
    )
    .expect("write config");
    path
}

#[test]
fn s3_bucket_present_missing_and_credentials_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let server = S3Server::moto();
    let endpoint = &server.endpoint;

    let config = s3_config(dir.path(), &server, &server.bucket);
    let out = check(&data, Some(&config), &[]);
    let stdout = assert_exit(&out, 0);
    assert_eq!(
        line(&stdout, "storage"),
        format!("storage: ok (s3 bucket {:?} at {endpoint})", server.bucket)
    );
    assert!(line(&stdout, "config").contains(&config.display().to_string()));

    let config = s3_config(dir.path(), &server, "no-such-bucket");
    let out = check(&data, Some(&config), &[]);
    let stdout = assert_exit(&out, 1);
    assert_eq!(
        line(&stdout, "storage"),
        format!(
            "storage: error (s3 bucket \"no-such-bucket\" at {endpoint}): bucket \
             \"no-such-bucket\" does not exist: create it, or correct [storage] bucket"
        )
    );
    // The other backend is still reported, and fine.
    assert!(line(&stdout, "database").starts_with("database: ok "));

    let checking = S3Server::moto_checking_credentials();
    let config = s3_config(dir.path(), &checking, &checking.bucket);
    let out = check(&data, Some(&config), &[]);
    let stdout = assert_exit(&out, 1);
    assert_eq!(
        line(&stdout, "storage"),
        format!(
            "storage: error (s3 bucket {:?} at {}): access denied: the store does not know \
             the access key id (InvalidAccessKeyId); check [storage] access_key_id or \
             AWS_ACCESS_KEY_ID",
            checking.bucket, checking.endpoint
        )
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres_reachable_closed_wrong_password_and_missing_database() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let database = |url: &str| {
        let out = check(&data, None, &[("BERTH_DATABASE_URL", url)]);
        let code = out.status.code();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        (code, line(&stdout, "database").to_string(), text(&out))
    };

    let closed = free_port();
    let (code, line, all) = database(&format!("postgres://berth:secret@127.0.0.1:{closed}/berth"));
    assert_eq!(code, Some(1), "{all}");
    assert_eq!(
        line,
        format!(
            "database: error (postgres://berth@127.0.0.1:{closed}/berth): connection refused by \
             127.0.0.1:{closed}: is PostgreSQL running and listening there?"
        )
    );
    assert!(!all.contains("secret"), "{all}");

    let cluster = PostgresCluster::start().await;
    let port = cluster.port();
    let url = cluster.url("postgres");
    // Twice: the check applies no migration, so the second finds as many to apply.
    for _ in 0..2 {
        let (code, line, all) = database(&url);
        assert_eq!(code, Some(0), "{all}");
        assert!(
            line.starts_with(&format!(
                "database: ok (postgres://berth@127.0.0.1:{port}/postgres; "
            )) && line.ends_with(" migrations to apply at start)"),
            "{line}"
        );
        assert!(!all.contains(cluster.password()), "password shown: {all}");
    }

    let wrong = url.replace(cluster.password(), "not-the-password");
    let (code, line, all) = database(&wrong);
    assert_eq!(code, Some(1), "{all}");
    assert_eq!(
        line,
        format!(
            "database: error (postgres://berth@127.0.0.1:{port}/postgres): password \
             authentication failed for user \"berth\": the password is wrong, or the user does \
             not exist"
        )
    );
    assert!(!all.contains("not-the-password"), "{all}");

    let (code, line, all) = database(&cluster.url("nosuchdb"));
    assert_eq!(code, Some(1), "{all}");
    assert_eq!(
        line,
        format!(
            "database: error (postgres://berth@127.0.0.1:{port}/nosuchdb): database \
             \"nosuchdb\" does not exist on 127.0.0.1:{port}: create it (`createdb -O berth \
             nosuchdb`) or correct the URL"
        )
    );
}
