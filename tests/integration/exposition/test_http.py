import re
import shutil
import ssl
import subprocess

import bcrypt
import pytest
import requests
from prometheus_client import CollectorRegistry, Counter

from ml_cost_exporter.config.errors import ConfigError
from ml_cost_exporter.exposition.http import parse_listen_address, start_http_server
from ml_cost_exporter.exposition.webconfig import load_web_config


@pytest.fixture
def registry():
    registry = CollectorRegistry()
    Counter("mlcost_test", "A test counter.", registry=registry).inc(3)
    return registry


@pytest.fixture
def serve(registry):
    servers = []

    def start(web_config=None, path="/metrics"):
        server, _ = start_http_server("127.0.0.1:0", registry, path, web_config)
        servers.append(server)
        return server.server_address[1]

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def test_metrics_landing_page_health_and_not_found(serve):
    port = serve(path="/custom")
    base = f"http://127.0.0.1:{port}"
    metrics = requests.get(base + "/custom", timeout=5)
    assert metrics.status_code == 200 and "mlcost_test_total 3.0" in metrics.text
    assert metrics.headers["Content-Type"].startswith("text/plain")
    landing = requests.get(base + "/", timeout=5)
    assert landing.status_code == 200 and 'href="/custom"' in landing.text
    assert requests.get(base + "/healthz", timeout=5).text == "ok\n"
    assert requests.get(base + "/metrics", timeout=5).status_code == 404
    openmetrics = requests.get(base + "/custom", headers={"Accept": "application/openmetrics-text"}, timeout=5)
    assert openmetrics.text.rstrip().endswith("# EOF")


def test_basic_auth_with_bcrypt_hashes(serve, tmp_path):
    hashed = bcrypt.hashpw(b"s3cret", bcrypt.gensalt(rounds=4)).decode()
    web = tmp_path / "web.yml"
    web.write_text(f"basic_auth_users:\n  prometheus: '{hashed}'\n")
    base = f"http://127.0.0.1:{serve(load_web_config(str(web)))}"
    assert requests.get(base + "/metrics", timeout=5).status_code == 401
    assert requests.get(base + "/metrics", auth=("prometheus", "wrong"), timeout=5).status_code == 401
    assert requests.get(base + "/metrics", auth=("nobody", "s3cret"), timeout=5).status_code == 401
    for _ in range(2):  # the second time comes from the cache of verified credentials
        assert requests.get(base + "/metrics", auth=("prometheus", "s3cret"), timeout=5).status_code == 200


def test_tls_serves_https_with_the_configured_certificate(serve, tmp_path):
    openssl = shutil.which("openssl")
    assert openssl, "openssl is required to make a test certificate"
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run([openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out",
                    str(cert), "-days", "1", "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True)
    web = tmp_path / "web.yml"
    web.write_text(f"tls_server_config:\n  cert_file: {cert}\n  key_file: {key}\n")
    port = serve(load_web_config(str(web)))
    response = requests.get(f"https://127.0.0.1:{port}/metrics", verify=str(cert), timeout=5)
    assert response.status_code == 200 and "mlcost_test_total" in response.text
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5)
    assert ssl.OPENSSL_VERSION


@pytest.mark.parametrize(("text", "message"), [
    ("basic_auth_users:\n  u: plaintext\n",
     'web.yml:2: basic_auth_users.u: the password of user "u" must be a bcrypt hash'),
    ("tls_server_config:\n  cert_file: a.pem\n", "tls_server_config.key_file: is required"),
    ("tls_server_config: {cert_file: a, key_file: b, min_version: TLS99}\n", 'unknown value "TLS99"'),
    ("basic_auth: {}\n", 'basic_auth: unknown key (did you mean "basic_auth_users"?)'),
])
def test_web_config_errors_name_the_key(tmp_path, text, message):
    web = tmp_path / "web.yml"
    web.write_text(text)
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_web_config(str(web))


@pytest.mark.parametrize(("address", "expected"), [
    (":9945", ("", 9945)), ("127.0.0.1:80", ("127.0.0.1", 80)), ("[::1]:9945", ("::1", 9945))])
def test_listen_addresses(address, expected):
    assert parse_listen_address(address) == expected


@pytest.mark.parametrize("address", ["9945", "host:", "host:99999", "host:http"])
def test_bad_listen_addresses_are_rejected(address):
    with pytest.raises(ValueError, match="invalid listen address"):
        parse_listen_address(address)
