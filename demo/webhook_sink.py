"""A webhook sink that prints the notifications Alertmanager sends: pages, chat messages, heartbeats."""

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


def start_sink(address: tuple[str, int], emit: Callable[[str], None] = print) -> ThreadingHTTPServer:
    """Serve the sink in a thread; every notification's line goes to `emit`."""

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            try:
                line = describe(self.path, json.loads(body or b"{}"))
            except ValueError:
                line = f"unreadable notification on {self.path}"
            if line:
                emit(line)
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

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
