//! Human-readable numbers for error messages and solver reasons.

/// `6912` → `"6,912"`.
pub(crate) fn count(n: u128) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A space size that may have overflowed `u128` while it was multiplied out.
pub(crate) fn space_size(n: Option<u128>) -> String {
    match n {
        Some(n) => count(n),
        None => format!("more than {}", count(u128::MAX)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_separators() {
        assert_eq!(count(0), "0");
        assert_eq!(count(999), "999");
        assert_eq!(count(1_000), "1,000");
        assert_eq!(count(6_912), "6,912");
        assert_eq!(count(1_000_000), "1,000,000");
        assert_eq!(count(12_345_678), "12,345,678");
    }
}
