//! Parsing of the safetensors header (8-byte little-endian length + JSON),
//! kept separate from the safetensors crate so each defect maps to a precise
//! [`UpdateRejection`] and nothing is allocated beyond the bounded header.

use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;
use serde::de::{DeserializeSeed, Error as _, MapAccess, Visitor};

use crate::model::{DType, numel};
use crate::update::{UpdateLimits, UpdateRejection};

/// Bytes of the little-endian header-length prefix.
pub const HEADER_LEN_BYTES: usize = 8;

/// One tensor entry as written in the header, not yet checked.
#[derive(Debug, Clone)]
pub(crate) struct RawEntry {
    pub name: String,
    pub dtype: String,
    pub shape: Vec<u64>,
    pub begin: u64,
    pub end: u64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawInfo {
    dtype: String,
    shape: Vec<u64>,
    data_offsets: (u64, u64),
}

/// Reads the header length from the first 8 bytes and bounds it.
pub fn declared_header_len(prefix: &[u8], limits: &UpdateLimits) -> Result<usize, UpdateRejection> {
    let Some(first) = prefix.first_chunk::<HEADER_LEN_BYTES>() else {
        return Err(UpdateRejection::Truncated {
            what: "header length prefix",
            expected: HEADER_LEN_BYTES as u64,
            got: prefix.len() as u64,
        });
    };
    let claimed = u64::from_le_bytes(*first);
    if claimed > limits.max_header_bytes {
        return Err(UpdateRejection::HeaderTooLarge {
            claimed,
            limit: limits.max_header_bytes,
        });
    }
    usize::try_from(claimed).map_err(|_| UpdateRejection::HeaderTooLarge {
        claimed,
        limit: limits.max_header_bytes,
    })
}

/// Parses the JSON header that follows the length prefix.
///
/// Returns the header length and entries sorted by name; duplicate names are
/// rejected because JSON parsers disagree on which duplicate wins.
pub(crate) fn parse_entries(
    prefix: &[u8],
    limits: &UpdateLimits,
    max_entries: usize,
) -> Result<(usize, Vec<RawEntry>), UpdateRejection> {
    let header_len = declared_header_len(prefix, limits)?;
    let end = HEADER_LEN_BYTES
        .checked_add(header_len)
        .ok_or(UpdateRejection::HeaderTooLarge {
            claimed: header_len as u64,
            limit: limits.max_header_bytes,
        })?;
    let Some(json) = prefix.get(HEADER_LEN_BYTES..end) else {
        return Err(UpdateRejection::Truncated {
            what: "header",
            expected: end as u64,
            got: prefix.len() as u64,
        });
    };
    let invalid = |detail: String| UpdateRejection::HeaderInvalid { detail };
    let text =
        std::str::from_utf8(json).map_err(|e| invalid(format!("header is not UTF-8 ({e})")))?;
    let mut de = serde_json::Deserializer::from_str(text);
    let mut entries = EntriesSeed { max_entries }
        .deserialize(&mut de)
        .map_err(|e| invalid(e.to_string()))?;
    // Trailing spaces are the format's padding; anything else is garbage.
    de.end()
        .map_err(|e| invalid(format!("unexpected data after the header object ({e})")))?;

    entries.sort_by(|a, b| a.name.cmp(&b.name));
    let duplicate = entries.windows(2).find_map(|w| match w {
        [a, b] if a.name == b.name => Some(&a.name),
        _ => None,
    });
    if let Some(name) = duplicate {
        return Err(invalid(format!("tensor {name:?} is listed twice")));
    }
    Ok((header_len, entries))
}

struct EntriesSeed {
    max_entries: usize,
}

impl<'de> DeserializeSeed<'de> for EntriesSeed {
    type Value = Vec<RawEntry>;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for EntriesSeed {
    type Value = Vec<RawEntry>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object mapping tensor names to {dtype, shape, data_offsets}")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut out = Vec::new();
        while let Some(name) = map.next_key::<String>()? {
            if name == "__metadata__" {
                // Free-form string map; read to validate it, then dropped.
                map.next_value::<BTreeMap<String, String>>()?;
                continue;
            }
            if out.len() >= self.max_entries {
                return Err(A::Error::custom(format!(
                    "header lists more than {} tensors",
                    self.max_entries
                )));
            }
            let info: RawInfo = map
                .next_value()
                .map_err(|e| A::Error::custom(format!("tensor {name:?}: {e}")))?;
            out.push(RawEntry {
                name,
                dtype: info.dtype,
                shape: info.shape,
                begin: info.data_offsets.0,
                end: info.data_offsets.1,
            });
        }
        Ok(out)
    }
}

/// Checks an entry's offsets against its own dtype and shape.
pub(crate) fn check_span(entry: &RawEntry, dtype: DType) -> Result<(), UpdateRejection> {
    let bad = |problem: String| UpdateRejection::OffsetsInvalid {
        tensor: entry.name.clone(),
        begin: entry.begin,
        end: entry.end,
        problem,
    };
    if entry.end < entry.begin {
        return Err(bad("end before begin".into()));
    }
    let shape: Option<Vec<usize>> = entry
        .shape
        .iter()
        .map(|&d| usize::try_from(d).ok())
        .collect();
    let needed = shape
        .as_deref()
        .and_then(numel)
        .and_then(|n| n.checked_mul(dtype.size()))
        .ok_or_else(|| bad(format!("shape {:?} overflows", entry.shape)))?;
    let span = entry.end - entry.begin;
    if span != needed as u64 {
        return Err(bad(format!(
            "span {span} bytes but {dtype} x {:?} needs {needed}",
            entry.shape
        )));
    }
    Ok(())
}

/// Checks that the entries tile the data section exactly from byte 0 (no gap,
/// no overlap) and returns the data section's length.
pub(crate) fn check_tiling(entries: &[&RawEntry]) -> Result<u64, UpdateRejection> {
    let mut by_offset: Vec<&RawEntry> = entries.to_vec();
    by_offset.sort_by_key(|e| (e.begin, e.end));
    let mut next = 0u64;
    let mut prev: Option<&str> = None;
    for e in by_offset {
        let after = prev.map_or_else(|| "the start of the data".to_string(), |p| format!("{p:?}"));
        if e.begin < next {
            return Err(UpdateRejection::OffsetsInvalid {
                tensor: e.name.clone(),
                begin: e.begin,
                end: e.end,
                problem: format!("overlaps {after}, which ends at {next}"),
            });
        }
        if e.begin > next {
            return Err(UpdateRejection::OffsetsInvalid {
                tensor: e.name.clone(),
                begin: e.begin,
                end: e.end,
                problem: format!("leaves a gap of {} bytes after {after}", e.begin - next),
            });
        }
        next = e.end;
        prev = Some(&e.name);
    }
    Ok(next)
}
