"""The integration tests' helpers live in tests/support; these names stay importable from here."""

from tests.support.binaries import Processes, start_demo_server, start_exporter, start_prometheus

__all__ = ["Processes", "start_demo_server", "start_exporter", "start_prometheus"]
