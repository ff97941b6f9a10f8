//! The pull engine: resolve a name to a manifest (choosing a platform from an index), download
//! config and layers in parallel into the local store, digest-verified and resumable, then
//! record the name.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::sync::Arc;
use std::time::Duration;

use berth_oci::{Descriptor, Digest, ManifestKind, ParsedManifest, Reference, parse_manifest};
use berth_store::Store;
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use reqwest::StatusCode;
use tokio::sync::Semaphore;

use crate::error::{ClientError, Result};
use crate::platform::Platform;
use crate::progress::{Phase, Progress};
use crate::registry::{FetchedManifest, RegistryClient};

const DOWNLOAD_ATTEMPTS: u32 = 6;

pub struct PullOptions {
    /// The platform to take from an index; `None` means the host's.
    pub platform: Option<Platform>,
    /// Keep a multi-platform index as it is, with every platform's image.
    pub all_platforms: bool,
    pub max_concurrent: usize,
}

impl Default for PullOptions {
    fn default() -> Self {
        PullOptions {
            platform: None,
            all_platforms: false,
            max_concurrent: 3,
        }
    }
}

#[derive(Debug)]
pub struct PullOutcome {
    /// The name recorded in the store (with its tag, or its digest when pulled by digest).
    pub name: Reference,
    /// The digest the registry serves for the reference (an index's digest for a
    /// multi-platform image), as docker prints it after `Digest:`.
    pub repo_digest: Digest,
    /// What the name now points to in the store.
    pub descriptor: Descriptor,
    /// The name already pointed to this image and nothing was downloaded.
    pub up_to_date: bool,
}

/// Pulls `reference` (which must carry a tag or a digest) into `store`.
pub async fn pull(
    client: &RegistryClient,
    store: &Store,
    reference: &Reference,
    options: &PullOptions,
    progress: Arc<dyn Progress>,
) -> Result<PullOutcome> {
    let repo = reference.repository();
    let wanted = match (reference.digest(), reference.tag()) {
        (Some(d), _) => d.to_string(),
        (None, Some(t)) => t.to_string(),
        (None, None) => {
            return Err(ClientError::Protocol(format!(
                "{reference}: a tag or digest is needed"
            )));
        }
    };
    let top = client.get_manifest(repo, &wanted).await?;
    let parsed = parse_manifest(Some(&top.media_type), &top.bytes)?;
    let top_desc = Descriptor {
        media_type: parsed.media_type.clone(),
        digest: top.digest.clone(),
        size: top.bytes.len() as u64,
        artifact_type: None,
        annotations: None,
        urls: None,
        platform: None,
    };

    // The manifests to store (digest -> bytes), and what the name will point to.
    let mut manifests: BTreeMap<Digest, bytes::Bytes> = BTreeMap::new();
    let mut images = Vec::new();
    let named = match parsed.kind {
        ManifestKind::Image => {
            images.push(parsed);
            manifests.insert(top.digest.clone(), top.bytes.clone());
            top_desc.clone()
        }
        ManifestKind::Index if options.all_platforms => {
            manifests.insert(top.digest.clone(), top.bytes.clone());
            for child in &parsed.manifests {
                let (fetched, child_parsed) = fetch_child(client, reference, child).await?;
                images.push(child_parsed);
                manifests.insert(fetched.digest, fetched.bytes);
            }
            top_desc.clone()
        }
        ManifestKind::Index => {
            let wanted = options.platform.clone().unwrap_or_else(Platform::host);
            let child = crate::platform::select(&wanted, &parsed.manifests)
                .ok_or_else(|| ClientError::NoMatchingPlatform {
                    wanted: wanted.to_string(),
                    available: available_platforms(&parsed.manifests),
                })?
                .clone();
            let (fetched, child_parsed) = fetch_child(client, reference, &child).await?;
            images.push(child_parsed);
            manifests.insert(fetched.digest, fetched.bytes);
            Descriptor {
                annotations: None,
                ..child
            }
        }
    };

    // Config and layers, once each, in the order docker shows them.
    let mut blobs: Vec<Descriptor> = Vec::new();
    for image in &images {
        for d in image.blob_references() {
            if !blobs.iter().any(|b| b.digest == d.digest) {
                blobs.push(d.clone());
            }
        }
    }
    let all_present = blobs.iter().all(|b| store.has_blob(&b.digest))
        && manifests.keys().all(|d| store.has_blob(d));

    let limit = Arc::new(Semaphore::new(options.max_concurrent.max(1)));
    let mut tasks = FuturesUnordered::new();
    for blob in &blobs {
        let limit = limit.clone();
        let progress = progress.clone();
        tasks.push(async move {
            if store.has_blob(&blob.digest) {
                progress.phase(&blob.digest, blob.size, Phase::AlreadyExists);
                return Ok(());
            }
            progress.phase(&blob.digest, blob.size, Phase::Waiting);
            let _permit = limit
                .acquire()
                .await
                .map_err(|_| ClientError::Protocol("download queue closed".into()))?;
            download(client, store, reference, blob, progress.as_ref()).await
        });
    }
    while let Some(result) = tasks.next().await {
        result?;
    }
    drop(tasks);

    // Manifests last: a manifest in the store means its blobs are there.
    for (digest, bytes) in &manifests {
        if !store.has_blob(digest) {
            let stored = store.put_blob(bytes)?;
            if &stored != digest {
                return Err(ClientError::DigestMismatch {
                    expected: digest.clone(),
                    actual: stored,
                });
            }
        }
    }
    let name = reference.clone();
    let previous = store.tag(&name.to_string(), named.clone())?;
    let up_to_date = all_present && previous.is_some_and(|p| p.digest == named.digest);
    Ok(PullOutcome {
        name,
        repo_digest: top.digest,
        descriptor: named,
        up_to_date,
    })
}

