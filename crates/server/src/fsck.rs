//! `berth fsck` against a configuration: the backends opened read-only (safe beside a
//! running `berth serve`), then [`berth_registry::fsck::fsck`].

pub use berth_registry::fsck::{BlobFault, FsckOptions, FsckReport, Orphan, UsageFault};

use crate::{Config, StartError, check, open_read_only};

#[derive(Debug, thiserror::Error)]
pub enum FsckError {
    #[error("no registry database at {0}: is this the data directory `berth serve` uses?")]
    NoDatabase(String),
    #[error("cannot open the registry: {0}")]
    Open(#[from] StartError),
    #[error("{0}")]
    Check(#[from] berth_registry::Error),
}

/// Checks the registry `config` names; see [`berth_registry::fsck`].
pub async fn fsck(config: &Config, options: &FsckOptions) -> Result<FsckReport, FsckError> {
    if !check::is_postgres(&config.database.url) {
        let path = check::sqlite_path(config);
        if !path.is_file() {
            return Err(FsckError::NoDatabase(path.display().to_string()));
        }
    }
    let (blobs, meta) = open_read_only(config).await?;
    let report = berth_registry::fsck::fsck(meta.as_ref(), blobs.as_ref(), options).await;
    meta.close().await;
    Ok(report?)
}
