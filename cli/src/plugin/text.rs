//! Small text-layout helpers shared by the plugin's reports.

/// `v` with `decimals`, or `-` when absent or not finite.
pub fn num(v: Option<f64>, decimals: usize) -> String {
    match v {
        Some(v) if v.is_finite() => format!("{v:.decimals$}"),
        _ => "-".into(),
    }
}

/// Prefixes every line of `text` with `pad`.
pub fn indent(text: &str, pad: &str) -> String {
    text.lines().map(|l| format!("{pad}{l}\n")).collect()
}

fn is_number(cell: &str) -> bool {
    cell.trim_start_matches(['-', '+'])
        .replace(',', "")
        .parse::<f64>()
        .is_ok()
}

/// A table with a header row. Columns whose cells are all numbers (or `-` for a missing
/// one) are right-aligned, so a gap in a metric does not break its column's alignment.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let width: Vec<usize> = header
        .iter()
        .enumerate()
        .map(|(c, h)| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .chain(std::iter::once(h.chars().count()))
                .max()
                .unwrap_or(0)
        })
        .collect();
    let numeric: Vec<bool> = (0..header.len())
        .map(|c| {
            let cells: Vec<&str> = rows
                .iter()
                .map(|r| r.get(c).map_or("-", String::as_str))
                .collect();
            cells.iter().any(|s| is_number(s)) && cells.iter().all(|s| *s == "-" || is_number(s))
        })
        .collect();
    let line = |cells: &[&str]| {
        let mut out = String::new();
        for (c, cell) in cells.iter().enumerate() {
            if c > 0 {
                out.push_str("  ");
            }
            let pad = " ".repeat(width[c].saturating_sub(cell.chars().count()));
            if numeric[c] {
                out.push_str(&pad);
                out.push_str(cell);
            } else {
                out.push_str(cell);
                out.push_str(&pad);
            }
        }
        out.trim_end().to_string() + "\n"
    };
    let mut out = line(header);
    for row in rows {
        let cells: Vec<&str> = (0..header.len())
            .map(|c| row.get(c).map_or("", String::as_str))
            .collect();
        out.push_str(&line(&cells));
    }
    out
}

/// Rows aligned in columns without a header, all left-aligned.
pub fn columns(rows: &[Vec<String>]) -> Vec<String> {
    let n = rows.iter().map(Vec::len).max().unwrap_or(0);
    let width: Vec<usize> = (0..n)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    rows.iter()
        .map(|row| {
            let mut line = String::new();
            for (c, cell) in row.iter().enumerate() {
                if c > 0 {
                    line.push_str("  ");
                }
                line.push_str(cell);
                line.push_str(&" ".repeat(width[c].saturating_sub(cell.chars().count())));
            }
            line.trim_end().to_string()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_right_dashes_keep_the_column_numeric_text_left() {
        let t = table(
            &["#", "NAME", "ACC"],
            &[
                vec!["*1".into(), "a".into(), "0.50".into()],
                vec!["2".into(), "long".into(), "-".into()],
                vec!["3".into(), "b".into(), "10.25".into()],
            ],
        );
        assert_eq!(
            t,
            "#   NAME    ACC\n*1  a      0.50\n2   long      -\n3   b     10.25\n"
        );
        // A column of dashes only is text.
        assert_eq!(table(&["A"], &[vec!["-".into()]]), "A\n-\n");
    }

    #[test]
    fn columns_align_without_a_header() {
        assert_eq!(
            columns(&[
                vec!["a".into(), "Running".into(), "n1".into()],
                vec!["long-name".into(), "Failed".into(), "-".into()],
            ]),
            vec!["a          Running  n1", "long-name  Failed   -"]
        );
    }
}
