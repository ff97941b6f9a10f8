//! The one SQL implementation of the role traits, for SQLite and PostgreSQL alike: [`SqlMeta`]
//! is generic over a [`Dialect`], which supplies the pools, how a transaction begins, and the
//! few statements that differ between the two databases (row locks, the repository-id upsert,
//! a manifest's checks and references, ...). Every other statement is written here once, with
//! `$N` parameters, which both databases take (sqlx binds SQLite's `$N` to the N-th argument,
//! so a parameter may repeat).
//!
//! What a statement needs of the database (a connection that executes, `i64` or `&str` that
//! bind and decode) is said by sqlx as bounds on those other types, and Rust does not carry
//! such bounds from a trait to its users: every `impl` here repeats the same `where` clause
//! ([`SqlMeta`]'s documentation lists it), and helpers state the part they use. The concrete
//! dialects meet it as they are: the code is monomorphized per database, as before.

mod accounts;
mod audit;
mod blobs;
mod gc;
mod inventory;
mod lifecycle;
mod manifests;
mod throttle;
mod uploads;

use std::fmt;
use std::future::Future;

use async_trait::async_trait;
use berth_oci::Repository;
use sqlx::{ColumnIndex, Database, Decode, Encode, Executor, Pool, Row, Transaction, Type};

use crate::jobs::{Job, JobLock, Jobs};
use crate::rows::{parse, size};
use crate::{BlobRecord, ManifestRecord, MetaStore, NewManifest, Result, SharedClock};

/// What the shared SQL asks of a database and its pools: whatever differs between SQLite and
/// PostgreSQL, and nothing else.
pub trait Dialect: Clone + fmt::Debug + Send + Sync + 'static {
    type DB: Database<Arguments: sqlx::IntoArguments<Self::DB>, QueryResult: RowsAffected>;

    /// The pool listings and lookups read from.
    fn read(&self) -> &Pool<Self::DB>;
    /// The pool writes go through, and reads that must see this process's latest writes.
    fn write(&self) -> &Pool<Self::DB>;
    /// A write transaction (SQLite: `BEGIN IMMEDIATE`, the database's write lock at once;
    /// PostgreSQL: READ COMMITTED, whatever the server's default).
    fn begin_write(&self) -> impl Future<Output = Result<Transaction<'static, Self::DB>>> + Send;
    /// A read-only transaction whose statements all see one snapshot.
    fn begin_snapshot(&self)
    -> impl Future<Output = Result<Transaction<'static, Self::DB>>> + Send;

    /// The repository's id, creating the repository if needed.
    fn repository_id<'a>(
        conn: &'a mut Conn<Self>,
        repository: &'a Repository,
        now: i64,
    ) -> impl Future<Output = Result<i64>> + Send + 'a;
    /// A manifest PUT inside its transaction: checks its references, stores the manifest (or
    /// dates it again), its references and its tags. Returns the tags written: an immutable
    /// one that names another manifest is not ([`crate::rows::all_tags_written`]).
    fn store_manifest<'a>(
        conn: &'a mut Conn<Self>,
        repository: &'a Repository,
        manifest: &'a NewManifest,
        now: i64,
    ) -> impl Future<Output = Result<Vec<String>>> + Send + 'a;
    /// Narrows an audit query to actions starting with `prefix`, which ends in `.`; without
    /// LIKE, so that `_` and `%` in it mean themselves.
    fn push_action_prefix(sql: &mut sqlx::QueryBuilder<Self::DB>, prefix: &str);

    /// Taken first by every transaction that adds or removes tags of the repository named
    /// `$1` (PostgreSQL: its row, see `postgres/`); SQLite's one writer needs none.
    const LOCK_TAG_LIST: Option<&'static str>;
    /// Whether blob `$1` exists, before a link to it is added (PostgreSQL: locking it against
    /// deletion until the link is in).
    const BLOB_TO_LINK: &'static str;
    /// The id of manifest `$2` in repository `$1`, about to be deleted.
    const MANIFEST_TO_DELETE: &'static str;
    /// What deletes manifest `$1` with its tags and references, in order.
    const DELETE_MANIFEST: &'static [&'static str];
    /// Garbage collection's row locks before each delete: manifest `$1`; link `($1, $2)`;
    /// blob `$1`. A statement that returns no row skips the row.
    const SWEEP_LOCKS: SweepLocks;
    /// Makes transactions about one upload owner (`$1`) wait for each other until commit,
    /// also when the owner has no row yet.
    const SERIALIZE_UPLOAD_OWNER: Option<&'static str>;
    /// The same, for one login throttle key (`$1`).
    const SERIALIZE_THROTTLE_KEY: Option<&'static str>;

    /// The lock of a background job.
    fn try_lock_job(&self, job: Job) -> impl Future<Output = Result<Option<JobLock>>> + Send;
    /// The database answers.
    fn check(&self) -> impl Future<Output = Result<()>> + Send;
    /// Closes the pools, waiting for connections in use.
    fn close(&self) -> impl Future<Output = ()> + Send;
}

/// See [`Dialect::SWEEP_LOCKS`].
pub struct SweepLocks {
    pub manifest: Option<&'static str>,
    pub link: Option<&'static str>,
    pub blob: Option<&'static str>,
}

