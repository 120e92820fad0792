//! One client socket as the worker loop drives it: a non-blocking TCP connection (and, for
//! https, a rustls session over it) whose reads carry the kernel's arrival time.
//!
//! Every socket asks for `SO_TIMESTAMPNS`, so each `recvmsg` returns, beside the bytes, the
//! instant the last of them reached this host's network stack. That is what lets the worker
//! sleep through responses (see [`super::poller`]): a response read a little later is timed
//! from when it arrived, not from when the worker got round to it, which is also a truer
//! latency than a user-space clock read (it leaves out the generator's own wake-up delay).
//!
//! https does **not** verify certificates (like wrk2): a load generator must reach test servers
//! with self-signed certificates; SNI is the URL's host.

use std::io::{self, Read, Write};
use std::mem::MaybeUninit;
use std::net::{SocketAddr, TcpStream};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;

use bytes::BytesMut;
use rustls::pki_types::ServerName;

/// Raw read size for TLS records.
const TLS_READ: usize = 16 * 1024 + 512;

/// The TLS side of an https endpoint: one shared client config and the server name.
#[derive(Clone)]
pub(crate) struct TlsSetup {
    pub config: Arc<rustls::ClientConfig>,
    pub name: ServerName<'static>,
}

/// A connected (or connecting) socket.
pub(super) struct Sock {
    tcp: TcpStream,
    tls: Option<Box<rustls::ClientConnection>>,
    /// Scratch for raw TLS bytes.
    raw: Vec<u8>,
}

/// What one read brought.
pub(super) struct Received {
    /// Bytes appended to the buffer; 0 means the peer closed.
    pub bytes: usize,
    /// Wall-clock (`CLOCK_REALTIME`) arrival of the last byte, in ns since the epoch.
    pub stamp: Option<i128>,
}

/// Where a TLS handshake stands.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Handshake {
    /// Finished: requests can go.
    Done,
    /// Waiting for the socket to be readable or writable.
    Pending,
}

/// Starts a non-blocking connect; `true` when it completed at once.
pub(super) fn connect(addr: SocketAddr, tls: Option<&TlsSetup>) -> io::Result<(Sock, bool)> {
    use socket2::{Domain, Protocol, Socket, Type};
    let s = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    // socket2 opens sockets with close-on-exec set.
    s.set_nonblocking(true)?;
    s.set_tcp_nodelay(true)?;
    enable_timestamps(s.as_raw_fd())?;
    let done = match s.connect(&addr.into()) {
        Ok(()) => true,
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => false,
        Err(e) => return Err(e),
    };
    let tls = match tls {
        None => None,
        Some(t) => Some(Box::new(
            rustls::ClientConnection::new(t.config.clone(), t.name.clone())
                .map_err(io::Error::other)?,
        )),
    };
    let raw = if tls.is_some() {
        vec![0; TLS_READ]
    } else {
        Vec::new()
    };
    Ok((
        Sock {
            tcp: s.into(),
            tls,
            raw,
        },
        done,
    ))
}

