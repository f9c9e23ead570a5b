"""The ops kit (ops/): Prometheus' alert rules and the Grafana dashboard, against a real GET /metrics.

promtool (Debian's prometheus package, from scripts/install-system-packages) checks the rules, runs
their unit tests (ops/prometheus/alerts.test.yml) and checks the dashboard's queries; without it
those tests skip, unless OFFLOAD_REQUIRE_PROMTOOL=1 (CI) makes them fail. The queries of both
files are also parsed here (promql-parser, which follows Prometheus' grammar) for every metric and
label they read, which a scrape of the app on fakeredis must export.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import promql_parser
import pytest
import yaml
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from redis import Redis

from service.clock.clock import Lease
from service.worker.main import build_worker

ROOT = Path(__file__).resolve().parents[2]
ALERTS = ROOT / "ops" / "prometheus" / "alerts.yml"
ALERT_TESTS = ROOT / "ops" / "prometheus" / "alerts.test.yml"
DASHBOARD = ROOT / "ops" / "grafana" / "offload.json"
README = ROOT / "README.md"
REQUIRE_PROMTOOL = "OFFLOAD_REQUIRE_PROMTOOL"
PROMTOOL_TIMEOUT = 60
# Series Prometheus makes itself for each target: never in a scrape.
PROMETHEUS_SERIES = {"up"}
# Labels Prometheus gives every series it scrapes.
TARGET_LABELS = {"job", "instance"}
# What Grafana puts in place of its variables before a query reaches Prometheus.
GRAFANA_VARIABLES = {"$__rate_interval": "5m", "$job": "offload"}
# Grafana's datasource reference, a variable the dashboard defines: importable into any Grafana.
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}

# --- the files -----------------------------------------------------------------------------------


def alert_rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def dashboard_panels() -> list[dict[str, Any]]:
    return [panel for panel in dashboard()["panels"] if panel["type"] != "row"]


def dashboard_queries() -> list[str]:
    """Each panel target's PromQL, with Grafana's variables replaced as Grafana does."""
    queries = []
    for panel in dashboard_panels():
        for target in panel["targets"]:
            query = target["expr"]
            for variable, value in GRAFANA_VARIABLES.items():
                query = query.replace(variable, value)
            queries.append(query)
    return queries


def queries() -> dict[str, list[str]]:
    return {"alerts": [rule["expr"] for rule in alert_rules()], "dashboard": dashboard_queries()}


# --- what a query reads --------------------------------------------------------------------------


@dataclass
class Reads:
    """The series selectors of a query, and the labels it groups or matches by."""

    selectors: list[tuple[str, list[tuple[str, promql_parser.MatchOp, str]]]] = field(default_factory=list)
    grouping: set[str] = field(default_factory=set)


def reads(query: str) -> Reads:
    """What a query reads, from Prometheus' grammar (a syntax error raises ValueError)."""
    found = Reads()

    def visit(node: promql_parser.Expr) -> None:
        if isinstance(node, promql_parser.VectorSelector):
            assert node.name, f"a selector without a metric name in {query!r}"
            matchers = [(m.name, m.op, m.value) for m in node.matchers.matchers]
            found.selectors.append((node.name, matchers))
        elif isinstance(node, promql_parser.AggregateExpr) and node.modifier is not None:
            found.grouping.update(node.modifier.labels)
        elif isinstance(node, promql_parser.BinaryExpr) and node.modifier is not None:
            if node.modifier.matching is not None:
                found.grouping.update(node.modifier.matching.labels)
            found.grouping.update(node.modifier.group_labels or [])

    promql_parser.walk(promql_parser.parse(query), visit)
    return found


# --- what /metrics exports -----------------------------------------------------------------------

Exported = dict[str, dict[str, set[str]]]  # sample name -> label -> values seen


