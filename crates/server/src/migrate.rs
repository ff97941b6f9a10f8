//! `berth migrate` on the server side: opens the two backend pairs from their configurations
//! (the source read-only: it may be serving) and hands them to
//! [`berth_registry::migration::copy_registry`], which does the copy.

pub use berth_registry::migration::{MigrationError, Progress, Report, SigningKey, Tally};
use berth_registry::migration::{Sides, copy_registry};

use crate::{Config, StartError, check, open_blobs, open_meta, open_read_only};

#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error("source: {0}")]
    OpenSource(StartError),
    #[error("target: {0}")]
    OpenTarget(StartError),
    #[error("no registry at {0}: its database does not exist")]
    NoSource(String),
    #[error("the source and the target are the same backends")]
    SameBackends,
    #[error(transparent)]
    Copy(#[from] MigrationError),
}

pub type Result<T, E = MigrateError> = std::result::Result<T, E>;

/// Copies everything `from` holds into `to`, skipping what `to` has already.
pub async fn migrate(
    from: &Config,
    to: &Config,
    progress: &mut (dyn FnMut(Progress<'_>) + Send),
) -> Result<Report> {
    if same_backends(from, to) {
        return Err(MigrateError::SameBackends);
    }
    if !check::is_postgres(&from.database.url) {
        let path = check::sqlite_path(from);
        if !path.is_file() {
            return Err(MigrateError::NoSource(path.display().to_string()));
        }
    }
    // The source may be serving: it is read, never changed.
    let (from_blobs, from_meta) = open_read_only(from)
        .await
        .map_err(MigrateError::OpenSource)?;
    if to.uses_data_dir() {
        std::fs::create_dir_all(&to.data_dir).map_err(|source| {
            MigrateError::OpenTarget(StartError::DataDir {
                path: to.data_dir.clone(),
                source,
            })
        })?;
    }
    let to_blobs = open_blobs(to).await.map_err(MigrateError::OpenTarget)?;
    let to_meta = open_meta(to, berth_meta::system_clock())
        .await
        .map_err(MigrateError::OpenTarget)?;
    let sides = Sides {
        from_meta,
        from_blobs,
        to_meta,
        to_blobs,
    };
    Ok(copy_registry(sides, progress).await?)
}

/// Both sides name the same database or the same blob directory.
fn same_backends(from: &Config, to: &Config) -> bool {
    let database = |c: &Config| {
        if check::is_postgres(&c.database.url) {
            c.database.url.clone()
        } else {
            check::sqlite_path(c).display().to_string()
        }
    };
    let storage = |c: &Config| match c.storage.backend.as_str() {
        "s3" => format!("s3 {} {}", c.storage.endpoint, c.storage.bucket),
        _ => c.data_dir.display().to_string(),
    };
    database(from) == database(to) || storage(from) == storage(to)
}
