//! One client connection: TCP (TCP_NODELAY, like wrk) or TLS via rustls, its read buffer and its
//! response parser. https does **not** verify certificates (like wrk2): a load generator must
//! reach test servers with self-signed certificates; SNI is set to the URL's host.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::BytesMut;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
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
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
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

/// An open connection with its buffer and parser.
pub struct Connection {
    stream: Stream,
    buf: BytesMut,
    parser: ResponseParser,
}

impl Connection {
    /// Connects (and handshakes, for https).
    pub async fn connect(endpoint: &Endpoint, collect: bool) -> io::Result<Connection> {
        let tcp = TcpStream::connect(endpoint.addr).await?;
        tcp.set_nodelay(true)?;
        let stream = match &endpoint.tls {
            None => Stream::Plain(tcp),
            Some((connector, name)) => {
                Stream::Tls(Box::new(connector.connect(name.clone(), tcp).await?))
            }
        };
        Ok(Connection {
            stream,
            buf: BytesMut::with_capacity(READ_BUF),
            parser: ResponseParser::new(collect),
        })
    }

    /// Writes the whole batch.
    pub async fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        match &mut self.stream {
            Stream::Plain(s) => s.write_all(bytes).await,
            Stream::Tls(s) => {
                s.write_all(bytes).await?;
                s.flush().await
            }
        }
    }

    /// Tries to complete a response from buffered bytes only.
    pub fn parse_buffered(&mut self) -> Result<Option<Parsed>, ReadError> {
        self.parser.parse(&mut self.buf).map_err(ReadError::Parse)
    }

    /// Reads once more from the socket (cancel-safe); returns the bytes read, or the end.
    pub async fn fill(&mut self) -> Result<usize, ReadError> {
        if self.buf.capacity() - self.buf.len() < 512 {
            self.buf.reserve(READ_BUF);
        }
        let n = match &mut self.stream {
            Stream::Plain(s) => s.read_buf(&mut self.buf).await,
            Stream::Tls(s) => s.read_buf(&mut self.buf).await,
        }
        .map_err(ReadError::Io)?;
        Ok(n)
    }

    /// At EOF: the response if its body was delimited by the close.
    pub fn finish_at_eof(&mut self) -> Option<Parsed> {
        self.parser.eof()
    }
}
