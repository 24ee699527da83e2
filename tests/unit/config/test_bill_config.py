"""Volumes, egress and hosted-API prices: parsed strictly, priced in one place, unknowns reported unpriced."""

import logging
import textwrap

import pytest

from ml_cost_exporter.config.catalog import embedded_catalog, parse_catalog
from ml_cost_exporter.config.errors import ConfigError
from ml_cost_exporter.config.schema import parse_config
from ml_cost_exporter.cost.allocation import HostLimits, resolve_allocation
from ml_cost_exporter.cost.pricing import HOURS_PER_MONTH, price_allocation
from tests.conftest import REPO


def rates(text: str):
    config = parse_config(textwrap.dedent(text), "bill.yaml")
    return price_allocation(config, resolve_allocation(config, (), HostLimits(2, 8))).bill


def test_every_catalog_price_of_the_bill_names_its_source_and_month():
    catalog = embedded_catalog()
    for provider in catalog.providers.values():
        assert provider.egress is not None and provider.egress.source and provider.egress.as_of
        for storage_class in provider.storage_classes.values():
            assert storage_class.source.startswith("https://") and storage_class.as_of
    assert {"gpt-4o-mini", "claude-haiku-4-5", "gemini-2.5-flash"} <= set(catalog.hosted_models)
    for model in catalog.hosted_models.values():
        assert model.source.startswith("https://") and model.as_of


def test_a_volume_is_priced_per_gib_hour_by_its_class():
    bill = rates("""
        pricing: {provider: gcp}
        storage: {volumes: [{name: data, class: pd-ssd, size_gib: 200}]}
    """)
    assert bill.volume_usd_per_gib_hour == {"data": pytest.approx(0.17 / HOURS_PER_MONTH)}
    assert bill.storage_usd_per_hour({"data": 200}) * HOURS_PER_MONTH == pytest.approx(34.0)  # GCP's own example


def test_an_unknown_storage_class_is_one_warning_and_unpriced_and_the_rest_stays_priced(caplog):
    with caplog.at_level(logging.WARNING):
        bill = rates("""
            pricing: {provider: aws}
            storage: {volumes: [{name: a, class: gp4, size_gib: 10}, {name: b, class: gp3, size_gib: 10}]}
        """)
    assert bill.unpriced == (("volume:a", "unknown_class"),)
    assert set(bill.volume_usd_per_gib_hour) == {"b"}
    assert 'volume "a": aws has no storage class "gp4" in the catalog (did you mean "gp3"?)' in caplog.text


def test_internet_egress_takes_the_tier_of_the_monthly_volume():
    assert rates("network: {destination: internet}").egress_usd_per_gib == 0.09
    assert rates("network: {monthly_internet_gib: 60000}").egress_usd_per_gib == 0.07
    assert rates("network: {monthly_internet_gib: 200000}").egress_usd_per_gib == 0.05
    assert rates("network: {destination: cross_zone}").egress_usd_per_gib == 0.01
    assert rates("{pricing: {provider: azure}, network: {destination: cross_zone}}").egress_usd_per_gib == 0.0
    assert rates("{pricing: {provider: onprem}, network: {usd_per_gib: 0.02}}").egress_usd_per_gib == 0.02


def test_onprem_egress_without_a_price_is_unpriced_not_zero():
    bill = rates("{pricing: {provider: onprem}, network: {destination: internet}}")
    assert bill.egress_usd_per_gib is None and bill.unpriced == (("network", "no_price"),)


@pytest.mark.parametrize(("text", "message"), [
    ("storage: {volumes: [{name: a, class: gp3}]}", "give a volume either path (its size is read) or size_gib"),
    ("storage: {volumes: [{name: a, class: gp3, path: /x, size_gib: 3}]}", "exactly one"),
    ("storage: {volumes: [{name: a, class: gp3, size_gib: 1}, {name: a, class: gp3, size_gib: 2}]}",
     'volume "a" is listed twice'),
    ("network: {destination: moon}", "moon"),
    ("network: {destinaton: internet}", "destinaton"),
])
def test_bad_bill_config_is_one_error_naming_its_place(text, message):
    with pytest.raises(ConfigError, match=r"bill\.yaml") as error:
        parse_config(text, "bill.yaml")
    assert message in str(error.value)


def test_a_catalog_tier_list_out_of_order_is_refused_with_its_line():
    text = (REPO / "exporter" / "ml_cost_exporter" / "config" / "catalog.yaml").read_text()
    broken = text.replace("- {up_to_gib: 51200,  usd_per_gib: 0.085}", "- {up_to_gib: 5120,  usd_per_gib: 0.085}", 1)
    with pytest.raises(ConfigError, match="tiers must be listed by increasing up_to_gib"):
        parse_catalog(broken, "catalog.yaml")


def test_a_hosted_price_without_its_month_is_refused():
    text = (REPO / "exporter" / "ml_cost_exporter" / "config" / "catalog.yaml").read_text()
    broken = text.replace('source: https://openai.com/api/pricing/, as_of: "2026-06"}',
                          "source: https://openai.com/api/pricing/}", 1)
    with pytest.raises(ConfigError, match="as_of"):
        parse_catalog(broken, "catalog.yaml")


def test_a_budget_on_hosted_models_needs_a_gateway_that_reads_spend():
    with pytest.raises(ConfigError, match="selects hosted_models, but no gateway"):
        parse_config("budgets: [{name: api, amount_usd: 5, selector: {hosted_models: ['*']}}]", "bill.yaml")


def test_hosted_spend_on_a_preset_without_a_spend_counter_is_refused():
    text = ("models: [{name: m}]\n"
            "tenants: {gateways: [{preset: envoy-ai-gateway, url: 'http://g/metrics', hosted_spend: true}]}")
    with pytest.raises(ConfigError, match="the envoy-ai-gateway preset has no spend counter"):
        parse_config(text, "bill.yaml")
