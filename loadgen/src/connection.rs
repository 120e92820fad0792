//! One client connection: TCP (TCP_NODELAY, like wrk) or TLS via rustls, its read buffer and its
//! response parser. https does **not** verify certificates (like wrk2): a load generator must
//! reach test servers with self-signed certificates; SNI is set to the URL's host.

use std::io::{self, Write};
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncReadExt, AsyncWriteExt, Interest};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use crate::parser::{ParseError, Parsed, ResponseParser};

/// Initial read buffer per connection; small so 10 000 connections stay cheap. It grows for
/// large responses.
const READ_BUF: usize = 4096;

/// How to reach the server: address, and TLS settings for https.
#[derive(Clone)]
pub struct Endpoint {
    /// Address to connect to.
    pub addr: SocketAddr,
    /// TLS connector and server name, for https.
    pub tls: Option<(TlsConnector, ServerName<'static>)>,
}

impl Endpoint {
    /// An endpoint; `tls_host` set means https with SNI for that host.
    pub fn new(addr: SocketAddr, tls_host: Option<&str>) -> Result<Self, String> {
        let tls = match tls_host {
            None => None,
            Some(host) => {
                let name = ServerName::try_from(host.to_string())
                    .map_err(|e| format!("invalid TLS server name {host}: {e}"))?;
                Some((TlsConnector::from(tls_config()), name))
            }
        };
        Ok(Self { addr, tls })
    }
}

/// A rustls client config that accepts any certificate (see the module docs).
fn tls_config() -> Arc<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAnyCert(provider)))
        .with_no_client_auth();
    let mut config = config;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}