@pytest.fixture
def exported(client: TestClient, connection: Redis, run_jobs: Callable[[], None]) -> Exported:
    """Every sample name of a scrape, with its labels' values, once every family has samples."""
    assert client.post("/jobs/word_count", json={"text": "done"}).status_code == 202
    assert client.post("/jobs/always_fails", json={}, params={"retries": 0}).status_code == 202
    run_jobs()
    assert client.post("/jobs/word_count", json={"text": "waits"}).status_code == 202  # queued
    assert client.post("/jobs/word_count", json={"text": "later"}, params={"delay": 60}).status_code == 202
    worker: Any = build_worker(connection, kind="simple", name="ops-kit-worker")  # rq leaves it untyped
    worker.register_birth()
    lease = Lease(connection, "ops-kit-clock", 30)
    assert lease.acquire()
    assert lease.renew()  # a clock's tick
    try:
        response = client.get("/metrics")
    finally:
        worker.register_death()
        lease.release()
    assert response.status_code == 200, response.text
    samples: Exported = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            labels = samples.setdefault(sample.name, {})
            for label, value in sample.labels.items():
                labels.setdefault(label, set()).add(value)
    return samples


def as_stored(labels: dict[str, set[str]]) -> dict[str, set[str] | None]:
    """A sample's labels as Prometheus stores them: a clash with a target label is renamed
    `exported_<label>` (honor_labels: false, the default), and the target labels (any value) added."""
    stored: dict[str, set[str] | None] = {
        (f"exported_{label}" if label in TARGET_LABELS else label): values for label, values in labels.items()
    }
    stored.update(dict.fromkeys(TARGET_LABELS))
    return stored


def unexported(query: str, samples: Exported) -> list[str]:
    """What `query` reads that `samples` lack: metrics, labels, and label values it asks for."""
    wanted = reads(query)
    missing = []
    labels_read: set[str] = set(TARGET_LABELS)
    for name, matchers in wanted.selectors:
        if name not in samples and name not in PROMETHEUS_SERIES:
            missing.append(f"metric {name}")
            continue
        stored = as_stored(samples.get(name, {}))
        labels_read |= set(stored)
        for label, op, value in matchers:
            values = stored.get(label, set())
            if label not in stored:
                missing.append(f"label {label} of {name}")
            elif op == promql_parser.MatchOp.Equal and values is not None and value not in values:
                missing.append(f'{name}{{{label}="{value}"}}')
    missing += [f"label {label} (grouping)" for label in sorted(wanted.grouping - labels_read)]
    return missing


# --- promtool ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        message = "no promtool on this machine: run scripts/install-system-packages (Debian's prometheus)"
        if os.environ.get(REQUIRE_PROMTOOL) == "1":
            pytest.fail(f"{message}; {REQUIRE_PROMTOOL}=1 requires the rule checks to run")
        pytest.skip(message)
    return found


