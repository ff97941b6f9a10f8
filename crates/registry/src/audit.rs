//! The audit log: what is recorded, and who may read it. The server records an event after an
//! operation succeeded (or a login failed), with the client's address it alone knows. Events
//! frequent enough that a transaction each would cost (pulls, when `[audit] pulls` is on) go
//! through an [`AuditBatcher`] instead: queued by the request, written in batches.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use berth_meta::{AuditEvent, AuditLog, AuditQuery, AuditRecord};
use berth_oci::{Digest, ManifestRef, Repository};
use tokio::sync::{mpsc, oneshot};

use crate::accounts::ROBOT_PREFIX;
use crate::{Error, Principal, Registry, Result};

/// Most events one query returns.
pub const MAX_AUDIT_PAGE: u32 = 1000;

/// What happened. The names are stable: scripts filter on them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuditAction {
    /// A manifest was pushed (with its tags).
    Push,
    /// A manifest was pulled (`[audit] pulls = true`).
    Pull,
    DeleteTag,
    DeleteManifest,
    DeleteBlob,
    /// Wrong credentials, an unknown or disabled account, or an account locked out.
    LoginFailed,
    UserCreate,
    UserSignup,
    UserDelete,
    UserPassword,
    ProjectCreate,
    ProjectDelete,
    ProjectVisibility,
    MemberSet,
    MemberRemove,
    RobotCreate,
    RobotDisable,
    RobotEnable,
    RobotDelete,
    /// A garbage collection run, with what it freed.
    GarbageCollection,
    /// A project's quota, immutable tag or retention rules changed.
    ProjectSettings,
    /// A tag deleted by the project's retention policy.
    RetentionDelete,
    /// A token granting the management API (`registry:management:*`) was issued.
    TokenManagement,
}

impl AuditAction {
    pub const ALL: [AuditAction; 23] = [
        AuditAction::Push,
        AuditAction::Pull,
        AuditAction::DeleteTag,
        AuditAction::DeleteManifest,
        AuditAction::DeleteBlob,
        AuditAction::LoginFailed,
        AuditAction::UserCreate,
        AuditAction::UserSignup,
        AuditAction::UserDelete,
        AuditAction::UserPassword,
        AuditAction::ProjectCreate,
        AuditAction::ProjectDelete,
        AuditAction::ProjectVisibility,
        AuditAction::MemberSet,
        AuditAction::MemberRemove,
        AuditAction::RobotCreate,
        AuditAction::RobotDisable,
        AuditAction::RobotEnable,
        AuditAction::RobotDelete,
        AuditAction::GarbageCollection,
        AuditAction::ProjectSettings,
        AuditAction::RetentionDelete,
        AuditAction::TokenManagement,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AuditAction::Push => "push",
            AuditAction::Pull => "pull",
            AuditAction::DeleteTag => "delete.tag",
            AuditAction::DeleteManifest => "delete.manifest",
            AuditAction::DeleteBlob => "delete.blob",
            AuditAction::LoginFailed => "login.failed",
            AuditAction::UserCreate => "user.create",
            AuditAction::UserSignup => "user.signup",
            AuditAction::UserDelete => "user.delete",
            AuditAction::UserPassword => "user.password",
            AuditAction::ProjectCreate => "project.create",
            AuditAction::ProjectDelete => "project.delete",
            AuditAction::ProjectVisibility => "project.visibility",
            AuditAction::MemberSet => "member.set",
            AuditAction::MemberRemove => "member.remove",
            AuditAction::RobotCreate => "robot.create",
            AuditAction::RobotDisable => "robot.disable",
            AuditAction::RobotEnable => "robot.enable",
            AuditAction::RobotDelete => "robot.delete",
            AuditAction::GarbageCollection => "gc",
            AuditAction::ProjectSettings => "project.settings",
            AuditAction::RetentionDelete => "retention.delete",
            AuditAction::TokenManagement => "token.management",
        }
    }
}

