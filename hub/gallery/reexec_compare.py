"""Whether a re-executed notebook reproduces its published version, cell by cell. Pure.

Code cells are matched by nbformat ``id`` when every cell of both notebooks has one, else by
position. Each published code cell gets one result:

- ``same``: its outputs match: text (streams, ``text/plain``, and other text kinds of an
  output without ``text/plain``) equal exactly once its numbers are set aside, and those
  numbers equal within the tolerance; images (PNG, JPEG) within ``image_distance`` bits of
  a 64-bit difference hash; the same error, if it raised one before;
- ``differs``: with what differs, e.g. ``output 1 text: '12:00' → '12:01'``;
- ``failed``: it raises now and did not before (``ZeroDivisionError: division by zero``);
- ``not run``: the re-execution did not reach it.

Consecutive stream outputs of the same stream are joined first, since a kernel may split
printed text differently from one run to the next. Execution counts and metadata are not
compared. The badge is ``reproduced``, ``differs (cells 2, 5)`` or ``failed (cell 3:
ZeroDivisionError: division by zero)``, cells numbered from 1 in notebook order.
"""

from __future__ import annotations

import base64
import binascii
import io
import math
import re
from dataclasses import dataclass
from typing import Any

from PIL import Image, UnidentifiedImageError

from kioskhub.hub.gallery.compare import cell_keys, source_of

IMAGE_TYPES = ("image/png", "image/jpeg")
MAX_IMAGE_BYTES = 8 * 1024 * 1024
MAX_IMAGE_PIXELS = 40_000_000
SHOWN_CHARS = 80

NUMBER = re.compile(r"[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?")


@dataclass(frozen=True)
class Tolerance:
    """How far numbers and images may move and still count as the same."""

    relative: float = 1e-9
    absolute: float = 1e-12
    image_distance: int = 6


TOLERANCE_FIELDS = {"relative": float, "absolute": float, "image_distance": int}


def tolerance_from(metadata: Any, requested: Any = None) -> Tolerance:
    """The tolerance in ``requested`` (from a request), else ``metadata.kioskhub.reproduce``.

    Raises ValueError naming the bad field and what it must be.
    """
    given = requested
    where = "'tolerance'"
    if given is None:
        reproduce = ((metadata or {}).get("kioskhub") or {}).get("reproduce") or {}
        given = reproduce.get("tolerance") if isinstance(reproduce, dict) else None
        where = "the notebook's metadata kioskhub.reproduce.tolerance"
    if given is None:
        return Tolerance()
    if not isinstance(given, dict):
        raise ValueError(f'{where} must be an object such as {{"relative": 1e-6}}')
    unknown = sorted(set(given) - set(TOLERANCE_FIELDS))
    if unknown:
        raise ValueError(f"{where} has unknown fields {unknown}; use {sorted(TOLERANCE_FIELDS)}")
    values = {}
    for name, kind in TOLERANCE_FIELDS.items():
        if name not in given:
            continue
        value = given[name]
        good = isinstance(value, int | float) and not isinstance(value, bool)
        if kind is int:
            good = good and float(value).is_integer()
        if not good or not math.isfinite(value) or value < 0:
            raise ValueError(
                f"{where}: '{name}' must be a {'whole ' if kind is int else ''}"
                f"number of 0 or more, not {value!r}"
            )
        values[name] = kind(value)
    return Tolerance(**values)


def shown(text: str) -> str:
    """A short quote of ``text`` for a message."""
    return repr(text if len(text) <= SHOWN_CHARS else text[:SHOWN_CHARS] + "…")


def compare_text(was: str, now: str, tolerance: Tolerance) -> str | None:
    """None when equal (numbers within tolerance), else what differs."""
    if was == now:
        return None
    if NUMBER.sub("#", was) != NUMBER.sub("#", now):
        return f"{shown(was)} → {shown(now)}"
    for old, new in zip(NUMBER.findall(was), NUMBER.findall(now), strict=True):
        a, b = float(old), float(new)
        if not math.isclose(a, b, rel_tol=tolerance.relative, abs_tol=tolerance.absolute):
            return f"number {old} → {new}"
    return None


def image_hash(encoded: Any) -> int:
    """A 64-bit difference hash of a base64 PNG or JPEG; ValueError if it cannot be read."""
    if isinstance(encoded, list):
        encoded = "".join(encoded)
    if not isinstance(encoded, str) or len(encoded) > MAX_IMAGE_BYTES * 4 // 3 + 4:
        raise ValueError("not an image of at most 8 MiB")
    try:
        image = Image.open(io.BytesIO(base64.b64decode(encoded)))
        if image.width * image.height > MAX_IMAGE_PIXELS:
            raise ValueError(f"too large ({image.width}×{image.height} pixels)")
        small = image.convert("L").resize((9, 8), Image.Resampling.BOX)
    except (binascii.Error, OSError, UnidentifiedImageError, Image.DecompressionBombError):
        raise ValueError("not a readable image") from None
    pixels = small.tobytes()
    bits = 0
    for row in range(8):
        for column in range(8):
            left, right = pixels[row * 9 + column], pixels[row * 9 + column + 1]
            bits = (bits << 1) | (left > right)
    return bits


def compare_image(was: Any, now: Any, tolerance: Tolerance) -> str | None:
    try:
        old = image_hash(was)
    except ValueError:
        return None if was == now else "image differs (the published one cannot be read)"
    try:
        new = image_hash(now)
    except ValueError as error:
        return f"image cannot be read: {error}"
    distance = (old ^ new).bit_count()
    if distance > tolerance.image_distance:
        return f"image differs ({distance} of 64 hash bits)"
    return None


