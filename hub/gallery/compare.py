"""What changed between two versions of an entry: cells, pinning, files, data read. Pure.

Cells are matched by their nbformat ``id`` when every cell of both notebooks has one
(nbformat 4.5 and later), else by position. A matched cell "changed" when its type or
source differs; a change of outputs alone is listed apart (``outputs_changed``).
"""

from __future__ import annotations

from typing import Any

PINNING_FIELDS = ("environment", "kind", "image", "digest", "content_hash", "commit", "profile")
CLAIM_FIELDS = ("git_commit", "kernel", "python")


def source_of(cell: dict[str, Any]) -> str:
    source = cell.get("source", "")
    return "".join(source) if isinstance(source, list) else str(source)


def cell_keys(cells: list[dict[str, Any]]) -> list[str] | None:
    """Each cell's id, or None when some cell has none (or ids repeat)."""
    ids = [cell.get("id") for cell in cells]
    if all(isinstance(i, str) and i for i in ids) and len(set(ids)) == len(ids):
        return ids
    return None


def compare_cells(old: list[dict[str, Any]], new: list[dict[str, Any]]) -> dict[str, Any]:
    """Added, removed, changed and outputs-changed cells, by id or else by position."""
    old_keys, new_keys = cell_keys(old), cell_keys(new)
    by = "id" if old_keys is not None and new_keys is not None else "position"
    if by == "position":
        old_keys = [str(n) for n in range(len(old))]
        new_keys = [str(n) for n in range(len(new))]
    before = dict(zip(old_keys, old, strict=True))
    after = dict(zip(new_keys, new, strict=True))
    changed, outputs_changed = [], []
    for key in new_keys:
        if key not in before:
            continue
        was, now = before[key], after[key]
        if was.get("cell_type") != now.get("cell_type") or source_of(was) != source_of(now):
            changed.append(key)
        elif was.get("outputs") != now.get("outputs"):
            outputs_changed.append(key)
    return {
        "matched_by": by,
        "added": [key for key in new_keys if key not in before],
        "removed": [key for key in old_keys if key not in after],
        "changed": changed,
        "outputs_changed": outputs_changed,
    }


def compare_values(old: dict[str, Any], new: dict[str, Any], names) -> dict[str, Any]:
    """``{name: {"from": old, "to": new}}`` for each of ``names`` that differs."""
    return {
        name: {"from": old.get(name), "to": new.get(name)}
        for name in names
        if old.get(name) != new.get(name)
    }


def compare_listed(
    old: list[dict[str, Any]], new: list[dict[str, Any]], key: str, fields: tuple[str, ...]
) -> dict[str, list[str]]:
    """Added, removed and changed items of two lists of records keyed by ``key``."""
    before = {item[key]: item for item in old}
    after = {item[key]: item for item in new}
    return {
        "added": sorted(set(after) - set(before)),
        "removed": sorted(set(before) - set(after)),
        "changed": sorted(
            name
            for name in set(before) & set(after)
            if any(before[name].get(f) != after[name].get(f) for f in fields)
        ),
    }


def compare_versions(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """Compare two versions, each ``{"number", "notebook", "pinning", "claims", "manifest"}``."""
    old_claims, new_claims = old.get("claims") or {}, new.get("claims") or {}
    return {
        "from": old["number"],
        "to": new["number"],
        "cells": compare_cells(old["notebook"].get("cells", []), new["notebook"].get("cells", [])),
        "pinning": compare_values(
            old.get("pinning") or {}, new.get("pinning") or {}, PINNING_FIELDS
        ),
        "claims": compare_values(old_claims, new_claims, CLAIM_FIELDS),
        "data_reads": compare_listed(
            old_claims.get("data_reads") or [],
            new_claims.get("data_reads") or [],
            "path",
            ("size", "mtime", "sha256"),
        ),
        "files": compare_listed(
            old["manifest"]["files"], new["manifest"]["files"], "name", ("size", "sha256")
        ),
    }
