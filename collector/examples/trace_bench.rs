//! Trace-processing benchmark driver (used by `bench/collector.sh`).
//!
//! `trace_bench generate FILE TRACES SPANS` writes a Jaeger JSON export (`{"data":[...]}`) of
//! generated traces: a root and a random tree below it, parallel and sequential children, tags,
//! six services on twelve pods. `trace_bench process FILE OUTDIR` runs the collector's trace
//! processing from the file to the tables and prints spans per second.

use std::io::Write;
use std::time::Instant;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("generate") if args.len() == 5 => {
            generate(&args[2], args[3].parse()?, args[4].parse()?)
        }
        Some("process") if args.len() == 4 => {
            let t0 = Instant::now();
            let (counts, written) =
                aefm_collector::traces::process_file(args[2].as_ref(), args[3].as_ref())?;
            let secs = t0.elapsed().as_secs_f64();
            for w in &written {
                eprintln!("{w}");
            }
            println!(
                "traces={} spans={} seconds={:.3} spans_per_second={:.0}",
                counts.traces,
                counts.spans,
                secs,
                counts.spans as f64 / secs
            );
            Ok(())
        }
        _ => anyhow::bail!(
            "usage: trace_bench generate FILE TRACES SPANS | trace_bench process FILE OUTDIR"
        ),
    }
}

fn generate(path: &str, traces: usize, spans: usize) -> anyhow::Result<()> {
    let mut w = std::io::BufWriter::new(std::fs::File::create(path)?);
    let mut rng: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let services = [
        "nginx-web-server",
        "compose-post",
        "text-service",
        "user-service",
        "post-storage",
        "media",
    ];
    w.write_all(b"{\"data\":[")?;
    for t in 0..traces {
        if t > 0 {
            w.write_all(b",")?;
        }
        let tid = format!("{:016x}{:016x}", next(), t);
        let base = 1_700_000_000_000_000u64 + t as u64 * 1000;
        // (start, duration) per span; span i>0 has parent (i-1)/3 (a ternary tree).
        let mut times: Vec<(u64, u64)> = Vec::with_capacity(spans);
        write!(w, "{{\"traceID\":\"{tid}\",\"spans\":[")?;
        for i in 0..spans {
            let (start, dur) = if i == 0 {
                (base, 5_000 + next() % 5_000)
            } else {
                let (ps, pd) = times[(i - 1) / 3];
                let off = next() % (pd / 2).max(1);
                (ps + off, (next() % (pd / 2).max(1)).max(1))
            };
            times.push((start, dur));
            let refs = if i == 0 {
                String::new()
            } else {
                format!(
                    "{{\"refType\":\"CHILD_OF\",\"traceID\":\"{tid}\",\"spanID\":\"{:016x}\"}}",
                    (i - 1) / 3 + 1
                )
            };
            let p = i % services.len();
            if i > 0 {
                w.write_all(b",")?;
            }
            write!(
                w,
                "{{\"traceID\":\"{tid}\",\"spanID\":\"{:016x}\",\"flags\":1,\"operationName\":\"/{}/op{}\",\"references\":[{refs}],\"startTime\":{start},\"duration\":{dur},\"tags\":[{{\"key\":\"span.kind\",\"type\":\"string\",\"value\":\"server\"}},{{\"key\":\"http.status_code\",\"type\":\"int64\",\"value\":200}}],\"logs\":[],\"processID\":\"p{}\",\"warnings\":null}}",
                i + 1,
                services[p],
                i % 4,
                p + 1
            )?;
        }
        w.write_all(b"],\"processes\":{")?;
        for (p, s) in services.iter().enumerate() {
            if p > 0 {
                w.write_all(b",")?;
            }
            write!(
                w,
                "\"p{}\":{{\"serviceName\":\"{s}\",\"tags\":[{{\"key\":\"hostname\",\"type\":\"string\",\"value\":\"{s}-5d9f7c-{}\"}},{{\"key\":\"jaeger.version\",\"type\":\"string\",\"value\":\"Go-2.30.0\"}}]}}",
                p + 1,
                t % 2
            )?;
        }
        w.write_all(b"},\"warnings\":null}")?;
    }
    w.write_all(b"],\"total\":0,\"limit\":0,\"offset\":0,\"errors\":null}")?;
    w.flush()?;
    Ok(())
}
