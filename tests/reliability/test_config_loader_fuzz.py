"""The YAML loader on any bytes: only ConfigError escapes, on one line, naming a line of the input."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ml_cost_exporter.config.errors import ConfigError
from ml_cost_exporter.config.schema import load_config
from ml_cost_exporter.exposition.webconfig import load_web_config
from ml_cost_exporter.runtime import Runtime
from tests.conftest import FIXTURES

FUZZ = settings(max_examples=300, derandomize=True, deadline=None, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
SEED = (FIXTURES.parent.parent / "exporter" / "examples" / "pricing.example.yaml").read_text()
WEB_SEED = "tls_server_config:\n  cert_file: c.pem\n  key_file: k.pem\nbasic_auth_users:\n  u: x\n"
CONTROLS = "".join(map(chr, range(32))) + "\x7f\x85\u2028\u2029\ufeff\ufffe"
BIG_INTEGERS = ["9" * 400, "9" * 5000, "-" + "9" * 320, "0x" + "f" * 300, "0b" + "1" * 2000, "1_000" * 200]
BIG = [*BIG_INTEGERS, "1" * 320 + ".5", "1.0e+400", "190:20:30" * 50]
YAML_BITS = st.sampled_from([":", "- ", "\n", "  ", "{", "}", "[", "]", "&a ", "*a", "!!int ", "!!binary ", "'", '"',
                             "#", "|", ">", "? ", "%YAML 1.1\n", "---\n", "...\n", "<<: ", *BIG, *CONTROLS])


def mutated(seed: str) -> st.SearchStrategy[bytes]:
    """The seed with a slice replaced by YAML punctuation, huge numbers, control characters or random bytes."""
    junk = st.one_of(st.lists(YAML_BITS, max_size=6).map("".join).map(str.encode), st.binary(max_size=20))
    return st.builds(lambda at, cut, j: seed.encode()[:at] + j + seed.encode()[at + cut:],
                     st.integers(0, len(seed)), st.integers(0, 30), junk)


ANY_BYTES = st.one_of(st.binary(max_size=300), mutated(SEED), mutated(WEB_SEED),
                      st.text(max_size=200).map(str.encode))


def check_one_line_with_a_line_number(error: ConfigError, data: bytes) -> None:
    message = str(error)
    assert "\n" not in message and "\r" not in message, message
    assert message.isprintable(), message
    lines = data.count(b"\n") + 1
    assert error.line is not None and 1 <= error.line <= lines + 1, (message, lines)


@pytest.mark.parametrize("loader", [load_config, load_web_config], ids=["pricing-config", "web-config"])
def test_any_bytes_give_a_config_or_one_config_error_line_that_names_a_line(tmp_path, loader):
    path = tmp_path / "config.yaml"

    @FUZZ
    @given(ANY_BYTES)
    def run(data: bytes):
        path.write_bytes(data)
        try:
            loader(str(path))
        except ConfigError as error:
            check_one_line_with_a_line_number(error, data)

    run()


CASES = [(key, number) for number in BIG for key in ("collection:\n  interval_seconds", "pricing:\n  fixed_hourly_usd",
                                                     "budgets:\n  - name: b\n    amount_usd")]
CASES += [("models:\n  - name", number) for number in BIG_INTEGERS]  # any other text is a valid name


@pytest.mark.parametrize(("key", "number"), CASES, ids=[f"{k.split(':')[0]}-{n[:6]}..{len(n)}" for k, n in CASES])
def test_a_huge_number_anywhere_is_one_config_error_on_its_line(tmp_path, key, number):
    path = tmp_path / "p.yaml"
    path.write_text(f"{key}: {number}\n")
    with pytest.raises(ConfigError) as error:
        load_config(path)
    assert str(error.value).startswith(f"p.yaml:{key.count(chr(10)) + 1}: "), str(error.value)
    assert "\n" not in str(error.value)


def test_a_reloaded_config_with_a_huge_integer_keeps_the_last_good_one(tmp_path, caplog):
    path = tmp_path / "p.yaml"
    path.write_text("collection:\n  interval_seconds: 15\n")
    runtime = Runtime(str(path), frozenset())
    try:
        path.write_text("collection:\n  interval_seconds: " + "9" * 400 + "\n")
        with caplog.at_level(logging.ERROR):
            assert runtime.reload() is False
        assert runtime.config.collection.interval_seconds == 15 and runtime.state().reload.successful is False
        assert "p.yaml:2: collection.interval_seconds: integer too large" in caplog.text
    finally:
        runtime.close()


def test_the_web_config_names_its_file_and_line_for_a_huge_integer_and_a_nul(tmp_path):
    path = Path(tmp_path / "web.yml")
    for text, expected in [("basic_auth_users:\n  u: " + "9" * 5000 + "\n",
                            f"{path}:2: basic_auth_users.u: integer too large (more than 400 characters)"),
                           ("tls_server_config:\n  cert_file: a\x00\n",
                            f"{path}:2: invalid YAML: character U+0000 is not allowed")]:
        path.write_text(text)
        with pytest.raises(ConfigError) as error:
            load_web_config(str(path))
        assert str(error.value) == expected


@pytest.mark.parametrize("loader", [load_config, load_web_config], ids=["pricing-config", "web-config"])
@pytest.mark.parametrize("kind", ["fifo", "directory", "char-device"])
def test_a_config_path_that_is_not_a_regular_file_is_refused_at_once(tmp_path, loader, kind):
    path = tmp_path / "config.yaml"
    if kind == "fifo":
        os.mkfifo(path)  # opening it for reading would wait for a writer forever
    elif kind == "directory":
        path.mkdir()
    else:
        path.symlink_to("/dev/zero")
    with pytest.raises(ConfigError) as error:
        loader(str(path))
    assert str(error.value) == f"{path}: not a regular file"
