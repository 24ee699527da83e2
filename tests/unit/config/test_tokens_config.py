"""The tokens: and tenants: config sections: defaults, overrides and errors that name line and key."""

from __future__ import annotations

import pytest

from ml_cost_exporter.config.errors import ConfigError
from ml_cost_exporter.config.schema import parse_config
from ml_cost_exporter.config.tokens import embedded_gateway_presets

MODELS = """
models:
  - {name: llama, server: {preset: vllm, url: "http://s/metrics", model: meta-llama/Llama-3.1-8B-Instruct}}
  - {name: mistral}
"""


def test_the_embedded_gateway_presets_load():
    presets = embedded_gateway_presets()
    assert presets["litellm"].metrics["input"].metric == "litellm_input_tokens_metric_total"
    assert presets["envoy-ai-gateway"].tenant_label == "user_id"


def test_defaults_map_each_model_by_its_server_name_and_weights_default_to_one_and_four():
    config = parse_config(MODELS + "tenants: {gateways: [{preset: envoy-ai-gateway, url: 'http://g/m'}]}\n", "t")
    gateway = config.tenants.gateways[0]
    assert dict(gateway.models) == {"meta-llama/Llama-3.1-8B-Instruct": ("llama", "latest"),
                                    "mistral": ("mistral", "latest")}
    assert gateway.tenant_label == "user_id" and config.tenants.max_tenants == 100
    assert (config.token_weights.prompt, config.token_weights.generation) == (1.0, 4.0)


def test_overrides_are_taken():
    config = parse_config(MODELS + """
tokens: {prompt_token_weight: 2, generation_token_weight: 5}
tenants:
  max_tenants: 7
  gateways: [{preset: litellm, url: "http://g/m", tenant_label: hashed_api_key, model_label: model,
              models: {llama: hosted_vllm/llama}}]
""", "t")
    gateway = config.tenants.gateways[0]
    assert (gateway.tenant_label, gateway.model_label) == ("hashed_api_key", "model")
    assert dict(gateway.models) == {"hosted_vllm/llama": ("llama", "latest")}
    assert config.tenants.max_tenants == 7 and config.token_weights.generation == 5


@pytest.mark.parametrize(("text", "message"), [
    ("tokens: {prompt_token_weight: 0}", "tokens.prompt_token_weight: must be greater than 0"),
    ("tokens: {generation_weight: 3}", "unknown key"),
    ("tenants: {gateways: []}", "needs at least one gateway"),
    ("tenants: {gateways: [{preset: kong, url: 'http://g/m'}]}", 'unknown value "kong"'),
    ("tenants: {gateways: [{preset: litellm, url: 'ftp://g'}]}", "not an http"),
    ("tenants: {gateways: [{preset: litellm, url: 'http://g/m', tenant_label: 'bad-label'}]}", "not a valid label"),
    ("tenants: {gateways: [{preset: litellm, url: 'http://g/m', models: {lama: x}}]}", 'did you mean "llama"'),
    ("tenants: {gateways: [{preset: litellm, url: 'http://g/m', models: {llama: x, mistral: x}}]}", "mapped twice"),
    ("tenants: {max_tenants: 0, gateways: [{preset: litellm, url: 'http://g/m'}]}", "must be at least 1"),
    ("budgets: [{name: b, amount_usd: 1, selector: {tenants: [a]}}]", "tenants: is required"),
    ("tenants: {max_tenants: 1, gateways: [{preset: litellm, url: 'http://g/m'}]}\n"
     "budgets: [{name: b, amount_usd: 1, selector: {tenants: [a, b]}}]", "max_tenants is 1"),
])
def test_bad_token_and_tenant_config_is_refused_naming_the_key(text, message):
    with pytest.raises(ConfigError, match=message):
        parse_config(MODELS + text + "\n", "pricing.yaml")
