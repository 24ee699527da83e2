import pytest

from ml_cost_exporter.config.schema import parse_config
from ml_cost_exporter.cost.pricing import ResolvedAllocation, price_allocation

AWS_VCPU, AWS_GIB = 0.031611, 0.004237
P4DE = 27.447  # p4de.24xlarge: 8 x A100 80GB, 96 vCPUs, 1152 GiB


def rates_for(text: str, gpus: float, vcpus: float, memory_gib: float):
    config = parse_config(text, "p.yaml")
    gpu_type = config.catalog.gpu_types.get(config.allocation.gpu.type) if config.allocation.gpu else None
    if config.allocation.instance_type:
        instance = config.catalog.providers[config.pricing.provider].instances[config.allocation.instance_type]
        gpu_type = config.catalog.gpu_types.get(instance.gpu_type) if instance.gpu_type else None
    return price_allocation(config, ResolvedAllocation(gpu_type, gpus, vcpus, memory_gib))


def test_a_pod_sized_like_its_gpu_share_pays_exactly_that_share_of_the_instance():
    rates = rates_for("allocation: {gpu: {type: a100-80gb, count: 1}}", 1, 12, 144)
    total = rates.gpu_usd_per_hour + rates.cpu_usd_per_hour + rates.memory_usd_per_hour
    assert total == pytest.approx(P4DE / 8, rel=1e-9)
    assert rates.cpu_usd_per_hour == pytest.approx(12 * AWS_VCPU)
    assert rates.gpu_usd_per_hour == pytest.approx(P4DE / 8 - 12 * AWS_VCPU - 144 * AWS_GIB)


def test_vcpus_beyond_the_gpu_host_share_are_charged_on_top():
    rates = rates_for("allocation: {gpu: {type: a100-80gb, count: 1}}", 1, 20, 144)
    total = rates.gpu_usd_per_hour + rates.cpu_usd_per_hour + rates.memory_usd_per_hour
    assert total == pytest.approx(P4DE / 8 + 8 * AWS_VCPU, rel=1e-9)


def test_spot_and_commitments_scale_cloud_prices_by_the_catalog_fraction():
    on_demand = rates_for("allocation: {gpu: {type: h100}}", 1, 4, 16)
    spot = rates_for("pricing: {purchase_option: spot}\nallocation: {gpu: {type: h100}}", 1, 4, 16)
    negotiated = rates_for("pricing: {price_ratio: 0.8}\nallocation: {gpu: {type: h100}}", 1, 4, 16)
    assert spot.gpu_usd_per_hour == pytest.approx(on_demand.gpu_usd_per_hour * 0.35)
    assert negotiated.cpu_usd_per_hour == pytest.approx(on_demand.cpu_usd_per_hour * 0.8)


def test_instance_share_prices_the_share_of_the_instance_and_splits_it_by_resource():
    rates = rates_for("allocation: {instance: {type: p4de.24xlarge, share: 0.25}}", 2, 24, 288)
    total = rates.gpu_usd_per_hour + rates.cpu_usd_per_hour + rates.memory_usd_per_hour
    assert total == pytest.approx(P4DE * 0.25, rel=1e-9)
    assert rates.cpu_usd_per_hour == pytest.approx(24 * AWS_VCPU)


def test_cpu_instance_price_is_split_between_vcpus_and_memory():
    rates = rates_for("allocation: {instance: {type: m6i.xlarge}}", 0, 4, 16)
    assert rates.gpu_usd_per_hour == 0
    assert rates.cpu_usd_per_hour + rates.memory_usd_per_hour == pytest.approx(0.192)
    assert rates.cpu_usd_per_hour / rates.memory_usd_per_hour == pytest.approx((4 * AWS_VCPU) / (16 * AWS_GIB))


def test_mig_slice_costs_its_fraction_of_the_gpu():
    whole = rates_for("allocation: {gpu: {type: a100-80gb}}", 1, 1e-9, 1e-9)
    slice_ = rates_for("allocation: {gpu: {type: a100-80gb, mig_profile: 3g.40gb}}", 3 / 7, 1e-9, 1e-9)
    assert slice_.gpu_usd_per_hour == pytest.approx(whole.gpu_usd_per_hour * 3 / 7, rel=1e-6)


