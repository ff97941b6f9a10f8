//! Property test of chunked blob uploads on a real registry (SQLite + filesystem): however a
//! blob is split into `PATCH` requests (with or without `Content-Range`) and a closing `PUT`
//! (with or without a last chunk), the registry computes the digest of the whole, commits the
//! blob, and serves it back byte for byte; a closing `PUT` with another digest is refused,
//! nothing becomes readable under it, and the session is gone.

use std::sync::Arc;

use berth_meta::SqliteMeta;
use berth_oci::{Digest, Repository};
use berth_registry::{Error, Limits, Registry, UploadOwner};
use berth_storage::{ByteStream, FilesystemStore};
use bytes::Bytes;
use futures_util::StreamExt;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

/// One upload: the blob, where its requests end, which of them send a `Content-Range`,
/// whether the closing `PUT` carries the last chunk, and whether it names the right digest.
#[derive(Clone, Debug)]
struct Case {
    data: Vec<u8>,
    cuts: Vec<usize>,
    with_range: Vec<bool>,
    last_in_put: bool,
    right_digest: bool,
}

fn cases() -> impl Strategy<Value = Case> {
    prop::collection::vec(any::<u8>(), 0..200 * 1024).prop_flat_map(|data| {
        let len = data.len();
        (
            Just(data),
            prop::collection::vec(0..=len, 0..6),
            prop::collection::vec(any::<bool>(), 8),
            any::<bool>(),
            prop::bool::weighted(0.75),
        )
            .prop_map(|(data, mut cuts, with_range, last_in_put, right_digest)| {
                cuts.push(0);
                cuts.push(data.len());
                cuts.sort_unstable();
                Case {
                    data,
                    cuts,
                    with_range,
                    last_in_put,
                    right_digest,
                }
            })
    })
}

fn body(bytes: &[u8]) -> ByteStream {
    let chunk: std::io::Result<Bytes> = Ok(Bytes::copy_from_slice(bytes));
    Box::pin(futures_util::stream::iter([chunk]))
}

async fn read_all(mut stream: ByteStream) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(chunk) = stream.next().await {
        out.extend_from_slice(&chunk.expect("read"));
    }
    out
}

async fn check(registry: &Registry, repository: &Repository, case: &Case) {
    let session = registry
        .start_upload(repository, &UploadOwner::Anonymous(None))
        .await
        .expect("start upload");
    let requests: Vec<(usize, usize)> = case.cuts.windows(2).map(|w| (w[0], w[1])).collect();
    let (patches, last) = match requests.split_last() {
        Some((last, patches)) if case.last_in_put => (patches, Some(*last)),
        _ => (&requests[..], None),
    };
    for (i, &(start, end)) in patches.iter().enumerate() {
        let range = case.with_range[i % case.with_range.len()]
            .then(|| (start as u64, (end - start) as u64))
            // A Content-Range cannot say "nothing": an empty PATCH goes without one.
            .filter(|&(_, len)| len > 0);
        let status = registry
            .append_upload(repository, &session.id, range, body(&case.data[start..end]))
            .await
            .expect("append a chunk");
        assert_eq!(status.offset, end as u64);
    }
    let whole = Digest::sha256_of(&case.data);
    let claimed = if case.right_digest {
        whole.clone()
    } else {
        let mut other = case.data.clone();
        other.push(0);
        Digest::sha256_of(&other)
    };
    let last_chunk = last.map(|(start, end)| body(&case.data[start..end]));
    let result = registry
        .finish_upload(repository, &session.id, &claimed, None, last_chunk)
        .await;
    if case.right_digest {
        let blob = result.expect("the upload commits");
        assert_eq!(blob.digest, whole);
        assert_eq!(blob.size, case.data.len() as u64);
        let (_, _, stream) = registry
            .open_blob(repository, &whole, None)
            .await
            .expect("open the blob");
        assert_eq!(read_all(stream).await, case.data);
    } else {
        assert!(
            matches!(result, Err(Error::DigestInvalid(_))),
            "a wrong digest is refused: {result:?}"
        );
        assert!(matches!(
            registry.stat_blob(repository, &claimed).await,
            Err(Error::BlobUnknown(_))
        ));
        assert!(matches!(
            registry.upload_status(repository, &session.id).await,
            Err(Error::BlobUploadUnknown(_))
        ));
    }
}

#[test]
fn any_split_of_a_blob_gives_the_same_digest() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let registry = runtime.block_on(async {
        let meta = Arc::new(
            SqliteMeta::open(&dir.path().join("meta.db"))
                .await
                .expect("meta"),
        );
        let blobs = Arc::new(FilesystemStore::open(dir.path()).await.expect("blobs"));
        Registry::new(meta, blobs, Limits::default())
    });
    let repository: Repository = "team/chunks".parse().expect("repository");
    let mut runner = TestRunner::new(Config::with_cases(48));
    runner
        .run(&cases(), |case| {
            runtime.block_on(check(&registry, &repository, &case));
            Ok(())
        })
        .unwrap_or_else(|e| panic!("{e}"));
}
