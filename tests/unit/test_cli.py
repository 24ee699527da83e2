import subprocess
import sys

import pytest

from ml_cost_exporter.cli import build_parser, env_name, main
from tests.conftest import REPO


def run_cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ml_cost_exporter", *args], capture_output=True, text=True,
                          timeout=60, env=env)


def test_a_broken_config_exits_2_with_one_line_naming_file_line_and_key(tmp_path):
    bad = tmp_path / "pricing.yaml"
    bad.write_text("pricing:\n  provider: aws\nallocation:\n  gpu:\n    type: a100-80\n")
    result = run_cli("--config.file", str(bad), "--web.listen-address", "127.0.0.1:0")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        'ml-cost-exporter: pricing.yaml:5: allocation.gpu.type: unknown GPU type "a100-80" '
        '(did you mean "a100-80gb"?) (known: a10, a100-40gb, a100-80gb, a10g, h100, h200, l4, t4, v100)']


def test_flags_come_from_environment_variables_and_flags_win(monkeypatch):
    environ = {"MLCOST_WEB_LISTEN_ADDRESS": "127.0.0.1:1234", "MLCOST_LOG_LEVEL": "debug",
               "MLCOST_COLLECTOR_GPU": "false"}
    args = build_parser(environ).parse_args([])
    assert (args.listen_address, args.log_level, args.collector_gpu) == ("127.0.0.1:1234", "debug", False)
    args = build_parser(environ).parse_args(["--web.listen-address", ":9", "--collector.gpu"])
    assert (args.listen_address, args.collector_gpu) == (":9", True)
    assert env_name("--web.config.file") == "MLCOST_WEB_CONFIG_FILE"


def test_defaults_follow_the_exporter_conventions():
    args = build_parser({}).parse_args([])
    assert (args.listen_address, args.telemetry_path, args.config_file) == (":9945", "/metrics", None)
    assert args.collector_gpu and args.collector_process and args.collector_server


def test_help_lists_every_flag_with_its_environment_variable():
    text = build_parser({}).format_help()
    for flag in ("--config.file", "--web.listen-address", "--web.telemetry-path", "--web.config.file",
                 "--log.level", "--no-collector.gpu", "--collector.server"):
        assert flag in text
    assert "MLCOST_WEB_LISTEN_ADDRESS" in text


def test_the_docs_paste_the_current_help():
    pages = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
    help_text = build_parser({}).format_help()
    assert any(help_text.strip() in page.read_text() for page in pages), \
        "paste `ml-cost-exporter --help` into the README's (or docs') Flags section"


def test_a_port_in_use_exits_1_with_a_message():
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_cli("--web.listen-address", f"127.0.0.1:{port}", "--no-collector.gpu")
    assert result.returncode == 1 and f"cannot listen on 127.0.0.1:{port}" in result.stderr


def test_bad_log_level_is_rejected_by_the_parser():
    with pytest.raises(SystemExit) as exit_info:
        main(["--log.level", "loud"], environ={})
    assert exit_info.value.code == 2
