//! A differential oracle for the aggregator's hand-written safetensors header parser
//! (`aggregator/src/header.rs`, reached through [`validate_update`]): whatever it accepts,
//! the reference `safetensors` crate must read as the same tensors with the same bytes,
//! and nothing may panic. Shared by the mutation test (`tests/header_fuzz.rs`) and the
//! libFuzzer target (`fuzz/`).

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use fedsky_aggregator::{
    Model, TensorData, TensorView, UpdateLimits, validate_update, view_validated,
};
use half::{bf16, f16};
use rand::Rng;

/// The global model updates are checked against: one tensor of each dtype.
pub fn global() -> Model {
    Model::new([
        (
            "conv.weight",
            vec![3, 4],
            TensorData::F32((0..12).map(|i| i as f32 * 0.25).collect()),
        ),
        (
            "fc.bias",
            vec![5],
            TensorData::F16((0..5).map(|i| f16::from_f32(i as f32)).collect()),
        ),
        (
            "norm.scale",
            vec![2, 2, 2],
            TensorData::BF16((0..8).map(|i| bf16::from_f32(-(i as f32))).collect()),
        ),
    ])
    .expect("global model")
}

/// Limits sized for the global model, as the server sizes them.
pub fn limits(global: &Model) -> UpdateLimits {
    UpdateLimits::for_spec(global.spec())
}

/// One header entry: name, dtype, shape, data offsets.
type Entry<'a> = (&'a str, &'a str, &'a [usize], usize, usize);

