"""The HTTP front and its web config against hostile clients: garbage requests, password floods, reloads."""

from __future__ import annotations

import base64
import logging
import socket
import threading
from concurrent.futures import ThreadPoolExecutor

import bcrypt
import pytest
import requests
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Counter

from ml_cost_exporter.config.errors import ConfigError
from ml_cost_exporter.exposition.front import Limits, _BadRequest, check_request_start
from ml_cost_exporter.exposition.http import WebConfigReloader, start_http_server
from ml_cost_exporter.exposition.webconfig import BasicAuth, Verdict, load_web_config
from tests.conftest import wait_until

FUZZ = settings(max_examples=300, derandomize=True, deadline=None, database=None)
COST = 4


def hashed(password: bytes, cost: int = COST) -> str:
    return bcrypt.hashpw(password, bcrypt.gensalt(rounds=cost)).decode()


@pytest.fixture
def serve():
    servers = []

    def start(web_config=None, **limits):
        registry = CollectorRegistry()
        Counter("mlcost_test", "A test counter.", registry=registry).inc()
        server, _ = start_http_server("127.0.0.1:0", registry, "/metrics", web_config, Limits(**limits))
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


# --- requests that can never become HTTP/1.x are refused at once --------------------------------------------

NOT_HTTP = {
    "http-0.9": b"GET /metrics\r\n",
    "http-0.9-bare-lf": b"GET /\n",
    "tls-hello-on-plain": b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
    "binary": b"\x00\x01\x02\x03",
    "lowercase-method": b"get / HTTP/1.1\r\n",
    "no-newline-garbage": b"{\"jsonrpc\": \"2.0\"",
    "four-words": b"GET / HTTP/1.1 extra\r\n",
    "long-method": b"A" * 40,
}


@pytest.mark.parametrize("request_bytes", NOT_HTTP.values(), ids=NOT_HTTP.keys())
def test_what_cannot_be_an_http_1_request_is_answered_400_before_the_header_deadline(serve, request_bytes):
    server = serve(read_header_timeout=60)
    with socket.create_connection(("127.0.0.1", server.server_address[1]), timeout=10) as client:
        client.sendall(request_bytes)
        reply = client.recv(4096)
        assert reply.startswith(b"HTTP/1.1 400 "), reply[:80]
        assert b"Connection: close" in reply
        assert client.recv(1) == b""  # closed, not held


VALID = b"GET /metrics?x=1 HTTP/1.1\r\nHost: a\r\nAccept: */*\r\n\r\n"


@FUZZ
@given(st.integers(0, len(VALID)), st.sampled_from([b"", b"\r\n", b"\r\n\r\n"]))
def test_no_prefix_of_a_valid_request_is_refused_early(cut, leading):
    check_request_start(leading + VALID[:cut])


@FUZZ
@given(st.binary(max_size=300))
def test_the_early_check_only_ever_raises_bad_request(data):
    try:
        check_request_start(data)
    except _BadRequest as exc:
        assert exc.status == 400 and "\n" not in str(exc)


# --- an idle front sleeps ----------------------------------------------------------------------------------

def test_the_selector_waits_without_a_timeout_while_no_connection_is_open(serve):
    server = serve(read_header_timeout=5)
    timeouts: list[float | None] = []
    select = server._selector.select

    def recording_select(timeout=None):
        timeouts.append(timeout)
        return select(timeout)

    server._selector.select = recording_select
    port = server.server_address[1]
    assert requests.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code == 200  # wakes the loop
    wait_until(lambda: timeouts and timeouts[-1] is None, what="the loop to go back to sleep")
    with socket.create_connection(("127.0.0.1", port)):
        wait_until(lambda: timeouts[-1] is not None and 0 < timeouts[-1] <= 5, what="a deadline-bound wait")
    wait_until(lambda: timeouts[-1] is None, what="sleep again once the connection is gone")


# --- password checks ----------------------------------------------------------------------------------------