def test_onprem_amortizes_hardware_and_prices_energy_per_kwh_with_pue():
    rates = rates_for("pricing:\n  provider: onprem\n  onprem: {gpu_purchase_usd: 35040, amortization_years: 4,"
                      " power_usd_per_kwh: 0.10, pue: 1.5}\nallocation: {gpu: {type: h100, count: 2}}", 2, 8, 64)
    assert rates.gpu_usd_per_hour == pytest.approx(2 * 35040 / (4 * 8760))
    assert rates.energy_usd_per_kwh == pytest.approx(0.15)
    assert rates.fallback_power_watts == 2 * 700
    assert "energy" in rates.resources()


def test_cloud_has_no_separate_energy_resource():
    assert "energy" not in rates_for("", 0, 2, 8).resources()


SPOT = 0.35  # aws catalog fraction for spot


@pytest.mark.parametrize("option", ["purchase_option: spot", "price_ratio: 0.8"])
def test_an_override_is_what_you_pay_and_is_not_discounted_again(option):
    text = f"pricing:\n  {option}\n  overrides: {{gpu_hourly_usd: 2.0, vcpu_hourly_usd: 0.05}}\n" \
           "allocation: {gpu: {type: h100}}"
    rates = rates_for(text, 2, 4, 16)
    ratio = SPOT if "spot" in option else 0.8
    assert rates.gpu_usd_per_hour == pytest.approx(2 * 2.0)
    assert rates.cpu_usd_per_hour == pytest.approx(4 * 0.05)
    assert rates.memory_usd_per_hour == pytest.approx(16 * AWS_GIB * ratio)  # catalog rate: discounted


def test_overrides_on_the_on_demand_basis_take_the_purchase_fraction_once():
    text = "pricing:\n  purchase_option: spot\n  overrides: {gpu_hourly_usd: 2.0, vcpu_hourly_usd: 0.05," \
           " basis: on_demand}\nallocation: {gpu: {type: h100}}"
    rates = rates_for(text, 2, 4, 16)
    assert rates.gpu_usd_per_hour == pytest.approx(2 * 2.0 * SPOT)
    assert rates.cpu_usd_per_hour == pytest.approx(4 * 0.05 * SPOT)


def test_a_paid_vcpu_override_moves_money_between_resources_but_not_the_discounted_instance_total():
    text = "pricing:\n  purchase_option: spot\n  overrides: {vcpu_hourly_usd: 0.05}\n" \
           "allocation: {instance: {type: p4de.24xlarge, share: 0.25}}"
    rates = rates_for(text, 2, 24, 288)
    total = rates.gpu_usd_per_hour + rates.cpu_usd_per_hour + rates.memory_usd_per_hour
    assert total == pytest.approx(P4DE * 0.25 * SPOT, rel=1e-9)
    assert rates.cpu_usd_per_hour == pytest.approx(24 * 0.05)


def test_a_gpu_share_with_paid_host_overrides_still_totals_the_discounted_share():
    text = "pricing:\n  price_ratio: 0.5\n  overrides: {vcpu_hourly_usd: 0.05, memory_gib_hourly_usd: 0.001}\n" \
           "allocation: {gpu: {type: a100-80gb, count: 1}}"
    rates = rates_for(text, 1, 12, 144)
    total = rates.gpu_usd_per_hour + rates.cpu_usd_per_hour + rates.memory_usd_per_hour
    assert total == pytest.approx(P4DE / 8 * 0.5, rel=1e-9)
    assert rates.cpu_usd_per_hour == pytest.approx(12 * 0.05)


def test_without_overrides_every_resource_takes_the_fraction_exactly_once():
    on_demand = rates_for("allocation: {gpu: {type: a100-80gb}}", 1, 4, 16)
    spot = rates_for("pricing: {purchase_option: spot}\nallocation: {gpu: {type: a100-80gb}}", 1, 4, 16)
    for field in ("gpu_usd_per_hour", "cpu_usd_per_hour", "memory_usd_per_hour"):
        assert getattr(spot, field) == pytest.approx(getattr(on_demand, field) * SPOT)


def test_fixed_costs_are_never_discounted():
    rates = rates_for("pricing: {purchase_option: spot, fixed_hourly_usd: 1.5}", 0, 2, 8)
    assert rates.fixed_usd_per_hour == 1.5
