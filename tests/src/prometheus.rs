//! Starts Debian's `prometheus` and `prometheus-node-exporter` on 127.0.0.1 (free ports, temp
//! dirs, 1 s scrape interval) and a test exposition endpoint whose values the test sets.
//!
//! When the binaries are missing, [`Prometheus::start`] returns `Ok(None)` (the test skips with a
//! reason) unless `AEFM_REQUIRE_PROMETHEUS` is set, as CI does, in which case it is an error.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::jaeger::{Handler, TestServer};

/// A gauge endpoint (`/metrics`) whose series the test controls.
pub struct TestEndpoint {
    /// The server.
    pub server: TestServer,
    values: Arc<Mutex<BTreeMap<String, f64>>>,
    series: Arc<Mutex<BTreeMap<String, Counter>>>,
}

/// A series of any name that grows at a set rate from its value when the rate was set (a
/// gauge is a rate of 0).
#[derive(Clone, Copy)]
struct Counter {
    base: f64,
    per_second: f64,
    since: Instant,
}

impl Counter {
    fn now(&self) -> f64 {
        self.base + self.per_second * self.since.elapsed().as_secs_f64()
    }
}

impl TestEndpoint {
    /// Starts the endpoint with no series.
    pub fn start() -> TestEndpoint {
        let values: Arc<Mutex<BTreeMap<String, f64>>> = Arc::default();
        let series: Arc<Mutex<BTreeMap<String, Counter>>> = Arc::default();
        let v = Arc::clone(&values);
        let c = Arc::clone(&series);
        let handler: Handler = Arc::new(move |path, _| {
            if path != "/metrics" {
                return (404, "text/plain", "not found\n".into());
            }
            let mut body = String::from(
                "# HELP aefm_test_value A value set by the test.\n# TYPE aefm_test_value gauge\n",
            );
            for (labels, value) in v.lock().unwrap_or_else(|e| e.into_inner()).iter() {
                body.push_str(&format!("aefm_test_value{{{labels}}} {value}\n"));
            }
            for (name, counter) in c.lock().unwrap_or_else(|e| e.into_inner()).iter() {
                body.push_str(&format!("{name} {}\n", counter.now()));
            }
            (200, "text/plain; version=0.0.4", body)
        });
        TestEndpoint {
            server: TestServer::start(handler),
            values,
            series,
        }
    }

    /// Exposes `series` (name and labels in exposition syntax: `node_cpu_seconds_total{cpu="0"}`)
    /// as a counter growing by `per_second` from its current value (0 when new); a rate of 0
    /// makes it a gauge at that value.
    pub fn set_rate(&self, series: &str, per_second: f64) {
        let mut all = self.series.lock().unwrap_or_else(|e| e.into_inner());
        let base = all.get(series).map_or(0.0, Counter::now);
        all.insert(
            series.to_string(),
            Counter {
                base,
                per_second,
                since: Instant::now(),
            },
        );
    }

    /// Exposes `series` as a gauge of `value`.
    pub fn set_gauge(&self, series: &str, value: f64) {
        self.series
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(
                series.to_string(),
                Counter {
                    base: value,
                    per_second: 0.0,
                    since: Instant::now(),
                },
            );
    }

    /// Sets `aefm_test_value{<labels>}` (labels in exposition syntax: `series="a"`).
    pub fn set(&self, labels: &str, value: f64) {
        self.values
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(labels.to_string(), value);
    }

    /// `host:port`.
    pub fn target(&self) -> String {
        self.server.addr.to_string()
    }
}

/// A running Prometheus scraping a node exporter and a [`TestEndpoint`].
pub struct Prometheus {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    /// `http://127.0.0.1:PORT/metrics` of the node exporter.
    pub node_exporter_url: String,
    /// The controlled endpoint.
    pub endpoint: TestEndpoint,
    /// Further controlled endpoints ([`Prometheus::start_with`]), each its own scrape target
    /// (its own `instance`, as one node's exporter is).
    pub more: Vec<TestEndpoint>,
    children: Vec<Child>,
    _dir: tempfile::TempDir,
}

fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn which(bin: &str) -> Option<std::path::PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| Path::new(d).join(bin))
        .find(|p| p.is_file())
}

/// A blocking GET returning (status, body); `None` on connection failure.
pub fn http_get(url: &str) -> Option<(u16, String)> {
    let rest = url.strip_prefix("http://")?;
    let (host, path) = rest
        .split_once('/')
        .map_or((rest, "/".to_string()), |(h, p)| (h, format!("/{p}")));
    let mut s = std::net::TcpStream::connect(host).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    use std::io::{Read, Write};
    write!(s, "GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n").ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).ok()?;
    let status = buf.split_whitespace().nth(1)?.parse().ok()?;
    let body = buf
        .split_once("\r\n\r\n")
        .map(|x| x.1.to_string())
        .unwrap_or_default();
    Some((status, body))
}

impl Prometheus {
    /// Starts node exporter, the test endpoint and Prometheus, and waits until Prometheus has
    /// scraped both targets successfully (bounded: 30 s).
    pub fn start() -> anyhow::Result<Option<Prometheus>> {
        Self::start_with(0)
    }

    /// As [`Prometheus::start`], with `more` further test endpoints scraped as their own
    /// targets.
    pub fn start_with(more: usize) -> anyhow::Result<Option<Prometheus>> {
        let (Some(prom), Some(ne)) = (which("prometheus"), which("prometheus-node-exporter"))
        else {
            if std::env::var_os("AEFM_REQUIRE_PROMETHEUS").is_some() {
                anyhow::bail!("prometheus or prometheus-node-exporter not on PATH and AEFM_REQUIRE_PROMETHEUS is set");
            }
            eprintln!("SKIP: prometheus / prometheus-node-exporter not installed (apt-get install prometheus prometheus-node-exporter)");
            return Ok(None);
        };
        let dir = tempfile::tempdir()?;
        let endpoint = TestEndpoint::start();
        let more: Vec<TestEndpoint> = (0..more).map(|_| TestEndpoint::start()).collect();
        let mut children = Vec::new();
        let ne_port = free_port()?;
        children.push(
            Command::new(ne)
                .arg(format!("--web.listen-address=127.0.0.1:{ne_port}"))
                .args([
                    "--collector.disable-defaults",
                    "--collector.cpu",
                    "--collector.meminfo",
                    "--collector.netdev",
                    "--collector.loadavg",
                ])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()?,
        );
        let port = free_port()?;
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: node\n    static_configs:\n      - targets: ['127.0.0.1:{ne_port}']\n  - job_name: test\n    static_configs:\n      - targets: [{}]\n",
                std::iter::once(&endpoint)
                    .chain(&more)
                    .map(|e| format!("'{}'", e.target()))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )?;
        let log = std::fs::File::create(dir.path().join("prometheus.log"))?;
        children.push(
            Command::new(prom)
                .arg(format!("--config.file={}", config.display()))
                .arg(format!(
                    "--storage.tsdb.path={}",
                    dir.path().join("data").display()
                ))
                .arg(format!("--web.listen-address=127.0.0.1:{port}"))
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()?,
        );
        let p = Prometheus {
            url: format!("http://127.0.0.1:{port}"),
            node_exporter_url: format!("http://127.0.0.1:{ne_port}/metrics"),
            endpoint,
            more,
            children,
            _dir: dir,
        };
        let targets = 2 + p.more.len();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let up = http_get(&format!("{}/api/v1/query?query=sum(up)", p.url));
            if let Some((200, body)) = &up {
                if body.contains(&format!(r#","{targets}"]"#)) {
                    return Ok(Some(p));
                }
            }
            if Instant::now() > deadline {
                let log = std::fs::read_to_string(p._dir.path().join("prometheus.log"))
                    .unwrap_or_default();
                anyhow::bail!("Prometheus did not scrape both targets within 30 s (last: {up:?}); log tail: {}", &log[log.len().saturating_sub(2000)..]);
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
