//! [`AuditLog`]: appending events and reading them back, newest first.
//!
//! PostgreSQL: ids come from a sequence, so replicas never hand out the same one. They
//! increase in the order inserts start, not quite the order they commit: a page read while
//! another replica's insert is in flight may already show a higher id, and the next page,
//! below that page's last id, skips the late one if its id is above that cursor. An event is
//! one autocommitted statement, or part of a manifest PUT's transaction, so the window is a few
//! milliseconds.

use async_trait::async_trait;
use sqlx::{ColumnIndex, Encode, Executor, QueryBuilder, Row, Type};

use super::{Conn, DbRow, Dialect, SqlMeta, Value};
use crate::Result;
use crate::audit::{AuditEvent, AuditLog, AuditQuery, AuditRecord, EVENTS_PER_INSERT};

impl<D: Dialect> SqlMeta<D>
where
    for<'c> &'c mut Conn<D>: Executor<'c, Database = D::DB>,
    usize: ColumnIndex<DbRow<D>>,
    for<'r> &'r str: Value<'r, D::DB>,
    for<'r> i64: Value<'r, D::DB>,
    for<'r> String: Value<'r, D::DB>,
    for<'r> Option<String>: Encode<'r, D::DB>,
{
    /// Appends an event through a pool, or through a transaction the event belongs to (a
    /// manifest PUT's). Returns its id.
    pub(super) async fn insert_event<'c, E>(executor: E, e: &AuditEvent) -> Result<i64>
    where
        E: Executor<'c, Database = D::DB>,
    {
        Ok(sqlx::query_scalar(
            "INSERT INTO audit_events (at, actor, source, action, project, resource, detail)
             VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
        )
        .bind(e.at)
        .bind(&e.actor)
        .bind(&e.source)
        .bind(&e.action)
        .bind(&e.project)
        .bind(&e.resource)
        .bind(&e.detail)
        .fetch_one(executor)
        .await?)
    }
}

#[async_trait]
impl<D: Dialect> AuditLog for SqlMeta<D>
where
    for<'c> &'c mut Conn<D>: Executor<'c, Database = D::DB>,
    usize: ColumnIndex<DbRow<D>>,
    for<'r> &'r str: ColumnIndex<DbRow<D>> + Value<'r, D::DB>,
    for<'r> i64: Value<'r, D::DB>,
    for<'r> bool: Value<'r, D::DB>,
    for<'r> String: Value<'r, D::DB>,
    for<'r> Vec<u8>: Value<'r, D::DB>,
    for<'r> &'r [u8]: Encode<'r, D::DB> + Type<D::DB>,
    for<'r> Option<i64>: Encode<'r, D::DB>,
    for<'r> Option<String>: Encode<'r, D::DB>,
    for<'r> Option<&'r str>: Encode<'r, D::DB>,
{
    async fn record_event(&self, e: &AuditEvent) -> Result<i64> {
        Self::insert_event(self.dialect.write(), e).await
    }

    /// Multi-row `INSERT`s of at most [`EVENTS_PER_INSERT`] rows, in the order given, in one
    /// transaction.
    async fn record_events(&self, events: &[AuditEvent]) -> Result<()> {
        if events.is_empty() {
            return Ok(());
        }
        let mut tx = self.dialect.begin_write().await?;
        for chunk in events.chunks(EVENTS_PER_INSERT) {
            let mut sql: QueryBuilder<D::DB> = QueryBuilder::new(
                "INSERT INTO audit_events (at, actor, source, action, project, resource, detail) ",
            );
            sql.push_values(chunk, |mut row, e| {
                row.push_bind(e.at)
                    .push_bind(&e.actor)
                    .push_bind(&e.source)
                    .push_bind(&e.action)
                    .push_bind(&e.project)
                    .push_bind(&e.resource)
                    .push_bind(&e.detail);
            });
            sql.build().execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn events(&self, q: &AuditQuery) -> Result<Vec<AuditRecord>> {
        let mut sql: QueryBuilder<D::DB> = QueryBuilder::new(
            "SELECT id, at, actor, source, action, project, resource, detail FROM audit_events \
             WHERE 1 = 1",
        );
        if let Some(actor) = &q.actor {
            sql.push(" AND actor = ").push_bind(actor);
        }
        match q.action.as_deref() {
            Some(prefix) if prefix.ends_with('.') => D::push_action_prefix(&mut sql, prefix),
            Some(action) => {
                sql.push(" AND action = ").push_bind(action);
            }
            None => {}
        }
        if let Some(project) = &q.project {
            sql.push(" AND project = ").push_bind(project);
        }
        if let Some(since) = q.since {
            sql.push(" AND at >= ").push_bind(since);
        }
        if let Some(before) = q.before {
            sql.push(" AND id < ").push_bind(before);
        }
        sql.push(" ORDER BY id DESC LIMIT ")
            .push_bind(i64::from(q.limit));
        sql.build()
            .fetch_all(self.dialect.read())
            .await?
            .iter()
            .map(|row| {
                Ok(AuditRecord {
                    id: row.try_get("id")?,
                    event: AuditEvent {
                        at: row.try_get("at")?,
                        actor: row.try_get("actor")?,
                        source: row.try_get("source")?,
                        action: row.try_get("action")?,
                        project: row.try_get("project")?,
                        resource: row.try_get("resource")?,
                        detail: row.try_get("detail")?,
                    },
                })
            })
            .collect()
    }
}
