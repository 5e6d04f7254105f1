"""The edge box (deploy/compose.yaml): Prometheus config and alerts, Grafana, compose file."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from service.api.app import create_app
from service.settings import Settings
from tests.deploy.conftest import DEPLOY, parse_cli, settings_from_env

PROMETHEUS = DEPLOY / "prometheus"
GRAFANA = DEPLOY / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "softsensor.json"
COMPOSE = DEPLOY / "compose.yaml"
METRIC = re.compile(r"\bsoftsensor_[a-z0-9_]+")
SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "summary": ("", "_count", "_sum", "_created"),
}


def _load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def _dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return data


def _panel_exprs(dashboard: dict[str, Any]) -> dict[str, list[str]]:
    return {p["title"]: [t["expr"] for t in p["targets"]] for p in dashboard["panels"]}


def _alert_rules() -> list[dict[str, Any]]:
    groups = _load_yaml(PROMETHEUS / "alerts.yml")["groups"]
    return [rule for group in groups for rule in group["rules"]]


@pytest.fixture(scope="module")
def exposed(tmp_path_factory: pytest.TempPathFactory) -> set[str]:
    """Every sample name the service can expose, read from a real /metrics of a real app.

    An empty registry is enough: /metrics answers while not ready and announces every family
    (HELP/TYPE); the sample names follow from each family's type.
    """
    tmp = tmp_path_factory.mktemp("metrics")
    settings = Settings(registry=tmp / "models", state_dir=tmp / "state", watch_interval_s=0)
    with TestClient(create_app(settings)) as client:
        text = client.get("/metrics").text
    names: set[str] = set()
    for family in text_string_to_metric_families(text):
        names.add(family.name)
        names.update(family.name + suffix for suffix in SUFFIXES.get(family.type, ()))
    assert "softsensor_feature_psi" in names and "softsensor_http_requests_total" in names
    return names


def _promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.skip("promtool not installed (Debian: apt-get install prometheus)")
    return path


def _run(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in args], capture_output=True, text=True, cwd=cwd, timeout=120
    )


# ------------------------------------------------------------------ Prometheus


def test_promtool_accepts_the_prometheus_config() -> None:
    """`promtool check config` passes, rule files included."""
    result = _run(_promtool(), "check", "config", PROMETHEUS / "prometheus.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 rule files found" in result.stdout


def test_promtool_accepts_the_alert_rules() -> None:
    """`promtool check rules` passes."""
    result = _run(_promtool(), "check", "rules", PROMETHEUS / "alerts.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_alerts_fire_when_and_only_when_specified() -> None:
    """The rule unit tests pass: each stream alarm carried at once and per stream, a stream
    silent for 15 min (wall clock) after 5 min, a model not ready after 2 min, ..."""
    result = _run(_promtool(), "test", "rules", "alerts_test.yml", cwd=PROMETHEUS)
    assert result.returncode == 0, result.stdout + result.stderr


def _per_stream(alarm: str) -> str:
    """A stream alarm's rule: one alert per (model, stream), however many replicas say so."""
    return f'max by (model, stream, alarm) (softsensor_alarm{{alarm="{alarm}"}}) == 1'


@pytest.mark.parametrize(
    ("alert", "expr", "duration"),
    [
        ("SoftSensorInputDrift", _per_stream("drift"), None),
        ("SoftSensorResidualDrift", _per_stream("residual"), None),
        ("SoftSensorFrozenSensor", _per_stream("frozen"), None),
        ("SoftSensorAnalyzerSilent", _per_stream("analyzer_silent"), None),
        ("SoftSensorModelNotReady", "softsensor_model_ready == 0", "2m"),
        ("SoftSensorDown", 'up{job="softsensor"} == 0', "2m"),
    ],
)
def test_alert_rule_is_the_specified_one(alert: str, expr: str, duration: str | None) -> None:
    """Each required alert exists with the specified expression and hold time."""
    rules = {r["alert"]: r for r in _alert_rules()}
    assert rules[alert]["expr"] == expr
    assert rules[alert].get("for") == duration
    assert rules[alert]["labels"]["severity"] in {"warning", "critical"}


