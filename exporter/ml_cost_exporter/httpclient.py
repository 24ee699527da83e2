"""The one HTTP client every peer is read with: a GET bounded in time and size whatever the peer does.

One deadline covers connect, TLS handshake, headers, body and any redirects: each socket operation waits
only for what is left of it, and a watchdog shuts the socket when it passes, so a peer that trickles bytes
cannot stretch the exchange. The body is capped while it is read (after gzip decompression, whose output is
bounded too). Redirects are followed only within one scheme, host and port. Credentials come from files,
read again when they change, and never appear in an error. Standard library only, and nothing else from
the package, so every layer may use it (`requests` cost the sidecar about 4.5 MB of memory).
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import os
import re
import socket
import ssl
import threading
import time
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from urllib.parse import urlencode, urljoin, urlsplit

CHUNK_BYTES = 65536
MAX_REDIRECTS = 5
MAX_SECRET_BYTES = 64 * 1024
ERROR_BODY_BYTES = 64 * 1024  # what is kept of a refusal's body, for callers that explain it
REDIRECT_STATUSES = (301, 302, 303, 307, 308)
_STALE = (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError)
_DISALLOWED_URL_CHARS = re.compile(r"[\x00-\x20\x7f]")
_DEFAULT_PORTS = {"http": 80, "https": 443}


class HttpError(Exception):
    """The exchange failed; the message is one short line saying why, without any secret."""


class HttpUrlError(HttpError):
    """The URL itself cannot be fetched (not http:// or https://, no host, a bad port or character)."""


class HttpDeadlineError(HttpError):
    """The exchange did not finish within its deadline."""


class HttpSizeError(HttpError):
    """The body is larger than the cap (after decompression)."""


class HttpStatusError(HttpError):
    """The peer answered a status other than 200; the start of its body is kept for callers that explain it."""

    def __init__(self, message: str, status: int, body: bytes = b"") -> None:
        super().__init__(message)
        self.status = status
        self.body = body


@dataclass(frozen=True)
class Authorization:
    """An Authorization header `<type> <credentials>`, as Prometheus' scrape config spells it."""

    type: str = "Bearer"
    credentials_file: str | None = None
    credentials: str | None = field(default=None, repr=False)  # given directly by tools that read their own


@dataclass(frozen=True)
class BasicAuth:
    username: str
    password_file: str | None = None
    password: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class TLSConfig:
    ca_file: str | None = None  # None: the system's trusted CAs
    cert_file: str | None = None  # a client certificate, with key_file
    key_file: str | None = None
    server_name: str | None = None  # the name the certificate must carry (and SNI); None: the URL's host
    insecure_skip_verify: bool = False


@dataclass(frozen=True)
class HttpSettings:
    """How to talk to one peer: credentials, TLS and whether same-host redirects are followed."""

    authorization: Authorization | None = None
    basic_auth: BasicAuth | None = None
    tls: TLSConfig = TLSConfig()
    follow_redirects: bool = True

    @property
    def has_credentials(self) -> bool:
        return self.authorization is not None or self.basic_auth is not None


@dataclass(frozen=True)
class Response:
    body: bytes
    url: str  # after same-host redirects

    def text(self) -> str:
        """The body as UTF-8, undecodable bytes replaced (a peer's garbage never stops a read)."""
        return self.body.decode("utf-8", errors="replace")


@dataclass(frozen=True)
class Origin:
    scheme: str
    host: str
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"


def origin_of(url: str) -> Origin:
    """The scheme, host and port a URL is fetched from; HttpUrlError for anything this client cannot fetch."""
    if _DISALLOWED_URL_CHARS.search(url):
        raise HttpUrlError("the URL holds a space or control character")
    parts = urlsplit(url)
    if parts.scheme not in _DEFAULT_PORTS or not parts.hostname:
        raise HttpUrlError("expected an http:// or https:// URL with a host")
    try:
        port = parts.port
    except ValueError:
        raise HttpUrlError("the URL's port is not a number from 0 to 65535") from None
    return Origin(parts.scheme, parts.hostname.lower(), port or _DEFAULT_PORTS[parts.scheme])


def with_params(url: str, params: Mapping[str, str] | None) -> str:
    if not params:
        return url
    return url + ("&" if urlsplit(url).query else "?") + urlencode(params)


def one_line(exc: BaseException) -> str:
    """An exception as `Type: first line`, short enough for a log line."""
    text = str(exc).splitlines()[0][:200] if str(exc) else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _file_key(path: str, what: str) -> tuple[int, int, int]:
    try:
        stat = os.stat(path)
    except OSError as exc:
        raise HttpError(f"{what} {path}: cannot read: {exc.strerror or exc}") from None
    return (stat.st_ino, stat.st_size, stat.st_mtime_ns)


class SecretFile:
    """A credential kept in a file, read again whenever the file changes (a rotated Kubernetes Secret)."""

    def __init__(self, path: str, what: str) -> None:
        self.path = path
        self._what = what
        self._key: tuple[int, int, int] | None = None
        self._value = ""

    def value(self) -> str:
        key = _file_key(self.path, self._what)
        if key != self._key:
            self._value = self._read()
            self._key = key
        return self._value

    def _read(self) -> str:
        where = f"{self._what} {self.path}"
        try:
            with open(self.path, "rb") as stream:
                data = stream.read(MAX_SECRET_BYTES + 1)
        except OSError as exc:
            raise HttpError(f"{where}: cannot read: {exc.strerror or exc}") from None
        if len(data) > MAX_SECRET_BYTES:
            raise HttpError(f"{where} is larger than {MAX_SECRET_BYTES} bytes")
        try:
            text = data.decode("utf-8").strip()
        except UnicodeDecodeError:
            raise HttpError(f"{where} is not UTF-8 text") from None
        if not text:
            raise HttpError(f"{where} is empty")
        if any(ord(char) < 0x20 or ord(char) == 0x7F for char in text):
            raise HttpError(f"{where} holds a line break or control character")
        return text


class _Credentials:
    """The Authorization header the settings call for, with files re-read when they change."""

    def __init__(self, settings: HttpSettings) -> None:
        self._authorization = settings.authorization
        self._basic = settings.basic_auth
        auth, basic = settings.authorization, settings.basic_auth
        self._token_file = SecretFile(auth.credentials_file, "authorization.credentials_file") \
            if auth and auth.credentials_file else None
        self._password_file = SecretFile(basic.password_file, "basic_auth.password_file") \
            if basic and basic.password_file else None

    def header(self) -> str | None:
        if self._authorization is not None:
            token = self._token_file.value() if self._token_file else self._authorization.credentials or ""
            return f"{self._authorization.type} {token}".strip()
        if self._basic is not None:
            password = self._password_file.value() if self._password_file else self._basic.password or ""
            pair = f"{self._basic.username}:{password}".encode()
            return "Basic " + base64.b64encode(pair).decode("ascii")
        return None


def tls_context(tls: TLSConfig) -> ssl.SSLContext:
    """An SSL context for `tls`; HttpError naming the file that cannot be used."""
    try:
        context = ssl.create_default_context(cafile=tls.ca_file)
    except (OSError, ssl.SSLError, ValueError) as exc:
        raise HttpError(f"tls_config.ca_file {tls.ca_file}: cannot load: {one_line(exc)}") from None
    if tls.cert_file:
        try:
            context.load_cert_chain(tls.cert_file, tls.key_file)
        except (OSError, ssl.SSLError, ValueError) as exc:
            raise HttpError(f"tls_config.cert_file {tls.cert_file}: cannot load: {one_line(exc)}") from None
    if tls.insecure_skip_verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


class _TlsContexts:
    """One SSL context, built again when its CA, certificate or key file changes (a rotated certificate)."""

    def __init__(self, tls: TLSConfig) -> None:
        self._tls = tls
        self._files = [(path, what) for path, what in ((tls.ca_file, "tls_config.ca_file"),
                                                       (tls.cert_file, "tls_config.cert_file"),
                                                       (tls.key_file, "tls_config.key_file")) if path]
        self._key: tuple | None = None
        self._context: ssl.SSLContext | None = None

    def get(self) -> ssl.SSLContext:
        key = tuple(_file_key(path, what) for path, what in self._files)
        if self._context is None or key != self._key:
            self._context = tls_context(self._tls)
            self._key = key
        return self._context


class _Deadline:
    """Seconds left until a fixed monotonic instant; raises once it has passed."""

    def __init__(self, seconds: float, monotonic: Callable[[], float]) -> None:
        self._monotonic = monotonic
        self._end = monotonic() + seconds
        self.seconds = seconds

    def exceeded(self) -> HttpDeadlineError:
        return HttpDeadlineError(f"deadline of {self.seconds:g}s exceeded")

    def left(self) -> float:
        remaining = self._end - self._monotonic()
        if remaining <= 0:
            raise self.exceeded()
        return remaining


class _Watchdog:
    """At the deadline, shuts the socket in use: unblocks a read the peer keeps alive byte by byte."""

    def __init__(self, seconds: float) -> None:
        self.fired = False
        self.sock: socket.socket | None = None
        self._timer = threading.Timer(seconds, self._fire)
        self._timer.daemon = True
        self._timer.start()

    def _fire(self) -> None:
        self.fired = True
        sock = self.sock
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def cancel(self) -> None:
        self._timer.cancel()


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
            raise HttpError(f"invalid gzip body: {exc}") from None

    def _add(self, data: bytes) -> None:
        self._size += len(data)
        if self._size > self._max:
            raise HttpSizeError(f"body larger than {self._max} bytes")
        self._chunks.append(data)

    def bytes(self) -> bytes:
        return b"".join(self._chunks)


class _Connection:
    """One kept-alive connection to an origin, optionally to one given address of its host (a replica)."""

    def __init__(self, origin: Origin, address: str | None) -> None:
        self.origin = origin
        self.address = address
        self.http = http.client.HTTPConnection(origin.host, origin.port)  # never connects itself: see _connect
        self.http.default_port = _DEFAULT_PORTS[origin.scheme]  # so the Host header omits a default port

    @property
    def open(self) -> bool:
        return self.http.sock is not None

    def close(self) -> None:
        self.http.close()


@dataclass
class _Redirect:
    location: str | None
    status: int


def _status_message(status: int, reason: str, settings: HttpSettings) -> str:
    if status in REDIRECT_STATUSES:
        return f"HTTP {status} redirect (not followed)"
    reason = "".join(c for c in reason[:60] if c.isprintable())
    message = f"HTTP {status} {reason}".strip()
    if status in (401, 403):
        hint = "the credentials were refused" if settings.has_credentials else "no credentials configured"
        return f"{message} ({hint})"
    return message


class Client:
    """GETs within one total deadline and a body cap, keeping one connection alive per origin (and address)."""

    def __init__(self, timeout: float, max_bytes: int, settings: HttpSettings | None = None,
                 monotonic: Callable[[], float] = time.monotonic, user_agent: str = "ml-cost-exporter") -> None:
        self.timeout = timeout
        self.max_bytes = max_bytes
        self.settings = settings or HttpSettings()
        self._monotonic = monotonic
        self._user_agent = user_agent
        self._credentials = _Credentials(self.settings)
        self._tls = _TlsContexts(self.settings.tls)
        self._connections: dict[tuple[Origin, str | None], _Connection] = {}

    def get(self, url: str, params: Mapping[str, str] | None = None, headers: Mapping[str, str] | None = None,
            address: str | None = None, timeout: float | None = None) -> Response:
        """GET `url` (with `params`), from `address` instead of the host's own when given; HttpError on failure."""
        target = with_params(url, params)
        connection = self._connection(origin_of(target), address)
        seconds = self.timeout if timeout is None else timeout
        deadline = _Deadline(seconds, self._monotonic)
        watchdog = _Watchdog(max(seconds, 0.0))
        try:
            return self._follow(connection, target, self._headers(headers), deadline, watchdog)
        except HttpError:
            connection.close()
            if watchdog.fired:
                raise deadline.exceeded() from None
            raise
        except (OSError, http.client.HTTPException, ValueError) as exc:
            connection.close()
            if watchdog.fired or isinstance(exc, TimeoutError):
                raise deadline.exceeded() from None
            raise HttpError(one_line(exc)) from None
        finally:
            watchdog.cancel()

    def _headers(self, extra: Mapping[str, str] | None) -> dict[str, str]:
        headers = {"Accept-Encoding": "gzip", "User-Agent": self._user_agent, **(extra or {})}
        authorization = self._credentials.header()
        if authorization is not None:
            headers["Authorization"] = authorization
        return headers

    def _connection(self, origin: Origin, address: str | None) -> _Connection:
        key = (origin, address)
        connection = self._connections.get(key)
        if connection is None:
            connection = self._connections[key] = _Connection(origin, address)
        return connection

    def _follow(self, connection: _Connection, target: str, headers: dict[str, str], deadline: _Deadline,
                watchdog: _Watchdog) -> Response:
        seen = {target}
        for hops in range(MAX_REDIRECTS + 1):
            answer = self._exchange_once_more_if_stale(connection, target, headers, deadline, watchdog)
            if isinstance(answer, Response):
                return answer
            if hops == MAX_REDIRECTS:
                raise HttpError(f"more than {MAX_REDIRECTS} redirects")
            target = self._next_hop(connection.origin, target, answer, seen)
        raise AssertionError("unreachable")

    def _next_hop(self, origin: Origin, target: str, redirect: _Redirect, seen: set[str]) -> str:
        if not redirect.location:
            raise HttpError(f"HTTP {redirect.status} redirect without a Location")
        following = urljoin(target, redirect.location.strip())
        try:
            elsewhere = origin_of(following) != origin
        except HttpUrlError:
            elsewhere = True
        if elsewhere:
            parts = urlsplit(following)
            where = f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}" if parts.netloc else repr(parts.scheme)
            raise HttpError(f"HTTP {redirect.status} redirect to another host refused: {where[:120]} "
                            f"(redirects are followed only within {origin})")
        if following in seen:
            raise HttpError(f"redirect loop: {urlsplit(following).path or '/'} was already visited")
        seen.add(following)
        return following

    def _exchange_once_more_if_stale(self, connection: _Connection, target: str, headers: dict[str, str],
                                     deadline: _Deadline, watchdog: _Watchdog) -> Response | _Redirect:
        reused = connection.open
        try:
            return self._exchange(connection, target, headers, deadline, watchdog)
        except _STALE:
            if not reused:
                raise
            connection.close()  # the peer closed the kept-alive connection between fetches: once more, afresh
            return self._exchange(connection, target, headers, deadline, watchdog)

    def _connect(self, connection: _Connection, deadline: _Deadline, watchdog: _Watchdog) -> None:
        """Connect (and shake hands) under the watchdog, so a peer that trickles its handshake is cut too."""
        origin = connection.origin
        sock = socket.create_connection((connection.address or origin.host, origin.port), timeout=deadline.left())
        watchdog.sock = sock
        try:
            if watchdog.fired:
                raise deadline.exceeded()
            if origin.scheme == "https":
                context = self._tls.get()
                sock.settimeout(deadline.left())
                sock = context.wrap_socket(sock, server_hostname=self.settings.tls.server_name or origin.host)
                watchdog.sock = sock
        except BaseException:
            sock.close()
            raise
        connection.http.sock = sock

    def _exchange(self, connection: _Connection, target: str, headers: dict[str, str], deadline: _Deadline,
                  watchdog: _Watchdog) -> Response | _Redirect:
        if not connection.open:
            self._connect(connection, deadline, watchdog)
        sock = watchdog.sock = connection.http.sock  # http.client drops it once a response says close
        parts = urlsplit(target)
        sock.settimeout(deadline.left())
        connection.http.request("GET", (parts.path or "/") + (f"?{parts.query}" if parts.query else ""),
                                headers=headers)
        sock.settimeout(deadline.left())
        response = connection.http.getresponse()
        with response:
            if response.status in REDIRECT_STATUSES and self.settings.follow_redirects:
                location = response.getheader("Location")
                self._drain(connection, response, sock, deadline)
                return _Redirect(location, response.status)
            if response.status != 200:
                body = self._error_body(response, sock, deadline)
                connection.close()
                raise HttpStatusError(_status_message(response.status, response.reason or "", self.settings),
                                      response.status, body)
            body = self._body(response, sock, deadline)
        if watchdog.fired:
            raise deadline.exceeded()
        if response.will_close:
            connection.close()
        return Response(body, target)

    def _body(self, response: http.client.HTTPResponse, sock: socket.socket, deadline: _Deadline) -> bytes:
        encoding = (response.getheader("Content-Encoding") or "identity").strip().lower()
        if encoding not in ("identity", "gzip"):
            raise HttpError(f"unsupported Content-Encoding {encoding[:40]!r}")
        length = response.getheader("Content-Length")
        if encoding == "identity" and length and length.isdigit() and int(length) > self.max_bytes:
            raise HttpSizeError(f"body larger than {self.max_bytes} bytes (Content-Length {length})")
        body = _Body(self.max_bytes, encoding)
        while True:
            sock.settimeout(deadline.left())
            data = response.read1(CHUNK_BYTES)
            if not data:
                return body.bytes()
            body.feed(data)

    def _error_body(self, response: http.client.HTTPResponse, sock: socket.socket, deadline: _Deadline) -> bytes:
        """Up to ERROR_BODY_BYTES of a refusal's body; a peer that will not send it loses nothing but detail."""
        with contextlib.suppress(OSError, http.client.HTTPException, HttpError, zlib.error):
            sock.settimeout(deadline.left())
            data = response.read(ERROR_BODY_BYTES)
            if (response.getheader("Content-Encoding") or "").strip().lower() == "gzip":
                data = zlib.decompressobj(wbits=31).decompress(data, ERROR_BODY_BYTES)
            return data
        return b""

    def _drain(self, connection: _Connection, response: http.client.HTTPResponse, sock: socket.socket,
               deadline: _Deadline) -> None:
        """Read a redirect's (small) body so the connection can be used again; close it when that fails."""
        size = 0
        while size <= ERROR_BODY_BYTES:
            sock.settimeout(deadline.left())
            data = response.read1(CHUNK_BYTES)
            if not data:
                if response.will_close:
                    connection.close()
                return
            size += len(data)
        connection.close()

    def close_except(self, keep: set[tuple[Origin, str | None]]) -> None:
        """Close the connections not in `keep` (addresses of replicas that went away)."""
        for key in [key for key in self._connections if key not in keep]:
            self._connections.pop(key).close()

    def close(self) -> None:
        for connection in self._connections.values():
            connection.close()
        self._connections.clear()
