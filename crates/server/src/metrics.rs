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
    /// Upload sessions removed by expiry.
    pub uploads_expired: Counter,
    /// Expired sessions whose data could not be removed (kept for the next run), and failed
    /// expiry runs.
    pub upload_expiry_failures: Counter,
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
            "uploads_expired",
            "Idle upload sessions removed with their partial data",
            uploads_expired.clone(),
        );
        registry.register(
            "upload_expiry_failures",
            "Expired upload sessions whose data could not be removed, and failed expiry runs",
            upload_expiry_failures.clone(),
        );
        Self {
            registry,
            requests,
            latency,
            bytes_received,
            bytes_sent,
            uploads_in_progress,
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
