//! Copying a registry from one backend pair to another (embedded SQLite + filesystem,
//! PostgreSQL + S3, or any mix) through the same traits the server uses: the work of `berth
//! migrate`, whose server side only opens the two pairs from their configurations.
//!
//! Steps, in dependency order: accounts (users, projects, memberships, robots), the token
//! signing key, blobs, repository -> blob links, manifests (children before the indexes that
//! name them), tags. Each step skips what the target already has, so a run that was
//! interrupted is finished by running again, and a second complete run copies nothing.
//!
//! Blobs stream from the source's reader into an upload session of the target, hashed on the
//! way; nothing holds a whole blob in memory. A blob no repository may read (garbage waiting
//! for GC) is not copied. The audit log is not copied.

use std::sync::Arc;

use berth_meta::{BlobRecord, ManifestRecord, MetaError, MetaStore, Page, UploadRecord};
use berth_oci::{Digest, DigestHasher, Repository, Tag, parse_manifest};
use berth_storage::{BlobKey, BlobStore, StorageError, UploadState};
use futures_util::StreamExt;

/// Rows asked for per page of a listing.
const PAGE: u32 = 200;

/// Why a copy stopped.
#[derive(Debug, thiserror::Error)]
pub enum MigrationError {
    #[error(transparent)]
    Meta(#[from] MetaError),
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("blob {digest} in the source is damaged: {reason}")]
    BlobDamaged { digest: Digest, reason: String },
    #[error("manifest {digest} in {repository} cannot be copied: {reason}")]
    Manifest {
        repository: Repository,
        digest: Digest,
        reason: String,
    },
}

pub type Result<T, E = MigrationError> = std::result::Result<T, E>;

/// What a step found: copied now, or in the target already.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Tally {
    pub copied: u64,
    pub present: u64,
}

impl Tally {
    fn add(&mut self, copied: bool) {
        if copied {
            self.copied += 1;
        } else {
            self.present += 1;
        }
    }
}

/// What happened to the token signing key.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SigningKey {
    /// The source has none (it never served with accounts on).
    #[default]
    None,
    Copied,
    /// The target has the same key already.
    Present,
    /// The target has a key of its own, which stays: tokens the source issued are not valid
    /// on the target.
    Differs,
}

/// The outcome of a run, step by step.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Report {
    pub users: Tally,
    pub projects: Tally,
    pub members: Tally,
    pub robots: Tally,
    pub signing_key: SigningKey,
    pub blobs: Tally,
    /// Bytes of the blobs copied.
    pub blob_bytes: u64,
    /// Blobs no repository may read: left behind.
    pub unreferenced_blobs: u64,
    pub links: Tally,
    pub manifests: Tally,
    pub tags: Tally,
}

impl Report {
    /// Nothing was copied: the target had everything.
    pub fn copied_nothing(&self) -> bool {
        [
            self.users,
            self.projects,
            self.members,
            self.robots,
            self.blobs,
            self.links,
            self.manifests,
            self.tags,
        ]
        .iter()
        .all(|t| t.copied == 0)
            && self.signing_key != SigningKey::Copied
    }
}

