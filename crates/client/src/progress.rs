//! What the pull and push engines report while they work. The CLI draws it as docker does (one
//! line per layer); tests and scripts can ignore it.

use berth_oci::Digest;

/// The state of one blob in a pull or push, in docker's words.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Pull: queued behind the concurrency limit.
    Waiting,
    Downloading,
    VerifyingChecksum,
    DownloadComplete,
    /// Pull: the local store had it.
    AlreadyExists,
    /// Push: queued behind the concurrency limit.
    Preparing,
    Pushing,
    Pushed,
    /// Push: the registry had it.
    LayerAlreadyExists,
    /// Push: linked from another repository of the same registry.
    MountedFrom(String),
    /// A transfer failed and is tried again (resuming where it can).
    Retrying(String),
}

impl Phase {
    /// The words docker prints.
    pub fn label(&self) -> String {
        match self {
            Phase::Waiting => "Waiting".into(),
            Phase::Downloading => "Downloading".into(),
            Phase::VerifyingChecksum => "Verifying Checksum".into(),
            Phase::DownloadComplete => "Download complete".into(),
            Phase::AlreadyExists => "Already exists".into(),
            Phase::Preparing => "Preparing".into(),
            Phase::Pushing => "Pushing".into(),
            Phase::Pushed => "Pushed".into(),
            Phase::LayerAlreadyExists => "Layer already exists".into(),
            Phase::MountedFrom(from) => format!("Mounted from {from}"),
            Phase::Retrying(why) => format!("Retrying ({why})"),
        }
    }

    /// Whether the blob is done with.
    pub fn is_final(&self) -> bool {
        matches!(
            self,
            Phase::DownloadComplete
                | Phase::AlreadyExists
                | Phase::Pushed
                | Phase::LayerAlreadyExists
                | Phase::MountedFrom(_)
        )
    }
}

/// Receives progress; implementations must be cheap, they are called for every chunk.
pub trait Progress: Send + Sync {
    /// A blob entered `phase`; `size` is its full size.
    fn phase(&self, digest: &Digest, size: u64, phase: Phase);
    /// `done` of the blob's bytes are transferred (absolute, not a delta).
    fn bytes(&self, digest: &Digest, done: u64);
}

/// Progress nobody watches.
pub struct Silent;

impl Progress for Silent {
    fn phase(&self, _: &Digest, _: u64, _: Phase) {}
    fn bytes(&self, _: &Digest, _: u64) {}
}