/// One event to record: what, on which resource, in which project.
#[derive(Clone, Debug)]
pub struct Audit {
    action: AuditAction,
    resource: String,
    project: Option<String>,
    detail: String,
}

impl Audit {
    /// The event as the log stores it: done at `now` (seconds since the epoch) by `actor`
    /// from `source`.
    pub fn at(self, now: i64, actor: &str, source: Option<IpAddr>) -> AuditEvent {
        AuditEvent {
            at: now,
            actor: actor.chars().take(256).collect(),
            source: source.map(|a| a.to_string()),
            action: self.action.as_str().to_string(),
            // Names come from requests (a failed login's user name): bounded like the actor.
            project: self.project,
            resource: self.resource.chars().take(512).collect(),
            detail: self.detail.chars().take(512).collect(),
        }
    }

    pub fn new(action: AuditAction, resource: impl Into<String>) -> Self {
        Self {
            action,
            resource: resource.into(),
            project: None,
            detail: String::new(),
        }
    }

    /// An event on a repository: its project is the repository's.
    pub fn on_repository(action: AuditAction, repository: &Repository, what: String) -> Self {
        Self::new(action, what).project(repository.project())
    }

    /// A pull of the manifest `digest` from `repository`, asked for by `reference`: the
    /// resource is `repo:tag@digest` for a tag, `repo@digest` for a digest.
    pub fn pull(repository: &Repository, reference: &ManifestRef, digest: &Digest) -> Self {
        let what = match reference {
            ManifestRef::Tag(tag) => format!("{repository}:{tag}@{digest}"),
            ManifestRef::Digest(_) => format!("{repository}@{digest}"),
        };
        Self::on_repository(AuditAction::Pull, repository, what)
    }

    pub fn project(mut self, project: impl Into<String>) -> Self {
        self.project = Some(project.into());
        self
    }

    pub fn detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = detail.into();
        self
    }
}

pub use berth_oci::text::escape_control;

/// How a principal appears in the log.
pub fn actor_name(who: &Principal) -> String {
    match who {
        Principal::Anonymous => crate::accounts::ANONYMOUS.into(),
        Principal::User { name, .. } => name.clone(),
        Principal::Robot { name, .. } => format!("{ROBOT_PREFIX}{name}"),
    }
}

/// How an [`AuditBatcher`] queues and writes.
#[derive(Clone, Copy, Debug)]
pub struct BatchOptions {
    /// Events that may wait at once; one more is dropped, with a warning, rather than make a
    /// request wait for the database.
    pub capacity: usize,
    /// A batch is written as soon as this many events wait ...
    pub batch: usize,
    /// ... or this long after the first of them arrived.
    pub interval: Duration,
}

impl Default for BatchOptions {
    fn default() -> Self {
        Self {
            capacity: 16 * 1024,
            batch: 256,
            interval: Duration::from_secs(1),
        }
    }
}

/// Audit events written in batches, off the request path: a request queues its event
/// ([`AuditBatcher::push`], which never waits) and goes on; a background task writes what has
/// accumulated with one [`AuditLog::record_events`] (one transaction) when
/// [`BatchOptions::batch`] events wait or [`BatchOptions::interval`] after the first of them,
/// and what is left when closed. A full queue drops events with a warning: the log is a
/// record, not a brake on pulls. Events not written yet are lost if the process dies.
pub struct AuditBatcher {
    queue: mpsc::Sender<AuditEvent>,
    /// Events dropped since the writer last reported them.
    dropped: Arc<AtomicU64>,
    stop: Mutex<Option<oneshot::Sender<()>>>,
    writer: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

/// How long [`AuditBatcher::close`] waits for the last batch to be written.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(10);

impl AuditBatcher {
    /// Starts the writer task (on the current tokio runtime).
    pub fn start(log: Arc<dyn AuditLog>, options: BatchOptions) -> Self {
        let options = BatchOptions {
            capacity: options.capacity.max(1),
            batch: options.batch.max(1),
            ..options
        };
        let (queue, events) = mpsc::channel(options.capacity);
        let (stop, stopped) = oneshot::channel();
        let dropped = Arc::new(AtomicU64::new(0));
        let writer = tokio::spawn(write_batches(
            log,
            events,
            stopped,
            Arc::clone(&dropped),
            options,
        ));
        Self {
            queue,
            dropped,
            stop: Mutex::new(Some(stop)),
            writer: Mutex::new(Some(writer)),
        }
    }

