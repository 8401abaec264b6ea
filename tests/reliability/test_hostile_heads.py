"""Hostile request heads against a real server over raw sockets: too many headers, a huge header, slowloris.

Each is refused by the HTTP protocol before the request starts (431 / 408 with a JSON ``code``), within about a
second, without the server's memory growing, and without stalling a well-behaved client meanwhile.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from pathlib import Path

from tests.fixtures.servers import ServerFactory, ServerProcess, wait_until
from tests.reliability.conftest import ctr_body, ready, start
from tests.reliability.test_load_unload_leak import rss

HEADER_TIMEOUT_S = 1.0


def _address(server: ServerProcess) -> tuple[str, int]:
    host, port = server.url.removeprefix("http://").split(":")
    return host, int(port)


def _read_answer(sock: socket.socket, timeout_s: float = 10.0) -> bytes:
    """Everything the server sends until it closes (or ``timeout_s``); a reset after the answer is fine."""
    sock.settimeout(timeout_s)
    chunks = []
    try:
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    except (ConnectionResetError, TimeoutError):
        pass
    return b"".join(chunks)


def _status_and_code(answer: bytes) -> tuple[int, str]:
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 "), f"no HTTP answer: {answer[:200]!r}"
    error = json.loads(body)["error"]
    return int(head.split()[1]), error["code"] if isinstance(error, dict) else json.loads(body)["code"]


def _get_head(extra: bytes) -> bytes:
    return b"GET /v2/health/live HTTP/1.1\r\nhost: x\r\n" + extra


def test_too_many_headers_is_431(repo: Path, start_server: ServerFactory) -> None:
    server = start(start_server, repo)
    ready(server)
    many = b"".join(b"x-h%d: v\r\n" % i for i in range(10_000))
    with socket.create_connection(_address(server)) as s:
        t0 = time.monotonic()
        s.sendall(_get_head(many) + b"\r\n")
        answer = _read_answer(s)
        took = time.monotonic() - t0
    assert _status_and_code(answer) == (431, "headers_too_large"), answer[:300]
    assert took < 5, f"refusal took {took:.1f} s"
    few = b"".join(b"x-h%d: v\r\n" % i for i in range(50))
    with socket.create_connection(_address(server)) as s:
        s.sendall(_get_head(few) + b"connection: close\r\n\r\n")
        assert _read_answer(s).startswith(b"HTTP/1.1 200"), "50 headers must still be served"


def test_huge_header_is_refused_at_once_with_flat_memory(repo: Path, start_server: ServerFactory) -> None:
    server = start(start_server, repo)
    ready(server)
    before = rss(server.proc.pid)
    chunk = b"a" * 65536
    sent = 0
    with socket.create_connection(_address(server)) as s:
        t0 = time.monotonic()
        s.sendall(_get_head(b"x-big: "))
        try:  # up to 64 MB of one header line; the server answers and stops reading long before
            while sent < 64 * 1024 * 1024 and time.monotonic() - t0 < 20:
                s.sendall(chunk)
                sent += len(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass
        answer = _read_answer(s)
        took = time.monotonic() - t0
    grew = rss(server.proc.pid) - before
    assert b" 431 " in answer[:20] or answer == b"", answer[:300]
    assert took < 5, f"the server read a huge header for {took:.1f} s ({sent} bytes sent)"
    assert grew < 50 * 1024 * 1024, f"RSS grew by {grew / 2**20:.0f} MiB"
    with socket.create_connection(_address(server)) as s:  # a plain huge head (one send) gets the answer
        s.sendall(_get_head(b"x-big: " + b"a" * 200_000 + b"\r\n\r\n"))
        assert _status_and_code(_read_answer(s)) == (431, "headers_too_large")
    assert server.post("/v1/ads/ctr", json=ctr_body(2)).status_code == 200


def test_slowloris_connections_are_closed_after_the_header_timeout(repo: Path, start_server: ServerFactory) -> None:
    server = start(start_server, repo, APP_HEADER_TIMEOUT_S=str(HEADER_TIMEOUT_S))
    ready(server)
    conns = [socket.create_connection(_address(server)) for _ in range(100)]
    silent = [socket.create_connection(_address(server)) for _ in range(20)]
    stop = threading.Event()

    def drip() -> None:  # one header byte per 0.2 s on every connection, never finishing the head
        for s in conns:
            s.sendall(b"GET / HTTP/1.1\r\n")
        while not stop.is_set():
            for s in conns:
                try:
                    s.sendall(b"x")
                except OSError:
                    pass
            stop.wait(0.2)

    t0 = time.monotonic()
    dripper = threading.Thread(target=drip, daemon=True)
    dripper.start()
    try:
        answers = [_read_answer(s, timeout_s=30) for s in conns]
        closed_after = time.monotonic() - t0
        silent_answers = [_read_answer(s, timeout_s=30) for s in silent]
        silent_closed_after = time.monotonic() - t0
    finally:
        stop.set()
        dripper.join(5)
        for s in conns + silent:
            s.close()
    codes = {_status_and_code(a) for a in answers}
    assert codes == {(408, "header_timeout")}, codes
    assert closed_after < HEADER_TIMEOUT_S + 5, f"slowloris connections held {closed_after:.1f} s"
    assert silent_answers == [b""] * len(silent), "a client that sent nothing is closed without an answer"
    assert silent_closed_after < HEADER_TIMEOUT_S + 5, f"silent connections held {silent_closed_after:.1f} s"
    wait_until(lambda: server.get("/v2/health/live").status_code == 200, 10, "liveness after the attack")
    # a keep-alive client that is slow only between requests is not cut mid-request
    with socket.create_connection(_address(server)) as s:
        s.sendall(_get_head(b"\r\n"))
        s.settimeout(10)
        assert s.recv(65536).startswith(b"HTTP/1.1 200")
