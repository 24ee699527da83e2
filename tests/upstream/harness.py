"""Start a real upstream server on loopback, talk HTTP to it, and read it through the exporter's sources."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path

from ml_cost_exporter.config.schema import parse_config
from ml_cost_exporter.sources.server import ServerSource
from tests.conftest import ManualClock, wait_until

APPS = Path(__file__).parent / "apps"


def http(method: str, url: str, body: object = None, headers: Mapping[str, str] | None = None) -> tuple[int, bytes]:
    """One request without following redirects; an HTTP error status is returned, not raised."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method, headers={
        **({"Content-Type": "application/json"} if data else {}), **(headers or {})})
    opener = urllib.request.build_opener(_NoRedirect)
    try:
        with opener.open(request, timeout=60) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


@contextmanager
def running(command: Sequence[str], ready_url: str, log: Path, env: Mapping[str, str] | None = None,
            cwd: Path = APPS, timeout: float = 180) -> Iterator[subprocess.Popen]:
    """Run a server in its own process group until the block ends; wait until `ready_url` answers 200."""
    with log.open("wb") as out:
        process = subprocess.Popen(list(command), cwd=cwd, stdout=out, stderr=subprocess.STDOUT,
                                   env={**os.environ, **(env or {})}, start_new_session=True)
    try:
        def ready() -> bool:
            assert process.poll() is None, f"{command[0]} exited with {process.returncode}: {log.read_text()[-2000:]}"
            return http("GET", ready_url)[0] == 200
        wait_until(ready, timeout=timeout, interval=0.5, what=f"{ready_url} to answer 200")
        yield process
    finally:
        _stop(process)


def _stop(process: subprocess.Popen) -> None:
    """SIGINT to the server's process group, then SIGKILL to what is left of it."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGINT)
        with suppress(subprocess.TimeoutExpired):
            process.wait(timeout=20)
    with suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=20)


def server_source(preset: str, url: str, models: Sequence[tuple[str, str]]) -> ServerSource:
    """The exporter's own source for `url`, configured as a user would: preset, URL and each model's label value."""
    lines = "".join(f"  - {{name: '{name}', server: {{preset: {preset}, url: '{url}', model: '{value}'}}}}\n"
                    for name, value in models)
    config = parse_config("models:\n" + lines, "upstream.yaml")
    return ServerSource(url, config.models, timeout=10, max_bytes=1 << 24, max_series=10_000, interval=1,
                        monotonic=ManualClock(0).monotonic)


def counted_until(source: ServerSource, expected: dict[str, dict[str, float]], timeout: float = 30,
                  measured: tuple[str, ...] = ()) -> dict:
    """Sum the source's per-model deltas over fetches until they equal `expected` (or the deadline passes).

    Servers may update a counter just after the response is sent, so the test polls instead of fetching once.
    Quantities in `measured` (timings no test can know in advance) are summed but left out of the comparison.
    """
    total: dict[str, dict[str, float]] = {}

    def counted() -> dict:
        return {model: {q: v for q, v in quantities.items() if q not in measured}
                for model, quantities in total.items()}

    def reached() -> bool:
        reading = source.sample()
        assert reading.ok, reading.error
        for (model, _), quantities in reading.deltas.items():
            for quantity, value in quantities.items():
                total.setdefault(model, {})[quantity] = total.get(model, {}).get(quantity, 0.0) + value
        return counted() == expected

    with suppress(AssertionError):  # the caller compares, so a shortfall shows as a diff
        wait_until(reached, timeout=timeout, interval=0.2, what="the exporter to count the traffic")
    return total
