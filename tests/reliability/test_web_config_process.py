"""The exporter process and its web config: rotation by SIGHUP, a missing certificate named at start."""

from __future__ import annotations

import signal
import subprocess
import sys

import bcrypt
import requests

from tests.conftest import free_port, wait_until


def hashed(password: bytes) -> str:
    return bcrypt.hashpw(password, bcrypt.gensalt(rounds=4)).decode()


def test_sighup_puts_a_rotated_password_in_force_and_a_broken_file_keeps_it(tmp_path):
    web = tmp_path / "web.yml"
    web.write_text(f"basic_auth_users:\n  prometheus: '{hashed(b'old')}'\n")
    port = free_port()
    log = open(tmp_path / "exporter.log", "wb")  # noqa: SIM115 - closed below
    exporter = subprocess.Popen([sys.executable, "-m", "ml_cost_exporter", "--web.config.file", str(web),
                                 "--web.listen-address", f"127.0.0.1:{port}", "--no-collector.gpu"],
                                stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/metrics"

    def status(password: str) -> int:
        return requests.get(url, auth=("prometheus", password), timeout=5).status_code

    try:
        wait_until(lambda: status("old") == 200, what="the exporter")
        web.write_text(f"basic_auth_users:\n  prometheus: '{hashed(b'new')}'\n")
        exporter.send_signal(signal.SIGHUP)
        wait_until(lambda: status("new") == 200, what="the rotated password")
        assert status("old") == 401
        web.write_text("basic_auth_users:\n  prometheus: not-a-hash\n")
        exporter.send_signal(signal.SIGHUP)
        wait_until(lambda: b"web config reload failed" in (tmp_path / "exporter.log").read_bytes(),
                   what="the reload error")
        assert status("new") == 200 and exporter.poll() is None
    finally:
        exporter.terminate()
        exporter.wait(20)
        log.close()
    lines = (tmp_path / "exporter.log").read_text().splitlines()
    assert sum("web config reloaded from" in line for line in lines) == 1
    (failed,) = [line for line in lines if "web config reload failed" in line]
    assert f'{web}:2: basic_auth_users.prometheus: the password of user \\"prometheus\\" must be' in failed


def test_a_missing_certificate_exits_2_naming_the_file(tmp_path):
    web = tmp_path / "web.yml"
    web.write_text(f"tls_server_config:\n  cert_file: {tmp_path}/cert.pem\n  key_file: {tmp_path}/key.pem\n")
    result = subprocess.run([sys.executable, "-m", "ml_cost_exporter", "--web.config.file", str(web),
                             "--web.listen-address", "127.0.0.1:0", "--no-collector.gpu"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"ml-cost-exporter: {web}:2: tls_server_config.cert_file: cannot read {tmp_path}/cert.pem: no such file"]
