"""Reading a published notebook into a bounded, well-formed notebook before it is rendered.

Published notebooks are untrusted: they may be huge, deeply repetitive or malformed. This
module turns the file into a fresh nbformat 4 notebook that holds only what the render shows
(cells up to a count, sources and outputs up to a size, allow-listed output types, no
metadata but the language), so that nbconvert never sees more than the limits allow.

The cells array is read one cell at a time: cells past ``max_cells`` are parsed (the file
must still be valid JSON) and counted, never kept, so a million-cell notebook costs the
memory of its text and of the cells shown.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any

KIB = 1024
MIB = 1024 * KIB

# Output types a render shows; every other one (javascript, widgets, mermaid, pdf, ...) is
# replaced by a line naming it.
SHOWN_MIME_TYPES = (
    "image/png",
    "image/jpeg",
    "image/svg+xml",
    "text/html",
    "text/markdown",
    "text/latex",
    "text/plain",
)
_IMAGE_TYPES = ("image/png", "image/jpeg")
_WHITESPACE = re.compile(r"[ \t\n\r]*")
_LANGUAGE = re.compile(r"[A-Za-z0-9_+-]{1,40}")
_BASE64 = re.compile(r"[A-Za-z0-9+/]*={0,2}")
_MAX_CELL_ID_CHARS = 200
_ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*[A-Za-z]?")


class NotebookUnreadable(ValueError):
    """The file is not a notebook the gallery can render; the message says what is wrong."""


@dataclass(frozen=True)
class RenderLimits:
    """How much of a notebook one render shows; the rest is summarised in the render."""

    max_notebook_bytes: int = 256 * MIB
    max_cells: int = 2_000
    max_source_chars: int = 256 * KIB
    max_outputs_per_cell: int = 100
    max_output_chars: int = 256 * KIB
    max_image_bytes: int = 4 * MIB
    max_text_chars: int = 4 * MIB
    max_markup_chars: int = 512 * KIB
    max_image_total_bytes: int = 64 * MIB


@dataclass(frozen=True)
class CellSummary:
    """One rendered cell, for anchoring review threads and comparing versions."""

    index: int
    cell_id: str | None
    cell_type: str
    source_sha256: str
    first_line: str


@dataclass
class BoundedNotebook:
    """The notebook reduced to what a render shows, and what was left out."""

    notebook: dict[str, Any]
    cells: list[CellSummary]
    total_cells: int
    cells_not_shown: int
    budget_reached: bool


def read_notebook(notebook: bytes | dict, limits: RenderLimits) -> BoundedNotebook:
    """Check and bound ``notebook`` (the file's bytes or its parsed JSON)."""
    if isinstance(notebook, bytes | bytearray | memoryview):
        top, cells, total = _scan_file(bytes(notebook), limits)
    elif isinstance(notebook, dict):
        top = notebook
        cells = notebook.get("cells")
        total = len(cells) if isinstance(cells, list) else 0
        cells = cells[: limits.max_cells] if isinstance(cells, list) else cells
    else:
        raise NotebookUnreadable(f"expected the notebook's bytes, got {type(notebook).__name__}")
    _check_format(top, cells)
    return _bound(top, cells, total, limits)


def _scan_file(data: bytes, limits: RenderLimits) -> tuple[dict, list, int]:
    if len(data) > limits.max_notebook_bytes:
        raise NotebookUnreadable(
            f"the notebook is {len(data) / MIB:.1f} MiB; the gallery renders notebooks of up "
            f"to {limits.max_notebook_bytes / MIB:.0f} MiB"
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise NotebookUnreadable(f"not a notebook: not UTF-8 text (byte {e.start})") from None
    try:
        return _scan_json(text, limits.max_cells)
    except json.JSONDecodeError as e:
        raise NotebookUnreadable(
            f"not a notebook: invalid JSON at line {e.lineno}, column {e.colno}: {e.msg}"
        ) from None
    except RecursionError:
        raise NotebookUnreadable("not a notebook: its JSON is nested too deeply") from None


def _scan_json(text: str, max_cells: int) -> tuple[dict, list, int]:
    """Parse the top-level object, keeping only the first ``max_cells`` cells."""
    decoder = json.JSONDecoder()
    top: dict[str, Any] = {}
    cells: list = []
    total = 0
    pos = _expect(text, _skip(text, 0), "{", "the notebook must be a JSON object")
    pos = _skip(text, pos)
    if text.startswith("}", pos):
        pos += 1
    else:
        while True:
            key, pos = decoder.raw_decode(text, pos)
            if not isinstance(key, str):
                raise json.JSONDecodeError("expected a key", text, pos)
            pos = _skip(text, _expect(text, _skip(text, pos), ":", "expected ':'"))
            if key == "cells" and text.startswith("[", pos):
                pos = _skip(text, pos + 1)
                if text.startswith("]", pos):
                    pos += 1
                else:
                    while True:
                        cell, pos = decoder.raw_decode(text, pos)
                        if total < max_cells:
                            cells.append(cell)
                        total += 1
                        pos = _skip(text, pos)
                        if text.startswith("]", pos):
                            pos += 1
                            break
                        pos = _skip(text, _expect(text, pos, ",", "expected ',' or ']'"))
                top[key] = cells
            else:
                top[key], pos = decoder.raw_decode(text, pos)
            pos = _skip(text, pos)
            if text.startswith("}", pos):
                pos += 1
                break
            pos = _skip(text, _expect(text, pos, ",", "expected ',' or '}'"))
    if _skip(text, pos) != len(text):
        raise json.JSONDecodeError("extra data after the notebook", text, _skip(text, pos))
    return top, top.get("cells"), total


def _skip(text: str, pos: int) -> int:
    return _WHITESPACE.match(text, pos).end()


def _expect(text: str, pos: int, char: str, message: str) -> int:
    if not text.startswith(char, pos):
        raise json.JSONDecodeError(message, text, pos)
    return pos + 1


def _check_format(top: Any, cells: Any) -> None:
    if not isinstance(top, dict):
        raise NotebookUnreadable("not a notebook: the file must hold a JSON object")
    version = top.get("nbformat")
    if version is None:
        raise NotebookUnreadable("not a notebook: it has no 'nbformat' field")
    if version != 4:
        raise NotebookUnreadable(
            f"nbformat {_short(repr(version), 20)} notebooks are not rendered, only nbformat 4: "
            "open it in JupyterLab and save it, which converts it, then publish it again"
        )
    if not isinstance(cells, list):
        raise NotebookUnreadable("not a notebook: its 'cells' field is missing or not a list")


class _Budget:
    def __init__(self, limits: RenderLimits):
        self.text_left = limits.max_text_chars
        self.image_left = limits.max_image_total_bytes
        self.markup_left = limits.max_markup_chars
        self.reached = False

    def take_markup(self, chars: int) -> bool:
        """Highlighting code and rendering markdown or HTML cost ~100 times more per
        character than escaping text: past this budget, sources are shown as plain text."""
        if chars > self.markup_left:
            return False
        self.markup_left -= chars
        return True

    def coloured(self, text: str) -> str:
        """Terminal colours become one HTML element per coloured run: within the markup
        budget they are kept, past it they are removed."""
        if "\x1b" in text and not self.take_markup(len(text)):
            return _ANSI_ESCAPE.sub("", text)
        return text

    def take(self, chars: int, image: bool = False) -> bool:
        left = self.image_left if image else self.text_left
        if chars > left:
            self.reached = True
            return False
        if image:
            self.image_left -= chars
        else:
            self.text_left -= chars
        return True


def _bound(top: dict, cells: list, total: int, limits: RenderLimits) -> BoundedNotebook:
    budget = _Budget(limits)
    shown: list[dict] = []
    summaries: list[CellSummary] = []
    for index, raw in enumerate(cells):
        if budget.reached:
            break
        cell, summary = _bound_cell(index, raw, limits, budget)
        shown.append(cell)
        summaries.append(summary)
    metadata = top.get("metadata") if isinstance(top.get("metadata"), dict) else {}
    language = (metadata.get("language_info") or {}) if isinstance(metadata, dict) else {}
    name = language.get("name") if isinstance(language, dict) else None
    notebook = {
        "nbformat": 4,
        "nbformat_minor": 5,
        "metadata": {"language_info": {"name": name if _is_language(name) else "python"}},
        "cells": shown,
    }
    return BoundedNotebook(notebook, summaries, total, total - len(shown), budget.reached)


def _is_language(name: Any) -> bool:
    return isinstance(name, str) and _LANGUAGE.fullmatch(name) is not None


def _bound_cell(index: int, raw: Any, limits: RenderLimits, budget: _Budget):
    raw = raw if isinstance(raw, dict) else {}
    cell_type = raw.get("cell_type")
    source = _text(raw.get("source"))
    cell_id = raw.get("id") if isinstance(raw.get("id"), str) else None
    if cell_id is not None:
        cell_id = cell_id[:_MAX_CELL_ID_CHARS]
    summary = CellSummary(
        index=index,
        cell_id=cell_id,
        cell_type=cell_type if cell_type in ("code", "markdown", "raw") else "unreadable",
        source_sha256=hashlib.sha256(source.encode("utf-8", "replace")).hexdigest(),
        first_line=_short(next((line for line in source.splitlines() if line.strip()), ""), 80),
    )
    shown_source = _truncate(source, limits.max_source_chars)
    if not budget.take(len(shown_source)):
        shown_source = _left_out(len(source), "the render reached its size budget")
    metadata = {"kioskhub": {"index": index, "cell_id": cell_id or ""}}
    cell: dict[str, Any] = {"id": f"cell-{index}", "metadata": metadata, "source": shown_source}
    if cell_type in ("code", "markdown") and not budget.take_markup(len(shown_source)):
        metadata["kioskhub"]["plain"] = True
        cell_type = "raw" if cell_type == "markdown" else cell_type
    if summary.cell_type == "unreadable":
        cell.update(cell_type="raw", source=f"[cell {index} could not be read: not a known type]")
    elif cell_type == "code":
        outputs = raw.get("outputs") if isinstance(raw.get("outputs"), list) else []
        count = raw.get("execution_count")
        cell.update(
            cell_type="code",
            execution_count=count if isinstance(count, int) and count >= 0 else None,
            outputs=_bound_outputs(outputs, limits, budget),
        )
    else:
        cell["cell_type"] = cell_type
        if cell_type == "markdown":
            attachments = _bound_attachments(raw.get("attachments"), limits, budget)
            if attachments:
                cell["attachments"] = attachments
    return cell, summary


def _bound_outputs(outputs: list, limits: RenderLimits, budget: _Budget) -> list[dict]:
    bounded = [_bound_output(o, limits, budget) for o in outputs[: limits.max_outputs_per_cell]]
    if len(outputs) > limits.max_outputs_per_cell:
        more = len(outputs) - limits.max_outputs_per_cell
        bounded.append(_note(f"[{more:,} more outputs not shown]"))
    return bounded


def _bound_output(output: Any, limits: RenderLimits, budget: _Budget) -> dict:
    output = output if isinstance(output, dict) else {}
    kind = output.get("output_type")
    if kind == "stream":
        name = output.get("name") if output.get("name") in ("stdout", "stderr") else "stdout"
        text = _truncate(_text(output.get("text")), limits.max_output_chars)
        if not budget.take(len(text)):
            return _note("[output not shown: the render reached its size budget]")
        return {"output_type": "stream", "name": name, "text": budget.coloured(text)}
    if kind == "error":
        lines = output.get("traceback") if isinstance(output.get("traceback"), list) else []
        text = _truncate("\n".join(line for line in lines if isinstance(line, str)),
                         limits.max_output_chars)  # fmt: skip
        if not budget.take(len(text)):
            return _note("[error not shown: the render reached its size budget]")
        ename = _short(_text(output.get("ename")), 200)
        evalue = _truncate(_text(output.get("evalue")), 2000)
        traceback = [budget.coloured(text)]
        return {"output_type": "error", "ename": ename, "evalue": evalue, "traceback": traceback}
    if kind in ("execute_result", "display_data"):
        data = output.get("data") if isinstance(output.get("data"), dict) else {}
        return _bound_rich_output(kind, data, output.get("metadata"), limits, budget)
    return _note(f"[output of unknown type {_short(str(kind), 40)!r} not shown]")


def _bound_rich_output(kind, data: dict, metadata: Any, limits: RenderLimits, budget: _Budget):
    kept: dict[str, str] = {}
    for mime in SHOWN_MIME_TYPES:
        value = _text(data.get(mime)) if mime in data else None
        if value is None:
            continue
        if mime in _IMAGE_TYPES:
            value = "".join(value.split())
            if not _is_base64(value):
                kept["text/plain"] = f"[{mime} image not shown: it is not valid base64]"
                continue
            if len(value) > limits.max_image_bytes:
                kept["text/plain"] = _left_out(
                    len(value), f"{mime} images over {limits.max_image_bytes / MIB:.0f} MiB"
                )
                continue
            if not budget.take(len(value), image=True):
                kept["text/plain"] = "[image not shown: the render reached its size budget]"
                continue
        else:
            if len(value) > limits.max_output_chars and mime != "text/plain":
                continue  # a cut HTML, SVG or LaTeX would be broken: fall back to the text
            value = _truncate(value, limits.max_output_chars)
            if not budget.take(len(value)):
                continue
            value = budget.coloured(value) if mime == "text/plain" else value
            if mime in ("text/html", "text/markdown") and not budget.take_markup(len(value)):
                continue
        kept[mime] = value
    if not kept:
        others = ", ".join(_short(str(m), 60) for m in list(data)[:5]) or "no data"
        kept["text/plain"] = f"[output not shown: {others}]"
    bounded = {"output_type": kind, "data": kept, "metadata": _image_sizes(metadata, kept)}
    if kind == "execute_result":
        bounded["execution_count"] = None
    return bounded


def _image_sizes(metadata: Any, kept: dict) -> dict:
    """Keep only integer widths and heights of the images shown."""
    sizes: dict[str, dict[str, int]] = {}
    for mime in _IMAGE_TYPES:
        entry = metadata.get(mime) if isinstance(metadata, dict) else None
        if mime in kept and isinstance(entry, dict):
            sizes[mime] = {
                key: value
                for key in ("width", "height")
                if isinstance(value := entry.get(key), int) and 0 < value < 100_000
            }
    return sizes


def _bound_attachments(attachments: Any, limits: RenderLimits, budget: _Budget) -> dict:
    kept = {}
    for name, bundle in (attachments if isinstance(attachments, dict) else {}).items():
        if not isinstance(bundle, dict) or len(kept) >= limits.max_outputs_per_cell:
            continue
        for mime in _IMAGE_TYPES:
            value = "".join(_text(bundle.get(mime)).split())
            if (
                value
                and _is_base64(value)
                and len(value) <= limits.max_image_bytes
                and budget.take(len(value), image=True)
            ):
                kept[_short(str(name), 200)] = {mime: value}
                break
    return kept


def _is_base64(value: str) -> bool:
    if len(value) % 4 or _BASE64.fullmatch(value) is None:
        return False
    try:
        base64.b64decode(value[:4096], validate=True)
    except binascii.Error:
        return False
    return True


def _note(text: str) -> dict:
    return {"output_type": "stream", "name": "stderr", "text": text}


def _text(value: Any) -> str:
    """nbformat's multiline strings: a string or a list of strings."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return "".join(part for part in value if isinstance(part, str))
    return ""


def _truncate(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    return f"{text[:limit]}\n[{len(text) - limit:,} more characters not shown]"


def _left_out(chars: int, why: str) -> str:
    return f"[{chars:,} characters not shown: {why}]"


def _short(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
