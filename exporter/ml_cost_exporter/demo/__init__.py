"""A demo inference server that speaks vLLM's metrics, for the quick start and the end-to-end tests."""
