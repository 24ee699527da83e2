"""The exporter-toolkit web config (--web.config.file): TLS and basic auth with bcrypt hashes.

Password checks follow the exporter-toolkit's handler: an unknown user is
verified against a real hash too, so both cost the same bcrypt run, and results
are cached by a digest of user, hash and password. Unlike the toolkit's single
mutex, at most `MAX_CONCURRENT_CHECKS` bcrypt runs happen at once and a request
that would wait for one is answered at once (429), so a flood of wrong
passwords holds at most that many workers and verified scrapers pass from the
cache.
"""

from __future__ import annotations

import enum
import hashlib
import logging
import os
import re
import ssl
import threading
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ml_cost_exporter.config.errors import ConfigError
from ml_cost_exporter.config.located import Located, Section, load_located, read_text

log = logging.getLogger(__name__)

TLS_VERSIONS = {"TLS10": ssl.TLSVersion.TLSv1, "TLS11": ssl.TLSVersion.TLSv1_1,
                "TLS12": ssl.TLSVersion.TLSv1_2, "TLS13": ssl.TLSVersion.TLSv1_3}
CLIENT_AUTH_TYPES = ("NoClientCert", "RequestClientCert", "RequireAnyClientCert", "VerifyClientCertIfGiven",
                     "RequireAndVerifyClientCert")
MAX_CONCURRENT_CHECKS = 2  # bcrypt runs at once; each takes a core for ~0.2 s at cost 12
CACHE_ENTRIES = 256  # per outcome: failed checks can never evict verified ones
BCRYPT_MAX_PASSWORD_BYTES = 72  # bcrypt ignores the rest; bcrypt 4.1+ refuses longer passwords
_BCRYPT_HASH = re.compile(r"\$2[aby]\$(0[4-9]|[12][0-9]|3[01])\$[./A-Za-z0-9]{53}")


@dataclass(frozen=True)
class WebConfig:
    cert_file: str | None
    key_file: str | None
    client_ca_file: str | None
    client_auth_type: str
    min_version: str
    basic_auth_users: Mapping[str, bytes]
    context: ssl.SSLContext | None = field(default=None, compare=False, repr=False)

    def ssl_context(self) -> ssl.SSLContext | None:
        """The server-side TLS context, built (and its files read) when the config was loaded."""
        return self.context

    @property
    def protects_nothing(self) -> bool:
        return self.cert_file is None and not self.basic_auth_users


def _check_readable(tls: Section, key: str, file: str) -> None:
    path = Path(file)
    problem = ("no such file" if not path.exists() else "not a regular file" if not path.is_file()
               else "permission denied" if not os.access(path, os.R_OK) else None)
    if problem:
        raise tls.raw(key).error(f"cannot read {file}: {problem}")


def _tls_context(tls: Section, files: dict[str, str | None], client_auth: str, min_version: str) -> ssl.SSLContext:
    """A server context from the files named under `tls_server_config`; ConfigError naming the file at fault."""
    for key, file in files.items():
        if file:
            _check_readable(tls, key, file)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = TLS_VERSIONS[min_version]
    try:
        context.load_cert_chain(files["cert_file"], files["key_file"])
    except (OSError, ssl.SSLError) as exc:
        raise tls.raw("cert_file").error(
            f"cannot load {files['cert_file']} with key {files['key_file']}: {_reason(exc)}") from None
    if files["client_ca_file"]:
        try:
            context.load_verify_locations(files["client_ca_file"])
        except (OSError, ssl.SSLError) as exc:
            raise tls.raw("client_ca_file").error(f"cannot load {files['client_ca_file']}: {_reason(exc)}") from None
    if client_auth == "RequireAndVerifyClientCert":
        context.verify_mode = ssl.CERT_REQUIRED
    elif client_auth == "VerifyClientCertIfGiven":
        context.verify_mode = ssl.CERT_OPTIONAL
    return context


def _reason(exc: BaseException) -> str:
    return (exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)).splitlines()[0]


def check_bcrypt_hash(item: Located, user: str) -> bytes:
    """The hash as bcrypt reads it; ConfigError naming the user where it is not a usable bcrypt hash."""
    import bcrypt

    text = item.value if isinstance(item.value, str) else ""
    if not _BCRYPT_HASH.fullmatch(text):
        raise item.error(f'the password of user "{user}" must be a bcrypt hash ($2a$, $2b$ or $2y$, cost 04-31, '
                         "53 characters)")
    hashed = text.replace("$2y$", "$2b$", 1).encode()
    try:  # the same salt at the cheapest cost: refuses a salt bcrypt cannot decode, in a millisecond
        bcrypt.checkpw(b"", hashed[:4] + b"04" + hashed[6:])
    except ValueError as exc:
        raise item.error(f'the password of user "{user}" is not a usable bcrypt hash ({exc})') from None
    return hashed


