"""The demo: an inference server that speaks vLLM's metrics, the quick-start stack and its webhook sink.

It lives beside the exporter, not in it: the exporter's package and image never carry it. Run it from the
repository root (`python -m demo.stack`, or `bash scripts/demo.sh`).
"""
