"""`mlcost recommend`: savings ranked by dollars a month, each with its evidence (figures and PromQL) and a confidence.

Every recommendation comes from measured history; none is shown where the data does not warrant it. Every
check says whether it ran, and which series or targets it lacked where it could not.
"""

from __future__ import annotations

import argparse
import math
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field

from ml_cost_exporter.config.catalog import Catalog
from ml_cost_exporter.config.units import GIB
from ml_cost_exporter.decide.capacity import MIG_PROFILES, TENSOR_TFLOPS, mig_shape
from ml_cost_exporter.decide.errors import EXIT_INCOMPLETE, EXIT_OK, UsageError
from ml_cost_exporter.decide.history import History, Window, window_from
from ml_cost_exporter.decide.output import Column, Document, Section, usd
from ml_cost_exporter.decide.prices import gpu_quote
from ml_cost_exporter.decide.promapi import Prometheus
from ml_cost_exporter.decide.timeparse import iso, promql_duration

EXAMPLE = """examples:
  mlcost recommend --since 30d
  mlcost recommend --since 14d --until 2026-04-01 --format json | jq '.recommendations[0]'
  mlcost recommend --since 30d --format json | jq '.checks[] | select(.status != "ran")'"""
HOURS_PER_MONTH = 730.0
MEMORY_HEADROOM = 0.9  # a smaller GPU must hold the observed peak memory within 90 % of its own
COMPUTE_HEADROOM = 0.8  # and the observed peak busy time within 80 % of its throughput
REGRESSION = 1.1  # a version costing 10 % more per 1k than the one before it is a regression
TARGET_UTILIZATION_NOTE = "r* = pod $/h / (3.6 x target $/1k), as the scaling rules compute it"
COLUMNS = (Column("rank", "#", "int"), Column("usd_per_month", "$/MONTH", "usd"), Column("kind", "KIND"),
           Column("subject", "SUBJECT"), Column("action", "ACTION", wrap=True), Column("confidence", "CONF"))
CHECK_COLUMNS = (Column("check", "CHECK"), Column("status", "STATUS"), Column("found", "FOUND", "int"),
                 Column("detail", "MISSING OR NOTE", wrap=True))
TARGET = "mlcost_target_cost_per_1k_usd"
RAN, PARTIAL, NOT_RUN = "ran", "partial", "could not run"


@dataclass
class Recommendation:
    kind: str
    subject: str
    action: str
    usd_per_month: float
    confidence: str
    evidence: dict = field(default_factory=dict)
    promql: list[str] = field(default_factory=list)
    releases: dict = field(default_factory=dict)  # (provider, gpu_type) -> GPUs this advice takes off on-demand


@dataclass
class Check:
    """One check's outcome: ran, partial (some subjects lacked a series or target) or could not run."""

    kind: str
    status: str = RAN
    missing: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    found: int = 0

    def row(self) -> dict:
        detail = "; ".join([*(f"no {m}" for m in self.missing), *self.notes])
        return {"check": self.kind, "status": self.status, "found": self.found, "missing": list(self.missing),
                "notes": list(self.notes), "detail": detail}


