import textwrap
import threading

from ml_cost_exporter.runtime import Clocks, Runtime
from tests.conftest import wait_until

GOOD = textwrap.dedent("""
    allocation: {vcpus: 4, memory_gib: 16}
    models: [{name: a}, {name: b}]
    budgets: [{name: all, amount_usd: 100}]
""")


def make(tmp_path, clock=None, text=GOOD):
    path = tmp_path / "pricing.yaml"
    path.write_text(text)
    clocks = Clocks(clock.wall, clock.monotonic) if clock else Clocks()
    return path, Runtime(str(path), frozenset(), clocks, environ={}, cgroup_root=tmp_path)


def test_a_broken_reload_keeps_the_last_good_config_and_its_totals(tmp_path, clock):
    path, runtime = make(tmp_path, clock)
    clock.advance(3600)
    runtime.tick()
    before = runtime.books.ledger.snapshot(clock.wall()).usd_total[("a", "latest", "inference", "cpu")]
    path.write_text(GOOD.replace("amount_usd: 100", "amount_usd: -1"))
    assert runtime.reload() is False
    assert runtime.state().reload.successful is False
    assert runtime.config.budgets[0].amount_usd == 100
    path.write_text(GOOD.replace("amount_usd: 100", "amount_usd: 250"))
    assert runtime.reload() is True
    assert runtime.state().reload.successful is True and runtime.config.budgets[0].amount_usd == 250
    assert runtime.books.ledger.snapshot(clock.wall()).usd_total[("a", "latest", "inference", "cpu")] == before


def test_a_changed_file_is_reloaded_by_the_running_loop(tmp_path):
    path, runtime = make(tmp_path)  # the loop sleeps in real time, so it runs on the real clocks
    stop = threading.Event()
    loop = threading.Thread(target=runtime.run, args=(stop, 0.02), daemon=True)
    loop.start()
    try:
        path.write_text(GOOD.replace("amount_usd: 100", "amount_usd: 300"))
        wait_until(lambda: runtime.config.budgets[0].amount_usd == 300, what="the file change to be reloaded")
        path.write_text("models: [{name: }]\n")
        wait_until(lambda: runtime.state().reload.successful is False, what="the broken file to be rejected")
        assert runtime.config.budgets[0].amount_usd == 300
    finally:
        stop.set()
        runtime.request_reload()
        loop.join(5)
    assert not loop.is_alive()


def test_removing_a_model_on_reload_drops_its_series(tmp_path, clock):
    path, runtime = make(tmp_path, clock)
    path.write_text(GOOD.replace("models: [{name: a}, {name: b}]", "models: [{name: a}]"))
    assert runtime.reload()
    assert {k[0] for k in runtime.books.ledger.snapshot(clock.wall()).usd_total} == {"a"}


def test_gpus_come_from_the_serving_processes_environment(tmp_path, clock, fake_nvml):
    import os
    import subprocess
    import sys
    import uuid

    from tests.conftest import A100, GIB

    fake_nvml.write("init 0", f"gpu 0 90 {GIB} {80 * GIB} 300000 0 0 GPU-aaaa {A100}",
                    f"gpu 1 10 {GIB} {80 * GIB} 100000 0 0 GPU-bbbb {A100}")
    marker = f"mlcost-server-{uuid.uuid4().hex}"
    server = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()", marker], stdin=subprocess.PIPE,
                              env={**os.environ, "NVIDIA_VISIBLE_DEVICES": "GPU-bbbb"})
    try:
        config = tmp_path / "pricing.yaml"
        config.write_text(f"allocation: {{devices_from_processes: true, vcpus: 4, memory_gib: 16}}\n"
                          f"processes: {{cmdline_patterns: ['{marker}']}}\n")
        runtime = Runtime(str(config), frozenset({"gpu", "process"}), Clocks(clock.wall, clock.monotonic),
                          environ={"NVIDIA_VISIBLE_DEVICES": "all"}, cgroup_root=tmp_path)
        assert [g.uuid for g in runtime.sampler.last_gpu.gpus] == ["GPU-aaaa", "GPU-bbbb"]  # before any process is seen
        clock.advance(15)
        runtime.tick()
        assert [g.uuid for g in runtime.sampler.last_gpu.gpus] == ["GPU-bbbb"]
        assert runtime.rates.allocation.gpus == 1.0  # priced: the server's one GPU, not the node's two
        runtime.close()
    finally:
        server.kill()
        server.wait()


def test_devices_from_processes_and_visible_devices_exclude_each_other():
    import pytest

    from ml_cost_exporter.config.errors import ConfigError
    from ml_cost_exporter.config.schema import parse_config

    with pytest.raises(ConfigError, match="give either visible_devices or devices_from_processes"):
        parse_config("allocation: {devices_from_processes: true, visible_devices: '0'}", "p.yaml")


