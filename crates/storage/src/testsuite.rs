//! The behaviour every [`BlobStore`] backend must have. Backends call [`run`] from their tests.

use berth_oci::{Digest, DigestHasher};
use bytes::Bytes;
use futures_util::StreamExt;

use crate::{BlobStore, ByteRange, ByteStream, StorageError};

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
    store.delete(&key).await.expect("delete");
    store.delete(&key).await.expect("delete twice");
    assert!(matches!(
        store.open(&key, None).await.err(),
        Some(StorageError::NotFound(_))
    ));
}
