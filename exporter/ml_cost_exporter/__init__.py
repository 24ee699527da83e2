"""ml-cost-exporter: prices what an inference or training pod uses, live, for Prometheus."""

__version__ = "0.1.0"
