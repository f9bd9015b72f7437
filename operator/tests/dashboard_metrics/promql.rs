//! The metric and label names a PromQL expression (or a Grafana variable query) refers to.
//!
//! Not a PromQL parser: a tokenizer that knows where names can stand. An identifier is a
//! metric name unless it is a function or aggregation (followed by `(`, or an aggregation
//! followed by `by`/`without`), a keyword, or inside a label matcher (`{…}`), a range or
//! subquery (`[…]`), a string or a grouping clause (`by (…)`, `on (…)`, …). Numbers,
//! durations and Grafana variables (`$x`, `${x}`, `[[x]]` inside a range) are skipped.

use std::collections::BTreeSet;

/// A vector selector: `metric{label="…", …}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selector {
    /// The metric name as written (a series name such as `x_total` or `x_bucket`).
    pub metric: String,
    /// Label names its matchers use.
    pub labels: BTreeSet<String>,
}

/// What an expression refers to.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Refs {
    /// Every vector selector, in order.
    pub selectors: Vec<Selector>,
    /// Label names of `by`, `without`, `on`, `ignoring`, `group_left` and `group_right`
    /// clauses, and the label of Grafana's `label_values(…, label)`.
    pub grouping: BTreeSet<String>,
}

/// Aggregation operators, which may take `by`/`without` before their parenthesis.
const AGGREGATIONS: &[&str] = &[
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
    "limitk",
    "limit_ratio",
];

/// Clauses followed by a list of label names.
const GROUPING: &[&str] = &[
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];

/// Keywords that are never metric names (matched case-insensitively).
const KEYWORDS: &[&str] = &[
    "and", "or", "unless", "bool", "offset", "atan2", "inf", "nan",
];

fn is_ident_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_' || c == ':'
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == ':'
}

struct Lexer<'a> {
    s: &'a [u8],
    i: usize,
}

impl Lexer<'_> {
    fn peek(&self) -> Option<char> {
        self.s.get(self.i).map(|b| char::from(*b))
    }

    fn skip_space(&mut self) {
        while let Some(c) = self.peek() {
            if c.is_whitespace() {
                self.i += 1;
            } else if c == '#' {
                while self.peek().is_some_and(|c| c != '\n') {
                    self.i += 1;
                }
            } else {
                break;
            }
        }
    }

    fn ident(&mut self) -> String {
        let start = self.i;
        while self.peek().is_some_and(is_ident) {
            self.i += 1;
        }
        String::from_utf8_lossy(&self.s[start..self.i]).into_owned()
    }

    /// Skips a string starting at the current quote.
    fn string(&mut self) -> Result<(), String> {
        let quote = self.peek().ok_or("expected a string")?;
        self.i += 1;
        while let Some(c) = self.peek() {
            self.i += 1;
            if c == '\\' && quote != '`' {
                self.i += 1;
            } else if c == quote {
                return Ok(());
            }
        }
        Err("unterminated string".into())
    }

    /// Skips from the current `open` to its matching `close`, strings included.
    fn skip_group(&mut self, open: char, close: char) -> Result<(), String> {
        let mut depth = 0usize;
        while let Some(c) = self.peek() {
            match c {
                '"' | '\'' | '`' => {
                    self.string()?;
                    continue;
                }
                c if c == open => depth += 1,
                c if c == close => {
                    depth -= 1;
                    if depth == 0 {
                        self.i += 1;
                        return Ok(());
                    }
                }
                _ => {}
            }
            self.i += 1;
        }
        Err(format!("unbalanced {open}{close}"))
    }

    /// Label matchers `{a="x", b=~"y"}` from the current `{`: the label names, and the
    /// metric name of a `__name__="…"` matcher.
    fn matchers(&mut self) -> Result<(BTreeSet<String>, Option<String>), String> {
        self.i += 1;
        let mut labels = BTreeSet::new();
        let mut name = None;
        loop {
            self.skip_space();
            match self.peek() {
                Some('}') => {
                    self.i += 1;
                    return Ok((labels, name));
                }
                Some(',') => self.i += 1,
                Some(c) if is_ident_start(c) => {
                    let label = self.ident();
                    self.skip_space();
                    let op_start = self.i;
                    while self.peek().is_some_and(|c| "=!~".contains(c)) {
                        self.i += 1;
                    }
                    let op = String::from_utf8_lossy(&self.s[op_start..self.i]).into_owned();
                    if !["=", "!=", "=~", "!~"].contains(&op.as_str()) {
                        return Err(format!("bad matcher operator {op:?} after {label}"));
                    }
                    self.skip_space();
                    if !self.peek().is_some_and(|c| "\"'`".contains(c)) {
                        return Err(format!("{label}{op} needs a quoted value"));
                    }
                    let value_start = self.i + 1;
                    self.string()?;
                    if label == "__name__" && op == "=" {
                        name = Some(
                            String::from_utf8_lossy(&self.s[value_start..self.i - 1]).into_owned(),
                        );
                    } else {
                        labels.insert(label);
                    }
                }
                Some(c) => return Err(format!("unexpected {c:?} in label matchers")),
                None => return Err("unterminated label matchers".into()),
            }
        }
    }

    /// A grouping clause's `(a, b)`; an empty set where the clause has none (`group_left`).
    fn label_list(&mut self) -> Result<BTreeSet<String>, String> {
        let mut out = BTreeSet::new();
        self.skip_space();
        if self.peek() != Some('(') {
            return Ok(out);
        }
        self.i += 1;
        loop {
            self.skip_space();
            match self.peek() {
                Some(')') => {
                    self.i += 1;
                    return Ok(out);
                }
                Some(',') => self.i += 1,
                Some(c) if is_ident_start(c) => {
                    out.insert(self.ident());
                }
                Some(c) => return Err(format!("unexpected {c:?} in a label list")),
                None => return Err("unterminated label list".into()),
            }
        }
    }

    /// A number or duration: `0.95`, `1e-3`, `0x1f`, `5m`, `1h30m`.
    fn number(&mut self) {
        let start = self.i;
        let hex = self.s[start..].starts_with(b"0x") || self.s[start..].starts_with(b"0X");
        while let Some(c) = self.peek() {
            let exponent_sign = (c == '+' || c == '-')
                && !hex
                && self.i > start
                && matches!(self.s[self.i - 1], b'e' | b'E');
            if c.is_ascii_alphanumeric() || c == '.' || c == '_' || exponent_sign {
                self.i += 1;
            } else {
                break;
            }
        }
    }
}

