//! The background work of `berth serve`, beside the requests: upload expiry, pruning the
//! login limiter's quiet records, scheduled garbage collection and retention. Every replica
//! runs the loops; upload expiry, GC and retention take their database locks, so one replica at a time does that
//! work and the others skip their turn (pruning is one idempotent statement and needs no
//! lock).

use std::time::Duration;

use crate::App;

/// Stops the background jobs when dropped (with the server).
pub(crate) struct BackgroundJobs(Vec<tokio::task::JoinHandle<()>>);

impl Drop for BackgroundJobs {
    fn drop(&mut self) {
        for job in &self.0 {
            job.abort();
        }
    }
}

/// Starts the jobs of `app`: upload expiry and pruning at once (sessions may have expired
/// while the registry was down), then every `[uploads] expiry_interval_secs`; garbage
/// collection every `[gc] interval_secs`, the first one interval after start.
pub(crate) fn start(app: App) -> BackgroundJobs {
    let mut jobs = vec![tokio::spawn(housekeeping(app.clone()))];
    if app.config().gc.enabled {
        jobs.push(tokio::spawn(scheduled_gc(app.clone())));
    }
    if app.config().retention.enabled {
        jobs.push(tokio::spawn(scheduled_retention(app)));
    }
    BackgroundJobs(jobs)
}

async fn scheduled_retention(app: App) {
    let period = Duration::from_secs(app.config().retention.interval_secs);
    let mut every = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        let metrics = app.metrics();
        match app.registry().apply_all_retention().await {
            Ok(Some(reports)) => {
                for r in reports {
                    metrics.retention_runs.inc();
                    metrics
                        .retention_tags_deleted
                        .inc_by(r.deleted.len() as u64);
                    tracing::info!(
                        project = r.project,
                        tags = r.tags,
                        deleted = r.deleted.len(),
                        immutable = r.immutable,
                        "retention policy applied"
                    );
                }
            }
            Ok(None) => tracing::debug!("retention runs on another replica"),
            Err(e) => {
                metrics.retention_failures.inc();
                tracing::warn!(error = %e, "retention failed");
            }
        }
    }
}

async fn scheduled_gc(app: App) {
    let period = Duration::from_secs(app.config().gc.interval_secs);
    let options = crate::gc::scheduled_options(app.config());
    let mut every = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        // Failures are logged and counted there; the next turn tries again.
        let _ = app
            .collect_garbage(&options, crate::gc::Trigger::Schedule, "schedule")
            .await;
    }
}

async fn housekeeping(app: App) {
    let uploads = &app.config().uploads;
    let idle = Duration::from_secs(uploads.expire_after_secs);
    let mut every = tokio::time::interval(Duration::from_secs(uploads.expiry_interval_secs));
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        expire_uploads(&app, idle).await;
        match app
            .access()
            .login_limiter()
            .prune(berth_registry::login_limit::now_millis())
            .await
        {
            Ok(0) => {}
            Ok(n) => tracing::debug!(records = n, "pruned quiet failed-login records"),
            Err(e) => tracing::warn!(error = %e, "cannot prune failed-login records"),
        }
    }
}

async fn expire_uploads(app: &App, idle: Duration) {
    let started = std::time::Instant::now();
    match app.registry().expire_uploads(idle).await {
        Ok(Some(report)) => {
            let metrics = app.metrics();
            metrics.uploads_expired.inc_by(report.expired);
            metrics.upload_expiry_failures.inc_by(report.failed);
            if report.expired > 0 || report.failed > 0 {
                tracing::info!(
                    expired = report.expired,
                    bytes = report.bytes,
                    failed = report.failed,
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "expired idle upload sessions"
                );
            }
        }
        Ok(None) => tracing::debug!("upload expiry runs on another replica"),
        Err(e) => {
            app.metrics().upload_expiry_failures.inc();
            tracing::warn!(error = %e, "upload expiry failed");
        }
    }
}
