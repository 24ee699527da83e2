"""Local-stack configs derived from the repository's real prometheus/ and alertmanager/ files.

The quick-start demo and the end-to-end tests run Prometheus and Alertmanager on loopback. Rather than keep
second copies of their configs, they derive them here from the real files: only addresses, intervals and
receivers' endpoints change.
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]  # harness/ sits at the repository root


def prometheus_config(directory: Path, exporter: str, alertmanager: str | None, interval: str = "1s",
                      alert_for: str | None = "1s") -> Path:
    """Write a Prometheus config scraping `exporter` (host:port) with the project's rules; return its path.

    `alert_for` replaces every alert's `for` duration; None keeps the production values.
    """
    config = yaml.safe_load((REPO / "prometheus" / "prometheus.yml").read_text())
    config["global"].update(scrape_interval=interval, evaluation_interval=interval)
    config["scrape_configs"] = [{"job_name": "ml-cost-exporter", "static_configs": [{"targets": [exporter]}]}]
    if alertmanager:
        config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] = [alertmanager]
    else:
        del config["alerting"]
    rules_dir = directory / "rules"
    rules_dir.mkdir(parents=True, exist_ok=True)
    for rules in (REPO / "prometheus" / "rules").glob("*.yml"):
        text = rules.read_text()
        if alert_for is not None:
            text = re.sub(r"(?m)^(\s+for:) \S+$", rf"\1 {alert_for}", text)
        (rules_dir / rules.name).write_text(text)
    config["rule_files"] = [str(rules_dir / "*.yml")]
    path = directory / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    return path


def alertmanager_config(directory: Path, sink_url: str, group_wait: str | None = None, repo: Path = REPO,
                        templates: str | None = None) -> Path:
    """Write the project's Alertmanager config with every receiver posting to `sink_url`; return its path.

    Pages go to `{sink_url}/pagerduty`, chat to `{sink_url}/slack`, the Watchdog to `{sink_url}/watchdog`.
    `group_wait` (and group_interval) replace every route's, for tests; None keeps the production values.
    """
    config = yaml.safe_load((repo / "alertmanager" / "alertmanager.yml").read_text())
    config["templates"] = [templates or str(repo / "alertmanager" / "templates" / "*.tmpl")]
    if group_wait is not None:
        for route in [config["route"], *config["route"]["routes"]]:
            route.update(group_wait=group_wait, group_interval=group_wait)
    secrets = directory / "secrets"
    secrets.mkdir(parents=True, exist_ok=True)
    (secrets / "pagerduty-routing-key").write_text("local-routing-key")
    (secrets / "slack-webhook-url").write_text(f"{sink_url}/slack")
    for receiver in config["receivers"]:
        for pagerduty in receiver.get("pagerduty_configs", []):
            pagerduty.update(routing_key_file=str(secrets / "pagerduty-routing-key"), url=f"{sink_url}/pagerduty")
        for slack in receiver.get("slack_configs", []):
            slack["api_url_file"] = str(secrets / "slack-webhook-url")
        for hook in receiver.get("webhook_configs", []):
            hook["url"] = f"{sink_url}/watchdog"
    path = directory / "alertmanager.yml"
    path.write_text(yaml.safe_dump(config, allow_unicode=True))
    return path


def main(argv: list[str] | None = None) -> int:
    """Write the demo Alertmanager config; docker-compose runs this before Alertmanager starts."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m harness.stackconfig", description=main.__doc__)
    parser.add_argument("--repo", type=Path, default=REPO, help="Directory holding alertmanager/.")
    parser.add_argument("--out", type=Path, required=True, help="Directory to write alertmanager.yml into.")
    parser.add_argument("--sink", required=True, help="Base URL of the webhook sink.")
    parser.add_argument("--templates", help="Template glob as Alertmanager will see it.")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    print(alertmanager_config(args.out, args.sink, repo=args.repo, templates=args.templates))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