/// The metric and label names `expr` refers to.
pub fn refs(expr: &str) -> Result<Refs, String> {
    let mut lx = Lexer {
        s: expr.as_bytes(),
        i: 0,
    };
    let mut out = Refs::default();
    loop {
        lx.skip_space();
        let Some(c) = lx.peek() else {
            return Ok(out);
        };
        match c {
            '"' | '\'' | '`' => lx.string()?,
            '[' => lx.skip_group('[', ']')?,
            '{' => {
                // A selector without a metric name before it.
                let (labels, name) = lx.matchers()?;
                let metric =
                    name.ok_or_else(|| format!("a selector without a metric name in {expr}"))?;
                out.selectors.push(Selector { metric, labels });
            }
            '$' => {
                lx.i += 1;
                if lx.peek() == Some('{') {
                    lx.skip_group('{', '}')?;
                } else {
                    lx.ident();
                }
            }
            c if c.is_ascii_digit()
                || (c == '.' && lx.s.get(lx.i + 1).is_some_and(u8::is_ascii_digit)) =>
            {
                lx.number();
            }
            c if is_ident_start(c) => {
                let word = lx.ident();
                lx.skip_space();
                let next = lx.peek();
                let lower = word.to_ascii_lowercase();
                if GROUPING.contains(&word.as_str()) {
                    out.grouping.extend(lx.label_list()?);
                } else if next == Some('(')
                    || AGGREGATIONS.contains(&word.as_str())
                    || KEYWORDS.contains(&lower.as_str())
                {
                    // A function or aggregation (its arguments come next) or a keyword.
                } else {
                    let mut selector = Selector {
                        metric: word,
                        labels: BTreeSet::new(),
                    };
                    if next == Some('{') {
                        let (labels, name) = lx.matchers()?;
                        if let Some(name) = name {
                            return Err(format!(
                                "{} has a __name__ matcher ({name}) as well",
                                selector.metric
                            ));
                        }
                        selector.labels = labels;
                    }
                    out.selectors.push(selector);
                }
            }
            '(' | ')' | ',' | '+' | '-' | '*' | '/' | '%' | '^' | '=' | '!' | '<' | '>' | '@'
            | '~' => lx.i += 1,
            c => return Err(format!("unexpected {c:?} in {expr}")),
        }
    }
}

