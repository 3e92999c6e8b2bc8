"""Review threads on a version, for the signed-in API, reviewer links and the pages alike:
listing them (with those of earlier versions), opening one on a cell, commenting, resolving
and reopening, each after the rules of ``threads_access``. Names are given as the viewer may
see them (``threads_access.display_name``)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from tornado import web

from . import threads_store
from .access import shows_author
from .api_base import GalleryState
from .reading import get_version, notebook_of
from .store import EntryRow
from .threads_access import (
    Actor,
    ThreadResolved,
    can_resolve,
    check_comment,
    check_discuss,
    check_resolve,
    display_name,
    is_entry_author,
)
from .threads_cells import CellAnchor, cell_anchors, find_cell
from .threads_store import ThreadRow

MAX_CELLS_IN_FORM = 2000


async def version_cells(state: GalleryState, entry: EntryRow, number: int) -> list[CellAnchor]:
    """The cells of version ``number`` a thread may be anchored to."""
    await get_version(state, entry, number)
    notebook = await notebook_of(state, entry, number, show_author=True)
    return await asyncio.to_thread(cell_anchors, notebook)


async def thread_on(state: GalleryState, entry: EntryRow, number: int, thread_id: int):
    thread = await state.call(threads_store.get_thread, entry.entry_id, number, thread_id)
    if thread is None:
        raise web.HTTPError(404, "version %s has no thread %s", number, thread_id)
    return thread


async def open_thread(
    state: GalleryState, entry: EntryRow, number: int, actor: Actor, fields: dict
) -> int:
    check_discuss(entry.rules, actor, time.time())
    text = check_comment(fields.get("text"))
    cell = find_cell(await version_cells(state, entry, number), fields.get("cell_id"), number)
    return await state.call(
        threads_store.open_thread, entry.entry_id, number, cell.cell_id, cell.quote,
        actor.writer, text,
    )  # fmt: skip


async def comment(
    state: GalleryState, entry: EntryRow, number: int, thread_id: int, actor: Actor, fields: dict
) -> None:
    check_discuss(entry.rules, actor, time.time())
    thread = await thread_on(state, entry, number, thread_id)
    text = check_comment(fields.get("text"))
    if thread.resolved is not None:
        raise ThreadResolved("this thread is resolved; reopen it to comment")
    await state.call(threads_store.add_comment, entry.entry_id, thread_id, actor.writer, text)


async def resolve(
    state: GalleryState, entry: EntryRow, number: int, thread_id: int, actor: Actor, done: bool
) -> None:
    """Resolve (``done``) or reopen the thread."""
    check_discuss(entry.rules, actor, time.time())
    thread = await thread_on(state, entry, number, thread_id)
    check_resolve(entry.rules, thread.opened_by, actor)
    await state.call(threads_store.set_resolved, thread_id, actor.writer if done else None)


def thread_model(thread: ThreadRow, entry: EntryRow, *, shows_author: bool) -> dict[str, Any]:
    """A thread as the API and the pages show it: writers by the name the viewer may see."""

    def name(writer):
        return display_name(writer, entry.rules, shows_author=shows_author)

    return {
        "id": thread.thread_id,
        "version": thread.version,
        "cell_id": thread.cell_id,
        "quote": thread.quote,
        "opened_by": name(thread.opened_by),
        "created": thread.created,
        "state": "open" if thread.resolved is None else "resolved",
        "resolved_by": name(thread.resolved_by) if thread.resolved_by else None,
        "resolved": thread.resolved,
        "comments": [
            {
                "id": c.comment_id,
                "author": name(c.author),
                "by_entry_author": is_entry_author(c.author, entry.rules),
                "text": c.text,
                "created": c.created,
            }
            for c in thread.comments
        ],
    }


async def threads_of_version(
    state: GalleryState, entry: EntryRow, number: int, *, shows_author: bool
) -> dict[str, list[dict[str, Any]]]:
    """The threads of version ``number``, and (``earlier``) those of the versions before it."""
    await get_version(state, entry, number)
    rows = await state.call(threads_store.threads, entry.entry_id, (1, number))
    return by_version(rows, entry, number, shows_author=shows_author)


def by_version(
    rows: list[ThreadRow], entry: EntryRow, number: int, *, shows_author: bool
) -> dict[str, list[dict[str, Any]]]:
    models = [thread_model(row, entry, shows_author=shows_author) for row in rows]
    return {
        "threads": [m for m in models if m["version"] == number],
        "earlier": sorted(
            (m for m in models if m["version"] < number), key=lambda m: -m["version"]
        ),
    }


async def page_threads(
    state: GalleryState, entry: EntryRow, number: int, actor: Actor, *, action: str, xsrf
) -> dict[str, Any]:
    """What the entry page shows ``actor`` of the threads: the version's (with the buttons
    they may use), the earlier ones (read-only), the cells to open one on, and where its
    forms post (``action``, with the ``xsrf`` token)."""
    shown = actor.link is None or shows_author(actor.link)
    rows = await state.call(threads_store.threads, entry.entry_id, (1, number))
    threads = by_version(rows, entry, number, shows_author=shown)
    resolvable = {r.thread_id for r in rows if can_resolve(entry.rules, r.opened_by, actor)}
    for model in threads["threads"]:
        model["may_resolve"] = model["id"] in resolvable
    cells = await version_cells(state, entry, number)
    return threads | {
        "cells": cells[:MAX_CELLS_IN_FORM],
        "cells_left_out": max(0, len(cells) - MAX_CELLS_IN_FORM),
        "action": action,
        "xsrf": xsrf.decode() if isinstance(xsrf, bytes) else xsrf,
    }
