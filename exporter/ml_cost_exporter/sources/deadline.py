"""Run a source's read in its own worker thread so the sampling loop waits for it only up to a deadline.

A read that misses the deadline is not abandoned: it keeps running, and what
it returns is handed over at the next collection, so cumulative counters lose
nothing. While one read is still running no second one starts, so a hung peer
(a lost GPU, a server that never answers) holds at most one thread.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Generic, TypeVar

log = logging.getLogger(__name__)
T = TypeVar("T")


class DeadlineWorker(Generic[T]):
    """One daemon thread that runs `read` when asked and queues its results."""

    def __init__(self, name: str, read: Callable[[], T]) -> None:
        self.name = name
        self._read = read
        self._lock = threading.Condition()
        self._requested = False
        self._running = False
        self._done: list[T] = []
        self._closed = False
        self._interrupted = False
        self._thread: threading.Thread | None = None

    def _ensure_thread(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name=f"read:{self.name}", daemon=True)
            self._thread.start()

    def _loop(self) -> None:
        while True:
            with self._lock:
                while not self._requested and not self._closed:
                    self._lock.wait()
                if self._closed:
                    return
                self._requested = False
                self._running = True
            try:
                result = self._read()
            except BaseException:  # the read's own bug: log it, keep the worker alive
                log.exception("%s: read failed", self.name)
                with self._lock:
                    self._running = False
                    self._lock.notify_all()
                continue
            with self._lock:
                self._done.append(result)
                self._running = False
                self._lock.notify_all()

    def start(self) -> None:
        """Ask for a read, unless one is still running."""
        with self._lock:
            if self._closed:
                return
            self._ensure_thread()
            if not self._running and not self._requested:
                self._requested = True
                self._lock.notify_all()

    def collect(self, timeout: float) -> tuple[bool, list[T]]:
        """Wait up to `timeout` seconds for the read to finish, and take every result finished so far.

        Returns (finished in time, results oldest first); the results include a late
        read from an earlier collection.
        """
        with self._lock:
            finished = self._lock.wait_for(lambda: self._interrupted or (not self._running and not self._requested),
                                           max(timeout, 0.0))
            finished = finished and not self._running and not self._requested
            results, self._done = self._done, []
        return finished and not self._closed, results

    def interrupt(self) -> None:
        """Stop waiting for reads from now on (the exporter is stopping); a read under way finishes on its own."""
        with self._lock:
            self._interrupted = True
            self._lock.notify_all()

    def read(self, timeout: float) -> tuple[bool, list[T]]:
        """`start()` then `collect(timeout)`."""
        self.start()
        return self.collect(timeout)

    @property
    def busy(self) -> bool:
        with self._lock:
            return self._running or self._requested

    def close(self) -> None:
        """Let the thread end once its current read (if any) returns."""
        with self._lock:
            self._closed = True
            self._lock.notify_all()
