"""The configuration reference, generated from the site config schema.

``render_reference`` walks the pydantic models of ``kioskhub.yaml`` and writes Markdown: one
section per config section, each with a table of key path, type, default and description
(the ``description`` of the key's Field). The output depends only on the schema, so
docs/configuration.md can hold it between two markers and a test can check that it is
current. Refresh it with::

    python -m kioskhub.hub.config_reference --write docs/configuration.md
"""

from __future__ import annotations

import argparse
import sys
import types
import typing
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from kioskhub.hub.schema.site import PACKAGE_ROOT, Site

START_MARKER = "<!-- reference:start -->"
END_MARKER = "<!-- reference:end -->"
WRITE_COMMAND = "python -m kioskhub.hub.config_reference --write docs/configuration.md"

TYPE_NAMES = {int: "integer", float: "number", bool: "true/false", str: "string", Path: "path"}
BYTE_UNITS = (
    ("Ti", 2**40),
    ("T", 10**12),
    ("Gi", 2**30),
    ("G", 10**9),
    ("Mi", 2**20),
    ("M", 10**6),
)
BYTE_SIZE_VALIDATOR = "parse_bytes"
"""Name of the validator that marks a field as a memory size (``schema.choices.ByteSize``)."""


def render_reference(model: type[BaseModel] = Site) -> str:
    """Markdown reference of every key that ``model`` (by default the whole site) accepts.

    Each top-level key gets a section, in the order the schema declares them.
    """
    blocks: list[str] = []
    defaults = _default_instance(model)
    for name, field in model.model_fields.items():
        default = _default_of(name, field, defaults)
        section = section_model(field.annotation)
        if section is None:
            blocks.append("\n".join([f"## `{name}`", "", *_table([_row(name, field, default)])]))
        else:
            item_model, is_list = section
            blocks.extend(_section(name, field, item_model, is_list, default, 2))
    return "\n\n".join(blocks) + "\n"


def replace_block(document: str, reference: str) -> str:
    """``document`` with the text between the reference markers replaced by ``reference``."""
    before, _, after = _split(document)
    return f"{before}{START_MARKER}\n\n{reference.strip()}\n\n{END_MARKER}{after}"


def extract_block(document: str) -> str:
    """The reference currently held between the markers of ``document``."""
    return _split(document)[1].strip() + "\n"


def _split(document: str) -> tuple[str, str, str]:
    if document.count(START_MARKER) != 1 or document.count(END_MARKER) != 1:
        raise ValueError(f"expected one {START_MARKER} and one {END_MARKER} line")
    before, rest = document.split(START_MARKER)
    block, after = rest.split(END_MARKER)
    return before, block, after


def _section(
    path: str,
    field: FieldInfo,
    model: type[BaseModel],
    is_list: bool,
    default: Any,
    level: int,
) -> list[str]:
    """The heading, description and key table of one section, then its subsections."""
    lines = [f"{'#' * min(level, 6)} `{path}`", ""]
    if field.description:
        lines += [_one_line(field.description), ""]
    if is_list:
        lines += ["A list; each item has the keys below.", ""]
        if default:
            items = [_plain(item) for item in default]
            dumped = yaml.safe_dump(
                {path.rpartition(".")[2]: items}, sort_keys=False, allow_unicode=True, width=88
            )
            lines += ["Default:", "", "```yaml", dumped.rstrip("\n"), "```", ""]
        else:
            lines += ["Default: an empty list.", ""]
        key_prefix, item_defaults = f"{path}[].", _default_instance(model)
    else:
        key_prefix, item_defaults = f"{path}.", default
    rows: list[str] = []
    subsections: list[str] = []
    for name, sub_field in model.model_fields.items():
        sub_default = _default_of(name, sub_field, item_defaults)
        sub_section = section_model(sub_field.annotation)
        if sub_section is None:
            rows.append(_row(key_prefix + name, sub_field, sub_default))
        else:
            sub_model, sub_is_list = sub_section
            subsections.extend(
                _section(
                    key_prefix + name, sub_field, sub_model, sub_is_list, sub_default, level + 1
                )
            )
    if rows:
        lines += _table(rows)
    return ["\n".join(lines).rstrip("\n"), *subsections]


def _table(rows: list[str]) -> list[str]:
    return ["| key | type | default | description |", "|---|---|---|---|", *rows]


def _row(path: str, field: FieldInfo, default: Any) -> str:
    cells = [
        f"`{path}`",
        _type_text(field),
        "required" if default is PydanticUndefined else _default_text(default, field),
        _one_line(field.description or ""),
    ]
    return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"


def section_model(annotation: Any) -> tuple[type[BaseModel], bool] | None:
    """(model, is_list) when ``annotation`` is a section or a list of sections, else None."""
    annotation = _without_none(annotation)
    is_list = typing.get_origin(annotation) in (tuple, list)
    if is_list:
        annotation = typing.get_args(annotation)[0]
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation, is_list
    return None


def _without_none(annotation: Any) -> Any:
    """``annotation`` without ``| None`` and without ``Annotated[...]`` metadata."""
    annotation = _bare(annotation)
    if _is_union(annotation):
        args = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
        if len(args) == 1:
            return _bare(args[0])
    return annotation


def _bare(annotation: Any) -> Any:
    return typing.get_args(annotation)[0] if _is_annotated(annotation) else annotation