/// The count of rows a statement changed, which sqlx offers per database, not as a trait.
pub trait RowsAffected {
    fn rows_affected(&self) -> u64;
}

impl RowsAffected for sqlx::sqlite::SqliteQueryResult {
    fn rows_affected(&self) -> u64 {
        self.rows_affected()
    }
}

impl RowsAffected for sqlx::postgres::PgQueryResult {
    fn rows_affected(&self) -> u64 {
        self.rows_affected()
    }
}

/// A connection of the dialect's database (what a transaction dereferences to).
pub type Conn<D> = <<D as Dialect>::DB as Database>::Connection;
/// A row of the dialect's database.
pub type DbRow<D> = <<D as Dialect>::DB as Database>::Row;

/// A metadata store on a SQL database: [`crate::SqliteMeta`] or [`crate::PostgresMeta`].
///
/// Every `impl` of the SQL holds `where` these sqlx bounds, the same lines each time (both
/// databases meet them):
///
/// ```text
/// for<'c> &'c mut Conn<D>: Executor<'c, Database = D::DB>,   // connections run statements
/// usize: ColumnIndex<DbRow<D>>,                               // scalars by position
/// for<'r> &'r str: ColumnIndex<DbRow<D>> + Value<'r, D::DB>,  // columns by name; &str values
/// for<'r> i64 / bool / String / Vec<u8>: Value<'r, D::DB>,    // bound and decoded
/// for<'r> &'r [u8]: Encode<'r, D::DB> + Type<D::DB>,          // bound
/// for<'r> Option<i64 / String / &'r str>: Encode<'r, D::DB>,  // NULL or a value, bound
/// ```
#[derive(Clone, Debug)]
pub struct SqlMeta<D> {
    pub(crate) dialect: D,
    /// What rows are dated by.
    clock: SharedClock,
}

/// A type that binds and decodes as a value of `DB` (sqlx's three traits in one bound).
pub trait Value<'r, DB: Database>: Encode<'r, DB> + Decode<'r, DB> + Type<DB> {}

impl<'r, DB: Database, T: Encode<'r, DB> + Decode<'r, DB> + Type<DB>> Value<'r, DB> for T {}

impl<D: Dialect> SqlMeta<D> {
    pub(crate) fn new(dialect: D) -> Self {
        Self {
            dialect,
            clock: crate::system_clock(),
        }
    }

    /// Dates rows by `clock` instead of the system's.
    pub fn with_clock(mut self, clock: SharedClock) -> Self {
        self.clock = clock;
        self
    }

    fn now(&self) -> i64 {
        self.clock.now()
    }
}

/// A blob row (`digest`, `size`, `storage_key`).
pub(crate) fn blob_record<R: Row>(row: &R) -> Result<BlobRecord>
where
    for<'r> &'r str: ColumnIndex<R> + Value<'r, R::Database>,
    for<'r> i64: Value<'r, R::Database>,
    for<'r> String: Value<'r, R::Database>,
{
    Ok(BlobRecord {
        digest: parse(row.try_get::<&str, _>("digest")?)?,
        size: size(row.try_get("size")?)?,
        storage_key: row.try_get("storage_key")?,
    })
}

/// A manifest row (`digest`, `media_type`, `content`, `subject`).
pub(crate) fn manifest_record<R: Row>(row: &R) -> Result<ManifestRecord>
where
    for<'r> &'r str: ColumnIndex<R> + Value<'r, R::Database>,
    for<'r> String: Value<'r, R::Database>,
    for<'r> Vec<u8>: Value<'r, R::Database>,
{
    let subject: Option<&str> = row.try_get("subject")?;
    Ok(ManifestRecord {
        digest: parse(row.try_get::<&str, _>("digest")?)?,
        media_type: row.try_get("media_type")?,
        content: row.try_get("content")?,
        subject: subject.map(parse).transpose()?,
    })
}

#[async_trait]
impl<D: Dialect> Jobs for SqlMeta<D> {
    async fn try_lock_job(&self, job: Job) -> Result<Option<JobLock>> {
        self.dialect.try_lock_job(job).await
    }
}

#[async_trait]
impl<D: Dialect> MetaStore for SqlMeta<D>
where
    for<'c> &'c mut Conn<D>: Executor<'c, Database = D::DB>,
    usize: ColumnIndex<DbRow<D>>,
    for<'r> &'r str: ColumnIndex<DbRow<D>> + Value<'r, D::DB>,
    for<'r> i64: Value<'r, D::DB>,
    for<'r> bool: Value<'r, D::DB>,
    for<'r> String: Value<'r, D::DB>,
    for<'r> Vec<u8>: Value<'r, D::DB>,
    for<'r> &'r [u8]: Encode<'r, D::DB> + Type<D::DB>,
    for<'r> Option<i64>: Encode<'r, D::DB>,
    for<'r> Option<String>: Encode<'r, D::DB>,
    for<'r> Option<&'r str>: Encode<'r, D::DB>,
{
    fn clock(&self) -> &SharedClock {
        &self.clock
    }

    async fn check(&self) -> Result<()> {
        self.dialect.check().await
    }

    /// SQLite: readers first, so that the last connection to close, the writer, checkpoints
    /// the WAL into the database file and removes it.
    async fn close(&self) {
        self.dialect.close().await;
    }
}