/// The names a Grafana Prometheus variable query refers to: `label_values(selector,
/// label)`, `label_values(label)`, `query_result(expr)` or a plain expression.
pub fn grafana_query(query: &str) -> Result<Refs, String> {
    let q = query.trim();
    let inner = |prefix: &str| {
        q.strip_prefix(prefix)
            .and_then(|r| r.trim_start().strip_prefix('('))
            .and_then(|r| r.strip_suffix(')'))
    };
    if let Some(args) = inner("label_values") {
        // The label is after the last comma outside braces and strings.
        let mut depth = 0i32;
        let mut quote = None;
        let mut split = None;
        for (i, c) in args.char_indices() {
            match (quote, c) {
                (Some(open), c) if c == open => quote = None,
                (Some(_), _) => {}
                (None, '"' | '\'' | '`') => quote = Some(c),
                (None, '{' | '(' | '[') => depth += 1,
                (None, '}' | ')' | ']') => depth -= 1,
                (None, ',') if depth == 0 => split = Some(i),
                _ => {}
            }
        }
        let (selector, label) = match split {
            Some(i) => (&args[..i], args[i + 1..].trim()),
            None => ("", args.trim()),
        };
        let mut out = refs(selector)?;
        out.grouping.insert(label.to_string());
        return Ok(out);
    }
    if let Some(expr) = inner("query_result") {
        return refs(expr);
    }
    if inner("metrics").is_some() || inner("label_names").is_some() {
        return Err(format!("{q}: names no metric to check"));
    }
    refs(q)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metrics(expr: &str) -> Vec<String> {
        refs(expr)
            .unwrap_or_else(|e| panic!("{expr}: {e}"))
            .selectors
            .into_iter()
            .map(|s| s.metric)
            .collect()
    }

    fn set(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|s| (*s).to_string()).collect()
    }

    #[test]
    fn finds_metrics_and_their_matchers() {
        let r = refs(
            r#"sum by (controller, result) (rate(controller_runtime_reconcile_total{namespace=~"$namespace",result="error"}[$__rate_interval]))"#,
        )
        .expect("parses");
        assert_eq!(
            r.selectors,
            [Selector {
                metric: "controller_runtime_reconcile_total".into(),
                labels: set(&["namespace", "result"]),
            }]
        );
        assert_eq!(r.grouping, set(&["controller", "result"]));
    }

    #[test]
    fn skips_functions_keywords_numbers_strings_and_variables() {
        assert_eq!(
            metrics(
                r#"histogram_quantile(0.95, sum without (pod) (rate(x_bucket{a="sum(y)"}[5m:1m] offset 1h30m))) > bool 1e-3"#
            ),
            ["x_bucket"]
        );
        assert_eq!(metrics("a / on (job) group_left (pod) b"), ["a", "b"]);
        assert_eq!(
            metrics("sum(a) by (x) or vector(0) and NaN unless Inf"),
            ["a"]
        );
        assert_eq!(
            metrics("label_replace(up, \"dst\", \"$1\", \"src\", \"(.*)\") @ start()"),
            ["up"]
        );
        assert_eq!(metrics("topk(${k}, a) + $offset * 0x1F - .5"), ["a"]);
        assert_eq!(metrics(r#"{__name__="bare_total", a="b"}"#), ["bare_total"]);
        assert_eq!(metrics("# a comment naming nothing\nup"), ["up"]);
        // A bare metric and one followed by a range, without matchers.
        assert_eq!(metrics("max_over_time(a[1h]) - b"), ["a", "b"]);
        let r = refs("a * ignoring (le) group_right b").expect("parses");
        assert_eq!(r.grouping, set(&["le"]));
    }

    #[test]
    fn rejects_what_it_cannot_read() {
        assert!(refs(r#"x{a="b"#).is_err());
        assert!(refs(r#"{a="b"}"#).is_err(), "no metric name");
        assert!(refs("x{a>\"b\"}").is_err());
        assert!(refs("x ? y").is_err());
    }

    #[test]
    fn reads_grafana_variable_queries() {
        let r = grafana_query(
            r#"label_values(fedsky_federatedjob_rounds_completed_total{federatedjob_namespace=~"$ns"}, federatedjob)"#,
        )
        .expect("parses");
        assert_eq!(
            r.selectors[0].metric,
            "fedsky_federatedjob_rounds_completed_total"
        );
        assert_eq!(r.selectors[0].labels, set(&["federatedjob_namespace"]));
        assert_eq!(r.grouping, set(&["federatedjob"]));
        let r = grafana_query("label_values(namespace)").expect("parses");
        assert!(r.selectors.is_empty());
        assert_eq!(
            grafana_query("query_result(topk(3, a))")
                .expect("parses")
                .selectors[0]
                .metric,
            "a"
        );
    }
}