def add_parser(subparsers: argparse._SubParsersAction, parents: list) -> None:
    parser = subparsers.add_parser("recommend", parents=parents, help="Savings ranked by dollars a month.",
                                   description="Savings from measured history: idle replicas, scale-to-zero hours, "
                                               "smaller GPUs or MIG profiles, commitments, spot for training, "
                                               "versions that cost more per 1k than the one before, models above "
                                               "their cost-per-1k target. Exit status 4 when a check could not "
                                               "run for lack of a series (the checks table names it).",
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


def _subject(key: tuple[str, str]) -> str:
    return f"{key[0]} {key[1]}"


class Evidence:
    """The queries recommendations are drawn from, run once each."""

    def __init__(self, prometheus: Prometheus, window: Window) -> None:
        self.prometheus, self.window = prometheus, window
        self.range = promql_duration(window.seconds)
        self.hours_range = f"{round(window.seconds * 1000) - 1}ms:1h"  # a subquery's hours, open at the start
        self.month = HOURS_PER_MONTH * 3600.0 / window.seconds  # window -> a month
        self._present: dict[str, bool] = {}
        self._cache: dict[str, object] = {}

    def query(self, promql: str) -> list[tuple[dict[str, str], float]]:
        return self.prometheus.instant(promql, self.window.end)

    def present(self, selector: str) -> bool:
        """Whether the window holds any series of `selector`."""
        if selector not in self._present:
            self._present[selector] = bool(self.query(f"count(count_over_time({selector}[{self.range}]))"))
        return self._present[selector]

    def require(self, check: Check, *selectors: str) -> bool:
        """True when every selector has series; else the check could not run, naming what it lacked."""
        check.missing += [s for s in selectors if not self.present(s)]
        if check.missing:
            check.status = NOT_RUN
        return not check.missing

    def _once(self, name: str, compute: Callable[[], object]):
        if name not in self._cache:
            self._cache[name] = compute()
        return self._cache[name]

    def current(self) -> set[tuple[str, str]]:
        """Model versions still running at the window's end: only they get replica, target and version advice."""
        return self._once("current", lambda: set(_by_key(self.query(CURRENT), "model", "version")))

    def hours_ran(self) -> dict[tuple[str, ...], float]:
        """Hours of the window in which each model version had a cost series: a month scales from these."""
        # an hour counts where a sample lies in it, [hh:00, hh+1:00): the range stops just short of its end
        in_hour = "count by (model, version) (count_over_time(mlcost_usd_total[3599999ms] offset 1ms))"
        query = f"count_over_time({in_hour}[{self.hours_range}])"
        return self._once("hours", lambda: _by_key(self.query(query), "model", "version"))

    def monthly(self, key: tuple[str, str], amount: float) -> float:
        """What `amount`, spent over the hours `key` ran in the window, comes to in a month of running."""
        hours = self.hours_ran().get(key) or self.window.seconds / 3600.0
        return amount * HOURS_PER_MONTH / hours


CURRENT = "count by (model, version) (mlcost_usd_total)"
GPUS_ALLOCATED = "max by (instance) (mlcost_allocated_gpus)"
GPUS_SEEN = "count by (instance) (mlcost_gpu_utilization_ratio)"  # where mlcost_allocated_gpus is dropped


def _gpus_expr(ev: Evidence, check: Check) -> str | None:
    """GPUs per pod: allocated where exported, else the GPUs the pod reports readings for."""
    if ev.present("mlcost_allocated_gpus"):
        return GPUS_ALLOCATED
    if ev.present("mlcost_gpu_utilization_ratio"):
        check.notes.append("GPU counts from mlcost_gpu_utilization_ratio (no mlcost_allocated_gpus)")
        return GPUS_SEEN
    check.missing.append("mlcost_allocated_gpus or mlcost_gpu_utilization_ratio")
    check.status = NOT_RUN
    return None


def idle_replicas(ev: Evidence, check: Check) -> list[Recommendation]:
    if not ev.require(check, 'mlcost_hourly_usd{workload="inference"}', "mlcost_requests_total", TARGET):
        return []
    w = ev.range
    pods_now = 'count by (model, version) (mlcost_hourly_usd{workload="inference",resource="gpu"})'
    q_pods = f"avg_over_time({pods_now}[{ev.hours_range}])"
    q_hourly = f"avg_over_time(sum by (model, version) (mlcost_hourly_usd{{workload=\"inference\"}})[{ev.hours_range}])"
    q_peak = f"max_over_time(sum by (model, version) (rate(mlcost_requests_total[1h]))[{ev.hours_range}])"
    q_target = f"max by (model, version) (max_over_time({TARGET}[{w}]))"
    pods, hourly = _by_key(ev.query(q_pods), "model", "version"), _by_key(ev.query(q_hourly), "model", "version")
    peak, target = _by_key(ev.query(q_peak), "model", "version"), _by_key(ev.query(q_target), "model", "version")
    _note_untargeted(check, ev, pods, target)
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
            "idle-replicas", _subject(key), f"{needed} replicas, not {replicas:.1f}",
            excess * pod_hourly * HOURS_PER_MONTH, "medium",
            {"replicas_avg": replicas, "replicas_needed": needed, "peak_requests_per_second": peak.get(key, 0.0),
             "r_star_requests_per_second": r_star, "pod_usd_per_hour": pod_hourly, "note": TARGET_UTILIZATION_NOTE},
            [q_pods, q_hourly, q_peak, q_target, CURRENT], {"model": key[0], "replicas": math.floor(excess)}))
    return out


