"""Deterministic exporter history for `mlcost` tests and benchmarks, written as OpenMetrics for promtool.

Four weeks (2026-03-04 to 2026-04-01 UTC, 5-minute samples) of what ml-cost-exporter pods export:
  chat    2 pods, 1 A100-80GB each, $5/h a pod, 60 GiB of GPU memory used (no smaller GPU holds it); v1
          until 03-25 (10 req/s, 60 % busy), then v2 (4 req/s, 30 % busy); target $0.10 per 1k.
  embed   1 pod on an A100-80GB, $5/h, 2 req/s from 06:00 to 24:00 and none from 00:00 to 06:00;
          at most 15 % busy and 6 GiB of GPU memory.
  trainer 1 pod, 8 H100, $55.04/h, workload training, from 03-20 00:00 to 03-22 00:00 (48 h).
Budgets (their recordings, as the mlcost-budget rules would write them): search-monthly ($20,000 a
month, the chat model), research-daily ($1,000 a day, the trainer) and trainer-job ($2,205 for the
trainer's whole job, period job): its recordings and the trainer's mlcost_budget_spend_usd_total stop
with the job, at 119.8 % spent.
With `recorded=True` the hourly model recordings (model:*:increase1h) are written too, equal to the raw
counters' hourly increases,
from 2026-03-18 on (as if the rules were deployed then: earlier windows fall back to the raw counters),
stamped RULE_MINUTE past each hour as Prometheus stamps them when the hourly group runs then, each holding
the clock hour that ended at hh:00, like the rules (docs/rules.md#hourly-series), whatever the minute.
The trainer counts an epoch every 6 hours (mlcost_training_epochs_total): $330.24 an epoch.
chat's pods draw 250 W each (mlcost_energy_joules_total) at 400 g CO2e per kWh (mlcost_carbon_grams_total),
and their cost goes 70 % to tenant acme, 30 % to globex (mlcost_tenant_usd_total and its hourly recording).
"""

from __future__ import annotations

import math
import subprocess
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

START = datetime(2026, 3, 4, tzinfo=UTC).timestamp()
END = datetime(2026, 4, 1, tzinfo=UTC).timestamp()
VERSION_CHANGE = datetime(2026, 3, 25, tzinfo=UTC).timestamp()
TRAIN_START = datetime(2026, 3, 20, tzinfo=UTC).timestamp()
TRAIN_END = datetime(2026, 3, 22, tzinfo=UTC).timestamp()
JOB_BUDGET_USD = 2205.0
JOB_PERIOD = (datetime(2000, 1, 1, tzinfo=UTC).timestamp(), datetime(2999, 1, 1, tzinfo=UTC).timestamp())
RULES_DEPLOYED = datetime(2026, 3, 18, tzinfo=UTC).timestamp()  # the hourly recordings exist from here on
MARCH = datetime(2026, 3, 1, tzinfo=UTC).timestamp()
APRIL = END
STEP = 600.0
RULE_MINUTE = 7 * 60.0  # the hourly rule group's evaluation offset within the hour
EPOCH_SECONDS = 6 * 3600.0
CHAT_WATTS = 250.0
GRAMS_PER_KWH = 400.0
TENANTS = {"acme": 0.7, "globex": 0.3}  # chat's cost shares
CHUNK = 12 * 3600.0  # promtool reads its whole input once per 2h block: small files keep it fast
GIB = 1024.0**3


@dataclass(frozen=True)
class Pod:
    instance: str
    model: str
    team: str
    workload: str
    gpu_type: str
    gpus: int
    gpu_usd_per_hour: float
    cpu_usd_per_hour: float
    version: Callable[[float], str]
    alive: Callable[[float], bool]
    request_rate: Callable[[float], float]  # requests/s during [t, t + STEP)
    utilization: Callable[[float], float]
    memory_gib: float
    target_per_1k: float | None


def _hour(t: float) -> int:
    return datetime.fromtimestamp(t, UTC).hour


def chat_version(t: float) -> str:
    return "v1" if t < VERSION_CHANGE else "v2"


