"""Publishing a version: check the body, pin the environment from the hub, write the files,
record the version. The steps the API's two publish routes share."""

from __future__ import annotations

import asyncio
from typing import Any

from . import store
from .access import Viewer, check_visibility
from .api_base import GalleryState
from .pinning import environment_name, pinning_for, server_options
from .publish_request import Publication, parse_publication
from .version_files import remove_version, write_version


def parse(state: GalleryState, body: dict[str, Any]) -> Publication:
    gallery = state.site.gallery
    return parse_publication(
        body,
        max_version_bytes=gallery.max_version_bytes,
        max_notebook_bytes=gallery.max_notebook_bytes,
    )


async def pinning_of_author(state: GalleryState, hub_auth, author: Viewer, server: str) -> dict:
    """The pinning of the environment the author's running server was started with."""
    options = await server_options(hub_auth.api_url, hub_auth.api_token, author.name, server)
    name, profile = environment_name(state.site, options, author.groups)
    return await asyncio.to_thread(pinning_for, state.site, state.catalog, name, profile)


def version_record(publication: Publication, pinning: dict) -> dict[str, Any]:
    return {
        "title": publication.title,
        "abstract": publication.abstract,
        "tags": list(publication.tags),
        "manifest": publication.manifest(),
        "pinning": pinning,
        "claims": publication.claims,
    }


async def publish_entry(
    state: GalleryState, author: Viewer, publication: Publication, pinning: dict
) -> int:
    """A new entry with version 1; its id."""
    visibility = check_visibility(author, publication.visibility or "draft")
    record = version_record(publication, pinning)
    async with state.publishing:
        entry_id = await state.call(store.next_entry_id)
        await asyncio.to_thread(write_version, state.root, entry_id, 1, publication)
        try:
            made = await state.call(store.create_entry, author.name, visibility, record)
        except BaseException:
            await asyncio.to_thread(remove_version, state.root, entry_id, 1)
            raise
    if made != entry_id:
        raise RuntimeError(f"the database gave entry {made}, the files were written for {entry_id}")
    return entry_id


async def publish_version(
    state: GalleryState, entry_id: int, author: Viewer, publication: Publication, pinning: dict
) -> int:
    """The next version of ``entry_id``; its number."""
    record = version_record(publication, pinning)
    async with state.publishing:
        number = await state.call(store.next_version_number, entry_id)
        await asyncio.to_thread(write_version, state.root, entry_id, number, publication)
        try:
            await state.call(store.add_version, entry_id, number, author.name, record)
        except BaseException:
            await asyncio.to_thread(remove_version, state.root, entry_id, number)
            raise
    return number
