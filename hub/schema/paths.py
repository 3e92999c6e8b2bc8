"""Paths in the site config: relative ones are taken from the config file's folder."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import AfterValidator, ValidationInfo


def _resolve_path(value: Path, info: ValidationInfo) -> Path:
    base = (info.context or {}).get("base_dir")
    value = value.expanduser()
    if not value.is_absolute() and base is not None:
        value = Path(base) / value
    return value.resolve() if base is not None else value


ConfigPath = Annotated[Path, AfterValidator(_resolve_path)]
"""A path in the site config; relative paths are taken from the config file's folder."""
