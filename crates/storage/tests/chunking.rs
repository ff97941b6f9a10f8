//! Property test of the filesystem backend's upload path: however a blob is split into
//! requests and writes, with the SHA-256 state saved and restored between requests as the
//! registry does, the digest is that of the whole, the upload commits, and the blob reads back
//! byte for byte.

use berth_oci::{Digest, DigestHasher};
use berth_storage::{BlobReader, ByteStream, FilesystemStore, UploadStore};
use bytes::Bytes;
use futures_util::StreamExt;
use proptest::prelude::*;

/// A blob of up to 300 KiB, and cut points: each request ends at a cut, and within a request
/// the writes end at the finer cuts.
fn blob_and_cuts() -> impl Strategy<Value = (Vec<u8>, Vec<usize>, Vec<usize>)> {
    prop::collection::vec(any::<u8>(), 0..300 * 1024).prop_flat_map(|data| {
        let len = data.len();
        let cuts = prop::collection::vec(0..=len, 0..8);
        let writes = prop::collection::vec(0..=len, 0..24);
        (Just(data), cuts, writes)
    })
}

/// `0 = c0 <= c1 <= ... <= len` from cut points in any order, repeats kept (an empty request
/// or write is allowed).
fn boundaries(mut cuts: Vec<usize>, len: usize) -> Vec<usize> {
    cuts.push(0);
    cuts.push(len);
    cuts.sort_unstable();
    cuts
}

async fn read_all(mut stream: ByteStream) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(chunk) = stream.next().await {
        out.extend_from_slice(&chunk.expect("read"));
    }
    out
}

async fn upload_in_requests(
    store: &FilesystemStore,
    id: &str,
    data: &[u8],
    requests: &[usize],
    writes: &[usize],
) {
    let mut state = store.create_upload(id).await.expect("create");
    let mut saved_hash = DigestHasher::new().save();
    for request in requests.windows(2) {
        let (start, end) = (request[0], request[1]);
        // Each request is a new writer and a hasher restored from the saved state.
        let mut hasher = DigestHasher::restore(&saved_hash).expect("restore the hash state");
        let mut writer = store
            .writer(id, &state, start as u64)
            .await
            .expect("writer");
        let inner = writes.iter().copied().filter(|&w| start < w && w < end);
        let mut at = start;
        for cut in inner.chain([end]) {
            let piece = &data[at..cut];
            hasher.update(piece);
            writer
                .write(Bytes::copy_from_slice(piece))
                .await
                .expect("write");
            at = cut;
        }
        state = writer.finish().await.expect("finish");
        saved_hash = hasher.save();
    }
    let digest = DigestHasher::restore(&saved_hash)
        .expect("restore")
        .finish();
    assert_eq!(
        digest,
        Digest::sha256_of(data),
        "the chunked digest is the whole's"
    );
    let key = store
        .commit(id, &state, &digest, data.len() as u64)
        .await
        .expect("commit");
    assert_eq!(
        read_all(store.open(&key, None).await.expect("open")).await,
        data
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn any_split_into_requests_commits_the_same_blob((data, cuts, writes) in blob_and_cuts()) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let dir = tempfile::tempdir().expect("tempdir");
        runtime.block_on(async {
            let store = FilesystemStore::open(dir.path()).await.expect("open");
            let requests = boundaries(cuts, data.len());
            let writes = boundaries(writes, data.len());
            upload_in_requests(&store, "PROPERTY", &data, &requests, &writes).await;
        });
    }
}