def pods(extra_models: int = 0) -> list[Pod]:
    always = lambda t: True  # noqa: E731
    chat = [Pod(f"chat-{i}", "chat", "search", "inference", "a100-80gb", 1, 4.5, 0.5, chat_version, always,
                lambda t: 5.0 if t < VERSION_CHANGE else 2.0, lambda t: 0.6 if t < VERSION_CHANGE else 0.3,
                60.0, 0.10) for i in range(2)]
    embed = Pod("embed-0", "embed", "ads", "inference", "a100-80gb", 1, 4.5, 0.5, lambda t: "v3", always,
                lambda t: 0.0 if _hour(t) < 6 else 2.0, lambda t: 0.0 if _hour(t) < 6 else 0.15, 6.0, None)
    trainer = Pod("train-0", "trainer", "research", "training", "h100", 8, 52.0, 3.04, lambda t: "v1",
                  lambda t: TRAIN_START <= t < TRAIN_END, lambda t: 0.0, lambda t: 0.95, 70.0, None)
    more = [Pod(f"bench-{i}", f"model-{i:03d}", f"team-{i % 10}", "inference", "l4", 1, 0.7, 0.1,
                lambda t: "v1", always, lambda t, i=i: 1.0 + i % 5, lambda t: 0.5, 10.0, 0.5)
            for i in range(extra_models)]
    return [*chat, embed, trainer, *more]


class _Families:
    """Samples grouped by family, as OpenMetrics requires (each family's samples contiguous)."""

    def __init__(self, drop: frozenset[str] = frozenset()) -> None:
        self.drop = drop  # families left out, as a relabelling rule or a partial install leaves them out
        self.types: dict[str, str] = {}
        self.lines: dict[str, list[str]] = {}

    def add(self, family: str, kind: str, sample: str, labels: dict[str, str], value: float, t: float) -> None:
        if family in self.drop:
            return
        self.types.setdefault(family, kind)
        text = ",".join(f'{k}="{v}"' for k, v in labels.items())
        self.lines.setdefault(family, []).append((t, f"{sample}{{{text}}} {value!r} {t:.0f}"))

    def text(self, start: float, end: float) -> Iterator[str]:
        """The samples in [start, end) as one OpenMetrics document."""
        for family, kind in self.types.items():
            lines = [line for t, line in self.lines[family] if start <= t < end]
            if lines:
                yield f"# TYPE {family} {kind}\n"
                yield "\n".join(lines) + "\n"
        yield "# EOF\n"