def _note_untargeted(check: Check, ev: Evidence, serving, target) -> None:
    untargeted = sorted(_subject(k) for k in serving if k in ev.current() and k not in target)
    if untargeted:
        check.status = PARTIAL
        check.notes.append(f"no target for {', '.join(untargeted)}")


def scale_to_zero(ev: Evidence, check: Check) -> list[Recommendation]:
    if not ev.require(check, "mlcost_requests_total"):
        return []
    zero = "(sum by (model, version) (increase(mlcost_requests_total[1h])) == 0)"
    q_cost = (f"sum_over_time((sum by (model, version) (increase(mlcost_usd_total{{workload=\"inference\"}}[1h])) "
              f"and on (model, version) {zero})[{ev.hours_range}])")
    q_hours = f"count_over_time({zero}[{ev.hours_range}])"
    hours = _by_key(ev.query(q_hours), "model", "version")
    out = []
    for key, cost in _by_key(ev.query(q_cost), "model", "version").items():
        if cost <= 0:
            continue
        zero_hours = hours.get(key, 0.0)
        out.append(Recommendation(
            "scale-to-zero", _subject(key), f"scale to zero: {zero_hours:.0f} h idle cost {usd(cost)}",
            ev.monthly(key, cost), "high" if zero_hours >= 24 else "medium",
            {"zero_traffic_hours": zero_hours, "cost_in_those_hours_usd": cost,
             "hours_ran": ev.hours_ran().get(key), "window_hours": ev.window.seconds / 3600},
            [q_cost, q_hours], {"model": key[0], "replicas": math.inf}))
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
    usd_per_hour: float = 0.0  # measured: the pod's mlcost_hourly_usd while it ran


def _pods(ev: Evidence, check: Check) -> dict[str, PodShape] | None:
    """Every pod's models, GPU type, provider, GPUs, peaks and measured $/h; None if a series is missing."""
    if not ev.require(check, "mlcost_pricing_info"):
        return None
    gpus = _gpus_expr(ev, check)
    if gpus is None:
        return None
    return ev._once("pods", lambda: _pod_shapes(ev, gpus))


def _pod_shapes(ev: Evidence, gpus: str) -> dict[str, PodShape]:
    w, hours = ev.range, ev.hours_range
    queries = {
        "models": f"max by (instance, model, version) (max_over_time(mlcost_hourly_usd[{w}]))",
        "pricing": f"max by (instance, gpu_type, provider, purchase_option) (max_over_time(mlcost_pricing_info[{w}]))",
        "gpus": f"max_over_time({gpus}[{hours}])",
        "memory": f"max by (instance) (max_over_time(mlcost_gpu_memory_used_bytes[{w}]))",
        "busy": f"max_over_time(max by (instance) (avg_over_time(mlcost_gpu_utilization_ratio[1h]))[{hours}])",
        "hourly": f"avg_over_time(sum by (instance) (mlcost_hourly_usd)[{hours}])",
    }
    pods: dict[str, PodShape] = defaultdict(PodShape)
    for labels, _ in ev.query(queries["models"]):
        pods[labels.get("instance", "")].models.add((labels.get("model", ""), labels.get("version", "")))
    for labels, _ in ev.query(queries["pricing"]):
        pod = pods[labels.get("instance", "")]
        pod.gpu_type, pod.provider = labels.get("gpu_type", ""), labels.get("provider", "")
        pod.purchase_option = labels.get("purchase_option", "")
    for name, attr in (("gpus", "gpus"), ("memory", "peak_memory_bytes"), ("busy", "peak_utilization"),
                       ("hourly", "usd_per_hour")):
        for labels, value in ev.query(queries[name]):
            setattr(pods[labels.get("instance", "")], attr, value)
    ev.pod_queries = list(queries.values())
    return dict(pods)


