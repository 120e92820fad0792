//! Tests of the statistics: the selected quantiles against sorting everything.

use super::*;

#[test]
fn describe_equals_sorting_everything() {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for n in [1usize, 2, 3, 5, 10, 101, 1000, 4099] {
        for scale in [1_000u64, 1 << 40, u64::MAX] {
            let v: Vec<u64> = (0..n).map(|_| next() % scale).collect();
            let mut sorted = v.clone();
            sorted.sort_unstable();
            let f: Vec<f64> = sorted.iter().map(|&x| x as f64).collect();
            let mean = f.iter().sum::<f64>() / f.len() as f64;
            let want: Vec<f64> = QUANTILES
                .iter()
                .map(|&q| crate::output::quantile_sorted(&f, q))
                .collect();
            let mut w = v.clone();
            let (m, q) = describe(&mut w);
            assert_eq!(
                (m.to_bits(), q.map(f64::to_bits).to_vec()),
                (mean.to_bits(), want.iter().map(|x| x.to_bits()).collect()),
                "n {n} scale {scale}"
            );
        }
    }
}
