//! Blob bytes: reading, and writing through a resumable, locked partial file that becomes a
//! blob only by `rename()` after its size and digest are checked.

use std::fs::{self, File, OpenOptions};
use std::io::{self, ErrorKind, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};

use berth_oci::{Algorithm, Digest, DigestHasher};

use crate::error::{Result, StoreError};
use crate::layout::{Store, sync_dir};

/// The most [`Store::read_blob`] reads into memory: manifests and configs are far smaller.
pub const MAX_READ_SIZE: u64 = 16 << 20;

impl Store {
    pub fn has_blob(&self, digest: &Digest) -> bool {
        self.blob_path(digest).is_file()
    }

    /// The blob's size, or `None` if it is not in the store.
    pub fn blob_size(&self, digest: &Digest) -> Result<Option<u64>> {
        let path = self.blob_path(digest);
        match fs::metadata(&path) {
            Ok(m) if m.is_file() => Ok(Some(m.len())),
            Ok(_) => Ok(None),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(StoreError::io("inspecting", &path)(e)),
        }
    }

    pub fn open_blob(&self, digest: &Digest) -> Result<File> {
        let path = self.blob_path(digest);
        File::open(&path).map_err(|e| match e.kind() {
            ErrorKind::NotFound => StoreError::BlobNotFound(digest.clone()),
            _ => StoreError::io("opening", &path)(e),
        })
    }

    /// Reads a small blob (a manifest or config) whole, checking it against its digest.
    /// Refuses blobs larger than [`MAX_READ_SIZE`].
    pub fn read_blob(&self, digest: &Digest) -> Result<Vec<u8>> {
        let path = self.blob_path(digest);
        let file = self.open_blob(digest)?;
        let size = file
            .metadata()
            .map_err(StoreError::io("inspecting", &path))?
            .len();
        if size > MAX_READ_SIZE {
            return Err(StoreError::TooLarge {
                digest: digest.clone(),
                size,
                limit: MAX_READ_SIZE,
            });
        }
        let mut bytes = Vec::with_capacity(size as usize);
        file.take(MAX_READ_SIZE + 1)
            .read_to_end(&mut bytes)
            .map_err(StoreError::io("reading", &path))?;
        if digest.algorithm() == Algorithm::Sha256 {
            let actual = Digest::sha256_of(&bytes);
            if &actual != digest {
                return Err(StoreError::Corrupt {
                    digest: digest.clone(),
                    actual,
                });
            }
        }
        Ok(bytes)
    }

    /// Starts (or resumes) writing the blob `digest`.
    ///
    /// If an earlier attempt left a partial file, the writer continues from it:
    /// [`BlobWriter::offset`] says how many bytes are already there, so the caller asks the
    /// registry for the rest (`Range: bytes=<offset>-`). If another writer, in this process or
    /// another, holds the partial file, this waits for it to finish; if it committed the blob,
    /// the returned writer reports [`BlobWriter::already_exists`] and accepts no data.
    pub fn begin_blob(&self, digest: &Digest, expected_size: Option<u64>) -> Result<BlobWriter> {
        if digest.algorithm() != Algorithm::Sha256 {
            return Err(StoreError::UnsupportedDigest(digest.clone()));
        }
        let exists = |size| BlobWriter {
            digest: digest.clone(),
            expected_size,
            state: WriterState::Exists { size },
        };
        let partial = self.partial_path(digest);
        loop {
            if let Some(size) = self.blob_size(digest)? {
                return Ok(exists(size));
            }
            let mut file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&partial)
                .map_err(StoreError::io("opening", &partial))?;
            file.lock().map_err(StoreError::io("locking", &partial))?;
            // While we waited, the holder may have renamed the file we opened into blobs/ or
            // deleted it after a mismatch: write only to the file still named `partial`.
            if !is_same_file(&file, &partial)? {
                continue;
            }
            if let Some(size) = self.blob_size(digest)? {
                // Committed by someone who created the partial before us; ours is a leftover.
                let _ = fs::remove_file(&partial);
                return Ok(exists(size));
            }
            let mut hasher = DigestHasher::new();
            let mut offset = rehash(&mut file, &mut hasher, &partial)?;
            if expected_size.is_some_and(|size| offset > size) {
                file.set_len(0)
                    .map_err(StoreError::io("truncating", &partial))?;
                hasher = DigestHasher::new();
                offset = 0;
            }
            file.seek(SeekFrom::Start(offset))
                .map_err(StoreError::io("seeking", &partial))?;
            return Ok(BlobWriter {
                digest: digest.clone(),
                expected_size,
                state: WriterState::Open(OpenWriter {
                    file,
                    partial,
                    blob: self.blob_path(digest),
                    hasher,
                    offset,
                }),
            });
        }
    }

    /// Stores a small in-memory blob (a manifest or config) through the same verified,
    /// atomic path as downloads. Returns its digest.
    pub fn put_blob(&self, bytes: &[u8]) -> Result<Digest> {
        let digest = Digest::sha256_of(bytes);
        let mut writer = self.begin_blob(&digest, Some(bytes.len() as u64))?;
        if writer.already_exists() {
            return Ok(digest);
        }
        writer.restart()?;
        writer
            .write_all(bytes)
            .map_err(StoreError::io("writing", &self.partial_path(&digest)))?;
        writer.commit()
    }
}

