//! Blobs on a local filesystem.
//!
//! ```text
//! <root>/
//! ├── uploads/
//! │   └── <session id>          bytes of an upload in progress, appended by PATCH
//! └── blobs/
//!     └── sha256/
//!         └── <first 2 hex>/
//!             └── <64 hex>-<session id>   a verified blob, renamed here from uploads/ at commit
//! ```
//!
//! A blob appears under `blobs/` only by `rename()` of a complete, fsynced upload file, so a
//! crash at any moment leaves either no blob or the whole blob.
//!
//! Each commit gets a key of its own (the digest, then the upload session's id), as on S3:
//! garbage collection deletes an object by key, so the object it removes can never be one
//! that a concurrent upload of the same bytes has just committed and is about to record.
//! Stores written before this have keys `<64 hex>` without the suffix; they are read alike.

use std::io::{self, SeekFrom};
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use berth_oci::Digest;
use bytes::Bytes;
use tokio::fs;

use crate::{
    BlobKey, BlobLister, BlobReader, BlobRemover, BlobStore, ByteRange, ByteStream, ObjectStream,
    Result, StorageError, StoredObject, UploadState, UploadStore, UploadWriter,
};

/// Bytes read from a blob file at a time for a GET: 1 MiB costs ~10% less CPU per GiB served
/// than 256 KiB (bench/run), and bounds a GET's buffers to a few MiB.
const READ_CHUNK: usize = 1 << 20;

#[derive(Clone, Debug)]
pub struct FilesystemStore {
    root: PathBuf,
}

/// What [`FilesystemStore::probe`] found under a root, which it left as it was.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FilesystemProbe {
    /// The store's folders are there and it answered [`BlobStore::check`].
    Ready,
    /// The root is there without the store's folders (named, for the operator:
    /// `uploads/ and blobs/`), which [`FilesystemStore::open`] creates.
    FoldersMissing(&'static str),
    /// There is no root: [`FilesystemStore::open`] creates it with its folders.
    RootMissing,
}

impl FilesystemStore {
    /// Opens (creating if needed) a store rooted at `root`.
    pub async fn open(root: impl Into<PathBuf>) -> Result<Self> {
        let root = root.into();
        fs::create_dir_all(root.join("uploads")).await?;
        fs::create_dir_all(root.join("blobs")).await?;
        Ok(Self { root })
    }

    /// The store under `root` as it is, creating nothing: for reading a registry's blobs (the
    /// source of `berth migrate`).
    pub fn existing(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// Looks at the store under `root` without creating anything (`berth serve
    /// --check-config`): when its folders are there, the store must answer
    /// [`BlobStore::check`]; otherwise says what [`open`](Self::open) would create.
    pub async fn probe(root: &Path) -> Result<FilesystemProbe> {
        if root.join("uploads").is_dir() && root.join("blobs").is_dir() {
            Self::existing(root).check().await?;
            return Ok(FilesystemProbe::Ready);
        }
        Ok(if root.exists() {
            FilesystemProbe::FoldersMissing("uploads/ and blobs/")
        } else {
            FilesystemProbe::RootMissing
        })
    }

    fn upload_path(&self, id: &str) -> Result<PathBuf> {
        // Session ids come from the registry (ULIDs); refuse anything that could leave uploads/.
        if id.is_empty() || !id.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(StorageError::InvalidKey(id.to_string()));
        }
        Ok(self.root.join("uploads").join(id))
    }

    /// Opens an upload file cut back to the `acknowledged` bytes: anything past them was
    /// written by a request that never completed. Holds the file's lock (`flock`), which the
    /// writing thread of a request keeps until it has stopped: a request abandoned a moment
    /// ago (its client gone) cannot write into the file after this has cut it back.
    async fn open_acknowledged(&self, id: &str, acknowledged: u64) -> Result<std::fs::File> {
        let path = self.upload_path(id)?;
        let id = id.to_string();
        tokio::task::spawn_blocking(move || {
            let file = match std::fs::OpenOptions::new().write(true).open(&path) {
                Ok(f) => f,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    return Err(StorageError::UploadNotFound(id));
                }
                Err(e) => return Err(e.into()),
            };
            file.lock()?;
            let len = file.metadata()?.len();
            if len < acknowledged {
                // The session acknowledged bytes that are not on disk: never build on them.
                return Err(StorageError::UploadCorrupt {
                    id,
                    expected: acknowledged,
                    actual: len,
                });
            }
            if len > acknowledged {
                file.set_len(acknowledged)?;
            }
            Ok(file)
        })
        .await
        .map_err(|e| StorageError::Io(io::Error::other(e)))?
    }

    fn blob_path(&self, key: &BlobKey) -> PathBuf {
        self.root.join(key.as_str())
    }

    /// The key of the blob `digest` committed from upload session `id`.
    fn key_for(digest: &Digest, id: &str) -> Result<BlobKey> {
        let hex = digest.hex();
        BlobKey::parse(&format!(
            "blobs/{}/{}/{}-{}",
            digest.algorithm().as_str(),
            &hex[..2],
            hex,
            id.to_ascii_lowercase()
        ))
    }
}

