"""The Grafana dashboard (docs/grafana/kioskhub-dashboard.json) asks only for metrics that
exist: KioskHub's, JupyterHub's, or those named for the parts of KioskHub that feed them."""

from __future__ import annotations

import json

import jupyterhub.metrics  # noqa: F401 (registers JupyterHub's metrics)
import pytest
from prometheus_client import REGISTRY

import kioskhub.image_builder.build_metrics  # noqa: F401 (the builder service's)
import kioskhub.spawner.metrics  # noqa: F401 (registers KioskHub's spawn metrics)
import kioskhub.spawner.usage_metrics  # noqa: F401 (and its usage counters)
from tests.support.grafana_dashboard import (
    DASHBOARD,
    as_promql,
    dashboard_queries,
    metric_names,
)

FED_ELSEWHERE = {
    "kioskhub_servers_culled_total": "idle culling",
}
"""Metrics the dashboard shows that other processes or parts of KioskHub define."""


def registered_names() -> set[str]:
    return {sample.name for metric in REGISTRY.collect() for sample in metric.samples} | {
        metric.name + suffix
        for metric in REGISTRY.collect()
        for suffix in ("", "_total", "_bucket", "_count", "_sum")
    }


@pytest.mark.parametrize(("title", "expr"), dashboard_queries())
def test_every_query_asks_for_metrics_that_exist(title, expr):
    unknown = metric_names(expr) - registered_names() - set(FED_ELSEWHERE)
    assert not unknown, f"panel {title!r} asks for {sorted(unknown)}, which nothing defines"
    assert metric_names(expr), f"panel {title!r} asks for no KioskHub or JupyterHub metric"


def test_grafana_variables_become_promql():
    assert as_promql('rate(x{backend=~"$backend"}[$__rate_interval])') == (
        'rate(x{backend=~".*"}[1m])'
    )
    with pytest.raises(ValueError, match="unknown Grafana variable"):
        as_promql("rate(x[$window])")


def test_every_panel_reads_the_chosen_prometheus():
    dashboard = json.loads(DASHBOARD.read_text())
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    assert panels and all(p["datasource"]["uid"] == "${DS_PROMETHEUS}" for p in panels)
    assert [i["name"] for i in dashboard["__inputs"]] == ["DS_PROMETHEUS"]
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids)), "two panels share an id"
