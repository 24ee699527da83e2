import textwrap

import pytest

from ml_cost_exporter.config.errors import ConfigError
from ml_cost_exporter.config.schema import DEFAULT_THRESHOLDS, load_config, parse_config
from tests.conftest import REPO

EXAMPLE = REPO / "exporter" / "examples" / "pricing.example.yaml"


def test_example_config_parses_with_every_section_applied():
    config = load_config(EXAMPLE)
    assert config.pricing.provider == "aws"
    assert config.allocation.gpu.type == "a100-80gb" and config.allocation.gpu.count == 1
    assert config.allocation.vcpus == 8 and config.allocation.memory_gib == 64
    (model,) = config.models
    assert (model.name, model.version, model.server.preset.name) == ("fraud-detector", "v3", "vllm")
    assert model.server.preset.metrics["requests"][0].metric == "vllm:request_success_total"
    assert dict(model.labels) == {"team": "risk", "project": "fraud", "env": "prod"}
    (budget,) = config.budgets
    assert budget.selector.matches(model) and budget.thresholds == (0.8, 0.9, 1.0, 1.1)
    assert config.collection.interval_seconds == 15


def test_empty_config_is_the_zero_config_default():
    config = parse_config("", "empty.yaml")
    assert [(m.name, m.version) for m in config.models] == [("default", "latest")]
    assert config.pricing.purchase_option == "on_demand" and config.budgets == ()
    assert config.allocation.gpu is None and config.allocation.vcpus is None


def test_generic_preset_reads_the_configured_counter_and_labels():
    config = parse_config(textwrap.dedent("""
        models:
          - name: ranker
            server:
              preset: generic
              url: http://127.0.0.1:9000/metrics
              model_label: app
              requests: {metric: http_requests_total, match: {code: "2.."}}
              compute_seconds: {metric: busy_us_total, scale: 1.0e-6}
    """), "p.yaml")
    preset = config.models[0].server.preset
    assert preset.model_label == "app"
    assert preset.metrics["requests"][0].match[0][1].fullmatch("200")
    assert preset.metrics["compute_seconds"][0].scale == 1e-6


def test_preset_keys_override_the_preset_and_keep_the_rest():
    config = parse_config(textwrap.dedent("""
        models:
          - name: m
            server: {preset: vllm, url: "http://h:8000/metrics", model: "meta-llama/Llama-3.1-8B"}
    """), "p.yaml")
    server = config.models[0].server
    assert server.model == "meta-llama/Llama-3.1-8B" and server.preset.model_label == "model_name"


def test_thresholds_default_and_are_sorted_and_deduplicated():
    config = parse_config(textwrap.dedent("""
        budgets:
          - {name: a, amount_usd: 10}
          - {name: b, amount_usd: 10, thresholds: [1.0, 0.5, 1.0]}
    """), "p.yaml")
    assert config.budgets[0].thresholds == DEFAULT_THRESHOLDS
    assert config.budgets[1].thresholds == (0.5, 1.0)


def test_mig_profile_is_priced_as_its_share_of_the_parent():
    config = parse_config("allocation:\n  gpu: {type: a100-80gb, mig_profile: 3g.40gb}\n", "p.yaml")
    assert config.allocation.gpu.mig_fraction == pytest.approx(3 / 7)


