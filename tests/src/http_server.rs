//! A configurable HTTP/1.1 test server for load tests: fixed status and body size, a per-request
//! delay, `Connection: close` every N responses, and a switch to stop answering (a stall). It
//! records every request (method, target, headers, body) and counts connections.
//!
//! Hand-written on std (one thread per connection) so tests see the exact wire bytes and can
//! close connections on cue, which hyper's server hides.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// How the server answers.
#[derive(Clone, Debug)]
pub struct ServerOptions {
    /// Status code of every response.
    pub status: u16,
    /// Body length in bytes (filled with `x`).
    pub body_size: usize,
    /// Sleep before each response.
    pub delay: Duration,
    /// Send `Connection: close` (and close) on every Nth response, counted over the server.
    pub close_every: Option<u64>,
    /// Send bodies with chunked transfer coding instead of Content-Length.
    pub chunked: bool,
    /// Speak https (TLS 1.2/1.3 with a fresh self-signed certificate) instead of http.
    pub tls: bool,
}

impl Default for ServerOptions {
    fn default() -> Self {
        Self {
            status: 200,
            body_size: 16,
            delay: Duration::ZERO,
            close_every: None,
            chunked: false,
            tls: false,
        }
    }
}

/// One request as received.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    /// Method.
    pub method: String,
    /// Request target as sent.
    pub target: String,
    /// Headers as written, in order.
    pub headers: Vec<(String, String)>,
    /// Body (by Content-Length).
    pub body: Vec<u8>,
}

impl Request {
    /// First header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

struct Shared {
    options: ServerOptions,
    requests: Mutex<Vec<Request>>,
    responses: AtomicU64,
    connections: AtomicU64,
    stalled: AtomicBool,
    stop: AtomicBool,
}

/// A running server; stops when dropped.
pub struct HttpServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept: Option<JoinHandle<()>>,
}

impl HttpServer {
    /// Starts on 127.0.0.1 with an ephemeral port.
    pub fn start(options: ServerOptions) -> HttpServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local addr");
        let shared = Arc::new(Shared {
            options,
            requests: Mutex::new(Vec::new()),
            responses: AtomicU64::new(0),
            connections: AtomicU64::new(0),
            stalled: AtomicBool::new(false),
            stop: AtomicBool::new(false),
        });
        let tls = shared.options.tls.then(tls_config);
        let sh = shared.clone();
        let accept = std::thread::spawn(move || {
            for stream in listener.incoming() {
                if sh.stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                sh.connections.fetch_add(1, Ordering::SeqCst);
                let sh = sh.clone();
                let tls = tls.clone();
                std::thread::spawn(move || {
                    let _ = stream.set_nodelay(true);
                    let _ = stream.set_read_timeout(Some(Duration::from_millis(100)));
                    match tls {
                        None => serve(stream, &sh),
                        Some(config) => {
                            let Ok(conn) = rustls::ServerConnection::new(config) else {
                                return;
                            };
                            serve(rustls::StreamOwned::new(conn, stream), &sh)
                        }
                    }
                });
            }
        });
        HttpServer {
            addr,
            shared,
            accept: Some(accept),
        }
    }

    /// The listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:<port><path>` (`https://` when the server speaks TLS).
    pub fn url(&self, path: &str) -> String {
        let scheme = if self.shared.options.tls {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://{}{}", self.addr, path)
    }

    /// Requests received so far.
    pub fn requests(&self) -> Vec<Request> {
        self.shared.requests.lock().unwrap().clone()
    }

    /// Number of requests received so far.
    pub fn request_count(&self) -> usize {
        self.shared.requests.lock().unwrap().len()
    }

    /// Responses sent so far.
    pub fn response_count(&self) -> u64 {
        self.shared.responses.load(Ordering::SeqCst)
    }

    /// Connections accepted so far.
    pub fn connection_count(&self) -> u64 {
        self.shared.connections.load(Ordering::SeqCst)
    }

    /// While stalled, requests are read but not answered.
    pub fn set_stalled(&self, stalled: bool) {
        self.shared.stalled.store(stalled, Ordering::SeqCst);
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.shared.stalled.store(false, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
        if let Some(h) = self.accept.take() {
            let _ = h.join();
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Parses one complete request from the front of `buf`, returning it and its length.
fn parse_request(buf: &[u8]) -> Option<(Request, usize)> {
    let head_end = find(buf, b"\r\n\r\n")? + 4;
    let head = String::from_utf8_lossy(&buf[..head_end - 4]).into_owned();
    let mut lines = head.split("\r\n");
    let mut first = lines.next()?.split(' ');
    let method = first.next()?.to_string();
    let target = first.next()?.to_string();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.to_string(), v.trim().to_string()))
        .collect();
    let len: usize = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    if buf.len() < head_end + len {
        return None;
    }
    let body = buf[head_end..head_end + len].to_vec();
    Some((
        Request {
            method,
            target,
            headers,
            body,
        },
        head_end + len,
    ))
}

/// A server config with a self-signed certificate for `localhost` and 127.0.0.1 (clients of
/// the tests do not verify it, like wrk).
fn tls_config() -> Arc<rustls::ServerConfig> {
    let names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
    let rcgen::CertifiedKey { cert, key_pair } =
        rcgen::generate_simple_self_signed(names).expect("generate a self-signed certificate");
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(key_pair.serialize_der().into());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
        .with_no_client_auth()
        .with_single_cert(vec![cert.der().clone()], key)
        .expect("a valid certificate and key");
    Arc::new(config)
}

fn serve<S: Read + Write>(mut stream: S, sh: &Shared) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let body = vec![b'x'; sh.options.body_size];
    loop {
        while let Some((req, used)) = parse_request(&buf) {
            buf.drain(..used);
            sh.requests.lock().unwrap().push(req);
            while sh.stalled.load(Ordering::SeqCst) && !sh.stop.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(5));
            }
            if !sh.options.delay.is_zero() {
                std::thread::sleep(sh.options.delay);
            }
            let n = sh.responses.fetch_add(1, Ordering::SeqCst) + 1;
            let close = sh
                .options
                .close_every
                .is_some_and(|every| n.is_multiple_of(every));
            let mut resp = format!("HTTP/1.1 {} Test\r\n", sh.options.status);
            if close {
                resp.push_str("Connection: close\r\n");
            }
            let mut bytes = if sh.options.chunked {
                resp.push_str("Transfer-Encoding: chunked\r\n\r\n");
                let mut b = resp.into_bytes();
                if !body.is_empty() {
                    b.extend_from_slice(format!("{:x}\r\n", body.len()).as_bytes());
                    b.extend_from_slice(&body);
                    b.extend_from_slice(b"\r\n");
                }
                b.extend_from_slice(b"0\r\n\r\n");
                b
            } else {
                resp.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
                resp.into_bytes()
            };
            if !sh.options.chunked {
                bytes.extend_from_slice(&body);
            }
            if stream.write_all(&bytes).is_err() || close {
                return;
            }
        }
        if sh.stop.load(Ordering::SeqCst) {
            return;
        }
        match stream.read(&mut chunk) {
            Ok(0) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => return,
        }
    }
}