class RecordingBcrypt:
    """Stands in for bcrypt.checkpw: records the cost of each hash, blocks wrong passwords until released."""

    def __init__(self, real) -> None:
        self.real = real
        self.costs: list[int] = []
        self.running = 0
        self.most_running = 0
        self.release = threading.Event()
        self.lock = threading.Lock()

    def __call__(self, password: bytes, hashed_password: bytes) -> bool:
        with self.lock:
            self.costs.append(int(hashed_password[4:6]))
            self.running += 1
            self.most_running = max(self.most_running, self.running)
        try:
            matched = self.real(password, hashed_password)
            if not matched:
                self.release.wait(10)
            return matched
        finally:
            with self.lock:
                self.running -= 1


@pytest.fixture
def recording(monkeypatch):
    recorder = RecordingBcrypt(bcrypt.checkpw)
    monkeypatch.setattr(bcrypt, "checkpw", recorder)
    yield recorder
    recorder.release.set()


USERS = {"prometheus": hashed(b"right", 6).encode(), "other": hashed(b"x", 4).encode()}


@pytest.mark.parametrize("user", ["prometheus", "other", "nobody", "", "prometheus\x00", "é" * 50])
def test_every_user_known_or_not_costs_one_bcrypt_run_at_the_highest_configured_cost_or_its_own(recording, user):
    recording.release.set()
    auth = BasicAuth(USERS)
    assert auth.check(user, "wrong") is Verdict.DENIED
    assert recording.costs == [4 if user == "other" else 6]


@FUZZ
@given(st.text(max_size=200))
def test_any_password_is_denied_or_allowed_never_raises_and_over_72_bytes_is_denied(password):
    auth = BasicAuth({"u": hashed(password.encode("utf-8", "surrogateescape")[:72], 4).encode()})
    verdict = auth.check("u", password)
    too_long = len(password.encode("utf-8", "surrogateescape")) > 72
    assert verdict is (Verdict.DENIED if too_long else Verdict.ALLOWED)


def test_at_most_two_checks_run_at_once_the_rest_are_busy_and_verified_users_pass_from_the_cache(recording):
    auth = BasicAuth(USERS)
    assert auth.check("prometheus", "right") is Verdict.ALLOWED  # verified once, then cached
    with ThreadPoolExecutor(40) as pool:
        flood = [pool.submit(auth.check, "prometheus", f"wrong-{i}") for i in range(40)]
        wait_until(lambda: recording.running == 2, what="two checks to hold the slots")
        busy = wait_until(lambda: sum(f.done() for f in flood) == 38 and 38, what="the rest to be refused")
        assert [f.result() for f in flood if f.done()] == [Verdict.BUSY] * busy
        assert all(auth.check("prometheus", "right") is Verdict.ALLOWED for _ in range(20))
        assert auth.check("nobody", "right") is Verdict.BUSY
        recording.release.set()
    assert recording.most_running == 2
    assert sorted(f.result().value for f in flood) == ["busy"] * 38 + ["denied"] * 2


def test_a_repeated_wrong_password_is_answered_from_the_cache(recording):
    recording.release.set()
    auth = BasicAuth(USERS)
    for _ in range(5):
        assert auth.check("prometheus", "wrong") is Verdict.DENIED
    assert len(recording.costs) == 1


