"""An HTTP/1.1 keep-alive server that answers at once, except that it freezes completely for
STALL seconds starting AT seconds after the first request (EVERY/COUNT repeat it): the server
of the coordinated-omission benchmark. Usage: stall_server.py PORT AT STALL [EVERY COUNT]"""
import socket, sys, threading, time

port, at, stall = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3])
every = float(sys.argv[4]) if len(sys.argv) > 4 else 0.0
count = int(sys.argv[5]) if len(sys.argv) > 5 else 1
anchor = None
lock = threading.Lock()
BODY = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


def wait_out_stall():
    """Blocks while a stall is on (measured from the first request)."""
    now = time.monotonic() - anchor
    for k in range(count):
        begin = at + k * every
        if begin <= now < begin + stall:
            time.sleep(begin + stall - now)
            return


def serve(conn):
    global anchor
    buf = b""
    while True:
        try:
            data = conn.recv(65536)
        except OSError:  # the generator closed its connections at its end
            return
        if not data:
            return
        buf += data
        while b"\r\n\r\n" in buf:
            _, buf = buf.split(b"\r\n\r\n", 1)
            with lock:
                if anchor is None:
                    anchor = time.monotonic()
            wait_out_stall()
            try:
                conn.sendall(BODY)
            except OSError:
                return


s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", port))
s.listen(1024)
while True:
    c, _ = s.accept()
    c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    threading.Thread(target=serve, args=(c,), daemon=True).start()