def joined_outputs(outputs: Any) -> list[dict[str, Any]]:
    """The cell's outputs, consecutive streams of one name joined into one."""
    joined: list[dict[str, Any]] = []
    for output in outputs if isinstance(outputs, list) else []:
        if not isinstance(output, dict):
            continue
        if output.get("output_type") == "stream":
            text = source_of({"source": output.get("text", "")})
            last = joined[-1] if joined else None
            if last and last["output_type"] == "stream" and last["name"] == output.get("name"):
                last["text"] += text
                continue
            output = {"output_type": "stream", "name": output.get("name"), "text": text}
        joined.append(output)
    return joined


def output_kind(output: dict[str, Any]) -> str:
    kind = output.get("output_type")
    if kind == "stream":
        return f"stream {output.get('name')}"
    return "result" if kind in ("execute_result", "display_data") else str(kind)


def compare_data(was: dict, now: dict, tolerance: Tolerance) -> list[str]:
    """What differs between two outputs' ``data`` bundles."""
    differences = []
    compared = [t for t in IMAGE_TYPES if t in was]
    if "text/plain" in was:
        compared.append("text/plain")
    else:
        compared += [t for t in was if t.startswith("text/") or t.endswith("json")]
    for kind in compared:
        if kind not in now:
            differences.append(f"{kind} missing")
        elif kind in IMAGE_TYPES:
            differences.append(compare_image(was[kind], now[kind], tolerance))
        else:
            as_text = [
                source_of({"source": v}) if isinstance(v, str | list) else repr(v)
                for v in (was[kind], now[kind])
            ]
            text = compare_text(*as_text, tolerance)
            differences.append(f"{kind}: {text}" if text else None)
    return [d for d in differences if d]


def compare_outputs(was: Any, now: Any, tolerance: Tolerance) -> list[str]:
    """What differs between the outputs of a cell as published and as re-executed."""
    old, new = joined_outputs(was), joined_outputs(now)
    old = [o for o in old if o.get("output_type") != "error"]
    new = [o for o in new if o.get("output_type") != "error"]
    if [output_kind(o) for o in old] != [output_kind(o) for o in new]:
        return [
            f"outputs {', '.join(map(output_kind, old)) or 'none'} → "
            f"{', '.join(map(output_kind, new)) or 'none'}"
        ]
    differences = []
    for number, (before, after) in enumerate(zip(old, new, strict=True), start=1):
        if before["output_type"] == "stream":
            text = compare_text(before["text"], after["text"], tolerance)
            found = [f"text: {text}"] if text else []
        else:
            found = compare_data(before.get("data") or {}, after.get("data") or {}, tolerance)
        differences += [f"output {number} {d}" for d in found]
    return differences


def error_of(outputs: Any) -> str | None:
    for output in outputs if isinstance(outputs, list) else []:
        if isinstance(output, dict) and output.get("output_type") == "error":
            error = f"{output.get('ename', 'Error')}: {output.get('evalue', '')}"
            return error if len(error) <= 2 * SHOWN_CHARS else error[: 2 * SHOWN_CHARS] + "…"
    return None


def compare_cell(was: dict, now: dict | None, tolerance: Tolerance) -> dict[str, Any]:
    """``{"result": same|differs|failed|not run, "why": [...]}`` for one code cell."""
    ran = now is not None and (
        now.get("execution_count") is not None or was.get("execution_count") is None
    )
    if not ran:
        return {"result": "not run", "why": []}
    before, after = error_of(was.get("outputs")), error_of(now.get("outputs"))
    if after and not before:
        return {"result": "failed", "why": [after]}
    why = compare_outputs(was.get("outputs"), now.get("outputs"), tolerance)
    if before != after:
        why.append(f"error {before or 'none'} → {after or 'none'}")
    if source_of(was) != source_of(now):
        why.insert(0, "its source differs")
    return {"result": "differs" if why else "same", "why": why}


def compare_reexecution(
    published: dict[str, Any],
    reexecuted: dict[str, Any],
    tolerance: Tolerance,
    stopped: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Per-cell results for the published notebook's code cells, and the badge.

    ``stopped``: ``{index, why}`` when the run was stopped in cell ``index`` of the
    re-executed notebook (a time limit): that cell failed, for that reason.
    """
    old = [c for c in published.get("cells") or [] if isinstance(c, dict)]
    new = [c for c in reexecuted.get("cells") or [] if isinstance(c, dict)]
    old_keys, new_keys = cell_keys(old), cell_keys(new)
    if old_keys is None or new_keys is None:
        old_keys = [f"index:{n}" for n in range(len(old))]
        new_keys = [f"index:{n}" for n in range(len(new))]
    after = dict(zip(new_keys, new, strict=True))
    cells = []
    for index, (key, cell) in enumerate(zip(old_keys, old, strict=True)):
        if cell.get("cell_type") != "code":
            continue
        result = compare_cell(cell, after.get(key), tolerance)
        if stopped and stopped.get("index") is not None and key == stopped_key(stopped, new_keys):
            result = {"result": "failed", "why": [str(stopped.get("why"))]}
        cells.append({"index": index, "cell": key, **result})
    return {"badge": badge_of(cells), "cells": cells}


def stopped_key(stopped: dict[str, Any], keys: list[str]) -> str | None:
    index = stopped["index"]
    return keys[index] if isinstance(index, int) and 0 <= index < len(keys) else None


def badge_of(cells: list[dict[str, Any]]) -> str:
    """``reproduced``, ``differs (cells …)`` or ``failed (cell n: …)``."""
    for cell in cells:
        if cell["result"] == "failed":
            return f"failed (cell {cell['index'] + 1}: {cell['why'][0]})"
    other = [str(cell["index"] + 1) for cell in cells if cell["result"] != "same"]
    if other:
        return f"differs (cell{'s' if len(other) > 1 else ''} {', '.join(other)})"
    return "reproduced"
