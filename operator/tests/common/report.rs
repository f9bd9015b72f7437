//! Helpers of the experiments: settings from the environment and result tables written
//! into their docs pages.

use std::path::Path;

/// The value of environment variable `var`, parsed, or `default`.
pub fn env_or<T: std::str::FromStr>(var: &str, default: T) -> T {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Where generated results end in a docs page.
pub const END: &str = "<!-- results:end -->";

/// `doc` with the text between `begin` and [`END`] replaced by `content`; `None` without
/// the markers.
pub fn splice(doc: &str, begin: &str, content: &str) -> Option<String> {
    let b = doc.find(begin)? + begin.len();
    let e = b + doc[b..].find(END)?;
    Some(format!(
        "{}\n{}\n{}",
        &doc[..b],
        content.trim_end(),
        &doc[e..]
    ))
}

/// Writes `bytes` to `path` through a temporary file, so an interrupted run never leaves
/// half a file.
pub fn write_atomically(path: &Path, bytes: &[u8]) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).unwrap_or_else(|e| panic!("writing {}: {e}", tmp.display()));
    std::fs::rename(&tmp, path).unwrap_or_else(|e| panic!("renaming to {}: {e}", path.display()));
}

/// The records of a JSONL file (one JSON object per line), for rewriting an experiment's
/// tables without running it again (`EXPERIMENT_TABLES_ONLY=1`).
pub fn read_records<T: serde::de::DeserializeOwned>(path: &Path) -> Vec<T> {
    let raw =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    raw.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).expect("a run record"))
        .collect()
}

/// Splices `tables` into the page at `doc_path` (when it has the markers) and prints them.
pub fn write_tables(doc_path: &Path, begin: &str, tables: &str) {
    println!("{tables}");
    if let Ok(doc) = std::fs::read_to_string(doc_path) {
        match splice(&doc, begin, tables) {
            Some(new) => write_atomically(doc_path, new.as_bytes()),
            None => println!(
                "{} has no result markers; tables not written",
                doc_path.display()
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splice_replaces_only_between_the_markers() {
        let begin = "<!-- results:begin -->";
        let doc = format!("head\n{begin}\nold\n{END}\ntail\n");
        let out = splice(&doc, begin, "new table\n").expect("markers");
        assert_eq!(out, format!("head\n{begin}\nnew table\n{END}\ntail\n"));
        assert!(splice("no markers", begin, "x").is_none());
    }
}
