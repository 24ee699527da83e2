"""A small HTTP/1.1 server that no client can stall: the exporter-toolkit's limits on the standard library.

One selector thread owns every connection that is not being answered: it
accepts, runs TLS handshakes without blocking, and reads request headers, each
connection against its own deadline (header-read, then idle). A silent or
trickling client therefore costs a file descriptor and a small buffer, never a
thread, and never delays the accept loop. Complete requests go to a pool of at
most `max_requests` worker threads; a request beyond that is answered 503 at
once. Oversized headers get 431, request bodies 413, and the number of open
connections is capped by evicting the longest-waiting idle one.
"""

from __future__ import annotations

import contextlib
import http.client
import io
import logging
import queue
import re
import resource
import selectors
import socket
import ssl
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from http import HTTPStatus

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Limits:
    """What one client may take. Defaults follow node_exporter's (40 requests) and Go's servers."""

    max_requests: int = 40
    read_header_timeout: float = 10.0  # TLS handshake + request line + headers
    idle_timeout: float = 120.0  # a kept-alive connection between scrapes
    write_timeout: float = 30.0
    max_header_bytes: int = 16 * 1024
    max_connections: int = 1024


@dataclass(frozen=True)
class Request:
    method: str
    target: str
    version: str
    headers: http.client.HTTPMessage

    @property
    def path(self) -> str:
        return self.target.split("?", 1)[0]

    def keep_alive(self) -> bool:
        connection = (self.headers.get("Connection") or "").lower()
        if self.version == "HTTP/1.1":
            return "close" not in connection
        return "keep-alive" in connection


@dataclass(frozen=True)
class Response:
    status: int
    body: bytes = b""
    headers: tuple[tuple[str, str], ...] = ()


Handler = Callable[[Request], Response]
Screen = Callable[[Request], "Response | None"]  # cheap, in the selector thread: a response now, or None


class _BadRequest(Exception):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status


class _Conn:
    """A connection waiting in the selector: for its handshake, its headers or its next request."""

    def __init__(self, sock: socket.socket, peer: str, deadline: float) -> None:
        self.sock = sock
        self.peer = peer
        self.deadline = deadline
        self.buffer = bytearray()
        self.handshaken = False


_METHOD_SO_FAR = re.compile(rb"[A-Z]{0,16}(?: |\Z)")
_METHOD = re.compile(rb"[A-Z]{1,16}")


def check_request_start(buffer: bytes | bytearray) -> None:
    """Refuse at once what cannot become an HTTP/1.x request (HTTP/0.9, a TLS hello, binary); _BadRequest."""
    start = bytes(buffer[:256]).lstrip(b"\r\n")
    line_end = start.find(b"\n")
    if line_end < 0:
        if not _METHOD_SO_FAR.match(start, 0, 17):
            raise _BadRequest(400, "not an HTTP request")
        return
    parts = start[:line_end].rstrip(b"\r").split(b" ")
    if len(parts) != 3 or not _METHOD.fullmatch(parts[0]) or not parts[2].startswith(b"HTTP/"):
        raise _BadRequest(400, "malformed request line (HTTP/0.9 is not served)")


def parse_request(head: bytes) -> Request:
    """The request line and headers (everything before the blank line); _BadRequest when malformed."""
    line, _, rest = head.lstrip(b"\r\n").partition(b"\r\n")
    parts = line.split(b" ")
    if len(parts) != 3:
        raise _BadRequest(400, "malformed request line")
    try:
        method, target, version = (p.decode("ascii") for p in parts)
    except UnicodeDecodeError:
        raise _BadRequest(400, "non-ASCII request line") from None
    if version not in ("HTTP/1.0", "HTTP/1.1"):
        raise _BadRequest(505, f"unsupported version {version[:20]!r}")
    try:
        headers = http.client.parse_headers(io.BytesIO(rest + b"\r\n\r\n"))
    except http.client.HTTPException as exc:
        raise _BadRequest(431, f"bad headers: {exc}") from None
    if headers.get("Transfer-Encoding") or (headers.get("Content-Length") or "0").strip() != "0":
        raise _BadRequest(413, "request bodies are not accepted")
    return Request(method, target, version, headers)


def render(response: Response, head_only: bool, keep_alive: bool, server: str) -> bytes:
    """The response's bytes on the wire."""
    reason = HTTPStatus(response.status).phrase
    lines = [f"HTTP/1.1 {response.status} {reason}", f"Server: {server}",
             f"Content-Length: {len(response.body)}"]
    lines += [f"{name}: {value}" for name, value in response.headers]
    if not keep_alive:
        lines.append("Connection: close")
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    return head if head_only else head + response.body