/// Reported while a run goes on.
#[derive(Clone, Debug)]
pub enum Progress<'a> {
    /// A step begins: `accounts`, `signing key`, `blobs`, `links`, `manifests`, `tags`.
    Step(&'static str),
    /// A blob was copied.
    Blob { digest: &'a Digest, size: u64 },
}

/// The two sides of a copy.
pub struct Sides {
    pub from_meta: Arc<dyn MetaStore>,
    pub from_blobs: Arc<dyn BlobStore>,
    pub to_meta: Arc<dyn MetaStore>,
    pub to_blobs: Arc<dyn BlobStore>,
}

/// Copies everything `sides.from_*` holds into `sides.to_*`, skipping what the target has
/// already; closes both databases at the end (SQLite checkpoints its log into the database file
/// when the last connection closes).
pub async fn copy_registry(
    sides: Sides,
    progress: &mut (dyn FnMut(Progress<'_>) + Send),
) -> Result<Report> {
    let mut report = Report::default();
    let copied = sides.copy(&mut report, progress).await;
    sides.from_meta.close().await;
    sides.to_meta.close().await;
    copied.map(|()| report)
}

/// Walks a paged listing to its end.
async fn each_page<T, K, F, Fut>(key: impl Fn(&T) -> K, mut fetch: F) -> Result<Vec<Vec<T>>>
where
    F: FnMut(Option<K>) -> Fut,
    Fut: std::future::Future<Output = Result<Page<T>, MetaError>>,
{
    // Kept simple for callers: a page at a time would need an async closure per step.
    let mut pages = Vec::new();
    let mut last = None;
    loop {
        let page = fetch(last.take()).await?;
        last = page.items.last().map(&key);
        let more = page.more;
        pages.push(page.items);
        if !more {
            return Ok(pages);
        }
    }
}

impl Sides {
    async fn accounts(&self, report: &mut Report) -> Result<()> {
        let (from, to) = (&self.from_meta, &self.to_meta);
        // Users first: a personal project names its owner.
        for user in from.users().await? {
            let copy = to.user(&user.name).await?.is_none();
            if copy {
                to.create_user(&user, None).await?;
            }
            report.users.add(copy);
        }
        let projects = from.projects().await?;
        for project in &projects {
            let copy = to.project(&project.name).await?.is_none();
            if copy {
                to.create_project(project, None).await?;
            }
            report.projects.add(copy);
        }
        for project in &projects {
            for (user, role) in from.members(&project.name).await? {
                let copy = to.role(&project.name, &user).await? != Some(role);
                if copy {
                    to.set_member(&project.name, &user, role).await?;
                }
                report.members.add(copy);
            }
        }
        for robot in from.robots().await? {
            let copy = to.robot(&robot.name).await?.is_none();
            if copy {
                to.create_robot(&robot).await?;
            }
            report.robots.add(copy);
        }
        Ok(())
    }

    /// Every step, in the order that keeps the target consistent at each point.
    async fn copy(
        &self,
        report: &mut Report,
        progress: &mut (dyn FnMut(Progress<'_>) + Send),
    ) -> Result<()> {
        progress(Progress::Step("accounts"));
        self.accounts(report).await?;
        progress(Progress::Step("signing key"));
        report.signing_key = self.signing_key().await?;
        progress(Progress::Step("blobs"));
        self.blobs(report, progress).await?;
        progress(Progress::Step("links"));
        self.links(report).await?;
        progress(Progress::Step("manifests"));
        self.manifests(report).await?;
        progress(Progress::Step("tags"));
        self.tags(report).await
    }

    async fn signing_key(&self) -> Result<SigningKey> {
        let Some(key) = self.from_meta.stored_signing_key().await? else {
            return Ok(SigningKey::None);
        };
        let before = self.to_meta.stored_signing_key().await?;
        let kept = self.to_meta.signing_key(&key).await?;
        Ok(if kept != key {
            SigningKey::Differs
        } else if before.is_some() {
            SigningKey::Present
        } else {
            SigningKey::Copied
        })
    }

    /// Every blob some repository may read, recorded in the target with the first such
    /// repository (the links step adds the others).
    async fn blobs(
        &self,
        report: &mut Report,
        progress: &mut (dyn FnMut(Progress<'_>) + Send),
    ) -> Result<()> {
        let mut last: Option<Digest> = None;
        loop {
            let page = self.from_meta.all_blobs(last.as_ref(), PAGE).await?;
            for blob in &page.items {
                if self.to_meta.blob(&blob.digest).await?.is_some() {
                    report.blobs.present += 1;
                    continue;
                }
                let Some(repository) = self
                    .from_meta
                    .blob_repositories(&blob.digest, 1)
                    .await?
                    .into_iter()
                    .next()
                else {
                    report.unreferenced_blobs += 1;
                    continue;
                };
                self.copy_blob(&repository, blob).await?;
                report.blobs.copied += 1;
                report.blob_bytes += blob.size;
                progress(Progress::Blob {
                    digest: &blob.digest,
                    size: blob.size,
                });
            }
            last = page.items.last().map(|b| b.digest.clone());
            if !page.more {
                return Ok(());
            }
        }
    }

    /// Streams one blob into an upload session of the target, checks its digest and size,
    /// commits it and records it. The session is recorded in the target's database while it
    /// lasts, so that upload expiry removes its data if this run is interrupted.
    async fn copy_blob(&self, repository: &Repository, blob: &BlobRecord) -> Result<()> {
        let key = BlobKey::parse(&blob.storage_key)?;
        let mut stream = self.from_blobs.open(&key, None).await?;
        let id = ulid::Ulid::new().to_string();
        let state = self.to_blobs.create_upload(&id).await?;
        let now = self.to_meta.clock().now();
        self.to_meta
            .create_upload(&UploadRecord {
                id: id.clone(),
                repository: repository.clone(),
                offset: 0,
                hash_state: DigestHasher::new().save(),
                backend_state: state.0.clone(),
                created_at: now,
                updated_at: now,
                // Not a client's: never refused by the cap on open sessions.
                owner: None,
            })
            .await?;
        let result = self.stream_into(&id, &state, blob, &mut stream).await;
        let outcome = match result {
            Ok(state) => self
                .to_blobs
                .commit(&id, &state, &blob.digest, blob.size)
                .await
                .map_err(MigrationError::from),
            Err(e) => {
                let _ = self.to_blobs.abort(&id, &state).await;
                Err(e)
            }
        };
        self.to_meta.delete_upload(&id).await?;
        let stored = outcome?;
        self.to_meta
            .add_blob(
                repository,
                &BlobRecord {
                    digest: blob.digest.clone(),
                    size: blob.size,
                    storage_key: stored.as_str().to_string(),
                },
            )
            .await?;
        Ok(())
    }

    async fn stream_into(
        &self,
        id: &str,
        state: &UploadState,
        blob: &BlobRecord,
        stream: &mut berth_storage::ByteStream,
    ) -> Result<UploadState> {
        let mut writer = self.to_blobs.writer(id, state, 0).await?;
        let mut hasher = DigestHasher::new();
        let mut size = 0u64;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(StorageError::from)?;
            hasher.update(&chunk);
            size += chunk.len() as u64;
            writer.write(chunk).await?;
        }
        let digest = hasher.finish();
        if digest != blob.digest || size != blob.size {
            return Err(MigrationError::BlobDamaged {
                digest: blob.digest.clone(),
                reason: format!(
                    "read {size} bytes with digest {digest}, expected {} bytes",
                    blob.size
                ),
            });
        }
        Ok(writer.finish_last().await?)
    }

    async fn repositories(&self) -> Result<Vec<Repository>> {
        let pages = each_page(
            |r: &Repository| r.as_str().to_string(),
            |last| {
                let meta = self.from_meta.clone();
                async move { meta.repositories(last.as_deref(), PAGE).await }
            },
        )
        .await?;
        Ok(pages.into_iter().flatten().collect())
    }

    async fn links(&self, report: &mut Report) -> Result<()> {
        for repository in self.repositories().await? {
            let mut last: Option<Digest> = None;
            loop {
                let page = self
                    .from_meta
                    .repository_blob_digests(&repository, last.as_ref(), PAGE)
                    .await?;
                for digest in &page.items {
                    if self
                        .to_meta
                        .repository_blob(&repository, digest)
                        .await?
                        .is_some()
                    {
                        report.links.present += 1;
                    } else if self.to_meta.link_blob(&repository, digest).await? {
                        report.links.copied += 1;
                    } else {
                        return Err(MetaError::BlobUnknown(digest.clone()).into());
                    }
                }
                last = page.items.last().cloned();
                if !page.more {
                    break;
                }
            }
        }
        Ok(())
    }

    /// Manifests in digest order; an index whose children are not in the target yet waits
    /// until they are.
    async fn manifests(&self, report: &mut Report) -> Result<()> {
        for repository in self.repositories().await? {
            let mut waiting: Vec<ManifestRecord> = Vec::new();
            let mut last: Option<Digest> = None;
            loop {
                let page = self
                    .from_meta
                    .repository_manifests(&repository, last.as_ref(), PAGE)
                    .await?;
                for manifest in &page.items {
                    if self
                        .to_meta
                        .manifest(&repository, &manifest.digest)
                        .await?
                        .is_some()
                    {
                        report.manifests.present += 1;
                    } else if self.put(&repository, manifest, Vec::new()).await? {
                        report.manifests.copied += 1;
                    } else {
                        waiting.push(manifest.clone());
                    }
                }
                last = page.items.last().map(|m| m.digest.clone());
                if !page.more {
                    break;
                }
            }
            // Each pass stores at least one more, or nothing can be stored.
            while !waiting.is_empty() {
                let before = waiting.len();
                let mut still = Vec::new();
                for manifest in waiting {
                    if self.put(&repository, &manifest, Vec::new()).await? {
                        report.manifests.copied += 1;
                    } else {
                        still.push(manifest);
                    }
                }
                if still.len() == before {
                    return Err(MigrationError::Manifest {
                        repository: repository.clone(),
                        digest: still[0].digest.clone(),
                        reason: "a manifest it names is not in the source repository".into(),
                    });
                }
                waiting = still;
            }
        }
        Ok(())
    }

    /// Stores a manifest (with `tags`) in the target, indexed as a push would: `false` when a
    /// child manifest is not there yet.
    async fn put(
        &self,
        repository: &Repository,
        manifest: &ManifestRecord,
        tags: Vec<Tag>,
    ) -> Result<bool> {
        let failed = |reason: String| MigrationError::Manifest {
            repository: repository.clone(),
            digest: manifest.digest.clone(),
            reason,
        };
        let parsed = parse_manifest(Some(&manifest.media_type), &manifest.content)
            .map_err(|e| failed(e.to_string()))?;
        let new = crate::index_manifest(&parsed, manifest.content.clone(), tags)
            .map_err(|e| failed(e.to_string()))?;
        if new.digest != manifest.digest {
            return Err(failed(format!("its content has digest {}", new.digest)));
        }
        match self.to_meta.put_manifest(repository, &new).await {
            Ok(()) => Ok(true),
            Err(MetaError::ManifestUnknown(_)) => Ok(false),
            Err(MetaError::BlobUnknown(d)) => Err(failed(format!(
                "blob {d} is not readable in the repository"
            ))),
            Err(e) => Err(e.into()),
        }
    }

    async fn tags(&self, report: &mut Report) -> Result<()> {
        for repository in self.repositories().await? {
            let mut last: Option<String> = None;
            loop {
                let page = self
                    .from_meta
                    .tag_targets(&repository, last.as_deref(), PAGE)
                    .await?;
                for (tag, digest) in &page.items {
                    let current = self.to_meta.tagged_manifest(&repository, tag).await?;
                    if current.is_some_and(|m| &m.digest == digest) {
                        report.tags.present += 1;
                        continue;
                    }
                    let manifest = self
                        .to_meta
                        .manifest(&repository, digest)
                        .await?
                        .ok_or_else(|| MetaError::ManifestUnknown(digest.clone()))?;
                    if !self.put(&repository, &manifest, vec![tag.clone()]).await? {
                        return Err(MetaError::ManifestUnknown(digest.clone()).into());
                    }
                    report.tags.copied += 1;
                }
                last = page.items.last().map(|(t, _)| t.as_str().to_string());
                if !page.more {
                    break;
                }
            }
        }
        Ok(())
    }
}
