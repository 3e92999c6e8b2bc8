"""Review threads in a real SQLite database: opened on a cell with a first comment,
answered, resolved and reopened; reviewer numbers given per link in the order links first
write; threads listed by version; the cells of a notebook they anchor to."""

from __future__ import annotations

import json

import pytest

from kioskhub.hub.gallery import store, threads_store
from kioskhub.hub.gallery.threads_access import Writer
from kioskhub.hub.gallery.threads_cells import QUOTE_CHARS, cell_anchors, find_cell


def version(title: str = "Fit") -> dict:
    return {"title": title, "abstract": "", "tags": [], "manifest": {"files": []},
            "pinning": {"environment": "default"}, "claims": {}}  # fmt: skip


@pytest.fixture
def database(tmp_path):
    path = store.database(tmp_path)
    store.open_database(path)
    threads_store.create_tables(path)
    threads_store.create_tables(path)  # again, as on every start
    return path


def test_a_thread_is_opened_answered_and_resolved(database):
    entry = store.create_entry(database, "ada", "site", version())
    store.add_version(database, entry, 2, "ada", version())
    link = store.create_link(database, entry, "s" * 43, "ada", 2e9, False)
    other = store.create_link(database, entry, "t" * 43, "ada", 2e9, True)

    first = threads_store.open_thread(
        database, entry, 1, "c0", "a = 1", Writer(user="bob"), "why 1?"
    )
    threads_store.add_comment(database, entry, first, Writer(user="ada"), "because")
    # The second link writes first: it is Reviewer 1, the other Reviewer 2, for good.
    threads_store.add_comment(database, entry, first, Writer(link_id=other), "and 2?")
    second = threads_store.open_thread(
        database, entry, 2, "index:3", "", Writer(link_id=link), "<script>x</script>"
    )
    threads_store.add_comment(database, entry, second, Writer(link_id=other), "me too")
    threads_store.set_resolved(database, first, Writer(user="ada"))

    on_first = threads_store.threads(database, entry, (1, 1))
    assert [t.thread_id for t in on_first] == [first]
    thread = on_first[0]
    assert (thread.version, thread.cell_id, thread.quote) == (1, "c0", "a = 1")
    assert thread.opened_by == Writer(user="bob")
    assert thread.resolved_by == Writer(user="ada") and thread.resolved is not None
    assert [(c.author, c.text) for c in thread.comments] == [
        (Writer(user="bob"), "why 1?"),
        (Writer(user="ada"), "because"),
        (Writer(link_id=other, pseudonym=1), "and 2?"),
    ]
    both = threads_store.threads(database, entry, (1, 2))
    assert [(t.version, t.thread_id) for t in both] == [(1, first), (2, second)]
    assert both[1].opened_by == Writer(link_id=link, pseudonym=2)
    assert both[1].comments[0].text == "<script>x</script>"  # stored as written
    assert [c.author.pseudonym for c in both[1].comments] == [2, 1]

    threads_store.set_resolved(database, first, None)
    reopened = threads_store.get_thread(database, entry, 1, first)
    assert reopened.resolved is None and reopened.resolved_by is None
    # A thread is found only on its own entry and version.
    assert threads_store.get_thread(database, entry, 2, first) is None
    assert threads_store.get_thread(database, entry + 1, 1, first) is None


def test_a_thread_needs_a_version_that_exists(database):
    entry = store.create_entry(database, "ada", "site", version())
    with pytest.raises(Exception, match="FOREIGN KEY"):
        threads_store.open_thread(database, entry, 5, "c0", "", Writer(user="bob"), "x")
    assert threads_store.threads(database, entry, (1, 5)) == []


def notebook(*cells) -> bytes:
    return json.dumps({"cells": list(cells), "metadata": {}, "nbformat": 4}).encode()


def test_cells_are_named_by_id_else_by_position():
    anchors = cell_anchors(
        notebook(
            {"cell_type": "code", "id": "abc", "source": ["import numpy\n", "x  =  1\n"]},
            {"cell_type": "markdown", "source": "# Title"},
            {"cell_type": "code", "id": "", "source": "y" * 500},
            "not a cell",
        )
    )
    assert [(a.cell_id, a.index, a.cell_type) for a in anchors] == [
        ("abc", 0, "code"), ("index:1", 1, "markdown"), ("index:2", 2, "code"), ("index:3", 3, ""),
    ]  # fmt: skip
    assert anchors[0].quote == "import numpy x = 1"
    assert len(anchors[2].quote) == QUOTE_CHARS and anchors[2].quote.endswith("…")
    assert find_cell(anchors, "index:1", 1).quote == "# Title"
    with pytest.raises(ValueError, match="version 3 has no cell 'nope'; use the id of one"):
        find_cell(anchors, "nope", 3)
    with pytest.raises(ValueError, match="'cell_id' must name a cell"):
        find_cell(anchors, 5, 3)