def _nofile_limit(wanted: int) -> int:
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return wanted if soft == resource.RLIM_INFINITY else max(16, min(wanted, soft - 64))


class FrontServer:
    """Serves `handler` on `address` with the `Limits`; TLS when given a server-side SSL context."""

    def __init__(self, address: tuple[str, int], handler: Handler, limits: Limits = Limits(),
                 context: ssl.SSLContext | None = None, server_name: str = "ml-cost-exporter",
                 monotonic: Callable[[], float] = time.monotonic, screen: Screen | None = None) -> None:
        family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self._listener = socket.socket(family, socket.SOCK_STREAM)
        try:
            self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self._listener.bind(address)
            self._listener.listen(128)
        except OSError:
            self._listener.close()
            raise
        self._listener.setblocking(False)
        self.server_address = self._listener.getsockname()
        self._handler = handler
        self._screen = screen
        self._limits = limits
        self._max_connections = _nofile_limit(limits.max_connections)
        self._context = context
        self._name = server_name
        self._monotonic = monotonic
        self._selector = selectors.DefaultSelector()
        self._conns: dict[int, _Conn] = {}
        self._returned: queue.SimpleQueue[_Conn] = queue.SimpleQueue()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._pool = ThreadPoolExecutor(max_workers=limits.max_requests, thread_name_prefix="http")
        self._active = 0
        self._active_lock = threading.Lock()
        self._stopping = threading.Event()
        self._stopped = threading.Event()

    @property
    def handler(self) -> Handler:
        return self._handler

    @property
    def tls(self) -> bool:
        return self._context is not None

    def use_context(self, context: ssl.SSLContext | None) -> None:
        """TLS for connections accepted from now on (new certificates); TLS cannot be switched on or off."""
        if (context is None) != (self._context is None):
            raise ValueError("TLS cannot be switched on or off while serving")
        self._context = context

    # --- the selector thread ----------------------------------------------------
    def serve_forever(self) -> None:
        self._selector.register(self._listener, selectors.EVENT_READ, "listen")
        self._selector.register(self._wake_r, selectors.EVENT_READ, "wake")
        try:
            while not self._stopping.is_set():
                self._step()
        finally:
            for conn in list(self._conns.values()):
                self._drop(conn)
            self._stopped.set()

    def _step(self) -> None:
        """Wait for a socket, a returned connection or a shutdown; with no connection open, without a timeout."""
        nearest = min((c.deadline for c in self._conns.values()), default=None)
        timeout = None if nearest is None else max(nearest - self._monotonic(), 0.0)
        for key, _mask in self._selector.select(timeout):
            if key.data == "listen":
                self._accept()
            elif key.data == "wake":
                self._take_returned()
            else:
                self._on_readable(key.data)
        now = self._monotonic()
        for conn in [c for c in self._conns.values() if c.deadline <= now]:
            log.debug("%s: closed, no complete request before its deadline", conn.peer)
            self._drop(conn)

    def _accept(self) -> None:
        for _ in range(64):  # then let the other connections have a turn
            try:
                sock, peer = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # out of descriptors, say: keep serving those already open
                log.warning("accept failed: %s", exc)
                return
            sock.setblocking(False)
            if len(self._conns) >= self._max_connections:
                self._drop(min(self._conns.values(), key=lambda c: c.deadline))
            conn = _Conn(sock, f"{peer[0]}:{peer[1]}", self._monotonic() + self._limits.read_header_timeout)
            conn.handshaken = self._context is None
            self._watch(conn)

    def _watch(self, conn: _Conn) -> None:
        self._conns[conn.sock.fileno()] = conn
        self._selector.register(conn.sock, selectors.EVENT_READ, conn)

    def _unwatch(self, conn: _Conn) -> None:
        self._conns.pop(conn.sock.fileno(), None)
        with contextlib.suppress(KeyError, ValueError):
            self._selector.unregister(conn.sock)

    def _drop(self, conn: _Conn) -> None:
        self._unwatch(conn)
        conn.sock.close()

    def _take_returned(self) -> None:
        with contextlib.suppress(BlockingIOError):
            while self._wake_r.recv(4096):
                pass
        while True:
            try:
                conn = self._returned.get_nowait()
            except queue.Empty:
                return
            if self._stopping.is_set():
                conn.sock.close()
                continue
            self._watch(conn)
            self._on_readable(conn)  # a pipelined request, or TLS bytes already decrypted

    def _on_readable(self, conn: _Conn) -> None:
        try:
            if not conn.handshaken and not self._handshake(conn):
                return
            self._read(conn)
        except (OSError, ssl.SSLError) as exc:
            log.debug("%s: %s", conn.peer, exc)
            self._drop(conn)

    def _handshake(self, conn: _Conn) -> bool:
        if not isinstance(conn.sock, ssl.SSLSocket):
            self._unwatch(conn)
            conn.sock = self._context.wrap_socket(conn.sock, server_side=True, do_handshake_on_connect=False)
            self._watch(conn)
        try:
            conn.sock.do_handshake()
        except ssl.SSLWantReadError:
            return False
        except ssl.SSLWantWriteError:
            return False  # the kernel's send buffer is full for a handshake: the deadline decides
        conn.handshaken = True
        return True

    def _read(self, conn: _Conn) -> None:
        while b"\r\n\r\n" not in conn.buffer:
            if len(conn.buffer) > self._limits.max_header_bytes:
                self._refuse(conn, 431, "request headers too large")
                return
            try:
                data = conn.sock.recv(65536)
            except (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
                return
            if not data:
                self._drop(conn)
                return
            if not conn.buffer:  # a kept-alive connection starts a request: headers get their own deadline
                conn.deadline = min(conn.deadline, self._monotonic() + self._limits.read_header_timeout)
            conn.buffer += data
            try:
                check_request_start(conn.buffer)
            except _BadRequest as exc:
                self._refuse(conn, exc.status, str(exc))
                return
        head, _, rest = bytes(conn.buffer).partition(b"\r\n\r\n")
        if len(head) > self._limits.max_header_bytes:
            self._refuse(conn, 431, "request headers too large")
            return
        try:
            request = parse_request(head)
        except _BadRequest as exc:
            self._refuse(conn, exc.status, str(exc))
            return
        conn.buffer = bytearray(rest)
        early = self._screened(conn, request)
        if early is not None:
            self._answer_now(conn, early)
            return
        with self._active_lock:
            busy = self._active >= self._limits.max_requests
            if not busy:
                self._active += 1
        if busy:
            self._refuse(conn, 503, f"more than {self._limits.max_requests} concurrent requests")
            return
        self._unwatch(conn)
        self._pool.submit(self._serve, conn, request)

    def _screened(self, conn: _Conn, request: Request) -> Response | None:
        if self._screen is None:
            return None
        try:
            return self._screen(request)
        except Exception:  # a screening bug leaves the request to a worker, which answers 500 if it fails too
            log.exception("%s: screening %s %s failed", conn.peer, request.method, request.path)
            return None

    def _refuse(self, conn: _Conn, status: int, reason: str) -> None:
        """Answer at once without a worker, best effort, and close."""
        log.debug("%s: %d %s", conn.peer, status, reason)
        body = f"{reason}\n".encode()
        self._answer_now(conn, Response(status, body, (("Content-Type", "text/plain; charset=utf-8"),)))

    def _answer_now(self, conn: _Conn, response: Response) -> None:
        """Send a small response from the selector thread without blocking, best effort, and close."""
        with contextlib.suppress(OSError, ssl.SSLError):
            conn.sock.send(render(response, False, False, self._name))
        self._drop(conn)

    # --- worker threads ---------------------------------------------------------
    def _serve(self, conn: _Conn, request: Request) -> None:
        keep = False
        try:
            keep = request.keep_alive() and not self._stopping.is_set()
            try:
                response = self._handler(request)
            except Exception:  # a handler bug answers 500; the server goes on
                log.exception("%s %s failed", request.method, request.path)
                response, keep = Response(500, b"internal error\n"), False
            conn.sock.setblocking(True)
            conn.sock.settimeout(self._limits.write_timeout)
            conn.sock.sendall(render(response, request.method == "HEAD", keep, self._name))
        except (OSError, ssl.SSLError) as exc:
            log.debug("%s: %s", conn.peer, exc)
            keep = False
        finally:
            with self._active_lock:
                self._active -= 1
        if not keep:
            with contextlib.suppress(OSError):
                conn.sock.close()
            return
        conn.sock.setblocking(False)
        conn.deadline = self._monotonic() + self._limits.idle_timeout
        self._returned.put(conn)
        with contextlib.suppress(OSError):
            self._wake_w.send(b"\0")

    # --- lifecycle ----------------------------------------------------------------
    def shutdown(self) -> None:
        """Stop serving; waits for the selector thread to leave."""
        self._stopping.set()
        with contextlib.suppress(OSError):
            self._wake_w.send(b"\0")
        self._stopped.wait(5.0)
        self._pool.shutdown(wait=False)

    def server_close(self) -> None:
        self._selector.close()
        for sock in (self._listener, self._wake_r, self._wake_w):
            sock.close()
