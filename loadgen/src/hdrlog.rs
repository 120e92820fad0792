//! HdrHistogram interval logs (the V2 log format read by HdrHistogram's `HistogramLogProcessor`,
//! HdrHistogramVisualizer and every HdrHistogram port): one corrected-latency histogram per
//! second of the run, taken from [`Report::per_second`].

use std::io;
use std::time::{Duration, SystemTime};

use hdrhistogram::serialization::interval_log::IntervalLogWriterBuilder;
use hdrhistogram::serialization::V2DeflateSerializer;

use crate::report::Report;

/// Writes `report`'s per-second corrected latency histograms (µs; the max column is in ms, as
/// HdrHistogram's tools expect with a divisor of 1000) as an interval log. Timestamps are
/// seconds since the run's start; `#[StartTime]` is its wall-clock start.
pub fn write_interval_log<W: io::Write>(report: &Report, out: &mut W) -> io::Result<()> {
    let mut serializer = V2DeflateSerializer::new();
    let start = SystemTime::UNIX_EPOCH + Duration::from_secs_f64(report.start_time.max(0.0));
    let mut writer = IntervalLogWriterBuilder::new()
        .add_comment(&format!("Logged with {}", report.tool))
        .add_comment(&format!(
            "Corrected latency of {} (values in us)",
            report.url
        ))
        .with_start_time(start)
        .with_base_time(start)
        .with_max_value_divisor(1000.0)
        .begin_log_with(out, &mut serializer)?;
    writer.write_comment(
        "\"StartTimestamp\",\"Interval_Length\",\"Interval_Max\",\"Interval_Compressed_Histogram\"",
    )?;
    for sec in &report.per_second {
        writer
            .write_histogram(
                &sec.histogram,
                Duration::from_secs(sec.t),
                Duration::from_micros(sec.duration_us),
                None,
            )
            .map_err(|e| io::Error::other(e.to_string()))?;
    }
    Ok(())
}
