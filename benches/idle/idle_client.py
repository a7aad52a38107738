#!/usr/bin/env python3
"""Open N keep-alive HTTP/1.1 connections to a proxy, send one request on each, keep them idle.

Used by benches/idle_memory.sh. Prints one line "ready N" on stdout once every connection has
had its response (status 200, body read in full) and is idle; then holds the connections until
stdin closes or HOLD seconds pass, and closes them.

  idle_client.py HOST PORT N MODE [HOLD]

MODE:
  sequential  one request at a time: each response arrives before the next request leaves, so
              a proxy with an upstream keep-alive pool needs about one upstream connection
  burst       every connection sends its request before any response is read: the proxy has
              up to N requests in flight at once and opens as many upstream connections as it
              allows, then keeps as many idle as its pool bound says
Exits 1 with a message on stderr if a connection fails or a response is not a 200.
"""

import selectors
import socket
import sys
import time

REQUEST_TEMPLATE = (
    "GET / HTTP/1.1\r\nHost: {host}\r\nUser-Agent: idle-client\r\nAccept: */*\r\n\r\n"
)


def fail(msg):
    print(f"idle_client: {msg}", file=sys.stderr, flush=True)
    sys.exit(1)


def connect_all(host, port, n):
    conns = []
    for i in range(n):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.settimeout(10)
        try:
            s.connect((host, port))
        except OSError as e:
            fail(f"connect #{i} failed: {e}")
        conns.append(s)
    return conns


def response_complete(buf):
    """True once buf holds a full response head and its Content-Length body."""
    head_end = buf.find(b"\r\n\r\n")
    if head_end < 0:
        return False
    head = buf[:head_end].decode("latin-1")
    status = head.split("\r\n", 1)[0]
    if " 200 " not in status + " ":
        fail(f"unexpected status line: {status!r}")
    length = None
    for line in head.split("\r\n")[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            length = int(value.strip())
    if length is None:
        fail("response without Content-Length (the benchmark upstreams always send one)")
    return len(buf) >= head_end + 4 + length


def read_response(s):
    buf = b""
    while not response_complete(buf):
        chunk = s.recv(4096)
        if not chunk:
            fail("connection closed before the response completed")
        buf += chunk


def run_sequential(conns, request):
    for s in conns:
        s.sendall(request)
        read_response(s)


def run_burst(conns, request):
    for s in conns:
        s.sendall(request)
    sel = selectors.DefaultSelector()
    bufs = {}
    for s in conns:
        s.setblocking(False)
        bufs[s.fileno()] = b""
        sel.register(s, selectors.EVENT_READ)
    pending = len(conns)
    deadline = time.monotonic() + 60
    while pending:
        if time.monotonic() > deadline:
            fail(f"{pending} responses still missing after 60 s")
        for key, _ in sel.select(timeout=1):
            s = key.fileobj
            chunk = s.recv(4096)
            if not chunk:
                fail("connection closed before the response completed")
            bufs[s.fileno()] += chunk
            if response_complete(bufs[s.fileno()]):
                sel.unregister(s)
                pending -= 1
    sel.close()


def main():
    if len(sys.argv) not in (5, 6):
        fail("usage: idle_client.py HOST PORT N sequential|burst [HOLD_SECONDS]")
    host, port, n, mode = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    hold = float(sys.argv[5]) if len(sys.argv) == 6 else 600.0
    request = REQUEST_TEMPLATE.format(host=f"{host}:{port}").encode()
    conns = connect_all(host, port, n)
    if mode == "sequential":
        run_sequential(conns, request)
    elif mode == "burst":
        run_burst(conns, request)
    else:
        fail(f"unknown mode {mode!r}")
    print(f"ready {len(conns)}", flush=True)
    # Idle until the caller closes our stdin (or HOLD passes): then close everything.
    sel = selectors.DefaultSelector()
    sel.register(sys.stdin, selectors.EVENT_READ)
    sel.select(timeout=hold)
    for s in conns:
        s.close()


if __name__ == "__main__":
    main()
