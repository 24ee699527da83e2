"""A source's GET of a peer's /metrics, through the one shared client (ml_cost_exporter.httpclient).

A single deadline covers connect, TLS handshake, headers, body and same-host
redirects; the body is capped while it is read (gzip output too), and
undecodable bytes are replaced. Each source keeps its connections alive
between fetches and sends the credentials its config names.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from ml_cost_exporter.httpclient import Client, HttpError, HttpSettings, origin_of

log = logging.getLogger(__name__)

ACCEPT = "text/plain;version=0.0.4;q=1,*/*;q=0.1"
FetchError = HttpError  # a source's failed fetch: one short line saying why


class Fetcher:
    """GETs one URL again and again over a kept-alive connection, each time within a total deadline."""

    def __init__(self, url: str, timeout: float, max_bytes: int,
                 monotonic: Callable[[], float] = time.monotonic, settings: HttpSettings | None = None) -> None:
        try:
            origin_of(url)
        except HttpError:
            raise FetchError(f"unsupported URL {url!r}: expected http:// or https://") from None
        self._url = url
        self._client = Client(timeout, max_bytes, settings, monotonic)

    def fetch(self) -> str:
        """The body as text; FetchError (one line) on any failure, never later than the deadline."""
        return self._client.get(self._url, headers={"Accept": ACCEPT}).text()

    def close(self) -> None:
        self._client.close()


class KeptAliveFetch:
    """`fetch(url)` for a source: one client, one kept-alive connection per origin, made on first use."""

    def __init__(self, timeout: float, max_bytes: int, settings: HttpSettings | None = None,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.client = Client(timeout, max_bytes, settings, monotonic)

    def __call__(self, url: str, address: str | None = None, timeout: float | None = None) -> str:
        return self.client.get(url, headers={"Accept": ACCEPT}, address=address, timeout=timeout).text()

    def close(self) -> None:
        self.client.close()


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