def load_web_config(path: str) -> WebConfig:
    """The web config at `path`, its TLS files read; ConfigError (one line naming file and line) otherwise."""
    try:
        text = read_text(path)
    except OSError as exc:
        raise ConfigError(path, None, "", f"cannot read: {exc.strerror or exc}") from None
    root = Section(load_located(text, path))
    tls = root.section("tls_server_config")
    cert = key = ca = context = None
    client_auth, min_version = "NoClientCert", "TLS12"
    if tls is not None:
        cert = tls.string("cert_file", required=True)
        key = tls.string("key_file", required=True)
        ca = tls.string("client_ca_file")
        client_auth = tls.string("client_auth_type", "NoClientCert", choices=CLIENT_AUTH_TYPES)
        min_version = tls.string("min_version", "TLS12", choices=tuple(TLS_VERSIONS))
        tls.finish()
        context = _tls_context(tls, {"cert_file": cert, "key_file": key, "client_ca_file": ca}, client_auth,
                               min_version)
    users_section = root.section("basic_auth_users")
    users = {user: check_bcrypt_hash(item, user) for user, item in users_section} if users_section else {}
    root.section("http_server_config")  # accepted for compatibility; HTTP/2 and headers are not configurable
    root.finish()
    config = WebConfig(cert, key, ca, client_auth, min_version, users, context)
    if config.protects_nothing:
        log.warning("web config %s sets neither tls_server_config nor basic_auth_users: serving plain HTTP "
                    "without authentication", path)
    return config


def _secret(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


class Verdict(enum.Enum):
    ALLOWED = "allowed"
    DENIED = "denied"
    BUSY = "busy"  # every bcrypt slot is taken: try again shortly


class _Recent:
    """A bounded set of digests, the least recently seen dropped first."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._keys: OrderedDict[bytes, None] = OrderedDict()

    def __contains__(self, key: bytes) -> bool:
        if key in self._keys:
            self._keys.move_to_end(key)
            return True
        return False

    def add(self, key: bytes) -> None:
        self._keys[key] = None
        self._keys.move_to_end(key)
        while len(self._keys) > self._size:
            self._keys.popitem(last=False)


class BasicAuth:
    """Checks credentials against bcrypt hashes: same cost for unknown users, bounded, cached."""

    def __init__(self, users: Mapping[str, bytes], max_checks: int = MAX_CONCURRENT_CHECKS,
                 cache_entries: int = CACHE_ENTRIES) -> None:
        self._users = dict(users)
        # An unknown user is checked against the most expensive real hash, so it costs what a known one does.
        self._stand_in = max(self._users.values(), key=lambda h: int(h[4:6]))
        self._max_checks = max_checks
        self._checking = 0
        self._verified = _Recent(cache_entries)
        self._refused = _Recent(cache_entries)
        self._lock = threading.Lock()

    def peek(self, user: str, password: str) -> Verdict | None:
        """The verdict without running bcrypt: from the cache, BUSY when no slot is free, else None."""
        key = self._key(user, password)
        with self._lock:
            return self._known_verdict(key) or (Verdict.BUSY if self._checking >= self._max_checks else None)

    def check(self, user: str, password: str) -> Verdict:
        """ALLOWED or DENIED; BUSY when the check would have to wait for a bcrypt slot. Never raises."""
        key = self._key(user, password)
        with self._lock:
            verdict = self._known_verdict(key)
            if verdict is not None:
                return verdict
            if self._checking >= self._max_checks:
                return Verdict.BUSY
            self._checking += 1
        try:
            matched = self._bcrypt(_secret(password), self._users.get(user, self._stand_in))  # unknown users too
        finally:
            with self._lock:
                self._checking -= 1
        allowed = matched and user in self._users
        with self._lock:
            (self._verified if allowed else self._refused).add(key)
        return Verdict.ALLOWED if allowed else Verdict.DENIED

    def _key(self, user: str, password: str) -> bytes:
        hashed = self._users.get(user, self._stand_in)
        return hashlib.sha256(b"\0".join((_secret(user), hashed, _secret(password)))).digest()

    def _known_verdict(self, key: bytes) -> Verdict | None:
        if key in self._verified:
            return Verdict.ALLOWED
        return Verdict.DENIED if key in self._refused else None

    @staticmethod
    def _bcrypt(secret: bytes, hashed: bytes) -> bool:
        import bcrypt

        too_long = len(secret) > BCRYPT_MAX_PASSWORD_BYTES
        try:  # a password over the limit still costs one bcrypt run, then fails
            matched = bcrypt.checkpw(secret[:BCRYPT_MAX_PASSWORD_BYTES], hashed)
        except ValueError:  # hashes are checked at load; this is only a last guard against a 500
            return False
        return matched and not too_long
