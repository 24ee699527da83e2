"""The shared HTTP client against real loopback servers: credentials, TLS, redirects, and every fault class."""

from __future__ import annotations

import base64
import gzip
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ml_cost_exporter.httpclient import (
    Authorization,
    BasicAuth,
    Client,
    HttpDeadlineError,
    HttpError,
    HttpSettings,
    HttpStatusError,
    TLSConfig,
)
from tests.loopback import LoopbackHttp, make_certificate, needs, ok, redirect, server_context
from tests.reliability.conftest import ScriptedPeer

TIMEOUT = 0.5
SLACK = 1.5  # scheduling on a loaded two-core machine; the deadline itself is TIMEOUT
BODY = "litellm_input_tokens_metric_total 1\n"
TOKEN = "sk-s3cret-token"


@pytest.fixture
def http() -> Iterator[LoopbackHttp]:
    server = LoopbackHttp({})
    yield server
    server.close()


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return make_certificate(tmp_path_factory.mktemp("tls"), "DNS:exporter.test,IP:127.0.0.1")


def client(**settings) -> Client:
    return Client(TIMEOUT, 1024, HttpSettings(**settings))


def bearer_file(tmp_path: Path, token: str = TOKEN) -> Authorization:
    path = tmp_path / "token"
    path.write_text(token + "\n")
    return Authorization("Bearer", str(path))


def test_same_host_redirects_are_followed_with_the_credentials_as_litellm_needs(http, tmp_path):
    http.routes.update({"/metrics": redirect("/metrics/"), "/metrics/": needs(f"Bearer {TOKEN}", ok(BODY))})
    response = client(authorization=bearer_file(tmp_path)).get(f"{http.base}/metrics")
    assert response.text() == BODY and response.url == f"{http.base}/metrics/"
    assert [seen.path for seen in http.requests] == ["/metrics", "/metrics/"]
    assert http.connections == 1  # the redirect's body was drained and the connection used again


def test_a_rotated_token_file_is_read_again(http, tmp_path):
    authorization = bearer_file(tmp_path, "first")
    http.routes["/m"] = ok(BODY)
    reader = client(authorization=authorization)
    reader.get(f"{http.base}/m")
    Path(authorization.credentials_file).write_text("second-token\n")
    reader.get(f"{http.base}/m")
    assert [seen.headers["Authorization"] for seen in http.requests] == ["Bearer first", "Bearer second-token"]


def test_basic_auth_reads_its_password_file(http, tmp_path):
    (tmp_path / "pw").write_text("pa:ss\n")
    expected = "Basic " + base64.b64encode(b"exporter:pa:ss").decode()
    http.routes["/m"] = needs(expected, ok(BODY))
    assert client(basic_auth=BasicAuth("exporter", str(tmp_path / "pw"))).get(f"{http.base}/m").text() == BODY


def test_params_headers_and_gzip_over_one_kept_alive_connection(http):
    http.routes["/api"] = lambda seen: (200, {"Content-Encoding": "gzip"}, gzip.compress(b'{"ok": 1}'))
    reader = client()
    for _ in range(3):
        body = reader.get(f"{http.base}/api", {"query": "sum(up) by (job)"}, {"Accept": "application/json"}).body
        assert body == b'{"ok": 1}'
    assert http.requests[0].path == "/api?query=sum%28up%29+by+%28job%29"
    assert http.requests[0].headers["Accept"] == "application/json" and "Authorization" not in http.requests[0].headers
    assert http.connections == 1


def test_tls_with_a_ca_file_and_server_name(certificate):
    cert, key = certificate
    server = LoopbackHttp({"/m": ok(BODY)}, tls=server_context(cert, key))
    try:
        assert client(tls=TLSConfig(ca_file=str(cert))).get(f"{server.base}/m").text() == BODY
        named = client(tls=TLSConfig(ca_file=str(cert), server_name="exporter.test"))
        assert named.get(f"https://127.0.0.1:{server.port}/m").text() == BODY
        assert client(tls=TLSConfig(insecure_skip_verify=True)).get(f"{server.base}/m").text() == BODY
        with pytest.raises(HttpError, match=r"^SSLCertVerificationError: .*certificate verify failed"):
            client().get(f"{server.base}/m")
        with pytest.raises(HttpError, match=r"^SSLCertVerificationError: .*Hostname mismatch"):
            client(tls=TLSConfig(ca_file=str(cert), server_name="other.test")).get(f"{server.base}/m")
    finally:
        server.close()


