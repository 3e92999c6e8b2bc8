"""The configuration reference is generated from the schema, and docs/configuration.md holds
the current one."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

from kioskhub.hub.config_reference import (
    END_MARKER,
    START_MARKER,
    WRITE_COMMAND,
    extract_block,
    main,
    render_reference,
    replace_block,
    section_model,
)
from kioskhub.hub.schema.site import PACKAGE_ROOT, Section, Site

DOCS = PACKAGE_ROOT / "docs" / "configuration.md"
KIOSKHUB = Path(sys.executable).parent / "kioskhub"


def test_docs_hold_the_current_reference():
    held = extract_block(DOCS.read_text(encoding="utf-8"))

    assert held == render_reference(), (
        f"docs/configuration.md is out of date with the site config schema; run `{WRITE_COMMAND}`"
    )


def test_reference_names_every_key_with_a_description():
    reference = render_reference()

    for path, field in _all_fields(Site, ""):
        assert field.description, f"{path} has no description= in its Field"
        if _is_section(field.annotation):
            assert f"`{path}`" in reference
        else:
            assert f"| `{path}` |" in reference


def test_reference_is_deterministic_and_shows_no_machine_paths():
    reference = render_reference()

    assert render_reference() == reference
    assert str(PACKAGE_ROOT) not in reference
    assert "| `hub.state_dir` | path | `.kioskhub` |" in reference
    assert "| `examples.source` | path | `<kioskhub>/notebooks/examples` |" in reference


def test_kioskhub_config_reference_prints_it():
    result = subprocess.run(
        [str(KIOSKHUB), "config-reference"], capture_output=True, text=True, timeout=60
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout == render_reference()


def test_write_replaces_only_the_block(tmp_path):
    page = tmp_path / "configuration.md"
    page.write_text(f"# Intro\n\n{START_MARKER}\nstale\n{END_MARKER}\n\nOutro\n")

    assert main(["--write", str(page)]) == 0

    text = page.read_text()
    assert text.startswith(f"# Intro\n\n{START_MARKER}\n\n## `hub`\n")
    assert text.endswith(f"\n\n{END_MARKER}\n\nOutro\n")
    assert extract_block(text) == render_reference()
    assert replace_block(text, render_reference()) == text


def test_write_refuses_a_page_without_markers(tmp_path, capsys):
    page = tmp_path / "configuration.md"
    page.write_text("# Intro\n")

    assert main(["--write", str(page)]) == 1
    assert page.read_text() == "# Intro\n"
    assert f"expected one {START_MARKER} and one {END_MARKER} line" in capsys.readouterr().err


class Limits(Section):
    cpu: float = Field(1.0, gt=0, le=64, description="CPU cores.")


class Queue(Section):
    name: str = Field(pattern=r"^[a-z]+$", description="Queue name.")
    limits: Limits = Field(Limits(cpu=2), description="What each job may use.")


class Scheduler(Section):
    kind: Literal["fifo", "fair"] = Field("fair", description="Order of jobs.")
    token: str | None = Field(None, min_length=8, description="API token | secret.")
    hosts: tuple[str, ...] = Field(("a", "b"), description="Hosts.")


class Tiny(Section):
    debug: bool = Field(False, description="Log more.")
    scheduler: Scheduler = Field(Scheduler(), description="The batch scheduler.")
    queues: tuple[Queue, ...] = Field((), description="Job queues.")


def test_render_a_small_schema():
    assert render_reference(Tiny) == (
        "## `debug`\n"
        "\n"
        "| key | type | default | description |\n"
        "|---|---|---|---|\n"
        "| `debug` | true/false | `false` | Log more. |\n"
        "\n"
        "## `scheduler`\n"
        "\n"
        "The batch scheduler.\n"
        "\n"
        "| key | type | default | description |\n"
        "|---|---|---|---|\n"
        "| `scheduler.kind` | one of `fifo`, `fair` | `fair` | Order of jobs. |\n"
        "| `scheduler.token` | string, at least 8 characters; may be empty | empty "
        "| API token \\| secret. |\n"
        "| `scheduler.hosts` | list of strings | `[a, b]` | Hosts. |\n"
        "\n"
        "## `queues`\n"
        "\n"
        "Job queues.\n"
        "\n"
        "A list; each item has the keys below.\n"
        "\n"
        "Default: an empty list.\n"
        "\n"
        "| key | type | default | description |\n"
        "|---|---|---|---|\n"
        "| `queues[].name` | string, matching `^[a-z]+$` | required | Queue name. |\n"
        "\n"
        "### `queues[].limits`\n"
        "\n"
        "What each job may use.\n"
        "\n"
        "| key | type | default | description |\n"
        "|---|---|---|---|\n"
        "| `queues[].limits.cpu` | number, more than 0, at most 64 | `2.0` | CPU cores. |\n"
    )


def test_example_error_in_the_docs_is_what_the_cli_prints(tmp_path):
    """The hand-written 'How errors look' example is checked, not just pasted."""
    section = DOCS.read_text(encoding="utf-8").split("## How errors look", 1)[1]
    config_text = re.search(r"```yaml\n(.*?)```", section, re.S).group(1)
    shown = re.search(r"```text\n(.*?)```", section, re.S).group(1)
    (tmp_path / "kioskhub.yaml").write_text(config_text)
    env = {k: v for k, v in os.environ.items() if k != "KIOSKHUB_CONFIG"}

    result = subprocess.run(
        [str(KIOSKHUB), "check-config"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == 2
    assert result.stderr == shown, (
        "the example in docs/configuration.md ('How errors look') no longer matches; "
        "paste the message printed here"
    )


def _all_fields(model: type[BaseModel], prefix: str):
    for name, field in model.model_fields.items():
        path = f"{prefix}{name}"
        yield path, field
        inner = _is_section(field.annotation)
        if inner:
            item, is_list = inner
            yield from _all_fields(item, f"{path}[]." if is_list else f"{path}.")


def _is_section(annotation):
    return section_model(annotation)
