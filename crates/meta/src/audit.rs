//! The audit log: an append-only record of who pushed, deleted, failed to log in or changed
//! permissions, when and from where. What counts as an event is decided by the caller; this
//! module only stores and finds.

use async_trait::async_trait;

use crate::Result;

/// One thing that happened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditEvent {
    /// Unix seconds.
    pub at: i64,
    /// The account, `robot$name`, or `anonymous`.
    pub actor: String,
    /// The client's address, when known.
    pub source: Option<String>,
    /// A dotted name such as `push`, `delete.manifest`, `login.failed`, `member.set`.
    pub action: String,
    /// The project concerned, if any (project admins may read their project's events).
    pub project: Option<String>,
    /// What was acted on: `team/app:1.0@sha256:…`, `user bob`, `robot$ci`.
    pub resource: String,
    /// Anything else worth keeping (`role=developer`, `public=true`, a reason).
    pub detail: String,
}

/// A stored event with its position in the log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditRecord {
    /// Increases with every event; pages go backwards from it.
    pub id: i64,
    pub event: AuditEvent,
}

/// Which events to read: every field narrows; newest first, at most `limit`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuditQuery {
    pub actor: Option<String>,
    /// An exact action, or a prefix ending in `.` (`delete.` matches every delete).
    pub action: Option<String>,
    pub project: Option<String>,
    /// Only events at or after these Unix seconds.
    pub since: Option<i64>,
    /// Only events with an id below this one (the next page).
    pub before: Option<i64>,
    pub limit: u32,
}

#[async_trait]
pub trait AuditLog: Send + Sync {
    /// Appends the event and returns its id.
    async fn record_event(&self, event: &AuditEvent) -> Result<i64>;
    /// Appends the events in one transaction (one commit for the lot), their ids increasing
    /// in the order given; if it fails, none is recorded. For events written in batches off
    /// the request path (pulls).
    async fn record_events(&self, events: &[AuditEvent]) -> Result<()>;
    /// Events matching `query`, newest first.
    async fn events(&self, query: &AuditQuery) -> Result<Vec<AuditRecord>>;
}

/// Rows per `INSERT` of [`AuditLog::record_events`]: 7 parameters each stays far below
/// SQLite's 32766 and PostgreSQL's 65535 parameters per statement.
pub(crate) const EVENTS_PER_INSERT: usize = 500;
