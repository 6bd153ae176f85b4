//! `GET /metrics`: the server's Prometheus series (text exposition format 0.0.4).
//!
//! Labels carry route paths, status codes, failure kinds and model (vector) names only: never
//! request text, never a request id. Counters are monotonic for the life of the process.
//!
//! | Name (prefix `embed_collections_serve_`) | Type | Labels | Meaning |
//! |---|---|---|---|
//! | `requests_total` | counter | `route`, `status` | Requests answered. |
//! | `failures_total` | counter | `kind` | Requests answered with an error, by kind (`validation`, `overloaded`, `backend`, …). |
//! | `request_duration_seconds` | histogram | `route` | Time from the request's arrival to its answer. |
//! | `queue_duration_seconds` | histogram | — | Time a request's inputs waited for their batch. |
//! | `inference_duration_seconds` | histogram | `model` | Time one cross-request batch took on the model. |
//! | `batch_inputs` | histogram | `model` | Inputs per cross-request batch. |
//! | `inputs_total` | counter | `model` | Inputs run through the model. |
//! | `tokens_total` | counter | `model` | Tokens run through the model (without padding). |
//! | `cancelled_total` | counter | — | Queued requests dropped because their client was gone. |
//! | `inputs_in_flight` | gauge | — | Inputs accepted and not yet answered. |
//! | `ready` | gauge | — | 1 once every model is loaded and warmed up. |

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

const PREFIX: &str = "embed_collections_serve_";

/// Seconds buckets: 1 ms to 60 s.
const SECONDS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];
/// Inputs-per-batch buckets.
const INPUTS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0];

#[derive(Clone, Debug)]
struct Histogram {
    bounds: &'static [f64],
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Self {
        Self {
            bounds,
            counts: vec![0; bounds.len()],
            sum: 0.0,
            count: 0,
        }
    }

    fn observe(&mut self, value: f64) {
        for (bound, count) in self.bounds.iter().zip(&mut self.counts) {
            if value <= *bound {
                *count += 1;
            }
        }
        self.sum += value;
        self.count += 1;
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        for (bound, count) in self.bounds.iter().zip(&self.counts) {
            let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{bound}\"}} {count}");
        }
        let _ = writeln!(
            out,
            "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {}",
            self.count
        );
        let braces = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{labels}}}")
        };
        let _ = writeln!(out, "{name}_sum{braces} {}", self.sum);
        let _ = writeln!(out, "{name}_count{braces} {}", self.count);
    }
}

#[derive(Default)]
struct Series {
    requests: BTreeMap<(String, u16), u64>,
    failures: BTreeMap<String, u64>,
    request_seconds: BTreeMap<String, Histogram>,
    queue_seconds: Option<Histogram>,
    inference_seconds: BTreeMap<String, Histogram>,
    batch_inputs: BTreeMap<String, Histogram>,
    inputs: BTreeMap<String, u64>,
    tokens: BTreeMap<String, u64>,
}

/// The server's counters; shared by the routes and the batchers.
#[derive(Default)]
pub struct Metrics {
    series: Mutex<Series>,
    cancelled: AtomicU64,
}

