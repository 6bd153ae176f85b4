//! Prometheus text-format metrics (placeholder until the metrics writer lands).
