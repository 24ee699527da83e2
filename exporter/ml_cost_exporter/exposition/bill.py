"""Storage and egress beside their money (which is in mlcost_usd_total): sizes, bytes sent, what went unpriced."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from ml_cost_exporter.state import State


def bill_families(state: State) -> Iterator[Metric]:
    bill = state.books.bill
    classes = {v.name: v.storage_class for v in state.config.volumes}
    sizes = GaugeMetricFamily("mlcost_volume_size_bytes",
                              "Size of each configured volume, read with statfs or given in the config, bytes.",
                              labels=["volume", "class"])
    for name, size in sorted(bill.volume_sizes_bytes.items()):
        if name in classes:
            sizes.add_metric([name, classes[name]], size)
    if classes:
        yield sizes
    if bill.transmit_bytes_total is not None:
        yield CounterMetricFamily("mlcost_network_transmit_bytes",
                                  "Bytes the pod sent on its interfaces (all but lo) since the exporter started.",
                                  value=bill.transmit_bytes_total)
    yield from _hosted_families(state)
    if not classes and state.config.network is None and not bill.unpriced_total:
        return  # nothing of the bill beyond compute is configured: nothing to report
    unpriced = CounterMetricFamily(
        "mlcost_exporter_unpriced",
        "Ticks in which a part of the bill could not be measured or priced (a volume whose size cannot be read, "
        "an unknown storage class, an interface counter reset or gone); that part is missing from "
        "mlcost_usd_total.", labels=["source", "reason"])
    for (source, reason), count in sorted(bill.unpriced_total.items()):
        unpriced.add_metric([source, reason], count)
    yield unpriced


def _hosted_families(state: State) -> Iterator[Metric]:
    """API spend read from the gateways that set hosted_spend; absent where none does."""
    tenants = state.config.tenants
    if tenants is None or not any(g.hosted_spend for g in tenants.gateways):
        return
    hosted = CounterMetricFamily(
        "mlcost_hosted_usd",
        "Spend on hosted APIs through the gateway (LiteLLM's spend counter) since the exporter started, USD, by "
        "the model the gateway routed to; spend on self-hosted models is left out. Not part of "
        "mlcost_usd_total.", labels=["model"])
    for model, usd in sorted(state.books.bill.hosted_usd_total.items()):
        hosted.add_metric([model], usd)
    yield hosted