async fn sync_dir(dir: &Path) -> io::Result<()> {
    let dir = dir.to_path_buf();
    tokio::task::spawn_blocking(move || std::fs::File::open(dir)?.sync_all())
        .await
        .map_err(io::Error::other)?
}

#[async_trait]
impl BlobReader for FilesystemStore {
    async fn open(&self, key: &BlobKey, range: Option<ByteRange>) -> Result<ByteStream> {
        let mut file = match fs::File::open(self.blob_path(key)).await {
            Ok(f) => f.into_std().await,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(StorageError::NotFound(key.as_str().to_string()));
            }
            Err(e) => return Err(e.into()),
        };
        let (start, len) = match range {
            Some(r) => (r.start, r.len()),
            None => (0, file.metadata()?.len()),
        };
        if start > 0 {
            use std::io::Seek;
            file.seek(SeekFrom::Start(start))?;
        }
        Ok(read_ahead(file, len))
    }
}

/// Streams `len` bytes of `file` from where it stands, [`READ_CHUNK`] at a time: each chunk is
/// read straight into the buffer that goes to the socket (one copy), on a blocking thread, and
/// the next read starts as soon as a chunk is handed over, so reading the file overlaps
/// sending the previous chunk. No thread waits on a slow client: a read runs only when the
/// previous chunk has been taken.
fn read_ahead(file: std::fs::File, len: u64) -> ByteStream {
    type Read = tokio::task::JoinHandle<(std::fs::File, io::Result<Bytes>)>;
    fn start(mut file: std::fs::File, want: u64) -> Read {
        tokio::task::spawn_blocking(move || {
            use std::io::Read;
            let want = want.min(READ_CHUNK as u64);
            let mut buf = Vec::with_capacity(want as usize);
            let read = match (&mut file).take(want).read_to_end(&mut buf) {
                Ok(0) => Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the blob file is shorter than its recorded size",
                )),
                Ok(_) => Ok(Bytes::from(buf)),
                Err(e) => Err(e),
            };
            (file, read)
        })
    }
    let first = (len > 0).then(|| start(file, len));
    Box::pin(futures_util::stream::unfold(
        (first, len),
        |(next, left)| async move {
            let (file, read) = match next?.await {
                Ok(done) => done,
                Err(e) => return Some((Err(io::Error::other(e)), (None, 0))),
            };
            let chunk = match read {
                Ok(chunk) => chunk,
                Err(e) => return Some((Err(e), (None, 0))),
            };
            let left = left - chunk.len() as u64;
            let next = (left > 0).then(|| start(file, left));
            Some((Ok(chunk), (next, left)))
        },
    ))
}

/// Appends a request's bytes to an upload file from a thread of its own, so that the request's
/// task goes on receiving (and the registry hashing) while the kernel copies.
///
/// Durability: nothing is synced per request. The blob is synced once, at
/// [`UploadStore::commit`], before it is renamed into place; a power cut in between loses at
/// most the acknowledged tail of an unfinished upload, which the next request detects (the file is
/// shorter than the session says: [`StorageError::UploadCorrupt`]) or the digest check at the
/// end refuses. Meanwhile, every [`WRITEBACK_STEP`] written, a background `fdatasync` starts the
/// disk on what has arrived, so that the commit's sync finds little left to write.
struct FileUploadWriter {
    chunks: Option<tokio::sync::mpsc::Sender<Bytes>>,
    thread: Option<tokio::task::JoinHandle<io::Result<()>>>,
    /// Set when the writer is dropped unfinished (the request failed or its client left):
    /// the thread then stops without writing what is still queued.
    abandoned: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Drop for FileUploadWriter {
    fn drop(&mut self) {
        if self.thread.is_some() {
            self.abandoned
                .store(true, std::sync::atomic::Ordering::Relaxed);
        }
    }
}

/// Chunks queued for the writing thread: a request body's chunks are at most hyper's read
/// buffer (~400 KiB), so this bounds what one upload holds in memory to ~3 MiB. (32 was no
/// faster on a 1 GiB push and raised the server's peak RSS by ~20 MiB.)
const WRITE_QUEUE: usize = 8;
/// Bytes written between two background syncs.
const WRITEBACK_STEP: u64 = 32 << 20;
/// Chunks gathered into one `writev`.
const WRITEV_CHUNKS: usize = 64;

impl FileUploadWriter {
    fn start(file: std::fs::File) -> Self {
        let (tx, rx) = tokio::sync::mpsc::channel(WRITE_QUEUE);
        let abandoned = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = abandoned.clone();
        Self {
            chunks: Some(tx),
            thread: Some(tokio::task::spawn_blocking(move || {
                write_loop(file, rx, &flag)
            })),
            abandoned,
        }
    }

