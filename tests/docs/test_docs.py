"""The documentation: generated references match the code, every relative link and anchor resolves,
and the README's two commands are the ones CI and the demo run."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

from ml_cost_exporter import __version__
from tests.support.scripts import load_script

REPO = Path(__file__).resolve().parents[2]
generate = load_script("docs/generate.py")  # the references' generator

_FENCE = re.compile(r"^(```|~~~).*?^\1", re.MULTILINE | re.DOTALL)
_INLINE_CODE = re.compile(r"`[^`\n]*`")
_LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$", re.MULTILINE)
_HTML_ANCHOR = re.compile(r'<a\s+(?:name|id)="([^"]+)"')


def markdown_files() -> list[Path]:
    tracked = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "*.md"],
                             cwd=REPO, capture_output=True, text=True, check=True).stdout.split()
    return sorted(REPO / name for name in tracked if (REPO / name).is_file())


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link in a heading keeps its text
    return re.sub(r"[^\w\- ]", "", text.lower()).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    text = _FENCE.sub("", path.read_text())
    found: set[str] = set(_HTML_ANCHOR.findall(text))
    seen: dict[str, int] = {}
    for _level, heading in _HEADING.findall(text):
        base = slug(heading)
        count = seen.get(base, 0)
        found.add(base if count == 0 else f"{base}-{count}")
        seen[base] = count + 1
    return found


def links(path: Path) -> list[str]:
    text = _INLINE_CODE.sub("", _FENCE.sub("", path.read_text()))
    return _LINK.findall(text)


def test_slug_follows_githubs_rules():
    assert slug("MLCostBudgetBurnFast") == "mlcostbudgetburnfast"
    assert slug("How cost is computed") == "how-cost-is-computed"
    assert slug("Deciding with `mlcost`") == "deciding-with-mlcost"
    assert slug("Cost, per 1k (USD)") == "cost-per-1k-usd"


@pytest.mark.parametrize("path", markdown_files(), ids=lambda p: str(p.relative_to(REPO)))
def test_every_relative_link_and_anchor_resolves(path):
    broken = []
    for target in links(path):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
            continue
        file_part, _, anchor = target.partition("#")
        destination = (path.parent / file_part).resolve() if file_part else path
        if not destination.exists():
            broken.append(f"{target}: no such file")
        elif anchor and destination.suffix == ".md" and anchor not in anchors(destination):
            broken.append(f"{target}: no heading with anchor #{anchor} in {destination.relative_to(REPO)}")
    assert not broken, f"{path.relative_to(REPO)}: " + "; ".join(broken)


def test_link_checker_sees_a_broken_link(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("# Title\n\n[ok](#title) [bad](#missing) [gone](nowhere.md)\n```\n[in code](x.md)\n```\n")
    assert links(page) == ["#title", "#missing", "nowhere.md"]
    assert "title" in anchors(page) and "missing" not in anchors(page)


@pytest.mark.parametrize("page", list(generate.PAGES), ids=lambda p: p.name)
def test_generated_reference_matches_the_code(page):
    expected = generate.PAGES[page]()
    assert page.read_text() == expected, f"{page.name} is stale: run python docs/generate.py"


def test_cli_page_carries_every_mlcost_commands_help():
    text = (REPO / "docs" / "cli.md").read_text()
    for command in ("mlcost", "mlcost pricing", "mlcost pricing update", "mlcost estimate", "mlcost report",
                    "mlcost budgets", "mlcost recommend"):
        assert f"### `{command}`\n\n```text\nusage: {command} " in text, command


def test_metrics_reference_lists_every_family_of_the_saved_output():
    text = (REPO / "docs" / "metrics.md").read_text()
    golden = "\n".join(generate.golden_outputs())
    names = re.findall(r"^# TYPE (\S+) ", golden, re.MULTILINE)
    assert names and all(f"| `{name}` |" in text for name in names)


def test_readme_names_the_commands_ci_and_the_demo_run():
    readme = (REPO / "README.md").read_text()
    ci_lines = [line.strip() for line in (REPO / ".ci" / "run").read_text().splitlines()
                if line.strip() and not line.lstrip().startswith("#")]
    assert ci_lines[-1] == "bash scripts/test.sh"
    assert "bash scripts/test.sh" in readme and "bash scripts/demo.sh" in readme
    assert (REPO / "scripts" / "demo.sh").is_file() and (REPO / "scripts" / "test.sh").is_file()


def test_version_is_one_number_everywhere():
    installed = importlib.metadata.version("ml-cost-exporter")
    assert installed == __version__
    result = subprocess.run([sys.executable, "-m", "ml_cost_exporter", "--version"], capture_output=True,
                            text=True, check=True)
    assert result.stdout.strip() == f"ml-cost-exporter {__version__}"
    changelog = (REPO / "CHANGELOG.md").read_text()
    assert re.search(rf"^## \[{re.escape(__version__)}\] - \d{{4}}-\d{{2}}-\d{{2}}$", changelog, re.MULTILINE)
