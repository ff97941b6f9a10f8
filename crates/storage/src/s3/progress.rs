//! The state of an upload session, saved by the registry between requests.

use serde::{Deserialize, Serialize};

use crate::{BlobKey, Result, StorageError, UploadState};

use super::check_name;

/// What the registry saves with an upload session (`UploadState`), as JSON.
///
/// The saved state names everything the next request needs, on whatever replica it lands.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Progress {
    /// Format version.
    pub(super) v: u8,
    /// The blob's key, `blobs/<session id>`, where the multipart upload is open.
    pub(super) key: String,
    /// The S3 multipart upload id.
    pub(super) upload: String,
    /// ETags of parts 1..=n, in order.
    pub(super) parts: Vec<String>,
    /// Bytes in those parts.
    pub(super) parts_len: u64,
    /// The staged tail, `uploads/<session id>/<tail>`, holding the `tail_len` bytes after the
    /// parts. It always exists while the session is open (empty at first), so reading it also
    /// tells whether the session still is.
    pub(super) tail: String,
    pub(super) tail_len: u64,
    /// The tail this state replaced. The state before this one still named it until this one
    /// was saved, so it is deleted only by the next request, which knows this one was saved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) replaced: Option<String>,
    /// The last part is uploaded (`finish_last`): `parts` hold every byte, the last part may be
    /// short, so nothing can be appended; the upload can only be completed or aborted. The tail
    /// is not part of the upload any more (`tail_len` is 0).
    #[serde(default, skip_serializing_if = "is_false")]
    pub(super) closed: bool,
}

fn is_false(b: &bool) -> bool {
    !*b
}

pub(super) const STATE_VERSION: u8 = 1;

impl Progress {
    pub(super) fn decode(id: &str, state: &UploadState) -> Result<Progress> {
        let invalid = |reason: String| StorageError::UploadStateInvalid {
            id: id.to_string(),
            reason,
        };
        let progress: Progress =
            serde_json::from_slice(&state.0).map_err(|e| invalid(e.to_string()))?;
        if progress.v != STATE_VERSION {
            return Err(invalid(format!("unknown format version {}", progress.v)));
        }
        BlobKey::parse(&progress.key)?;
        check_name(&progress.tail)?;
        Ok(progress)
    }

    pub(super) fn encode(&self) -> UploadState {
        UploadState(serde_json::to_vec(self).expect("upload progress serializes"))
    }

    pub(super) fn acknowledged(&self) -> u64 {
        self.parts_len + self.tail_len
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn progress() -> Progress {
        Progress {
            v: STATE_VERSION,
            key: "blobs/01jz0000000000000000000000".into(),
            upload: "some+upload/id==".into(),
            parts: vec!["\"9e107d9d372bb6826bd81d3542a419d6\"".into()],
            parts_len: 8 << 20,
            tail: "01jz0000000000000000000001".into(),
            tail_len: 12,
            replaced: None,
            closed: false,
        }
    }

    #[test]
    fn state_round_trips_and_is_checked() {
        let p = progress();
        let state = p.encode();
        assert_eq!(Progress::decode("x", &state).expect("decode"), p);
        // Compact: one DB row per session, rewritten by every request.
        assert!(state.0.len() < 200, "{}", String::from_utf8_lossy(&state.0));
        // Sessions saved before `closed` existed read as open.
        assert!(!String::from_utf8_lossy(&state.0).contains("closed"));
        let closed = Progress {
            closed: true,
            tail_len: 0,
            ..progress()
        };
        assert_eq!(
            Progress::decode("x", &closed.encode()).expect("decode"),
            closed
        );

        let bad = |p: Progress| Progress::decode("x", &p.encode()).is_err();
        assert!(bad(Progress {
            key: "../etc".into(),
            ..progress()
        }));
        assert!(bad(Progress {
            tail: "../x".into(),
            ..progress()
        }));
        assert!(bad(Progress { v: 9, ..progress() }));
        assert!(Progress::decode("x", &UploadState::default()).is_err());
    }
}
