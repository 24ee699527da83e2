"""A demo inference server: an OpenAI-style /v1/completions endpoint and vLLM-named /metrics.

It does no real inference; it counts requests and tokens exactly as vLLM
exposes them (`vllm:request_success_total{finished_reason,model_name}`, ...), so
the exporter's vllm preset reads it unchanged. `--load-rps` adds a built-in
load generator, so the quick start shows cost per 1k without any client.
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import signal
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

log = logging.getLogger("demo.server")


class DemoModelServer:
    def __init__(self, models: list[str]) -> None:
        self.models = models
        self.registry = CollectorRegistry()
        self.success = Counter("vllm:request_success", "Count of successfully processed requests.",
                               ["finished_reason", "model_name"], registry=self.registry)
        self.prompt_tokens = Counter("vllm:prompt_tokens", "Number of prefill tokens processed.", ["model_name"],
                                     registry=self.registry)
        self.generation_tokens = Counter("vllm:generation_tokens", "Number of generation tokens processed.",
                                         ["model_name"], registry=self.registry)
        self.latency = Histogram("vllm:e2e_request_latency_seconds", "End-to-end request latency.", ["model_name"],
                                 registry=self.registry)
        for model in models:  # series exist from the start, as in vLLM
            self.success.labels("stop", model)
            self.prompt_tokens.labels(model)
            self.generation_tokens.labels(model)

    def complete(self, model: str, prompt: str, max_tokens: int) -> dict:
        started = time.monotonic()
        prompt_tokens = max(len(prompt.split()), 1)
        generated = max(min(max_tokens, 256), 1)
        self.prompt_tokens.labels(model).inc(prompt_tokens)
        self.generation_tokens.labels(model).inc(generated)
        self.success.labels("length" if generated == max_tokens else "stop", model).inc()
        self.latency.labels(model).observe(time.monotonic() - started)
        return {"object": "text_completion", "model": model, "choices": [{"text": "ok " * generated}],
                "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": generated}}


def run_load(server: DemoModelServer, rps: float, stop: threading.Event, seed: int = 7) -> None:
    """Serve about `rps` requests a second, spread over the models, until `stop` is set."""
    rng = random.Random(seed)
    while not stop.wait(0.1):
        for _ in range(int(rps * 0.1 + rng.random())):
            server.complete(rng.choice(server.models), "word " * rng.randint(20, 200), rng.randint(16, 256))


def make_handler(server: DemoModelServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args) -> None:
            log.debug(format, *args)

        def _send(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            if self.path.split("?")[0] == "/metrics":
                self._send(200, generate_latest(server.registry), CONTENT_TYPE_LATEST)
            elif self.path == "/health":
                self._send(200, b"ok\n", "text/plain")
            else:
                self._send(404, b"not found\n", "text/plain")

        def do_POST(self) -> None:
            if self.path != "/v1/completions":
                self._send(404, b"not found\n", "text/plain")
                return
            try:
                length = int(self.headers.get("Content-Length", "0"))
                request = json.loads(self.rfile.read(length) or b"{}")
                model = request.get("model", server.models[0])
                if model not in server.models:
                    self._send(404, json.dumps({"error": f"unknown model {model}"}).encode(), "application/json")
                    return
                reply = server.complete(model, str(request.get("prompt", "")), int(request.get("max_tokens", 16)))
            except (ValueError, TypeError) as exc:
                self._send(400, json.dumps({"error": str(exc)}).encode(), "application/json")
                return
            self._send(200, json.dumps(reply).encode(), "application/json")

    return Handler


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m demo.server", description=__doc__.splitlines()[0])
    parser.add_argument("--listen-address", default="127.0.0.1:8000")
    parser.add_argument("--models", default="demo-llm", help="Comma-separated model names served.")
    parser.add_argument("--load-rps", type=float, default=0.0, help="Built-in load, requests per second.")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="ts=%(asctime)s level=%(levelname)s msg=%(message)s")
    host, _, port = args.listen_address.rpartition(":")
    model_server = DemoModelServer([m.strip() for m in args.models.split(",") if m.strip()])
    http = ThreadingHTTPServer((host or "0.0.0.0", int(port)), make_handler(model_server))
    http.daemon_threads = True
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    threading.Thread(target=http.serve_forever, daemon=True).start()
    if args.load_rps > 0:
        threading.Thread(target=run_load, args=(model_server, args.load_rps, stop), daemon=True).start()
    log.info("demo inference server on %s:%d serving %s, load %.1f rps", *http.server_address[:2],
             ",".join(model_server.models), args.load_rps)
    stop.wait()
    http.shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
