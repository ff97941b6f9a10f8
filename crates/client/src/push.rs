//! The push engine: blobs the registry has are skipped, blobs another repository of the same
//! registry holds are mounted, the rest uploaded in parallel; manifests last.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use berth_oci::{Descriptor, Digest, ManifestKind, Reference, Repository, parse_manifest};
use berth_store::Store;
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use tokio::sync::Semaphore;
use tokio_util::io::ReaderStream;

use crate::error::{ClientError, Result};
use crate::progress::{Phase, Progress};
use crate::registry::{RegistryClient, UploadStart, push_scope};

pub struct PushOptions {
    pub max_concurrent: usize,
}

impl Default for PushOptions {
    fn default() -> Self {
        PushOptions { max_concurrent: 5 }
    }
}

#[derive(Debug)]
pub struct PushOutcome {
    /// The tag pushed, or the digest when the name had none.
    pub reference: String,
    pub digest: Digest,
    pub size: u64,
}

/// Pushes the local image named `reference` to its registry.
pub async fn push(
    client: &RegistryClient,
    store: &Store,
    reference: &Reference,
    options: &PushOptions,
    progress: Arc<dyn Progress>,
) -> Result<PushOutcome> {
    let top = store.resolve(&reference.to_string())?.ok_or_else(|| {
        ClientError::Protocol(format!(
            "An image does not exist locally with the tag: {}",
            reference.familiar()
        ))
    })?;
    let repo = reference.repository();

    // Manifests to push, children before the index that lists them.
    let mut manifests: Vec<(Descriptor, Vec<u8>)> = Vec::new();
    let mut blobs: Vec<Descriptor> = Vec::new();
    let top_bytes = store.read_blob(&top.digest)?;
    let top_parsed = parse_manifest(Some(&top.media_type), &top_bytes)?;
    let images = match top_parsed.kind {
        ManifestKind::Image => vec![top_parsed],
        ManifestKind::Index => {
            let mut images = Vec::new();
            for child in &top_parsed.manifests {
                if !store.has_blob(&child.digest) {
                    return Err(ClientError::Protocol(format!(
                        "{}: the local copy of this index lacks the manifest {} ({}); pull it \
                         with --all-platforms to push every platform",
                        reference.familiar(),
                        child.digest,
                        platform_text(child)
                    )));
                }
                let bytes = store.read_blob(&child.digest)?;
                images.push(parse_manifest(Some(&child.media_type), &bytes)?);
                manifests.push((child.clone(), bytes));
            }
            images
        }
    };
    for image in &images {
        for d in image.blob_references() {
            if !blobs.iter().any(|b| b.digest == d.digest) {
                blobs.push(d.clone());
            }
        }
    }
    let sources = mount_sources(store, reference)?;

    let limit = Arc::new(Semaphore::new(options.max_concurrent.max(1)));
    let mut tasks = FuturesUnordered::new();
    for blob in &blobs {
        let limit = limit.clone();
        let progress = progress.clone();
        let sources = sources.get(&blob.digest).cloned().unwrap_or_default();
        tasks.push(async move {
            progress.phase(&blob.digest, blob.size, Phase::Preparing);
            let _permit = limit
                .acquire()
                .await
                .map_err(|_| ClientError::Protocol("upload queue closed".into()))?;
            push_blob(client, store, repo, blob, &sources, progress.as_ref()).await
        });
    }
    while let Some(result) = tasks.next().await {
        result?;
    }
    drop(tasks);

    for (child, bytes) in manifests {
        client
            .put_manifest(
                repo,
                &child.digest.to_string(),
                &child.media_type,
                bytes.into(),
            )
            .await?;
    }
    let target = match (reference.tag(), reference.digest()) {
        (Some(t), _) => t.to_string(),
        (None, Some(d)) => d.to_string(),
        (None, None) => top.digest.to_string(),
    };
    let size = top_bytes.len() as u64;
    let digest = client
        .put_manifest(repo, &target, &top.media_type, top_bytes.into())
        .await?;
    Ok(PushOutcome {
        reference: target,
        digest,
        size,
    })
}

