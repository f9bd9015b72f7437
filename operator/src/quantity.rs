//! Kubernetes resource quantities as integers: CPU in millicores, memory in bytes.

/// Why a quantity string cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid quantity {0:?}: expected a number with an optional suffix such as 500m, 2, 4Gi or 1e3"
)]
pub struct QuantityError(pub String);

/// Parses a quantity into its value times `scale` (1000 for millicores, 1 for bytes),
/// rounding up as Kubernetes does for requests.
pub fn parse_scaled(q: &str, scale: u128) -> Result<u128, QuantityError> {
    let err = || QuantityError(q.to_string());
    let s = q.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, suffix) = s.split_at(split);
    if num.is_empty() || num.matches('.').count() > 1 {
        return Err(err());
    }
    let (int_part, frac_part) = num.split_once('.').unwrap_or((num, ""));
    // value = digits / 10^frac_len * multiplier, computed exactly in integers.
    let digits: u128 = format!("{int_part}{frac_part}")
        .parse()
        .map_err(|_| err())?;
    let frac_len = u32::try_from(frac_part.len()).map_err(|_| err())?;
    let (mul_num, mul_den): (u128, u128) = match suffix {
        "" => (1, 1),
        "m" => (1, 1000),
        "k" => (1_000, 1),
        "M" => (1_000_000, 1),
        "G" => (1_000_000_000, 1),
        "T" => (1_000_000_000_000, 1),
        "P" => (1_000_000_000_000_000, 1),
        "E" => (1_000_000_000_000_000_000, 1),
        "Ki" => (1 << 10, 1),
        "Mi" => (1 << 20, 1),
        "Gi" => (1 << 30, 1),
        "Ti" => (1 << 40, 1),
        "Pi" => (1 << 50, 1),
        "Ei" => (1 << 60, 1),
        e if e.starts_with(['e', 'E']) => {
            let exp: u32 = e[1..].parse().map_err(|_| err())?;
            (10u128.checked_pow(exp).ok_or_else(err)?, 1)
        }
        _ => return Err(err()),
    };
    let numerator = digits
        .checked_mul(mul_num)
        .and_then(|v| v.checked_mul(scale))
        .ok_or_else(err)?;
    let denominator = 10u128
        .checked_pow(frac_len)
        .and_then(|d| d.checked_mul(mul_den))
        .ok_or_else(err)?;
    Ok(numerator.div_ceil(denominator))
}

/// CPU quantity in millicores.
pub fn millicores(q: &str) -> Result<u64, QuantityError> {
    parse_scaled(q, 1000).and_then(|v| u64::try_from(v).map_err(|_| QuantityError(q.to_string())))
}

/// Memory (or any plain) quantity in units (bytes).
pub fn bytes(q: &str) -> Result<u64, QuantityError> {
    parse_scaled(q, 1).and_then(|v| u64::try_from(v).map_err(|_| QuantityError(q.to_string())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_forms() {
        assert_eq!(millicores("2"), Ok(2000));
        assert_eq!(millicores("500m"), Ok(500));
        assert_eq!(millicores("1.5"), Ok(1500));
        assert_eq!(millicores("0.0001"), Ok(1), "rounds up like the API server");
        assert_eq!(millicores("1e3"), Ok(1_000_000));
    }

    #[test]
    fn memory_forms() {
        assert_eq!(bytes("4Gi"), Ok(4 << 30));
        assert_eq!(bytes("512Mi"), Ok(512 << 20));
        assert_eq!(bytes("1G"), Ok(1_000_000_000));
        assert_eq!(bytes("1.5Gi"), Ok(3 << 29));
        assert_eq!(bytes("128974848"), Ok(128_974_848));
    }

    #[test]
    fn rejects_garbage() {
        for bad in ["", "Gi", "1.2.3", "4GB", "-1", "1e", "1e999"] {
            assert!(bytes(bad).is_err(), "{bad:?} should be rejected");
        }
    }
}