def _fits(shape: PodShape, candidate: str, memory_gib: float, compute_fraction: float) -> bool:
    base = TENSOR_TFLOPS.get(shape.gpu_type)
    if base is None or candidate not in TENSOR_TFLOPS:
        return False
    enough_memory = shape.peak_memory_bytes <= memory_gib * GIB * MEMORY_HEADROOM
    enough_compute = shape.peak_utilization * base <= TENSOR_TFLOPS[candidate] * compute_fraction * COMPUTE_HEADROOM
    return enough_memory and enough_compute


def smaller_gpu(ev: Evidence, check: Check, catalog: Catalog) -> list[Recommendation]:
    pods = _pods(ev, check)
    if pods is None or not ev.require(check, "mlcost_gpu_memory_used_bytes", "mlcost_gpu_utilization_ratio"):
        return []
    out = []
    groups: dict[tuple, list[PodShape]] = defaultdict(list)
    for shape in pods.values():
        if shape.gpu_type in catalog.gpu_types and shape.gpus > 0 and shape.models and shape.provider:
            model = min(m for m, _ in shape.models)
            groups[(model, shape.gpu_type, shape.provider, shape.purchase_option or "on_demand")].append(shape)
    for (model, gpu_type, provider, option), shapes in groups.items():
        worst = PodShape(gpu_type=gpu_type, gpus=shapes[0].gpus,
                         peak_memory_bytes=max(s.peak_memory_bytes for s in shapes),
                         peak_utilization=max(s.peak_utilization for s in shapes))
        current = gpu_quote(catalog, provider, option, gpu_type, worst.gpus)
        best = _cheapest_fit(catalog, worst, provider, option, current)
        if best is None:
            continue
        name, quote = best
        measured = sum(s.usd_per_hour for s in shapes)
        saving = measured * (1 - quote.hourly_usd / current.hourly_usd) * HOURS_PER_MONTH
        out.append(Recommendation(
            "smaller-gpu", model, f"{gpu_type} -> {name}", saving, "medium",
            {"pods": len(shapes), "gpus_per_pod": worst.gpus, "peak_gpu_memory_gib": worst.peak_memory_bytes / GIB,
             "peak_gpu_utilization": worst.peak_utilization, "measured_usd_per_hour": measured,
             "current_usd_per_hour": current.hourly_usd, "candidate_usd_per_hour": quote.hourly_usd,
             "provider": provider, "purchase_option": option, "price_as_of": quote.as_of,
             "note": "the measured $/h times the catalog's price ratio; throughput by dense FP16 tensor TFLOPS"},
            list(ev.pod_queries), {(provider, gpu_type): worst.gpus * len(shapes)}))
    return out


def _cheapest_fit(catalog: Catalog, worst: PodShape, provider: str, option: str, current):
    """(name, quote) of the cheapest GPU type or MIG profile that holds the observed peaks, if below `current`."""
    if current is None:
        return None
    options = []
    for candidate, gpu in catalog.gpu_types.items():
        if candidate != worst.gpu_type and _fits(worst, candidate, gpu.memory_gib, 1.0):
            options.append((candidate, gpu_quote(catalog, provider, option, candidate, worst.gpus)))
    parent = catalog.gpu_types[worst.gpu_type]
    for profile in MIG_PROFILES.get(worst.gpu_type, ()):
        slices, memory = mig_shape(profile)
        fraction = slices / parent.mig_slices
        if _fits(worst, worst.gpu_type, memory, fraction):
            options.append((f"{worst.gpu_type} MIG {profile}",
                            gpu_quote(catalog, provider, option, worst.gpu_type, worst.gpus * fraction)))
    options = [(name, q) for name, q in options if q is not None and q.hourly_usd < current.hourly_usd]
    return min(options, key=lambda o: o[1].hourly_usd) if options else None


