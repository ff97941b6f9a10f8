//! What one client or one connection may hold of the server (`[limits]`): concurrent upload
//! requests, overall and per client address, and how long a request body may stall.
//! Header sizes and header times are the connection's (`connections.rs`).

use std::collections::HashMap;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use http_body::{Body, Frame, SizeHint};
use tokio::time::{Instant, Sleep};

use crate::error::ApiError;

/// Counts the upload requests running, overall and per client address.
pub(crate) struct UploadSlots {
    max_total: usize,
    max_per_client: usize,
    taken: Mutex<Taken>,
}

#[derive(Default)]
struct Taken {
    total: usize,
    per_client: HashMap<Option<IpAddr>, usize>,
}

/// One running upload request; its slot is given back when dropped.
pub(crate) struct UploadSlot {
    slots: Arc<UploadSlots>,
    client: Option<IpAddr>,
}

impl UploadSlots {
    pub(crate) fn new(max_total: usize, max_per_client: usize) -> Arc<UploadSlots> {
        Arc::new(UploadSlots {
            max_total,
            max_per_client,
            taken: Mutex::new(Taken::default()),
        })
    }

    /// Upload requests running now.
    pub(crate) fn running(&self) -> usize {
        self.taken
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .total
    }

    /// A slot for `client`'s upload request, or `429 TOOMANYREQUESTS` when that client, or
    /// everyone together, already runs as many as allowed.
    pub(crate) fn acquire(
        self: &Arc<Self>,
        client: Option<IpAddr>,
    ) -> Result<UploadSlot, ApiError> {
        let mut taken = self.taken.lock().unwrap_or_else(PoisonError::into_inner);
        let mine = taken.per_client.get(&client).copied().unwrap_or(0);
        if mine >= self.max_per_client {
            return Err(ApiError::TooManyUploads { per_client: true });
        }
        if taken.total >= self.max_total {
            return Err(ApiError::TooManyUploads { per_client: false });
        }
        taken.total += 1;
        taken.per_client.insert(client, mine + 1);
        Ok(UploadSlot {
            slots: Arc::clone(self),
            client,
        })
    }
}

impl Drop for UploadSlot {
    fn drop(&mut self) {
        let mut taken = self
            .slots
            .taken
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        taken.total = taken.total.saturating_sub(1);
        if let Some(n) = taken.per_client.get_mut(&self.client) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                taken.per_client.remove(&self.client);
            }
        }
    }
}

/// A request body that fails when the client sends nothing for `timeout` while the server
/// waits for it: a client trickling a body, or gone without closing, cannot hold its upload
/// (and its slot) for ever. Time spent by the server between reads does not count.
/// It also tells whether it was read to its end (`BodyRead`).
pub(crate) struct IdleTimeout<B> {
    inner: B,
    timeout: Duration,
    /// The deadline, allocated at the first wait and reset at each later one.
    sleep: Option<Pin<Box<Sleep>>>,
    /// Whether `sleep` counts down for the read pending now.
    armed: bool,
    read: BodyRead,
}

/// Whether a request body has been read to its end (an empty body has, from the start).
#[derive(Clone, Default)]
pub(crate) struct BodyRead(Arc<AtomicBool>);

impl BodyRead {
    pub(crate) fn to_the_end(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }

    fn set(&self) {
        self.0.store(true, Ordering::Release);
    }
}

impl<B: Body> IdleTimeout<B> {
    /// The body, and what tells whether it was read to its end.
    pub(crate) fn new(inner: B, timeout: Duration) -> (IdleTimeout<B>, BodyRead) {
        let read = BodyRead::default();
        if inner.is_end_stream() {
            read.set();
        }
        let body = IdleTimeout {
            inner,
            timeout,
            sleep: None,
            armed: false,
            read: read.clone(),
        };
        (body, read)
    }
}

/// The error a stalled body ends with.
#[derive(Debug, thiserror::Error)]
#[error("the request body sent nothing for {0} s")]
pub(crate) struct BodyStalled(u64);

impl<B> Body for IdleTimeout<B>
where
    B: Body + Unpin,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Data = B::Data;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = &mut *self;
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            this.armed = false;
            if frame.is_none() || this.inner.is_end_stream() {
                this.read.set();
            }
            return Poll::Ready(frame.map(|r| r.map_err(Into::into)));
        }
        let deadline = Instant::now() + this.timeout;
        let sleep = this
            .sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        if !this.armed {
            // One allocation per body, not one per wait of the upload loop.
            sleep.as_mut().reset(deadline);
            this.armed = true;
        }
        ready!(sleep.as_mut().poll(cx));
        Poll::Ready(Some(Err(BodyStalled(this.timeout.as_secs()).into())))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_counted_per_client_and_overall_and_given_back() {
        let slots = UploadSlots::new(3, 2);
        let a = Some(IpAddr::from([127, 0, 0, 1]));
        let b = Some(IpAddr::from([127, 0, 0, 2]));
        let a1 = slots.acquire(a).expect("a1");
        let _a2 = slots.acquire(a).expect("a2");
        assert!(matches!(
            slots.acquire(a),
            Err(ApiError::TooManyUploads { per_client: true })
        ));
        let _b1 = slots.acquire(b).expect("b1");
        assert!(matches!(
            slots.acquire(b),
            Err(ApiError::TooManyUploads { per_client: false })
        ));
        drop(a1);
        let _b2 = slots.acquire(b).expect("a slot given back is free again");
    }
}