def test_legitimate_scrapes_all_succeed_during_a_flood_of_60_wrong_password_clients(serve, tmp_path, recording):
    web = tmp_path / "web.yml"
    web.write_text(f"basic_auth_users:\n  prometheus: '{hashed(b'right')}'\n")
    server = serve(load_web_config(str(web)), max_requests=10)
    url = f"http://127.0.0.1:{server.server_address[1]}/metrics"
    assert requests.get(url, auth=("prometheus", "right"), timeout=5).status_code == 200
    stop = threading.Event()

    def flood(i: int) -> list[int]:
        statuses = []
        with requests.Session() as session:
            while not stop.is_set() and len(statuses) < 500:
                statuses.append(session.get(url, auth=("prometheus", f"w{i}-{len(statuses)}"), timeout=10).status_code)
        return statuses

    with ThreadPoolExecutor(60) as pool:
        attackers = [pool.submit(flood, i) for i in range(60)]
        wait_until(lambda: recording.running == 2, what="the flood to hold the bcrypt slots")
        legitimate = [requests.get(url, auth=("prometheus", "right"), timeout=5).status_code for _ in range(20)]
        stop.set()
        recording.release.set()
        statuses = [s for a in attackers for s in a.result()]
    assert legitimate == [200] * 20
    assert set(statuses) <= {401, 429, 503} and 429 in statuses


AUTH_HEADERS = {
    "73-byte-password": "Basic " + base64.b64encode(b"prometheus:" + b"r" * 73).decode(),
    "4-kib-password": "Basic " + base64.b64encode(b"prometheus:" + b"\xc3\xa9" * 2048).decode(),
    "unknown-user-long-password": "Basic " + base64.b64encode(b"nobody:" + b"x" * 500).decode(),
    "not-base64": "Basic %%%",
    "not-utf8": "Basic " + base64.b64encode(b"prometheus:\xff\xfe").decode(),
    "no-colon": "Basic " + base64.b64encode(b"prometheus").decode(),
    "nul-in-user": "Basic " + base64.b64encode(b"prom\x00etheus:right").decode(),
    "bearer": "Bearer abc",
}


@pytest.mark.parametrize("header", AUTH_HEADERS.values(), ids=AUTH_HEADERS.keys())
def test_odd_credentials_get_401_without_a_traceback(serve, tmp_path, caplog, header):
    web = tmp_path / "web.yml"
    web.write_text(f"basic_auth_users:\n  prometheus: '{hashed(b'r' * 72)}'\n")
    server = serve(load_web_config(str(web)))
    url = f"http://127.0.0.1:{server.server_address[1]}/metrics"
    with caplog.at_level(logging.WARNING):
        assert requests.get(url, headers={"Authorization": header}, timeout=10).status_code == 401
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert requests.get(url, auth=("prometheus", "r" * 72), timeout=10).status_code == 200


# --- hashes are checked at load --------------------------------------------------------------------------------

BAD_HASHES = {
    "plaintext": "hunter2",
    "truncated": hashed(b"x")[:-1],
    "cost-too-high": hashed(b"x")[:4] + "32" + hashed(b"x")[6:],
    "bad-salt-tail": "$2b$04$" + "z" * 53,
    "md5-crypt": "$1$abcdefgh$abcdefghijklmnopqrstuv",
    "argon2": "$argon2id$v=19$m=65536,t=3,p=4$c2FsdA$aGFzaA",
    "number": "12",
    "newline-inside": hashed(b"x")[:20] + "\\n" + hashed(b"x")[21:],
}


@pytest.mark.parametrize("bad", BAD_HASHES.values(), ids=BAD_HASHES.keys())
def test_a_malformed_hash_is_refused_at_load_in_one_line_naming_file_line_and_user(tmp_path, bad):
    web = tmp_path / "web.yml"
    web.write_text(f'basic_auth_users:\n  good: "{hashed(b"x")}"\n  mallory: "{bad}"\n')
    with pytest.raises(ConfigError) as error:
        load_web_config(str(web))
    assert str(error.value).startswith(f"{web}:3: basic_auth_users.mallory: the password of user \"mallory\"")
    assert "\n" not in str(error.value)


# --- TLS files and empty configs ------------------------------------------------------------------------------

