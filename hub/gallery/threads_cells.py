"""The cells a review thread may be anchored to: each cell of a version's notebook, named
by its nbformat id (``index:<n>``, its position, when it has none), with a short quote of
its source to show beside the thread. Pure."""

from __future__ import annotations

import json
from dataclasses import dataclass

QUOTE_CHARS = 160
INDEX_PREFIX = "index:"


@dataclass(frozen=True)
class CellAnchor:
    cell_id: str
    index: int
    cell_type: str
    quote: str


def cell_anchors(notebook: bytes) -> list[CellAnchor]:
    """Every cell of the notebook (JSON bytes), in order."""
    document = json.loads(notebook)
    cells = document.get("cells") if isinstance(document, dict) else None
    anchors = []
    for index, cell in enumerate(cells if isinstance(cells, list) else []):
        cell = cell if isinstance(cell, dict) else {}
        cell_id = cell.get("id")
        if not isinstance(cell_id, str) or not cell_id:
            cell_id = f"{INDEX_PREFIX}{index}"
        cell_type = cell.get("cell_type")
        anchors.append(
            CellAnchor(
                cell_id,
                index,
                cell_type if isinstance(cell_type, str) else "",
                quote_of(cell.get("source")),
            )
        )
    return anchors


def quote_of(source: object) -> str:
    """The start of a cell's source, whitespace folded, at most ``QUOTE_CHARS`` characters."""
    if isinstance(source, list):
        source = "".join(part for part in source if isinstance(part, str))
    if not isinstance(source, str):
        return ""
    folded = " ".join(source.split())
    return folded if len(folded) <= QUOTE_CHARS else folded[: QUOTE_CHARS - 1] + "…"


def find_cell(anchors: list[CellAnchor], cell_id: object, number: int) -> CellAnchor:
    """The cell ``cell_id`` of version ``number``; ValueError naming the problem otherwise."""
    if not isinstance(cell_id, str) or not cell_id:
        raise ValueError("'cell_id' must name a cell of the version (its id, or index:<n>)")
    for anchor in anchors:
        if anchor.cell_id == cell_id:
            return anchor
    raise ValueError(
        f"version {number} has no cell {cell_id[:80]!r}; use the id of one of its "
        f"{len(anchors)} cells (or index:<n> for a cell without one)"
    )
