"""`mlcost estimate`: what a job will cost before it runs, and the same job everywhere else, cheapest first.

The job comes from flags or a small YAML file (same keys, with underscores). With --like, the range comes
from a model's measured history in Prometheus instead of from assumed throughput.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass
from pathlib import Path

from ml_cost_exporter.config.catalog import CLOUD_PROVIDERS, PURCHASE_OPTIONS, Catalog
from ml_cost_exporter.config.errors import ConfigError
from ml_cost_exporter.config.located import Section, load_located
from ml_cost_exporter.config.units import MIG_PROFILE
from ml_cost_exporter.decide.bill import add_flags, bill_figures
from ml_cost_exporter.decide.errors import EXIT_FINDING, EXIT_OK, UsageError
from ml_cost_exporter.decide.instances import gpu_counts, holding, needs_whole_instance
from ml_cost_exporter.decide.like import like_history
from ml_cost_exporter.decide.output import Column, Document, usd
from ml_cost_exporter.decide.output import Section as OutSection
from ml_cost_exporter.decide.prices import (
    ONPREM,
    OWNED,
    Quote,
    all_gpu_quotes,
    gpu_quote,
    instance_quote,
    locate_instance,
)
from ml_cost_exporter.decide.pricing_cmd import check_gpu_type

EXAMPLE = """examples:
  mlcost estimate --gpu h100 --gpus 8 --epochs 3 --samples-per-epoch 1.2e6 --throughput 450
  mlcost estimate --gpu l4 --request-rate 40 --throughput 25 --target-utilization 0.7 --hours 730
  mlcost estimate --file job.yaml --max-usd 5000          # exits 1 when over
  mlcost estimate --gpu a100-80gb --hours 24 --like chat:v2 --prometheus.url http://prometheus:9090"""

HOURS_PER_MONTH = 730.0
FIGURE_COLUMNS = (Column("figure", "FIGURE"), Column("usd", "USD", "usd"), Column("basis", "BASIS", wrap=True))
ALT_COLUMNS = (Column("provider", "PROVIDER"), Column("purchase_option", "OPTION"), Column("instance", "INSTANCE"),
               Column("hourly_usd", "$/HOUR", "usd"), Column("total_usd", "TOTAL", "usd"),
               Column("vs_this", "VS THIS", "num"), Column("as_of", "AS OF"))
_NUMBER_KEYS = ("gpus", "hours", "epochs", "samples_per_epoch", "throughput", "request_rate",
                "target_utilization", "tokens_per_request", "max_usd")
_STRING_KEYS = ("gpu", "instance", "mig_profile", "provider", "purchase_option", "like")


@dataclass(frozen=True)
class Job:
    gpu: str | None
    gpus: float
    instance: str | None
    mig_profile: str | None
    provider: str
    purchase_option: str
    hours: float | None
    epochs: float | None
    samples_per_epoch: float | None
    throughput: float | None  # samples/s (training) or requests/s per GPU at full utilization (serving)
    request_rate: float | None
    target_utilization: float
    tokens_per_request: float | None


