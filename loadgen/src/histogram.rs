//! Latency histograms: the HdrHistogram shape wrk2 uses (1 µs to 24 h, 3 significant digits), the
//! statistics computed the way HdrHistogram_c computes them (so the text report matches wrk2 to the
//! digit), and the compact V2-deflate + base64 encoding used in JSON reports.

use base64::Engine as _;
use hdrhistogram::serialization::{Deserializer, Serializer, V2DeflateSerializer};
use hdrhistogram::Histogram;

/// Highest trackable value: 24 hours in µs, as in wrk2.
pub const HIGHEST_US: u64 = 24 * 3600 * 1_000_000;

/// A histogram with wrk2's range and precision, values in µs.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, HIGHEST_US, 3).expect("static histogram bounds are valid")
}

/// Records `value_us`, clamping values above the range to its top instead of dropping them
/// (wrk2 drops them silently; a 25 h latency is still a latency).
pub fn record(h: &mut Histogram<u64>, value_us: u64) {
    h.saturating_record(value_us.min(HIGHEST_US));
}

/// The value at percentile `p` (0–100) with HdrHistogram_c's rank rule: the first bucket whose
/// cumulative count reaches `round(p/100 * total)` (at least 1); its highest equivalent value,
/// but never more than [`max`].
///
/// (The Rust crate rounds the rank up instead, which differs from wrk2 on small counts.)
///
/// Why the cap: above 2048 µs a bucket holds several values (2 µs wide up to 4 ms, 4 µs up to
/// 8 ms, ...). A percentile is reported as its bucket's *highest* equivalent value and the
/// maximum as its bucket's *lowest* (both as wrk2 does), so a percentile that falls in the top
/// bucket came out above the maximum (a single 5000 µs value: p99.9 5003, max 5000). Every
/// statistic (JSON summary, per-second entries, text report) goes through here, so they all keep
/// `p ≤ max`; wrk2's text differs only in that case.
pub fn value_at_percentile(h: &Histogram<u64>, p: f64) -> u64 {
    let total = h.len();
    if total == 0 {
        return 0;
    }
    let p = p.min(100.0);
    let rank = (((p / 100.0) * total as f64) + 0.5) as u64;
    let rank = rank.max(1);
    let mut cumulative = 0u64;
    for v in h.iter_recorded() {
        cumulative += v.count_at_value();
        if cumulative >= rank {
            return h.highest_equivalent(v.value_iterated_to()).min(max(h));
        }
    }
    max(h)
}

/// Mean over each bucket's median equivalent value (HdrHistogram_c's `hdr_mean`); NaN if empty.
pub fn mean(h: &Histogram<u64>) -> f64 {
    if h.is_empty() {
        return f64::NAN;
    }
    let total: f64 = h
        .iter_recorded()
        .map(|v| v.count_at_value() as f64 * h.median_equivalent(v.value_iterated_to()) as f64)
        .sum();
    total / h.len() as f64
}

/// Standard deviation around [`mean`] (HdrHistogram_c's `hdr_stddev`); NaN if empty.
pub fn stdev(h: &Histogram<u64>) -> f64 {
    if h.is_empty() {
        return f64::NAN;
    }
    let m = mean(h);
    let total: f64 = h
        .iter_recorded()
        .map(|v| {
            let dev = h.median_equivalent(v.value_iterated_to()) as f64 - m;
            dev * dev * v.count_at_value() as f64
        })
        .sum();
    (total / h.len() as f64).sqrt()
}

/// The recorded maximum as wrk2 prints it: the lowest equivalent value of the top bucket.
pub fn max(h: &Histogram<u64>) -> u64 {
    if h.is_empty() {
        0
    } else {
        h.lowest_equivalent(h.max())
    }
}

/// Share (in %) of recorded values within `mean ± stdev`; 0 if empty.
pub fn within_stdev(h: &Histogram<u64>, mean: f64, stdev: f64) -> f64 {
    if h.is_empty() {
        return 0.0;
    }
    let (lo, hi) = (mean - stdev, mean + stdev);
    let inside: u64 = h
        .iter_recorded()
        .filter(|v| {
            let x = h.median_equivalent(v.value_iterated_to()) as f64;
            x >= lo && x <= hi
        })
        .map(|v| v.count_at_value())
        .sum();
    inside as f64 * 100.0 / h.len() as f64
}

/// One row of the detailed percentile spectrum.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SpectrumRow {
    /// Highest equivalent value of the bucket, µs.
    pub value: u64,
    /// The percentile iterated to, 0–100.
    pub percentile: f64,
    /// Values at or below this bucket.
    pub total_count: u64,
}

