//! Kubernetes resource quantities (`500m`, `2`, `32863984Ki`, `4Gi`, `1G`, `1e3`) as numbers.
//!
//! Hand-written: k8s-openapi's `Quantity` is only a string wrapper and no quantity parser is among
//! the workspace's dependencies; the grammar is small and fully covered by the tests below.

/// Parses a quantity into its value in base units (cores for CPU, bytes for memory).
/// Returns `None` for anything that is not a valid quantity.
pub fn parse_quantity(text: &str) -> Option<f64> {
    let s = text.trim();
    if s.is_empty() {
        return None;
    }
    const SUFFIXES: [(&str, f64); 14] = [
        ("Ki", 1024.0),
        ("Mi", 1048576.0),
        ("Gi", 1073741824.0),
        ("Ti", 1099511627776.0),
        ("Pi", 1125899906842624.0),
        ("Ei", 1152921504606846976.0),
        ("n", 1e-9),
        ("u", 1e-6),
        ("m", 1e-3),
        ("k", 1e3),
        ("M", 1e6),
        ("G", 1e9),
        ("T", 1e12),
        ("P", 1e15),
    ];
    let (number, factor) = SUFFIXES
        .iter()
        .find_map(|(suf, f)| s.strip_suffix(suf).map(|n| (n, *f)))
        .or_else(|| s.strip_suffix('E').map(|n| (n, 1e18)))
        .unwrap_or((s, 1.0));
    // A bare exponent form (`1e3`) is only valid without a suffix; `f64::from_str` accepts it.
    if number.is_empty()
        || number
            .chars()
            .any(|c| c.is_ascii_alphabetic() && c != 'e' && c != 'E')
    {
        return None;
    }
    if factor != 1.0 && number.contains(['e', 'E']) {
        return None;
    }
    let value: f64 = number.parse().ok()?;
    if !value.is_finite() || value < 0.0 {
        return None;
    }
    Some(value * factor)
}

/// Bytes in one GiB.
pub const GIB: f64 = 1073741824.0;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_in_every_unit() {
        assert_eq!(parse_quantity("32863984Ki"), Some(32863984.0 * 1024.0));
        assert_eq!(parse_quantity("4Gi"), Some(4.0 * GIB));
        assert_eq!(parse_quantity("512Mi"), Some(512.0 * 1048576.0));
        assert_eq!(parse_quantity("1G"), Some(1e9));
        assert_eq!(parse_quantity("33554432000"), Some(33554432000.0));
        assert_eq!(parse_quantity("1e3"), Some(1000.0));
    }

    #[test]
    fn cpu_forms() {
        assert_eq!(parse_quantity("8"), Some(8.0));
        assert_eq!(parse_quantity("7910m"), Some(7.91));
        assert_eq!(parse_quantity("0.5"), Some(0.5));
    }

    #[test]
    fn garbage_is_rejected() {
        for bad in ["", "abc", "4GB", "-1", "Gi", "1eGi", "12x"] {
            assert_eq!(parse_quantity(bad), None, "{bad}");
        }
    }
}
