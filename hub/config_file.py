"""Reading ``kioskhub.yaml``: YAML → validated Site, or one readable ConfigError."""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from .site_config import Site


class ConfigError(Exception):
    """A site config mistake, worded for the person who edits the file."""


def load_site(path: Path | str) -> Site:
    """Read and validate the site config at ``path``."""
    path = Path(path)
    data = _read_yaml(path)
    try:
        return Site.model_validate(data, context={"base_dir": path.resolve().parent})
    except ValidationError as exc:
        raise ConfigError(format_validation_error(path, exc)) from None


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.exists():
        raise ConfigError(
            f"{path}: file not found. Run `kioskhub init --config {path}` to write a "
            "commented default, or pass --config with the right path."
        )
    if not path.is_file():
        raise ConfigError(f"{path}: is not a file; pass --config with a YAML file.")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"{path}{where}: not valid YAML: {exc.problem}") from None
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"{path}: expected a mapping of sections (hub:, auth:, ...) at the top level, "
            f"got {type(data).__name__}"
        )
    return data


def format_validation_error(path: Path, exc: ValidationError) -> str:
    """One line per problem: file, key path, what was wrong and what was expected."""
    lines = [f"{path}: {exc.error_count()} problem(s) in the site config:"]
    for error in exc.errors(include_url=False):
        key = _key_path(error["loc"])
        lines.append(f"  {key or '(top level)'}: {_describe(error)}")
    return "\n".join(lines)


def _key_path(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def _describe(error: dict[str, Any]) -> str:
    kind = error["type"]
    given = error.get("input")
    if kind == "extra_forbidden":
        allowed = _allowed_keys(error["loc"][:-1])
        name = str(error["loc"][-1])
        hint = difflib.get_close_matches(name, allowed, n=1)
        suggestion = f"; did you mean '{hint[0]}'?" if hint else ""
        return f"unknown key (allowed here: {', '.join(allowed)}){suggestion}"
    if kind == "missing":
        return "required key is missing"
    message = error["msg"].removeprefix("Value error, ")
    if kind in {"value_error", "assertion_error"}:
        return message
    return f"{message} (got {given!r})"


def _allowed_keys(loc: tuple[Any, ...]) -> list[str]:
    """The keys that the section at ``loc`` accepts."""
    model: type[BaseModel] = Site
    for part in loc:
        if isinstance(part, int):
            continue
        annotation = model.model_fields[part].annotation
        inner = getattr(annotation, "__args__", (annotation,))[0]
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            model = annotation
        elif isinstance(inner, type) and issubclass(inner, BaseModel):
            model = inner
    return list(model.model_fields)
