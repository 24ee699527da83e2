"""How the exporter talks to one peer, spelled as in Prometheus' scrape config.

`authorization`, `basic_auth`, `tls_config` and `follow_redirects` are read from a
server, gateway or dcgm section, strictly like the rest of the config. Secrets are
named by file only (read at each fetch when they change), never written inline.
"""

from __future__ import annotations

from ml_cost_exporter.config.located import Section
from ml_cost_exporter.httpclient import Authorization, BasicAuth, HttpSettings, TLSConfig

_INLINE = "secrets are not written in the config: name a file with {key}_file (a mounted Secret)"


def _refuse_inline(section: Section, key: str) -> None:
    item = section.raw(key)
    if item is not None:
        raise item.error(_INLINE.format(key=key))


def _path(section: Section, key: str, required: bool = False) -> str | None:
    value = section.string(key, required=required)
    if value is not None and not value.strip():
        raise section.raw(key).error("expected a file path, got an empty string")
    return value


def _authorization(section: Section) -> Authorization:
    auth_type = section.string("type", "Bearer")
    if not auth_type or any(c.isspace() for c in auth_type) or not auth_type.isprintable():
        raise section.raw("type").error(f'"{auth_type}" is not an authorization type such as "Bearer"')
    if auth_type.lower() == "basic":
        raise section.raw("type").error('use basic_auth for the "Basic" type')
    _refuse_inline(section, "credentials")
    authorization = Authorization(auth_type, _path(section, "credentials_file", required=True))
    section.finish()
    return authorization


def _basic_auth(section: Section) -> BasicAuth:
    username = section.string("username", required=True)
    if ":" in username or not username.isprintable():
        raise section.raw("username").error("a basic_auth username holds no colon or control character")
    _refuse_inline(section, "password")
    basic = BasicAuth(username, _path(section, "password_file"))
    section.finish()
    return basic


def _tls_config(section: Section) -> TLSConfig:
    tls = TLSConfig(ca_file=_path(section, "ca_file"), cert_file=_path(section, "cert_file"),
                    key_file=_path(section, "key_file"), server_name=section.string("server_name"),
                    insecure_skip_verify=section.boolean("insecure_skip_verify", False))
    if (tls.cert_file is None) != (tls.key_file is None):
        given = "cert_file" if tls.cert_file is not None else "key_file"
        raise section.raw(given).error("a client certificate needs both cert_file and key_file")
    section.finish()
    return tls


def parse_http_settings(section: Section) -> HttpSettings:
    """The peer's credentials, TLS options and redirect policy from its section (which the caller finishes)."""
    authorization_section = section.section("authorization")
    basic_section = section.section("basic_auth")
    if authorization_section is not None and basic_section is not None:
        raise basic_section.located.error("give authorization or basic_auth, not both")
    tls_section = section.section("tls_config")
    return HttpSettings(
        authorization=_authorization(authorization_section) if authorization_section is not None else None,
        basic_auth=_basic_auth(basic_section) if basic_section is not None else None,
        tls=_tls_config(tls_section) if tls_section is not None else TLSConfig(),
        follow_redirects=section.boolean("follow_redirects", True),
    )
