"""`mlcost compare`: a self-hosted model's measured cost per 1M tokens beside hosted APIs' list prices, and the
daily token volume at which self-hosting becomes the cheaper of the two.

Self-hosting is a cost per hour whatever the volume (up to what the replicas can serve); an API is a price
per token. So below `self $/day ÷ API $/token` tokens a day the API costs less, above it self-hosting does,
as long as that volume fits in what the GPUs can serve at full utilization (the measured volume ÷ the
measured utilization).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

from ml_cost_exporter.config.bill import HostedModel
from ml_cost_exporter.decide.errors import EXIT_OK, UsageError
from ml_cost_exporter.decide.history import History, Window, window_from
from ml_cost_exporter.decide.output import Column, Document, Section
from ml_cost_exporter.decide.timeparse import iso, promql_duration

EXAMPLE = """examples:
  mlcost compare --model chat --since 7d
  mlcost compare --model chat --hosted gpt-4o-mini,claude-haiku-4-5 --format json"""
TOKENS_PER_PRICE_UNIT = 1e6
SECONDS_PER_DAY = 86400.0


def add_parser(subparsers: argparse._SubParsersAction, parents: list) -> None:
    parser = subparsers.add_parser(
        "compare", parents=parents, help="Compare a model's measured cost per token with hosted APIs.",
        description="A self-hosted model's measured cost per 1M tokens over a window beside hosted APIs' list "
                    "prices (the catalog's hosted_models) for the same mix of prompt, cached and generated "
                    "tokens, and the daily volume above which self-hosting is cheaper.",
        epilog=EXAMPLE, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="The self-hosted model (its model label).")
    parser.add_argument("--hosted", help="Comma-separated hosted models of the catalog (default: all of them).")
    parser.add_argument("--since", default="7d", help="Window length ending at --until (default 7d).")
    parser.add_argument("--until", help="End of the window (default now; RFC 3339, date or Unix seconds).")
    parser.set_defaults(handler=run)


@dataclass(frozen=True)
class Measured:
    """What a model's pods cost and served over a window."""

    usd: float
    prompt_tokens: float  # computed and cached alike
    generation_tokens: float
    cached_prompt_tokens: float
    utilization: float | None  # mean GPU utilization of the pods serving the model; None: no GPU series
    days: float

    @property
    def tokens(self) -> float:
        return self.prompt_tokens + self.generation_tokens

    @property
    def usd_per_day(self) -> float:
        return self.usd / self.days

    @property
    def tokens_per_day(self) -> float:
        return self.tokens / self.days

    @property
    def usd_per_1m(self) -> float:
        return self.usd / self.tokens * TOKENS_PER_PRICE_UNIT

    @property
    def capacity_tokens_per_day(self) -> float | None:
        """What the same GPUs would serve at full utilization, if throughput scales with utilization."""
        if not self.utilization or self.utilization <= 0:
            return None
        return self.tokens_per_day / min(self.utilization, 1.0)


def api_usd(model: HostedModel, measured: Measured) -> float:
    """What the API would have charged for the window's tokens: prompt tokens at the input price (cached ones
    at the cached price where the API has one), generated tokens at the output price."""
    cached = min(measured.cached_prompt_tokens, measured.prompt_tokens)
    cached_price = model.cached_input_usd_per_1m if model.cached_input_usd_per_1m is not None \
        else model.input_usd_per_1m
    return ((measured.prompt_tokens - cached) * model.input_usd_per_1m + cached * cached_price
            + measured.generation_tokens * model.output_usd_per_1m) / TOKENS_PER_PRICE_UNIT


def comparison(model: HostedModel, measured: Measured) -> dict:
    """One hosted model against the measured self-hosting: prices per 1M, per day, and the crossover volume."""
    api_per_1m = api_usd(model, measured) / measured.tokens * TOKENS_PER_PRICE_UNIT
    crossover = measured.usd_per_day / api_per_1m * TOKENS_PER_PRICE_UNIT
    capacity = measured.capacity_tokens_per_day
    return {"hosted": model.name, "provider": model.provider, "api_usd_per_1m": api_per_1m,
            "api_usd_per_day": api_per_1m * measured.tokens_per_day / TOKENS_PER_PRICE_UNIT,
            "crossover_tokens_per_day": crossover,
            "within_capacity": None if capacity is None else crossover <= capacity,
            "cheaper_now": "self-hosted" if measured.usd_per_1m < api_per_1m else "api",
            "price_source": model.source, "price_as_of": model.as_of}


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')


