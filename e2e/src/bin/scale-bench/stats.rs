//! Percentiles and the printed table. Pure.

use std::time::Duration;

/// Distribution of one latency over the jobs that reached the stage.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    /// Jobs that reached the stage.
    pub reached: usize,
    /// Median.
    pub p50: Duration,
    /// 90th percentile.
    pub p90: Duration,
    /// 99th percentile.
    pub p99: Duration,
    /// Slowest.
    pub max: Duration,
}

/// Nearest-rank percentile of sorted values (`p` in 0..=100): the smallest value with at
/// least `p` % of the values at or below it.
pub fn percentile(sorted: &[Duration], p: f64) -> Option<Duration> {
    if sorted.is_empty() {
        return None;
    }
    // Sizes here are far below 2^52, so the float round trip is exact.
    #[allow(
        clippy::cast_precision_loss,
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss
    )]
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.clamp(1, sorted.len()) - 1).copied()
}

/// Summary of the values, `None` when there are none.
pub fn summarize(mut values: Vec<Duration>) -> Option<Summary> {
    values.sort_unstable();
    Some(Summary {
        reached: values.len(),
        p50: percentile(&values, 50.0)?,
        p90: percentile(&values, 90.0)?,
        p99: percentile(&values, 99.0)?,
        max: *values.last()?,
    })
}

fn secs(d: Duration) -> String {
    format!("{:.3} s", d.as_secs_f64())
}

/// One row of the latency table: `| what | reached/total | p50 | p90 | p99 | max |`.
pub fn latency_row(what: &str, total: usize, summary: Option<&Summary>) -> String {
    match summary {
        Some(s) => format!(
            "| {what} | {}/{total} | {} | {} | {} | {} |",
            s.reached,
            secs(s.p50),
            secs(s.p90),
            secs(s.p99),
            secs(s.max)
        ),
        None => format!("| {what} | 0/{total} | – | – | – | – |"),
    }
}

/// Header of the latency table.
pub const LATENCY_HEADER: &str =
    "| latency | jobs | p50 | p90 | p99 | max |\n| --- | ---: | ---: | ---: | ---: | ---: |";

/// Median of samples (the upper one of an even count), `None` when empty.
pub fn median(mut values: Vec<u64>) -> Option<u64> {
    values.sort_unstable();
    values.get(values.len() / 2).copied()
}

/// KiB in decimal megabytes, the unit of the target (150 MB), with one decimal.
pub fn mb(kib: u64) -> String {
    format!("{:.1} MB", mb_value(kib))
}

/// KiB in decimal megabytes.
pub fn mb_value(kib: u64) -> f64 {
    // Memory sizes are far below 2^52 bytes.
    #[allow(clippy::cast_precision_loss)]
    let bytes = (kib * 1024) as f64;
    bytes / 1e6
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: &[u64]) -> Vec<Duration> {
        v.iter().map(|&x| Duration::from_millis(x)).collect()
    }

    #[test]
    fn nearest_rank_percentiles() {
        let v = ms(&(1..=100).collect::<Vec<_>>());
        assert_eq!(percentile(&v, 50.0), Some(Duration::from_millis(50)));
        assert_eq!(percentile(&v, 99.0), Some(Duration::from_millis(99)));
        assert_eq!(percentile(&v, 100.0), Some(Duration::from_millis(100)));
        assert_eq!(percentile(&v, 0.0), Some(Duration::from_millis(1)));
        let one = ms(&[7]);
        assert_eq!(percentile(&one, 99.0), Some(Duration::from_millis(7)));
        assert_eq!(percentile(&[], 50.0), None);
    }

    #[test]
    fn summary_sorts_and_counts() {
        let s = summarize(ms(&[30, 10, 20])).expect("summary");
        assert_eq!(s.reached, 3);
        assert_eq!(s.p50, Duration::from_millis(20));
        assert_eq!(s.max, Duration::from_millis(30));
        assert!(summarize(Vec::new()).is_none());
    }

    #[test]
    fn rows_show_how_many_jobs_reached_the_stage() {
        let s = summarize(ms(&[1500])).expect("summary");
        assert_eq!(
            latency_row("Placed", 2, Some(&s)),
            "| Placed | 1/2 | 1.500 s | 1.500 s | 1.500 s | 1.500 s |"
        );
        assert!(latency_row("Placed", 2, None).contains("0/2"));
        assert_eq!(median(vec![3, 1, 2]), Some(2));
        assert_eq!(mb(146_485), "150.0 MB");
    }
}