def commitments(ev: Evidence, check: Check, catalog: Catalog, released: dict) -> list[Recommendation]:
    """Commit to the GPUs that stay on demand in every hour, less those other advice takes off."""
    pods = _pods(ev, check)
    if pods is None:
        return []
    gpus = GPUS_ALLOCATED if ev.present("mlcost_allocated_gpus") else GPUS_SEEN
    steady_expr = ("sum by (provider, gpu_type) (max by (instance, provider, gpu_type) "
                   f"(mlcost_pricing_info{{purchase_option=\"on_demand\"}}) * on (instance) group_left () {gpus})")
    q_min = f"min_over_time({steady_expr}[{ev.hours_range}])"
    q_hours = f"count_over_time({steady_expr}[{ev.hours_range}])"
    # min_over_time skips hours without the series: a GPU type counts as steady only if present in every hour
    hours = _by_key(ev.query(q_hours), "provider", "gpu_type")
    window_hours = ev.window.seconds / 3600.0
    confidence = "high" if ev.window.seconds >= 28 * 86400 else "medium"
    out = []
    partial = sorted(f"{p} {g} ({n:.0f} of {window_hours:.0f} h)" for (p, g), n in hours.items()
                     if n < 0.99 * window_hours)
    if partial:
        check.notes.append(f"not on demand in every hour, so not steady: {', '.join(partial)}")
    for labels, steady in ev.query(q_min):
        key = (labels.get("provider", ""), labels.get("gpu_type", ""))
        if hours.get(key, 0.0) < 0.99 * window_hours or key[0] not in catalog.providers:
            continue
        committable = math.floor(steady - released.get(key, 0.0) + 1e-9)
        per_gpu = _measured_per_gpu(pods.values(), key)
        if committable < 1 or per_gpu is None:
            continue
        ratios = catalog.providers[key[0]].purchase_options
        for option, level in (("commit_1y", confidence), ("commit_3y", "medium" if confidence == "high" else "low")):
            saving = per_gpu * committable * (1 - ratios[option] / ratios["on_demand"]) * HOURS_PER_MONTH
            out.append(Recommendation(
                "commitment", f"{key[0]} {key[1]}", f"{option} for {committable} GPUs", saving, level,
                {"steady_gpus": steady, "released_by_other_advice": released.get(key, 0.0),
                 "committed_gpus": committable, "measured_usd_per_gpu_hour": per_gpu,
                 "price_ratio": ratios[option] / ratios["on_demand"],
                 "note": "GPUs that scale-to-zero, idle-replica or smaller-GPU advice takes off are not committed"},
                [q_min, q_hours, *ev.pod_queries]))
    return out


def _measured_per_gpu(pods, key: tuple[str, str]) -> float | None:
    """Measured $/h per GPU of the on-demand pods of one provider and GPU type."""
    chosen = [p for p in pods if (p.provider, p.gpu_type) == key and p.purchase_option == "on_demand" and p.gpus]
    gpus = sum(p.gpus for p in chosen)
    return sum(p.usd_per_hour for p in chosen) / gpus if gpus else None


def released_gpus(found: list[Recommendation], pods: dict[str, PodShape] | None) -> dict[tuple[str, str], float]:
    """GPUs per (provider, GPU type) that scale-to-zero, idle-replica and smaller-GPU advice takes off demand."""
    per_model: dict[tuple[str, str, str], float] = defaultdict(float)  # model, provider, GPU type
    shapes: dict[str, list[PodShape]] = defaultdict(list)
    for pod in (pods or {}).values():
        for model, _ in pod.models:
            shapes[model].append(pod)
    for advice in found:
        if advice.kind == "smaller-gpu":  # its pods move to another GPU type
            for (provider, gpu_type), gpus in advice.releases.items():
                key = (advice.subject, provider, gpu_type)
                per_model[key] = max(per_model[key], gpus)
            continue
        model, replicas = advice.releases["model"], advice.releases["replicas"]
        for (provider, gpu_type), pods_of in _by_type(shapes[model]).items():
            taken = min(replicas, len(pods_of)) * max(p.gpus for p in pods_of)
            per_model[(model, provider, gpu_type)] = max(per_model[(model, provider, gpu_type)], taken)
    out: dict[tuple[str, str], float] = defaultdict(float)
    for (_, provider, gpu_type), value in per_model.items():
        out[(provider, gpu_type)] += value
    return dict(out)