def test_a_client_certificate_is_presented_when_the_server_requires_one(certificate):
    cert, key = certificate
    context = server_context(cert, key)
    context.verify_mode = ssl.CERT_REQUIRED
    context.load_verify_locations(cert)  # the self-signed certificate is its own CA
    server = LoopbackHttp({"/m": ok(BODY)}, tls=context)
    try:
        mutual = client(tls=TLSConfig(ca_file=str(cert), cert_file=str(cert), key_file=str(key)))
        assert mutual.get(f"{server.base}/m").text() == BODY
        with pytest.raises(HttpError):
            client(tls=TLSConfig(ca_file=str(cert))).get(f"{server.base}/m")
    finally:
        server.close()


def _loop(http: LoopbackHttp) -> None:
    http.routes.update({"/a": redirect("/b"), "/b": redirect("/a")})


def _chain(http: LoopbackHttp) -> None:
    http.routes.update({"/a": redirect("/r1", 302), **{f"/r{i}": redirect(f"/r{i + 1}", 302) for i in range(1, 7)}})


def _elsewhere(http: LoopbackHttp) -> None:
    http.routes["/a"] = redirect(f"http://user:pw@127.0.0.2:{http.port}/a?key=x", 302)


def _other_scheme(http: LoopbackHttp) -> None:
    http.routes["/a"] = redirect(f"https://127.0.0.1:{http.port}/a", 301)


def _unauthorized(http: LoopbackHttp) -> None:
    http.routes["/a"] = needs("Bearer other", ok(BODY))


def _forbidden(http: LoopbackHttp) -> None:
    http.routes["/a"] = lambda seen: (403, {}, b"no")


def _too_large(http: LoopbackHttp) -> None:
    http.routes["/a"] = ok("x" * 2000)


def _gzip_bomb(http: LoopbackHttp) -> None:
    http.routes["/a"] = lambda seen: (200, {"Content-Encoding": "gzip"}, gzip.compress(b"\0" * (1 << 20)))


def _plain(http: LoopbackHttp) -> None:
    http.routes["/a"] = ok(BODY)


def _not_followed(http: LoopbackHttp) -> None:
    http.routes["/a"] = redirect("/b")


def _missing_file(tmp_path: Path) -> dict:
    return {"authorization": Authorization("Bearer", str(tmp_path / "absent"))}


def _empty_file(tmp_path: Path) -> dict:
    (tmp_path / "empty").write_text("\n")
    return {"authorization": Authorization("Bearer", str(tmp_path / "empty"))}


def _directory(tmp_path: Path) -> dict:
    return {"authorization": Authorization("Bearer", str(tmp_path))}


def _two_lines(tmp_path: Path) -> dict:
    (tmp_path / "pw").write_text(f"{TOKEN}\nX-Injected: 1\n")
    return {"basic_auth": BasicAuth("u", str(tmp_path / "pw"))}


def _token(tmp_path: Path) -> dict:
    return {"authorization": bearer_file(tmp_path)}


def _no_redirects(tmp_path: Path) -> dict:
    return {"follow_redirects": False}


def _none(tmp_path: Path) -> dict:
    return {}