#[derive(Debug)]
struct AcceptAnyCert(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

enum Stream {
    Plain(Plain),
    Tls(Box<TlsStream<TcpStream>>),
}

/// A plain TCP socket registered with epoll for reads only.
///
/// tokio's `TcpStream` registers for reads and writes, so every ACK that frees send-buffer space
/// raises an `EPOLLOUT` event and wakes the thread for nothing: about one extra wake-up per
/// request at moderate rates (wrk avoids the same by switching write interest on and off).
/// Requests are small and nearly always fit the send buffer, so writes go straight to the
/// socket; when one does not, the socket is registered for writes until the rest is out.
struct Plain {
    /// `None` only if moving between registrations failed; the connection is then dead.
    fd: Option<AsyncFd<std::net::TcpStream>>,
}

/// Registers an owned socket with the runtime's epoll.
fn register(
    tcp: std::net::TcpStream,
    interest: Interest,
) -> io::Result<AsyncFd<std::net::TcpStream>> {
    // SAFETY: the AsyncFd owns the socket, so the descriptor stays open while registered.
    unsafe { AsyncFd::register_with_interest(tcp, interest) }.map_err(|e| e.into_parts().1)
}

impl Plain {
    fn new(tcp: TcpStream) -> io::Result<Plain> {
        // `into_std` leaves the socket non-blocking.
        let std = tcp.into_std()?;
        Ok(Plain {
            fd: Some(register(std, Interest::READABLE)?),
        })
    }

    fn fd(&self) -> io::Result<&AsyncFd<std::net::TcpStream>> {
        self.fd
            .as_ref()
            .ok_or_else(|| io::Error::other("socket lost its epoll registration"))
    }

    async fn write_all(&mut self, mut bytes: &[u8]) -> io::Result<()> {
        while !bytes.is_empty() {
            match self.fd()?.get_ref().write(bytes) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => bytes = &bytes[n..],
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    return self.write_slow(bytes).await;
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// The send buffer is full: register for writes, wait until `bytes` are out, unregister.
    /// Re-registering loses nothing: adding a ready socket to epoll reports it at once.
    async fn write_slow(&mut self, mut bytes: &[u8]) -> io::Result<()> {
        self.reregister(Interest::READABLE | Interest::WRITABLE)?;
        let fd = self.fd()?;
        let result = async {
            while !bytes.is_empty() {
                let mut guard = fd.writable().await?;
                match guard.try_io(|s| s.get_ref().write(bytes)) {
                    Ok(Ok(0)) => return Err(io::ErrorKind::WriteZero.into()),
                    Ok(Ok(n)) => bytes = &bytes[n..],
                    Ok(Err(e)) if e.kind() == io::ErrorKind::Interrupted => {}
                    Ok(Err(e)) => return Err(e),
                    Err(_would_block) => {}
                }
            }
            Ok(())
        }
        .await;
        self.reregister(Interest::READABLE)?;
        result
    }

    /// Drops read readiness left over from the previous response. Called just before a request
    /// is written, when nothing of a response is pending: then any readiness is stale (the
    /// response to the new request cannot have arrived yet), and forgetting it makes the next
    /// read wait for epoll instead of spending a `recv` on EAGAIN, one syscall per request. A
    /// FIN or reset is never forgotten (tokio keeps the closed bits).
    fn forget_read_readiness(&self) {
        let Ok(fd) = self.fd() else { return };
        let mut cx = Context::from_waker(Waker::noop());
        if let Poll::Ready(Ok(mut guard)) = fd.poll_read_ready(&mut cx) {
            guard.clear_ready();
        }
    }

    fn reregister(&mut self, interest: Interest) -> io::Result<()> {
        let old = self
            .fd
            .take()
            .ok_or_else(|| io::Error::other("socket lost its epoll registration"))?;
        self.fd = Some(register(old.into_inner(), interest)?);
        Ok(())
    }

    /// One read into the spare capacity of `buf`; waits for readiness first.
    async fn read(&mut self, buf: &mut BytesMut) -> io::Result<usize> {
        loop {
            let mut guard = self.fd()?.readable().await?;
            let spare = buf.spare_capacity_mut();
            let result = guard.try_io(|s| {
                // SAFETY: recv writes at most `spare.len()` bytes into the spare capacity,
                // which is valid for writes; the bytes it reports are initialised by the kernel.
                let n = unsafe {
                    libc::recv(
                        s.get_ref().as_raw_fd(),
                        spare.as_mut_ptr().cast(),
                        spare.len(),
                        0,
                    )
                };
                if n < 0 {
                    Err(io::Error::last_os_error())
                } else {
                    Ok(n as usize)
                }
            });
            match result {
                Ok(Ok(n)) => {
                    // SAFETY: the kernel initialised these `n` bytes.
                    unsafe { buf.set_len(buf.len() + n) };
                    return Ok(n);
                }
                Ok(Err(e)) if e.kind() == io::ErrorKind::Interrupted => {}
                Ok(Err(e)) => return Err(e),
                Err(_would_block) => {}
            }
        }
    }
}

/// How reading a response ended badly.
#[derive(Debug)]
pub enum ReadError {
    /// The server closed the connection before the response was complete.
    Eof,
    /// A socket error.
    Io(io::Error),
    /// The bytes are not an HTTP response.
    Parse(ParseError),
}

/// Why a connection could not be opened: the TCP connect or, for https, the TLS handshake.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The TCP connect failed or did not finish by the deadline.
    #[error("connecting to {addr} failed: {source}")]
    Tcp {
        /// The address.
        addr: SocketAddr,
        /// The socket error (`TimedOut` past the deadline).
        source: io::Error,
    },
    /// The TLS handshake failed or did not finish by the deadline.
    #[error("TLS handshake with {addr} failed: {source} (is this a plain-HTTP port?)")]
    Tls {
        /// The address.
        addr: SocketAddr,
        /// The TLS or socket error (`TimedOut` past the deadline).
        source: io::Error,
    },
}

/// `fut`, or a `TimedOut` error once `deadline` passes.
async fn by<T>(
    deadline: Instant,
    what: &str,
    fut: impl std::future::Future<Output = io::Result<T>>,
) -> io::Result<T> {
    match tokio::time::timeout_at(deadline.into(), fut).await {
        Ok(r) => r,
        Err(_) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("{what} did not finish in time"),
        )),
    }
}

