"""Reading a gateway that runs as several replicas, each one on its own, so their counters can be summed.

A Service URL in front of several pods answers from one pod at a time, so per-tenant counters read
through it jump between pods. Each replica is read instead: a list of URLs, or every address a headless
Service's name resolves to (A and AAAA records), resolved again at each read. All replicas share one
deadline, and a read succeeds only when every replica answered, so no replica's increase is lost.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Sequence

from ml_cost_exporter.httpclient import origin_of
from ml_cost_exporter.sources.fetch import FetchError, KeptAliveFetch, fetch_text

Resolver = Callable[[str, int], list[str]]
MAX_REPLICAS = 64


def resolve_addresses(host: str, port: int) -> list[str]:
    """Every address `host` resolves to (A and AAAA), sorted; FetchError when it cannot be resolved."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise FetchError(f"cannot resolve {host}: {getattr(exc, 'strerror', None) or exc}") from None
    return sorted({str(info[4][0]) for info in infos})


class _Resolution:
    """One run of a resolver in a thread of its own, so a hung DNS lookup costs the read its deadline only."""

    def __init__(self, resolve: Resolver, host: str, port: int) -> None:
        self.host, self.port = host, port
        self._resolve = resolve
        self._result: list[str] | BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=f"resolve:{host}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self._result = self._resolve(self.host, self.port)
        except BaseException as exc:  # handed to the reader's thread
            self._result = exc

    def wait(self, seconds: float) -> list[str] | None:
        """The addresses, or None while the lookup is still running after `seconds`."""
        self._thread.join(max(seconds, 0.0))
        if self._thread.is_alive():
            return None
        if isinstance(self._result, FetchError):
            raise self._result
        if isinstance(self._result, BaseException):
            raise FetchError(f"cannot resolve {self.host}: {type(self._result).__name__}: {self._result}")
        return list(self._result or [])


class ReplicaReader:
    """(replica, text) of every replica of one peer; the replica is "" for a single URL."""

    def __init__(self, urls: Sequence[str], dns: bool, fetcher: KeptAliveFetch, timeout: float,
                 monotonic: Callable[[], float] = time.monotonic, fetch: Callable[[str], str] | None = None,
                 resolve: Resolver | None = None) -> None:
        self._urls = tuple(urls)
        self._dns = dns
        self._fetcher = fetcher
        self._fetch = fetch  # a test hook for URL replicas; resolved addresses are read by `fetcher`
        self._timeout = timeout
        self._monotonic = monotonic
        self._resolve = resolve or resolve_addresses
        self._pending: _Resolution | None = None  # a lookup that outlived its read: waited on, never doubled

    def read(self) -> list[tuple[str, str]]:
        """Every replica's text; FetchError (one line, naming the replica) when any of them fails."""
        started = self._monotonic()
        if self._dns:
            return self._read_resolved(started)
        if len(self._urls) == 1:
            return [("", fetch_text(self._fetch or self._fetcher, self._urls[0]))]
        return [(url, self._read(url, None, started, url)) for url in self._urls]

    def _read_resolved(self, started: float) -> list[tuple[str, str]]:
        url = self._urls[0]
        origin = origin_of(url)
        addresses = self._resolved(origin.host, origin.port, started)
        if not addresses:
            raise FetchError(f"{origin.host} resolves to no address")
        if len(addresses) > MAX_REPLICAS:
            raise FetchError(f"{origin.host} resolves to {len(addresses)} addresses, more than {MAX_REPLICAS}")
        self._fetcher.client.close_except({(origin, address) for address in addresses})
        return [(address, self._read(url, address, started, f"replica {address}")) for address in addresses]

    def _resolved(self, host: str, port: int, started: float) -> list[str]:
        resolution = self._pending or _Resolution(self._resolve, host, port)
        addresses = resolution.wait(self._timeout - (self._monotonic() - started))
        self._pending = resolution if addresses is None else None
        if addresses is None:
            raise FetchError(f"cannot resolve {host} within {self._timeout:g}s")
        return addresses

    def _read(self, url: str, address: str | None, started: float, name: str) -> str:
        left = self._timeout - (self._monotonic() - started)
        try:
            if left <= 0:
                raise FetchError(f"deadline of {self._timeout:g}s exceeded")
            if self._fetch is not None and address is None:
                return fetch_text(self._fetch, url)
            return self._fetcher(url, address=address, timeout=left)
        except FetchError as exc:
            raise FetchError(f"{name}: {exc}") from None
