//! Tests of the row writer: numbers formatted as `itoa` does.

use super::*;

#[test]
fn numbers_format_as_itoa_does() {
    let mut vals = vec![0u64, u64::MAX, u64::MAX - 1];
    let mut p = 1u64;
    for _ in 0..20 {
        vals.extend([
            p - 1,
            p,
            p.wrapping_add(1),
            p.saturating_mul(9),
            p.saturating_mul(5).wrapping_add(3),
        ]);
        p = p.saturating_mul(10);
    }
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    for _ in 0..100_000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        vals.extend([
            x,
            x >> (x % 64),
            x % 100_000,
            1_700_000_000_000_000 + x % 10_000_000_000,
        ]);
    }
    for v in vals {
        let want = itoa::Buffer::new().format(v).to_string();
        assert_eq!(Num::new(v).bytes(), want.as_bytes(), "{v}");
    }
}
