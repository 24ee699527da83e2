"""One HTTP GET of a peer's /metrics, bounded in time and size whatever the peer does.

A single deadline covers connect, headers and body: a peer that trickles one
byte at a time cannot stretch the fetch past it, because each read waits only
for what is left of it and a watchdog shuts the socket when it passes. The body
is capped while it is read (after gzip decompression, whose output is bounded
too), redirects are refused, and undecodable bytes are replaced. Standard
library only: `requests` cost the sidecar about 4.5 MB of memory.
"""

from __future__ import annotations

import contextlib
import http.client
import logging
import socket
import ssl
import threading
import time
import zlib
from collections.abc import Callable
from urllib.parse import urlsplit

log = logging.getLogger(__name__)

ACCEPT = "text/plain;version=0.0.4;q=1,*/*;q=0.1"
CHUNK_BYTES = 65536
_STALE = (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError)


class FetchError(Exception):
    """The fetch failed; the message is one short line saying why."""


class _Deadline:
    """Seconds left until a fixed monotonic instant; raises once it has passed."""

    def __init__(self, seconds: float, monotonic: Callable[[], float]) -> None:
        self._monotonic = monotonic
        self._end = monotonic() + seconds
        self.seconds = seconds

    def left(self) -> float:
        remaining = self._end - self._monotonic()
        if remaining <= 0:
            raise FetchError(f"deadline of {self.seconds:g}s exceeded")
        return remaining


class _Body:
    """Accumulates a body up to a cap, decompressing gzip with bounded output."""

    def __init__(self, max_bytes: int, encoding: str) -> None:
        self._max = max_bytes
        self._chunks: list[bytes] = []
        self._size = 0
        self._gunzip = zlib.decompressobj(wbits=31) if encoding == "gzip" else None

    def feed(self, data: bytes) -> None:
        if self._gunzip is None:
            self._add(data)
            return
        try:
            while data:
                self._add(self._gunzip.decompress(data, self._max - self._size + 1))
                data = self._gunzip.unconsumed_tail
        except zlib.error as exc:
            raise FetchError(f"invalid gzip body: {exc}") from None

    def _add(self, data: bytes) -> None:
        self._size += len(data)
        if self._size > self._max:
            raise FetchError(f"body larger than {self._max} bytes")
        self._chunks.append(data)

    def text(self) -> str:
        return b"".join(self._chunks).decode("utf-8", errors="replace")