/// An open connection with its buffer and parser.
pub struct Connection {
    stream: Stream,
    buf: BytesMut,
    parser: ResponseParser,
    /// Responses completed on this connection.
    served: u64,
}

impl Connection {
    /// Connects (and handshakes, for https), both within `timeout`.
    pub async fn connect(
        endpoint: &Endpoint,
        collect: bool,
        timeout: Duration,
    ) -> Result<Connection, ConnectError> {
        Self::connect_by(endpoint, collect, Instant::now() + timeout).await
    }

    /// Connects (and handshakes, for https); both must finish by `deadline`, so that neither a
    /// silent port nor a stuck handshake can hold a caller past it.
    pub async fn connect_by(
        endpoint: &Endpoint,
        collect: bool,
        deadline: Instant,
    ) -> Result<Connection, ConnectError> {
        let addr = endpoint.addr;
        let tcp_err = |source| ConnectError::Tcp { addr, source };
        let tcp = by(deadline, "the TCP connect", TcpStream::connect(addr))
            .await
            .map_err(tcp_err)?;
        tcp.set_nodelay(true).map_err(tcp_err)?;
        let stream = match &endpoint.tls {
            None => Stream::Plain(Plain::new(tcp).map_err(tcp_err)?),
            Some((connector, name)) => {
                let handshake = connector.connect(name.clone(), tcp);
                let tls = by(deadline, "the handshake", handshake)
                    .await
                    .map_err(|source| ConnectError::Tls { addr, source })?;
                Stream::Tls(Box::new(tls))
            }
        };
        Ok(Connection {
            stream,
            buf: BytesMut::with_capacity(READ_BUF),
            parser: ResponseParser::new(collect),
            served: 0,
        })
    }

    /// True once a response has completed on this connection: a close before the next
    /// response is then most likely the server's keep-alive timeout, not a broken server.
    pub fn reused(&self) -> bool {
        self.served > 0
    }

    /// Bytes read but not yet consumed by the parser (the start of a response that failed to
    /// parse, for example).
    pub fn buffered(&self) -> &[u8] {
        &self.buf
    }

    /// True when part of a response has been parsed (its head at least).
    pub fn mid_response(&self) -> bool {
        !self.parser.idle()
    }

    /// Writes the whole batch.
    pub async fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        match &mut self.stream {
            Stream::Plain(s) => {
                if self.parser.idle() && self.buf.is_empty() {
                    s.forget_read_readiness();
                }
                s.write_all(bytes).await
            }
            Stream::Tls(s) => {
                s.write_all(bytes).await?;
                s.flush().await
            }
        }
    }

    /// Tries to complete a response from buffered bytes only.
    pub fn parse_buffered(&mut self) -> Result<Option<Parsed>, ReadError> {
        let parsed = self.parser.parse(&mut self.buf).map_err(ReadError::Parse)?;
        self.served += u64::from(parsed.is_some());
        Ok(parsed)
    }

    /// Reads once more from the socket (cancel-safe); returns the bytes read, or the end.
    pub async fn fill(&mut self) -> Result<usize, ReadError> {
        if self.buf.capacity() - self.buf.len() < 512 {
            self.buf.reserve(READ_BUF);
        }
        match &mut self.stream {
            Stream::Plain(s) => s.read(&mut self.buf).await,
            Stream::Tls(s) => s.read_buf(&mut self.buf).await,
        }
        .map_err(ReadError::Io)
    }

    /// At EOF: the response if its body was delimited by the close.
    pub fn finish_at_eof(&mut self) -> Option<Parsed> {
        let parsed = self.parser.eof();
        self.served += u64::from(parsed.is_some());
        parsed
    }
}
