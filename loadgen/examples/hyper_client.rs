//! Baseline for issue 3 ("HTTP/1.1 keep-alive: hyper 1, or a leaner path if hyper costs too
//! much: measure and say"). aefm-load speaks HTTP/1.1 through its own client on httparse
//! (`connection.rs`, `parser.rs`, `worker.rs`); this example is the hyper 1 alternative it is
//! measured against by `bench/loadgen.sh hyper`, and is not used by aefm-load itself.
//!
//! A minimal closed-loop client at maximum throughput: one OS thread running a current-thread
//! tokio runtime, N keep-alive connections made with `hyper::client::conn::http1::handshake` over
//! a tokio `TcpStream`, each sending `GET` and reading the whole body, back to back, for D
//! seconds. It records no latencies (aefm-load does), so it errs in hyper's favour.
//!
//!     cargo run --release -p aefm-loadgen --example hyper_client -- URL [CONNECTIONS] [SECONDS]
//!
//! Output (the last two lines use wrk's wording, so the same parsers read both tools):
//!
//!     <total> requests in <elapsed>s, <errors> errors
//!     Requests/sec: <rate>
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::{header::HOST, Request, Uri};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

const USAGE: &str = "usage: hyper_client URL [CONNECTIONS (50)] [SECONDS (10)]";

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let url: Uri = args.next().context(USAGE)?.parse().context("bad URL")?;
    let conns: usize = match args.next() {
        Some(s) => s.parse().context(USAGE)?,
        None => 50,
    };
    let secs: f64 = match args.next() {
        Some(s) => s.parse().context(USAGE)?,
        None => 10.0,
    };
    if url.scheme_str() != Some("http") || conns == 0 || secs <= 0.0 {
        bail!("{USAGE} (http:// only, CONNECTIONS > 0, SECONDS > 0)");
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let start = Instant::now();
    let (total, errors) = rt.block_on(run(url, conns, Duration::from_secs_f64(secs)))?;
    let elapsed = start.elapsed().as_secs_f64();
    println!("{total} requests in {elapsed:.2}s, {errors} errors",);
    println!("Requests/sec: {:.2}", total as f64 / elapsed);
    Ok(())
}

/// Opens `conns` connections and drives them until `duration` has passed; returns the
/// responses read in full and the non-2xx responses among them.
async fn run(url: Uri, conns: usize, duration: Duration) -> anyhow::Result<(u64, u64)> {
    let authority = url.authority().context("URL without host")?.clone();
    let addr = format!(
        "{}:{}",
        authority.host(),
        authority.port_u16().unwrap_or(80)
    );
    let path: Uri = url.path_and_query().map_or("/", |p| p.as_str()).parse()?;
    let deadline = Instant::now() + duration;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..conns {
        let stream = TcpStream::connect(&addr).await?;
        stream.set_nodelay(true)?;
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(conn);
        let (path, host) = (path.clone(), authority.as_str().to_owned());
        tasks.spawn(async move {
            let (mut done, mut errors) = (0u64, 0u64);
            while Instant::now() < deadline {
                sender.ready().await?;
                let req = Request::get(path.clone())
                    .header(HOST, host.as_str())
                    .body(Empty::<Bytes>::new())?;
                let res = sender.send_request(req).await?;
                if !res.status().is_success() {
                    errors += 1;
                }
                res.into_body().collect().await?;
                done += 1;
            }
            anyhow::Ok((done, errors))
        });
    }
    let (mut total, mut errors) = (0, 0);
    while let Some(r) = tasks.join_next().await {
        let (d, e) = r??;
        total += d;
        errors += e;
    }
    Ok((total, errors))
}
