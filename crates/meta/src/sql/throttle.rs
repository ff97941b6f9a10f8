//! [`LoginThrottle`]: failed-login counts per key.

use async_trait::async_trait;
use sqlx::{ColumnIndex, Encode, Executor, Row, Type};

use super::{Conn, DbRow, Dialect, RowsAffected, SqlMeta, Value};
use crate::throttle::ThrottleUpdate;
use crate::{LoginThrottle, Result, ThrottleRecord};

const SELECT_RECORD: &str = "SELECT failures, window_start, locked_until, strikes, last_seen
                             FROM login_throttle WHERE key = $1";

fn throttle_record<R: Row>(row: &R) -> Result<ThrottleRecord>
where
    for<'r> &'r str: ColumnIndex<R>,
    for<'r> i64: Value<'r, R::Database>,
{
    let count = |v: i64| u32::try_from(v).unwrap_or(u32::MAX);
    Ok(ThrottleRecord {
        failures: count(row.try_get("failures")?),
        window_start: row.try_get("window_start")?,
        locked_until: row.try_get("locked_until")?,
        strikes: count(row.try_get("strikes")?),
        last_seen: row.try_get("last_seen")?,
    })
}

#[async_trait]
impl<D: Dialect> LoginThrottle for SqlMeta<D>
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
    async fn throttle_records(&self, keys: &[String]) -> Result<Vec<(String, ThrottleRecord)>> {
        let mut found = Vec::new();
        // One or two keys per login: a lookup each, by primary key.
        for key in keys {
            let row = sqlx::query(SELECT_RECORD)
                .bind(key)
                .fetch_optional(self.dialect.read())
                .await?;
            if let Some(row) = row {
                found.push((key.clone(), throttle_record(&row)?));
            }
        }
        Ok(found)
    }

    /// Updates of one key wait for each other until commit, also when the key has no row yet
    /// ([`Dialect::SERIALIZE_THROTTLE_KEY`]; SQLite: its one writer).
    async fn update_throttle_record(
        &self,
        key: &str,
        update: ThrottleUpdate,
    ) -> Result<(Option<ThrottleRecord>, Option<ThrottleRecord>)> {
        let mut tx = self.dialect.begin_write().await?;
        if let Some(serialize) = D::SERIALIZE_THROTTLE_KEY {
            sqlx::query(serialize).bind(key).execute(&mut *tx).await?;
        }
        let row = sqlx::query(SELECT_RECORD)
            .bind(key)
            .fetch_optional(&mut *tx)
            .await?;
        let before = row.as_ref().map(throttle_record).transpose()?;
        let after = update(before);
        match after {
            Some(r) => {
                sqlx::query(
                    "INSERT INTO login_throttle
                     (key, failures, window_start, locked_until, strikes, last_seen)
                     VALUES ($1, $2, $3, $4, $5, $6)
                     ON CONFLICT (key) DO UPDATE SET failures = excluded.failures,
                     window_start = excluded.window_start,
                     locked_until = excluded.locked_until,
                     strikes = excluded.strikes, last_seen = excluded.last_seen",
                )
                .bind(key)
                .bind(i64::from(r.failures))
                .bind(r.window_start)
                .bind(r.locked_until)
                .bind(i64::from(r.strikes))
                .bind(r.last_seen)
                .execute(&mut *tx)
                .await?;
            }
            None if before.is_some() => {
                sqlx::query("DELETE FROM login_throttle WHERE key = $1")
                    .bind(key)
                    .execute(&mut *tx)
                    .await?;
            }
            None => {}
        }
        tx.commit().await?;
        Ok((before, after))
    }

    async fn prune_throttle_records(&self, seen_before: i64, unlocked_before: i64) -> Result<u64> {
        let done = sqlx::query(
            "DELETE FROM login_throttle WHERE last_seen < $1
             AND (locked_until IS NULL OR locked_until < $2)",
        )
        .bind(seen_before)
        .bind(unlocked_before)
        .execute(self.dialect.write())
        .await?;
        Ok(done.rows_affected())
    }
}
