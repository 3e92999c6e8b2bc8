"""What an anonymous reviewer link serves: the author's name taken out of the notebook's
metadata and of the version's record. Pure."""

from __future__ import annotations

import json
from typing import Any

AUTHOR_KEYS = ("authors", "author", "creator", "contributors", "owner", "email")
VERSION_AUTHOR_KEYS = ("author",)


def without_author_metadata(notebook: bytes) -> bytes:
    """The notebook with author fields removed from its own and its cells' metadata."""
    document = json.loads(notebook)
    _strip(document.get("metadata"))
    for cell in document.get("cells") or []:
        if isinstance(cell, dict):
            _strip(cell.get("metadata"))
    return json.dumps(document, indent=1, ensure_ascii=False).encode()


def _strip(metadata: Any) -> None:
    if isinstance(metadata, dict):
        for key in AUTHOR_KEYS:
            metadata.pop(key, None)


def without_author(version: dict[str, Any]) -> dict[str, Any]:
    """A version's record with who published it left out."""
    return {key: value for key, value in version.items() if key not in VERSION_AUTHOR_KEYS}
