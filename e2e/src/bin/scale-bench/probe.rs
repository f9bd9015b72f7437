//! Watching the operator process from outside: resident memory and CPU time from
//! `/proc/<pid>`, and its Prometheus metrics over plain HTTP.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// Linux reports process CPU time in USER_HZ ticks, which is 100 on every architecture
/// the kernel ABI supports for `/proc/<pid>/stat`.
const TICKS_PER_SECOND: f64 = 100.0;

/// One sample of the process.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    /// When it was taken.
    pub at: Instant,
    /// Resident set size (`VmRSS`).
    pub rss_kib: u64,
    /// User plus system CPU time in ticks.
    pub cpu_ticks: u64,
}

/// Why the process could not be sampled.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// Reading `/proc` failed (the process exited?).
    #[error("reading /proc/{pid}/{file}: {source}")]
    Proc {
        /// Process id.
        pid: u32,
        /// File under `/proc/<pid>`.
        file: &'static str,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A `/proc` file lacked the expected field.
    #[error("/proc/{pid}/{file} has no {field}")]
    Field {
        /// Process id.
        pid: u32,
        /// File under `/proc/<pid>`.
        file: &'static str,
        /// The field looked for.
        field: &'static str,
    },
    /// The metrics endpoint did not answer.
    #[error("scraping http://{addr}/metrics: {source}")]
    Scrape {
        /// Address scraped.
        addr: SocketAddr,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// Samples `pid` now.
pub fn sample(pid: u32) -> Result<Sample, ProbeError> {
    let read =
        |file: &'static str| {
            std::fs::read_to_string(format!("/proc/{pid}/{file}"))
                .map_err(|source| ProbeError::Proc { pid, file, source })
        };
    let status = read("status")?;
    let stat = read("stat")?;
    Ok(Sample {
        at: Instant::now(),
        rss_kib: vm_rss_kib(&status).ok_or(ProbeError::Field {
            pid,
            file: "status",
            field: "VmRSS",
        })?,
        cpu_ticks: cpu_ticks(&stat).ok_or(ProbeError::Field {
            pid,
            file: "stat",
            field: "utime/stime",
        })?,
    })
}

/// `VmRSS:   12345 kB` from `/proc/<pid>/status`.
fn vm_rss_kib(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// utime + stime (fields 14 and 15) from `/proc/<pid>/stat`; the command name in field 2
/// may hold spaces, so fields are counted after its closing parenthesis.
fn cpu_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After ")" the first field is field 3 (state): utime is field 14, index 11.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// CPU seconds between two samples.
pub fn cpu_seconds(from: &Sample, to: &Sample) -> f64 {
    // Tick counts of a benchmark run are far below 2^52.
    #[allow(clippy::cast_precision_loss)]
    let ticks = to.cpu_ticks.saturating_sub(from.cpu_ticks) as f64;
    ticks / TICKS_PER_SECOND
}

/// The body of `GET /metrics` (HTTP/1.0, so the server closes after answering).
pub fn scrape(addr: SocketAddr) -> Result<String, ProbeError> {
    let err = |source| ProbeError::Scrape { addr, source };
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).map_err(err)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(err)?;
    s.write_all(format!("GET /metrics HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
        .map_err(err)?;
    let mut out = String::new();
    s.read_to_string(&mut out).map_err(err)?;
    Ok(out
        .split_once("\r\n\r\n")
        .map_or(out.as_str(), |(_, body)| body)
        .to_string())
}

/// Sums of a metric family by the value of one label, for example
/// `controller_runtime_reconcile_total` by `controller` and `result`.
pub fn by_labels(text: &str, metric: &str, labels: &[&str]) -> BTreeMap<Vec<String>, f64> {
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix(metric) else {
            continue;
        };
        let Some(rest) = rest.strip_prefix('{') else {
            continue;
        };
        let Some((inner, value)) = rest.split_once('}') else {
            continue;
        };
        let Ok(value) = value.trim().parse::<f64>() else {
            continue;
        };
        let pairs: BTreeMap<&str, &str> = inner
            .split(',')
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.trim(), v.trim().trim_matches('"')))
            .collect();
        let key: Vec<String> = labels
            .iter()
            .map(|l| pairs.get(l).copied().unwrap_or_default().to_string())
            .collect();
        *out.entry(key).or_insert(0.0) += value;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_rss_and_cpu_from_proc_text() {
        let status =
            "Name:\tfedsky-operator\nVmPeak:\t  999 kB\nVmRSS:\t   51234 kB\nThreads:\t9\n";
        assert_eq!(vm_rss_kib(status), Some(51234));
        let stat = "4242 (fedsky (op) x) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 9 0";
        assert_eq!(cpu_ticks(stat), Some(300));
        assert_eq!(vm_rss_kib("Name: x\n"), None);
    }

    #[test]
    fn this_process_can_be_sampled() {
        let s = sample(std::process::id()).expect("sample self");
        assert!(s.rss_kib > 0);
    }

    #[test]
    fn metric_families_are_summed_by_label() {
        let text = "# TYPE controller_runtime_reconcile counter\n\
            controller_runtime_reconcile_total{controller=\"federatedjob\",result=\"success\"} 10\n\
            controller_runtime_reconcile_total{controller=\"federatedjob\",result=\"error\"} 2\n\
            controller_runtime_reconcile_total{controller=\"participantpool\",result=\"success\"} 3\n\
            controller_runtime_reconcile_time_seconds_sum{controller=\"federatedjob\"} 1.5\n";
        let m = by_labels(
            text,
            "controller_runtime_reconcile_total",
            &["controller", "result"],
        );
        assert_eq!(
            m[&vec!["federatedjob".to_string(), "error".to_string()]],
            2.0
        );
        assert_eq!(m.len(), 3);
        let by_controller = by_labels(text, "controller_runtime_reconcile_total", &["controller"]);
        assert_eq!(by_controller[&vec!["federatedjob".to_string()]], 12.0);
        let sum = by_labels(
            text,
            "controller_runtime_reconcile_time_seconds_sum",
            &["controller"],
        );
        assert_eq!(sum[&vec!["federatedjob".to_string()]], 1.5);
    }
}
