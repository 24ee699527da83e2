"""The exporter-toolkit web config (--web.config.file): TLS and basic auth with bcrypt hashes."""

from __future__ import annotations

import hashlib
import hmac
import ssl
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from ml_cost_exporter.config.errors import ConfigError
from ml_cost_exporter.config.located import Section, load_located, read_text

TLS_VERSIONS = {"TLS10": ssl.TLSVersion.TLSv1, "TLS11": ssl.TLSVersion.TLSv1_1,
                "TLS12": ssl.TLSVersion.TLSv1_2, "TLS13": ssl.TLSVersion.TLSv1_3}


@dataclass(frozen=True)
class WebConfig:
    cert_file: str | None
    key_file: str | None
    client_ca_file: str | None
    client_auth_type: str
    min_version: str
    basic_auth_users: Mapping[str, bytes]

    def ssl_context(self) -> ssl.SSLContext | None:
        if self.cert_file is None:
            return None
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = TLS_VERSIONS[self.min_version]
        context.load_cert_chain(self.cert_file, self.key_file)
        if self.client_ca_file:
            context.load_verify_locations(self.client_ca_file)
        if self.client_auth_type == "RequireAndVerifyClientCert":
            context.verify_mode = ssl.CERT_REQUIRED
        elif self.client_auth_type == "VerifyClientCertIfGiven":
            context.verify_mode = ssl.CERT_OPTIONAL
        return context


def load_web_config(path: str) -> WebConfig:
    try:
        text = read_text(path)
    except OSError as exc:
        raise ConfigError(path, None, "", f"cannot read: {exc.strerror or exc}") from None
    root = Section(load_located(text, Path(path).name))
    tls = root.section("tls_server_config")
    cert = key = ca = None
    client_auth, min_version = "NoClientCert", "TLS12"
    if tls is not None:
        cert = tls.string("cert_file", required=True)
        key = tls.string("key_file", required=True)
        ca = tls.string("client_ca_file")
        client_auth = tls.string("client_auth_type", "NoClientCert", choices=(
            "NoClientCert", "RequestClientCert", "RequireAnyClientCert", "VerifyClientCertIfGiven",
            "RequireAndVerifyClientCert"))
        min_version = tls.string("min_version", "TLS12", choices=tuple(TLS_VERSIONS))
        tls.finish()
    users = {}
    for user, item in root.string_map("basic_auth_users").items():
        if not item.startswith(("$2a$", "$2b$", "$2y$")):
            raise root.raw("basic_auth_users").error(f'user "{user}": password must be a bcrypt hash')
        users[user] = item.encode()
    root.section("http_server_config")  # accepted for compatibility; HTTP/2 and headers are not configurable
    root.finish()
    return WebConfig(cert, key, ca, client_auth, min_version, users)


class BasicAuth:
    """Checks credentials against bcrypt hashes, caching successes as bcrypt is slow on purpose."""

    def __init__(self, users: Mapping[str, bytes]) -> None:
        self._users = users
        self._cache: set[bytes] = set()
        self._lock = threading.Lock()

    def check(self, user: str, password: str) -> bool:
        import bcrypt

        hashed = self._users.get(user)
        if hashed is None:
            return False
        key = hashlib.sha256(user.encode() + b"\0" + password.encode() + b"\0" + hashed).digest()
        with self._lock:
            if any(hmac.compare_digest(key, cached) for cached in self._cache):
                return True
        if not bcrypt.checkpw(password.encode(), hashed.replace(b"$2y$", b"$2b$", 1)):
            return False
        with self._lock:
            self._cache.add(key)
        return True