def run_promtool(promtool: str, *args: str | Path) -> str:
    done = subprocess.run(
        [promtool, *map(str, args)], capture_output=True, text=True, timeout=PROMTOOL_TIMEOUT, check=False
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    return output


def test_the_alert_rules_pass_promtools_check(promtool: str) -> None:
    output = run_promtool(promtool, "check", "rules", ALERTS)
    assert f"SUCCESS: {len(alert_rules())} rules found" in output


def test_the_alert_rules_pass_their_unit_tests(promtool: str) -> None:
    tested = {
        test["alertname"]
        for case in yaml.safe_load(ALERT_TESTS.read_text())["tests"]
        for test in case["alert_rule_test"]
    }
    assert tested == {rule["alert"] for rule in alert_rules()}  # each alert, firing and not
    assert "SUCCESS" in run_promtool(promtool, "test", "rules", ALERT_TESTS)


def test_the_dashboards_queries_pass_promtools_check(promtool: str, tmp_path: Path) -> None:
    # promtool checks queries in rule files only: each query becomes a recording rule.
    rules = [
        {"record": f"offload:dashboard:query{n}", "expr": query}
        for n, query in enumerate(dashboard_queries())
    ]
    path = tmp_path / "dashboard-queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    assert f"SUCCESS: {len(rules)} rules found" in run_promtool(promtool, "check", "rules", path)


# --- the alerts ----------------------------------------------------------------------------------


def readme_anchors() -> set[str]:
    """GitHub's anchor of each README heading: lower case, punctuation dropped, spaces to dashes."""
    headings = re.findall(r"^#+ (.+)$", README.read_text(), flags=re.MULTILINE)
    return {re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-") for heading in headings}


def test_each_alert_says_how_bad_what_and_where_the_readme_tells_what_to_do() -> None:
    anchors = readme_anchors()
    for rule in alert_rules():
        assert rule["alert"].startswith("Offload"), rule
        assert rule["labels"]["severity"] in ("critical", "warning"), rule
        assert {"summary", "description", "runbook_url"} <= set(rule["annotations"]), rule
        page, _, anchor = rule["annotations"]["runbook_url"].partition("#")
        assert page == "README.md", rule
        assert anchor in anchors, f"{rule['alert']}: no README heading for #{anchor}"


# --- the dashboard -------------------------------------------------------------------------------


def test_the_dashboard_imports_into_any_grafana_with_a_prometheus() -> None:
    board = dashboard()
    assert board["schemaVersion"] >= 39
    assert board["uid"]
    assert board["title"]
    assert board["id"] is None  # Grafana gives its own on import
    variables = {variable["name"]: variable for variable in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    ids = [panel["id"] for panel in board["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard_panels():
        assert panel["datasource"] == DATASOURCE, panel["title"]
        assert panel["description"], panel["title"]
        place = panel["gridPos"]
        assert place["x"] + place["w"] <= 24, panel["title"]
        refs = [target["refId"] for target in panel["targets"]]
        assert refs, panel["title"]
        assert len(refs) == len(set(refs)), panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == DATASOURCE, panel["title"]
            assert set(re.findall(r"\$\w+", target["expr"])) <= set(GRAFANA_VARIABLES), target["expr"]


def test_every_offload_family_is_on_the_dashboard(exported: Exported) -> None:
    shown = {name for query in dashboard_queries() for name, _ in reads(query).selectors}
    families = {name for name in exported if name.startswith("offload_") and not name.endswith("_created")}
    # A histogram is shown by its buckets, a counter by its _total.
    uncovered = {
        name
        for name in families
        if name not in shown
        and not (name.endswith(("_sum", "_count")) and f"{name.rpartition('_')[0]}_bucket" in shown)
    }
    assert not uncovered, f"no panel shows {sorted(uncovered)}"


# --- both against /metrics -----------------------------------------------------------------------


@pytest.mark.parametrize("source", ["alerts", "dashboard"])
def test_every_metric_label_and_value_named_is_exported(source: str, exported: Exported) -> None:
    missing = {query: found for query in queries()[source] if (found := unexported(query, exported))}
    assert not missing, f"read by {source} but not in GET /metrics: {missing}"


@pytest.mark.parametrize(
    ("query", "problem"),
    [
        ("offload_queue_oldest_job_age", "metric offload_queue_oldest_job_age"),
        ("rate(offload_http_request_duration_seconds[5m])", "metric offload_http_request_duration_seconds"),
        ('offload_jobs{status="queud"}', 'offload_jobs{status="queud"}'),
        ('offload_job_runs_total{job="word_count"}', None),  # the scrape job: Prometheus' own label
        ('offload_job_runs_total{exported_job="word_count"}', None),
        (
            'offload_job_runs_total{exported_job="no_such_job"}',
            'offload_job_runs_total{exported_job="no_such_job"}',
        ),
        ("max by (queues) (offload_jobs)", "label queues (grouping)"),
        ('up{job="offload"}', None),
        ('up{route="/jobs"}', "label route of up"),
    ],
)
def test_the_check_finds_what_is_not_exported(query: str, problem: str | None, exported: Exported) -> None:
    assert unexported(query, exported) == ([problem] if problem else [])
