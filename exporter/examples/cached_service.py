"""A small inference service with a response cache, counted by @track_cost for the `python` preset.

Standard library plus prometheus_client. GET /v1/complete?prompt=... answers
from its cache when it saw the prompt before, otherwise "runs the model" (a
short sleep) and returns OpenAI-style usage; a prompt starting with "fail"
makes the model raise (HTTP 500). GET /metrics serves the counters, summed
over worker processes when PROMETHEUS_MULTIPROC_DIR is set.

    python cached_service.py --listen-address 127.0.0.1:8000

Point ml-cost-exporter at it with `server: {preset: python, url: "http://127.0.0.1:8000/metrics"}`.
"""

from __future__ import annotations

import argparse
import json
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest

from ml_cost_exporter.instrument import track_cost

WORK_SECONDS = 0.01  # what one uncached answer "costs" in model time
_cache: dict[str, str] = {}
_cache_lock = threading.Lock()


class ModelError(RuntimeError):
    """The model failed on an admitted request."""


@track_cost(model="chat", version="v1")
def complete(prompt: str) -> dict:
    """Answer a prompt, from the cache when it can; the result says which, and what it used."""
    with _cache_lock:
        cached = _cache.get(prompt)
    if cached is not None:
        return {"text": cached, "cache_hit": True}  # no model work, so no tokens
    if prompt.startswith("fail"):
        raise ModelError(f"the model failed on {prompt!r}")
    time.sleep(WORK_SECONDS)
    words = prompt.split()
    text = " ".join(reversed(words))
    with _cache_lock:
        _cache[prompt] = text
    return {"text": text, "usage": {"prompt_tokens": len(words), "completion_tokens": len(words)}}


def metrics_registry() -> CollectorRegistry:
    """The registry to expose: every worker's files under PROMETHEUS_MULTIPROC_DIR, else this process's."""
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return REGISTRY
    from prometheus_client import multiprocess

    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    return registry


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:
        url = urlparse(self.path)
        if url.path == "/metrics":
            self._send(200, generate_latest(metrics_registry()), CONTENT_TYPE_LATEST)
        elif url.path == "/v1/complete":
            prompt = parse_qs(url.query).get("prompt", [""])[0]
            try:
                answer = complete(prompt)
            except ModelError as exc:
                self._send(500, json.dumps({"error": str(exc)}).encode(), "application/json")
                return
            self._send(200, json.dumps(answer).encode(), "application/json")
        else:
            self._send(404, b"not found\n", "text/plain")

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen-address", default="127.0.0.1:8000", help="host:port to serve on")
    args = parser.parse_args()
    host, _, port = args.listen_address.rpartition(":")
    server = ThreadingHTTPServer((host, int(port)), Handler)
    server.daemon_threads = True
    server.serve_forever()


if __name__ == "__main__":
    main()