/// An index's child, which must be an image manifest (berth does not follow nested indexes).
async fn fetch_child(
    client: &RegistryClient,
    reference: &Reference,
    child: &Descriptor,
) -> Result<(FetchedManifest, ParsedManifest)> {
    let fetched = client
        .get_manifest(reference.repository(), &child.digest.to_string())
        .await?;
    let parsed = parse_manifest(Some(&child.media_type), &fetched.bytes)?;
    if parsed.kind == ManifestKind::Index {
        return Err(ClientError::Protocol(format!(
            "{reference}: nested indexes are not supported"
        )));
    }
    Ok((fetched, parsed))
}

fn available_platforms(descriptors: &[Descriptor]) -> String {
    let list: Vec<String> = descriptors
        .iter()
        .filter_map(|d| d.platform.as_ref())
        .filter_map(|p| serde_json::from_value::<Platform>(p.clone()).ok())
        .map(|p| p.to_string())
        .collect();
    if list.is_empty() {
        "no platforms".into()
    } else {
        list.join(", ")
    }
}

/// Downloads one blob into the store, resuming from a partial file left by an earlier attempt
/// (or an earlier, interrupted `berth pull`) with an HTTP `Range` request.
async fn download(
    client: &RegistryClient,
    store: &Store,
    reference: &Reference,
    blob: &Descriptor,
    progress: &dyn Progress,
) -> Result<()> {
    let digest = &blob.digest;
    // Waits while another process downloads the same blob.
    let mut writer = tokio::task::block_in_place(|| store.begin_blob(digest, Some(blob.size)))?;
    if store.has_blob(digest) {
        progress.phase(digest, blob.size, Phase::AlreadyExists);
        return Ok(());
    }
    let mut attempt = 0;
    loop {
        attempt += 1;
        progress.phase(digest, blob.size, Phase::Downloading);
        progress.bytes(digest, writer.offset());
        match fetch_into(client, reference, blob, &mut writer, progress).await {
            Ok(()) => break,
            Err(e) if attempt < DOWNLOAD_ATTEMPTS && is_transient(&e) => {
                progress.phase(digest, blob.size, Phase::Retrying(e.to_string()));
                tokio::time::sleep(Duration::from_millis(250 << attempt.min(5))).await;
            }
            Err(e) => return Err(e),
        }
    }
    progress.phase(digest, blob.size, Phase::VerifyingChecksum);
    tokio::task::block_in_place(|| writer.commit())?;
    progress.phase(digest, blob.size, Phase::DownloadComplete);
    Ok(())
}

fn is_transient(e: &ClientError) -> bool {
    matches!(
        e,
        ClientError::Transfer { .. } | ClientError::Connect { .. }
    )
}

async fn fetch_into(
    client: &RegistryClient,
    reference: &Reference,
    blob: &Descriptor,
    writer: &mut berth_store::BlobWriter,
    progress: &dyn Progress,
) -> Result<()> {
    let offset = writer.offset();
    if offset >= blob.size && blob.size > 0 {
        return Ok(());
    }
    let resp = client
        .get_blob(reference.repository(), &blob.digest, offset)
        .await?;
    if offset > 0 && resp.status() != StatusCode::PARTIAL_CONTENT {
        // The registry ignored the range: start over.
        writer.restart()?;
    }
    let mut stream = resp.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|source| ClientError::Transfer {
            registry: client.domain().to_string(),
            source,
        })?;
        writer
            .write_all(&chunk)
            .map_err(ClientError::io(format!("writing blob {}", blob.digest)))?;
        if writer.offset() > blob.size {
            writer.restart()?;
            return Err(ClientError::Protocol(format!(
                "{}: blob {} is larger than its descriptor says ({} bytes)",
                client.domain(),
                blob.digest,
                blob.size
            )));
        }
        progress.bytes(&blob.digest, writer.offset());
    }
    Ok(())
}