/// Hashes what a partial file already holds, leaving the cursor at its end.
fn rehash(file: &mut File, hasher: &mut DigestHasher, path: &Path) -> Result<u64> {
    file.seek(SeekFrom::Start(0))
        .map_err(StoreError::io("seeking", path))?;
    let mut buf = vec![0; 1 << 20];
    let mut total = 0;
    loop {
        let n = match file.read(&mut buf) {
            Ok(0) => return Ok(total),
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(StoreError::io("reading", path)(e)),
        };
        hasher.update(&buf[..n]);
        total += n as u64;
    }
}

fn is_same_file(file: &File, path: &Path) -> Result<bool> {
    let held = file
        .metadata()
        .map_err(StoreError::io("inspecting", path))?;
    match fs::metadata(path) {
        Ok(named) => Ok(named.dev() == held.dev() && named.ino() == held.ino()),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
        Err(e) => Err(StoreError::io("inspecting", path)(e)),
    }
}

/// Writes one blob: hashes while writing into `ingest/<hex>.partial`, which it holds locked
/// until it is committed or dropped. Dropping without [`BlobWriter::commit`] keeps the partial
/// file, so a later [`Store::begin_blob`] resumes from it.
pub struct BlobWriter {
    digest: Digest,
    expected_size: Option<u64>,
    state: WriterState,
}

enum WriterState {
    /// The blob was already in the store: nothing to write.
    Exists {
        size: u64,
    },
    Open(OpenWriter),
}

struct OpenWriter {
    file: File,
    partial: PathBuf,
    blob: PathBuf,
    hasher: DigestHasher,
    offset: u64,
}

impl BlobWriter {
    pub fn digest(&self) -> &Digest {
        &self.digest
    }

    /// Whether the blob was already in the store (possibly committed by another writer we
    /// waited for). Such a writer refuses data; `commit` succeeds at once.
    pub fn already_exists(&self) -> bool {
        matches!(self.state, WriterState::Exists { .. })
    }

    /// Bytes written so far, including those a resumed partial file already held.
    pub fn offset(&self) -> u64 {
        match &self.state {
            WriterState::Exists { size } => *size,
            WriterState::Open(w) => w.offset,
        }
    }

    /// Throws away what was written and starts from byte 0: for a server that ignored the
    /// `Range` request, or data that turned out wrong.
    pub fn restart(&mut self) -> Result<()> {
        let WriterState::Open(w) = &mut self.state else {
            return Ok(());
        };
        w.file
            .set_len(0)
            .and_then(|()| w.file.seek(SeekFrom::Start(0)).map(drop))
            .map_err(StoreError::io("truncating", &w.partial))?;
        w.hasher = DigestHasher::new();
        w.offset = 0;
        Ok(())
    }

