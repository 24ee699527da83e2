"""Sources: what the pod uses, read from NVML, the process table and the inference server."""