fn platform_text(d: &Descriptor) -> String {
    d.platform
        .as_ref()
        .and_then(|p| serde_json::from_value::<crate::platform::Platform>(p.clone()).ok())
        .map_or_else(|| "no platform".into(), |p| p.to_string())
}

/// For each blob, the other repositories of the same registry that local names say hold it:
/// candidates for a cross-repository mount.
fn mount_sources(store: &Store, target: &Reference) -> Result<BTreeMap<Digest, Vec<Repository>>> {
    let mut out: BTreeMap<Digest, Vec<Repository>> = BTreeMap::new();
    let mut seen = BTreeSet::new();
    for image in store.images()? {
        let Ok(name) = Reference::parse_normalized(&image.name) else {
            continue;
        };
        if name.domain() != target.domain() || name.repository() == target.repository() {
            continue;
        }
        if !seen.insert((name.repository().clone(), image.descriptor.digest.clone())) {
            continue;
        }
        for digest in store.referenced_blobs(&image.descriptor)? {
            let repos = out.entry(digest).or_default();
            if !repos.contains(name.repository()) {
                repos.push(name.repository().clone());
            }
        }
    }
    Ok(out)
}

async fn push_blob(
    client: &RegistryClient,
    store: &Store,
    repo: &Repository,
    blob: &Descriptor,
    sources: &[Repository],
    progress: &dyn Progress,
) -> Result<()> {
    let digest = &blob.digest;
    if client
        .blob_size(repo, digest, &[push_scope(repo)])
        .await?
        .is_some()
    {
        progress.phase(digest, blob.size, Phase::LayerAlreadyExists);
        return Ok(());
    }
    let mut session = None;
    for from in sources {
        match client.start_upload(repo, Some((digest, from))).await {
            Ok(UploadStart::Mounted) => {
                progress.phase(digest, blob.size, Phase::MountedFrom(from.to_string()));
                return Ok(());
            }
            // The registry opened a normal upload instead (no access to the source, say).
            Ok(UploadStart::Session(url)) => {
                session = Some(url);
                break;
            }
            // A refused mount is not fatal: upload the bytes instead.
            Err(e) => tracing::debug!(%digest, %from, error = %e, "mount refused"),
        }
    }
    let session = match session {
        Some(s) => s,
        None => match client.start_upload(repo, None).await? {
            UploadStart::Session(s) => s,
            UploadStart::Mounted => return Ok(()),
        },
    };
    progress.phase(digest, blob.size, Phase::Pushing);
    let path = store.blob_path(digest);
    let sent = Arc::new(AtomicU64::new(0));
    let progress_ref = progress;
    let make_body = || -> Result<reqwest::Body> {
        let file = std::fs::File::open(&path)
            .map_err(ClientError::io(format!("opening {}", path.display())))?;
        sent.store(0, Ordering::Relaxed);
        let counter = sent.clone();
        let stream = ReaderStream::with_capacity(tokio::fs::File::from_std(file), 256 << 10)
            .inspect(move |chunk| {
                if let Ok(c) = chunk {
                    counter.fetch_add(c.len() as u64, Ordering::Relaxed);
                }
            });
        Ok(reqwest::Body::wrap_stream(stream))
    };
    let upload = client.upload_blob(repo, session, digest, blob.size, make_body);
    // Report progress while the body streams.
    tokio::pin!(upload);
    let mut tick = tokio::time::interval(std::time::Duration::from_millis(100));
    let result = loop {
        tokio::select! {
            r = &mut upload => break r,
            _ = tick.tick() => progress_ref.bytes(digest, sent.load(Ordering::Relaxed)),
        }
    };
    result?;
    progress.bytes(digest, blob.size);
    progress.phase(digest, blob.size, Phase::Pushed);
    Ok(())
}
