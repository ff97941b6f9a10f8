//! A PostgreSQL server for tests: the one `BERTH_TEST_POSTGRES_URL` names, or a throw-away
//! cluster (initdb into a temporary directory, TCP on 127.0.0.1 only, password auth for the
//! user `berth`, stopped when dropped, even by a panic).

use std::fs::{self, File};
use std::io::Read;
use std::net::TcpListener;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use sqlx::{Connection, Executor, PgConnection};

/// A fresh, empty database on a test server; owns the server when it started one.
pub struct TestDatabase {
    admin_url: String,
    url: String,
    name: String,
    /// The cluster, when this test started one: it stops when this value is dropped.
    server: Option<PostgresCluster>,
}

impl TestDatabase {
    /// A new database on the server `BERTH_TEST_POSTGRES_URL` names, or on a cluster of its own.
    pub async fn create() -> Self {
        let (server, admin_url) = match std::env::var("BERTH_TEST_POSTGRES_URL") {
            Ok(url) if !url.is_empty() => (None, url),
            _ => {
                let cluster = PostgresCluster::start().await;
                let url = cluster.url("postgres");
                (Some(cluster), url)
            }
        };
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or_default();
        let name = format!("berth_test_{}_{nanos}", std::process::id());
        let mut admin = connect(&admin_url).await;
        // An ICU locale where it is available, so that any listing sorted by the
        // database's collation instead of bytes would fail the suite ("A" < "_z" < "a").
        let icu = format!(
            "CREATE DATABASE {name} TEMPLATE template0 ENCODING 'UTF8' \
             LOCALE_PROVIDER icu ICU_LOCALE 'en-US' LOCALE 'C'"
        );
        if admin.execute(sqlx::AssertSqlSafe(icu)).await.is_err() {
            admin
                .execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                .await
                .expect("create the test database");
        }
        admin.close().await.ok();
        Self {
            url: with_database(&admin_url, &name),
            admin_url,
            name,
            server,
        }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// Drops the database (on a shared server; a throw-away cluster goes as a whole).
    pub async fn drop_database(self) {
        if self.server.is_none() {
            let mut admin = connect(&self.admin_url).await;
            admin
                .execute(sqlx::AssertSqlSafe(format!(
                    "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                    self.name
                )))
                .await
                .expect("drop the test database");
            admin.close().await.ok();
        }
    }
}

async fn connect(url: &str) -> PgConnection {
    PgConnection::connect(url)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to the test server: {e}"))
}

/// `url` with its database replaced by `name`.
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, format!("?{query}")),
        None => (url, String::new()),
    };
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let end = base[authority_start..]
        .find('/')
        .map_or(base.len(), |i| authority_start + i);
    format!("{}/{name}{query}", &base[..end])
}

