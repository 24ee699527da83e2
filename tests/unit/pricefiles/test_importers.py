"""Provider price files into catalog overlays: real-format excerpts, files and URLs, and hostile input."""

from __future__ import annotations

import argparse
import json
import socket
from pathlib import Path

import pytest

from ml_cost_exporter.config.catalog import embedded_catalog
from ml_cost_exporter.config.schema import load_config
from ml_cost_exporter.pricefiles import aws, azure, gcp
from ml_cost_exporter.pricefiles.command import add_update_command, main
from ml_cost_exporter.pricefiles.common import Reader
from tests.conftest import FIXTURES
from tests.support.http import LoopbackServer, Reply, Request

PRICEFILES = FIXTURES / "pricefiles"
AWS_FILE = PRICEFILES / "aws-ec2-us-east-1.json"
AZURE_PAGES = [PRICEFILES / "azure-retail-eastus-page1.json", PRICEFILES / "azure-retail-eastus-page2.json"]
GCP_PAGES = [PRICEFILES / "gcp-compute-skus-page1.json", PRICEFILES / "gcp-compute-skus-page2.json"]
CATALOG = embedded_catalog()


def known(provider: str) -> set[str]:
    return set(CATALOG.providers[provider].instances)


def prices(module, locations, region) -> dict[str, tuple[float, str]]:
    found = module.read_prices(Reader(), [str(p) for p in locations], region, known(module.__name__.split(".")[-1]))
    return {p.instance: (p.hourly_usd, p.as_of) for p in found}


def test_aws_offer_file_gives_linux_shared_on_demand_prices_of_the_region_only():
    assert prices(aws, [AWS_FILE], "us-east-1") == {
        "p5.48xlarge": (55.04, "2025-08"), "p4d.24xlarge": (21.958, "2025-08"),
        "g6.xlarge": (0.8048, "2025-08"), "m6i.xlarge": (0.192, "2025-08")}  # not Windows, dedicated, SQL, us-west-2
    (p5,) = [p for p in aws.read_prices(Reader(), [str(AWS_FILE)], "us-east-1", {"p5.48xlarge"})]
    assert p5.source == "AWS Price List AmazonEC2 offer 20250801000000 (us-east-1)"
    assert prices(aws, [AWS_FILE], "us-west-2") == {"g6.xlarge": (0.8048, "2025-08")}


def test_azure_pages_give_linux_pay_as_you_go_prices_and_the_newest_meter_wins():
    assert prices(azure, AZURE_PAGES, "eastus") == {
        "Standard_NC40ads_H100_v5": (6.98, "2025-07"),  # not Spot, Windows or the 1-year reservation
        "Standard_ND96isr_H200_v5": (88.0, "2025-07"),  # page 2's July meter replaces January's
        "Standard_D4s_v5": (0.192, "2025-07")}  # not Low Priority or DevTest; E4s_v5 is not in the catalog


def test_gcp_skus_compose_a_machine_from_its_core_ram_and_gpu_parts():
    found = prices(gcp, GCP_PAGES, "us-central1")
    assert found["g2-standard-4"] == (pytest.approx(4 * 0.024988 + 16 * 0.002927 + 0.5601), "2025-08")
    assert found["n2-standard-8"][0] == pytest.approx(8 * 0.031611 + 32 * 0.004237)
    assert "a2-highgpu-1g" not in found  # only its core is in the pages: a partial machine is left out
    assert gcp.read_prices(Reader(), [str(p) for p in GCP_PAGES], "europe-west1", known("gcp")) == []


class PriceServer(LoopbackServer):
    """Serves fixture pages on loopback the way the providers' APIs page them."""

    def __init__(self) -> None:
        super().__init__(self.answer, path="")

    def answer(self, request: Request) -> Reply:
        body = self.body(request.path)
        return Reply(200 if body is not None else 404, body or b"{}", "application/json")

    def body(self, path: str) -> bytes | None:
        if path.startswith("/offers/"):
            return AWS_FILE.read_bytes()
        if path.startswith("/api/retail/prices"):
            if "skip=100" in path:
                return AZURE_PAGES[1].read_bytes()
            page = json.loads(AZURE_PAGES[0].read_text())
            page["NextPageLink"] = f"{self.base}/api/retail/prices?$filter=x&$skip=100"
            return json.dumps(page).encode()
        if path.startswith("/v1/services/6F81-5844-456A/skus"):
            return GCP_PAGES[1 if "pageToken=AJ1Fm9mZf0LZvnW3pRk2" in path else 0].read_bytes()
        return None



@pytest.fixture
def price_server():
    server = PriceServer()
    yield server
    server.close()