def _by_type(pods: list[PodShape]) -> dict[tuple[str, str], list[PodShape]]:
    out: dict[tuple[str, str], list[PodShape]] = defaultdict(list)
    for pod in pods:
        if pod.purchase_option in ("on_demand", ""):
            out[(pod.provider, pod.gpu_type)].append(pod)
    return out


def spot_training(ev: Evidence, check: Check, catalog: Catalog, history: History) -> list[Recommendation]:
    """Training on on-demand pods: the window's cost (recorded series where present) at the spot discount."""
    pods = _pods(ev, check)
    if pods is None:
        return []
    providers = {}
    for shape in pods.values():
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
            "spot", _subject(key), "train on spot, with checkpoints", spent * (1 - spot) * ev.month,
            "medium", {"on_demand_cost_usd": spent, "spot_ratio": spot, "provider": providers[key],
                       "hours_ran": ev.hours_ran().get(key),
                       "note": "per month if the window's training recurs"},
            [history.query_for("usd"), ev.pod_queries[1]]))
    return out


@dataclass
class Serving:
    """Each model version's inference cost, requests and GPU cost over the window."""

    cost: dict
    requests: dict
    gpu_cost: dict
    idle: dict
    first_half: dict

    @property
    def per_1k(self) -> dict:
        return {k: self.cost[k] / self.requests[k] * 1000 for k in self.cost if self.requests.get(k)}


def _serving(ev: Evidence, history: History) -> Serving:
    def compute() -> Serving:
        cost, gpu_cost, idle = defaultdict(float), defaultdict(float), defaultdict(float)
        for s, v in history.totals("usd"):
            key = (s.get("model", ""), s.get("version", ""))
            if s.get("workload") == "inference":
                cost[key] += v
            if s.get("resource") == "gpu":
                gpu_cost[key] += v
        for s, v in history.totals("idle"):
            if s.get("resource") == "gpu":
                idle[(s.get("model", ""), s.get("version", ""))] += v
        half = Window(ev.window.start, ev.window.start + ev.window.seconds / 2)
        return Serving(dict(cost), _by_key(history.totals("requests"), "model", "version"), dict(gpu_cost),
                       dict(idle), _by_key(history.totals("requests", half), "model", "version"))
    return ev._once("serving", compute)


def above_target(ev: Evidence, check: Check, history: History) -> list[Recommendation]:
    if not ev.require(check, TARGET, "mlcost_requests_total"):
        return []
    q_target = f"max by (model, version) (max_over_time({TARGET}[{ev.range}]))"
    targets = _by_key(ev.query(q_target), "model", "version")
    serving = _serving(ev, history)
    per_1k = serving.per_1k
    _note_untargeted(check, ev, per_1k, targets)
    out = []
    for key, target in targets.items():
        if key not in ev.current() or key not in per_1k or per_1k[key] <= target:
            continue
        causes = _causes(key, per_1k, serving.requests, serving.first_half, serving.gpu_cost, serving.idle)
        saving = ev.monthly(key, (per_1k[key] - target) * serving.requests[key] / 1000)
        out.append(Recommendation(
            "above-target", _subject(key), "; ".join(causes) or "cause unclear",
            saving, "medium" if causes else "low",
            {"cost_per_1k_usd": per_1k[key], "target_usd": target, "requests": serving.requests[key],
             "hours_ran": ev.hours_ran().get(key), "causes": causes},
            [q_target, history.query_for("usd"), history.query_for("requests")]))
    return out


