"""The alerting configuration as code stays valid: Prometheus's and Alertmanager's own checkers
accept the checked-in files and the ones `newsflow stack up` renders, every alert of the
contract has a rule with a severity and annotations, and every rule has a `promtool test
rules` case where it fires and one where it does not. (promtool and amtool come from Debian's
`prometheus` and `prometheus-alertmanager`; infra/test-deps.sh installs them for CI.)"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from pipeline.core.errors import StackError
from pipeline.core.settings import Settings
from pipeline.stack import alertmanager, daemon, prometheus

ROOT = Path(__file__).resolve().parents[3]
PROM = ROOT / "infra" / "prometheus"
RULES = PROM / "rules" / "newsflow.rules.yml"
RULE_TESTS = PROM / "rules" / "newsflow.rules.test.yml"
AM_CONFIG = ROOT / "infra" / "alertmanager" / "alertmanager.yml"
CONTRACT = {
    "WorkerDown", "SchedulerDown", "WebDown", "WorkerStuck", "ConsumerLagHigh",
    "DeadLetterRateHigh", "LatencyP95High", "DatabaseErrors", "DriftWarn", "DriftDetected",
    "EstimatedAccuracyDrop", "ReviewedAccuracyDrop", "RetrainingFailed", "RetrainingRefused",
    "ModelDownloadRefused", "ReviewQueueEmpty", "ReviewQueueOverBudget",
}  # fmt: skip


def _tool(name: str, package: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not installed (Debian package {package}; infra/test-deps.sh)")
    return path


def _run(*argv: str, cwd: Path | None = None) -> str:
    proc = subprocess.run(argv, capture_output=True, text=True, cwd=cwd, timeout=60, check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"{' '.join(argv)} exited {proc.returncode}:\n{out}"
    return out


def _rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load(RULES.read_text())
    return [rule for group in doc["groups"] for rule in group["rules"]]


def test_promtool_unit_tests_pass() -> None:
    out = _run(_tool("promtool", "prometheus"), "test", "rules", RULE_TESTS.name, cwd=RULES.parent)
    assert "SUCCESS" in out


def test_promtool_accepts_the_rules_and_the_example_scrape_config() -> None:
    promtool = _tool("promtool", "prometheus")
    assert f"SUCCESS: {len(CONTRACT)} rules found" in _run(promtool, "check", "rules", str(RULES))
    _run(promtool, "check", "config", str(PROM / "prometheus.yml"))


def test_amtool_accepts_the_alertmanager_config() -> None:
    _run(_tool("amtool", "prometheus-alertmanager"), "check-config", str(AM_CONFIG))


def test_every_alert_of_the_contract_has_one_rule_with_severity_and_annotations() -> None:
    rules = _rules()
    names = [r["alert"] for r in rules]
    assert sorted(names) == sorted(CONTRACT)
    for rule in rules:
        assert rule["labels"]["severity"] in {"page", "ticket"}, rule["alert"]
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]


def test_every_rule_has_a_firing_and_a_silent_promtool_case() -> None:
    cases: dict[str, set[bool]] = {}
    for test in yaml.safe_load(RULE_TESTS.read_text())["tests"]:
        for case in test.get("alert_rule_test", []):
            cases.setdefault(case["alertname"], set()).add(bool(case.get("exp_alerts")))
    missing = {
        name: cases.get(name, set()) for name in CONTRACT if cases.get(name) != {True, False}
    }
    assert not missing, f"rules without both a firing and a silent case: {missing}"


@pytest.fixture
def default_ports(monkeypatch: pytest.MonkeyPatch) -> None:
    """The settings' own port defaults, whatever ports this shell's stack was moved to."""
    for name in os.environ:
        if name.startswith("NEWSFLOW_") and name.endswith("_PORT"):
            monkeypatch.delenv(name)


@pytest.mark.usefixtures("default_ports")
def test_default_settings_render_the_checked_in_scrape_config(tmp_path: Path) -> None:
    rendered = prometheus.render_config(Settings(home=tmp_path))
    example = yaml.safe_load((PROM / "prometheus.yml").read_text())
    assert rendered["rule_files"] == [str(PROM.resolve() / "rules" / "*.rules.yml")]
    example["rule_files"] = rendered["rule_files"]  # the example's path is relative
    assert rendered == example


@pytest.mark.usefixtures("default_ports")
def test_rendered_configs_pass_the_checkers(tmp_path: Path) -> None:
    promtool = _tool("promtool", "prometheus")
    amtool = _tool("amtool", "prometheus-alertmanager")
    settings = Settings(
        home=tmp_path,
        prometheus_scrape_interval_s=1.5,
        prometheus_evaluation_interval_s=2,
        scheduler_metrics_port=0,
        prometheus_worker_targets="10.0.0.5:9108, 10.0.0.6:9108",
        alert_webhook_url="https://hooks.example.org/newsflow",
    )
    config = prometheus.render_config(settings)
    assert config["global"]["scrape_interval"] == "1500ms"
    assert config["global"]["scrape_timeout"] == "1500ms"
    jobs = {c["job_name"]: c["static_configs"][0]["targets"] for c in config["scrape_configs"]}
    assert jobs == {
        "newsflow-worker": ["10.0.0.5:9108", "10.0.0.6:9108"],
        "newsflow-web": ["127.0.0.1:9110"],  # the scheduler's port 0: no job
    }
    _run(promtool, "check", "config", str(prometheus.write_config(settings)))
    _run(amtool, "check-config", str(alertmanager.write_config(settings)))


def test_a_password_in_the_webhook_url_stays_out_of_the_alertmanager_config(
    tmp_path: Path,
) -> None:
    amtool = _tool("amtool", "prometheus-alertmanager")
    secret = "pa55-word-not-in-config"
    settings = Settings(home=tmp_path, alert_webhook_url=f"http://oncall:{secret}@10.1.1.1/hook")
    path = alertmanager.write_config(settings)
    _run(amtool, "check-config", str(path))
    text = path.read_text()
    assert secret not in text and "http://10.1.1.1/hook" in text
    password_file = tmp_path / "alertmanager" / "webhook-password"
    assert password_file.read_text() == secret
    for private in (path, password_file):
        assert stat.S_IMODE(private.stat().st_mode) == 0o600


def test_without_a_webhook_url_the_receiver_has_no_webhook(tmp_path: Path) -> None:
    amtool = _tool("amtool", "prometheus-alertmanager")
    settings = Settings(home=tmp_path, alert_webhook_url=None)
    doc = alertmanager.render_config(settings)
    assert doc["receivers"] == [{"name": "newsflow-webhook"}]
    _run(amtool, "check-config", str(alertmanager.write_config(settings)))


def test_a_missing_binary_says_which_package_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # nothing on PATH
    with pytest.raises(StackError, match="apt-get install -y prometheus prometheus-alertmanager"):
        daemon.find_binary("prometheus", install=False)