fn enable_timestamps(fd: RawFd) -> io::Result<()> {
    let on: libc::c_int = 1;
    // SAFETY: setsockopt with a live int on a socket we own.
    let r = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_TIMESTAMPNS,
            (&on as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

impl Sock {
    /// The socket's descriptor (for epoll).
    pub(super) fn fd(&self) -> RawFd {
        self.tcp.as_raw_fd()
    }

    /// True for https.
    pub(super) fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// The connect's outcome so far: `Ok(false)` while it is still under way.
    pub(super) fn connect_result(&self) -> io::Result<bool> {
        if let Some(e) = self.tcp.take_error()? {
            return Err(e);
        }
        match self.tcp.peer_addr() {
            Ok(_) => Ok(true),
            Err(e) if e.raw_os_error() == Some(libc::ENOTCONN) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Advances the TLS handshake as far as the socket allows.
    pub(super) fn handshake(&mut self) -> io::Result<Handshake> {
        let Some(tls) = self.tls.as_mut() else {
            return Ok(Handshake::Done);
        };
        loop {
            while tls.wants_write() {
                match tls.write_tls(&mut &self.tcp) {
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        return Ok(Handshake::Pending)
                    }
                    Err(e) => return Err(e),
                }
            }
            if !tls.is_handshaking() {
                return Ok(Handshake::Done);
            }
            match read_stamped(&self.tcp, as_uninit(&mut self.raw)) {
                Ok((0, _)) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Ok((n, _)) => feed(tls, &self.raw[..n])?,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Handshake::Pending),
                Err(e) => return Err(e),
            }
        }
    }

    /// True while TLS has encrypted bytes the socket did not take yet.
    pub(super) fn tls_pending(&self) -> bool {
        self.tls.as_ref().is_some_and(|t| t.wants_write())
    }

    /// Writes as much of `bytes` as the socket takes now; returns how much was taken (TLS takes
    /// everything into its session and sends what the socket accepts, see [`Sock::flush`]).
    pub(super) fn send(&mut self, bytes: &[u8]) -> io::Result<usize> {
        match self.tls.as_mut() {
            None => {
                // SAFETY: sends from a live slice on our socket; MSG_NOSIGNAL keeps a closed peer
                // from raising SIGPIPE.
                let n = unsafe {
                    libc::send(
                        self.tcp.as_raw_fd(),
                        bytes.as_ptr().cast(),
                        bytes.len(),
                        libc::MSG_NOSIGNAL,
                    )
                };
                if n < 0 {
                    let e = io::Error::last_os_error();
                    if e.kind() == io::ErrorKind::WouldBlock {
                        return Ok(0);
                    }
                    return Err(e);
                }
                Ok(n as usize)
            }
            Some(tls) => {
                tls.writer().write_all(bytes)?;
                self.flush()?;
                Ok(bytes.len())
            }
        }
    }

    /// Sends TLS bytes the socket refused before; `true` when nothing is left.
    pub(super) fn flush(&mut self) -> io::Result<bool> {
        let Some(tls) = self.tls.as_mut() else {
            return Ok(true);
        };
        while tls.wants_write() {
            match tls.write_tls(&mut &self.tcp) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    }

    /// One read into the spare capacity of `buf` (`WouldBlock` when nothing is there).
    pub(super) fn recv(&mut self, buf: &mut BytesMut) -> io::Result<Received> {
        if buf.capacity() - buf.len() < 512 {
            buf.reserve(4096);
        }
        let Some(tls) = self.tls.as_mut() else {
            let (n, stamp) = read_stamped(&self.tcp, buf.spare_capacity_mut())?;
            // SAFETY: the kernel initialised these `n` bytes of the spare capacity.
            unsafe { buf.set_len(buf.len() + n) };
            return Ok(Received { bytes: n, stamp });
        };
        let (n, stamp) = read_stamped(&self.tcp, as_uninit(&mut self.raw))?;
        if n > 0 {
            feed(tls, &self.raw[..n])?;
        }
        let before = buf.len();
        loop {
            if buf.capacity() - buf.len() < 512 {
                buf.reserve(4096);
            }
            let spare = buf.spare_capacity_mut();
            // SAFETY: rustls only writes into the slice; we mark as initialised only what it
            // reports written.
            let dst = unsafe { &mut *(spare as *mut [MaybeUninit<u8>] as *mut [u8]) };
            match tls.reader().read(dst) {
                Ok(0) => break,
                Ok(k) => unsafe { buf.set_len(buf.len() + k) },
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => break,
                Err(e) => return Err(e),
            }
        }
        let got = buf.len() - before;
        if n > 0 && got == 0 {
            // Only TLS records without application data (a session ticket, say): nothing yet.
            return Err(io::ErrorKind::WouldBlock.into());
        }
        Ok(Received { bytes: got, stamp })
    }
}

/// Hands raw bytes to rustls and decrypts them.
fn feed(tls: &mut rustls::ClientConnection, mut raw: &[u8]) -> io::Result<()> {
    while !raw.is_empty() {
        tls.read_tls(&mut raw)?;
        tls.process_new_packets()
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    }
    Ok(())
}

fn as_uninit(v: &mut [u8]) -> &mut [MaybeUninit<u8>] {
    // SAFETY: initialised bytes are valid `MaybeUninit`s; the kernel only writes bytes into it.
    unsafe { &mut *(v as *mut [u8] as *mut [MaybeUninit<u8>]) }
}

/// Control-message space for one `SCM_TIMESTAMPNS` (u64s for alignment).
type Control = [u64; 8];

/// `recvmsg` into `dst`, with the arrival time of the last byte when the kernel gave one.
fn read_stamped(tcp: &TcpStream, dst: &mut [MaybeUninit<u8>]) -> io::Result<(usize, Option<i128>)> {
    let mut iov = libc::iovec {
        iov_base: dst.as_mut_ptr().cast(),
        iov_len: dst.len(),
    };
    let mut control: Control = [0; 8];
    // SAFETY: a zeroed msghdr is valid; we set its pointers to live buffers below.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of::<Control>();
    // SAFETY: the msghdr points at live buffers of the stated sizes.
    let n = unsafe { libc::recvmsg(tcp.as_raw_fd(), &mut msg, libc::MSG_DONTWAIT) };
    if n < 0 {
        let e = io::Error::last_os_error();
        if e.kind() == io::ErrorKind::Interrupted {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        return Err(e);
    }
    Ok((n as usize, stamp_of(&msg)))
}

/// The `SCM_TIMESTAMPNS` of a received message, in ns since the epoch.
fn stamp_of(msg: &libc::msghdr) -> Option<i128> {
    // SAFETY: CMSG_* walk the control buffer the kernel filled, within msg_controllen.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_TIMESTAMPNS {
                let ts = std::ptr::read_unaligned(libc::CMSG_DATA(c).cast::<libc::timespec>());
                return Some(ts.tv_sec as i128 * 1_000_000_000 + ts.tv_nsec as i128);
            }
            c = libc::CMSG_NXTHDR(msg, c);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    #[test]
    fn reads_carry_the_kernel_arrival_time() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let (mut s, _) = connect(l.local_addr().unwrap(), None).unwrap();
        let (mut peer, _) = l.accept().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        assert!(s.connect_result().unwrap());
        let before = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as i128;
        peer.write_all(b"hello").unwrap();
        // Read well after arrival: the stamp must still say when the bytes came.
        std::thread::sleep(std::time::Duration::from_millis(50));
        let after = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as i128;
        let mut buf = BytesMut::new();
        let r = s.recv(&mut buf).unwrap();
        assert_eq!(&buf[..], b"hello");
        let stamp = r.stamp.expect("SO_TIMESTAMPNS gives a stamp");
        assert!(stamp >= before - 1_000_000, "stamp before the write");
        assert!(
            stamp < after - 30_000_000,
            "stamp should be the arrival, ~50 ms before the read"
        );
        assert_eq!(s.send(b"x").unwrap(), 1);
        let mut one = [0u8; 1];
        peer.read_exact(&mut one).unwrap();
        drop(peer);
        std::thread::sleep(std::time::Duration::from_millis(10));
        assert_eq!(s.recv(&mut buf).unwrap().bytes, 0);
    }
}