    /// Queues an event for the next batch. Never waits: with the queue full, the event is
    /// dropped (the first drop since the last write is logged at once, the count at the write).
    pub fn push(&self, event: AuditEvent) {
        match self.queue.try_send(event) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(event)) => {
                if self.dropped.fetch_add(1, Ordering::Relaxed) == 0 {
                    tracing::warn!(
                        action = %event.action,
                        resource = %event.resource,
                        "the audit queue is full: event dropped (the database is behind)"
                    );
                }
            }
            Err(mpsc::error::TrySendError::Closed(event)) => {
                tracing::warn!(?event, "the audit queue is closed: event dropped");
            }
        }
    }

    /// Stops taking events and writes those still queued; returns when they are written (at
    /// most 10 s). Call at shutdown, after the last request, before the database closes.
    pub async fn close(&self) {
        let stop = self
            .stop
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(stop) = stop {
            let _ = stop.send(());
        }
        let writer = self
            .writer
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(writer) = writer
            && tokio::time::timeout(CLOSE_TIMEOUT, writer).await.is_err()
        {
            tracing::warn!(
                "the last audit events were not written within {} s",
                CLOSE_TIMEOUT.as_secs()
            );
        }
    }
}

/// The writer task of an [`AuditBatcher`]: a batch per `options.batch` events or
/// `options.interval`; when stopped (or its batcher is gone), the rest of the queue.
async fn write_batches(
    log: Arc<dyn AuditLog>,
    mut events: mpsc::Receiver<AuditEvent>,
    mut stop: oneshot::Receiver<()>,
    dropped: Arc<AtomicU64>,
    options: BatchOptions,
) {
    let mut batch = Vec::with_capacity(options.batch);
    // The stop signal, or its sender dropped: either way no more waiting.
    let mut stopping = false;
    while !stopping {
        tokio::select! {
            n = events.recv_many(&mut batch, options.batch) => {
                if n == 0 {
                    break;
                }
            }
            _ = &mut stop => stopping = true,
        }
        let deadline = tokio::time::Instant::now() + options.interval;
        while !stopping && batch.len() < options.batch {
            let room = options.batch - batch.len();
            tokio::select! {
                n = events.recv_many(&mut batch, room) => {
                    if n == 0 {
                        break;
                    }
                }
                () = tokio::time::sleep_until(deadline) => break,
                _ = &mut stop => stopping = true,
            }
        }
        write_batch(log.as_ref(), &mut batch, &dropped).await;
    }
    events.close();
    while events.recv_many(&mut batch, options.batch).await > 0 {
        write_batch(log.as_ref(), &mut batch, &dropped).await;
    }
    write_batch(log.as_ref(), &mut batch, &dropped).await;
}

async fn write_batch(log: &dyn AuditLog, batch: &mut Vec<AuditEvent>, dropped: &AtomicU64) {
    if !batch.is_empty() {
        if let Err(e) = log.record_events(batch).await {
            // As for a single event: the operations happened; the log could not say so.
            tracing::error!(error = %e, events = batch.len(), "could not write the audit log");
        }
        batch.clear();
    }
    let lost = dropped.swap(0, Ordering::Relaxed);
    if lost > 0 {
        tracing::warn!(
            events = lost,
            "audit events dropped: the queue was full (the database is behind)"
        );
    }
}

