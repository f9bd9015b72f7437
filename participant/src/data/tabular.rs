//! Tabular data: a CSV file with a header row, one label column and numeric
//! feature columns, read into memory.

use std::path::PathBuf;

use super::{DataError, DataRoot, Dataset};
use crate::model::InputShape;

/// How a CSV file is read.
#[derive(Debug, Clone, PartialEq)]
pub struct CsvOptions {
    /// Name of the label column (every other column is a feature).
    pub label_column: String,
    /// Class names in label order; `None` takes integer labels as they are
    /// (classes `0..=max`), or the sorted distinct label strings.
    pub classes: Option<Vec<String>>,
    /// Every feature is multiplied by this (e.g. 1/16 for 0..16 pixel counts).
    pub scale: f32,
}

impl Default for CsvOptions {
    fn default() -> Self {
        Self {
            label_column: "label".into(),
            classes: None,
            scale: 1.0,
        }
    }
}

/// A CSV dataset held in memory.
#[derive(Debug, Clone)]
pub struct CsvDataset {
    path: PathBuf,
    features: usize,
    classes: Vec<String>,
    values: Vec<f32>,
    labels: Vec<i64>,
}

impl CsvDataset {
    /// Reads `<root>/<file>`.
    pub fn open(root: &DataRoot, file: &str, options: &CsvOptions) -> Result<Self, DataError> {
        let path = root.resolve(file, "CSV file")?;
        let bad = |line: u64, problem: String| DataError::Csv {
            path: path.clone(),
            line,
            problem,
        };
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(true)
            .trim(csv::Trim::All)
            .from_path(&path)
            .map_err(|e| bad(0, e.to_string()))?;
        let headers = reader.headers().map_err(|e| bad(1, e.to_string()))?.clone();
        let label_idx = headers
            .iter()
            .position(|h| h == options.label_column)
            .ok_or_else(|| {
                bad(
                    1,
                    format!(
                        "no label column {:?} in the header {:?}",
                        options.label_column,
                        headers.iter().collect::<Vec<_>>()
                    ),
                )
            })?;
        let features = headers.len() - 1;
        if features == 0 {
            return Err(bad(1, "no feature columns".into()));
        }
        let mut values = Vec::new();
        let mut raw_labels = Vec::new();
        for record in reader.records() {
            let record = record.map_err(|e| {
                let line = e.position().map(|p| p.line()).unwrap_or(0);
                bad(line, e.to_string())
            })?;
            let line = record.position().map(|p| p.line()).unwrap_or(0);
            for (i, field) in record.iter().enumerate() {
                if i == label_idx {
                    raw_labels.push(field.to_string());
                    continue;
                }
                let v: f32 = field.parse().map_err(|_| {
                    bad(
                        line,
                        format!("column {:?}: {field:?} is not a number", &headers[i]),
                    )
                })?;
                if !v.is_finite() {
                    return Err(bad(line, format!("column {:?} is not finite", &headers[i])));
                }
                values.push(v * options.scale);
            }
        }
        if raw_labels.is_empty() {
            return Err(DataError::Empty {
                path: path.clone(),
                what: "rows",
            });
        }
        let (classes, labels) = label_table(&raw_labels, options.classes.as_deref())
            .map_err(|(row, problem)| bad(row as u64 + 2, problem))?;
        Ok(Self {
            path,
            features,
            classes,
            values,
            labels,
        })
    }

    /// The file read.
    pub fn path(&self) -> &std::path::Path {
        &self.path
    }
}

/// Maps label strings to indices; errors carry the 0-based row.
fn label_table(
    raw: &[String],
    classes: Option<&[String]>,
) -> Result<(Vec<String>, Vec<i64>), (usize, String)> {
    if let Some(classes) = classes {
        let labels = raw
            .iter()
            .enumerate()
            .map(|(row, l)| {
                classes
                    .iter()
                    .position(|c| c == l)
                    .map(|i| i as i64)
                    .ok_or_else(|| (row, format!("label {l:?} is not one of {classes:?}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        return Ok((classes.to_vec(), labels));
    }
    let ints: Option<Vec<i64>> = raw.iter().map(|l| l.parse::<i64>().ok()).collect();
    match ints {
        Some(ints) => {
            if let Some(row) = ints.iter().position(|&i| !(0..=100_000).contains(&i)) {
                return Err((row, format!("integer label {} out of range", ints[row])));
            }
            let max = ints.iter().copied().max().unwrap_or(0);
            Ok(((0..=max).map(|i| i.to_string()).collect(), ints))
        }
        None => {
            let mut classes: Vec<String> = raw.to_vec();
            classes.sort();
            classes.dedup();
            let labels = raw
                .iter()
                .map(|l| classes.iter().position(|c| c == l).unwrap_or(0) as i64)
                .collect();
            Ok((classes, labels))
        }
    }
}

impl Dataset for CsvDataset {
    fn len(&self) -> usize {
        self.labels.len()
    }

    fn input_shape(&self) -> InputShape {
        InputShape::Features(self.features as i64)
    }

    fn classes(&self) -> &[String] {
        &self.classes
    }

    fn label(&self, index: usize) -> i64 {
        self.labels.get(index).copied().unwrap_or(-1)
    }

    fn load(&self, index: usize) -> Result<(Vec<f32>, i64), DataError> {
        let start = index * self.features;
        let row = self
            .values
            .get(start..start + self.features)
            .ok_or_else(|| DataError::Options(format!("sample index {index} out of range")))?;
        Ok((row.to_vec(), self.labels[index]))
    }
}