def add_parser(subparsers: argparse._SubParsersAction, parents: list) -> None:
    parser = subparsers.add_parser("estimate", parents=parents, help="Estimate a job's cost before it runs.",
                                   description="Estimate what a training run or a serving deployment will cost.",
                                   epilog=EXAMPLE, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--file", help="Job YAML with the same keys as the flags (gpu, gpus, hours, ...).")
    parser.add_argument("--gpu", help="GPU type (catalog id: l4, a100-80gb, h100, ...).")
    parser.add_argument("--gpus", type=float, help="GPUs (default 1; with --mig-profile: slices).")
    parser.add_argument("--instance", help="Instance type instead of --gpu (e.g. p4d.24xlarge).")
    parser.add_argument("--mig-profile", help="MIG profile of --gpu, e.g. 1g.10gb.")
    parser.add_argument("--provider", choices=(*CLOUD_PROVIDERS, ONPREM), help="Provider (default aws).")
    parser.add_argument("--purchase-option", choices=PURCHASE_OPTIONS, help="Purchase option (default on_demand).")
    parser.add_argument("--hours", type=float, help="Run time in hours (serving: default 730, a month).")
    parser.add_argument("--epochs", type=float, help="Training: epochs.")
    parser.add_argument("--samples-per-epoch", type=float, help="Training: samples in one epoch.")
    parser.add_argument("--throughput", type=float, help="Samples/s of the whole job (training), or requests/s "
                                                         "one GPU serves at full utilization (serving).")
    parser.add_argument("--request-rate", type=float, help="Serving: expected requests/s.")
    parser.add_argument("--target-utilization", type=float, help="Serving: utilization to size for (default 0.7).")
    parser.add_argument("--tokens-per-request", type=float, help="Serving: tokens per request, for $ per 1M tokens.")
    parser.add_argument("--max-usd", type=float, help="CI gate: exit 1 when the estimate is above this.")
    parser.add_argument("--like", metavar="MODEL[:VERSION]", help="Use this model's measured history in Prometheus.")
    parser.add_argument("--at", help="End of the history --like reads (default now; RFC 3339 or date).")
    parser.add_argument("--history", default="30d", help="How much history --like reads (default 30d).")
    add_flags(parser)
    parser.set_defaults(handler=run)


def _file_values(path: str) -> dict[str, object]:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"--file: cannot read {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise UsageError(f"--file: {path} is not UTF-8 text") from None
    try:
        section = Section(load_located(text, path))
        values: dict[str, object] = {k: section.number(k) for k in _NUMBER_KEYS}
        values.update({k: section.string(k) for k in _STRING_KEYS})
        section.finish()
    except ConfigError as exc:
        raise UsageError(str(exc)) from None
    return {k: v for k, v in values.items() if v is not None}


def _merged(args: argparse.Namespace) -> dict[str, object]:
    """Job settings: the file's, overridden by flags given on the command line."""
    values = _file_values(args.file) if args.file else {}
    for key in (*_NUMBER_KEYS, *_STRING_KEYS):
        flag_value = getattr(args, key, None)
        if flag_value is not None:
            values[key] = flag_value
    return values


def _positive(values: dict, key: str, allow_zero: bool = False) -> float | None:
    value = values.get(key)
    if value is None:
        return None
    if not isinstance(value, int | float) or not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        raise UsageError(f"--{key.replace('_', '-')}: must be a positive number, got {value}")
    return float(value)


def parse_job(values: dict, catalog: Catalog) -> Job:
    """Validate the job's settings; every problem is one UsageError naming the flag."""
    gpu, instance, mig = values.get("gpu"), values.get("instance"), values.get("mig_profile")
    if bool(gpu) == bool(instance):
        raise UsageError("give either --gpu (with --gpus) or --instance")
    provider = str(values.get("provider") or (locate_instance(catalog, instance) if instance else "aws") or "aws")
    if instance and instance not in catalog.providers.get(provider, catalog.providers["aws"]).instances:
        raise UsageError(f'--instance: no instance type "{instance}" in the {provider} catalog')
    if gpu:
        check_gpu_type(catalog, str(gpu), "--gpu")
    if mig and not (gpu and MIG_PROFILE.fullmatch(str(mig))):
        raise UsageError(f'--mig-profile: "{mig}" needs --gpu and looks like 1g.10gb')
    utilization = _positive(values, "target_utilization") or 0.7
    if utilization > 1:
        raise UsageError(f"--target-utilization: must be at most 1, got {utilization}")
    job = Job(gpu=gpu, gpus=_positive(values, "gpus") or 1.0, instance=instance, mig_profile=mig,
              provider=provider, purchase_option=str(values.get("purchase_option") or "on_demand"),
              hours=_positive(values, "hours"), epochs=_positive(values, "epochs"),
              samples_per_epoch=_positive(values, "samples_per_epoch"), throughput=_positive(values, "throughput"),
              request_rate=_positive(values, "request_rate", allow_zero=True), target_utilization=utilization,
              tokens_per_request=_positive(values, "tokens_per_request"))
    if job.hours is None and job.request_rate is None and not (job.epochs and job.samples_per_epoch and job.throughput):
        raise UsageError("say how long: --hours, or --epochs with --samples-per-epoch and --throughput, "
                         "or --request-rate with --throughput")
    if job.request_rate is not None and job.throughput is None:
        raise UsageError("--request-rate needs --throughput (requests/s one GPU serves at full utilization)")
    return job


def _gpu_units(job: Job, catalog: Catalog) -> tuple[float, float]:
    """(GPU units priced, replicas): a MIG slice counts as its fraction; serving sizes replicas to the traffic."""
    per_replica = job.gpus
    if job.mig_profile:
        slices = catalog.gpu_types[job.gpu].mig_slices
        used = int(MIG_PROFILE.fullmatch(job.mig_profile).group(1))
        if slices == 0 or used > slices:
            raise UsageError(f'--mig-profile: "{job.mig_profile}" does not fit a {job.gpu} ({slices} slices)')
        per_replica = job.gpus * used / slices
    replicas = 1.0
    if job.request_rate is not None:
        replicas = max(1.0, math.ceil(job.request_rate / (job.throughput * job.target_utilization) - 1e-9))
    return per_replica * replicas, replicas


def _hours(job: Job) -> tuple[float, str]:
    if job.hours is not None:
        return job.hours, f"{job.hours:g} h given"
    if job.request_rate is not None:
        return HOURS_PER_MONTH, "730 h (a month of serving)"
    hours = job.epochs * job.samples_per_epoch / job.throughput / 3600.0
    return hours, f"{job.epochs:g} epochs x {job.samples_per_epoch:g} samples / {job.throughput:g} samples/s"


def _times(quote: Quote, replicas: float) -> Quote:
    return Quote(quote.provider, quote.purchase_option, quote.instance, quote.hourly_usd * replicas, quote.source,
                 quote.as_of)


def _whole_instance_quote(job: Job, catalog: Catalog, provider: str, option: str, replicas: float) -> Quote | None:
    """A multi-GPU replica on the provider's instance that holds its GPUs, priced whole; None where none does."""
    instance = holding(catalog, provider, job.gpu, job.gpus)
    if instance is None:
        return None
    return _times(instance_quote(catalog, provider, option, instance.name), replicas)


def _quote(job: Job, catalog: Catalog, units: float, replicas: float) -> Quote:
    if job.instance:
        return _times(instance_quote(catalog, job.provider, job.purchase_option, job.instance), replicas)
    if job.provider != ONPREM and needs_whole_instance(job.gpus, job.mig_profile):
        quote = _whole_instance_quote(job, catalog, job.provider, job.purchase_option, replicas)
        if quote is None:
            counts = ", ".join(map(str, gpu_counts(catalog, job.provider, job.gpu))) or "none"
            raise UsageError(f"--gpus: no {job.provider} instance in the catalog holds {job.gpus:g} {job.gpu} GPUs "
                             f"(its {job.gpu} instances have {counts})")
        return quote
    option = OWNED if job.provider == ONPREM else job.purchase_option
    quote = gpu_quote(catalog, job.provider, option, job.gpu, units)
    if quote is None:
        offered = [p for p in CLOUD_PROVIDERS if job.gpu in catalog.providers[p].gpu_offers]
        raise UsageError(f'--provider: {job.provider} offers no "{job.gpu}" in the catalog '
                         f'(offered by: {", ".join(offered)})')
    return quote


def run(context) -> tuple[Document, int, str | None]:
    args = context.args
    catalog = context.config.catalog
    values = _merged(args)
    job = parse_job(values, catalog)
    units, replicas = _gpu_units(job, catalog)
    hours, basis = _hours(job)
    quote = _quote(job, catalog, units, replicas)
    compute = quote.hourly_usd * hours
    extras = bill_figures(args, job.provider, catalog, hours)
    total = compute + sum(row["usd"] for row in extras)
    figures = [{"figure": "total", "usd": total, "basis": basis},
               {"figure": "per hour", "usd": quote.hourly_usd,
                "basis": f"{units:g} GPU units" + (f" in {replicas:g} replicas" if replicas > 1 else "")}]
    figures += [*extras, *_unit_figures(job, total, hours)]
    document = Document("estimate", {"job": {k: v for k, v in job.__dict__.items() if v is not None},
                                     "gpu_units": units, "replicas": replicas, "hours": hours,
                                     "total_usd": total, "source": quote.source, "as_of": quote.as_of})
    document.sections.append(OutSection("figures", f"Estimate on {quote.provider} {quote.purchase_option}"
                                        f" ({quote.instance or 'owned'}, prices as of {quote.as_of})",
                                        FIGURE_COLUMNS, figures))
    alternatives = _alternatives(job, catalog, units, replicas, hours, compute)
    if not job.instance and needs_whole_instance(job.gpus, job.mig_profile):
        document.notes.append(_whole_instance_note(job, catalog, quote))
    document.sections.append(OutSection("alternatives", "The same job elsewhere, cheapest first", ALT_COLUMNS,
                                        alternatives))
    message = None
    if values.get("like"):
        like = like_history(context, str(values["like"]), job, hours, args.history)
        document.meta["measured"] = like.meta
        document.sections.insert(1, like.section)
        document.notes.append(like.note)
        total_for_gate = like.meta["total_usd"]
    else:
        total_for_gate = total
    status = EXIT_OK
    limit = _positive(values, "max_usd", allow_zero=True)
    if limit is not None:
        document.meta["max_usd"] = limit
        document.meta["over_max"] = total_for_gate > limit
        if total_for_gate > limit:
            status = EXIT_FINDING
            message = f"estimate {usd(total_for_gate)} is over --max-usd {usd(limit)}"
    return document, status, message


def _whole_instance_note(job: Job, catalog: Catalog, quote: Quote) -> str:
    """Which instance holds the replica's GPUs, and which providers have none that does."""
    lacking = [p for p in CLOUD_PROVIDERS if holding(catalog, p, job.gpu, job.gpus) is None]
    note = f"{job.gpus:g} {job.gpu} GPUs share one machine: priced as the whole {quote.instance or 'machine'}"
    return note + (f"; no instance holds them on {', '.join(lacking)}" if lacking else "")


def _unit_figures(job: Job, total: float, hours: float) -> list[dict]:
    rows = []
    if job.request_rate is not None:
        requests = job.request_rate * hours * 3600.0
        if requests > 0:
            rows.append({"figure": "per 1k requests", "usd": total / requests * 1000,
                         "basis": f"{job.request_rate:g} requests/s"})
            if job.tokens_per_request:
                rows.append({"figure": "per 1M tokens", "usd": total / (requests * job.tokens_per_request) * 1e6,
                             "basis": f"{job.tokens_per_request:g} tokens/request"})
    elif job.epochs and job.samples_per_epoch:
        rows.append({"figure": "per epoch", "usd": total / job.epochs, "basis": f"{job.epochs:g} epochs"})
        rows.append({"figure": "per 1M samples", "usd": total / (job.epochs * job.samples_per_epoch) * 1e6,
                     "basis": f"{job.samples_per_epoch:g} samples/epoch"})
    return rows


def _alternatives(job: Job, catalog: Catalog, units: float, replicas: float, hours: float, total: float) -> list:
    gpu = job.gpu or catalog.providers[job.provider].instances[job.instance].gpu_type
    if gpu is None:
        quotes = [instance_quote(catalog, job.provider, o, job.instance) for o in PURCHASE_OPTIONS]
        quotes = [Quote(q.provider, q.purchase_option, q.instance, q.hourly_usd * replicas, q.source, q.as_of)
                  for q in quotes]
    elif not job.instance and needs_whole_instance(job.gpus, job.mig_profile):
        quotes = [q for q in (_whole_instance_quote(job, catalog, p, o, replicas)
                              for p in CLOUD_PROVIDERS for o in PURCHASE_OPTIONS) if q is not None]
        quotes.append(gpu_quote(catalog, ONPREM, OWNED, gpu, units))
    else:
        if job.instance:
            units = catalog.providers[job.provider].instances[job.instance].gpus * replicas
        quotes = all_gpu_quotes(catalog, gpu, units)
    quotes = [q for q in quotes if q is not None]
    rows = [{"provider": q.provider, "purchase_option": q.purchase_option, "instance": q.instance or "(owned)",
             "hourly_usd": q.hourly_usd, "total_usd": q.hourly_usd * hours,
             "vs_this": q.hourly_usd * hours / total if total else None, "as_of": q.as_of, "source": q.source}
            for q in quotes]
    return sorted(rows, key=lambda r: r["total_usd"])