def test_urls_give_the_same_prices_as_files_following_next_page_link_and_page_token(price_server):
    base = price_server.base
    assert prices(aws, [f"{base}/offers/v1.0/aws/AmazonEC2/current/us-east-1/index.json"], "us-east-1") == \
        prices(aws, [AWS_FILE], "us-east-1")
    az_url = f"{base}/api/retail/prices?$filter=serviceName eq 'Virtual Machines' and armRegionName eq 'eastus'"
    assert prices(azure, [az_url], "eastus") == prices(azure, AZURE_PAGES, "eastus")
    assert prices(gcp, [f"{base}/v1/services/6F81-5844-456A/skus?currencyCode=USD&key=k"], "us-central1") == \
        prices(gcp, GCP_PAGES, "us-central1")
    assert any("%20eq%20" in r.path for r in price_server.requests)  # the OData filter went out percent-encoded
    assert sum("/skus" in r.path for r in price_server.requests) == 2


def run(tmp_path: Path, *args: str, capsys=None) -> tuple[int, str, str]:
    code = main(["update", *args, "-o", str(tmp_path / "overlay.yaml")], environ={})
    out, err = capsys.readouterr() if capsys else ("", "")
    return code, out, err


def test_the_written_overlay_loads_into_the_exporter_and_keeps_the_other_providers(tmp_path, capsys):
    assert run(tmp_path, "azure", *[f"--from={p}" for p in AZURE_PAGES], capsys=capsys)[0] == 0
    code, out, _ = run(tmp_path, "aws", f"--from={AWS_FILE}", capsys=capsys)
    assert code == 0 and "aws us-east-1: 4 instance prices written; not in the price file:" in out
    (tmp_path / "pricing.yaml").write_text("pricing: {provider: azure, catalog_file: overlay.yaml}\n")
    catalog = load_config(tmp_path / "pricing.yaml").catalog
    assert catalog.providers["azure"].instances["Standard_ND96isr_H200_v5"].hourly_usd == 88.0
    assert catalog.providers["aws"].gpu_offers["h100"].as_of == "2025-08"
    p5 = catalog.providers["aws"].instances["p5.48xlarge"]
    assert (p5.vcpus, p5.gpus, p5.gpu_type) == (192, 8, "h100")  # the catalog's shape, the price file's price


def test_add_update_command_plugs_into_another_cli(tmp_path):
    parser = argparse.ArgumentParser(prog="mlcost")
    pricing = parser.add_subparsers(dest="group").add_parser("pricing").add_subparsers(dest="command")
    add_update_command(pricing, environ={"MLCOST_PRICING_CATALOG_FILE": str(tmp_path / "o.yaml")})
    args = parser.parse_args(["pricing", "update", "gcp", "--from", str(GCP_PAGES[0]), "--from", str(GCP_PAGES[1])])
    assert args.func(args) == 0
    assert "g2-standard-4" in (tmp_path / "o.yaml").read_text()


def mutate(path: Path, change) -> bytes:
    document = json.loads(path.read_text())
    change(document)
    return json.dumps(document).encode()


def aws_first_price(doc):
    return next(iter(next(iter(doc["terms"]["OnDemand"]["8XMPCSG3YTZR6QTB"].values()))["priceDimensions"].values()))


