use berth_meta::BlobRecord;
use berth_oci::{Digest, Repository};
use berth_storage::{BlobKey, ByteRange, ByteStream};

use crate::{Error, Registry, Result};

/// A single byte range as requested (RFC 9110 §14.1.2), before it is checked against the size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RangeRequest {
    /// `bytes=start-` or `bytes=start-end`.
    From { start: u64, end: Option<u64> },
    /// `bytes=-n`: the last n bytes.
    Suffix(u64),
}

impl RangeRequest {
    /// Parses a `Range` header value. `None` for what berth does not serve partially (other
    /// units, several ranges, invalid syntax): RFC 9110 §14.2 lets a server ignore such a
    /// header and send the whole blob.
    pub fn parse(value: &str) -> Option<RangeRequest> {
        let spec = value.trim().strip_prefix("bytes=")?;
        let (a, b) = spec.split_once('-')?;
        let num = |s: &str| {
            if s.is_empty() || !s.bytes().all(|c| c.is_ascii_digit()) {
                None
            } else {
                s.parse::<u64>().ok()
            }
        };
        match (a.trim(), b.trim()) {
            ("", n) => num(n).map(RangeRequest::Suffix),
            (s, "") => num(s).map(|start| RangeRequest::From { start, end: None }),
            (s, e) => match (num(s), num(e)) {
                (Some(start), Some(end)) if start <= end => Some(RangeRequest::From {
                    start,
                    end: Some(end),
                }),
                _ => None,
            },
        }
    }

    /// The inclusive range within a blob of `size` bytes, or `RangeNotSatisfiable`.
    pub fn resolve(self, size: u64) -> Result<ByteRange> {
        let unsatisfiable = Err(Error::RangeNotSatisfiable { size });
        match self {
            RangeRequest::From { start, end } => {
                if start >= size {
                    return unsatisfiable;
                }
                let end = end.map_or(size - 1, |e| e.min(size - 1));
                Ok(ByteRange { start, end })
            }
            RangeRequest::Suffix(0) => unsatisfiable,
            RangeRequest::Suffix(n) => {
                if size == 0 {
                    return unsatisfiable;
                }
                Ok(ByteRange {
                    start: size.saturating_sub(n),
                    end: size - 1,
                })
            }
        }
    }
}

impl Registry {
    /// The blob, if the repository may read it.
    pub async fn stat_blob(&self, repository: &Repository, digest: &Digest) -> Result<BlobRecord> {
        self.meta
            .repository_blob(repository, digest)
            .await?
            .ok_or_else(|| Error::BlobUnknown(digest.clone()))
    }

    /// Streams the blob, or a range of it (returned with the stream when one was served).
    pub async fn open_blob(
        &self,
        repository: &Repository,
        digest: &Digest,
        range: Option<RangeRequest>,
    ) -> Result<(BlobRecord, Option<ByteRange>, ByteStream)> {
        let blob = self.stat_blob(repository, digest).await?;
        let range = range.map(|r| r.resolve(blob.size)).transpose()?;
        let key = BlobKey::parse(&blob.storage_key)?;
        let stream = self.blobs.open(&key, range).await?;
        Ok((blob, range, stream))
    }

    /// Removes the repository's access to the blob. The bytes stay until garbage collection
    /// finds no repository and no manifest using them.
    /// Where a client may fetch the blob directly (a presigned URL of the blob store), when the
    /// store offers one; the access check has been made already.
    pub async fn blob_redirect(
        &self,
        repository: &Repository,
        digest: &Digest,
        expires: std::time::Duration,
    ) -> Result<Option<String>> {
        let blob = self.stat_blob(repository, digest).await?;
        let key = BlobKey::parse(&blob.storage_key)?;
        Ok(self.blobs.redirect_url(&key, expires).await)
    }

    pub async fn delete_blob(&self, repository: &Repository, digest: &Digest) -> Result<()> {
        if self.meta.unlink_blob(repository, digest).await? {
            Ok(())
        } else {
            Err(Error::BlobUnknown(digest.clone()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(v: &str) -> Option<RangeRequest> {
        RangeRequest::parse(v)
    }

    #[test]
    fn parses_and_resolves_ranges() {
        let whole = |v: &str, size| {
            r(v).expect("range")
                .resolve(size)
                .ok()
                .map(|b| (b.start, b.end))
        };
        assert_eq!(whole("bytes=0-9", 100), Some((0, 9)));
        assert_eq!(whole("bytes=10-", 100), Some((10, 99)));
        assert_eq!(whole("bytes=90-200", 100), Some((90, 99)));
        assert_eq!(whole("bytes=-10", 100), Some((90, 99)));
        assert_eq!(whole("bytes=-1000", 100), Some((0, 99)));
        assert_eq!(whole("bytes=100-", 100), None);
        assert_eq!(whole("bytes=-0", 100), None);
        assert_eq!(whole("bytes=0-0", 0), None);
        assert!(RangeRequest::parse("items=0-1").is_none());
        assert!(RangeRequest::parse("bytes=0-1,5-6").is_none());
        for bad in ["bytes=5-1", "bytes=a-b", "bytes=-", "bytes=1", "bytes=+1-2"] {
            assert!(RangeRequest::parse(bad).is_none(), "{bad}");
        }
    }
}
