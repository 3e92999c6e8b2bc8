"""The Helm chart's ``values.schema.json``, generated from the schema of ``kioskhub.yaml``.

``ChartValues`` (the site config under ``site`` plus the deployment keys) is turned into a
JSON schema by pydantic, then made plain for helm's validators: no defaults or titles (which
would carry this machine's paths), memory sizes accept ``2G`` as the config file does, and
``$ref``s stay within the file. Refresh the chart's copy, and the deployment keys' reference
in docs/kubernetes.md, with::

    python -m kioskhub.hub.helm_schema --write helm/kioskhub/values.schema.json \
        --reference docs/kubernetes.md

A unit test fails when either committed text differs from what this module generates.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from kioskhub.hub.config_reference import (
    _is_byte_size,
    render_reference,
    replace_block,
    section_model,
)
from kioskhub.hub.schema.chart import ChartValues, DeploymentValues

WRITE_COMMAND = (
    "python -m kioskhub.hub.helm_schema --write helm/kioskhub/values.schema.json "
    "--reference docs/kubernetes.md"
)
DRAFT = "http://json-schema.org/draft-07/schema#"
SIZE_PATTERN = r"^\s*[0-9]+(\.[0-9]+)?\s*([kKmMgGtT]i?)?[bB]?\s*$"
"""Memory sizes as ``schema.choices.parse_bytes`` reads them: 512M, 2G, 4GiB, 1.5Gi."""
DROPPED_KEYS = ("default", "title", "gt")


def chart_values_schema(model: type[BaseModel] = ChartValues) -> dict[str, Any]:
    """The JSON schema of the chart's values, as ``values.schema.json`` holds it."""
    schema = model.model_json_schema(mode="validation")
    models = {cls.__name__: cls for cls in _models(model)}
    for name, definition in [("", schema), *schema.get("$defs", {}).items()]:
        cls = models.get(name or model.__name__)
        for key, prop in definition.get("properties", {}).items():
            if cls is not None and key in cls.model_fields and _is_byte_size(cls.model_fields[key]):
                definition["properties"][key] = _byte_size_schema(prop)
    plain = _plain(schema)
    return {"$schema": DRAFT, **plain}


def render_schema() -> str:
    return json.dumps(chart_values_schema(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def render_deployment_reference() -> str:
    """Markdown reference of the deployment keys (``site`` is docs/configuration.md's)."""
    return render_reference(DeploymentValues)


def _byte_size_schema(prop: dict[str, Any]) -> dict[str, Any]:
    described = {"description": prop["description"]} if "description" in prop else {}
    return {
        **described,
        "anyOf": [
            {"type": "integer", "exclusiveMinimum": 0},
            {"type": "string", "pattern": SIZE_PATTERN},
        ],
    }


def _plain(node: Any) -> Any:
    """``node`` without keys helm does not need, and without the ``path`` format."""
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            if key in DROPPED_KEYS and not isinstance(value, dict | list) or key == "default":
                continue
            if key == "format" and value == "path":
                continue
            if key == "properties" or key == "$defs":
                out[key] = {name: _plain(item) for name, item in value.items()}
            else:
                out[key] = _plain(value)
        return out
    if isinstance(node, list):
        return [_plain(item) for item in node]
    return node


def _models(model: type[BaseModel]) -> list[type[BaseModel]]:
    """``model`` and every section model below it."""
    found = [model]
    for field in model.model_fields.values():
        section = section_model(field.annotation)
        if section is not None and section[0] not in found:
            found.extend(m for m in _models(section[0]) if m not in found)
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m kioskhub.hub.helm_schema",
        description="Print the Helm chart's values schema, or write it to a file.",
    )
    parser.add_argument("--write", type=Path, metavar="JSON_FILE", help="write it here")
    parser.add_argument(
        "--reference",
        type=Path,
        metavar="MARKDOWN_FILE",
        help="also refresh the deployment keys' reference between the markers of this file",
    )
    args = parser.parse_args(argv)
    text = render_schema()
    if args.write is None and args.reference is None:
        print(text, end="")
        return 0
    try:
        if args.write is not None:
            args.write.write_text(text, encoding="utf-8")
            print(f"Wrote the chart's values schema to {args.write}")
        if args.reference is not None:
            document = args.reference.read_text(encoding="utf-8")
            updated = replace_block(document, render_deployment_reference())
            args.reference.write_text(updated, encoding="utf-8")
            print(f"Updated the deployment keys' reference in {args.reference}")
    except (OSError, ValueError) as error:
        where = args.reference if isinstance(error, ValueError) else error.filename
        reason = getattr(error, "strerror", None) or error
        print(f"{parser.prog}: {where}: {reason}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