def _one_line(exc: BaseException) -> str:
    text = str(exc).splitlines()[0][:200] if str(exc) else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class Fetcher:
    """GETs one URL again and again over a kept-alive connection, each time within a total deadline."""

    def __init__(self, url: str, timeout: float, max_bytes: int,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise FetchError(f"unsupported URL {url!r}: expected http:// or https://")
        self._parts = parts
        self._target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self._timeout = timeout
        self._max_bytes = max_bytes
        self._monotonic = monotonic
        self._connection: http.client.HTTPConnection | None = None
        self._aborted = False
        self._reused = False
        self._sock: socket.socket | None = None

    def _connect(self, deadline: _Deadline) -> http.client.HTTPConnection:
        if self._connection is None:
            host, port = self._parts.hostname, self._parts.port
            if self._parts.scheme == "https":
                self._connection = http.client.HTTPSConnection(host, port, context=ssl.create_default_context())
            else:
                self._connection = http.client.HTTPConnection(host, port)
        connection = self._connection
        if connection.sock is None:
            connection.timeout = deadline.left()
            connection.connect()
        return connection

    def fetch(self) -> str:
        """The body as text; FetchError (one line) on any failure, never later than the deadline."""
        deadline = _Deadline(self._timeout, self._monotonic)
        self._aborted = False
        watchdog = threading.Timer(self._timeout, self._abort)
        watchdog.daemon = True
        watchdog.start()
        try:
            try:
                return self._exchange(deadline)
            except _STALE:
                if not self._reused:
                    raise
                self.close()  # the peer closed the kept-alive connection between fetches: once more, afresh
                return self._exchange(deadline)
        except FetchError:
            self.close()
            raise
        except (OSError, http.client.HTTPException, ValueError) as exc:
            self.close()
            if self._aborted or isinstance(exc, TimeoutError):
                raise FetchError(f"deadline of {self._timeout:g}s exceeded") from None
            raise FetchError(_one_line(exc)) from None
        finally:
            watchdog.cancel()

    def _exchange(self, deadline: _Deadline) -> str:
        self._reused = self._connection is not None and self._connection.sock is not None
        connection = self._connect(deadline)
        sock = self._sock = connection.sock  # http.client drops it from the connection once a response says close
        sock.settimeout(deadline.left())
        connection.request("GET", self._target, headers={"Accept": ACCEPT, "Accept-Encoding": "gzip"})
        sock.settimeout(deadline.left())
        response = connection.getresponse()
        if response.status != 200:
            kind = "redirect (not followed)" if 300 <= response.status < 400 else response.reason
            raise FetchError(f"HTTP {response.status} {kind}".strip())
        encoding = (response.getheader("Content-Encoding") or "identity").strip().lower()
        if encoding not in ("identity", "gzip"):
            raise FetchError(f"unsupported Content-Encoding {encoding!r}")
        length = response.getheader("Content-Length")
        if encoding == "identity" and length and length.isdigit() and int(length) > self._max_bytes:
            raise FetchError(f"body larger than {self._max_bytes} bytes (Content-Length {length})")
        body = _Body(self._max_bytes, encoding)
        with response:
            while True:
                sock.settimeout(deadline.left())
                data = response.read1(CHUNK_BYTES)
                if not data:
                    break
                body.feed(data)
        if self._aborted:
            raise FetchError(f"deadline of {self._timeout:g}s exceeded")
        if response.will_close:
            self.close()
        return body.text()

    def _abort(self) -> None:
        """Called by the watchdog at the deadline: unblocks a read the peer keeps alive byte by byte."""
        self._aborted = True
        sock = self._sock
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self._sock = None
        if self._connection is not None:
            self._connection.close()
            self._connection = None


class KeptAliveFetch:
    """`fetch(url)` for a source: one Fetcher (one kept-alive connection) per URL, made on first use."""

    def __init__(self, timeout: float, max_bytes: int) -> None:
        self._timeout = timeout
        self._max_bytes = max_bytes
        self._fetchers: dict[str, Fetcher] = {}

    def __call__(self, url: str) -> str:
        fetcher = self._fetchers.get(url)
        if fetcher is None:
            fetcher = self._fetchers[url] = Fetcher(url, self._timeout, self._max_bytes)
        return fetcher.fetch()

    def close(self) -> None:
        for fetcher in self._fetchers.values():
            fetcher.close()
        self._fetchers.clear()


MAX_BACKOFF_SECONDS = 300.0


class Backoff:
    """After failed reads of one peer, skip its next ticks: one interval, then 2, 4, ... up to five minutes.

    The first failure of a streak is logged as a warning, the rest at debug, so a peer that stays down
    costs one log line, not one a tick.
    """

    def __init__(self, interval: float, what: str) -> None:
        self._interval = interval
        self._what = what
        self.failures = 0
        self._next_attempt = 0.0

    def waiting(self, now: float) -> bool:
        return now < self._next_attempt

    def failed(self, now: float, error: str) -> None:
        self.failures += 1
        backoff = min(self._interval * 2 ** (self.failures - 1), MAX_BACKOFF_SECONDS)
        self._next_attempt = now + backoff - self._interval  # the next regular tick after the backoff
        level = logging.WARNING if self.failures == 1 else logging.DEBUG
        log.log(level, "cannot read %s: %s (failure %d)", self._what, error, self.failures)

    def succeeded(self) -> None:
        self.failures = 0


def fetch_text(fetch: Callable[[str], str], url: str) -> str:
    """`fetch(url)`, with any failure (a fetch hook's or a decoder's bug included) as one FetchError."""
    try:
        return fetch(url)
    except FetchError:
        raise
    except Exception as exc:  # a fetch hook or decoder bug must not stop sampling
        raise FetchError(f"{type(exc).__name__}: {exc}") from None
