"""The chart's values.schema.json is generated from the site schema and kept current."""

from __future__ import annotations

import json
import re

import yaml

from kioskhub.hub.config_reference import extract_block
from kioskhub.hub.helm_schema import (
    WRITE_COMMAND,
    chart_values_schema,
    main,
    render_deployment_reference,
    render_schema,
)
from kioskhub.hub.schema.chart import ChartValues
from tests.support.helm import CHART, EVERYTHING_ON

SCHEMA_FILE = CHART / "values.schema.json"
KUBERNETES_DOC = CHART.parents[1] / "docs" / "kubernetes.md"


def test_the_committed_values_schema_is_current():
    assert SCHEMA_FILE.read_text(encoding="utf-8") == render_schema(), (
        f"helm/kioskhub/values.schema.json is stale; refresh it with `{WRITE_COMMAND}`"
    )


def test_the_deployment_keys_reference_in_the_docs_is_current():
    document = KUBERNETES_DOC.read_text(encoding="utf-8")
    assert extract_block(document) == render_deployment_reference(), (
        f"docs/kubernetes.md's deployment keys are stale; refresh them with `{WRITE_COMMAND}`"
    )
    assert "`hub.env_from_secret`" in document and "`network_policy.user_egress`" in document


def test_the_site_key_is_the_site_schema_and_unknown_keys_are_refused():
    schema = chart_values_schema()
    site = schema["$defs"]["Site"]
    assert schema["properties"]["site"] == {
        "$ref": "#/$defs/Site",
        "description": schema["properties"]["site"]["description"],
    }
    assert schema["additionalProperties"] is False and site["additionalProperties"] is False
    assert {"hub", "auth", "spawner", "profiles", "dask", "pods"} <= set(site["properties"])


def test_memory_sizes_take_the_config_files_spellings():
    memory = chart_values_schema()["$defs"]["ResourceProfile"]["properties"]["memory"]
    integer, text = memory["anyOf"]
    assert integer == {"type": "integer", "exclusiveMinimum": 0}

    pattern = re.compile(text["pattern"])
    assert all(pattern.search(size) for size in ("2G", "512Mi", "4GiB", "1.5Gi"))
    assert not pattern.search("lots")


def test_no_path_of_this_machine_reaches_the_schema():
    text = render_schema()
    assert str(CHART.parents[1]) not in text and '"default"' not in text.replace('"default": {', "")


def test_the_chart_values_pass_the_same_models():
    for path in (CHART / "values.yaml", EVERYTHING_ON):
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        data["site"].pop("data_mounts", None)  # their folders exist in the hub's pod only
        data["site"].get("pods", {}).pop("data_volumes", None)
        ChartValues.model_validate(data)


def test_write_replaces_the_file(tmp_path, capsys):
    target = tmp_path / "values.schema.json"
    assert main(["--write", str(target)]) == 0
    assert json.loads(target.read_text())["$schema"].startswith("http://json-schema.org/")
    assert main(["--write", str(tmp_path / "missing" / "x.json")]) == 1
    assert "No such file or directory" in capsys.readouterr().err
