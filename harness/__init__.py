"""Helpers shared by the tests, the benchmarks and the demo to run the project's real parts on loopback.

Nothing here ships in the exporter's package or image: free ports, polling with a deadline, the
Prometheus and Alertmanager configs derived from the repository's real files, a deterministic history.
"""
