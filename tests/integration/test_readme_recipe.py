"""The README's "Your own server" recipe, run as written against the demo server standing in for vLLM."""

import re
import shlex
import sys

import requests

from tests.conftest import REPO, free_port, wait_until
from tests.support.binaries import Processes

README = (REPO / "README.md").read_text()
RECIPE = re.search(r"<!-- own-server recipe -->\s*```sh\n(.*?)```", README, re.DOTALL).group(1)


def recipe_config() -> str:
    return re.search(r"cat > my-server\.yaml <<'EOF'\n(.*?)\nEOF\n", RECIPE, re.DOTALL).group(1)


def recipe_line(starting: str) -> list[str]:
    line = next(line for line in RECIPE.splitlines() if line.startswith(starting))
    return shlex.split(line, comments=True)


def test_the_own_server_recipe_exports_cost_per_1k_for_the_model_it_names(processes: Processes, tmp_path):
    served_model = recipe_line("vllm serve")[2]
    server_port, exporter_port = free_port(), free_port()
    processes.start("server", [sys.executable, "-m", "demo.server", "--listen-address", f"127.0.0.1:{server_port}",
                               "--models", served_model, "--load-rps", "20"])
    config = tmp_path / "my-server.yaml"
    config.write_text(recipe_config().replace("127.0.0.1:8000", f"127.0.0.1:{server_port}"))
    command = recipe_line("ml-cost-exporter")
    assert command == ["ml-cost-exporter", "--config.file", "my-server.yaml"]
    # No GPU here: the flag the recipe's comment names for that case.
    processes.start("exporter", [sys.executable, "-m", "ml_cost_exporter", "--config.file", str(config),
                                 "--web.listen-address", f"127.0.0.1:{exporter_port}", "--no-collector.gpu"])
    grep = re.search(r"grep '(.*?)'", next(line for line in RECIPE.splitlines() if line.startswith("curl"))).group(1)
    url = f"http://127.0.0.1:{exporter_port}/metrics"

    def cost_lines() -> list[str]:
        return [line for line in requests.get(url, timeout=2).text.splitlines() if re.search(grep, line)]

    lines = wait_until(cost_lines, timeout=60, what="inference_cost_per_1k_usd in the exporter's /metrics")
    assert len(lines) == 1
    assert re.fullmatch(r'inference_cost_per_1k_usd\{.*\bmodel="llama".*\} \d+\.\d+(e-\d+)?', lines[0]), lines[0]
    assert 'version="latest"' in lines[0]