def _times(start: float, end: float, step: float) -> list[float]:
    return [start + i * step for i in range(int((end - start) // step) + 1)]


def _pod_series(fam: _Families, pod: Pod, times: list[float], recorded: bool, step: float,
                rule_minute: float = RULE_MINUTE) -> None:
    usd = {"gpu": 0.0, "cpu": 0.0}
    idle_gpu = requests = joules = 0.0
    hourly: dict[tuple, float] = {}
    for t in times:
        if not pod.alive(t):
            continue
        version = pod.version(t)
        base = {"instance": pod.instance, "job": "ml-cost-exporter", "model": pod.model, "version": version}
        for resource, rate in (("gpu", pod.gpu_usd_per_hour), ("cpu", pod.cpu_usd_per_hour)):
            fam.add("mlcost_usd", "counter", "mlcost_usd_total",
                    {**base, "workload": pod.workload, "resource": resource}, usd[resource], t)
            fam.add("mlcost_hourly_usd", "gauge", "mlcost_hourly_usd",
                    {**base, "workload": pod.workload, "resource": resource}, rate, t)
        fam.add("mlcost_idle_usd", "counter", "mlcost_idle_usd_total", {**base, "resource": "gpu"}, idle_gpu, t)
        if pod.workload == "inference":
            fam.add("mlcost_requests", "counter", "mlcost_requests_total", base, requests, t)
            for kind, per in (("prompt", 50), ("generation", 150)):
                fam.add("mlcost_tokens", "counter", "mlcost_tokens_total", {**base, "kind": kind}, requests * per, t)
        if pod.model == "chat":
            _chat_extras(fam, base, sum(usd.values()), joules, t)
        if pod.workload == "training":
            fam.add("mlcost_training_epochs", "counter", "mlcost_training_epochs_total",
                    {"model": pod.model, "version": version, **pod_only(pod)}, (t - TRAIN_START) / EPOCH_SECONDS, t)
        if pod.target_per_1k is not None:
            fam.add("mlcost_target_cost_per_1k_usd", "gauge", "mlcost_target_cost_per_1k_usd", base,
                    pod.target_per_1k, t)
        fam.add("mlcost_model_info", "gauge", "mlcost_model_info",
                {**base, "team": pod.team, "workload": pod.workload}, 1.0, t)
        pod_labels = {"instance": pod.instance, "job": "ml-cost-exporter"}
        fam.add("mlcost_allocated_gpus", "gauge", "mlcost_allocated_gpus", pod_labels, float(pod.gpus), t)
        fam.add("mlcost_pricing_info", "gauge", "mlcost_pricing_info",
                {**pod_labels, "gpu_type": pod.gpu_type, "instance_type": "", "provider": "aws",
                 "purchase_option": "on_demand"}, 1.0, t)
        fam.add("mlcost_gpu_utilization_ratio", "gauge", "mlcost_gpu_utilization_ratio",
                {**pod_labels, "gpu": "0", "uuid": f"GPU-{pod.instance}"}, pod.utilization(t), t)
        fam.add("mlcost_gpu_memory_used_bytes", "gauge", "mlcost_gpu_memory_used_bytes",
                {**pod_labels, "gpu": "0", "uuid": f"GPU-{pod.instance}"}, pod.memory_gib * GIB, t)
        # what accrues during [t, t + STEP): the next sample shows it
        hours = step / 3600.0
        for resource, rate in (("gpu", pod.gpu_usd_per_hour), ("cpu", pod.cpu_usd_per_hour)):
            usd[resource] += rate * hours
        idle_gpu += pod.gpu_usd_per_hour * hours * (1.0 - pod.utilization(t))
        requests += pod.request_rate(t) * step
        joules += CHAT_WATTS * step if pod.model == "chat" else 0.0
        if recorded:
            _accrue_hourly(hourly, pod, t, version, step, rule_minute)
    if recorded:
        _write_hourly(fam, hourly)


def _chat_extras(fam: _Families, base: dict[str, str], usd: float, joules: float, t: float) -> None:
    """chat's energy, carbon and per-tenant cost counters."""
    fam.add("mlcost_energy_joules", "counter", "mlcost_energy_joules_total", base, joules, t)
    fam.add("mlcost_carbon_grams", "counter", "mlcost_carbon_grams_total", base,
            joules / 3.6e6 * GRAMS_PER_KWH, t)
    for tenant, share in TENANTS.items():
        fam.add("mlcost_tenant_usd", "counter", "mlcost_tenant_usd_total", {**base, "tenant": tenant}, usd * share, t)


def pod_only(pod: Pod) -> dict[str, str]:
    return {"instance": pod.instance, "job": "ml-cost-exporter"}


def _accrue_hourly(hourly: dict, pod: Pod, t: float, version: str, step: float, rule_minute: float) -> None:
    """The recording that holds the accrual of [t, t+step): it shows in the sample at t+step, which belongs to
    the clock hour ending at or after it; that hour's recording is stamped rule_minute past its end."""
    at = math.ceil((t + step) / 3600) * 3600.0 + rule_minute
    hours = step / 3600.0
    key = (at, pod.model, version, pod.workload)
    for resource, rate in (("gpu", pod.gpu_usd_per_hour), ("cpu", pod.cpu_usd_per_hour)):
        hourly[(*key, "usd", resource)] = hourly.get((*key, "usd", resource), 0.0) + rate * hours
    hourly[(*key, "idle", "gpu")] = hourly.get((*key, "idle", "gpu"), 0.0) + (
        pod.gpu_usd_per_hour * hours * (1.0 - pod.utilization(t)))
    if pod.workload == "inference":
        hourly[(*key, "requests", "")] = hourly.get((*key, "requests", ""), 0.0) + pod.request_rate(t) * step
    if pod.model == "chat":
        cost = (pod.gpu_usd_per_hour + pod.cpu_usd_per_hour) * hours
        for tenant, share in TENANTS.items():
            hourly[(*key, "tenant", tenant)] = hourly.get((*key, "tenant", tenant), 0.0) + cost * share


_HOURLY_SERIES: list = []


def _write_hourly(fam: _Families, hourly: dict) -> None:
    _HOURLY_SERIES.append(hourly)


def _flush_hourly(fam: _Families, rules_from: float, rule_minute: float) -> None:
    """Hourly model recordings summed over pods: a sample an hour per model, version (workload, resource, kind)."""
    summed: dict[tuple, float] = {}
    for hourly in _HOURLY_SERIES:
        for key, value in hourly.items():
            summed[key] = summed.get(key, 0.0) + value
    _HOURLY_SERIES.clear()
    for (at, model, version, workload, kind, resource), value in sorted(summed.items()):
        if at - rule_minute > END or at - rule_minute < rules_from:
            continue
        base = {"model": model, "version": version}
        if kind == "usd":
            fam.add("model:mlcost_usd:increase1h", "gauge", "model:mlcost_usd:increase1h",
                    {**base, "workload": workload, "resource": resource}, value, at)
        elif kind == "tenant":
            fam.add("model_tenant:mlcost_tenant_usd:increase1h", "gauge", "model_tenant:mlcost_tenant_usd:increase1h",
                    {**base, "tenant": resource}, value, at)
        elif kind == "idle":
            fam.add("model:mlcost_idle_usd:increase1h", "gauge", "model:mlcost_idle_usd:increase1h",
                    {**base, "resource": resource}, value, at)
        else:
            fam.add("model:mlcost_requests:increase1h", "gauge", "model:mlcost_requests:increase1h", base, value, at)
            for token_kind, per in (("prompt", 50), ("generation", 150)):
                fam.add("model:mlcost_tokens:increase1h", "gauge", "model:mlcost_tokens:increase1h",
                        {**base, "kind": token_kind}, value * per, at)


def _budget_series(fam: _Families, times: list[float], start_time: float) -> None:
    """Budget recordings: search-monthly = chat's spend ($10/h), research-daily = the trainer's ($55.04/h)."""
    for t in times:
        month_spent = 10.0 * (t - start_time) / 3600.0
        period = APRIL - MARCH
        forecast = month_spent / (t - MARCH) * period if t - MARCH >= 86400 else None
        day_start = t - t % 86400
        training = 55.04 if TRAIN_START <= t < TRAIN_END else 0.0
        day_spent = 55.04 * max(0.0, min(t, TRAIN_END) - max(day_start, TRAIN_START)) / 3600.0
        for budget, spent, limit, start, end, rate, fc in (
                ("search-monthly", month_spent, 20000.0, MARCH, APRIL, 10.0 / 3600, forecast),
                ("research-daily", day_spent, 1000.0, day_start, day_start + 86400, training / 3600, None)):
            affordable = limit / (end - start)
            labels = {"budget": budget}
            values = {"budget:mlcost_budget_spend_usd:period_to_date": spent,
                      "budget:mlcost_budget_limit_usd:max": limit,
                      "budget:mlcost_budget_period_start_timestamp_seconds:max": start,
                      "budget:mlcost_budget_period_end_timestamp_seconds:max": end,
                      "budget:mlcost_budget_spend_usd:rate1h": rate}
            for window in ("1h", "6h", "1d"):
                values[f"budget:mlcost_budget_burn:ratio_rate{window}"] = rate / affordable
            if fc is not None:
                values["budget:mlcost_budget_spend_usd:forecast_period_end"] = fc
            for name, value in values.items():
                fam.add(name, "gauge", name, labels, value, t)
        if TRAIN_START <= t < TRAIN_END:
            _job_budget(fam, t)


def _job_budget(fam: _Families, t: float) -> None:
    """trainer-job while the trainer runs: its recordings and the pod's budget counter (the last at 23:50)."""
    spent = 55.04 * (t - TRAIN_START) / 3600.0
    fam.add("mlcost_budget_spend_usd", "counter", "mlcost_budget_spend_usd_total",
            {"instance": "train-0", "job": "ml-cost-exporter", "budget": "trainer-job", "period": "job"}, spent, t)
    values = {"budget:mlcost_budget_spend_usd:period_to_date": spent,
              "budget:mlcost_budget_limit_usd:max": JOB_BUDGET_USD,
              "budget:mlcost_budget_period_start_timestamp_seconds:max": JOB_PERIOD[0],
              "budget:mlcost_budget_period_end_timestamp_seconds:max": JOB_PERIOD[1],
              "budget:mlcost_budget_spend_usd:rate1h": 55.04 / 3600}
    for name, value in values.items():
        fam.add(name, "gauge", name, {"budget": "trainer-job"}, value, t)


def write_openmetrics(directory: Path, recorded: bool, extra_models: int = 0, start_time: float = START,
                      step: float = STEP, rules_from: float = RULES_DEPLOYED,
                      rule_minute: float = RULE_MINUTE, drop: frozenset[str] = frozenset()) -> list[Path]:
    """The history as OpenMetrics files of CHUNK seconds each, without the families in `drop`."""
    fam = _Families(drop)
    times = _times(start_time, END, step)
    for pod in pods(extra_models):
        _pod_series(fam, pod, times, recorded, step, rule_minute)
    if recorded:
        _flush_hourly(fam, rules_from, rule_minute)
    _budget_series(fam, times, start_time)
    paths = []
    for i, start in enumerate(_times(start_time, END, CHUNK)):
        path = directory / f"history-{i:02d}.om"
        with path.open("w") as out:
            out.writelines(fam.text(start, start + CHUNK))
        paths.append(path)
    return paths


def create_blocks(directory: Path, recorded: bool, extra_models: int = 0, **span) -> Path:
    """A TSDB directory holding the history, made by promtool (`span`: start_time, step, rules_from, rule_minute,
    drop)."""
    directory.mkdir(parents=True, exist_ok=True)
    data = directory / "data"
    sources = write_openmetrics(directory, recorded, extra_models, **span)
    with ThreadPoolExecutor(max_workers=2) as pool:
        list(pool.map(lambda source: _backfill(source, data), sources))
    return data


def _backfill(source: Path, data: Path) -> None:
    subprocess.run(["promtool", "tsdb", "create-blocks-from", "openmetrics", "--quiet", str(source), str(data)],
                   check=True, capture_output=True)
    source.unlink()


def truth(start: float, end: float, step: float = STEP) -> dict[str, dict[str, float]]:
    """What each model really cost, served and idled in [start, end): the pods' rates times time.

    Two slices never reach a counter and so no query can see them: the last step before a pod stops (the
    trainer's 23:50-24:00) and the step before chat's version change (it lands on v2's first sample).
    """
    out: dict[str, dict[str, float]] = {}
    for pod in pods():
        for t in _times(START, END - step, step):
            if not pod.alive(t) or not start <= t < end:
                continue
            figures = out.setdefault(pod.model, {"cost_usd": 0.0, "requests": 0.0, "idle_usd": 0.0,
                                                 "inference_usd": 0.0})
            hours = step / 3600.0
            cost = (pod.gpu_usd_per_hour + pod.cpu_usd_per_hour) * hours
            figures["cost_usd"] += cost
            figures["idle_usd"] += pod.gpu_usd_per_hour * hours * (1.0 - pod.utilization(t))
            if pod.workload == "inference":
                figures["requests"] += pod.request_rate(t) * step
                figures["inference_usd"] += cost
    for figures in out.values():
        requests = figures.pop("requests")
        inference = figures.pop("inference_usd")
        figures["requests"] = requests or None
        figures["cost_per_1k_usd"] = inference / requests * 1000 if requests else None
    return out
