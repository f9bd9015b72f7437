//! A `/metrics` response (OpenMetrics or Prometheus text): its metric families, their
//! types, and the label names their samples carry.

use std::collections::{BTreeMap, BTreeSet};

/// One metric family.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Family {
    /// `counter`, `gauge`, `histogram`, … (`unknown` without a `# TYPE` line).
    pub kind: String,
    /// Label names on its samples; `None` while it has none (some clients print the
    /// `# TYPE` of a family with no series yet; prometheus-client leaves such a family out).
    pub labels: Option<BTreeSet<String>>,
}

/// A parsed scrape.
#[derive(Debug, Clone, Default)]
pub struct Scrape {
    /// Families by name.
    pub families: BTreeMap<String, Family>,
}

/// Series-name suffixes and the family types they belong to (OpenMetrics' naming).
const SUFFIXES: &[(&str, &[&str])] = &[
    ("", &["gauge", "unknown", "untyped", "stateset"]),
    ("_total", &["counter"]),
    ("_created", &["counter", "histogram", "summary"]),
    ("_bucket", &["histogram", "gaugehistogram"]),
    ("_sum", &["histogram", "summary"]),
    ("_count", &["histogram", "summary"]),
    ("_gsum", &["gaugehistogram"]),
    ("_gcount", &["gaugehistogram"]),
    ("_info", &["info"]),
];

/// The label names of a sample line's `{…}`.
fn sample_labels(line: &str) -> (String, BTreeSet<String>) {
    let name_end = line.find(['{', ' ']).unwrap_or(line.len());
    let name = line[..name_end].to_string();
    let mut labels = BTreeSet::new();
    if line[name_end..].starts_with('{') {
        let mut rest = &line[name_end + 1..];
        loop {
            rest = rest.trim_start_matches([',', ' ']);
            if rest.starts_with('}') || rest.is_empty() {
                break;
            }
            let Some(eq) = rest.find('=') else { break };
            labels.insert(rest[..eq].trim().to_string());
            // Skip the quoted value, escapes included.
            let mut chars = rest[eq + 1..].char_indices();
            let _opening = chars.next();
            let mut end = rest.len() - eq - 1;
            let mut escaped = false;
            for (i, c) in chars {
                match (escaped, c) {
                    (true, _) => escaped = false,
                    (false, '\\') => escaped = true,
                    (false, '"') => {
                        end = i + 1;
                        break;
                    }
                    _ => {}
                }
            }
            rest = &rest[eq + 1 + end..];
        }
    }
    (name, labels)
}

impl Scrape {
    /// Parses an exposition.
    pub fn parse(text: &str) -> Self {
        let mut families: BTreeMap<String, Family> = BTreeMap::new();
        let mut samples: Vec<(String, BTreeSet<String>)> = Vec::new();
        for line in text.lines() {
            if let Some(t) = line.strip_prefix("# TYPE ") {
                let mut parts = t.split_whitespace();
                if let (Some(name), Some(kind)) = (parts.next(), parts.next()) {
                    families.entry(name.to_string()).or_default().kind = kind.to_string();
                }
            } else if !line.starts_with('#') && !line.trim().is_empty() {
                samples.push(sample_labels(line));
            }
        }
        let mut scrape = Self { families };
        for (name, labels) in samples {
            let family = match scrape.family_of(&name) {
                Some(f) => f.to_string(),
                None => {
                    // A sample without a `# TYPE` line.
                    scrape.families.entry(name.clone()).or_default().kind = "unknown".into();
                    name
                }
            };
            if let Some(f) = scrape.families.get_mut(&family) {
                f.labels.get_or_insert_with(BTreeSet::new).extend(labels);
            }
        }
        scrape
    }

    /// The family a series name belongs to: `x` for `x_total` of counter `x`, for `x_bucket`,
    /// `x_sum` and `x_count` of histogram `x`, for gauge `x` itself.
    pub fn family_of(&self, series: &str) -> Option<&str> {
        // Prometheus' text format names a counter's family `x_total` itself.
        if let Some((name, f)) = self.families.get_key_value(series)
            && f.kind == "counter"
            && series.ends_with("_total")
        {
            return Some(name.as_str());
        }
        SUFFIXES.iter().find_map(|(suffix, kinds)| {
            let base = series.strip_suffix(suffix)?;
            let (name, f) = self.families.get_key_value(base)?;
            kinds.contains(&f.kind.as_str()).then_some(name.as_str())
        })
    }

    /// The family of `series`, if this scrape has it.
    pub fn family(&self, series: &str) -> Option<&Family> {
        self.family_of(series).and_then(|n| self.families.get(n))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = r#"# HELP controller_runtime_reconcile Total reconciliations.
# TYPE controller_runtime_reconcile counter
controller_runtime_reconcile_total{controller="a",result="success"} 3
# TYPE controller_runtime_reconcile_errors counter
# TYPE t histogram
t_sum{controller="a"} 0.1
t_count{controller="a"} 2
t_bucket{le="0.5",controller="a, \"b\""} 2
# TYPE g gauge
g 1
# TYPE old_total counter
old_total 4
untyped_thing{x="1"} 2
# EOF
"#;

    #[test]
    fn maps_series_names_to_their_families() {
        let s = Scrape::parse(TEXT);
        assert_eq!(
            s.family_of("controller_runtime_reconcile_total"),
            Some("controller_runtime_reconcile")
        );
        // A counter's series is `_total`; its bare name is not a series.
        assert_eq!(s.family_of("controller_runtime_reconcile"), None);
        // Registered without series yet: it exists, its labels are unknown.
        let errors = s
            .family("controller_runtime_reconcile_errors_total")
            .expect("an empty family exists");
        assert_eq!(errors.labels, None);
        for series in ["t_bucket", "t_sum", "t_count"] {
            assert_eq!(s.family_of(series), Some("t"), "{series}");
        }
        assert_eq!(s.family_of("t"), None, "a histogram has no bare series");
        assert_eq!(s.family_of("g"), Some("g"));
        assert_eq!(s.family_of("g_total"), None);
        assert_eq!(s.family_of("old_total"), Some("old_total"));
        assert_eq!(s.family_of("untyped_thing"), Some("untyped_thing"));
        let labels = s.family("t_bucket").and_then(|f| f.labels.clone());
        assert_eq!(
            labels,
            Some(["controller", "le"].map(String::from).into_iter().collect())
        );
    }
}
