//! `berth migrate` on the server side: opens the two backend pairs from their configurations
//! (the source read-only: it may be serving) and hands them to
//! [`berth_registry::migration::copy_registry`], which does the copy.

pub use berth_registry::migration::{MigrationError, Progress, Report, SigningKey, Tally};
use berth_registry::migration::{Sides, copy_registry};

use crate::backends::{Backends, Opened};
use crate::{Config, StartError};

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
    let source = Backends::resolve(from).map_err(|e| MigrateError::OpenSource(e.into()))?;
    let target = Backends::resolve(to).map_err(|e| MigrateError::OpenTarget(e.into()))?;
    // Both sides name the same database or the same blob store.
    if source.overlap(&target) {
        return Err(MigrateError::SameBackends);
    }
    if let Some(path) = source.meta.missing_database() {
        return Err(MigrateError::NoSource(path.display().to_string()));
    }
    // The source may be serving: it is read, never changed.
    let Opened {
        blobs: from_blobs,
        meta: from_meta,
    } = source
        .open_read_only()
        .await
        .map_err(MigrateError::OpenSource)?;
    let Opened {
        blobs: to_blobs,
        meta: to_meta,
    } = target
        .open(berth_meta::system_clock())
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
