"""Issue 9, case 3 and the hostile-server cases: every fetch ends by its deadline, within its memory cap.

Each peer is a real loopback socket that misbehaves in one way; the fetch is the
production one (sources/fetch.py). A fetch either returns the text or raises one
FetchError line, never later than the deadline plus scheduling slack, and never
holding much more than the body cap in memory.
"""

from __future__ import annotations

import gzip
import re
import socket
import struct
import time
import tracemalloc
import zlib

import pytest

from ml_cost_exporter.sources.fetch import Fetcher, FetchError

TIMEOUT = 0.5
CAP = 1 << 20
SLACK = 1.0  # scheduling on a loaded two-core machine; the deadline itself is TIMEOUT


def headers(*extra: str, status: str = "200 OK") -> bytes:
    return ("\r\n".join([f"HTTP/1.1 {status}", "Content-Type: text/plain; version=0.0.4", *extra]) +
            "\r\n\r\n").encode()


def huge_body(conn: socket.socket) -> None:
    """50 MB announced and sent."""
    conn.sendall(headers(f"Content-Length: {50 << 20}"))
    line = b"tgi_request_success 1\n" * 4096
    for _ in range((50 << 20) // len(line)):
        conn.sendall(line)


def huge_chunked_body(conn: socket.socket) -> None:
    """50 MB with no length: chunked, so only reading can enforce the cap."""
    conn.sendall(headers("Transfer-Encoding: chunked"))
    chunk = b"x" * 65536
    for _ in range((50 << 20) // len(chunk)):
        conn.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
    conn.sendall(b"0\r\n\r\n")


def _bomb() -> bytes:
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)
    zeros = b"\0" * (1 << 20)
    return b"".join(compressor.compress(zeros) for _ in range(64)) + compressor.flush()  # 64 MB inflated


BOMB = _bomb()


def gzip_bomb(conn: socket.socket) -> None:
    conn.sendall(headers("Content-Encoding: gzip", f"Content-Length: {len(BOMB)}") + BOMB)


def trickle_body(conn: socket.socket) -> None:
    """Issue 9 case 3: headers, then one byte every 0.1 s for ever."""
    conn.sendall(headers(f"Content-Length: {1 << 20}"))
    while True:
        conn.sendall(b"#")
        time.sleep(0.1)


def trickle_headers(conn: socket.socket) -> None:
    for byte in headers("X-Slow: " + "a" * 1000):
        conn.sendall(bytes([byte]))
        time.sleep(0.05)


def silent(conn: socket.socket) -> None:
    conn.recv(1)  # until the client gives up


def redirect_loop(conn: socket.socket) -> None:
    conn.sendall(headers("Location: /metrics", "Content-Length: 0", status="302 Found"))


def reset_mid_body(conn: socket.socket) -> None:
    conn.sendall(headers("Content-Length: 1000") + b"tgi_request_success 1\n")
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close sends RST


def reset_at_once(conn: socket.socket) -> None:
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


def garbage_status(conn: socket.socket) -> None:
    conn.sendall(b"\x16\x03\x01 not http at all\r\n\r\n")


def endless_header(conn: socket.socket) -> None:
    conn.sendall(b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * (1 << 20) + b"\r\n\r\n")


def brotli(conn: socket.socket) -> None:
    conn.sendall(headers("Content-Encoding: br", "Content-Length: 4") + b"abcd")


def bad_gzip(conn: socket.socket) -> None:
    conn.sendall(headers("Content-Encoding: gzip", "Content-Length: 20") + b"\x1f\x8b" + b"\0" * 18)


@pytest.mark.parametrize(("behaviour", "message"), [
    (huge_body, "body larger than 1048576 bytes"),
    (huge_chunked_body, "body larger than 1048576 bytes"),
    (gzip_bomb, "body larger than 1048576 bytes"),
    (trickle_body, "deadline of 0.5s exceeded"),
    (trickle_headers, "deadline of 0.5s exceeded"),
    (silent, "deadline of 0.5s exceeded"),
    (redirect_loop, "redirect loop: /metrics was already visited"),
    (reset_mid_body, "Error"),
    (reset_at_once, "Error"),
    (garbage_status, "BadStatusLine"),
    (endless_header, "LineTooLong"),
    (brotli, "unsupported Content-Encoding 'br'"),
    (bad_gzip, "invalid gzip body"),
], ids=lambda v: v.__name__ if callable(v) else "")
def test_a_hostile_server_costs_one_failed_fetch_bounded_in_time_and_memory(peer, behaviour, message):
    server = peer(behaviour)
    tracemalloc.start()
    started = time.monotonic()
    try:
        with pytest.raises(FetchError, match=re.escape(message)) as failure:
            Fetcher(server.url, TIMEOUT, CAP).fetch()
        elapsed = time.monotonic() - started
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert "\n" not in str(failure.value)
    assert elapsed < TIMEOUT + SLACK, f"{behaviour.__name__} held the fetch {elapsed:.2f}s"
    assert peak < 4 * CAP, f"{behaviour.__name__} made the fetch hold {peak} bytes"


def test_invalid_utf8_is_replaced_not_fatal(peer):
    body = b"tgi_request_success 5\n\xff\xfe\xc3(\n"
    server = peer(lambda conn: conn.sendall(headers(f"Content-Length: {len(body)}") + body))
    text = Fetcher(server.url, TIMEOUT, CAP).fetch()
    assert text.startswith("tgi_request_success 5\n") and "\ufffd" in text


def test_gzip_within_the_cap_is_decompressed(peer):
    body = b"tgi_request_success 7\n" * 10000
    packed = gzip.compress(body)
    server = peer(lambda conn: conn.sendall(headers("Content-Encoding: gzip", f"Content-Length: {len(packed)}")
                                            + packed))
    assert Fetcher(server.url, TIMEOUT, CAP).fetch() == body.decode()


def test_a_kept_alive_connection_closed_by_the_server_is_reopened_once(peer):
    body = b"tgi_request_success 1\n"

    def one_reply_then_close(conn: socket.socket) -> None:
        conn.sendall(headers(f"Content-Length: {len(body)}") + body)  # HTTP/1.1: the client keeps it open

    server = peer(one_reply_then_close)
    fetcher = Fetcher(server.url, TIMEOUT, CAP)
    assert fetcher.fetch() == body.decode()
    assert fetcher.fetch() == body.decode()
    fetcher.close()