/// A safetensors buffer with a hand-written header: `entries` in the given order,
/// optional `__metadata__`, `pad` spaces after the JSON, then `data`.
fn build(entries: &[Entry<'_>], metadata: bool, pad: usize, data: &[u8]) -> Vec<u8> {
    let mut json = String::from("{");
    if metadata {
        json.push_str(r#""__metadata__":{"format":"pt"},"#);
    }
    let parts: Vec<String> = entries
        .iter()
        .map(|(name, dtype, shape, begin, end)| {
            format!(
                r#""{name}":{{"dtype":"{dtype}","shape":{shape:?},"data_offsets":[{begin},{end}]}}"#
            )
        })
        .collect();
    json.push_str(&parts.join(","));
    json.push('}');
    json.push_str(&" ".repeat(pad));
    let mut out = (json.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(json.as_bytes());
    out.extend_from_slice(data);
    out
}

/// Valid updates of `global` in several spellings the format allows.
pub fn seeds(global: &Model) -> Vec<Vec<u8>> {
    let canonical = global.to_safetensors().expect("serialize");
    // The data section of the canonical buffer: conv.weight (48 bytes), fc.bias (10),
    // norm.scale (16), in that order.
    let data = canonical[canonical.len() - 74..].to_vec();
    let w: &[usize] = &[3, 4];
    let b: &[usize] = &[5];
    let s: &[usize] = &[2, 2, 2];
    let in_order = [
        ("conv.weight", "F32", w, 0, 48),
        ("fc.bias", "F16", b, 48, 58),
        ("norm.scale", "BF16", s, 58, 74),
    ];
    let mut reversed = in_order;
    reversed.reverse();
    vec![
        canonical,
        build(&in_order, false, 0, &data),
        build(&in_order, true, 0, &data),
        build(&reversed, true, 7, &data),
    ]
}

/// Checks one buffer; panics (with the case) when the parser and the reference disagree.
/// Returns whether the update was accepted.
pub fn check(bytes: &[u8], global: &Model, limits: &UpdateLimits) -> bool {
    let header = match validate_update(bytes, global, limits) {
        Ok(h) => h,
        Err(rejection) => {
            // Every refusal renders (its message reaches the participant).
            assert!(!rejection.to_string().is_empty());
            return false;
        }
    };
    let reference = safetensors::SafeTensors::deserialize(bytes).unwrap_or_else(|e| {
        panic!("accepted, but the safetensors crate refuses it ({e}): {bytes:?}")
    });
    assert_eq!(
        bytes.len(),
        header.total_len(),
        "accepted with trailing or missing bytes: {bytes:?}"
    );
    let mut names = reference.names();
    names.sort_unstable();
    let expected: Vec<&str> = global
        .spec()
        .tensors()
        .iter()
        .map(|t| t.name.as_str())
        .collect();
    assert_eq!(names, expected, "tensor names differ: {bytes:?}");
    let view = view_validated(bytes, global, &header);
    for (spec, ours) in global.spec().tensors().iter().zip(view.tensors()) {
        let theirs = reference.tensor(&spec.name).expect("listed tensor");
        assert_eq!(
            format!("{:?}", theirs.dtype()),
            spec.dtype.safetensors_name(),
            "{}: {bytes:?}",
            spec.name
        );
        assert_eq!(
            theirs.shape(),
            spec.shape.as_slice(),
            "{}: {bytes:?}",
            spec.name
        );
        let ours = match ours {
            TensorView::Bytes { bytes, .. } => *bytes,
            other => panic!("a validated view holds bytes, not {other:?}"),
        };
        assert_eq!(ours, theirs.data(), "{} data differ: {bytes:?}", spec.name);
    }
    true
}

/// A buffer built from a random header: the global's tensors, each perhaps dropped,
/// doubled, renamed, given another dtype or shape, or moved (gaps, overlaps), perhaps an
/// unknown tensor or odd metadata, and a data section as long as the largest end offset,
/// give or take a byte. Reaches the checks behind a well-formed JSON header, which byte
/// edits rarely do. Also says whether the result is a valid update of the global model,
/// which the parser must then accept.
pub fn structured(rng: &mut impl Rng) -> (Vec<u8>, bool) {
    let mut valid = true;
    let tensors: [(&str, &str, &[usize], usize); 3] = [
        ("conv.weight", "F32", &[3, 4], 48),
        ("fc.bias", "F16", &[5], 10),
        ("norm.scale", "BF16", &[2, 2, 2], 16),
    ];
    let dtypes = ["F32", "F16", "BF16", "F64", "I32", "U8", "f32", "BOOL"];
    let shapes: [&[usize]; 6] = [&[3, 4], &[4, 3], &[12], &[5], &[2, 2, 2], &[2, 4, 0]];
    let names = [
        "conv.weight",
        "fc.bias",
        "norm.scale",
        "extra",
        "conv.weight ",
        "",
    ];
    let mut json = String::from("{");
    if rng.random_bool(0.2) {
        let k = rng.random_range(0..4);
        valid &= k == 0;
        json.push_str(
            [
                r#""__metadata__":{"format":"pt"},"#,
                r#""__metadata__":{"n":1},"#,
                r#""__metadata__":null,"#,
                r#""__metadata__":{"a":"b","a":"c"},"#,
            ][k],
        );
    }
    let mut offset = 0usize;
    let mut max_end = 0usize;
    let mut parts = Vec::new();
    for (name, dtype, shape, len) in tensors {
        let copies = [1, 1, 1, 1, 0, 2][rng.random_range(0..6)];
        valid &= copies == 1;
        for _ in 0..copies {
            let name = if rng.random_bool(0.05) {
                names[rng.random_range(0..names.len())]
            } else {
                name
            };
            let dtype = if rng.random_bool(0.05) {
                dtypes[rng.random_range(0..dtypes.len())]
            } else {
                dtype
            };
            let shape = if rng.random_bool(0.05) {
                shapes[rng.random_range(0..shapes.len())]
            } else {
                shape
            };
            let shift: i64 = if rng.random_bool(0.1) {
                rng.random_range(-3..=3)
            } else {
                0
            };
            let begin = (offset as i64 + shift).max(0) as usize;
            let end = if rng.random_bool(0.05) {
                begin + rng.random_range(0..60)
            } else {
                begin + len
            };
            valid &= (name, dtype, shape, begin, end) == (name, dtype, shape, offset, offset + len)
                && tensors
                    .iter()
                    .any(|t| (t.0, t.1, t.2) == (name, dtype, shape));
            parts.push(format!(
                r#""{name}":{{"dtype":"{dtype}","shape":{shape:?},"data_offsets":[{begin},{end}]}}"#
            ));
            offset = end;
            max_end = max_end.max(end);
        }
    }
    if rng.random_bool(0.05) {
        valid = false;
        parts.push(r#""extra":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}"#.into());
    }
    // Entries in any order: the format does not fix one.
    for i in (1..parts.len()).rev() {
        parts.swap(i, rng.random_range(0..=i));
    }
    json.push_str(&parts.join(","));
    json.push('}');
    json.push_str(&" ".repeat(rng.random_range(0..8)));
    let delta = [0, 0, 0, 0, -1, 1][rng.random_range(0..6)];
    valid &= delta == 0;
    let len = (max_end as i64 + delta).max(0) as usize;
    let mut out = (json.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(json.as_bytes());
    // Small finite values (bytes 0x00..0x3f keep every dtype finite), now and then any.
    let data: Vec<u8> = (0..len)
        .map(|_| {
            if rng.random_bool(0.999) {
                rng.random_range(0..0x40)
            } else {
                rng.random()
            }
        })
        .collect();
    valid &= data.iter().all(|&b| b < 0x40);
    out.extend(data);
    (out, valid)
}

/// Characters that make JSON interesting to a parser.
const JSON_BYTES: &[u8] = b"{}[]\",:0123456789-+.eE \\u_aFBn";

/// A position in the header (after the length prefix, before `end`).
fn at(rng: &mut impl Rng, end: usize) -> usize {
    if end <= 8 {
        8
    } else {
        rng.random_range(8..end)
    }
}

/// A mutant of `seed`: one to three edits, mostly in the header, the length prefix kept
/// consistent most of the time so that edits reach past the first check.
pub fn mutate(rng: &mut impl Rng, seed: &[u8], other: &[u8]) -> Vec<u8> {
    let mut b = seed.to_vec();
    let header_end = |b: &[u8]| {
        let n = b
            .first_chunk::<8>()
            .map_or(0, |p| u64::from_le_bytes(*p) as usize);
        (8 + n).min(b.len())
    };
    let mut fix_prefix = rng.random_bool(0.8);
    for _ in 0..rng.random_range(1..=3) {
        let end = header_end(&b).max(9);
        match rng.random_range(0..10) {
            // A header byte replaced by a JSON character.
            0 | 1 => {
                let i = at(rng, end);
                if i < b.len() {
                    b[i] = JSON_BYTES[rng.random_range(0..JSON_BYTES.len())];
                }
            }
            // A JSON character inserted into the header.
            2 => {
                let i = at(rng, end).min(b.len());
                b.insert(i, JSON_BYTES[rng.random_range(0..JSON_BYTES.len())]);
            }
            // A header byte deleted.
            3 => {
                let i = at(rng, end);
                if i < b.len() {
                    b.remove(i);
                }
            }
            // A digit made large (offsets, shapes).
            4 => {
                let digits: Vec<usize> = (8..end.min(b.len()))
                    .filter(|&i| b[i].is_ascii_digit())
                    .collect();
                if let Some(&i) = digits.get(rng.random_range(0..digits.len().max(1))) {
                    let big = ["9", "18446744073709551615", "4294967296", "00", "1e3"]
                        [rng.random_range(0..5)];
                    b.splice(i..=i, big.bytes());
                }
            }
            // A span of the header repeated (duplicate keys, nested objects).
            5 => {
                let (x, y) = (at(rng, end), at(rng, end));
                let (x, y) = (x.min(y).min(b.len()), x.max(y).min(b.len()));
                let span = b[x..y].to_vec();
                b.splice(y..y, span);
            }
            // Any bit anywhere (data included: NaN and infinity patterns).
            6 => {
                if !b.is_empty() {
                    let i = rng.random_range(0..b.len());
                    b[i] ^= 1 << rng.random_range(0..8);
                }
            }
            // Truncated or extended.
            7 => {
                if rng.random_bool(0.5) {
                    b.truncate(rng.random_range(0..=b.len()));
                } else {
                    b.extend((0..rng.random_range(1..16)).map(|_| rng.random::<u8>()));
                }
            }
            // The length prefix lies.
            8 => {
                fix_prefix = false;
                let n = header_end(&b) as i64 - 8 + rng.random_range(-9..=9);
                let n = if rng.random_bool(0.1) {
                    rng.random::<u64>()
                } else {
                    n.max(0) as u64
                };
                if b.len() >= 8 {
                    b[..8].copy_from_slice(&n.to_le_bytes());
                }
            }
            // Spliced with another valid buffer.
            _ => {
                let i = rng.random_range(0..=b.len());
                let j = rng.random_range(0..=other.len());
                b.truncate(i);
                b.extend_from_slice(&other[j..]);
            }
        }
    }
    if fix_prefix && b.len() >= 8 {
        // Find the end of the JSON object the edits left, if any, and say so in the prefix.
        let body = &b[8..];
        let mut depth = 0i32;
        let mut in_str = false;
        let mut escaped = false;
        for (k, &c) in body.iter().enumerate() {
            match (in_str, escaped, c) {
                (true, true, _) => escaped = false,
                (true, false, b'\\') => escaped = true,
                (true, false, b'"') => in_str = false,
                (false, _, b'"') => in_str = true,
                (false, _, b'{') => depth += 1,
                (false, _, b'}') => {
                    depth -= 1;
                    if depth == 0 {
                        b[..8].copy_from_slice(&((k + 1) as u64).to_le_bytes());
                        break;
                    }
                }
                _ => {}
            }
        }
    }
    b
}
