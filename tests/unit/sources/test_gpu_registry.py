"""The GPU-source registry: every name the config accepts has a factory, and each factory builds its source."""

from ml_cost_exporter.config.schema import GPU_SOURCES, parse_config
from ml_cost_exporter.sources.gpu_registry import make_gpu_source, registered_gpu_sources


def test_every_gpu_source_the_config_accepts_is_registered_and_no_other():
    assert registered_gpu_sources() == tuple(sorted(GPU_SOURCES))


def test_each_registered_source_is_built_by_its_name_and_implements_the_interface():
    configs = {"nvml": "", "dcgm": "gpu: {source: dcgm, dcgm: {url: 'http://127.0.0.1:9400/metrics'}}"}
    for name in registered_gpu_sources():
        source = make_gpu_source(parse_config(configs[name], "p.yaml"), {}, lambda: 0.0)
        try:
            assert source.name == name
            assert isinstance(source.hidden_when_unreachable, bool)
            assert isinstance(source.mismatch_hint(), str) and source.mismatch_hint()
        finally:
            source.close()
