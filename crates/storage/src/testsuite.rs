//! The behaviour every [`BlobStore`] backend must have. Backends call [`run`] from their tests.

use berth_oci::{Digest, DigestHasher};
use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt};

use crate::{BlobKey, BlobStore, ByteRange, ByteStream, StorageError, UploadState};

async fn collect(mut s: ByteStream) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(chunk) = s.next().await {
        out.extend_from_slice(&chunk.expect("read chunk"));
    }
    out
}

fn new_id() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "suite{}x{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Runs every check against `store`; panics on the first failure.
pub async fn run(store: &dyn BlobStore) {
    store.check().await.expect("check");
    chunked_upload_commit_and_ranges(store).await;
    interrupted_request_is_discarded(store).await;
    empty_request_changes_nothing(store).await;
    abort_removes_upload(store).await;
    empty_blob(store).await;
    delete_is_idempotent(store).await;
    commits_of_one_digest_are_separate(store).await;
    last_request_ends_the_upload(store).await;
    closing_request_can_be_retried_or_aborted(store).await;
}

async fn chunked_upload_commit_and_ranges(store: &dyn BlobStore) {
    let id = new_id();
    let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    let mut state = store.create_upload(&id).await.expect("create");
    let mut offset = 0u64;
    for part in data.chunks(1_000_003) {
        let mut w = store.writer(&id, &state, offset).await.expect("writer");
        for piece in part.chunks(65_536) {
            w.write(Bytes::copy_from_slice(piece)).await.expect("write");
        }
        state = w.finish().await.expect("finish");
        offset += part.len() as u64;
    }
    let digest = Digest::sha256_of(&data);
    let key = store
        .commit(&id, &state, &digest, offset)
        .await
        .expect("commit");
    assert_eq!(
        collect(store.open(&key, None).await.expect("open")).await,
        data
    );
    let r = ByteRange {
        start: 10,
        end: 2_000_000,
    };
    assert_eq!(
        collect(store.open(&key, Some(r)).await.expect("range")).await,
        &data[10..=2_000_000]
    );
    // The upload is gone once committed.
    assert!(store.writer(&id, &state, 0).await.is_err());
}

async fn interrupted_request_is_discarded(store: &dyn BlobStore) {
    let id = new_id();
    let state = store.create_upload(&id).await.expect("create");
    let mut w = store.writer(&id, &state, 0).await.expect("writer");
    w.write(Bytes::from_static(b"hello ")).await.expect("write");
    let state = w.finish().await.expect("finish");
    // A second request writes bytes but is never acknowledged (its writer is dropped).
    let mut w = store.writer(&id, &state, 6).await.expect("writer");
    w.write(Bytes::from_static(b"GARBAGE"))
        .await
        .expect("write");
    drop(w);
    let mut w = store.writer(&id, &state, 6).await.expect("writer");
    w.write(Bytes::from_static(b"world")).await.expect("write");
    let state = w.finish().await.expect("finish");
    let mut h = DigestHasher::new();
    h.update(b"hello world");
    let digest = h.finish();
    let key = store
        .commit(&id, &state, &digest, 11)
        .await
        .expect("commit");
    assert_eq!(
        collect(store.open(&key, None).await.expect("open")).await,
        b"hello world"
    );
    // Acknowledged bytes that are missing are an error, never silently zero-filled.
    let id = new_id();
    let state = store.create_upload(&id).await.expect("create");
    assert!(matches!(
        store.writer(&id, &state, 5).await.err(),
        Some(StorageError::UploadCorrupt { .. })
    ));
    store.abort(&id, &state).await.expect("abort");
}

async fn empty_request_changes_nothing(store: &dyn BlobStore) {
    let id = new_id();
    let state = store.create_upload(&id).await.expect("create");
    let mut w = store.writer(&id, &state, 0).await.expect("writer");
    w.write(Bytes::from_static(b"abc")).await.expect("write");
    let state = w.finish().await.expect("finish");
    let w = store.writer(&id, &state, 3).await.expect("writer");
    let state = w.finish().await.expect("finish an empty request");
    let mut w = store.writer(&id, &state, 3).await.expect("writer");
    w.write(Bytes::new()).await.expect("write nothing");
    w.write(Bytes::from_static(b"def")).await.expect("write");
    let state = w.finish().await.expect("finish");
    let key = store
        .commit(&id, &state, &Digest::sha256_of(b"abcdef"), 6)
        .await
        .expect("commit");
    assert_eq!(
        collect(store.open(&key, None).await.expect("open")).await,
        b"abcdef"
    );
}

