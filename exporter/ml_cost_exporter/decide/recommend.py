"""`mlcost recommend`: savings ranked by dollars a month, each with its evidence (figures and PromQL) and a confidence.

Every recommendation comes from measured history; none is shown where the data does not warrant it.
"""

from __future__ import annotations

import argparse
import math
from collections import defaultdict
from dataclasses import dataclass, field

from ml_cost_exporter.config.catalog import Catalog
from ml_cost_exporter.decide.capacity import MIG_PROFILES, TENSOR_TFLOPS, mig_shape
from ml_cost_exporter.decide.errors import EXIT_OK, UsageError
from ml_cost_exporter.decide.history import History, Window, window_from
from ml_cost_exporter.decide.output import Column, Document, Section, usd
from ml_cost_exporter.decide.prices import gpu_quote
from ml_cost_exporter.decide.promapi import Prometheus
from ml_cost_exporter.decide.timeparse import iso, promql_duration

EXAMPLE = """examples:
  mlcost recommend --since 30d
  mlcost recommend --since 14d --until 2026-04-01 --format json | jq '.recommendations[0]'"""
HOURS_PER_MONTH = 730.0
GIB = 1024.0**3
MEMORY_HEADROOM = 0.9  # a smaller GPU must hold the observed peak memory within 90 % of its own
COMPUTE_HEADROOM = 0.8  # and the observed peak busy time within 80 % of its throughput
TARGET_UTILIZATION_NOTE = "r* = pod $/h / (3.6 x target $/1k), as the scaling rules compute it"
COLUMNS = (Column("rank", "#", "int"), Column("usd_per_month", "$/MONTH", "usd"), Column("kind", "KIND"),
           Column("subject", "SUBJECT"), Column("action", "ACTION"), Column("confidence", "CONF"))


@dataclass
class Recommendation:
    kind: str
    subject: str
    action: str
    usd_per_month: float
    confidence: str
    evidence: dict = field(default_factory=dict)
    promql: list[str] = field(default_factory=list)


