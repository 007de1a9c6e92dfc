"""The stack's Prometheus and Grafana (issue 19): the alert rules parse, and every metric the
rules and the dashboard use is one coterm exports; the scrape targets, rule file and dashboard
paths agree with docker-compose.yml."""

import json
import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
SERVICES = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
FAMILY = re.compile(r'(Gauge|Counter|Histogram)MetricFamily\(\s*"(coterm_\w+)"')


def exported() -> set[str]:
    """Every sample name coterm's collectors can expose, read from the code that makes them."""
    names: set[str] = set()
    for path in [*ROOT.glob("processor/**/*.py"), *ROOT.glob("projections/**/*.py")]:
        for kind, name in FAMILY.findall(path.read_text()):
            names |= {"Gauge": {name}, "Counter": {f"{name}_total"},
                      "Histogram": {f"{name}_bucket", f"{name}_sum", f"{name}_count"}}[kind]
    return names


def used_in(text: str) -> set[str]:
    return set(re.findall(r"\bcoterm_\w+", text))


def alert_rules() -> list[dict]:  # type: ignore[type-arg]
    document = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())
    return [rule for group in document["groups"] for rule in group["rules"]]


def dashboard_exprs() -> list[str]:
    dashboard = json.loads((DEPLOY / "grafana" / "dashboards" / "coterm.json").read_text())
    return [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]


def test_the_extraction_finds_what_the_readme_lists() -> None:
    names = exported()
    assert {"coterm_messages_total", "coterm_vendor_call_seconds_bucket", "coterm_ready",
            "coterm_orders_partitions_held", "coterm_dead_letters"} <= names


def test_the_alert_rules_parse_and_cover_what_operators_must_hear() -> None:
    rules = alert_rules()
    for rule in rules:
        assert set(rule) >= {"alert", "expr", "for", "labels", "annotations"}, rule
        assert re.fullmatch(r"\d+[smh]", rule["for"]) and rule["labels"]["severity"] in ("info", "warning", "critical")
        assert rule["annotations"]["summary"]
        expr = rule["expr"]
        assert expr.count("(") == expr.count(")") and expr.count("[") == expr.count("]") and expr.count("{") == expr.count("}")
    covered = " ".join(rule["expr"] for rule in rules)
    for metric in ("coterm_consumer_lag_messages", "coterm_vendor_calls_total", "coterm_outbox_backlog_events",
                   'coterm_messages_total{outcome="dead_lettered"}', "coterm_ready"):
        assert metric in covered, f"no alert on {metric}"


def test_every_metric_the_rules_and_the_dashboard_use_is_exported() -> None:
    names = exported()
    unknown = {name for expr in [*(r["expr"] for r in alert_rules()), *dashboard_exprs()] for name in used_in(expr)} - names
    assert unknown == set(), f"not exported by coterm: {unknown}"
    panels = " ".join(dashboard_exprs())
    for shown in ("coterm_messages_total", "coterm_consumer_lag_messages", "coterm_halves_waiting",
                  "coterm_vendor_call_seconds_bucket", "coterm_vendor_calls_total", "coterm_outbox_backlog_events",
                  "coterm_dead_letters"):
        assert shown in panels, f"the dashboard does not show {shown}"


def test_scrape_targets_rule_file_and_dashboards_agree_with_the_stack() -> None:
    prometheus = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    mounts = dict(reversed(v.split(":")[:2]) for v in SERVICES["prometheus"]["volumes"])
    config_dir = next(target for target, source in mounts.items() if source == "./deploy/prometheus")
    for rule_file in prometheus["rule_files"]:
        assert rule_file.startswith(config_dir + "/") and (DEPLOY / "prometheus" / Path(rule_file).name).is_file()
    jobs = {job["job_name"]: job for job in prometheus["scrape_configs"]}
    [sd] = jobs["coterm-processor"]["dns_sd_configs"]
    command = SERVICES[sd["names"][0]]["command"]
    assert str(sd["port"]) == command[command.index("--metrics-port") + 1]
    [static] = jobs["coterm-dashboard"]["static_configs"]
    host, port = static["targets"][0].split(":")
    assert SERVICES[host]["command"][SERVICES[host]["command"].index("--port") + 1] == port
    grafana = {v.split(":")[1]: v.split(":")[0] for v in SERVICES["grafana"]["volumes"]}
    provider = yaml.safe_load((DEPLOY / "grafana" / "provisioning" / "dashboards" / "coterm.yml").read_text())
    assert grafana[provider["providers"][0]["options"]["path"]] == "./deploy/grafana/dashboards"
    [source] = yaml.safe_load((DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yml").read_text())[
        "datasources"]
    assert source["url"] == "http://prometheus:9090" and "prometheus" in SERVICES
    dashboard = json.loads((DEPLOY / "grafana" / "dashboards" / "coterm.json").read_text())
    assert {p["datasource"]["uid"] for p in dashboard["panels"]} == {source["uid"]}