/// Appends an event done at `now` to `log`; a failure is logged as an error, with the event
/// (see [`Registry::record`]).
pub(crate) async fn record(
    log: &dyn AuditLog,
    now: i64,
    actor: &str,
    source: Option<IpAddr>,
    event: Audit,
) {
    let event = event.at(now, actor, source);
    if let Err(e) = log.record_event(&event).await {
        tracing::error!(error = %e, ?event, "could not write the audit log");
    }
}

impl Registry {
    /// Appends an event. The operation it describes has already happened, so a failure to
    /// record is logged (as an error, with the event) rather than undoing or failing it.
    pub async fn record(&self, actor: &str, source: Option<IpAddr>, event: Audit) {
        record(self.meta.as_ref(), self.now(), actor, source, event).await;
    }

    /// Reads the log: system administrators read everything; a project admin reads the events
    /// of a project it administers (the query must name it).
    pub async fn audit_events(
        &self,
        who: &Principal,
        mut query: AuditQuery,
    ) -> Result<Vec<AuditRecord>> {
        query.limit = query.limit.clamp(1, MAX_AUDIT_PAGE);
        if let Some(action) = &query.action
            && !AuditAction::ALL
                .iter()
                .any(|a| a.as_str() == action || a.as_str().starts_with(action.as_str()))
        {
            return Err(Error::Invalid(format!(
                "unknown audit action {:?}: one of {} (or a prefix ending in '.')",
                action.chars().take(50).collect::<String>(),
                AuditAction::ALL.map(AuditAction::as_str).join(", ")
            )));
        }
        let system_admin = matches!(
            who,
            Principal::User {
                system_admin: true,
                ..
            }
        );
        if !system_admin {
            let Some(project) = &query.project else {
                return Err(Error::Denied(
                    "only a system administrator may read the whole audit log; project admins \
                     name their project"
                        .into(),
                ));
            };
            self.require_project_admin(who, project).await?;
        }
        Ok(self.meta.events(&query).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An audit log that keeps the batches it is given; each write first takes a permit of
    /// `gate` (none: the writer waits there).
    struct Recorded {
        batches: Mutex<Vec<Vec<AuditEvent>>>,
        gate: tokio::sync::Semaphore,
        writing: tokio::sync::Notify,
    }

    impl Recorded {
        fn new(open: bool) -> Arc<Self> {
            let permits = if open {
                tokio::sync::Semaphore::MAX_PERMITS
            } else {
                0
            };
            Arc::new(Self {
                batches: Mutex::new(Vec::new()),
                gate: tokio::sync::Semaphore::new(permits),
                writing: tokio::sync::Notify::new(),
            })
        }

        fn sizes(&self) -> Vec<usize> {
            let batches = self.batches.lock().unwrap_or_else(PoisonError::into_inner);
            batches.iter().map(Vec::len).collect()
        }

        fn events(&self) -> Vec<AuditEvent> {
            let batches = self.batches.lock().unwrap_or_else(PoisonError::into_inner);
            batches.concat()
        }
    }

    #[async_trait::async_trait]
    impl AuditLog for Recorded {
        async fn record_event(&self, event: &AuditEvent) -> berth_meta::Result<i64> {
            self.record_events(std::slice::from_ref(event)).await?;
            Ok(0)
        }

        async fn record_events(&self, events: &[AuditEvent]) -> berth_meta::Result<()> {
            self.writing.notify_one();
            let _permit = self.gate.acquire().await;
            self.batches
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(events.to_vec());
            Ok(())
        }

        async fn events(&self, _: &AuditQuery) -> berth_meta::Result<Vec<AuditRecord>> {
            Ok(Vec::new())
        }
    }

    fn pull(i: usize) -> AuditEvent {
        let repository: Repository = "team/app".parse().expect("repository");
        let digest = Digest::sha256_of(format!("manifest {i}").as_bytes());
        let reference = ManifestRef::Digest(digest.clone());
        Audit::pull(&repository, &reference, &digest).at(1, "alice", None)
    }

    async fn within_5s(check: impl Fn() -> bool) -> bool {
        for _ in 0..500 {
            if check() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        false
    }

    #[test]
    fn pulls_name_the_tag_and_the_digest() {
        let repository: Repository = "team/app".parse().expect("repository");
        let digest = Digest::sha256_of(b"m");
        let tagged = Audit::pull(
            &repository,
            &ManifestRef::Tag("1.0".parse().expect("tag")),
            &digest,
        )
        .at(1, "robot$ci", Some([192, 0, 2, 7].into()));
        assert_eq!(tagged.action, "pull");
        assert_eq!(tagged.resource, format!("team/app:1.0@{digest}"));
        assert_eq!(tagged.project.as_deref(), Some("team"));
        assert_eq!(tagged.source.as_deref(), Some("192.0.2.7"));
        let by_digest = Audit::pull(&repository, &ManifestRef::Digest(digest.clone()), &digest).at(
            1,
            "anonymous",
            None,
        );
        assert_eq!(by_digest.resource, format!("team/app@{digest}"));
    }

    #[tokio::test]
    async fn batches_are_written_when_full_or_after_the_interval() {
        let log = Recorded::new(true);
        let batcher = AuditBatcher::start(
            log.clone(),
            BatchOptions {
                capacity: 1000,
                batch: 256,
                interval: Duration::from_millis(300),
            },
        );
        let sent: Vec<AuditEvent> = (0..600).map(pull).collect();
        let started = std::time::Instant::now();
        for e in &sent {
            batcher.push(e.clone());
        }
        assert!(
            within_5s(|| log.sizes().len() == 3).await,
            "{:?}",
            log.sizes()
        );
        // Two full batches at once, the rest when its interval passed.
        assert_eq!(log.sizes(), [256, 256, 88]);
        assert!(started.elapsed() >= Duration::from_millis(300));
        assert_eq!(log.events(), sent, "all of them, in order");
        batcher.close().await;
        assert_eq!(log.sizes(), [256, 256, 88], "nothing more to write");
    }

    #[tokio::test]
    async fn a_full_queue_drops_events_without_waiting_and_close_writes_the_rest() {
        let log = Recorded::new(false);
        let batcher = AuditBatcher::start(
            log.clone(),
            BatchOptions {
                capacity: 4,
                batch: 1,
                interval: Duration::from_secs(60),
            },
        );
        // The first event is taken, and its write waits on the database.
        let writing = log.writing.notified();
        batcher.push(pull(0));
        writing.await;
        // Four more fit in the queue; the other six are dropped, and pushing never waits.
        for i in 1..11 {
            batcher.push(pull(i));
        }
        assert_eq!(batcher.dropped.load(Ordering::Relaxed), 6);
        log.gate.add_permits(tokio::sync::Semaphore::MAX_PERMITS);
        batcher.close().await;
        let written: Vec<AuditEvent> = log.events();
        assert_eq!(written, (0..5).map(pull).collect::<Vec<_>>());
        assert_eq!(batcher.dropped.load(Ordering::Relaxed), 0, "reported");
        // Closed: later events are not queued.
        batcher.push(pull(99));
        assert_eq!(log.events().len(), 5);
    }

    #[tokio::test(start_paused = true)]
    async fn close_writes_what_waits_for_its_interval() {
        let log = Recorded::new(true);
        let batcher = AuditBatcher::start(
            log.clone(),
            BatchOptions {
                capacity: 100,
                batch: 256,
                interval: Duration::from_secs(3600),
            },
        );
        for i in 0..3 {
            batcher.push(pull(i));
        }
        // A minute on tokio's paused clock passes at once.
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert!(log.sizes().is_empty(), "waits for more, or its interval");
        batcher.close().await;
        assert_eq!(log.sizes(), [3]);
        // Dropped without close: the writer still writes what was queued.
        let log = Recorded::new(true);
        let batcher = AuditBatcher::start(log.clone(), BatchOptions::default());
        batcher.push(pull(7));
        drop(batcher);
        assert!(within_5s(|| log.sizes() == [1]).await);
    }
}