def test_a_missing_certificate_or_key_is_named_with_its_key_and_line(tmp_path, tls_web_config):
    _web, cert = tls_web_config
    web = tmp_path / "web.yml"
    for text, where in [(f"tls_server_config:\n  cert_file: {tmp_path}/gone.pem\n  key_file: {cert}\n",
                         f"{web}:2: tls_server_config.cert_file: cannot read {tmp_path}/gone.pem: no such file"),
                        (f"tls_server_config:\n  cert_file: {cert}\n  key_file: {tmp_path}\n",
                         f"{web}:3: tls_server_config.key_file: cannot read {tmp_path}: not a regular file")]:
        web.write_text(text)
        with pytest.raises(ConfigError) as error:
            load_web_config(str(web))
        assert str(error.value) == where


@pytest.mark.parametrize("text", ["", "# nothing here\n", "http_server_config: {}\n", "basic_auth_users: {}\n"])
def test_a_web_config_that_protects_nothing_is_served_with_a_warning(tmp_path, caplog, text):
    web = tmp_path / "web.yml"
    web.write_text(text)
    with caplog.at_level(logging.WARNING):
        assert load_web_config(str(web)).protects_nothing
    assert [r.getMessage() for r in caplog.records] == [
        f"web config {web} sets neither tls_server_config nor basic_auth_users: serving plain HTTP without "
        "authentication"]


# --- reload -----------------------------------------------------------------------------------------------------

def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


@pytest.fixture
def reloading(serve, tmp_path):
    web = tmp_path / "web.yml"
    web.write_text(f"basic_auth_users:\n  prometheus: '{hashed(b'old')}'\n")
    server = serve(load_web_config(str(web)))
    reloader = WebConfigReloader(str(web), server, interval=0.05).start(load_web_config(str(web)))
    yield web, f"http://127.0.0.1:{server.server_address[1]}/metrics", reloader
    reloader.close()


def status(url: str, password: str) -> int:
    return requests.get(url, headers=basic("prometheus", password), timeout=5).status_code


@pytest.mark.parametrize("trigger", ["request", "file-change"])
def test_a_rotated_password_replaces_the_old_one_on_request_or_file_change(reloading, trigger):
    web, url, reloader = reloading
    assert status(url, "old") == 200  # now cached too: a reload must drop the cache
    text = f"basic_auth_users:\n  prometheus: '{hashed(b'new')}'\n"
    if trigger == "request":
        reloader._interval = 3600  # only the request may trigger it
        reloader._wake.set()
        web.write_text(text)
        reloader.request()
    else:
        web.write_text(text)
    wait_until(lambda: status(url, "new") == 200, what="the new password to work")
    assert status(url, "old") == 401


BROKEN = {
    "bad-yaml": "basic_auth_users: [\n",
    "bad-hash": "basic_auth_users:\n  prometheus: plain\n",
    "huge-int": "basic_auth_users:\n  prometheus: " + "9" * 5000 + "\n",
    "nul": "basic_auth_users:\n  prometheus: \x00\n",
    "tls-on": "tls_server_config:\n  cert_file: /nonexistent\n  key_file: /nonexistent\n",
    "unknown-key": "basic_auth_user: {}\n",
}


@pytest.mark.parametrize("text", BROKEN.values(), ids=BROKEN.keys())
def test_a_broken_web_config_keeps_the_last_good_one_with_one_line_naming_the_file(reloading, caplog, text):
    web, url, reloader = reloading
    with caplog.at_level(logging.ERROR):
        web.write_text(text)
        assert reloader.reload() is False
    (record,) = caplog.records
    assert record.getMessage().startswith("web config reload failed, keeping the last good one: ")
    assert str(web) in record.getMessage() and "\n" not in record.getMessage()
    assert status(url, "old") == 200 and status(url, "wrong") == 401


def test_switching_tls_on_by_reload_is_refused_and_plain_http_keeps_serving(reloading, caplog, tls_web_config):
    tls_web, _cert = tls_web_config
    web, url, reloader = reloading
    web.write_text(tls_web.read_text())
    with caplog.at_level(logging.ERROR):
        assert reloader.reload() is False
    assert "TLS cannot be switched on or off while serving" in caplog.text and str(web) in caplog.text
    assert status(url, "old") == 200

