"""Reading an entry the viewer may read, shared by the signed-in API and reviewer links:
a version's record, its notebook and files as downloads, and the comparison of two versions.
Through an anonymous link, the author is left out of all three (``anonymous``)."""

from __future__ import annotations

import asyncio
import hashlib
import json
from typing import Any

from tornado import web

from . import store
from .anonymous import without_author, without_author_metadata
from .api_base import GalleryState, SafeHeaders
from .compare import compare_versions
from .store import EntryRow
from .version_files import chunks, open_file, read_all


def entry_model(entry: EntryRow, base: str, *, show_author: bool) -> dict[str, Any]:
    """An entry as the list and the API show it; ``base``: its URL (API or reviewer link)."""
    model = {
        "id": entry.entry_id,
        "title": entry.title,
        "abstract": entry.abstract,
        "tags": list(entry.tags),
        "environment": entry.environment,
        "latest": entry.latest,
        "created": entry.created,
        "updated": entry.updated,
    }
    if show_author:
        model |= {"author": entry.author, "visibility": entry.visibility}
    return model


def version_model(version: dict[str, Any], base: str, *, show_author: bool) -> dict[str, Any]:
    """A version's record, with links to its notebook and files below ``base``."""
    model = version if show_author else without_author(version)
    files = f"{base}versions/{version['number']}/"
    return model | {
        "links": {
            "notebook": f"{files}notebook",
            "files": {f["name"]: f"{files}files/{f['name']}" for f in version["manifest"]["files"]},
        }
    }


async def served_version(
    state: GalleryState, entry: EntryRow, version: dict[str, Any], base: str, show_author: bool
) -> dict[str, Any]:
    """``version_model``, whose notebook size and sha256 are those of the notebook as
    served: without author fields when ``show_author`` is false, so that a copy checked
    against the record (``extensions.gallery_fetch``) matches what it downloads."""
    model = version_model(version, base, show_author=show_author)
    if show_author:
        return model
    data = await notebook_of(state, entry, version["number"], show_author=False)
    notebook = {**model["manifest"]["notebook"], "size": len(data)}
    notebook["sha256"] = hashlib.sha256(data).hexdigest()
    return model | {"manifest": {**model["manifest"], "notebook": notebook}}


async def get_version(state: GalleryState, entry: EntryRow, number: int) -> dict[str, Any]:
    version = await state.call(store.get_version, entry.entry_id, number)
    if version is None:
        raise web.HTTPError(404, "entry %s has no version %s", entry.entry_id, number)
    return version


async def notebook_of(state: GalleryState, entry: EntryRow, number: int, *, show_author: bool):
    """The notebook's bytes as served (author fields stripped through an anonymous link)."""
    fd = await asyncio.to_thread(open_file, state.root, entry.entry_id, number, None)
    data = await asyncio.to_thread(read_all, fd)
    return data if show_author else without_author_metadata(data)


async def send_notebook(
    handler: SafeHeaders, state: GalleryState, entry: EntryRow, number: int, *, show_author: bool
) -> None:
    await get_version(state, entry, number)
    data = await notebook_of(state, entry, number, show_author=show_author)
    await handler.send_file(
        f"gallery-{entry.entry_id}-v{number}.ipynb", iter([data]), "application/x-ipynb+json"
    )


async def send_version_file(
    handler: SafeHeaders, state: GalleryState, entry: EntryRow, number: int, name: str
) -> None:
    """File ``name`` of a version, when its manifest lists it (nothing else is served)."""
    version = await get_version(state, entry, number)
    if name not in {f["name"] for f in version["manifest"]["files"]}:
        raise web.HTTPError(404, "version %s has no file %r", number, name)
    fd = await asyncio.to_thread(open_file, state.root, entry.entry_id, number, name)
    await handler.send_file(name, chunks(fd), "application/octet-stream")


async def comparison(
    state: GalleryState, entry: EntryRow, old: int, new: int, *, show_author: bool
) -> dict[str, Any]:
    """What changed from version ``old`` to ``new`` of ``entry``."""
    sides = []
    for number in (old, new):
        version = await get_version(state, entry, number)
        notebook = await notebook_of(state, entry, number, show_author=show_author)
        sides.append(version | {"notebook": json.loads(notebook)})
    return compare_versions(*sides)


def version_numbers(handler: web.RequestHandler) -> tuple[int, int]:
    """``from`` and ``to`` of a compare request, as whole numbers."""
    try:
        return int(handler.get_argument("from")), int(handler.get_argument("to"))
    except ValueError:
        raise web.HTTPError(400, "'from' and 'to' must be version numbers") from None