    /// Waits for the thread to have written everything sent, and for its syncs; its error,
    /// if it stopped on one.
    async fn join(&mut self) -> Result<()> {
        self.chunks = None;
        let Some(thread) = self.thread.take() else {
            return Err(StorageError::Io(io::Error::other(
                "the upload's writing thread has stopped",
            )));
        };
        match thread.await {
            Ok(written) => Ok(written?),
            Err(e) => Err(StorageError::Io(io::Error::other(e))),
        }
    }
}

/// The writing thread: writes what arrives, several chunks to a `writev`, and keeps one
/// background `fdatasync` going per [`WRITEBACK_STEP`] (on a clone of the descriptor). It
/// holds the upload file's lock (taken by `open_acknowledged`) until it returns, and stops
/// early, dropping what is queued, once its writer is abandoned.
fn write_loop(
    mut file: std::fs::File,
    mut rx: tokio::sync::mpsc::Receiver<Bytes>,
    abandoned: &std::sync::atomic::AtomicBool,
) -> io::Result<()> {
    use std::io::{IoSlice, Write};
    let mut batch: Vec<Bytes> = Vec::with_capacity(WRITEV_CHUNKS);
    let mut unsynced = 0u64;
    let mut syncing: Option<std::thread::JoinHandle<io::Result<()>>> = None;
    let joined = |t: std::thread::JoinHandle<io::Result<()>>| {
        t.join()
            .unwrap_or_else(|_| Err(io::Error::other("a sync thread panicked")))
    };
    while let Some(first) = rx.blocking_recv() {
        batch.push(first);
        while batch.len() < WRITEV_CHUNKS {
            match rx.try_recv() {
                Ok(chunk) => batch.push(chunk),
                Err(_) => break,
            }
        }
        if abandoned.load(std::sync::atomic::Ordering::Relaxed) {
            break;
        }
        let mut slices: Vec<IoSlice<'_>> = batch.iter().map(|b| IoSlice::new(b)).collect();
        let mut rest = &mut slices[..];
        while !rest.is_empty() {
            match file.write_vectored(rest) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    unsynced += n as u64;
                    IoSlice::advance_slices(&mut rest, n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        drop(slices);
        batch.clear();
        if unsynced >= WRITEBACK_STEP && syncing.as_ref().is_none_or(|t| t.is_finished()) {
            if let Some(done) = syncing.take() {
                joined(done)?;
            }
            let clone = file.try_clone()?;
            syncing = Some(
                std::thread::Builder::new()
                    .name("berth-writeback".into())
                    .spawn(move || clone.sync_data())?,
            );
            unsynced = 0;
        }
    }
    match syncing {
        Some(done) => joined(done),
        None => Ok(()),
    }
}

#[async_trait]
impl UploadWriter for FileUploadWriter {
    async fn write(&mut self, chunk: Bytes) -> Result<()> {
        if chunk.is_empty() {
            // Nothing to write: the thread never sees an empty chunk (a `writev` of nothing
            // would read as a failed write).
            return Ok(());
        }
        let sent = match &self.chunks {
            Some(chunks) => chunks.send(chunk).await.is_ok(),
            None => false,
        };
        if sent {
            return Ok(());
        }
        // The thread stopped, on an error that joining it returns.
        self.join().await?;
        Err(StorageError::Io(io::Error::other(
            "the upload's writing thread has stopped",
        )))
    }

    async fn finish(mut self: Box<Self>) -> Result<UploadState> {
        self.join().await?;
        Ok(UploadState::default())
    }

    /// The upload file is the blob already: nothing to do differently.
    async fn finish_last(self: Box<Self>) -> Result<UploadState> {
        self.finish().await
    }
}

#[async_trait]
impl UploadStore for FilesystemStore {
    async fn create_upload(&self, id: &str) -> Result<UploadState> {
        let path = self.upload_path(id)?;
        fs::File::create(&path).await?;
        Ok(UploadState::default())
    }

    async fn writer(
        &self,
        id: &str,
        _state: &UploadState,
        offset: u64,
    ) -> Result<Box<dyn UploadWriter>> {
        let mut file = self.open_acknowledged(id, offset).await?;
        std::io::Seek::seek(&mut file, SeekFrom::Start(offset))?;
        Ok(Box::new(FileUploadWriter::start(file)))
    }

    async fn commit(
        &self,
        id: &str,
        _state: &UploadState,
        digest: &Digest,
        size: u64,
    ) -> Result<BlobKey> {
        let upload = self.upload_path(id)?;
        let key = Self::key_for(digest, id)?;
        let target = self.blob_path(&key);
        let file = match self.open_acknowledged(id, size).await {
            Ok(file) => file,
            Err(e) => {
                // A commit retried after its rename went through (the process killed before
                // the database row, or that write failed): the fsynced file is there under its
                // final name, which only this session's commit of this digest gives.
                return match fs::metadata(&target).await {
                    Ok(meta) if meta.len() == size => Ok(key),
                    _ => Err(e),
                };
            }
        };
        tokio::task::spawn_blocking(move || file.sync_all())
            .await
            .map_err(io::Error::other)??;

        let dir = target
            .parent()
            .ok_or_else(|| StorageError::InvalidKey(key.as_str().to_string()))?;
        // Durable before the 201 (the database row comes after this): the file's data above,
        // its name in its directory here, and a directory made for it in its parents.
        let created = !fs::try_exists(dir).await.unwrap_or(false);
        fs::create_dir_all(dir).await?;
        fs::rename(&upload, &target).await?;
        sync_dir(dir).await?;
        if created {
            // `blobs/sha256/<xx>` is new (256 of them ever): its entry in `blobs/sha256`, and
            // that one's in `blobs` the first time.
            for ancestor in dir.ancestors().skip(1).take(2) {
                sync_dir(ancestor).await?;
            }
        }
        Ok(key)
    }

    fn session_of(&self, key: &BlobKey) -> Option<String> {
        let name = key.as_str().rsplit('/').next()?;
        let (_, session) = name.split_once('-')?;
        Some(session.to_string())
    }

    async fn abort(&self, id: &str, _state: &UploadState) -> Result<()> {
        match fs::remove_file(self.upload_path(id)?).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

#[async_trait]
impl BlobRemover for FilesystemStore {
    async fn delete(&self, key: &BlobKey) -> Result<()> {
        match fs::remove_file(self.blob_path(key)).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

#[async_trait]
impl BlobLister for FilesystemStore {
    /// Walks `blobs/<algorithm>/<2 hex>/<hex>`; anything else there is listed under its path
    /// too (as an invalid key it is an orphan). Read in one pass off the async threads.
    async fn list_blobs(&self) -> Result<ObjectStream> {
        let root = self.root.clone();
        let found = tokio::task::spawn_blocking(move || walk_blobs(&root))
            .await
            .map_err(|e| StorageError::Io(io::Error::other(e)))??;
        Ok(Box::pin(futures_util::stream::iter(
            found.into_iter().map(Ok),
        )))
    }
}

/// Every file under `root/blobs`, as stored objects.
fn walk_blobs(root: &Path) -> Result<Vec<StoredObject>> {
    let mut found = Vec::new();
    let mut dirs = vec![root.join("blobs")];
    while let Some(dir) = dirs.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e.into()),
        };
        for entry in entries {
            let entry = entry?;
            let meta = entry.metadata()?;
            let path = entry.path();
            if meta.is_dir() {
                dirs.push(path);
                continue;
            }
            let Ok(relative) = path.strip_prefix(root) else {
                continue;
            };
            let key = relative.to_string_lossy().into_owned();
            found.push(StoredObject {
                key: BlobKey::parse(&key).unwrap_or(BlobKey(key)),
                size: meta.len(),
                modified: meta.modified()?,
            });
        }
    }
    Ok(found)
}

#[async_trait]
impl BlobStore for FilesystemStore {
    async fn check(&self) -> Result<()> {
        // A file of its own for each probe: with one fixed name, concurrent probes (a load
        // balancer's and an orchestrator's) removed each other's file and answered 503.
        // Session ids are alphanumeric, so the name cannot be an upload's.
        static PROBES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = PROBES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let probe = self
            .root
            .join("uploads")
            .join(format!(".readyz-{}-{n}", std::process::id()));
        let written = match fs::write(&probe, b"ok").await {
            Ok(()) => fs::remove_file(&probe).await,
            Err(e) => Err(e),
        };
        written.map_err(|e| {
            StorageError::Unavailable(format!(
                "cannot write in {}: {e}",
                self.root.join("uploads").display()
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::UploadStore;

    /// A probe names what `open` would create, and creates none of it.
    #[tokio::test]
    async fn probe_creates_nothing() {
        use super::{FilesystemProbe, FilesystemStore};
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("data");
        let probe = |root: std::path::PathBuf| async move {
            FilesystemStore::probe(&root).await.expect("probe")
        };
        assert_eq!(probe(root.clone()).await, FilesystemProbe::RootMissing);
        assert!(!root.exists());
        std::fs::create_dir(&root).expect("mkdir");
        assert_eq!(
            probe(root.clone()).await,
            FilesystemProbe::FoldersMissing("uploads/ and blobs/")
        );
        assert_eq!(std::fs::read_dir(&root).expect("list").count(), 0);
        FilesystemStore::open(&root).await.expect("open");
        assert_eq!(probe(root.clone()).await, FilesystemProbe::Ready);
        assert_eq!(
            std::fs::read_dir(root.join("uploads"))
                .expect("list")
                .count(),
            0,
            "the check's file was left behind"
        );
    }

    /// A request that dies with chunks still queued for its writing thread must not write them
    /// into the file after the next request on the session has cut it back and started over:
    /// the next request waits for the old thread, which stops without writing what is queued.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_abandoned_request_writes_nothing_into_the_next_one() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = super::FilesystemStore::open(dir.path())
            .await
            .expect("open");
        let state = store.create_upload("ABANDON").await.expect("create");
        for round in 0..20u8 {
            let mut old = store.writer("ABANDON", &state, 0).await.expect("writer");
            for _ in 0..16 {
                old.write(bytes::Bytes::from(vec![0xAA; 256 << 10]))
                    .await
                    .expect("write");
            }
            drop(old);
            let mut new = store.writer("ABANDON", &state, 0).await.expect("writer");
            let data = vec![round; 1 << 20];
            new.write(bytes::Bytes::from(data.clone()))
                .await
                .expect("write");
            new.finish().await.expect("finish");
            let on_disk = std::fs::read(dir.path().join("uploads/ABANDON")).expect("read");
            assert!(
                on_disk == data,
                "round {round}: the abandoned request's bytes landed in the new one"
            );
            // The next round starts again from nothing.
            let cut = store.writer("ABANDON", &state, 0).await.expect("writer");
            cut.finish().await.expect("finish");
        }
    }

    /// A commit repeated after the first went through (killed before the database row): the
    /// blob is found under its final name, not refused because the upload file is gone.
    #[tokio::test]
    async fn a_repeated_commit_finds_its_blob() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = super::FilesystemStore::open(dir.path())
            .await
            .expect("open");
        let state = store.create_upload("AGAIN").await.expect("create");
        let mut writer = store.writer("AGAIN", &state, 0).await.expect("writer");
        writer
            .write(bytes::Bytes::from_static(b"hello"))
            .await
            .expect("write");
        let state = writer.finish().await.expect("finish");
        let digest = berth_oci::Digest::sha256_of(b"hello");
        let key = store
            .commit("AGAIN", &state, &digest, 5)
            .await
            .expect("commit");
        let again = store
            .commit("AGAIN", &state, &digest, 5)
            .await
            .expect("again");
        assert_eq!(again, key);
        // Not for another size, nor for another session.
        assert!(store.commit("AGAIN", &state, &digest, 4).await.is_err());
        assert!(store.commit("OTHER", &state, &digest, 5).await.is_err());
    }

    /// Readiness probes at once all succeed: none removes another's probe file.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_readiness_checks_all_succeed() {
        use crate::BlobStore as _;
        let dir = tempfile::tempdir().expect("tempdir");
        let store = super::FilesystemStore::open(dir.path())
            .await
            .expect("open");
        for _ in 0..20 {
            let checks: Vec<_> = (0..16)
                .map(|_| {
                    let store = store.clone();
                    tokio::spawn(async move { store.check().await })
                })
                .collect();
            for c in checks {
                c.await.expect("join").expect("ready");
            }
        }
        let left = std::fs::read_dir(dir.path().join("uploads"))
            .expect("uploads")
            .count();
        assert_eq!(left, 0, "every probe file removed");
    }

    #[tokio::test]
    async fn filesystem_passes_the_suite() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = super::FilesystemStore::open(dir.path())
            .await
            .expect("open");
        crate::testsuite::run(&store).await;
    }
}