impl Metrics {
    fn with<T>(&self, f: impl FnOnce(&mut Series) -> T) -> T {
        f(&mut self.series.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// A request answered on `route` with `status` after `elapsed`.
    pub fn observe_request(&self, route: &str, status: u16, elapsed: Duration) {
        self.with(|s| {
            *s.requests.entry((route.to_string(), status)).or_default() += 1;
            s.request_seconds
                .entry(route.to_string())
                .or_insert_with(|| Histogram::new(SECONDS))
                .observe(elapsed.as_secs_f64());
        });
    }

    /// A request failed with an error of `kind`.
    pub fn count_failure(&self, kind: &str) {
        self.with(|s| *s.failures.entry(kind.to_string()).or_default() += 1);
    }

    /// A job waited `waited` for its batch.
    pub fn observe_queue(&self, waited: Duration) {
        self.with(|s| {
            s.queue_seconds
                .get_or_insert_with(|| Histogram::new(SECONDS))
                .observe(waited.as_secs_f64())
        });
    }

    /// A batch of `inputs` inputs and `tokens` tokens took `elapsed` on `model`.
    pub fn observe_batch(&self, model: &str, elapsed: Duration, inputs: usize, tokens: usize) {
        self.with(|s| {
            s.inference_seconds
                .entry(model.to_string())
                .or_insert_with(|| Histogram::new(SECONDS))
                .observe(elapsed.as_secs_f64());
            s.batch_inputs
                .entry(model.to_string())
                .or_insert_with(|| Histogram::new(INPUTS))
                .observe(inputs as f64);
            *s.inputs.entry(model.to_string()).or_default() += inputs as u64;
            *s.tokens.entry(model.to_string()).or_default() += tokens as u64;
        });
    }

    /// A queued job was dropped because its requester was gone.
    pub fn count_cancelled(&self) {
        self.cancelled.fetch_add(1, Ordering::Relaxed);
    }

    pub fn cancelled(&self) -> u64 {
        self.cancelled.load(Ordering::Relaxed)
    }

    /// The exposition text; `in_flight` and `ready` are read by the caller at render time.
    pub fn render(&self, in_flight: usize, ready: bool) -> String {
        let mut out = String::new();
        let head = |out: &mut String, name: &str, kind: &str, help: &str| {
            let _ = writeln!(out, "# HELP {PREFIX}{name} {help}");
            let _ = writeln!(out, "# TYPE {PREFIX}{name} {kind}");
        };
        self.with(|s| {
            head(&mut out, "requests_total", "counter", "Requests answered.");
            for ((route, status), n) in &s.requests {
                let _ = writeln!(
                    out,
                    "{PREFIX}requests_total{{route=\"{}\",status=\"{status}\"}} {n}",
                    escape(route)
                );
            }
            head(
                &mut out,
                "failures_total",
                "counter",
                "Requests answered with an error, by kind.",
            );
            for (kind, n) in &s.failures {
                let _ = writeln!(
                    out,
                    "{PREFIX}failures_total{{kind=\"{}\"}} {n}",
                    escape(kind)
                );
            }
            head(
                &mut out,
                "request_duration_seconds",
                "histogram",
                "Time from a request's arrival to its answer.",
            );
            for (route, histogram) in &s.request_seconds {
                histogram.render(
                    &mut out,
                    &format!("{PREFIX}request_duration_seconds"),
                    &format!("route=\"{}\"", escape(route)),
                );
            }
            head(
                &mut out,
                "queue_duration_seconds",
                "histogram",
                "Time a request's inputs waited for their batch.",
            );
            s.queue_seconds
                .clone()
                .unwrap_or_else(|| Histogram::new(SECONDS))
                .render(&mut out, &format!("{PREFIX}queue_duration_seconds"), "");
            head(
                &mut out,
                "inference_duration_seconds",
                "histogram",
                "Time one cross-request batch took on the model.",
            );
            for (model, histogram) in &s.inference_seconds {
                histogram.render(
                    &mut out,
                    &format!("{PREFIX}inference_duration_seconds"),
                    &format!("model=\"{}\"", escape(model)),
                );
            }
            head(
                &mut out,
                "batch_inputs",
                "histogram",
                "Inputs per cross-request batch.",
            );
            for (model, histogram) in &s.batch_inputs {
                histogram.render(
                    &mut out,
                    &format!("{PREFIX}batch_inputs"),
                    &format!("model=\"{}\"", escape(model)),
                );
            }
            for (name, help, values) in [
                ("inputs_total", "Inputs run through the model.", &s.inputs),
                (
                    "tokens_total",
                    "Tokens run through the model (without padding).",
                    &s.tokens,
                ),
            ] {
                head(&mut out, name, "counter", help);
                for (model, n) in values {
                    let _ = writeln!(out, "{PREFIX}{name}{{model=\"{}\"}} {n}", escape(model));
                }
            }
        });
        head(
            &mut out,
            "cancelled_total",
            "counter",
            "Queued requests dropped because their client was gone.",
        );
        let _ = writeln!(out, "{PREFIX}cancelled_total {}", self.cancelled());
        head(
            &mut out,
            "inputs_in_flight",
            "gauge",
            "Inputs accepted and not yet answered.",
        );
        let _ = writeln!(out, "{PREFIX}inputs_in_flight {in_flight}");
        head(
            &mut out,
            "ready",
            "gauge",
            "1 once every model is loaded and warmed up.",
        );
        let _ = writeln!(out, "{PREFIX}ready {}", u8::from(ready));
        out
    }
}

/// A label value escaped per the text format.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative_and_end_with_the_count() {
        let metrics = Metrics::default();
        for ms in [1, 3, 3, 200] {
            metrics.observe_request("/embed", 200, Duration::from_millis(ms));
        }
        let text = metrics.render(0, true);
        let bucket = |le: &str| {
            let prefix = format!(
                "embed_collections_serve_request_duration_seconds_bucket{{route=\"/embed\",le=\"{le}\"}} "
            );
            text.lines()
                .find_map(|l| l.strip_prefix(prefix.as_str()))
                .unwrap_or_else(|| panic!("no bucket {le}: {text}"))
                .to_string()
        };
        assert_eq!(bucket("0.001"), "1");
        assert_eq!(bucket("0.005"), "3");
        assert_eq!(bucket("0.25"), "4");
        assert_eq!(bucket("+Inf"), "4");
        assert!(text
            .contains("embed_collections_serve_requests_total{route=\"/embed\",status=\"200\"} 4"));
    }
}
