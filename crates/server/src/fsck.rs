//! `berth fsck` against a configuration: the backends opened read-only (safe beside a
//! running `berth serve`), then [`berth_registry::fsck::fsck`].

pub use berth_registry::fsck::{BlobFault, FsckOptions, FsckReport, Orphan, UsageFault};

use crate::backends::{Backends, Opened};
use crate::{Config, StartError};

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
    let backends = Backends::resolve(config).map_err(StartError::from)?;
    if let Some(path) = backends.meta.missing_database() {
        return Err(FsckError::NoDatabase(path.display().to_string()));
    }
    let Opened { blobs, meta } = backends.open_read_only().await?;
    let report = berth_registry::fsck::fsck(meta.as_ref(), blobs.as_ref(), options).await;
    meta.close().await;
    Ok(report?)
}