# (server setup, settings, the exact one-line error; {port} and {tmp} are filled in)
FAULTS = [
    (_loop, _none, "redirect loop: /a was already visited"),
    (_chain, _none, "more than 5 redirects"),
    (_elsewhere, _none, "HTTP 302 redirect to another host refused: http://127.0.0.2:{port} "
                        "(redirects are followed only within http://127.0.0.1:{port})"),
    (_other_scheme, _none, "HTTP 301 redirect to another host refused: https://127.0.0.1:{port} "
                           "(redirects are followed only within http://127.0.0.1:{port})"),
    (_not_followed, _no_redirects, "HTTP 307 redirect (not followed)"),
    (_unauthorized, _none, "HTTP 401 Unauthorized (no credentials configured)"),
    (_unauthorized, _token, "HTTP 401 Unauthorized (the credentials were refused)"),
    (_forbidden, _token, "HTTP 403 Forbidden (the credentials were refused)"),
    (_too_large, _none, "body larger than 1024 bytes (Content-Length 2000)"),
    (_gzip_bomb, _none, "body larger than 1024 bytes"),
    (_plain, _missing_file, "authorization.credentials_file {tmp}/absent: cannot read: No such file or directory"),
    (_plain, _empty_file, "authorization.credentials_file {tmp}/empty is empty"),
    (_plain, _directory, "authorization.credentials_file {tmp}: cannot read: Is a directory"),
    (_plain, _two_lines, "basic_auth.password_file {tmp}/pw holds a line break or control character"),
]


@pytest.mark.parametrize(("serve", "settings", "message"), FAULTS,
                         ids=[f"{s.__name__[1:]}-{c.__name__[1:]}" for s, c, _ in FAULTS])
def test_each_fault_is_one_line_without_secrets(http, tmp_path, serve, settings, message):
    serve(http)
    with pytest.raises(HttpError) as failure:
        client(**settings(tmp_path)).get(f"{http.base}/a")
    assert str(failure.value) == message.format(port=http.port, tmp=tmp_path)
    assert TOKEN not in str(failure.value) and "pw@" not in str(failure.value)


def test_a_refusal_keeps_the_start_of_its_body_for_callers(http):
    http.routes["/a"] = lambda seen: (400, {}, b'{"error": "bad query"}')
    with pytest.raises(HttpStatusError) as failure:
        client().get(f"{http.base}/a")
    assert (failure.value.status, failure.value.body, str(failure.value)) == (400, b'{"error": "bad query"}',
                                                                              "HTTP 400 Bad Request")


def drip_body(conn: socket.socket) -> None:
    """Headers, then one byte a second: each read is quick, the whole never ends."""
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n")
    for _ in range(30):
        conn.sendall(b"#")
        time.sleep(1.0)


def test_a_dripping_body_is_cut_at_the_deadline():
    peer = ScriptedPeer(drip_body)
    started = time.monotonic()
    try:
        with pytest.raises(HttpDeadlineError, match=r"^deadline of 0\.5s exceeded$"):
            client().get(peer.url)
    finally:
        peer.close()
    assert time.monotonic() - started < TIMEOUT + SLACK


class HandshakeDripper:
    """Accepts TLS connections and answers the ClientHello one byte every 0.1 s (a record never completed)."""

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._stop = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        try:
            conn, _ = self._listener.accept()
        except OSError:
            return
        with conn:
            record = b"\x16\x03\x03\x40\x00" + b"\x02" * 0x4000  # a ServerHello record header, then its body
            for byte in record[:100]:
                if self._stop.wait(0.1):
                    return
                try:
                    conn.sendall(bytes([byte]))
                except OSError:
                    return

    def close(self) -> None:
        self._stop.set()
        self._listener.close()


def test_a_dripping_tls_handshake_is_cut_at_the_deadline():
    peer = HandshakeDripper()
    started = time.monotonic()
    try:
        with pytest.raises(HttpDeadlineError, match=r"^deadline of 0\.5s exceeded$"):
            client(tls=TLSConfig(insecure_skip_verify=True)).get(f"https://127.0.0.1:{peer.port}/m")
    finally:
        peer.close()
    assert time.monotonic() - started < TIMEOUT + SLACK


def test_a_replica_address_is_connected_to_with_the_url_host_in_the_host_header(http):
    http.routes["/m"] = ok(BODY)
    assert client().get(f"http://gateway.test:{http.port}/m", address="127.0.0.1").text() == BODY
    assert http.requests[0].headers["Host"] == f"gateway.test:{http.port}"