def test_alerts_use_only_metrics_the_service_exposes(exposed: set[str]) -> None:
    """No alert watches a metric name the service does not have (it would never fire)."""
    for rule in _alert_rules():
        unknown = set(METRIC.findall(rule["expr"])) - exposed
        assert not unknown, f"{rule['alert']}: {unknown}"


def test_prometheus_scrapes_the_compose_service() -> None:
    """The scrape target is the compose service on the port the image listens on."""
    config = _load_yaml(PROMETHEUS / "prometheus.yml")
    job = next(j for j in config["scrape_configs"] if j["job_name"] == "softsensor")
    assert job["metrics_path"] == "/metrics"
    assert job["static_configs"][0]["targets"] == ["softsensor:8000"]
    assert "softsensor" in _load_yaml(COMPOSE)["services"]


# ------------------------------------------------------------------ Grafana


def test_dashboard_has_the_expected_panels() -> None:
    """Estimate vs lab, bias, PSI per sensor, latency quantiles, request rate and the
    coalescer's batch sizes are there."""
    panels = _panel_exprs(_dashboard())
    wanted = {
        "Estimate vs lab": ["softsensor_estimate", "softsensor_lab_value"],
        "Bias": ["softsensor_bias"],
        "Input drift: PSI per sensor": ["softsensor_feature_psi"],
        "Alarms per stream": ["softsensor_alarm"],
        "Rows by status": ["softsensor_rows_by_status_total"],
        "Request latency (quantiles)": ["softsensor_http_request_duration_seconds_bucket"],
        "Request rate": ["softsensor_http_requests_total"],
        "Seconds since each sensor changed": ["softsensor_feature_unchanged_seconds"],
        "Model ready": ["softsensor_model_ready"],
        "Requests per onnxruntime call (coalescing)": [
            "softsensor_predict_batch_requests_sum",
            "softsensor_predict_batch_requests_count",
            "softsensor_predict_batch_requests_bucket",
        ],
    }
    for title, metrics in wanted.items():
        assert title in panels, f"no panel {title!r}"
        used = {m for expr in panels[title] for m in METRIC.findall(expr)}
        assert set(metrics) <= used, f"{title}: uses {used}"
    latency = panels["Request latency (quantiles)"]
    quantiles = [re.findall(r"histogram_quantile\((0\.\d+),", e) for e in latency]
    assert quantiles == [["0.5"], ["0.95"], ["0.99"]]
    assert all("by (le, endpoint)" in e for e in latency)


def test_dashboard_uses_only_metrics_the_service_exposes(exposed: set[str]) -> None:
    """Every metric name in every panel query is one the service's /metrics announces."""
    dashboard = _dashboard()
    queries = [*(e for exprs in _panel_exprs(dashboard).values() for e in exprs)]
    queries += [v["definition"] for v in dashboard["templating"]["list"]]
    for query in queries:
        unknown = set(METRIC.findall(query)) - exposed
        assert not unknown, f"{query}: {unknown}"


