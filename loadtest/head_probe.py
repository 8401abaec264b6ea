"""Hostile request heads against a real server: 10,000 headers, a 64 MB header line (with a bystander timed), 300
slowloris connections. ``python loadtest/head_probe.py ROOT REPO`` starts ``python -m app`` from checkout ROOT on
model repository REPO (one worker) and prints one line per probe (docs/operations.md, "Hostile inputs")."""

import contextlib
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import psutil

from loadtest.harness.procs import python_server

root, repo = sys.argv[1], sys.argv[2]
env = {"MODEL_REPO": repo, "APP_WORKERS": "1", "APP_GRPC_PORT": "0", "APP_LOG_LEVEL": "warning"}
server = contextlib.ExitStack()
log = Path(tempfile.mkdtemp(prefix="head-probe-")) / "server.log"
url, pid = server.enter_context(python_server(["-m", "app"], env, log, cwd=Path(root)))
port = int(url.rsplit(":", 1)[1])


def rss() -> float:
    return float(psutil.Process(pid).memory_info().rss / 2**20)


def answer(s, t=40):
    s.settimeout(t)
    out = b""
    try:
        while c := s.recv(65536):
            out += c
    except (ConnectionResetError, TimeoutError, OSError):
        pass
    return out


head = b"GET /v2/health/live HTTP/1.1\r\nhost: x\r\n"
# 1. 10,000 headers
s = socket.create_connection(("127.0.0.1", port))
t = time.monotonic()
s.sendall(head + b"".join(b"x-h%d: v\r\n" % i for i in range(10000)) + b"connection: close\r\n\r\n")
a = answer(s)
print(f"10k headers: {a[:12]!r} in {time.monotonic() - t:.2f} s")
s.close()
# 2. 64 MB header line, a bystander timed meanwhile
r0 = rss()
lat: list[float] = []
stop = threading.Event()


def bystander():
    with httpx.Client(base_url=url) as c:
        while not stop.is_set():
            t1 = time.monotonic()
            c.get("/v2/health/live", timeout=60)
            lat.append(time.monotonic() - t1)


th = threading.Thread(target=bystander)
th.start()
s = socket.create_connection(("127.0.0.1", port))
t = time.monotonic()
sent = 0
try:
    s.sendall(head + b"x-big: ")
    while sent < 64 * 2**20:
        s.sendall(b"a" * 65536)
        sent += 65536
    s.sendall(b"\r\n\r\n")
except OSError as e:
    print("  sender stopped:", type(e).__name__)
a = answer(s, 60)
took = time.monotonic() - t
s.close()
stop.set()
th.join()
print(
    f"64 MB header: {a[:12]!r} after {sent / 2**20:.1f} MB sent, connection ended in {took:.2f} s; RSS {r0:.0f} -> {rss():.0f} MiB; bystander max {max(lat, default=0) * 1e3:.0f} ms over {len(lat)} requests"
)
# 3. 300 slowloris
conns = [socket.create_connection(("127.0.0.1", port)) for _ in range(300)]
for c in conns:
    c.sendall(b"GET / HTTP/1.1\r\n")
t = time.monotonic()
open_at = {}
for wait in (5, 12, 30):
    while time.monotonic() - t < wait:
        for c in conns:
            try:
                c.send(b"x")
            except OSError:
                pass
        time.sleep(1)
    alive = 0
    for c in conns:
        c.setblocking(False)
        try:
            d = c.recv(1 << 16)
            alive += 0 if d == b"" or d.startswith(b"HTTP") else 1
        except BlockingIOError:
            alive += 1
        except OSError:
            pass
        c.setblocking(True)
    open_at[wait] = alive
print(f"300 slowloris connections still open after 5/12/30 s: {open_at}")
server.close()
