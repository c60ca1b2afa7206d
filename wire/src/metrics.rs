//! Server metrics in the Prometheus text format.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

use valori_cluster::NodeStatus;
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
    /// `None` when the engine serves no reads (it failed, or a diverged
    /// replica fenced itself): the other metrics still render.
    pub rows: Option<RowGauges>,
}

/// The engine's collection and row counts.
#[derive(Debug, Default)]
pub struct RowGauges {
    pub collections: u64,
    pub rows: u64,
    pub live_rows: u64,
    pub indexed_rows: u64,
}

impl Metrics {
    /// The metrics text; with `cluster`, this node's replication gauges
    /// ([`render_cluster`]).
    pub fn render(
        &self,
        gauges: &EngineGauges,
        log_writes: &Histogram,
        cluster: Option<&NodeStatus>,
    ) -> String {
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
        if let Some(rows) = &gauges.rows {
            counter(
                "valori_collections",
                "Collections.",
                "gauge",
                rows.collections,
            );
            counter(
                "valori_rows",
                "Rows in all collections, deleted ones included.",
                "gauge",
                rows.rows,
            );
            counter(
                "valori_live_rows",
                "Rows not deleted.",
                "gauge",
                rows.live_rows,
            );
            counter(
                "valori_index_rows",
                "Rows linked into the HNSW indexes.",
                "gauge",
                rows.indexed_rows,
            );
        }
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
        if let Some(status) = cluster {
            render_cluster(&mut out, status);
        }
        out
    }
}

/// The roles a node of a cluster can have, each a series of
/// `valori_cluster_role` (1 for the node's role, 0 for the others).
const ROLES: [&str; 5] = ["leader", "follower", "candidate", "learner", "shutdown"];

/// A node's replication gauges: role, term, commit and applied index, the
/// state hash and log root at the applied index, its own apply lag, the leader's lag per follower (entries the follower has
/// not matched, known on the leader only), whether this replica found
/// itself diverged from the cluster, and how many snapshots it installed.
pub fn render_cluster(out: &mut String, s: &NodeStatus) {
    let mut gauge = |name: &str, help: &str, series: &[(String, u64)]| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
        for (labels, value) in series {
            let _ = writeln!(out, "{name}{labels} {value}");
        }
    };
    let plain = |v: u64| vec![(String::new(), v)];
    gauge(
        "valori_cluster_node_id",
        "This node's id in its cluster.",
        &plain(s.node_id),
    );
    let roles: Vec<(String, u64)> = ROLES
        .iter()
        .map(|r| (format!("{{role=\"{r}\"}}"), u64::from(s.role == *r)))
        .collect();
    gauge(
        "valori_cluster_role",
        "1 for this node's Raft role.",
        &roles,
    );
    gauge("valori_cluster_term", "Current Raft term.", &plain(s.term));
    gauge(
        "valori_cluster_commit_index",
        "Highest Raft index this node knows committed.",
        &plain(s.commit_index.unwrap_or(0)),
    );
    gauge(
        "valori_cluster_applied_index",
        "Raft index this node has applied to its engine.",
        &plain(s.applied_index.unwrap_or(0)),
    );
    // The proof of the applied state, as labels of a constant series (an
    // info metric): a hash is no number, and a scraper can then compare
    // nodes' hashes at the same applied index.
    if let (Some(state_hash), Some(log_root)) = (&s.state_hash, &s.log_root) {
        let labels = format!(
            "{{applied_index=\"{}\",events=\"{}\",state_hash=\"{state_hash}\",log_root=\"{log_root}\"}}",
            s.applied_index.unwrap_or(0),
            s.events
        );
        gauge(
            "valori_cluster_applied_state",
            "1, labelled with this node's applied Raft index and the event count, state hash and log root there.",
            &[(labels, 1)],
        );
    }
    gauge(
        "valori_cluster_last_log_index",
        "Last Raft index in this node's log.",
        &plain(s.last_log_index.unwrap_or(0)),
    );
    gauge(
        "valori_cluster_lag_entries",
        "Entries in this node's log not yet applied.",
        &plain(s.lag),
    );
    let lags: Vec<(String, u64)> = s
        .follower_lag
        .iter()
        .map(|(id, lag)| (format!("{{follower=\"{id}\"}}"), *lag))
        .collect();
    gauge(
        "valori_cluster_follower_lag_entries",
        "On the leader: entries each follower has not yet matched.",
        &lags,
    );
    gauge(
        "valori_cluster_voters",
        "Voters in the membership.",
        &plain(s.voters.len() as u64),
    );
    gauge(
        "valori_cluster_learners",
        "Learners in the membership.",
        &plain(s.learners.len() as u64),
    );
    gauge(
        "valori_cluster_diverged",
        "1 when this replica found its state differs from the cluster's at the same index and stopped serving.",
        &plain(u64::from(s.diverged.is_some())),
    );
    let name = "valori_cluster_snapshots_installed_total";
    let _ = writeln!(
        out,
        "# HELP {name} Snapshots this node received from the leader and installed since it started (it was behind the leader's retired log).\n# TYPE {name} counter\n{name} {}",
        s.snapshots_installed
    );
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
