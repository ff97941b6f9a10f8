//! Prometheus metrics, served as text at `/metrics`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub route: &'static str,
    pub method: String,
    pub status: u16,
}

pub struct Metrics {
    registry: Registry,
    pub requests: Family<RequestLabels, Counter>,
    pub latency: Family<RequestLabels, Histogram, fn() -> Histogram>,
    pub bytes_received: Counter,
    pub bytes_sent: Counter,
    pub uploads_in_progress: Gauge,
    pub upload_requests_running: Gauge,
    /// Upload sessions removed by expiry.
    pub uploads_expired: Counter,
    /// Expired sessions whose data could not be removed (kept for the next run), and failed
    /// expiry runs.
    pub upload_expiry_failures: Counter,
    pub gc: GcMetrics,
    /// Scheduled and API retention runs, and the tags they deleted.
    pub retention_runs: Counter,
    pub retention_failures: Counter,
    pub retention_tags_deleted: Counter,
    /// Pushes refused for a project's quota, and pushes or deletes refused for an immutable
    /// tag.
    pub quota_refusals: Counter,
    pub immutable_refusals: Counter,
    /// Upload sessions refused because their account or client had
    /// `[limits] max_open_uploads_per_account` open.
    pub open_upload_refusals: Counter,
}

/// Garbage collection, as run by this process (schedule and admin API).
#[derive(Clone, Default)]
pub struct GcMetrics {
    pub runs: Counter,
    pub failures: Counter,
    pub manifests_deleted: Counter,
    pub blobs_deleted: Counter,
    pub bytes_freed: Counter,
    pub last_seconds: Gauge<f64, std::sync::atomic::AtomicU64>,
    pub last_blobs_per_second: Gauge<f64, std::sync::atomic::AtomicU64>,
    pub last_objects_per_second: Gauge<f64, std::sync::atomic::AtomicU64>,
    pub last_success: Gauge,
}

impl GcMetrics {
    fn register(&self, registry: &mut Registry) {
        let gc = registry.sub_registry_with_prefix("gc");
        gc.register("runs", "Garbage collections run", self.runs.clone());
        gc.register(
            "failures",
            "Garbage collections that stopped on an error",
            self.failures.clone(),
        );
        gc.register(
            "manifests_deleted",
            "Manifests garbage collection deleted",
            self.manifests_deleted.clone(),
        );
        gc.register(
            "blobs_deleted",
            "Blobs garbage collection deleted",
            self.blobs_deleted.clone(),
        );
        gc.register(
            "freed_bytes",
            "Bytes of the blobs garbage collection deleted",
            self.bytes_freed.clone(),
        );
        gc.register(
            "last_duration_seconds",
            "How long the last garbage collection took",
            self.last_seconds.clone(),
        );
        gc.register(
            "last_blobs_per_second",
            "Blobs swept per second in the last garbage collection",
            self.last_blobs_per_second.clone(),
        );
        gc.register(
            "last_objects_per_second",
            "Manifests, links and blobs removed per second in the last garbage collection",
            self.last_objects_per_second.clone(),
        );
        gc.register(
            "last_success_timestamp_seconds",
            "When the last garbage collection finished without error (Unix seconds)",
            self.last_success.clone(),
        );
    }
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("berth");
        let requests = Family::<RequestLabels, Counter>::default();
        let latency: Family<RequestLabels, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(|| Histogram::new(exponential_buckets(0.0005, 2.0, 18)));
        let bytes_received = Counter::default();
        let bytes_sent = Counter::default();
        let uploads_in_progress = Gauge::default();
        let upload_requests_running = Gauge::default();
        let uploads_expired = Counter::default();
        let upload_expiry_failures = Counter::default();
        registry.register(
            "http_requests",
            "HTTP requests by route, method and status",
            requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "Time to the response head, by route, method and status",
            latency.clone(),
        );
        registry.register(
            "http_received_bytes",
            "Request body bytes received",
            bytes_received.clone(),
        );
        registry.register(
            "http_sent_bytes",
            "Response body bytes sent",
            bytes_sent.clone(),
        );
        registry.register(
            "uploads_in_progress",
            "Blob upload sessions open",
            uploads_in_progress.clone(),
        );
        registry.register(
            "upload_requests_running",
            "Blob-upload requests (POST, PATCH, PUT) running now, against [limits] max_uploads",
            upload_requests_running.clone(),
        );
        registry.register(
            "uploads_expired",
            "Idle upload sessions removed with their partial data",
            uploads_expired.clone(),
        );
        registry.register(
            "upload_expiry_failures",
            "Expired upload sessions whose data could not be removed, and failed expiry runs",
            upload_expiry_failures.clone(),
        );
        let gc = GcMetrics::default();
        gc.register(&mut registry);
        let (retention_runs, retention_failures, retention_tags_deleted) =
            (Counter::default(), Counter::default(), Counter::default());
        registry.register(
            "retention_runs",
            "Retention policy applications (a project each)",
            retention_runs.clone(),
        );
        registry.register(
            "retention_failures",
            "Retention runs that stopped on an error",
            retention_failures.clone(),
        );
        let (quota_refusals, immutable_refusals) = (Counter::default(), Counter::default());
        registry.register(
            "quota_refusals",
            "Pushes refused because the project would pass its storage quota",
            quota_refusals.clone(),
        );
        registry.register(
            "immutable_tag_refusals",
            "Pushes and deletes refused because they would move or remove an immutable tag",
            immutable_refusals.clone(),
        );
        let open_upload_refusals = Counter::default();
        registry.register(
            "open_upload_refusals",
            "Upload sessions refused because the account or client had \
             [limits] max_open_uploads_per_account open",
            open_upload_refusals.clone(),
        );
        registry.register(
            "retention_tags_deleted",
            "Tags deleted by retention policies",
            retention_tags_deleted.clone(),
        );
        Self {
            registry,
            gc,
            retention_runs,
            retention_failures,
            retention_tags_deleted,
            quota_refusals,
            immutable_refusals,
            open_upload_refusals,
            requests,
            latency,
            bytes_received,
            bytes_sent,
            uploads_in_progress,
            upload_requests_running,
            uploads_expired,
            upload_expiry_failures,
        }
    }
}

impl Metrics {
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}
