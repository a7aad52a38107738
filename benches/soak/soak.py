#!/usr/bin/env python3
"""The soak run behind benches/soak.sh (see its header): canaryd under mixed traffic, rollouts
that promote and roll back, a reload every 10 s and upstream faults, sampled every 10 s.

Standard library only. Everything listens on 127.0.0.1, ports BASE_PORT..BASE_PORT+7.
"""

import argparse
import asyncio
import json
import os
import random
import signal
import ssl
import subprocess
import sys
import time
import urllib.request

BODY = b"x" * 512


# ---- upstreams ---------------------------------------------------------------------------------

class Upstream:
    """An HTTP/1.1 keep-alive upstream. `error_rate`: share answered 500 (a bad canary).
    `faults`: resets mid-body and stalls past request_timeout (the fault route)."""

    def __init__(self, name, error_rate=0.0, faults=False):
        self.name, self.error_rate, self.faults = name, error_rate, faults

    async def handle(self, reader, writer):
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                headers = {}
                for line in lines[1:]:
                    if ":" in line:
                        k, v = line.split(":", 1)
                        headers[k.strip().lower()] = v.strip()
                length = int(headers.get("content-length", "0") or 0)
                if length:
                    await reader.readexactly(length)
                if headers.get("upgrade", "").lower() == "websocket":
                    await self.websocket(reader, writer, headers)
                    return
                roll = random.random()
                if self.faults and roll < 0.02:
                    # Reset mid-body: promise 4096 bytes, send 100, abort.
                    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 4096\r\n\r\n" + b"y" * 100)
                    await writer.drain()
                    writer.transport.abort()
                    return
                if self.faults and roll < 0.03:
                    await asyncio.sleep(5)  # past request_timeout (2 s): the proxy answers 504
                    writer.transport.abort()
                    return
                status, body = (b"500 Internal Server Error", b"bad-canary") if roll < self.error_rate else (b"200 OK", BODY)
                writer.write(b"HTTP/1.1 " + status + b"\r\nContent-Length: " + str(len(body)).encode()
                             + b"\r\nx-upstream: " + self.name.encode() + b"\r\n\r\n" + body)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError,
                asyncio.CancelledError):
            pass
        finally:
            writer.close()

    async def websocket(self, reader, writer, headers):
        import base64, hashlib
        key = headers.get("sec-websocket-key", "")
        accept = base64.b64encode(hashlib.sha1((key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest())
        writer.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     b"Sec-WebSocket-Accept: " + accept + b"\r\n\r\n")
        await writer.drain()
        while True:  # echo unmasked what the client sent masked
            first = await reader.readexactly(2)
            n = first[1] & 0x7F
            mask = await reader.readexactly(4)
            data = bytes(b ^ mask[i % 4] for i, b in enumerate(await reader.readexactly(n)))
            if first[0] & 0x0F == 8:
                writer.write(b"\x88\x00")
                await writer.drain()
                return
            writer.write(bytes([0x81, len(data)]) + data)
            await writer.drain()


# ---- clients -----------------------------------------------------------------------------------

class Tally:
    def __init__(self):
        self.counts = {}
        self.unexpected_samples = []

    def add(self, kind, outcome, detail=""):
        key = f"{kind}:{outcome}"
        self.counts[key] = self.counts.get(key, 0) + 1
        if outcome == "unexpected" and len(self.unexpected_samples) < 50:
            self.unexpected_samples.append(f"{time.strftime('%H:%M:%S')} {kind} {detail}")

    def unexpected(self):
        return sum(v for k, v in self.counts.items() if k.endswith(":unexpected"))


async def read_response(reader):
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    body = await reader.readexactly(length)
    return status, body


def judge(path, status, body):
    """Whether an answer is explained: 2xx, a bad canary's 500, a fault route's 502/504."""
    if 200 <= status < 300:
        return "ok"
    if status == 500 and body == b"bad-canary":
        return "canary-500"
    if path.startswith("/faults") and status in (502, 504):
        return "fault"
    return "unexpected"


async def keepalive_client(kind, host, port, tally, stop, pause, ssl_ctx=None):
    while not stop.is_set():
        try:
            reader, writer = await asyncio.open_connection(host, port, ssl=ssl_ctx,
                                                           server_hostname="localhost" if ssl_ctx else None)
        except OSError as e:
            tally.add(kind, "unexpected", f"connect: {e}")
            await asyncio.sleep(0.5)
            continue
        try:
            for i in range(200):  # a fresh connection every 200 requests
                if stop.is_set():
                    break
                path = "/faults/x" if i % 10 == 9 else f"/shop/{i}"
                writer.write(f"GET {path} HTTP/1.1\r\nHost: shop.test\r\n\r\n".encode())
                try:
                    status, body = await asyncio.wait_for(read_response(reader), 10)
                except (asyncio.IncompleteReadError, ConnectionError) as e:
                    # A reset mid-body from the fault upstream reaches the client as a cut body.
                    tally.add(kind, "fault" if path.startswith("/faults") else "unexpected", f"{path}: {e!r}")
                    break
                outcome = judge(path, status, body)
                tally.add(kind, outcome, f"{path} {status}")
                if status >= 500 and path.startswith("/faults"):
                    break  # the proxy may close after an upstream error
                await asyncio.sleep(pause)
        except Exception as e:  # noqa: BLE001 - every surprise is counted, never fatal
            tally.add(kind, "unexpected", repr(e))
        finally:
            writer.close()


async def websocket_client(host, port, tally, stop):
    while not stop.is_set():
        try:
            reader, writer = await asyncio.open_connection(host, port)
            writer.write(b"GET /shop/ws HTTP/1.1\r\nHost: shop.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                         b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            if b" 101 " not in head.split(b"\r\n")[0]:
                tally.add("websocket", "canary-500" if b" 500 " in head else "unexpected", head[:40])
            else:
                for n in range(5):
                    msg = f"hello {n}".encode()
                    writer.write(bytes([0x81, 0x80 | len(msg), 1, 2, 3, 4])
                                 + bytes(b ^ (1, 2, 3, 4)[i % 4] for i, b in enumerate(msg)))
                    echo = await asyncio.wait_for(reader.readexactly(2 + len(msg)), 10)
                    if echo[2:] != msg:
                        raise ValueError(f"echo {echo!r}")
                writer.write(b"\x88\x80\x00\x00\x00\x00")
                tally.add("websocket", "ok")
            writer.close()
        except Exception as e:  # noqa: BLE001
            tally.add("websocket", "unexpected", repr(e))
        await asyncio.sleep(1)


async def slow_client(host, port, tally, stop):
    while not stop.is_set():
        try:
            reader, writer = await asyncio.open_connection(host, port)
            for b in b"GET /shop/slow HTTP/1.1\r\nHost: shop.test\r\n\r\n":
                writer.write(bytes([b]))
                await writer.drain()
                await asyncio.sleep(0.02)
            status, body = await asyncio.wait_for(read_response(reader), 10)
            tally.add("slow", judge("/shop/slow", status, body), str(status))
            writer.close()
        except Exception as e:  # noqa: BLE001
            tally.add("slow", "unexpected", repr(e))
        await asyncio.sleep(2)


async def h2c_bursts(host, port, tally, stop):
    """h2load bursts on the stable route; every request must succeed."""
    while not stop.is_set():
        proc = await asyncio.create_subprocess_exec(
            "h2load", "-n", "200", "-c", "2", "-m", "10", f"http://{host}:{port}/h2/x",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        out = (await proc.communicate())[0].decode(errors="replace")
        ok = fail = 0
        for line in out.splitlines():
            if line.startswith("requests:"):
                words = line.replace(",", "").split()
                ok = int(words[words.index("succeeded") - 1])
                fail = int(words[words.index("failed") - 1]) + int(words[words.index("errored") - 1])
            if line.startswith("status codes:"):
                words = line.replace(",", "").split()
                non2xx = sum(int(words[words.index(c) - 1]) for c in ("3xx", "4xx", "5xx"))
                fail += non2xx
                ok -= non2xx
        tally.counts["h2c:ok"] = tally.counts.get("h2c:ok", 0) + max(ok, 0)
        if fail:
            tally.counts["h2c:unexpected"] = tally.counts.get("h2c:unexpected", 0) + fail
            tally.unexpected_samples.append(f"{time.strftime('%H:%M:%S')} h2c {fail} failed")
        await asyncio.sleep(10)


# ---- canaryd -----------------------------------------------------------------------------------

def config_text(a, revision, canary_port):
    return f"""[proxy]
listen = ["127.0.0.1:{a.base_port}"]
workers = 2
request_timeout = "2s"
[proxy.tls]
listen = ["127.0.0.1:{a.base_port + 6}"]
cert = "{a.dir}/cert.pem"
key = "{a.dir}/key.pem"
[admin]
listen = "127.0.0.1:{a.base_port + 7}"
[state]
path = "{a.dir}/state.json"
[log]
level = "warn"

[[route]]
name = "shop"
path_prefix = "/shop"
[route.primary]
revision = "v1"
endpoints = ["127.0.0.1:{a.base_port + 1}"]
[route.canary]
revision = "{revision}"
endpoints = ["127.0.0.1:{canary_port}"]
[route.analysis]
judge = "threshold"
interval = "1s"
threshold = 2
step_weight = 20
max_weight = 60
min_requests = 10
[[route.analysis.metrics]]
name = "request-success-rate"
threshold = 99.0

[[route]]
name = "faults"
path_prefix = "/faults"
[route.primary]
revision = "f1"
endpoints = ["127.0.0.1:{a.base_port + 4}", "127.0.0.1:{a.base_port + 5}"]

[[route]]
name = "h2"
path_prefix = "/h2"
[route.primary]
revision = "h1"
endpoints = ["127.0.0.1:{a.base_port + 1}"]
"""


def get(url):
    with urllib.request.urlopen(url, timeout=5) as r:
        return r.read().decode()


def proc_stats(pid):
    status = open(f"/proc/{pid}/status").read()
    field = lambda name: int(next(l.split()[1] for l in status.splitlines() if l.startswith(name + ":")))
    return field("VmRSS"), len(os.listdir(f"/proc/{pid}/fd")), field("Threads")


def metric_sum(text, name, **labels):
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def text_plot(rows):
    """RSS and descriptors over time as text bars, for BENCHMARKS.md."""
    rss_max = max(int(r[1]) for r in rows) or 1
    fd_max = max(int(r[2]) for r in rows) or 1
    lines = ["    t   RSS MiB                                        fds"]
    for r in rows:
        rss, fds = int(r[1]), int(r[2])
        lines.append(f"{int(r[0]):5d}s {rss / 1024:6.1f} {'#' * round(30 * rss / rss_max):<30} "
                     f"{fds:4d} {'=' * round(20 * fds / fd_max)}")
    return "\n".join(lines) + "\n"


async def main():
    p = argparse.ArgumentParser()
    p.add_argument("--bin", required=True)
    p.add_argument("--duration", type=int, required=True)
    p.add_argument("--dir", required=True)
    p.add_argument("--base-port", type=int, default=18600)
    p.add_argument("--pause", type=float, default=0.005, help="pause between keep-alive requests")
    a = p.parse_args()
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost",
                    "-keyout", f"{a.dir}/key.pem", "-out", f"{a.dir}/cert.pem", "-days", "2"],
                   check=True, capture_output=True)
    ups = {1: Upstream("primary"), 2: Upstream("canary-good"), 3: Upstream("canary-bad", error_rate=0.3),
           4: Upstream("faulty", faults=True)}
    servers = [await asyncio.start_server(u.handle, "127.0.0.1", a.base_port + off) for off, u in ups.items()]
    # base_port + 5 stays closed: the fault route's refused endpoint.

    revision_n, good = 2, True
    cfg = f"{a.dir}/canaryd.toml"
    open(cfg, "w").write(config_text(a, f"v{revision_n}", a.base_port + 2))
    log = open(f"{a.dir}/canaryd.log", "w")
    proxy = subprocess.Popen([a.bin, "run", "-c", cfg], stdout=log, stderr=log)
    admin = f"http://127.0.0.1:{a.base_port + 7}"
    for _ in range(100):
        try:
            get(admin + "/readyz")
            break
        except OSError:
            await asyncio.sleep(0.1)
    else:
        sys.exit("canaryd did not become ready; see canaryd.log")

    tally, stop = Tally(), asyncio.Event()
    tls = ssl.create_default_context(cafile=f"{a.dir}/cert.pem")
    tls.set_alpn_protocols(["http/1.1"])
    tasks = [asyncio.create_task(keepalive_client("http1", "127.0.0.1", a.base_port, tally, stop, a.pause))
             for _ in range(6)]
    tasks += [asyncio.create_task(keepalive_client("tls", "127.0.0.1", a.base_port + 6, tally, stop, a.pause, tls))
              for _ in range(2)]
    tasks += [asyncio.create_task(websocket_client("127.0.0.1", a.base_port, tally, stop)),
              asyncio.create_task(slow_client("127.0.0.1", a.base_port, tally, stop)),
              asyncio.create_task(h2c_bursts("127.0.0.1", a.base_port, tally, stop))]

    samples = open(f"{a.dir}/samples.csv", "w")
    samples.write("seconds,rss_kib,fds,threads,active_connections,requests,upstream_errors,phase,revision,unexpected\n")
    verdicts, started, current = {}, time.monotonic(), None
    next_sample = next_reload = 0.0
    revision_every = 30
    while (elapsed := time.monotonic() - started) < a.duration:
        try:
            route = json.loads(get(admin + "/api/v1/routes/shop"))
            phase, revision = route.get("phase"), route.get("revision") or route.get("canary_revision")
            if phase in ("Succeeded", "Failed"):
                verdicts.setdefault(revision, phase)
            current = (phase, revision)
        except OSError as e:
            tally.add("admin", "unexpected", repr(e))
        if elapsed >= next_reload:
            next_reload += 10
            if elapsed >= revision_every * (revision_n - 1):
                revision_n, good = revision_n + 1, not good
            port = a.base_port + (2 if good else 3)
            open(cfg + ".next", "w").write(config_text(a, f"v{revision_n}", port))
            os.rename(cfg + ".next", cfg)
            proxy.send_signal(signal.SIGHUP)
        if elapsed >= next_sample:
            next_sample += 10
            rss, fds, threads = proc_stats(proxy.pid)
            metrics = get(admin + "/metrics")
            row = [int(elapsed), rss, fds, threads,
                   int(metric_sum(metrics, "canaryd_active_connections")),
                   int(metric_sum(metrics, "canaryd_requests_total")),
                   int(metric_sum(metrics, "canaryd_upstream_errors_total")),
                   current[0] if current else "", current[1] if current else "", tally.unexpected()]
            samples.write(",".join(map(str, row)) + "\n")
            samples.flush()
            print("soak: " + " ".join(f"{k}={v}" for k, v in zip(
                ["t", "rss_kib", "fds", "threads", "conns", "requests", "upstream_errors", "phase", "revision",
                 "unexpected"], row)), flush=True)
        await asyncio.sleep(1)

    stop.set()
    await asyncio.wait(tasks, timeout=15)
    reloads = metric_sum(get(admin + "/metrics"), "canaryd_config_reloads_total", result="success")
    proxy.send_signal(signal.SIGTERM)
    proxy.wait(timeout=30)
    for s in servers:
        s.close()

    rows = [l.strip().split(",") for l in open(f"{a.dir}/samples.csv").readlines()[1:]]
    warm = [r for r in rows if int(r[0]) >= min(60, a.duration // 3)] or rows
    rss = [int(r[1]) for r in warm]
    fds = [int(r[2]) for r in warm]
    revisions_started = {f"v{n}" for n in range(2, revision_n)}  # the last one may still run
    no_verdict = sorted(revisions_started - set(verdicts))
    summary = {
        "duration_s": a.duration,
        "requests_by_kind_and_outcome": dict(sorted(tally.counts.items())),
        "unexpected": tally.unexpected(),
        "unexpected_samples": tally.unexpected_samples,
        "reloads_accepted": int(reloads),
        "verdicts": verdicts,
        "revisions_without_verdict": no_verdict,
        "rss_kib_after_warmup": {"first": rss[0], "min": min(rss), "max": max(rss), "last": rss[-1]},
        "fds_after_warmup": {"first": fds[0], "min": min(fds), "max": max(fds), "last": fds[-1]},
    }
    holds = (summary["unexpected"] == 0 and not no_verdict
             and rss[-1] <= rss[0] * 1.10 + 4096 and fds[-1] <= fds[0] + 16)
    summary["holds"] = holds
    json.dump(summary, open(f"{a.dir}/summary.json", "w"), indent=2)
    open(f"{a.dir}/plot.txt", "w").write(text_plot(rows))
    print(json.dumps(summary, indent=2))
    return 0 if holds else 2


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
