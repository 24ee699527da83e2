"""Fixtures for the reliability suite: a test certificate, and a scripted TCP peer that misbehaves on purpose."""

from __future__ import annotations

import shutil
import socket
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tls_web_config(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(web config file enabling TLS, certificate) for a self-signed localhost certificate."""
    openssl = shutil.which("openssl")
    assert openssl, "openssl is required to make a test certificate"
    directory = tmp_path_factory.mktemp("tls")
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run([openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                    "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True)
    web = directory / "web.yml"
    web.write_text(f"tls_server_config:\n  cert_file: {cert}\n  key_file: {key}\n")
    return web, cert


class ScriptedPeer:
    """A loopback TCP server; each connection runs `behaviour(conn)` in its own thread."""

    def __init__(self, behaviour: Callable[[socket.socket], None]) -> None:
        self._behaviour = behaviour
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}/metrics"
        self._stop = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._run, args=(conn,), daemon=True).start()

    def _run(self, conn: socket.socket) -> None:
        try:
            read_request(conn)
            self._behaviour(conn)
        except OSError:
            pass
        finally:
            conn.close()

    @property
    def stopping(self) -> threading.Event:
        return self._stop

    def close(self) -> None:
        self._stop.set()
        self._listener.close()


def read_request(conn: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(4096)
        if not chunk:
            break
        data += chunk
    return data


@pytest.fixture
def peer() -> Iterator[Callable[[Callable[[socket.socket], None]], ScriptedPeer]]:
    peers: list[ScriptedPeer] = []

    def start(behaviour: Callable[[socket.socket], None]) -> ScriptedPeer:
        started = ScriptedPeer(behaviour)
        peers.append(started)
        return started

    yield start
    for started in peers:
        started.close()
