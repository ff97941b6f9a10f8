//! [`AuditLog`] on SQLite.

use async_trait::async_trait;
use sqlx::{QueryBuilder, Row, Sqlite};

use super::SqliteMeta;
use crate::Result;
use crate::audit::{AuditEvent, AuditLog, AuditQuery, AuditRecord};

#[async_trait]
impl AuditLog for SqliteMeta {
    async fn record_event(&self, e: &AuditEvent) -> Result<i64> {
        insert_event(&self.write, e).await
    }

    async fn record_events(&self, events: &[AuditEvent]) -> Result<()> {
        if events.is_empty() {
            return Ok(());
        }
        let mut tx = self.begin_write().await?;
        insert_events(&mut tx, events).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn events(&self, q: &AuditQuery) -> Result<Vec<AuditRecord>> {
        let mut sql: QueryBuilder<Sqlite> = QueryBuilder::new(
            "SELECT id, at, actor, source, action, project, resource, detail FROM audit_events \
             WHERE 1 = 1",
        );
        if let Some(actor) = &q.actor {
            sql.push(" AND actor = ").push_bind(actor);
        }
        match q.action.as_deref() {
            Some(prefix) if prefix.ends_with('.') => {
                // A prefix match without LIKE, so that `_` and `%` in it mean themselves.
                sql.push(" AND substr(action, 1, ")
                    .push_bind(prefix.len() as i64)
                    .push(") = ")
                    .push_bind(prefix);
            }
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
            .fetch_all(&self.read)
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

crate::audit::insert_event_fn!(Sqlite);
crate::audit::insert_events_fn!(Sqlite);
