//! Garbage collection as the server and `berth gc` run it: the registry's collector
//! ([`berth_registry::gc`]), with its report logged, recorded in the audit log and counted in
//! the metrics.

use std::sync::Arc;
use std::time::Duration;

pub use berth_registry::gc::{CollectedManifest, GcOptions, GcReport};
use berth_registry::{Audit, AuditAction, Limits, Registry};

use crate::backends::{Backends, Opened};
use crate::{App, Config, StartError};

/// Who started a collection, for the log and the audit log.
#[derive(Clone, Copy, Debug)]
pub enum Trigger {
    Schedule,
    /// `POST /api/v1/gc`.
    Api,
    /// `berth gc`.
    Command,
}

impl Trigger {
    fn as_str(self) -> &'static str {
        match self {
            Trigger::Schedule => "schedule",
            Trigger::Api => "api",
            Trigger::Command => "command",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum GcError {
    #[error("no registry database at {0}: is this the data directory `berth serve` uses?")]
    NoDatabase(String),
    #[error("cannot open the registry: {0}")]
    Open(#[from] StartError),
    #[error("{0}")]
    Collect(#[from] berth_registry::Error),
}

/// `[gc]` as collector options.
pub fn scheduled_options(config: &Config) -> GcOptions {
    GcOptions {
        grace: Duration::from_secs(config.gc.grace_secs),
        delete_untagged: config.gc.delete_untagged,
        dry_run: false,
    }
}

/// Runs a collection on `registry`, logs it and records it (not a dry run) in the audit log.
/// `None` when another process is collecting.
pub(crate) async fn collect(
    registry: &Registry,
    options: &GcOptions,
    trigger: Trigger,
    actor: &str,
) -> Result<Option<GcReport>, berth_registry::Error> {
    let report = registry.collect_garbage(options).await?;
    let Some(report) = report else {
        tracing::info!(
            trigger = trigger.as_str(),
            "garbage collection is running elsewhere; skipped"
        );
        return Ok(None);
    };
    tracing::info!(
        trigger = trigger.as_str(),
        dry_run = report.dry_run,
        manifests = report.manifests.len(),
        links = report.links_removed,
        blobs = report.blobs_deleted,
        bytes = report.bytes_freed,
        kept_in_use = report.kept_in_use,
        objects_failed = report.objects_failed,
        seconds = format!("{:.3}", report.seconds),
        blobs_per_second = format!("{:.0}", report.blobs_per_second),
        objects_per_second = format!("{:.0}", report.objects_per_second),
        "garbage collection finished"
    );
    if !report.dry_run {
        let detail = format!(
            "trigger={} manifests={} blobs={} bytes={} links={}",
            trigger.as_str(),
            report.manifests.len(),
            report.blobs_deleted,
            report.bytes_freed,
            report.links_removed
        );
        let event = Audit::new(AuditAction::GarbageCollection, "registry").detail(detail);
        registry.record(actor, None, event).await;
    }
    Ok(Some(report))
}

impl App {
    /// A collection by this server (schedule or admin API), counted in its metrics.
    pub(crate) async fn collect_garbage(
        &self,
        options: &GcOptions,
        trigger: Trigger,
        actor: &str,
    ) -> Result<Option<GcReport>, berth_registry::Error> {
        let gc = &self.metrics().gc;
        let outcome = collect(self.registry(), options, trigger, actor).await;
        match &outcome {
            Ok(Some(report)) if !report.dry_run => {
                gc.runs.inc();
                gc.manifests_deleted.inc_by(report.manifests.len() as u64);
                gc.blobs_deleted.inc_by(report.blobs_deleted);
                gc.bytes_freed.inc_by(report.bytes_freed);
                gc.last_seconds.set(report.seconds);
                gc.last_blobs_per_second.set(report.blobs_per_second);
                gc.last_objects_per_second.set(report.objects_per_second);
                gc.last_success.set(self.registry().clock().now());
            }
            Ok(_) => {}
            Err(e) => {
                gc.runs.inc();
                gc.failures.inc();
                tracing::warn!(trigger = trigger.as_str(), error = %e, "garbage collection failed");
            }
        }
        outcome
    }
}

/// `berth gc`: collects garbage in the registry `config` names, beside a running `berth
/// serve` if there is one. `None` when another process is collecting.
pub async fn gc(config: &Config, options: &GcOptions) -> Result<Option<GcReport>, GcError> {
    let backends = Backends::resolve(config).map_err(StartError::from)?;
    if let Some(path) = backends.meta.missing_database() {
        return Err(GcError::NoDatabase(path.display().to_string()));
    }
    let Opened { blobs, meta } = backends.open_existing(berth_meta::system_clock()).await?;
    let registry = Registry::new(Arc::clone(&meta), blobs, Limits::default());
    let report = collect(&registry, options, Trigger::Command, "berth-gc").await;
    meta.close().await;
    Ok(report?)
}