    /// Checks size and digest, then makes the blob visible: fsync, rename into
    /// `blobs/sha256/`, fsync the directories. On a digest mismatch (or too many bytes) the
    /// partial file is deleted; too few bytes keep it, to be resumed.
    pub fn commit(self) -> Result<Digest> {
        let w = match self.state {
            WriterState::Exists { .. } => return Ok(self.digest),
            WriterState::Open(w) => w,
        };
        if let Some(expected) = self.expected_size
            && w.offset != expected
        {
            let kept = w.offset < expected;
            if !kept {
                let _ = fs::remove_file(&w.partial);
            }
            return Err(StoreError::SizeMismatch {
                digest: self.digest,
                expected,
                actual: w.offset,
                kept,
            });
        }
        let actual = w.hasher.finish();
        if actual != self.digest {
            let _ = fs::remove_file(&w.partial);
            return Err(StoreError::DigestMismatch {
                expected: self.digest,
                actual,
            });
        }
        w.file
            .sync_all()
            .map_err(StoreError::io("syncing", &w.partial))?;
        fs::rename(&w.partial, &w.blob).map_err(StoreError::io("renaming", &w.partial))?;
        for dir in [w.blob.parent(), w.partial.parent()].into_iter().flatten() {
            sync_dir(dir)?;
        }
        // The lock is released only now that the blob is in place, so a waiting writer finds it.
        drop(w.file);
        Ok(self.digest)
    }
}