def _is_annotated(annotation: Any) -> bool:
    return typing.get_origin(annotation) is typing.Annotated


def _is_union(annotation: Any) -> bool:
    return typing.get_origin(annotation) in (typing.Union, types.UnionType)


def _type_text(field: FieldInfo) -> str:
    annotation = field.annotation
    optional = _is_union(annotation) and type(None) in typing.get_args(annotation)
    if _is_byte_size(field):
        text, constraints = "size in bytes; 512M, 2G or 4GiB also work", ""
    else:
        text, constraints = _type_name(_without_none(annotation)), _constraints(field)
    if constraints:
        text += f", {constraints}"
    return f"{text}; may be empty" if optional else text


def _type_name(annotation: Any) -> str:
    annotation = _bare(annotation)
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is Literal:
        values = ", ".join(f"`{value}`" for value in args)
        return f"one of {values}" if len(args) > 1 else values
    if origin in (tuple, list):
        return f"list of {_plural(_type_name(args[0]))}"
    if origin is dict:
        return f"mapping of {_type_name(args[0])} to {_type_name(args[1])}"
    if _is_union(annotation):
        return " or ".join(_type_name(arg) for arg in args)
    if annotation in TYPE_NAMES:
        return TYPE_NAMES[annotation]
    return getattr(annotation, "__name__", str(annotation))


def _plural(name: str) -> str:
    return name if name.startswith("one of") else f"{name}s"


def _constraints(field: FieldInfo) -> str:
    """Bounds, lengths and patterns of ``field``, worded as the table shows them."""
    found: dict[str, Any] = {}
    for item in field.metadata:
        for attribute in ("ge", "gt", "le", "lt", "min_length", "max_length", "pattern"):
            value = getattr(item, attribute, None)
            if value is not None:
                found[attribute] = value
    parts = []
    if "ge" in found and "le" in found:
        parts.append(f"{found.pop('ge')} to {found.pop('le')}")
    words = {"ge": "at least", "gt": "more than", "le": "at most", "lt": "less than"}
    for key, word in words.items():
        if key in found:
            parts.append(f"{word} {found[key]}")
    if "min_length" in found:
        parts.append(f"at least {found['min_length']} characters")
    if "max_length" in found:
        parts.append(f"at most {found['max_length']} characters")
    if "pattern" in found:
        parts.append(f"matching `{found['pattern']}`")
    return ", ".join(parts)


def _is_byte_size(field: FieldInfo) -> bool:
    return any(
        getattr(getattr(item, "func", None), "__name__", "") == BYTE_SIZE_VALIDATOR
        for item in field.metadata
    )


def _default_instance(model: type[BaseModel]) -> BaseModel | None:
    """``model`` built from its defaults, or None when it has required keys."""
    try:
        return model()
    except ValidationError:
        return None


def _default_of(name: str, field: FieldInfo, parent_default: BaseModel | None) -> Any:
    """The default of key ``name``: as the enclosing section's default sets it, if it has one."""
    if parent_default is not None:
        return getattr(parent_default, name)
    if field.default_factory is not None:
        return field.default_factory()
    return field.default


def _default_text(value: Any, field: FieldInfo) -> str:
    if value is None:
        return "empty"
    if _is_byte_size(field) and isinstance(value, int):
        return f"`{_byte_size_text(value)}`"
    return f"`{_flow_yaml(_plain(value))}`"


def _flow_yaml(value: Any) -> str:
    """``value`` written the way it would be written in the config file, on one line."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ", ".join(_flow_yaml(item) for item in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_flow_yaml(v)}" for k, v in value.items()) + "}"
    if value == "":
        return '""'
    return str(value)


def _byte_size_text(value: int) -> str:
    for unit, size in BYTE_UNITS:
        if value and value % size == 0:
            return f"{value // size}{unit}"
    return str(value)


def _plain(value: Any) -> Any:
    """``value`` as YAML would write it in the config: lists, mappings, relative paths."""
    if isinstance(value, BaseModel):
        return _plain(value.model_dump(exclude_defaults=True))
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, tuple | list):
        return [_plain(item) for item in value]
    if isinstance(value, Path):
        return _path_text(value)
    return value


def _path_text(path: Path) -> str:
    """Paths inside the KioskHub folder are shown relative to it, never as this machine's."""
    if path.is_absolute() and path.is_relative_to(PACKAGE_ROOT):
        return f"<kioskhub>/{path.relative_to(PACKAGE_ROOT).as_posix()}"
    return path.as_posix()


def _one_line(text: str) -> str:
    return " ".join(text.split())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m kioskhub.hub.config_reference",
        description="Print the configuration reference, or refresh it in a Markdown file.",
    )
    parser.add_argument(
        "--write",
        type=Path,
        metavar="MARKDOWN_FILE",
        help=f"replace the text between {START_MARKER} and {END_MARKER} in this file",
    )
    args = parser.parse_args(argv)
    if args.write is None:
        print(render_reference(), end="")
        return 0
    try:
        document = args.write.read_text(encoding="utf-8")
        args.write.write_text(replace_block(document, render_reference()), encoding="utf-8")
    except (OSError, ValueError) as error:
        print(f"{parser.prog}: {args.write}: {error}", file=sys.stderr)
        return 1
    print(f"Updated the configuration reference in {args.write}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
