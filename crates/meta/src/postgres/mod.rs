//! The distributed backend: PostgreSQL, shared by any number of `berth serve` replicas.
//!
//! SQLite serializes every write through one connection (`BEGIN IMMEDIATE`), so a check
//! followed by a write inside one of its transactions cannot be interleaved with anything.
//! Here transactions from many replicas run at once, so every such read-then-write is made safe
//! by one of:
//! - a unique constraint with `INSERT ... ON CONFLICT`, which PostgreSQL resolves atomically
//!   (a second inserter waits for the first to commit, then takes the conflict branch);
//! - a row lock: rows a write depends on are read `FOR KEY SHARE`, so a concurrent delete of
//!   them waits until the write commits, and a delete locks what it removes `FOR UPDATE`;
//! - a compare-and-swap `UPDATE ... WHERE`, which PostgreSQL re-checks against the newest
//!   row version after waiting for a concurrent writer.
//!
//! Transactions run at READ COMMITTED (requested explicitly, whatever the server default):
//! each statement sees rows committed before it started, which is what lets a statement that
//! follows `ON CONFLICT DO NOTHING` read the row another replica just committed. No path needs
//! SERIALIZABLE, so none needs a retry loop. Writes that lock several rows of a kind take
//! them in one order (tags by name, a manifest before its tags), so they do not deadlock;
//! `replicas_race_on_one_database` in tests/postgres.rs runs them against each other.

mod dialect;

use std::str::FromStr;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection, PgConnection, PgPool};

use crate::probe::{self, Probe};
use crate::sql::SqlMeta;
use crate::{MetaError, Result};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("migrations/postgres");

/// The metadata store on PostgreSQL: the shared SQL (`sql::SqlMeta`) in PostgreSQL's dialect.
pub type PostgresMeta = SqlMeta<PostgresDialect>;

/// PostgreSQL's one pool, for reads and writes alike.
#[derive(Clone, Debug)]
pub struct PostgresDialect {
    pool: PgPool,
}

impl PostgresMeta {
    /// Connects to the database at `url` (`postgres://user:password@host:port/database`) with a
    /// pool of at most `max_connections`, and applies pending migrations.
    ///
    /// Replicas starting at once are safe: the migrator holds a PostgreSQL advisory lock while
    /// it works, so one applies the migrations and the others find them applied.
    pub async fn connect(url: &str, max_connections: u32) -> Result<Self> {
        let options = PgConnectOptions::from_str(url)?;
        // The migrator's advisory lock belongs to the session; on a connection of its own,
        // closed afterwards, it cannot stay held in the serving pool if a migration fails.
        let migrate = PgPoolOptions::new()
            .max_connections(1)
            .connect_with(options.clone())
            .await
            .map_err(|e| unavailable(e, &options))?;
        let migrated = MIGRATOR.run(&migrate).await;
        migrate.close().await;
        migrated?;
        Self::pool(options, max_connections).await
    }

    /// Connects to an up-to-date database without migrating it, for reading a registry that
    /// may be serving (the source of `berth migrate`).
    pub async fn connect_read_only(url: &str, max_connections: u32) -> Result<Self> {
        probe::require_current(Self::probe(url).await?)?;
        let options =
            PgConnectOptions::from_str(url)?.options([("default_transaction_read_only", "on")]);
        Self::pool(options, max_connections).await
    }

    async fn pool(options: PgConnectOptions, max_connections: u32) -> Result<Self> {
        let pool = PgPoolOptions::new()
            .max_connections(max_connections.max(1))
            .connect_with(options.clone())
            .await
            .map_err(|e| unavailable(e, &options))?;
        Ok(Self::new(PostgresDialect { pool }))
    }

    /// Connects once to the database at `url`, runs a query and compares its migrations with
    /// this berth's, changing nothing: no migration is applied, no pool is kept.
    pub async fn probe(url: &str) -> Result<Probe> {
        let options = PgConnectOptions::from_str(url)?;
        let mut conn = PgConnection::connect_with(&options)
            .await
            .map_err(|e| unavailable(e, &options))?;
        let applied = applied_migrations(&mut conn).await;
        conn.close().await.ok();
        probe::compare(&MIGRATOR, &applied.map_err(|e| unavailable(e, &options))?)
    }
}

/// Versions of the migrations applied to the database (none if it has never been migrated).
async fn applied_migrations(conn: &mut PgConnection) -> sqlx::Result<Vec<i64>> {
    // sqlx's table, which the migrator creates on its first run.
    let exists: bool = sqlx::query_scalar("SELECT to_regclass('_sqlx_migrations') IS NOT NULL")
        .fetch_one(&mut *conn)
        .await?;
    if !exists {
        return Ok(Vec::new());
    }
    sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success ORDER BY version")
        .fetch_all(conn)
        .await
}

/// `e`, met while connecting to or querying the server `options` names, in words for the
/// operator where it is one of the usual mistakes; otherwise as sqlx says it.
fn unavailable(e: sqlx::Error, options: &PgConnectOptions) -> MetaError {
    let server = match options.get_socket() {
        Some(dir) => format!("the socket in {}", dir.display()),
        None => format!("{}:{}", options.get_host(), options.get_port()),
    };
    let user = options.get_username();
    // PostgreSQL's default database is the user's name.
    let database = options.get_database().unwrap_or(user);
    let why = match &e {
        sqlx::Error::Database(db) => match db.code().as_deref() {
            Some("28P01") => format!(
                "password authentication failed for user \"{user}\": the password is wrong, or \
                 the user does not exist"
            ),
            Some("28000") => format!("{server} refused the login: {}", db.message()),
            Some("3D000") => format!(
                "database \"{database}\" does not exist on {server}: create it (`createdb -O \
                 {user} {database}`) or correct the URL"
            ),
            Some("53300") => format!(
                "{server} has no free connection slot ({}): lower [database] max_connections \
                 or raise the server's max_connections",
                db.message()
            ),
            Some("57P03") => format!(
                "{server} does not accept connections now (starting up, shutting down or in \
                 recovery): {}",
                db.message()
            ),
            Some("42501") => format!("user \"{user}\" lacks a privilege: {}", db.message()),
            _ => return MetaError::Database(e),
        },
        sqlx::Error::Io(io) if io.kind() == std::io::ErrorKind::ConnectionRefused => {
            format!("connection refused by {server}: is PostgreSQL running and listening there?")
        }
        sqlx::Error::Io(io) => format!("cannot reach {server}: {io}"),
        sqlx::Error::Tls(tls) => format!("TLS with {server} failed: {tls}"),
        sqlx::Error::PoolTimedOut => format!(
            "no connection to {server} within the pool's timeout: PostgreSQL refuses \
             connections or does not answer"
        ),
        _ => return MetaError::Database(e),
    };
    MetaError::Unavailable(why)
}