async fn abort_removes_upload(store: &dyn BlobStore) {
    let id = new_id();
    let state = store.create_upload(&id).await.expect("create");
    store.abort(&id, &state).await.expect("abort");
    store.abort(&id, &state).await.expect("abort twice");
    assert!(store.writer(&id, &state, 0).await.is_err());
}

async fn empty_blob(store: &dyn BlobStore) {
    let id = new_id();
    let state = store.create_upload(&id).await.expect("create");
    let key = store
        .commit(&id, &state, &Digest::sha256_of(b""), 0)
        .await
        .expect("commit");
    assert!(
        collect(store.open(&key, None).await.expect("open"))
            .await
            .is_empty()
    );
}

async fn delete_is_idempotent(store: &dyn BlobStore) {
    let id = new_id();
    let before = std::time::SystemTime::now() - std::time::Duration::from_secs(60);
    let state = store.create_upload(&id).await.expect("create");
    let mut w = store.writer(&id, &state, 0).await.expect("writer");
    w.write(Bytes::from_static(b"to delete"))
        .await
        .expect("write");
    let state = w.finish().await.expect("finish");
    let key = store
        .commit(&id, &state, &Digest::sha256_of(b"to delete"), 9)
        .await
        .expect("commit");
    // Listed with its size once committed, not before or after.
    let listed = |key: crate::BlobKey| async move {
        let all: Vec<crate::StoredObject> = store
            .list_blobs()
            .await
            .expect("list")
            .try_collect()
            .await
            .expect("listing");
        all.into_iter().find(|o| o.key == key)
    };
    let object = listed(key.clone())
        .await
        .expect("the committed blob is listed");
    assert_eq!(object.size, 9);
    assert!(object.modified > before, "{:?}", object.modified);
    store.delete(&key).await.expect("delete");
    store.delete(&key).await.expect("delete twice");
    assert_eq!(listed(key.clone()).await, None);
    assert!(matches!(
        store.open(&key, None).await.err(),
        Some(StorageError::NotFound(_))
    ));
}

/// Two uploads of the same bytes commit to two keys: deleting one (what garbage collection
/// does to the blob the database forgot) leaves the other, which a concurrent upload may have
/// just committed, whole.
async fn commits_of_one_digest_are_separate(store: &dyn BlobStore) {
    let data = b"the same bytes twice";
    let digest = Digest::sha256_of(data);
    let (mut keys, mut ids) = (Vec::new(), Vec::new());
    for _ in 0..2 {
        let id = new_id();
        ids.push(id.clone());
        let state = store.create_upload(&id).await.expect("create");
        let mut w = store.writer(&id, &state, 0).await.expect("writer");
        w.write(Bytes::from_static(data)).await.expect("write");
        let state = w.finish().await.expect("finish");
        keys.push(
            store
                .commit(&id, &state, &digest, data.len() as u64)
                .await
                .expect("commit"),
        );
    }
    assert_ne!(keys[0], keys[1]);
    for (key, id) in keys.iter().zip(&ids) {
        assert_eq!(store.session_of(key), Some(id.to_ascii_lowercase()));
    }
    store.delete(&keys[0]).await.expect("delete");
    assert_eq!(
        collect(store.open(&keys[1], None).await.expect("open")).await,
        data
    );
    // Many at once, a missing one among them: no failure, all gone.
    let third = BlobKey::parse("blobs/never/written").expect("key");
    assert!(
        store
            .delete_many(&[keys[1].clone(), third])
            .await
            .is_empty()
    );
    assert!(matches!(
        store.open(&keys[1], None).await.err(),
        Some(StorageError::NotFound(_))
    ));
}

/// Bytes without a short period: long enough to span parts of S3's smallest size, so a
/// backend that stores parts learns to end with a short one.
fn pattern(len: usize, seed: u32) -> Vec<u8> {
    (0..len as u32)
        .map(|i| (i.wrapping_mul(2_654_435_761).wrapping_add(seed) >> 13) as u8)
        .collect()
}