def test_pod_labels_join_the_models_attribution_and_budgets_select_by_them(tmp_path, clock):
    labels = tmp_path / "labels"
    labels.write_text('team="risk"\nenv="prod"\n')
    config = tmp_path / "pricing.yaml"
    config.write_text("allocation: {vcpus: 4, memory_gib: 16}\n"
                      "models: [{name: a, labels: {env: staging}}]\n"
                      "budgets: [{name: risk, amount_usd: 100, selector: {team: risk}}]\n")
    runtime = Runtime(str(config), frozenset(), Clocks(clock.wall, clock.monotonic), environ={}, cgroup_root=tmp_path,
                      pod_labels_file=str(labels))
    (model,) = runtime.config.models
    assert dict(model.labels) == {"team": "risk", "env": "staging"}  # the config's own label wins
    clock.advance(3600)
    runtime.tick()
    spend = runtime.books.ledger.snapshot(clock.wall()).budget_spend_usd
    assert sum(v for (budget, _), v in spend.items() if budget == "risk") > 0


def test_an_unreadable_pod_labels_file_is_a_config_error(tmp_path, clock):
    import pytest

    from ml_cost_exporter.config.errors import ConfigError

    with pytest.raises(ConfigError, match="cannot read pod labels"):
        Runtime(None, frozenset(), Clocks(clock.wall, clock.monotonic), environ={}, cgroup_root=tmp_path,
                pod_labels_file=str(tmp_path / "missing"))


def test_failed_requests_are_routed_apart_and_unknown_quantities_are_not_counted_as_tokens():
    from ml_cost_exporter.cost.books import usage_of
    from ml_cost_exporter.sampling import Readings, measure
    from ml_cost_exporter.sources.server import ServerReading

    reading = ServerReading(ok=True, deltas={("a", "latest"): {"requests": 5.0, "failed_requests": 3.0,
                                                               "prompt_tokens": 7.0, "someday_quantity": 11.0}})
    usage = usage_of(measure(Readings(servers=(reading,)), None, 0.0, 1.0, frozenset()))
    assert usage.requests == {("a", "latest"): 5.0}
    assert usage.failed_requests == {("a", "latest"): 3.0}
    assert usage.tokens == {(("a", "latest"), "prompt"): 7.0}


def test_a_generic_server_with_failures_exports_them_and_they_weigh_in_attribution(tmp_path, clock):
    from prometheus_client import generate_latest

    from ml_cost_exporter.exposition.collectors import build_registry

    text = textwrap.dedent("""
        allocation: {vcpus: 4, memory_gib: 16}
        models:
          - name: a
            server: {preset: generic, url: "http://s/metrics", model_label: m, requests: {metric: app_ok_total},
                     failed_requests: {metric: app_failed_total}}
          - name: b
            server: {preset: generic, url: "http://s/metrics", model_label: m, requests: {metric: app_ok_total},
                     failed_requests: {metric: app_failed_total}}
    """)
    bodies = iter(['app_ok_total{m="a"} 0\napp_failed_total{m="a"} 0\napp_ok_total{m="b"} 0\n'
                   'app_failed_total{m="b"} 0\n',
                   'app_ok_total{m="a"} 10\napp_failed_total{m="a"} 0\napp_ok_total{m="b"} 0\n'
                   'app_failed_total{m="b"} 30\n'])
    path = tmp_path / "pricing.yaml"
    path.write_text(text)
    runtime = Runtime(str(path), frozenset({"server"}), Clocks(clock.wall, clock.monotonic), environ={},
                      cgroup_root=tmp_path, server_fetch=lambda url: next(bodies))
    runtime.tick()
    clock.advance(3600)
    runtime.tick()
    registry = build_registry(runtime.state, runtime.clocks.monotonic)
    assert registry.get_sample_value("mlcost_failed_requests_total", {"model": "b", "version": "latest"}) == 30
    assert registry.get_sample_value("mlcost_requests_total", {"model": "b", "version": "latest"}) == 0
    cpu = {m: registry.get_sample_value("mlcost_usd_total", {"model": m, "version": "latest",
                                                             "workload": "inference", "resource": "cpu"})
           for m in ("a", "b")}
    assert cpu["b"] == 3 * cpu["a"]  # b's 30 failures did three times a's work
    assert registry.get_sample_value("inference_cost_per_1k_usd", {"model": "b", "version": "latest"}) is None
    assert "mlcost_failed_requests_total" in generate_latest(registry).decode()


def test_aborted_requests_are_neither_requests_nor_tokens(tmp_path, clock):
    """Until the ledger accounts failures, a failed_requests delta must not fall into generation tokens."""
    config = tmp_path / "pricing.yaml"
    config.write_text("allocation: {vcpus: 4, memory_gib: 16}\n"
                      "models: [{name: m, server: {preset: vllm, url: 'http://v/metrics'}}]\n")
    bodies = iter([f'vllm:request_success_total{{finished_reason="{reason}",model_name="m"}} {n}\n'
                   for reason, n in (("abort", 5), ("abort", 75))])
    runtime = Runtime(str(config), frozenset({"server"}), Clocks(clock.wall, clock.monotonic), environ={},
                      cgroup_root=tmp_path, server_fetch=lambda url: next(bodies))
    for _ in range(2):
        runtime.tick()
        clock.advance(60)
    snapshot = runtime.books.ledger.snapshot(clock.wall())
    assert snapshot.requests_total[("m", "latest")] == 0
    assert all(v == 0 for v in snapshot.tokens_total.values())
    runtime.close()