def add_parser(subparsers: argparse._SubParsersAction, parents: list) -> None:
    parser = subparsers.add_parser("recommend", parents=parents, help="Savings ranked by dollars a month.",
                                   description="Savings from measured history: idle replicas, scale-to-zero hours, "
                                               "smaller GPUs or MIG profiles, commitments, spot for training, "
                                               "models above their cost-per-1k target.",
                                   epilog=EXAMPLE, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--since", default="30d", help="History to read, ending at --until (default 30d).")
    parser.add_argument("--until", help="End of the history (default now; RFC 3339, date or Unix seconds).")
    parser.add_argument("--data", choices=("auto", "recorded", "raw"), default="auto",
                        help="Read the model:*:increase1h recordings, the raw counters, or the recordings where "
                             "they cover the window (default auto).")
    parser.add_argument("--min-usd", type=float, default=1.0, help="Hide savings below this a month (default 1).")
    parser.set_defaults(handler=run)


def _by_key(rows, *labels: str) -> dict[tuple[str, ...], float]:
    return {tuple(s.get(k, "") for k in labels): v for s, v in rows}


class Evidence:
    """The queries recommendations are drawn from, run once each."""

    def __init__(self, prometheus: Prometheus, window: Window) -> None:
        self.prometheus, self.window = prometheus, window
        self.range = promql_duration(window.seconds)
        self.month = HOURS_PER_MONTH * 3600.0 / window.seconds  # window -> a month

    def query(self, promql: str) -> list[tuple[dict[str, str], float]]:
        return self.prometheus.instant(promql, self.window.end)

    def current(self) -> set[tuple[str, str]]:
        """Model versions still running at the window's end: only they get replica and target advice."""
        if not hasattr(self, "_current"):
            self._current = set(_by_key(self.query(CURRENT), "model", "version"))
        return self._current


CURRENT = "count by (model, version) (mlcost_model_info)"


def idle_replicas(ev: Evidence) -> list[Recommendation]:
    w = ev.range
    q_pods = f"avg_over_time(count by (model, version) (mlcost_model_info{{workload=\"inference\"}})[{w}:1h])"
    q_hourly = f"avg_over_time(sum by (model, version) (mlcost_hourly_usd{{workload=\"inference\"}})[{w}:1h])"
    q_peak = f"max_over_time(sum by (model, version) (rate(mlcost_requests_total[1h]))[{w}:1h])"
    q_target = f"max by (model, version) (max_over_time(mlcost_target_cost_per_1k_usd[{w}]))"
    pods, hourly = _by_key(ev.query(q_pods), "model", "version"), _by_key(ev.query(q_hourly), "model", "version")
    peak, target = _by_key(ev.query(q_peak), "model", "version"), _by_key(ev.query(q_target), "model", "version")
    out = []
    for key, replicas in pods.items():
        if key not in ev.current() or key not in target or not hourly.get(key) or replicas <= 0:
            continue
        pod_hourly = hourly[key] / replicas
        r_star = pod_hourly / (3.6 * target[key])
        needed = max(1, math.ceil(peak.get(key, 0.0) / r_star - 1e-9))
        excess = replicas - needed
        if excess < 0.5:
            continue
        out.append(Recommendation(
            "idle-replicas", f"{key[0]} {key[1]}", f"{needed} replicas, not {replicas:.1f}",
            excess * pod_hourly * HOURS_PER_MONTH, "medium",
            {"replicas_avg": replicas, "replicas_needed": needed, "peak_requests_per_second": peak.get(key, 0.0),
             "r_star_requests_per_second": r_star, "pod_usd_per_hour": pod_hourly, "note": TARGET_UTILIZATION_NOTE},
            [q_pods, q_hourly, q_peak, q_target, CURRENT]))
    return out


def scale_to_zero(ev: Evidence) -> list[Recommendation]:
    w = ev.range
    zero = "(sum by (model, version) (increase(mlcost_requests_total[1h])) == 0)"
    q_cost = (f"sum_over_time((sum by (model, version) (increase(mlcost_usd_total{{workload=\"inference\"}}[1h])) "
              f"and on (model, version) {zero})[{w}:1h])")
    q_hours = f"count_over_time({zero}[{w}:1h])"
    hours = _by_key(ev.query(q_hours), "model", "version")
    out = []
    for (model, version), cost in _by_key(ev.query(q_cost), "model", "version").items():
        if cost <= 0:
            continue
        zero_hours = hours.get((model, version), 0.0)
        out.append(Recommendation(
            "scale-to-zero", f"{model} {version}",
            f"scale to zero: {zero_hours:.0f} h idle cost {usd(cost)}",
            cost * ev.month, "high" if zero_hours >= 24 else "medium",
            {"zero_traffic_hours": zero_hours, "cost_in_those_hours_usd": cost,
             "window_hours": ev.window.seconds / 3600}, [q_cost, q_hours]))
    return out


@dataclass
class PodShape:
    models: set = field(default_factory=set)
    gpu_type: str = ""
    provider: str = ""
    purchase_option: str = ""
    gpus: float = 0.0
    peak_memory_bytes: float = 0.0
    peak_utilization: float = 0.0


def _pods(ev: Evidence) -> dict[str, PodShape]:
    if hasattr(ev, "pods"):
        return ev.pods
    w = ev.range
    queries = {
        "models": f"max by (instance, model, version) (max_over_time(mlcost_model_info[{w}]))",
        "pricing": f"max by (instance, gpu_type, provider, purchase_option) (max_over_time(mlcost_pricing_info[{w}]))",
        "gpus": f"max by (instance) (max_over_time(mlcost_allocated_gpus[{w}]))",
        "memory": f"max by (instance) (max_over_time(mlcost_gpu_memory_used_bytes[{w}]))",
        "busy": f"max_over_time(max by (instance) (avg_over_time(mlcost_gpu_utilization_ratio[1h]))[{w}:1h])",
    }
    pods: dict[str, PodShape] = defaultdict(PodShape)
    for labels, _ in ev.query(queries["models"]):
        pods[labels.get("instance", "")].models.add((labels.get("model", ""), labels.get("version", "")))
    for labels, _ in ev.query(queries["pricing"]):
        pod = pods[labels.get("instance", "")]
        pod.gpu_type, pod.provider = labels.get("gpu_type", ""), labels.get("provider", "")
        pod.purchase_option = labels.get("purchase_option", "")
    for name, attr in (("gpus", "gpus"), ("memory", "peak_memory_bytes"), ("busy", "peak_utilization")):
        for labels, value in ev.query(queries[name]):
            setattr(pods[labels.get("instance", "")], attr, value)
    ev.pod_queries = list(queries.values())
    ev.pods = dict(pods)
    return ev.pods


def _fits(catalog: Catalog, shape: PodShape, candidate: str, memory_gib: float, compute_fraction: float) -> bool:
    base = TENSOR_TFLOPS.get(shape.gpu_type)
    if base is None or candidate not in TENSOR_TFLOPS:
        return False
    enough_memory = shape.peak_memory_bytes <= memory_gib * GIB * MEMORY_HEADROOM
    enough_compute = shape.peak_utilization * base <= TENSOR_TFLOPS[candidate] * compute_fraction * COMPUTE_HEADROOM
    return enough_memory and enough_compute


def smaller_gpu(ev: Evidence, catalog: Catalog) -> list[Recommendation]:
    out = []
    groups: dict[tuple, list[PodShape]] = defaultdict(list)
    for shape in _pods(ev).values():
        if shape.gpu_type in catalog.gpu_types and shape.gpus > 0 and shape.models and shape.provider:
            model = min(m for m, _ in shape.models)
            groups[(model, shape.gpu_type, shape.provider, shape.purchase_option or "on_demand")].append(shape)
    for (model, gpu_type, provider, option), shapes in groups.items():
        worst = PodShape(gpu_type=gpu_type, gpus=shapes[0].gpus,
                         peak_memory_bytes=max(s.peak_memory_bytes for s in shapes),
                         peak_utilization=max(s.peak_utilization for s in shapes))
        current = gpu_quote(catalog, provider, option, gpu_type, worst.gpus)
        if current is None:
            continue
        options = []
        for candidate, gpu in catalog.gpu_types.items():
            if candidate != gpu_type and _fits(catalog, worst, candidate, gpu.memory_gib, 1.0):
                options.append((candidate, gpu_quote(catalog, provider, option, candidate, worst.gpus)))
        parent = catalog.gpu_types[gpu_type]
        for profile in MIG_PROFILES.get(gpu_type, ()):
            slices, memory = mig_shape(profile)
            fraction = slices / parent.mig_slices
            if _fits(catalog, worst, gpu_type, memory, fraction):
                options.append((f"{gpu_type} MIG {profile}",
                                gpu_quote(catalog, provider, option, gpu_type, worst.gpus * fraction)))
        options = [(name, q) for name, q in options if q is not None and q.hourly_usd < current.hourly_usd]
        if not options:
            continue
        name, best = min(options, key=lambda o: o[1].hourly_usd)
        saving = (current.hourly_usd - best.hourly_usd) * len(shapes) * HOURS_PER_MONTH
        out.append(Recommendation(
            "smaller-gpu", model, f"{gpu_type} -> {name}", saving, "medium",
            {"pods": len(shapes), "gpus_per_pod": worst.gpus, "peak_gpu_memory_gib": worst.peak_memory_bytes / GIB,
             "peak_gpu_utilization": worst.peak_utilization, "current_usd_per_hour": current.hourly_usd,
             "candidate_usd_per_hour": best.hourly_usd, "provider": provider, "purchase_option": option,
             "price_as_of": best.as_of, "note": "throughput compared by dense FP16 tensor TFLOPS"},
            list(ev.pod_queries)))
    return out


def commitments(ev: Evidence, catalog: Catalog) -> list[Recommendation]:
    w = ev.range
    gpus = ("sum by (provider, gpu_type) (max by (instance, provider, gpu_type) "
            "(mlcost_pricing_info{purchase_option=\"on_demand\"}) * on (instance) group_left () "
            "max by (instance) (mlcost_allocated_gpus))")
    q_min, q_hours = f"min_over_time({gpus}[{w}:1h])", f"count_over_time({gpus}[{w}:1h])"
    # min_over_time skips hours without the series: a GPU type counts as steady only if present in every hour
    hours = _by_key(ev.query(q_hours), "provider", "gpu_type")
    window_hours = ev.window.seconds / 3600.0
    confidence = "high" if ev.window.seconds >= 28 * 86400 else "medium"
    out = []
    for labels, steady in ev.query(q_min):
        provider, gpu_type = labels.get("provider", ""), labels.get("gpu_type", "")
        if hours.get((provider, gpu_type), 0.0) < 0.99 * window_hours:
            continue
        if steady < 1 or provider not in catalog.providers or gpu_type not in catalog.gpu_types:
            continue
        on_demand = gpu_quote(catalog, provider, "on_demand", gpu_type, math.floor(steady))
        if on_demand is None:
            continue
        for option, level in (("commit_1y", confidence), ("commit_3y", "medium" if confidence == "high" else "low")):
            committed = gpu_quote(catalog, provider, option, gpu_type, math.floor(steady))
            saving = (on_demand.hourly_usd - committed.hourly_usd) * HOURS_PER_MONTH
            out.append(Recommendation(
                "commitment", f"{provider} {gpu_type}", f"{option} for {math.floor(steady)} GPUs",
                saving, level, {"steady_gpus": steady, "on_demand_usd_per_hour": on_demand.hourly_usd,
                                "committed_usd_per_hour": committed.hourly_usd, "price_as_of": committed.as_of},
                [q_min, q_hours]))
    return out


def spot_training(ev: Evidence, catalog: Catalog, history: History) -> list[Recommendation]:
    """Training on on-demand pods: the window's cost (recorded series where present) at the spot discount."""
    providers = {}
    for shape in _pods(ev).values():
        if shape.purchase_option == "on_demand" and shape.provider in catalog.providers:
            providers.update({model: shape.provider for model in shape.models})
    cost: dict[tuple[str, str], float] = defaultdict(float)
    for labels, value in history.totals("usd"):
        if labels.get("workload") == "training":
            cost[(labels.get("model", ""), labels.get("version", ""))] += value
    out = []
    for key, spent in cost.items():
        if key not in providers or spent <= 0:
            continue
        spot = catalog.providers[providers[key]].purchase_options["spot"]
        out.append(Recommendation(
            "spot", f"{key[0]} {key[1]}", "train on spot, with checkpoints", spent * (1 - spot) * ev.month,
            "medium", {"on_demand_cost_usd": spent, "spot_ratio": spot, "provider": providers[key],
                       "note": "per month if the window's training recurs"},
            [history.query_for("usd"), ev.pod_queries[1]]))
    return out


def above_target(ev: Evidence, history: History) -> list[Recommendation]:
    w = ev.range
    q_target = f"max by (model, version) (max_over_time(mlcost_target_cost_per_1k_usd[{w}]))"
    targets = _by_key(ev.query(q_target), "model", "version")
    if not targets:
        return []
    cost = defaultdict(float)
    gpu_cost, idle = defaultdict(float), defaultdict(float)
    for s, v in history.totals("usd"):
        key = (s.get("model", ""), s.get("version", ""))
        if s.get("workload") == "inference":
            cost[key] += v
        if s.get("resource") == "gpu":
            gpu_cost[key] += v
    for s, v in history.totals("idle"):
        if s.get("resource") == "gpu":
            idle[(s.get("model", ""), s.get("version", ""))] += v
    requests = _by_key(history.totals("requests"), "model", "version")
    half = Window(ev.window.start, ev.window.start + ev.window.seconds / 2)
    first = _by_key(history.totals("requests", half), "model", "version")
    per_1k = {k: cost[k] / requests[k] * 1000 for k in cost if requests.get(k)}
    out = []
    for key, target in targets.items():
        if key not in ev.current() or key not in per_1k or per_1k[key] <= target:
            continue
        causes = _causes(key, per_1k, requests, first, gpu_cost, idle)
        saving = (per_1k[key] - target) * requests[key] / 1000 * ev.month
        out.append(Recommendation(
            "above-target", f"{key[0]} {key[1]}",
            "; ".join(causes) or "cause unclear",
            saving, "medium" if causes else "low",
            {"cost_per_1k_usd": per_1k[key], "target_usd": target, "requests": requests[key], "causes": causes},
            [q_target, history.query_for("usd"), history.query_for("requests")]))
    return out


def _causes(key, per_1k, requests, first, gpu_cost, idle) -> list[str]:
    causes = []
    earlier = first.get(key, 0.0)
    later = requests[key] - earlier
    if earlier > 0 and later < 0.75 * earlier:
        causes.append(f"traffic fell {(1 - later / earlier) * 100:.0f}%")
    if gpu_cost.get(key):
        busy = 1 - idle.get(key, 0.0) / gpu_cost[key]
        if busy < 0.5:
            causes.append(f"GPU utilization {busy * 100:.0f}%")
    for other, value in per_1k.items():
        if other[0] == key[0] and other != key and value < per_1k[key] / 1.1:
            causes.append(f"{key[1]} costs {per_1k[key] / value:.1f}x {other[1]} per 1k")
    return causes


def run(context) -> tuple[Document, int, str | None]:
    args = context.args
    window = window_from(context)
    prometheus = context.prometheus()
    history = History(prometheus, window, args.data)
    if not history.totals("usd"):
        raise UsageError(f"no cost recorded between {iso(window.start)} and {iso(window.end)}")
    ev = Evidence(prometheus, window)
    catalog = context.config.catalog
    found = [*idle_replicas(ev), *scale_to_zero(ev), *smaller_gpu(ev, catalog), *commitments(ev, catalog),
             *spot_training(ev, catalog, history), *above_target(ev, history)]
    prometheus.done()
    found = sorted((r for r in found if r.usd_per_month >= args.min_usd), key=lambda r: -r.usd_per_month)
    rows = [{"rank": i + 1, "kind": r.kind, "subject": r.subject, "action": r.action,
             "usd_per_month": r.usd_per_month, "confidence": r.confidence, "evidence": r.evidence,
             "promql": r.promql} for i, r in enumerate(found)]
    document = Document("recommend", {"window": {"start": iso(window.start), "end": iso(window.end)},
                                      "data_source": "recorded" if history.recorded else "raw",
                                      "total_usd_per_month": sum(r.usd_per_month for r in found),
                                      "queries": prometheus.queries})
    document.sections.append(Section("recommendations", f"Savings from {iso(window.start)} to {iso(window.end)}",
                                     COLUMNS, rows))
    document.notes.append("evidence and PromQL of each: --format json; savings overlap (e.g. idle replicas and "
                          "scale-to-zero), so they do not add up")
    return document, EXIT_OK, None