MALFORMED = [
    # (yaml, expected "file:line: path: message" prefix or fragment)
    ("pricng: {}\n", 'p.yaml:1: pricng: unknown key (did you mean "pricing"?)'),
    ("allocation:\n  gpu:\n    type: a100-80\n",
     'p.yaml:3: allocation.gpu.type: unknown GPU type "a100-80" (did you mean "a100-80gb"?)'),
    ("pricing:\n  provider: awz\n", 'p.yaml:2: pricing.provider: unknown value "awz" (did you mean "aws"?)'),
    ("pricing:\n  purchase_option: reserved\n", "p.yaml:2: pricing.purchase_option: unknown value"),
    ("pricing:\n  price_ratio: 1.5\n", "p.yaml:2: pricing.price_ratio: must be at most 1, got 1.5"),
    ("pricing:\n  price_ratio: 0\n", "p.yaml:2: pricing.price_ratio: must be greater than 0"),
    ("pricing:\n  fixed_hourly_usd: -1\n", "p.yaml:2: pricing.fixed_hourly_usd: must be at least 0, got -1"),
    ("pricing:\n  fixed_hourly_usd: ten\n", 'p.yaml:2: pricing.fixed_hourly_usd: expected a number, got the string'),
    ("pricing:\n  overrides:\n    gpu_hourly: 2\n", 'p.yaml:3: pricing.overrides.gpu_hourly: unknown key (did you'),
    ("pricing:\n  onprem:\n    pue: 0.5\n", "p.yaml:3: pricing.onprem.pue: must be at least 1, got 0.5"),
    ("pricing:\n  onprem:\n    amortization_years: 0\n", "p.yaml:3: pricing.onprem.amortization_years: must be"),
    ("pricing:\n  provider: azure\nallocation:\n  gpu: {type: a10g}\n",
     'p.yaml:4: allocation.gpu.type: azure offers no "a10g" in the catalog'),
    ("allocation:\n  gpu: {type: a100-80gb, count: 0}\n", "p.yaml:2: allocation.gpu.count: must be greater than 0"),
    ("allocation:\n  gpu: {type: t4, mig_profile: 1g.5gb}\n",
     'p.yaml:2: allocation.gpu.mig_profile: GPU type "t4" does not support MIG'),
    ("allocation:\n  gpu: {type: h100, mig_profile: 9g.90gb}\n",
     'p.yaml:2: allocation.gpu.mig_profile: "9g.90gb" uses 9 slices; "h100" has 7'),
    ("allocation:\n  gpu: {type: h100, mig_profile: half}\n",
     'allocation.gpu.mig_profile: "half" is not a MIG profile'),
    ("allocation:\n  gpu: {mig_profile: 1g.10gb}\n",
     "allocation.gpu.mig_profile: a MIG profile needs allocation.gpu.type"),
    ("allocation:\n  instance: {type: p4d.24xl}\n",
     'p.yaml:2: allocation.instance.type: unknown aws instance type "p4d.24xl" (did you mean "p4d.24xlarge"?)'),
    ("allocation:\n  instance: {type: g5.xlarge, share: 2}\n", "allocation.instance.share: must be at most 1, got 2"),
    ("allocation:\n  instance: {type: g5.xlarge}\n  gpu: {type: a10g}\n",
     "p.yaml:2: allocation.instance: give either allocation.instance or allocation.gpu, not both"),
    ("allocation:\n  instance: {type: g5.xlarge}\n  vcpus: 4\n", "allocation: vcpus and memory_gib come from the"),
    ("pricing: {provider: onprem}\nallocation:\n  instance: {type: g5.xlarge}\n",
     "allocation.instance: instance types are priced only for aws, gcp and azure"),
    ("allocation:\n  vcpus: -2\n", "p.yaml:2: allocation.vcpus: must be greater than 0, got -2"),
    ("allocation: [1, 2]\n", "p.yaml:1: allocation: expected a mapping, got a list"),
    ("models:\n  - version: v1\n", "p.yaml:2: models[0].name: is required"),
    ("models:\n  - name: 'bad name'\n", "p.yaml:2: models[0].name: name must be a non-empty name"),
    ("models:\n  - name: m\n    server: {preset: vlm, url: 'http://x/metrics'}\n",
     'p.yaml:3: models[0].server.preset: unknown value "vlm" (did you mean "vllm"?)'),
    ("models:\n  - name: m\n    server: {preset: vllm, url: 'localhost:8000'}\n",
     'p.yaml:3: models[0].server.url: "localhost:8000" is not an http:// or https:// URL'),
    ("models:\n  - name: m\n    server: {preset: vllm}\n", "models[0].server.url: is required"),
    ("models:\n  - name: m\n    server: {preset: generic, url: 'http://x/metrics'}\n",
     "models[0].server.requests: is required: the counter of successful requests"),
    ("models:\n  - name: m\n    server:\n      preset: generic\n      url: http://x/metrics\n"
     "      requests: {metric: '9bad'}\n",
     'p.yaml:6: models[0].server.requests.metric: "9bad" is not a valid Prometheus metric name'),
    ("models:\n  - name: m\n    server:\n      preset: generic\n      url: http://x/metrics\n"
     "      requests: {metric: ok_total, match: {code: '[2'}}\n",
     "p.yaml:6: models[0].server.requests.match.code: invalid regular expression"),
    ("models:\n  - name: m\n    server: {preset: vllm, url: 'http://x/metrics', version: '2'}\n",
     'models[0].server.version: preset "vllm" has no version label'),
    ("models:\n  - name: m\n    workload: batch\n", 'p.yaml:3: models[0].workload: unknown value "batch"'),
    ("models:\n  - name: m\n    target_cost_per_1k_usd: 0\n", "models[0].target_cost_per_1k_usd: must be greater"),
    ("models:\n  - name: m\n    labels: {team: [a]}\n",
     "p.yaml:3: models[0].labels.team: expected a string, got a list"),
    ("models:\n  - name: m\n    labels: {9team: a}\n", 'models[0].labels: "9team" is not a valid label name'),
    ("models:\n  - name: m\n  - name: m\n", 'p.yaml:3: models[1]: model "m" version "latest" is listed twice'),
    ("models:\n  - name: m\n    lables: {}\n", 'p.yaml:3: models[0].lables: unknown key (did you mean "labels"?)'),
    ("budgets:\n  - name: b\n", "p.yaml:2: budgets[0].amount_usd: is required"),
    ("budgets:\n  - {name: b, amount_usd: 5, period: year}\n", 'budgets[0].period: unknown value "year"'),
    ("budgets:\n  - {name: b, amount_usd: 5, thresholds: [0.8, -1]}\n",
     "p.yaml:2: budgets[0].thresholds[1]: must be greater than 0, got -1"),
    ("budgets:\n  - {name: b, amount_usd: 5, selector: {models: [nope]}}\n",
     'p.yaml:2: budgets[0].selector.models[0]: no model named "nope"'),
    ("budgets:\n  - {name: b, amount_usd: 5, selector: {tam: x}}\n",
     'budgets[0].selector.tam: unknown key (did you mean "team"?)'),
    ("budgets:\n  - {name: b, amount_usd: 5}\n  - {name: b, amount_usd: 6}\n",
     'p.yaml:3: budgets[1]: budget "b" is defined twice'),
    ("processes:\n  cmdline_patterns: ['(']\n", "p.yaml:2: processes.cmdline_patterns[0]: invalid regular expression"),
    ("collection:\n  interval_seconds: 0\n", "p.yaml:2: collection.interval_seconds: must be at least 0.05, got 0"),
    ("collection:\n  interval_seconds: .nan\n", "p.yaml:2: collection.interval_seconds: expected a finite number"),
    ("collection:\n  interval_seconds: true\n", "collection.interval_seconds: expected a number, got a boolean"),
    ("collection:\n  interval_seconds: 60\n  cost_window_seconds: 30\n",
     "collection: cost_window_seconds must be at least interval_seconds"),
    ("attribution: gpu_time\n", 'p.yaml:1: attribution: unknown value "gpu_time"'),
    ("pricing:\n  provider: aws\npricing:\n  provider: gcp\n",
     "p.yaml:3: pricing: duplicate key (first set on line 1)"),
    ("pricing: {provider: aws\n", "p.yaml:2: invalid YAML"),
    ("- just\n- a list\n", "p.yaml:1: expected a mapping, got a list"),
    ("base: &b {provider: aws}\npricing:\n  <<: *b\n", "merge keys (<<) are not supported"),
]