/// One request: a writer at `offset`, `bytes` in pieces, then `finish` or `finish_last`.
async fn request(
    store: &dyn BlobStore,
    id: &str,
    state: &UploadState,
    offset: u64,
    bytes: &[u8],
    last: bool,
) -> UploadState {
    let mut w = store.writer(id, state, offset).await.expect("writer");
    for piece in bytes.chunks(262_147) {
        w.write(Bytes::copy_from_slice(piece)).await.expect("write");
    }
    if last {
        w.finish_last().await.expect("finish_last")
    } else {
        w.finish().await.expect("finish")
    }
}

/// `finish_last` ends the upload: monolithic, after chunks, with no bytes of its own, or empty.
async fn last_request_ends_the_upload(store: &dyn BlobStore) {
    let data = pattern((11 << 20) + 5, 1);
    // Monolithic (`POST ?digest=`): one request carries everything.
    let id = new_id();
    let created = store.create_upload(&id).await.expect("create");
    let state = request(store, &id, &created, 0, &data, true).await;
    let key = store
        .commit(&id, &state, &Digest::sha256_of(&data), data.len() as u64)
        .await
        .expect("commit");
    assert!(collect(store.open(&key, None).await.expect("open")).await == data);
    let r = ByteRange {
        start: (5 << 20) - 3,
        end: data.len() as u64 - 1,
    };
    assert!(
        collect(store.open(&key, Some(r)).await.expect("range")).await == data[r.start as usize..]
    );
    assert!(store.writer(&id, &created, 0).await.is_err(), "committed");

    // Chunked: PATCHes, then a closing PUT with the rest.
    let id = new_id();
    let mut state = store.create_upload(&id).await.expect("create");
    let cuts = [0, 3 << 20, (6 << 20) + 1, data.len()];
    for (i, pair) in cuts.windows(2).enumerate() {
        let last = i + 2 == cuts.len();
        state = request(
            store,
            &id,
            &state,
            pair[0] as u64,
            &data[pair[0]..pair[1]],
            last,
        )
        .await;
    }
    let key = store
        .commit(&id, &state, &Digest::sha256_of(&data), data.len() as u64)
        .await
        .expect("commit");
    assert!(collect(store.open(&key, None).await.expect("open")).await == data);

    // A closing request whose body is empty: the bytes are all from earlier requests.
    let id = new_id();
    let created = store.create_upload(&id).await.expect("create");
    let state = request(store, &id, &created, 0, &data[..6 << 20], false).await;
    let state = request(store, &id, &state, 6 << 20, b"", true).await;
    let key = store
        .commit(&id, &state, &Digest::sha256_of(&data[..6 << 20]), 6 << 20)
        .await
        .expect("commit");
    assert!(collect(store.open(&key, None).await.expect("open")).await == data[..6 << 20]);

    // The empty blob, closed by a request without bytes.
    let id = new_id();
    let created = store.create_upload(&id).await.expect("create");
    let state = request(store, &id, &created, 0, b"", true).await;
    let key = store
        .commit(&id, &state, &Digest::sha256_of(b""), 0)
        .await
        .expect("commit");
    assert!(
        collect(store.open(&key, None).await.expect("open"))
            .await
            .is_empty()
    );
}

/// A closing request whose state was never committed (the commit failed, the client retries)
/// leaves the saved state valid; a closed upload can be aborted (a digest mismatch).
async fn closing_request_can_be_retried_or_aborted(store: &dyn BlobStore) {
    let data = pattern((7 << 20) + 3, 2);
    let id = new_id();
    let created = store.create_upload(&id).await.expect("create");
    let saved = request(store, &id, &created, 0, &data[..2 << 20], false).await;
    // The first attempt carries other bytes, more of them, and is never committed.
    let other = pattern(9 << 20, 3);
    request(store, &id, &saved, 2 << 20, &other, true).await;
    let state = request(store, &id, &saved, 2 << 20, &data[2 << 20..], true).await;
    let key = store
        .commit(&id, &state, &Digest::sha256_of(&data), data.len() as u64)
        .await
        .expect("commit");
    assert!(collect(store.open(&key, None).await.expect("open")).await == data);

    let id = new_id();
    let created = store.create_upload(&id).await.expect("create");
    let saved = request(store, &id, &created, 0, b"wrong ", false).await;
    let closed = request(store, &id, &saved, 6, b"digest", true).await;
    store.abort(&id, &closed).await.expect("abort");
    store.abort(&id, &closed).await.expect("abort twice");
    assert!(store.writer(&id, &saved, 6).await.is_err(), "aborted");
}