/// A PostgreSQL cluster in a temporary directory, listening on 127.0.0.1 only, with one
/// superuser `berth` whose password is random; stopped and deleted on drop.
pub struct PostgresCluster {
    child: Child,
    port: u16,
    password: String,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl PostgresCluster {
    /// Always a cluster of its own, whatever `BERTH_TEST_POSTGRES_URL` says: for tests that
    /// need password authentication or a server they may stop.
    pub async fn start() -> Self {
        let bin = bindir();
        let dir = tempfile::Builder::new()
            .prefix("berth-pg-")
            .tempdir()
            .expect("tempdir");
        // PostgreSQL refuses to run as root: then it runs as the `postgres` account, which
        // must own its directories.
        let account = running_as_root().then(postgres_account);
        let own = |path: &Path| {
            if let Some((uid, gid)) = account {
                std::os::unix::fs::chown(path, Some(uid), Some(gid)).expect("chown");
            }
        };
        own(dir.path());
        let data = dir.path().join("data");
        let sockets = dir.path().join("sockets");
        fs::create_dir(&sockets).expect("socket dir");
        fs::set_permissions(&sockets, fs::Permissions::from_mode(0o700)).expect("chmod");
        own(&sockets);
        let password = random_hex();
        let pwfile = dir.path().join("pwfile");
        fs::write(&pwfile, &password).expect("pwfile");
        fs::set_permissions(&pwfile, fs::Permissions::from_mode(0o600)).expect("chmod");
        own(&pwfile);
        let log = dir.path().join("postgres.log");

        let mut initdb = command(&bin, "initdb", account, dir.path());
        initdb
            .arg("--pgdata")
            .arg(&data)
            .args([
                "--username=berth",
                "--auth=scram-sha-256",
                "--encoding=UTF8",
            ])
            .args(["--locale=C", "--no-sync", "--no-instructions"])
            .arg(format!("--pwfile={}", pwfile.display()));
        let out = initdb.output().expect("run initdb");
        assert!(
            out.status.success(),
            "initdb failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );

        let port = free_port();
        let mut postgres = command(&bin, "postgres", account, dir.path());
        postgres
            .arg("-D")
            .arg(&data)
            .arg("-k")
            .arg(&sockets)
            .args(["-p", &port.to_string()])
            .args(["-c", "listen_addresses=127.0.0.1"])
            // A throw-away cluster: durability costs time and buys nothing.
            .args(["-c", "fsync=off", "-c", "synchronous_commit=off"])
            .args(["-c", "full_page_writes=off", "-c", "max_connections=200"])
            .stdin(Stdio::null())
            .stdout(Stdio::from(File::create(&log).expect("log")))
            .stderr(Stdio::from(
                File::options().append(true).open(&log).expect("log"),
            ));
        let child = postgres.spawn().expect("start postgres");
        let mut cluster = Self {
            child,
            port,
            password,
            log,
            _dir: dir,
        };
        cluster.wait_until_ready().await;
        cluster
    }

    /// The superuser's URL for `database` (`postgres` always exists).
    pub fn url(&self, database: &str) -> String {
        format!(
            "postgres://berth:{}@127.0.0.1:{}/{database}",
            self.password, self.port
        )
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn password(&self) -> &str {
        &self.password
    }

    async fn wait_until_ready(&mut self) {
        let url = self.url("postgres");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("postgres exited ({status}):\n{}", self.log_text());
            }
            if let Ok(conn) = PgConnection::connect(&url).await {
                conn.close().await.ok();
                return;
            }
            assert!(
                Instant::now() < deadline,
                "postgres did not accept connections within 60 s:\n{}",
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for PostgresCluster {
    fn drop(&mut self) {
        // SIGINT is PostgreSQL's fast shutdown: connections are closed, the server exits
        // cleanly. SIGKILL (what `Child::kill` sends) only if that takes too long.
        let _ = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A command for one of PostgreSQL's programs, as the `postgres` account when given.
fn command(bin: &Path, program: &str, account: Option<(u32, u32)>, cwd: &Path) -> Command {
    let mut command = Command::new(bin.join(program));
    command.current_dir(cwd).env("LC_ALL", "C");
    if let Some((uid, gid)) = account {
        // std drops the supplementary groups too before switching user.
        command.uid(uid).gid(gid).env("HOME", cwd);
    }
    command
}

/// The directory holding initdb and postgres: on PATH, else Debian's
/// /usr/lib/postgresql/<highest version>/bin.
fn bindir() -> PathBuf {
    if let Some(dir) = std::env::var_os("PATH")
        .and_then(|paths| std::env::split_paths(&paths).find(|p| p.join("initdb").is_file()))
    {
        return dir;
    }
    fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version: u32 = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").is_file().then_some((version, bin))
        })
        .max()
        .map(|(_, bin)| bin)
        .expect(
            "no PostgreSQL server found (initdb on PATH or in /usr/lib/postgresql/*/bin): \
             install the `postgresql` package, or set BERTH_TEST_POSTGRES_URL",
        )
}

fn running_as_root() -> bool {
    fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// The uid and gid of the `postgres` account.
fn postgres_account() -> (u32, u32) {
    let passwd = fs::read_to_string("/etc/passwd").expect("/etc/passwd");
    passwd
        .lines()
        .find_map(|line| {
            let fields: Vec<&str> = line.split(':').collect();
            (fields.first() == Some(&"postgres") && fields.len() > 3)
                .then(|| Some((fields[2].parse().ok()?, fields[3].parse().ok()?)))
                .flatten()
        })
        .expect(
            "running as root needs a `postgres` account to run the server as \
             (the postgresql package creates one)",
        )
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

fn random_hex() -> String {
    let mut bytes = [0u8; 16];
    File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .expect("/dev/urandom");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
