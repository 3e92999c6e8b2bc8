"""The PromQL queries of a Grafana dashboard JSON, as Prometheus itself can run them."""

from __future__ import annotations

import json
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DASHBOARD = REPO / "docs" / "grafana" / "kioskhub-dashboard.json"

GRAFANA_VARIABLES = {
    "$__rate_interval": "1m",
    "$__interval": "15s",
    "$__range": "1h",
    "$backend": ".*",
}
"""What Grafana puts in place of its variables (``$backend`` set to All)."""

METRIC_NAME = re.compile(r"\b((?:kioskhub|jupyterhub)_[a-z_]+)\b")


def dashboard_queries(path: Path = DASHBOARD) -> list[tuple[str, str]]:
    """(panel title, expr) of every query target of every panel."""
    dashboard = json.loads(path.read_text())
    return [
        (panel["title"], target["expr"])
        for panel in dashboard["panels"]
        for target in panel.get("targets", [])
    ]


def as_promql(expr: str) -> str:
    """``expr`` with Grafana's variables replaced as Grafana would; leaves no ``$``."""
    for name in sorted(GRAFANA_VARIABLES, key=len, reverse=True):
        expr = expr.replace(name, GRAFANA_VARIABLES[name])
    if "$" in expr:
        raise ValueError(f"unknown Grafana variable in {expr!r}")
    return expr


def metric_names(expr: str) -> set[str]:
    return set(METRIC_NAME.findall(expr))
