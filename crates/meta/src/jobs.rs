//! Background jobs that must run in one process at a time, whichever replica or command
//! (`berth serve`, `berth gc`) starts them: each takes its job's lock from the database
//! backend first, and skips its run when another process holds it.
//!
//! - PostgreSQL: a session-level advisory lock (`pg_try_advisory_lock`) on a connection taken
//!   out of the pool for as long as the job runs. If the process dies, the server ends the
//!   session and the lock goes with it.
//! - SQLite: an exclusive `flock` on a file beside the database. Processes sharing the
//!   database share its directory; the kernel releases the lock when the process dies.

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use sqlx::Postgres;
use sqlx::pool::PoolConnection;

use crate::{MetaError, Result};

/// A job that runs once at a time across every process sharing the metadata.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Job {
    /// Removing abandoned upload sessions and their partial data.
    UploadExpiry,
    /// Garbage collection.
    GarbageCollection,
    /// Applying the projects' retention policies on their schedule.
    Retention,
}

impl Job {
    pub fn name(self) -> &'static str {
        match self {
            Job::UploadExpiry => "upload-expiry",
            Job::GarbageCollection => "garbage-collection",
            Job::Retention => "retention",
        }
    }

    /// The PostgreSQL advisory lock key: "berth" in the high bytes, the job below, so it
    /// cannot meet another application's small integer keys by accident.
    fn advisory_key(self) -> i64 {
        const BERTH: i64 = 0x0062_6572_7468 << 16;
        BERTH
            | match self {
                Job::UploadExpiry => 1,
                Job::GarbageCollection => 2,
                Job::Retention => 3,
            }
    }
}

/// Held while the job runs; dropping it releases the lock.
#[must_use = "the job lock is released when dropped"]
pub struct JobLock {
    job: Job,
    held: Held,
}

enum Held {
    /// The locked file, never read: closing it releases the lock.
    File(#[expect(dead_code, reason = "held for its lock")] std::fs::File),
    /// The session holding the advisory lock.
    Postgres(Option<PoolConnection<Postgres>>),
}

impl JobLock {
    pub fn job(&self) -> Job {
        self.job
    }

    /// Releases the lock now (PostgreSQL: unlocks and returns the connection to the pool).
    pub async fn release(mut self) {
        if let Held::Postgres(conn) = &mut self.held
            && let Some(mut conn) = conn.take()
        {
            let unlocked: std::result::Result<bool, _> =
                sqlx::query_scalar("SELECT pg_advisory_unlock($1)")
                    .bind(self.job.advisory_key())
                    .fetch_one(&mut *conn)
                    .await;
            if !matches!(unlocked, Ok(true)) {
                // The session may still hold it: it must not go back to the pool.
                drop(conn.detach());
            }
        }
    }
}

impl Drop for JobLock {
    fn drop(&mut self) {
        if let Held::Postgres(conn) = &mut self.held
            && let Some(conn) = conn.take()
        {
            // Not released by `release`: close the session (which ends its locks) instead of
            // returning a connection that holds the lock to the pool.
            drop(conn.detach());
        }
    }
}

#[async_trait]
pub trait Jobs: Send + Sync {
    /// The job's lock, or `None` while another process (or task) holds it.
    async fn try_lock_job(&self, job: Job) -> Result<Option<JobLock>>;
}

/// The lock file of `job` for the SQLite database at `database`.
pub(crate) fn lock_file(database: &Path, job: Job) -> PathBuf {
    let mut name = database.as_os_str().to_owned();
    name.push(format!(".{}.lock", job.name()));
    PathBuf::from(name)
}

/// SQLite's lock: an exclusive `flock` on the job's lock file, without waiting.
pub(crate) async fn lock_file_job(path: PathBuf, job: Job) -> Result<Option<JobLock>> {
    let locked = tokio::task::spawn_blocking(move || -> std::io::Result<Option<std::fs::File>> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)?;
        match file.try_lock() {
            Ok(()) => Ok(Some(file)),
            Err(std::fs::TryLockError::WouldBlock) => Ok(None),
            Err(std::fs::TryLockError::Error(e)) => Err(e),
        }
    })
    .await
    .map_err(|e| MetaError::Unavailable(format!("job lock task failed: {e}")))?
    .map_err(|e| MetaError::Unavailable(format!("cannot lock the {} job: {e}", job.name())))?;
    Ok(locked.map(|file| JobLock {
        job,
        held: Held::File(file),
    }))
}

/// PostgreSQL's lock: a session advisory lock, without waiting, on a connection of its own.
pub(crate) async fn advisory_job(pool: &sqlx::PgPool, job: Job) -> Result<Option<JobLock>> {
    let mut conn = pool.acquire().await?;
    let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
        .bind(job.advisory_key())
        .fetch_one(&mut *conn)
        .await?;
    Ok(locked.then(|| JobLock {
        job,
        held: Held::Postgres(Some(conn)),
    }))
}