def measure(history: History, model: str) -> Measured:
    """The model's cost, tokens by kind, cached prompt tokens and its pods' GPU utilization over the window."""
    window = history.window
    usd = sum(v for labels, v in history.totals("usd") if labels.get("model") == model)
    tokens = {labels.get("kind"): v for labels, v in history.totals("tokens") if labels.get("model") == model}
    if not tokens.get("prompt", 0.0) + tokens.get("generation", 0.0):
        raise UsageError(f'no tokens recorded for model "{model}" between {iso(window.start)} and '
                         f"{iso(window.end)} (is --model its model label? does its server report tokens?)")
    duration = promql_duration(window.seconds)
    selector = f'model="{_label(model)}"'
    cached_query = f"sum(increase(mlcost_prompt_cached_tokens_total{{{selector}}}[{duration}]))"
    utilization_query = (f"avg(avg_over_time(mlcost_gpu_utilization_ratio[{duration}]) * on (instance) group_left () "
                         f"max by (instance) (max_over_time(mlcost_model_info{{{selector}}}[{duration}])))")
    history.promql.update(cached=cached_query, utilization=utilization_query)
    cached = sum(v for _, v in history.prometheus.instant(cached_query, window.end))
    utilization = [v for _, v in history.prometheus.instant(utilization_query, window.end)]
    return Measured(usd, tokens.get("prompt", 0.0), tokens.get("generation", 0.0), cached,
                    utilization[0] if utilization else None, window.seconds / SECONDS_PER_DAY)


def hosted_models(catalog, names: str | None) -> list[HostedModel]:
    known = catalog.hosted_models
    if not names:
        return list(known.values())
    chosen = []
    for name in (n.strip() for n in names.split(",") if n.strip()):
        if name not in known:
            raise UsageError(f'--hosted: no price for "{name}" in the catalog (known: {", ".join(sorted(known))})')
        chosen.append(known[name])
    return chosen


def run(context) -> tuple[Document, int, str | None]:
    args = context.args
    models = hosted_models(context.config.catalog, args.hosted)
    window = window_from(context)
    prometheus = context.prometheus()
    history = History(prometheus, window)
    measured = measure(history, args.model)
    prometheus.done()
    rows = [comparison(m, measured) for m in models]
    return build_document(args.model, window, measured, rows, history), EXIT_OK, None


def _tokens(value: float) -> str:
    return f"{value / 1e6:,.1f}M"


def build_document(model: str, window: Window, measured: Measured, rows: list[dict], history: History) -> Document:
    capacity = measured.capacity_tokens_per_day
    meta = {"model": model, "window": {"start": iso(window.start), "end": iso(window.end), "seconds": window.seconds},
            "self_hosted": {"usd": measured.usd, "usd_per_day": measured.usd_per_day,
                            "usd_per_1m": measured.usd_per_1m, "tokens_per_day": measured.tokens_per_day,
                            "prompt_tokens": measured.prompt_tokens, "generation_tokens": measured.generation_tokens,
                            "cached_prompt_tokens": measured.cached_prompt_tokens,
                            "gpu_utilization": measured.utilization, "capacity_tokens_per_day": capacity},
            "promql": history.promql}
    columns = [Column("hosted", "HOSTED"), Column("api_usd_per_1m", "API $/1M", "usd"),
               Column("api_usd_per_day", "API $/DAY", "usd"), Column("crossover_label", "SELF-HOST ABOVE/DAY"),
               Column("cheaper_now", "CHEAPER NOW")]
    for row in rows:
        label = _tokens(row["crossover_tokens_per_day"])
        row["crossover_label"] = label if row["within_capacity"] is not False else f"{label} (never)"
    title = (f"{model} self-hosted: ${measured.usd_per_1m:.4f} per 1M tokens, ${measured.usd_per_day:,.2f}/day, "
             f"{_tokens(measured.tokens_per_day)} tokens/day")
    notes = [f"Measured {iso(window.start)} to {iso(window.end)}. SELF-HOST ABOVE/DAY: below this many tokens "
             "a day the API is cheaper, above it self-hosting, at the measured cost per day and token mix."]
    if capacity is not None:
        notes.append(f"GPUs {measured.utilization:.0%} busy: at full utilization the same pods serve about "
                     f"{_tokens(capacity)} tokens/day (${measured.usd_per_day / capacity * 1e6:.4f} per 1M); "
                     "(never): the crossover is beyond that, so more replicas cost more than the API at any "
                     "volume.")
    return Document("compare", meta, [Section("hosted", title, columns, rows)], notes)
