//! Server metrics in the Prometheus text format.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

pub use valori_engine::stats::Histogram;

/// Counters and histograms of one server.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Durable writes through REST, from request to acknowledgement.
    pub commit_latency: Histogram,
    /// Searches and queries through REST.
    pub search_latency: Histogram,
    pub http_requests: AtomicU64,
    pub http_client_errors: AtomicU64,
    pub http_server_errors: AtomicU64,
}

/// Gauges read from the engine when metrics are scraped.
#[derive(Debug, Default)]
pub struct EngineGauges {
    pub events: u64,
    pub collections: u64,
    pub rows: u64,
    pub live_rows: u64,
    pub indexed_rows: u64,
}

impl Metrics {
    pub fn render(&self, gauges: &EngineGauges, log_writes: &Histogram) -> String {
        let mut out = String::new();
        let mut counter = |name: &str, help: &str, kind: &str, value: u64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
            );
        };
        counter(
            "valori_events_committed_total",
            "Events in the durable log.",
            "counter",
            gauges.events,
        );
        counter(
            "valori_collections",
            "Collections.",
            "gauge",
            gauges.collections,
        );
        counter(
            "valori_rows",
            "Rows in all collections, deleted ones included.",
            "gauge",
            gauges.rows,
        );
        counter(
            "valori_live_rows",
            "Rows not deleted.",
            "gauge",
            gauges.live_rows,
        );
        counter(
            "valori_index_rows",
            "Rows linked into the HNSW indexes.",
            "gauge",
            gauges.indexed_rows,
        );
        counter(
            "valori_http_requests_total",
            "REST requests answered.",
            "counter",
            self.http_requests.load(Ordering::Relaxed),
        );
        counter(
            "valori_http_client_errors_total",
            "REST requests answered with a 4xx status.",
            "counter",
            self.http_client_errors.load(Ordering::Relaxed),
        );
        counter(
            "valori_http_server_errors_total",
            "REST requests answered with a 5xx status.",
            "counter",
            self.http_server_errors.load(Ordering::Relaxed),
        );
        render_histogram(
            &mut out,
            &self.commit_latency,
            "valori_commit_seconds",
            "Latency of durable REST writes, request to acknowledgement.",
        );
        render_histogram(
            &mut out,
            log_writes,
            "valori_log_write_seconds",
            "Latency of the log's group writes, each a write and an fsync.",
        );
        render_histogram(
            &mut out,
            &self.search_latency,
            "valori_search_seconds",
            "Latency of REST searches and queries.",
        );
        out
    }
}

fn render_histogram(out: &mut String, h: &Histogram, name: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
    for (bound, count) in h.cumulative() {
        let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {count}");
    }
    let total = h.count();
    let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {total}");
    let _ = writeln!(out, "{name}_sum {}\n{name}_count {total}", h.sum_seconds());
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn histograms_render_in_prometheus_form() {
        let h = Histogram::default();
        h.observe(Duration::from_micros(50));
        h.observe(Duration::from_millis(3));
        h.observe(Duration::from_secs(10));
        let mut out = String::new();
        render_histogram(&mut out, &h, "x", "help");
        assert!(out.contains("# TYPE x histogram\n"), "{out}");
        assert!(out.contains("x_bucket{le=\"0.0001\"} 1\n"), "{out}");
        assert!(out.contains("x_bucket{le=\"0.005\"} 2\n"), "{out}");
        assert!(out.contains("x_bucket{le=\"5\"} 2\n"), "{out}");
        assert!(out.contains("x_bucket{le=\"+Inf\"} 3\n"), "{out}");
        assert!(out.contains("x_count 3\n"), "{out}");
    }
}