/// The rows of HdrHistogram_c's percentile iterator (`hdr_percentiles_print`) with
/// `ticks` ticks per half distance. Written out rather than taken from the crate's
/// `iter_quantiles` because wrk2's output depends on the C iterator's exact stepping (one row for
/// the last bucket, then the 100% row) and its percent-based floating point.
pub fn spectrum(h: &Histogram<u64>, ticks: u32) -> Vec<SpectrumRow> {
    let total = h.len();
    let mut rows = Vec::new();
    let mut to = 0.0f64;
    let mut cumulative = 0u64;
    let mut last_value = 0u64;
    for v in h.iter_recorded() {
        cumulative += v.count_at_value();
        last_value = h.highest_equivalent(v.value_iterated_to());
        let current = 100.0 * cumulative as f64 / total as f64;
        while to <= current {
            rows.push(SpectrumRow {
                value: last_value,
                percentile: to,
                total_count: cumulative,
            });
            let halvings = ((100.0 / (100.0 - to)).ln() / 2f64.ln()) as i64 + 1;
            let reporting_ticks = f64::from(ticks) * 2f64.powi(halvings as i32);
            to += 100.0 / reporting_ticks;
            if cumulative >= total {
                break;
            }
        }
    }
    rows.push(SpectrumRow {
        value: last_value,
        percentile: 100.0,
        total_count: cumulative,
    });
    rows
}

/// Why an encoded histogram could not be read back.
#[derive(Debug, thiserror::Error)]
#[error("invalid encoded histogram: {0}")]
pub struct DecodeError(String);

/// Encodes as HdrHistogram V2 with deflate, then base64 (the format of HdrHistogram interval
/// logs, readable by every HdrHistogram implementation).
pub fn encode(h: &Histogram<u64>) -> String {
    let mut buf = Vec::new();
    V2DeflateSerializer::new()
        .serialize(h, &mut buf)
        .expect("serializing into a Vec cannot fail");
    base64::engine::general_purpose::STANDARD.encode(buf)
}

/// Decodes what [`encode`] (or any V2 / V2-deflate writer) produced.
pub fn decode(text: &str) -> Result<Histogram<u64>, DecodeError> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .map_err(|e| DecodeError(e.to_string()))?;
    let h: Histogram<u64> = Deserializer::new()
        .deserialize(&mut bytes.as_slice())
        .map_err(|e| DecodeError(format!("{e:?}")))?;
    // Re-home into wrk2's range so histograms from any writer can be added together exactly.
    let mut out = new_histogram();
    out.add(&h).map_err(|e| DecodeError(format!("{e:?}")))?;
    Ok(out)
}

/// Serde adapter: a histogram as its base64 V2-deflate string.
pub mod serde_base64 {
    use super::*;
    use serde::Deserialize;

    /// Serializes a histogram as a base64 string.
    pub fn serialize<S: serde::Serializer>(h: &Histogram<u64>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&encode(h))
    }

    /// Deserializes a histogram from a base64 string.
    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Histogram<u64>, D::Error> {
        let text = String::deserialize(d)?;
        decode(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentile_rank_rounds_like_c() {
        let mut h = new_histogram();
        for v in [100, 200, 300, 400] {
            h.record(v).unwrap();
        }
        // rank(50%) = round(2.0) = 2 -> 200; the crate's ceil rule agrees here, but at 62.5%
        // C gives round(2.5)=3 -> 300.
        assert_eq!(value_at_percentile(&h, 50.0), 200);
        assert_eq!(value_at_percentile(&h, 62.5), 300);
        assert_eq!(value_at_percentile(&h, 100.0), 400);
        assert_eq!(value_at_percentile(&new_histogram(), 50.0), 0);
    }

    #[test]
    fn percentiles_never_exceed_the_max() {
        // 5000 µs sits in a 4 µs wide bucket (5000..=5003): its highest equivalent is 5003, its
        // lowest 5000 (the max as wrk2 prints it). Before the cap, p99.9 was 5003 > max 5000.
        let mut h = new_histogram();
        for _ in 0..99 {
            record(&mut h, 100);
        }
        record(&mut h, 5000);
        assert_eq!(h.highest_equivalent(5000), 5003);
        assert_eq!(max(&h), 5000);
        for p in [99.9, 99.99, 100.0] {
            assert_eq!(value_at_percentile(&h, p), 5000, "p{p}");
        }
        assert_eq!(value_at_percentile(&h, 99.0), 100);
        // Many values over several wide buckets: every percentile at or below the max.
        let mut h = new_histogram();
        for v in (2_049..200_000u64).step_by(997) {
            record(&mut h, v);
        }
        for p in [50.0, 90.0, 99.0, 99.9, 99.99, 100.0] {
            assert!(value_at_percentile(&h, p) <= max(&h), "p{p}");
        }
    }

    #[test]
    fn spectrum_steps_and_ends_at_100() {
        let mut h = new_histogram();
        for v in 1..=1000u64 {
            h.record(v).unwrap();
        }
        let rows = spectrum(&h, 5);
        assert_eq!(rows[0].percentile, 0.0);
        assert_eq!(rows[1].percentile, 10.0);
        assert_eq!(rows[5].percentile, 50.0);
        assert_eq!(rows[6].percentile, 55.0);
        assert_eq!(rows[11].percentile, 77.5);
        let last = rows.last().unwrap();
        assert_eq!((last.percentile, last.total_count), (100.0, 1000));
        assert!(rows.windows(2).all(|w| w[0].value <= w[1].value));
    }

    #[test]
    fn encode_roundtrip_is_exact() {
        let mut h = new_histogram();
        for v in [1u64, 5, 1000, 123_456, 5_000_000] {
            record(&mut h, v);
        }
        let back = decode(&encode(&h)).unwrap();
        assert_eq!(back, h);
        assert!(decode("not base64!").is_err());
    }
}
