//! A tiny in-process HTTP/1.1 server for the embedding examples (`benches/embed.rs`,
//! `examples/merge_runs.rs`): keep-alive, one thread per connection, the same 13-byte body for
//! every request. Just enough to be driven by aefm-loadgen without anything else running.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};

/// The response to every request: small and fixed, so the server's cost stays flat.
const RESPONSE: &[u8] =
    b"HTTP/1.1 200 OK\r\nContent-Length: 13\r\nContent-Type: text/plain\r\n\r\nHello, world!";

/// Starts the server on an ephemeral port of 127.0.0.1 and returns its address. It runs until
/// the process exits.
pub fn start() -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || serve(stream));
        }
    });
    Ok(addr)
}

/// Answers every request head on `stream` (bodiless `GET`s, pipelined or not) until the client
/// closes it.
fn serve(mut stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let mut buf = Vec::with_capacity(4096);
    let mut chunk = [0u8; 4096];
    loop {
        let n = match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        buf.extend_from_slice(&chunk[..n]);
        // One response per complete head; a partial head waits for the next read.
        let mut answers = Vec::new();
        while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            buf.drain(..end + 4);
            answers.extend_from_slice(RESPONSE);
        }
        if !answers.is_empty() && stream.write_all(&answers).is_err() {
            return;
        }
    }
}
