"""A webhook sink that prints the notifications Alertmanager sends (pages, chat messages) and lists them on GET."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def describe(path: str, body: dict) -> str | None:
    """One line for a notification, or None for the Watchdog's heartbeats."""
    if path == "/pagerduty":
        action = "PAGE" if body.get("event_action") == "trigger" else "PAGE RESOLVED"
        return f"{action}: {body.get('payload', {}).get('summary', '')}"
    if path == "/slack":
        attachment = (body.get("attachments") or [{}])[0]
        return f"CHAT {body.get('channel', '')}: {attachment.get('title', '')} {attachment.get('text', '')}".strip()
    return None


def received_page(lines: list[str]) -> bytes:
    """What GET answers: every notification's line so far, oldest first."""
    if not lines:
        return b"no notifications yet: pages and chat messages are listed here as they arrive\n"
    return "".join(f"{line}\n" for line in lines).encode()


def start_sink(address: tuple[str, int], emit: Callable[[str], None] = print) -> ThreadingHTTPServer:
    """Serve the sink in a thread; every notification's line goes to `emit` and is listed on GET."""
    lines: list[str] = []
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

        def _answer(self, body: bytes, content_type: str) -> None:
            self.send_response(200)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            with lock:
                body = received_page(lines)
            self._answer(body, "text/plain; charset=utf-8")

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            try:
                line = describe(self.path, json.loads(body or b"{}"))
            except ValueError:
                line = f"unreadable notification on {self.path}"
            if line:
                with lock:
                    lines.append(line)
                emit(line)
            self._answer(b"{}", "application/json")

    server = ThreadingHTTPServer(address, Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def main(argv: list[str] | None = None) -> int:
    import argparse
    import signal

    parser = argparse.ArgumentParser(prog="python -m demo.webhook_sink", description=__doc__)
    parser.add_argument("--listen-address", default="127.0.0.1:9095")
    args = parser.parse_args(argv)
    host, _, port = args.listen_address.rpartition(":")
    server = start_sink((host or "0.0.0.0", int(port)), emit=lambda line: print(line, flush=True))
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    print(f"webhook sink listening on {args.listen_address}", flush=True)
    stop.wait()
    server.shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
