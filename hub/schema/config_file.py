"""Reading ``kioskhub.yaml``: YAML → validated Site, or one readable ConfigError."""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from .site import Site


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


MERGE_TAG = "tag:yaml.org,2002:merge"


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key given twice in one mapping (plain PyYAML keeps the last)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        first_seen: dict[Any, yaml.Mark] = {}
        for key_node, _ in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == MERGE_TAG:
                continue
            key = self.construct_object(key_node)
            if key in first_seen:
                raise yaml.constructor.ConstructorError(
                    problem=f"key {key!r} appears twice in one section "
                    f"(first on line {first_seen[key].line + 1}); keep one of them",
                    problem_mark=key_node.start_mark,
                )
            first_seen[key] = key_node.start_mark
        return super().construct_mapping(node, deep=deep)


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        if not path.exists():
            raise ConfigError(
                f"{path}: file not found. Run `kioskhub init --config {path}` to write a "
                "commented default, or pass --config with the right path."
            )
        if not path.is_file():
            raise ConfigError(f"{path}: is not a file; pass --config with a YAML file.")
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot be read: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        before = exc.object[: exc.start]
        line, column = before.count(b"\n") + 1, exc.start - before.rfind(b"\n")
        raise ConfigError(
            f"{path} line {line}, column {column}: not UTF-8 text (byte "
            f"{exc.object[exc.start]:#04x}); save the file as UTF-8."
        ) from None
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"{path}{where}: not valid YAML: {exc.problem}") from None
    except yaml.YAMLError as exc:
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
        loc = error["loc"][:-1] if error["type"] == "invalid_key" else error["loc"]
        lines.append(f"  {_key_path(loc) or '(top level)'}: {_describe(error)}")
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
    if kind == "invalid_key":
        return f"{given!r} is not a key name; keys are words such as 'url'"
    if kind in SECTION_TYPE_ERRORS:
        if given is None:
            return "is empty: indent keys below it, or remove the line to use the defaults"
        return f"expected a section (key: value lines indented below it), got {_shown(error)}"
    if given is None and kind.endswith("_type"):
        return "has no value: give one, or remove the line to use the default"
    if kind in LIST_TYPE_ERRORS:
        return f"expected a list ([a, b] or one '- item' per line), got {_shown(error)}"
    message = error["msg"].removeprefix("Value error, ")
    if kind in {"value_error", "assertion_error"}:
        return message
    if kind == "string_type" and not isinstance(given, dict | list):
        message += "; put the value in quotes"
    return f"{message} (got {_shown(error)})"


SECTION_TYPE_ERRORS = {"model_type", "model_attributes_type", "dict_type"}
LIST_TYPE_ERRORS = {"tuple_type", "list_type"}
SHOWN_INPUT_LIMIT = 60


def _shown(error: dict[str, Any]) -> str:
    """The given value as the message shows it: never a password, never a screenful."""
    if any("password" in str(part) for part in error["loc"]):
        return "a value that is not shown"
    shown = repr(error.get("input"))
    if len(shown) > SHOWN_INPUT_LIMIT:
        shown = shown[: SHOWN_INPUT_LIMIT - 3] + "..."
    return shown


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