def test_dashboard_queries_are_valid_promql(tmp_path: Path) -> None:
    """promtool parses every panel query (Grafana's variables replaced by what they expand to)."""
    promtool = _promtool()
    rules = []
    for i, expr in enumerate(e for exprs in _panel_exprs(_dashboard()).values() for e in exprs):
        promql = expr.replace("$__rate_interval", "1m").replace("$model", ".*")
        assert "$" not in promql, f"unexpanded variable in {expr}"
        rules.append({"record": f"dashboard:query{i}", "expr": promql})
    path = tmp_path / "dashboard_rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = _run(promtool, "check", "rules", path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_grafana_provisioning_points_at_the_dashboard_and_datasource() -> None:
    """The provisioned datasource uid is the one panels use; the dashboard path is mounted."""
    datasources = _load_yaml(GRAFANA / "provisioning" / "datasources" / "prometheus.yaml")
    (source,) = datasources["datasources"]
    assert source["type"] == "prometheus" and source["url"] == "http://prometheus:9090"
    dashboard = _dashboard()
    uids = {p["datasource"]["uid"] for p in dashboard["panels"]}
    uids |= {t["datasource"]["uid"] for p in dashboard["panels"] for t in p["targets"]}
    assert uids == {source["uid"]}
    providers = _load_yaml(GRAFANA / "provisioning" / "dashboards" / "softsensor.yaml")
    (provider,) = providers["providers"]
    grafana = _load_yaml(COMPOSE)["services"]["grafana"]
    mounts = dict(v.split(":")[:2] for v in grafana["volumes"])
    assert mounts["./grafana/dashboards"] == provider["options"]["path"]
    assert mounts["./grafana/provisioning"] == "/etc/grafana/provisioning"
    panel_ids = [p["id"] for p in dashboard["panels"]]
    assert len(panel_ids) == len(set(panel_ids))


# ------------------------------------------------------------------ compose


def test_compose_has_the_expected_services_and_volumes() -> None:
    """Service, Prometheus, Grafana, the retrain job; registry read-only, state in a volume."""
    compose = _load_yaml(COMPOSE)
    services = compose["services"]
    assert set(services) == {"softsensor", "prometheus", "grafana", "retrain", "postgres"}
    assert set(compose["volumes"]) >= {"registry", "state", "prometheus-data", "grafana-data"}
    app = services["softsensor"]
    assert "registry:/models:ro" in app["volumes"]
    assert "state:/var/lib/softsensor" in app["volumes"]
    assert app["build"] == {"context": "..", "target": "serving"}
    assert app["read_only"] is True and app["cap_drop"] == ["ALL"]
    assert app["user"] == "10001:10001"
    assert "/opt/venv/bin/python" in app["healthcheck"]["test"]
    assert "/v2/health/ready" in " ".join(app["healthcheck"]["test"])
    retrain = services["retrain"]
    assert retrain["profiles"] == ["retrain"] and retrain["build"]["target"] == "training"
    assert "registry:/models" in retrain["volumes"]  # the job writes new versions


def test_compose_postgres_is_optional() -> None:
    """PostgreSQL only in the `fleet` profile: the edge box's service neither needs nor waits
    for it, and keeps its SQLite state unless its env file names a state URL."""
    services = _load_yaml(COMPOSE)["services"]
    assert services["postgres"]["profiles"] == ["fleet"]
    assert "postgres-data:/var/lib/postgresql/data" in services["postgres"]["volumes"]
    app = services["softsensor"]
    assert "profiles" not in app and "postgres" not in app.get("depends_on", [])
    assert "SOFTSENSOR_STATE_URL" not in app["environment"]


def test_compose_bind_mounts_exist() -> None:
    """Every ./path the compose file mounts is in the repository beside it."""
    for name, service in _load_yaml(COMPOSE)["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (DEPLOY / source).exists(), f"{name}: {source} missing"


def test_compose_environment_is_valid_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """The service's environment is made of real settings that validate, defaults expanded."""
    env = _load_yaml(COMPOSE)["services"]["softsensor"]["environment"]
    expanded = {k: re.sub(r"\$\{[A-Z_]+:-(.*)\}", r"\1", str(v)) for k, v in env.items()}
    settings = settings_from_env(expanded, monkeypatch)
    assert settings.models == ["column_a"]
    assert settings.admin_token is None  # never in the compose file: softsensor.env


def test_compose_retrain_command_is_a_valid_softsensor_command() -> None:
    """The retrain service's command parses with the real CLI and uses the mounted registry."""
    args = parse_cli(_load_yaml(COMPOSE)["services"]["retrain"]["command"])
    assert args.command == "retrain" and str(args.registry) == "/models"
    assert str(args.data).startswith("/data/") and str(args.report_dir).startswith("/data/")