@pytest.mark.parametrize(("text", "expected"), MALFORMED, ids=[m[1][:60] for m in MALFORMED])
def test_malformed_config_is_one_line_naming_file_line_path_and_expectation(text, expected):
    with pytest.raises(ConfigError) as caught:
        parse_config(text, "p.yaml")
    message = str(caught.value)
    assert "\n" not in message
    assert expected in message, message


def test_there_are_at_least_30_distinct_malformed_cases():
    assert len({m[1] for m in MALFORMED}) >= 30


def test_unreadable_and_non_utf8_files_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match=r"missing\.yaml: cannot read"):
        load_config(tmp_path / "missing.yaml")
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(ConfigError, match=r"binary\.yaml:1: not UTF-8 text \(byte 0\)"):
        load_config(binary)


def test_a_quantity_may_sum_and_subtract_terms_with_match_and_exclude_filters():
    config = parse_config(textwrap.dedent("""
        models:
          - name: m
            server:
              preset: generic
              url: http://127.0.0.1:9000/metrics
              requests: [{metric: all_total}, {metric: errors_total, subtract: true}]
              failed_requests: {metric: errors_total, exclude: {reason: "rejected|throttled"}}
    """), "p.yaml")
    metrics = config.models[0].server.preset.metrics
    assert [(t.metric, t.subtract) for t in metrics["requests"]] == [("all_total", False), ("errors_total", True)]
    (exclude,) = metrics["failed_requests"][0].exclude
    assert exclude[0] == "reason" and exclude[1].fullmatch("throttled") and not exclude[1].fullmatch("timeout")


@pytest.mark.parametrize(("server", "expected"), [
    ("requests: [{metric: e_total, subtract: true}]", "server.requests: every term subtracts"),
    ("requests: []", "server.requests: expected at least one metric term"),
    ("requests: {metric: r_total, exclude: {code: '('}}", "server.requests.exclude.code: invalid regular expression"),
    ("requests: {metric: r_total, subtract: 'yes'}", "server.requests.subtract: expected true or false"),
    ("requests: [{metric: 'bad name'}]", "is not a valid Prometheus metric name"),
    ("failed_requests: {metric: f_total}", "server.requests: is required: the counter of successful requests"),
])
def test_bad_preset_terms_are_one_line_naming_the_place(server, expected):
    text = f"models:\n  - name: m\n    server: {{preset: generic, url: 'http://h/metrics', {server}}}\n"
    with pytest.raises(ConfigError) as caught:
        parse_config(text, "p.yaml")
    assert "\n" not in str(caught.value) and expected in str(caught.value), str(caught.value)


def test_a_server_that_counts_no_requests_may_declare_tokens_only():
    config = parse_config("models:\n  - {name: g, server: {preset: llamacpp, url: 'http://h:8080/metrics'}}\n",
                          "p.yaml")
    assert "requests" not in config.models[0].server.preset.metrics
