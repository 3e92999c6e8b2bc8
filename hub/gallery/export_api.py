"""A version as an RO-Crate zip: ``<prefix>api/entries/<id>/versions/<n>/crate.zip`` for
readers (404 for anyone else) and ``<prefix>review/<secret>/versions/<n>/crate.zip`` for a
reviewer link's holders (the author left out through an anonymous link).

The zip is built in a thread into an unnamed temporary file (two at a time), then sent in
chunks: the notebook as the version's page serves it, the version's files (opened without
following links, their sha256 checked against the manifest as they are copied),
``ro-crate-metadata.json`` and ``ro-crate-preview.html``. Its size is bounded by the
version's, which publishing bounds. Members are named by the gallery only:
``notebook.ipynb``, ``files/<checked name>`` and the two metadata files.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import tempfile
import zipfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tornado import web

from . import export_crate
from .access import Viewer, shows_author
from .api_base import GalleryHandler, GalleryState, SafeHeaders, requires
from .publish_request import file_line
from .reading import get_version, notebook_of
from .review import SECRET, ReviewHandler
from .store import EntryRow
from .version_files import CHUNK, open_file

ZIP_TYPE = "application/zip"
BUILDING = asyncio.Semaphore(2)
"""Crates built at once: the rest wait, so that link holders cannot fill the disk or CPUs."""


class TamperedFile(RuntimeError):
    """A version's file on disk no longer matches its manifest: the site's admins must
    look (500 with this message, logged on one line)."""

    def __str__(self) -> str:
        return f"{super().__str__()}; the site's admins have been told (see the gallery's log)"


def crate_name(entry_id: int, number: int) -> str:
    return f"gallery-{entry_id}-v{number}-ro-crate.zip"


def write_crate(root: Path, version: dict[str, Any], notebook: bytes, *, show_author: bool) -> Any:
    """The crate of ``version`` as a zip in an unnamed temporary file, rewound. Blocking."""
    manifest = version["manifest"] | {"notebook": file_line("notebook.ipynb", notebook)}
    described = version | {"manifest": manifest}
    metadata = export_crate.crate_metadata(described, show_author=show_author)
    members = [(export_crate.member_name(f["name"]), f) for f in manifest["files"]]
    stamp = datetime.fromtimestamp(version["created"], UTC).timetuple()[:6]
    out = tempfile.TemporaryFile()
    try:
        with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as crate:

            def member(name: str) -> zipfile.ZipInfo:
                info = zipfile.ZipInfo(name, date_time=max(stamp, (1980, 1, 1, 0, 0, 0)))
                info.compress_type = zipfile.ZIP_DEFLATED
                info.external_attr = 0o644 << 16
                return info

            crate.writestr(member(export_crate.METADATA), json.dumps(metadata, indent=2))
            crate.writestr(member(export_crate.PREVIEW), export_crate.preview_html(metadata))
            crate.writestr(member(export_crate.NOTEBOOK), notebook)
            for name, line in members:
                fd = open_file(root, version["entry_id"], version["number"], line["name"])
                copy_checked(fd, crate, member(name), line)
        out.seek(0)
        return out
    except BaseException:
        out.close()
        raise


def copy_checked(fd: int, crate: zipfile.ZipFile, info: zipfile.ZipInfo, line: dict) -> None:
    """Copy the file behind ``fd`` (closed after) into ``crate``; TamperedFile when its
    bytes are not the manifest's."""
    digest, size = hashlib.sha256(), 0
    with open(fd, "rb") as source, crate.open(info, "w") as target:
        while chunk := source.read(CHUNK):
            digest.update(chunk)
            size += len(chunk)
            target.write(chunk)
    if digest.hexdigest() != line["sha256"] or size != line["size"]:
        raise TamperedFile(f"file {line['name']!r} of this version changed on disk")


def temporary_chunks(handle) -> Any:
    """The temporary zip in chunks (closed after); each ``next`` blocks."""
    with handle:
        while chunk := handle.read(CHUNK):
            yield chunk


async def send_crate(
    handler: SafeHeaders, state: GalleryState, entry: EntryRow, number: int, *, show_author: bool
) -> None:
    version = await get_version(state, entry, number)
    notebook = await notebook_of(state, entry, number, show_author=show_author)
    async with BUILDING:
        try:
            handle = await asyncio.to_thread(
                write_crate, state.root, version, notebook, show_author=show_author
            )
        except TamperedFile as error:
            raise web.HTTPError(500, "%s", str(error)) from None
    await handler.send_file(crate_name(entry.entry_id, number), temporary_chunks(handle), ZIP_TYPE)


class CrateHandler(GalleryHandler):
    @requires("read")
    async def get(self, viewer: Viewer, entry: EntryRow, number: str):
        await send_crate(self, self.state, entry, int(number), show_author=True)


class ReviewCrateHandler(ReviewHandler):
    async def get(self, secret: str, number: str):
        entry, link = await self.opened(secret)
        await send_crate(self, self.state, entry, int(number), show_author=shows_author(link))


def export_routes(prefix: str, state: GalleryState) -> list[tuple]:
    return [
        (rf"{prefix}api/entries/(\d+)/versions/(\d+)/crate\.zip", CrateHandler, {"state": state}),
        (
            rf"{prefix}review/{SECRET}/versions/(\d+)/crate\.zip",
            ReviewCrateHandler,
            {"state": state, "prefix": prefix},
        ),
    ]
