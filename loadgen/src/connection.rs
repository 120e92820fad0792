//! Where the workers connect: the [`Endpoint`] (address, and the TLS session settings for
//! https), and [`probe`], one blocking connect (and handshake) as a run makes them, so that a
//! wrong port fails before any load. https does **not** verify certificates (like wrk2): a load
//! generator must reach test servers with self-signed certificates; SNI is set to the URL's host.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

use crate::worker::socket::TlsSetup;

/// How to reach the server: address, and TLS settings for https.
#[derive(Clone)]
pub struct Endpoint {
    /// Address to connect to.
    pub addr: SocketAddr,
    /// TLS client settings and server name, for https.
    pub(crate) tls: Option<TlsSetup>,
}

impl Endpoint {
    /// An endpoint; `tls_host` set means https with SNI for that host.
    pub fn new(addr: SocketAddr, tls_host: Option<&str>) -> Result<Self, String> {
        let tls = match tls_host {
            None => None,
            Some(host) => {
                let name = ServerName::try_from(host.to_string())
                    .map_err(|e| format!("invalid TLS server name {host}: {e}"))?;
                Some(TlsSetup {
                    config: tls_config(),
                    name,
                })
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

/// Connects to `endpoint` and, for https, completes a TLS handshake, all within `timeout`
/// (blocking). The run's own connections are made the same way, without blocking.
pub fn probe(endpoint: &Endpoint, timeout: Duration) -> Result<(), ConnectError> {
    let addr = endpoint.addr;
    let deadline = Instant::now() + timeout;
    let tcp = TcpStream::connect_timeout(&addr, timeout)
        .map_err(|source| ConnectError::Tcp { addr, source })?;
    let Some(tls) = &endpoint.tls else {
        return Ok(());
    };
    let tls_err = |source| ConnectError::Tls { addr, source };
    let mut session = rustls::ClientConnection::new(tls.config.clone(), tls.name.clone())
        .map_err(|e| tls_err(io::Error::other(e)))?;
    let mut tcp = tcp;
    let late = || {
        io::Error::new(
            io::ErrorKind::TimedOut,
            "the handshake did not finish in time",
        )
    };
    while session.is_handshaking() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(tls_err(late()));
        }
        tcp.set_read_timeout(Some(left)).map_err(tls_err)?;
        session.complete_io(&mut tcp).map_err(|e| match e.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => tls_err(late()),
            _ => tls_err(e),
        })?;
    }
    let _ = tcp.flush();
    let mut sink = [0u8; 0];
    let _ = session.reader().read(&mut sink);
    Ok(())
}
