"""The peer connection keys (authorization, basic_auth, tls_config, follow_redirects, gateway replicas)."""

from __future__ import annotations

import textwrap

import pytest

from ml_cost_exporter.config.errors import ConfigError
from ml_cost_exporter.config.schema import parse_config
from ml_cost_exporter.httpclient import Authorization, BasicAuth, HttpSettings, TLSConfig

SERVER = "models:\n  - name: m\n    server:\n      preset: vllm\n      url: https://vllm:8000/metrics\n"
GATEWAY = ("models: [{name: m, server: {preset: vllm, url: 'http://s/metrics'}}]\n"
           "tenants:\n  gateways:\n    - preset: litellm\n")
DCGM = "gpu:\n  source: dcgm\n  dcgm:\n    url: http://${NODE_IP}:9400/metrics\n"


def indented(keys: str, depth: int) -> str:
    return textwrap.indent(textwrap.dedent(keys).strip() + "\n", " " * depth)


def test_a_server_takes_prometheus_scrape_config_keys():
    config = parse_config(SERVER + indented("""
        authorization: {type: Bearer, credentials_file: /run/token}
        tls_config: {ca_file: /ca.pem, cert_file: /c.pem, key_file: /k.pem, server_name: vllm.svc,
                     insecure_skip_verify: true}
        follow_redirects: false
        """, 6), "c.yaml")
    assert config.models[0].server.http == HttpSettings(
        Authorization("Bearer", "/run/token"), None,
        TLSConfig("/ca.pem", "/c.pem", "/k.pem", "vllm.svc", True), follow_redirects=False)


def test_defaults_follow_same_host_redirects_without_credentials():
    config = parse_config(SERVER, "c.yaml")
    assert config.models[0].server.http == HttpSettings() and HttpSettings().follow_redirects


def test_a_gateway_and_dcgm_take_the_same_keys():
    config = parse_config(GATEWAY + indented("""
        url: http://litellm:4000/metrics/
        basic_auth: {username: exporter, password_file: /run/pw}
        replicas: dns
        """, 6) + DCGM + indented("authorization: {credentials_file: /run/dcgm}", 4), "c.yaml")
    gateway = config.tenants.gateways[0]
    assert gateway.http.basic_auth == BasicAuth("exporter", "/run/pw") and gateway.replicas == "dns"
    assert gateway.urls == ("http://litellm:4000/metrics/",)
    assert config.gpu.dcgm.http.authorization == Authorization("Bearer", "/run/dcgm")


def test_a_gateway_lists_its_replicas_and_is_named_by_the_first():
    config = parse_config(GATEWAY + indented("urls: [http://a:4000/metrics/, http://b:4000/metrics/]", 6), "c")
    gateway = config.tenants.gateways[0]
    assert gateway.urls == ("http://a:4000/metrics/", "http://b:4000/metrics/")
    assert gateway.url == "http://a:4000/metrics/" and gateway.replicas == "single"


@pytest.mark.parametrize(("text", "expected"), [
    (SERVER + indented("authorization: {credentials_file: /t, credential_file: /u}", 6),
     'c.yaml:6: models[0].server.authorization.credential_file: unknown key (did you mean "credentials_file"?) '
     "(known: credentials, credentials_file, type)"),
    (SERVER + indented("authorization: {credentials: s3cret}", 6),
     "c.yaml:6: models[0].server.authorization.credentials: secrets are not written in the config: name a "
     "file with credentials_file (a mounted Secret)"),
    (SERVER + indented("authorization: {type: Bearer}", 6),
     "c.yaml:6: models[0].server.authorization.credentials_file: is required"),
    (SERVER + indented("authorization: {type: Basic, credentials_file: /t}", 6),
     'c.yaml:6: models[0].server.authorization.type: use basic_auth for the "Basic" type'),
    (SERVER + indented("basic_auth: {username: u, password: p}", 6),
     "c.yaml:6: models[0].server.basic_auth.password: secrets are not written in the config: name a "
     "file with password_file (a mounted Secret)"),
    (SERVER + indented("authorization: {credentials_file: /t}\nbasic_auth: {username: u}", 6),
     "c.yaml:7: models[0].server.basic_auth: give authorization or basic_auth, not both"),
    (SERVER + indented("tls_config:\n  cert_file: /c.pem", 6),
     "c.yaml:7: models[0].server.tls_config.cert_file: a client certificate needs both cert_file and key_file"),
    (SERVER + indented("tls_config: {insecure_skip_verify: yes please}", 6),
     'c.yaml:6: models[0].server.tls_config.insecure_skip_verify: expected true or false, got the string '
     '"yes please"'),
    (SERVER + indented("follow_redirects: 1", 6),
     "c.yaml:6: models[0].server.follow_redirects: expected true or false, got the number 1"),
    (SERVER + "  - name: n\n    server: {preset: vllm, url: 'https://vllm:8000/metrics', follow_redirects: false}\n",
     'c.yaml:6: models[1]: server "https://vllm:8000/metrics" is also read for model "m" with other '
     "authorization, basic_auth, tls_config or follow_redirects; give them the same"),
    (GATEWAY + indented("urls: [http://a/m, http://b/m]\nreplicas: dns", 6),
     "c.yaml:6: tenants.gateways[0].replicas: replicas: dns resolves the host of url; with urls, list every "
     "replica"),
    (GATEWAY + indented("url: http://a/m\nurls: [http://b/m]", 6),
     "c.yaml:6: tenants.gateways[0].urls: give url or urls, not both"),
    (GATEWAY + indented("urls: [http://a/m, ftp://b/m]", 6),
     'c.yaml:5: tenants.gateways[0].urls[1]: "ftp://b/m" is not an http:// or https:// URL'),
    (GATEWAY + indented("urls: [http://a/m, http://a/m]", 6),
     'c.yaml:5: tenants.gateways[0].urls[1]: "http://a/m" is listed twice'),
    (GATEWAY + indented("url: http://a/m\nreplicas: all", 6),
     'c.yaml:6: tenants.gateways[0].replicas: unknown value "all" (known: single, dns)'),
    (GATEWAY + indented("tenant_label: team", 6),
     "c.yaml:4: tenants.gateways[0].url: is required (or urls, a list of the gateway's replica URLs)"),
    (DCGM + indented("tls_config: {ca_fille: /x}", 4),
     'c.yaml:5: gpu.dcgm.tls_config.ca_fille: unknown key (did you mean "ca_file"?) (known: ca_file, cert_file, '
     "insecure_skip_verify, key_file, server_name)"),
])
def test_bad_connection_keys_are_one_line_naming_file_line_and_key(text, expected):
    with pytest.raises(ConfigError) as failure:
        parse_config(text, "c.yaml")
    assert str(failure.value) == expected
