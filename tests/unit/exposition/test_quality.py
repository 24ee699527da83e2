"""Cost against quality: a model's own quality figure and its cost per 1,000 good results."""

import textwrap

import pytest

from ml_cost_exporter.exposition.collectors import build_registry
from ml_cost_exporter.runtime import Clocks, Runtime

CONFIG = textwrap.dedent("""
    allocation: {vcpus: 4, memory_gib: 16}
    models:
      - name: ranker
        version: v1
        server: &server
          preset: generic
          url: http://ranker/metrics
          model_label: version
          requests: {metric: ranker_requests_total}
          quality: {metric: ranker_eval_score}
        {extra_v1}
      - name: ranker
        version: v2
        server: {preset: generic, url: http://ranker/metrics, model_label: version, model: v2,
                 requests: {metric: ranker_requests_total}, quality: {metric: ranker_eval_score}}
        {extra_v2}
    collection: {interval_seconds: 60}
""")


def page(requests: int, v1: float, v2: float) -> str:
    return (f'ranker_requests_total{{version="ranker"}} {requests}\nranker_requests_total{{version="v2"}} {requests}\n'
            f'ranker_eval_score{{version="ranker"}} {v1}\nranker_eval_score{{version="v2"}} {v2}\n')


def run(tmp_path, clock, v1: float, v2: float, extra_v1: str = "", extra_v2: str = "") -> dict:
    config = tmp_path / "pricing.yaml"
    config.write_text(CONFIG.replace("server: &server", "server:").replace("{extra_v1}", extra_v1)
                      .replace("{extra_v2}", extra_v2))
    pages = iter([page(0, v1, v2), page(500, v1, v2)])
    rt = Runtime(str(config), frozenset({"server"}), Clocks(clock.wall, clock.monotonic), environ={},
                 cgroup_root=tmp_path, server_fetch=lambda url: next(pages))
    for _ in range(2):
        clock.advance(60)
        rt.tick()
    registry = build_registry(rt.state, rt.clocks.monotonic)
    rt.close()
    return {version: {name: registry.get_sample_value(name, {"model": "ranker", "version": version})
                      for name in ("inference_cost_per_1k_usd", "mlcost_model_quality",
                                   "mlcost_cost_per_1k_good_results_usd")} for version in ("v1", "v2")}


def test_a_cheaper_version_that_loses_accuracy_costs_more_per_good_result(tmp_path, clock):
    values = run(tmp_path, clock, v1=0.95, v2=0.60)
    assert values["v1"]["inference_cost_per_1k_usd"] == pytest.approx(values["v2"]["inference_cost_per_1k_usd"])
    assert values["v1"]["mlcost_model_quality"] == 0.95
    assert values["v1"]["mlcost_cost_per_1k_good_results_usd"] == pytest.approx(
        values["v1"]["inference_cost_per_1k_usd"] / 0.95)
    assert values["v2"]["mlcost_cost_per_1k_good_results_usd"] == pytest.approx(
        values["v2"]["inference_cost_per_1k_usd"] / 0.60)


def test_an_error_rate_counts_its_complement_as_good(tmp_path, clock):
    values = run(tmp_path, clock, v1=0.2, v2=0.2, extra_v2="quality_higher_is_better: false")
    assert values["v2"]["mlcost_cost_per_1k_good_results_usd"] == pytest.approx(
        values["v2"]["inference_cost_per_1k_usd"] / 0.8)
    assert values["v1"]["mlcost_cost_per_1k_good_results_usd"] == pytest.approx(
        values["v1"]["inference_cost_per_1k_usd"] / 0.2)


@pytest.mark.parametrize("score", [0.0, 1.5, 42.0])
def test_a_score_that_is_not_a_fraction_is_shown_but_gives_no_good_results_figure(tmp_path, clock, score):
    values = run(tmp_path, clock, v1=score, v2=0.5)
    assert values["v1"]["mlcost_model_quality"] == score
    assert values["v1"]["mlcost_cost_per_1k_good_results_usd"] is None