HOSTILE = {
    "not json": ("aws", b"<html>Access Denied</html>", "not JSON"),
    "truncated": ("aws", AWS_FILE.read_bytes()[:5000], "not JSON"),
    "not utf-8": ("azure", b"{\"Items\": \"\xff\"}", "not UTF-8"),
    "an array": ("gcp", b"[]", "expected a JSON object"),
    "nested bomb": ("azure", b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
    "wrong offer": ("aws", mutate(AWS_FILE, lambda d: d.update(offerCode="AmazonRDS")), "expected AmazonEC2"),
    "no products": ("aws", mutate(AWS_FILE, lambda d: d.pop("products")), "products: expected dict, got nothing"),
    "text price": ("aws", mutate(AWS_FILE, lambda d: aws_first_price(d)["pricePerUnit"].update(USD="cheap")),
                   "pricePerUnit.USD: not a number"),
    "nan price": ("aws", mutate(AWS_FILE, lambda d: aws_first_price(d)["pricePerUnit"].update(USD="NaN")),
                  "expected a price above 0"),
    "zero price": ("aws", mutate(AWS_FILE, lambda d: aws_first_price(d)["pricePerUnit"].update(USD="0.0")),
                   "expected a price above 0"),
    "bad date": ("aws", mutate(AWS_FILE, lambda d: next(iter(d["terms"]["OnDemand"]["8XMPCSG3YTZR6QTB"].values()))
                                .update(effectiveDate="yesterday")), "effectiveDate: not a date"),
    "two prices": ("aws", mutate(AWS_FILE, lambda d: d["products"]["Q4QTSF7H37JFW9ER"]["attributes"].update(
        operatingSystem="Linux")), "p5.48xlarge has two Linux on-demand prices"),
    "items not a list": ("azure", mutate(AZURE_PAGES[0], lambda d: d.update(Items={"a": 1})),
                         "Items: expected list"),
    "item not an object": ("azure", mutate(AZURE_PAGES[0], lambda d: d["Items"].append("x")),
                           "Items[6]: expected an object"),
    "negative retail": ("azure", mutate(AZURE_PAGES[0], lambda d: d["Items"][0].update(retailPrice=-6.98)),
                        "Items[0].retailPrice: expected a price above 0"),
    "skus missing": ("gcp", mutate(GCP_PAGES[0], lambda d: d.pop("skus")), "skus: expected list, got nothing"),
    "euro sku": ("gcp", mutate(GCP_PAGES[0], lambda d: d["skus"][0]["pricingInfo"][0]["pricingExpression"]
                               ["tieredRates"][0]["unitPrice"].update(currencyCode="EUR")), "expected USD"),
    "ram per hour": ("gcp", mutate(GCP_PAGES[0], lambda d: d["skus"][1]["pricingInfo"][0]["pricingExpression"]
                                   .update(usageUnit="h")), "priced per 'h', expected 'GiBy.h'"),
    "nanos text": ("gcp", mutate(GCP_PAGES[0], lambda d: d["skus"][3]["pricingInfo"][0]["pricingExpression"]
                                 ["tieredRates"][0]["unitPrice"].update(nanos="lots")), "units '0', nanos 'lots'"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_a_malformed_price_file_is_one_error_line_exit_2_and_the_previous_overlay_stays(tmp_path, capsys, case):
    assert run(tmp_path, "gcp", *[f"--from={p}" for p in GCP_PAGES], capsys=capsys)[0] == 0
    before = (tmp_path / "overlay.yaml").read_bytes()
    provider, body, message = HOSTILE[case]
    bad = tmp_path / "bad.json"
    bad.write_bytes(body)
    code, out, err = run(tmp_path, provider, f"--from={bad}", capsys=capsys)
    assert code == 2 and out == ""
    assert err.startswith("pricing update: ") and err.count("\n") == 1 and message in err, err
    assert (tmp_path / "overlay.yaml").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.json", "overlay.yaml"]  # no temporary left


def test_a_file_over_the_size_cap_is_refused_before_parsing(tmp_path, capsys):
    code, _, err = run(tmp_path, "aws", f"--from={AWS_FILE}", "--max-bytes=1000", capsys=capsys)
    assert code == 2 and "larger than 1000 bytes" in err and not (tmp_path / "overlay.yaml").exists()


def test_a_price_file_without_any_catalog_instance_is_an_error_not_an_empty_overlay(tmp_path, capsys):
    code, _, err = run(tmp_path, "aws", f"--from={AWS_FILE}", "--region=eu-west-1", capsys=capsys)
    assert code == 2 and "no prices for the catalog's instance types in eu-west-1" in err


def test_an_invalid_existing_overlay_is_not_overwritten(tmp_path, capsys):
    (tmp_path / "overlay.yaml").write_text("overlay_version: 1\nproviders: {aws: {instances: {x: 1}}}\n")
    code, _, err = run(tmp_path, "aws", f"--from={AWS_FILE}", capsys=capsys)
    assert code == 2 and "the existing overlay is invalid" in err and "overlay.yaml:2" in err


def test_a_next_page_link_to_another_host_is_refused(tmp_path, capsys, price_server):
    page = json.loads(AZURE_PAGES[0].read_text())  # its NextPageLink points at prices.azure.com
    price_server.body = lambda path: json.dumps(page).encode()
    code, _, err = run(tmp_path, "azure", f"--from={price_server.base}/api/retail/prices", capsys=capsys)
    assert code == 2 and "NextPageLink leaves 127.0.0.1" in err


def test_an_unreachable_or_silent_url_is_exit_3_within_the_deadline_and_hides_the_api_key(tmp_path, capsys):
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()
    code, _, err = run(tmp_path, "gcp", f"--from=http://127.0.0.1:{port}/skus?key=SECRET", capsys=capsys)
    assert code == 3 and "SECRET" not in err and err.count("\n") == 1
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(1)  # accepts the connection, never answers
    try:
        code, _, err = run(tmp_path, "aws", f"--from=http://127.0.0.1:{silent.getsockname()[1]}/index.json",
                           "--timeout=0.3", capsys=capsys)
    finally:
        silent.close()
    assert code == 3 and "timed out" in err