impl Write for BlobWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match &mut self.state {
            WriterState::Exists { .. } => Err(io::Error::new(
                ErrorKind::AlreadyExists,
                StoreError::AlreadyExists(self.digest.clone()),
            )),
            WriterState::Open(w) => {
                let n = w.file.write(buf)?;
                w.hasher.update(&buf[..n]);
                w.offset += n as u64;
                Ok(n)
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match &mut self.state {
            WriterState::Exists { .. } => Ok(()),
            WriterState::Open(w) => w.file.flush(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Barrier};

    use super::*;
    use crate::testutil::{blob_files, store};

    #[test]
    fn put_and_read() {
        let (_dir, store) = store();
        let digest = store.put_blob(b"hello").expect("put");
        assert_eq!(digest, Digest::sha256_of(b"hello"));
        assert!(store.has_blob(&digest));
        assert_eq!(store.blob_size(&digest).expect("size"), Some(5));
        assert_eq!(store.read_blob(&digest).expect("read"), b"hello");
        // Idempotent.
        assert_eq!(store.put_blob(b"hello").expect("again"), digest);
        assert!(matches!(
            store.read_blob(&Digest::sha256_of(b"absent")),
            Err(StoreError::BlobNotFound(_))
        ));
    }

    #[test]
    fn digest_mismatch_leaves_nothing() {
        let (_dir, store) = store();
        let expected = Digest::sha256_of(b"right");
        let mut w = store.begin_blob(&expected, Some(5)).expect("begin");
        w.write_all(b"wrong").expect("write");
        let err = w.commit().expect_err("mismatch");
        let msg = err.to_string();
        assert!(msg.contains(&expected.to_string()), "{msg}");
        assert!(
            msg.contains(&Digest::sha256_of(b"wrong").to_string()),
            "{msg}"
        );
        assert!(!store.has_blob(&expected));
        assert!(blob_files(&store).is_empty());
        assert!(!store.partial_path(&expected).exists());

        // Too many bytes: also discarded.
        let mut w = store.begin_blob(&expected, Some(5)).expect("begin");
        w.write_all(b"rightt").expect("write");
        assert!(matches!(
            w.commit(),
            Err(StoreError::SizeMismatch { kept: false, .. })
        ));
        assert!(blob_files(&store).is_empty());
        assert!(!store.partial_path(&expected).exists());
    }

    #[test]
    fn read_blob_refuses_large_and_detects_corruption() {
        let (_dir, store) = store();
        let digest = store.put_blob(b"content").expect("put");
        fs::write(store.blob_path(&digest), b"tampered").expect("tamper");
        assert!(matches!(
            store.read_blob(&digest),
            Err(StoreError::Corrupt { .. })
        ));
        let big = vec![7u8; (MAX_READ_SIZE + 1) as usize];
        let digest = store.put_blob(&big).expect("put big");
        assert!(matches!(
            store.read_blob(&digest),
            Err(StoreError::TooLarge { .. })
        ));
    }

    #[test]
    fn resumes_from_partial_file() {
        let (_dir, store) = store();
        let data: Vec<u8> = (0..100_000u32).flat_map(|i| i.to_le_bytes()).collect();
        let digest = Digest::sha256_of(&data);
        let size = data.len() as u64;

        let mut w = store.begin_blob(&digest, Some(size)).expect("begin");
        assert_eq!(w.offset(), 0);
        w.write_all(&data[..123_457]).expect("first half");
        drop(w); // interrupted download

        let mut w = store.begin_blob(&digest, Some(size)).expect("resume");
        assert!(!w.already_exists());
        assert_eq!(w.offset(), 123_457);
        // Too few bytes keeps the partial file for the next attempt.
        let w2_offset = w.offset() as usize;
        w.write_all(&data[w2_offset..200_000]).expect("more");
        assert!(matches!(
            w.commit(),
            Err(StoreError::SizeMismatch { kept: true, .. })
        ));

        let mut w = store.begin_blob(&digest, Some(size)).expect("resume again");
        assert_eq!(w.offset(), 200_000);
        w.write_all(&data[200_000..]).expect("rest");
        assert_eq!(w.commit().expect("commit"), digest);
        assert_eq!(fs::read(store.blob_path(&digest)).expect("read"), data);
        assert!(!store.partial_path(&digest).exists());

        let w = store.begin_blob(&digest, Some(size)).expect("exists");
        assert!(w.already_exists());
        assert_eq!(w.offset(), size);
    }

    #[test]
    fn restart_discards_partial_bytes() {
        let (_dir, store) = store();
        let digest = Digest::sha256_of(b"abcdef");
        let mut w = store.begin_blob(&digest, None).expect("begin");
        w.write_all(b"junk").expect("junk");
        drop(w);
        let mut w = store.begin_blob(&digest, None).expect("resume");
        assert_eq!(w.offset(), 4);
        w.restart().expect("restart");
        assert_eq!(w.offset(), 0);
        w.write_all(b"abcdef").expect("write");
        w.commit().expect("commit");
        assert_eq!(store.read_blob(&digest).expect("read"), b"abcdef");
    }

    #[test]
    fn oversized_partial_is_restarted() {
        let (_dir, store) = store();
        let digest = Digest::sha256_of(b"abc");
        fs::write(store.partial_path(&digest), b"far too long").expect("plant");
        let w = store.begin_blob(&digest, Some(3)).expect("begin");
        assert_eq!(w.offset(), 0);
    }

    #[test]
    fn second_writer_waits_and_finds_the_blob() {
        let (_dir, store) = store();
        let data = vec![42u8; 1 << 20];
        let digest = Digest::sha256_of(&data);
        let mut first = store
            .begin_blob(&digest, Some(data.len() as u64))
            .expect("first");
        first.write_all(&data[..1000]).expect("write");

        let barrier = Arc::new(Barrier::new(2));
        let waiter = {
            let store = store.clone();
            let digest = digest.clone();
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                barrier.wait();
                let w = store.begin_blob(&digest, None).expect("second");
                w.already_exists()
            })
        };
        barrier.wait();
        std::thread::sleep(std::time::Duration::from_millis(100));
        first.write_all(&data[1000..]).expect("rest");
        first.commit().expect("commit");
        assert!(
            waiter.join().expect("join"),
            "the waiter saw the committed blob"
        );
    }

    #[test]
    fn sha512_is_refused_for_writing() {
        let (_dir, store) = store();
        let d: Digest = format!("sha512:{}", "a".repeat(128))
            .parse()
            .expect("digest");
        assert!(matches!(
            store.begin_blob(&d, None),
            Err(StoreError::UnsupportedDigest(_))
        ));
    }
}
