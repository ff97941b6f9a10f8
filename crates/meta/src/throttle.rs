//! Failed-login counts and lock-outs, per account and per source address, kept in the
//! database so that every replica sees the same ones: a guesser spreading attempts over the
//! replicas behind a load balancer meets one limit, not one per replica. The rules (windows,
//! lock-outs, escalation) are the server's; this stores their state.

use async_trait::async_trait;

use crate::Result;

/// What is remembered about one key. Times are Unix milliseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ThrottleRecord {
    /// Failures in the current window.
    pub failures: u32,
    /// When the current window started (at its first failure).
    pub window_start: i64,
    /// The end of the latest lock-out, if there was one.
    pub locked_until: Option<i64>,
    /// Lock-outs in a row, for the escalation.
    pub strikes: u32,
    /// The latest failure.
    pub last_seen: i64,
}

/// A change to one key's record: given the record (`None`: none stored), the record to store
/// (`None`: delete it).
pub type ThrottleUpdate = Box<dyn FnOnce(Option<ThrottleRecord>) -> Option<ThrottleRecord> + Send>;

#[async_trait]
pub trait LoginThrottle: Send + Sync {
    /// The stored records among `keys`.
    async fn throttle_records(&self, keys: &[String]) -> Result<Vec<(String, ThrottleRecord)>>;
    /// Applies `update` to the key's record in one transaction that holds the row, so that
    /// concurrent failures on any replica all count. Returns the record before and after.
    async fn update_throttle_record(
        &self,
        key: &str,
        update: ThrottleUpdate,
    ) -> Result<(Option<ThrottleRecord>, Option<ThrottleRecord>)>;
    /// Deletes records whose last failure is before `seen_before` and that are not locked
    /// since `unlocked_before`; returns how many.
    async fn prune_throttle_records(&self, seen_before: i64, unlocked_before: i64) -> Result<u64>;
}

/// The one implementation of [`LoginThrottle`], expanded for each backend with `$serialize`,
/// a statement that makes updates of one key wait for each other until commit, also when the
/// key has no row yet (PostgreSQL: a transaction advisory lock on the key's hash, in a key
/// space of its own, class "bert"; empty on SQLite, whose transactions take its one writer).
macro_rules! impl_login_throttle {
    ($meta:ty, read = $read:ident, write = $write:ident, serialize = $serialize:literal) => {
        fn throttle_record<R: sqlx::Row>(row: &R) -> $crate::Result<$crate::ThrottleRecord>
        where
            for<'r> &'r str: sqlx::ColumnIndex<R>,
            for<'r> i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
            for<'r> Option<i64>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
        {
            let count = |v: i64| u32::try_from(v).unwrap_or(u32::MAX);
            Ok($crate::ThrottleRecord {
                failures: count(row.try_get("failures")?),
                window_start: row.try_get("window_start")?,
                locked_until: row.try_get("locked_until")?,
                strikes: count(row.try_get("strikes")?),
                last_seen: row.try_get("last_seen")?,
            })
        }

        #[async_trait::async_trait]
        impl $crate::throttle::LoginThrottle for $meta {
            async fn throttle_records(
                &self,
                keys: &[String],
            ) -> $crate::Result<Vec<(String, $crate::ThrottleRecord)>> {
                let mut found = Vec::new();
                // One or two keys per login: a lookup each, by primary key.
                for key in keys {
                    let row = sqlx::query(
                        "SELECT failures, window_start, locked_until, strikes, last_seen
                         FROM login_throttle WHERE key = $1",
                    )
                    .bind(key)
                    .fetch_optional(&self.$read)
                    .await?;
                    if let Some(row) = row {
                        found.push((key.clone(), throttle_record(&row)?));
                    }
                }
                Ok(found)
            }

            async fn update_throttle_record(
                &self,
                key: &str,
                update: $crate::throttle::ThrottleUpdate,
            ) -> $crate::Result<(
                Option<$crate::ThrottleRecord>,
                Option<$crate::ThrottleRecord>,
            )> {
                let mut tx = self.$write.begin().await?;
                if !$serialize.is_empty() {
                    sqlx::query($serialize).bind(key).execute(&mut *tx).await?;
                }
                let row = sqlx::query(
                    "SELECT failures, window_start, locked_until, strikes, last_seen
                     FROM login_throttle WHERE key = $1",
                )
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

            async fn prune_throttle_records(
                &self,
                seen_before: i64,
                unlocked_before: i64,
            ) -> $crate::Result<u64> {
                let done = sqlx::query(
                    "DELETE FROM login_throttle WHERE last_seen < $1
                     AND (locked_until IS NULL OR locked_until < $2)",
                )
                .bind(seen_before)
                .bind(unlocked_before)
                .execute(&self.$write)
                .await?;
                Ok(done.rows_affected())
            }
        }
    };
}

pub(crate) use impl_login_throttle;
