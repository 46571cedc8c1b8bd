//! Request metrics in the Prometheus text format: counts by route and status, latency histograms.

use std::collections::BTreeMap;
use std::sync::Mutex;

/// Upper bounds of the latency histogram, in seconds.
const BUCKETS: [f64; 10] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0];

/// Request counts by route and status, and latency histograms by route.
#[derive(Debug, Default)]
pub(crate) struct Metrics {
    inner: Mutex<MetricsInner>,
}

#[derive(Debug, Default)]
struct MetricsInner {
    requests: BTreeMap<(String, u16), u64>,
    latency: BTreeMap<String, ([u64; BUCKETS.len()], u64, f64)>,
}

impl Metrics {
    pub(super) fn record(&self, route: &str, status: u16, seconds: f64) {
        let Ok(mut m) = self.inner.lock() else { return };
        *m.requests.entry((route.to_string(), status)).or_default() += 1;
        let (buckets, count, sum) = m.latency.entry(route.to_string()).or_default();
        for (b, upper) in buckets.iter_mut().zip(BUCKETS) {
            if seconds <= upper {
                *b += 1;
            }
        }
        *count += 1;
        *sum += seconds;
    }

    /// The Prometheus text exposition.
    pub(crate) fn render(&self) -> String {
        let Ok(m) = self.inner.lock() else { return String::new() };
        let mut out =
            String::from("# HELP twin_requests_total Requests answered, by route and status.\n# TYPE twin_requests_total counter\n");
        for ((route, status), n) in &m.requests {
            out += &format!("twin_requests_total{{route=\"{route}\",status=\"{status}\"}} {n}\n");
        }
        out += "# HELP twin_request_seconds Time to answer, by route.\n# TYPE twin_request_seconds histogram\n";
        for (route, (buckets, count, sum)) in &m.latency {
            for (b, upper) in buckets.iter().zip(BUCKETS) {
                out += &format!("twin_request_seconds_bucket{{route=\"{route}\",le=\"{upper}\"}} {b}\n");
            }
            out += &format!("twin_request_seconds_bucket{{route=\"{route}\",le=\"+Inf\"}} {count}\n");
            out +=
                &format!("twin_request_seconds_sum{{route=\"{route}\"}} {sum}\ntwin_request_seconds_count{{route=\"{route}\"}} {count}\n");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_count_and_bucket_by_route() {
        let m = Metrics::default();
        m.record("/search", 200, 0.003);
        m.record("/search", 200, 0.2);
        m.record("/search", 400, 0.0005);
        let text = m.render();
        assert!(text.contains("twin_requests_total{route=\"/search\",status=\"200\"} 2\n"), "{text}");
        assert!(text.contains("twin_requests_total{route=\"/search\",status=\"400\"} 1\n"), "{text}");
        // Buckets are cumulative: each bound counts every request at or below it.
        assert!(text.contains("le=\"0.001\"} 1\n") && text.contains("le=\"0.005\"} 2\n") && text.contains("le=\"0.25\"} 3\n"), "{text}");
        assert!(text.contains("twin_request_seconds_count{route=\"/search\"} 3\n"), "{text}");
    }
}
