"""What every importer shares: the price record, the two error kinds, and bounded reading of files and URLs."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlparse

from ml_cost_exporter.httpclient import Client, HttpDeadlineError, HttpError, HttpSizeError, HttpUrlError

DEFAULT_MAX_BYTES = 1024 * 1024 * 1024  # an AWS per-region EC2 offer file is several hundred MB
DEFAULT_TIMEOUT_SECONDS = 300.0
MAX_PAGES = 2000


class PriceFileError(Exception):
    """A price file that cannot be used: malformed, of the wrong kind, or without the prices asked for."""


class PriceFetchError(Exception):
    """A price URL that could not be fetched (network, HTTP status, deadline)."""


@dataclass(frozen=True)
class Price:
    """One instance type's on-demand hourly price read from a provider's price file."""

    instance: str
    hourly_usd: float
    source: str
    as_of: str  # YYYY-MM


@dataclass
class Reader:
    """Reads files and URLs within one total deadline and a per-document size cap."""

    max_bytes: int = DEFAULT_MAX_BYTES
    timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS
    monotonic: Callable[[], float] = time.monotonic

    def __post_init__(self) -> None:
        self._deadline = self.monotonic() + self.timeout_seconds
        self._http: Client | None = None

    def read(self, location: str) -> bytes:
        if is_url(location):
            return self._read_url(location)
        try:
            with Path(location).open("rb") as stream:
                data = stream.read(self.max_bytes + 1)
        except OSError as exc:
            raise PriceFileError(f"{location}: cannot read: {exc.strerror or exc}") from None
        return self._capped(location, data)

    def _capped(self, location: str, data: bytes) -> bytes:
        if len(data) > self.max_bytes:
            raise PriceFileError(f"{redact(location)}: larger than {self.max_bytes} bytes (raise --max-bytes)")
        return data

    def _remaining(self, location: str) -> float:
        remaining = self._deadline - self.monotonic()
        if remaining <= 0:
            raise PriceFetchError(f"{redact(location)}: deadline of {self.timeout_seconds:g}s exceeded")
        return remaining

    def _read_url(self, url: str) -> bytes:
        quoted = quote(url, safe=":/?&=$%+,;@#~!*()'")  # spaces and quotes in an OData $filter, percent-encoded
        try:
            return self._client().get(quoted, headers={"Accept": "application/json"},
                                      timeout=self._remaining(url)).body
        except HttpUrlError as exc:
            raise PriceFileError(f"{redact(url)}: not a usable URL: {exc}") from None
        except HttpSizeError:
            raise PriceFileError(f"{redact(url)}: larger than {self.max_bytes} bytes (raise --max-bytes)") from None
        except HttpDeadlineError:
            raise PriceFetchError(
                f"{redact(url)}: timed out (deadline of {self.timeout_seconds:g}s exceeded)") from None
        except HttpError as exc:
            raise PriceFetchError(f"{redact(url)}: {exc}") from None

    def _client(self) -> Client:
        """One kept-alive client for every page this reader fetches."""
        if self._http is None:
            self._http = Client(self.timeout_seconds, self.max_bytes, monotonic=self.monotonic,
                                user_agent="ml-cost-exporter-pricefiles")
        return self._http

    def json(self, location: str) -> dict[str, Any]:
        """The document at `location` as a JSON object; anything else is a PriceFileError."""
        data = self.read(location)
        try:
            document = json.loads(data)
        except UnicodeDecodeError:
            raise PriceFileError(f"{redact(location)}: not UTF-8 text") from None
        except json.JSONDecodeError as exc:
            raise PriceFileError(f"{redact(location)}: not JSON: {exc.msg} at line {exc.lineno} "
                                 f"column {exc.colno}") from None
        except RecursionError:
            raise PriceFileError(f"{redact(location)}: JSON nested too deeply") from None
        if not isinstance(document, dict):
            raise PriceFileError(f"{redact(location)}: expected a JSON object, got {type(document).__name__}")
        return document


def is_url(location: str) -> bool:
    return urlparse(location).scheme in ("http", "https")


def redact(location: str) -> str:
    """The location without its query string, which may carry an API key."""
    if not is_url(location):
        return location
    parsed = urlparse(location)
    return parsed._replace(query="…" if parsed.query else "").geturl()


def field(mapping: Any, key: str, kind: type, where: str) -> Any:
    """mapping[key] checked to be of `kind`; a missing or mistyped field names its path."""
    if not isinstance(mapping, dict):
        raise PriceFileError(f"{where}: expected an object, got {type(mapping).__name__}")
    value = mapping.get(key)
    if not isinstance(value, kind) or isinstance(value, bool):
        got = "nothing" if value is None else type(value).__name__
        raise PriceFileError(f"{where}.{key}: expected {kind.__name__}, got {got}")
    return value


def positive_price(value: Any, where: str) -> float:
    """A price from a price file: a finite number above zero, given as a number or a decimal string."""
    try:
        price = float(value)
    except (TypeError, ValueError):
        raise PriceFileError(f"{where}: not a number: {value!r}") from None
    if not math.isfinite(price) or price <= 0:
        raise PriceFileError(f"{where}: expected a price above 0, got {value!r}")
    return price


def month(timestamp: Any, where: str) -> str:
    """YYYY-MM of an ISO-8601 timestamp such as 2025-08-01T00:00:00Z."""
    text = str(timestamp)
    if len(text) < 7 or not (text[:4].isdigit() and text[4] == "-" and text[5:7].isdigit()
                             and 1 <= int(text[5:7]) <= 12):
        raise PriceFileError(f"{where}: not a date: {timestamp!r}")
    return text[:7]