def version_regression(ev: Evidence, check: Check, history: History) -> list[Recommendation]:
    """A running version that costs more per 1k than the model's previous version in the window (any target)."""
    if not ev.require(check, "mlcost_requests_total"):
        return []
    serving = _serving(ev, history)
    per_1k = serving.per_1k
    q_last = f"max by (model, version) (timestamp(last_over_time(mlcost_usd_total[{ev.range}])))"
    last_seen = _by_key(ev.query(q_last), "model", "version")
    out, compared = [], 0
    for key in sorted(ev.current()):
        earlier = [k for k in per_1k if k[0] == key[0] and k != key and k not in ev.current()]
        if key not in per_1k or not earlier:
            continue
        compared += 1
        previous = max(earlier, key=lambda k: last_seen.get(k, 0.0))
        if per_1k[key] <= REGRESSION * per_1k[previous]:
            continue
        saving = ev.monthly(key, (per_1k[key] - per_1k[previous]) * serving.requests[key] / 1000)
        out.append(Recommendation(
            "version-regression", _subject(key),
            f"{key[1]} costs {per_1k[key] / per_1k[previous]:.1f}x {previous[1]} per 1k: roll back or fix",
            saving, "medium",
            {"cost_per_1k_usd": per_1k[key], "previous_version": previous[1],
             "previous_cost_per_1k_usd": per_1k[previous], "requests": serving.requests[key],
             "hours_ran": ev.hours_ran().get(key)},
            [history.query_for("usd"), history.query_for("requests"), q_last]))
    if not compared:
        check.notes.append("no running model replaced a version in the window")
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


def run_checks(ev: Evidence, catalog: Catalog, history: History) -> tuple[list[Recommendation], list[Check]]:
    """Every check in turn; the commitment check runs last, on what the other advice leaves on demand."""
    checks = {kind: Check(kind) for kind in ("idle-replicas", "scale-to-zero", "smaller-gpu", "spot",
                                             "version-regression", "above-target", "commitment")}
    found = {
        "idle-replicas": idle_replicas(ev, checks["idle-replicas"]),
        "scale-to-zero": scale_to_zero(ev, checks["scale-to-zero"]),
        "smaller-gpu": smaller_gpu(ev, checks["smaller-gpu"], catalog),
        "spot": spot_training(ev, checks["spot"], catalog, history),
        "version-regression": version_regression(ev, checks["version-regression"], history),
        "above-target": above_target(ev, checks["above-target"], history),
    }
    releasing = [*found["idle-replicas"], *found["scale-to-zero"], *found["smaller-gpu"]]
    released = released_gpus(releasing, ev._cache.get("pods"))
    found["commitment"] = commitments(ev, checks["commitment"], catalog, released)
    for kind, advice in found.items():
        checks[kind].found = len(advice)
    return [r for advice in found.values() for r in advice], list(checks.values())


def run(context) -> tuple[Document, int, str | None]:
    args = context.args
    window = window_from(context)
    prometheus = context.prometheus()
    history = History(prometheus, window, args.data)
    if not history.totals("usd"):
        raise UsageError(f"no cost recorded between {iso(window.start)} and {iso(window.end)}")
    ev = Evidence(prometheus, window)
    found, checks = run_checks(ev, context.config.catalog, history)
    prometheus.done()
    shown = sorted((r for r in found if r.usd_per_month >= args.min_usd), key=lambda r: -r.usd_per_month)
    rows = [{"rank": i + 1, "kind": r.kind, "subject": r.subject, "action": r.action,
             "usd_per_month": r.usd_per_month, "confidence": r.confidence, "evidence": r.evidence,
             "promql": r.promql} for i, r in enumerate(shown)]
    not_run = [c for c in checks if c.status == NOT_RUN]
    document = Document("recommend", {"window": {"start": iso(window.start), "end": iso(window.end)},
                                      "data_source": "recorded" if history.recorded else "raw",
                                      "total_usd_per_month": sum(r.usd_per_month for r in shown),
                                      "complete": not not_run, "queries": prometheus.queries})
    document.sections.append(Section("recommendations", f"Savings from {iso(window.start)} to {iso(window.end)}",
                                     COLUMNS, rows))
    document.sections.append(Section("checks", "Checks", CHECK_COLUMNS, [c.row() for c in checks]))
    document.notes.append("evidence and PromQL of each: --format json; savings overlap (e.g. idle replicas and "
                          "scale-to-zero), so they do not add up; a commitment counts only the GPUs the other "
                          "advice leaves on demand")
    if not_run:
        what = ", ".join(f"{c.kind} (no {', '.join(c.missing)})" for c in not_run)
        return document, EXIT_INCOMPLETE, f"{len(not_run)} of {len(checks)} checks could not run: {what}"
    return document, EXIT_OK, None
