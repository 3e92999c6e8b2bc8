"""The threads on an entry page: what reviewers write arrives as text, forms post with the
XSRF token and run no script, earlier versions' threads are shown read-only, the author is
"Author" where hidden and a link holder "Reviewer <n>"."""

from __future__ import annotations

from kioskhub.hub.gallery.store import EntryRow
from kioskhub.hub.gallery.threads_access import Writer
from kioskhub.hub.gallery.threads_cells import CellAnchor
from kioskhub.hub.gallery.threads_store import CommentRow, ThreadRow
from kioskhub.hub.gallery.threads_work import thread_model
from tests.unit.test_gallery_templates_escape import ESCAPED, HOSTILE, render

ENTRY = EntryRow(1, "ada", "Fit", "", (), "site", "default", 2, 0.0, 0.0)


def thread(thread_id: int, version: int, *, resolved: bool = False) -> ThreadRow:
    return ThreadRow(
        thread_id, 1, version, HOSTILE, HOSTILE, Writer(user="bob"), 0.0,
        Writer(user="ada") if resolved else None, 5.0 if resolved else None,
        (
            CommentRow(1, Writer(user="bob"), HOSTILE, 0.0),
            CommentRow(2, Writer(user="ada"), "because", 1.0),
            CommentRow(3, Writer(link_id=4, pseudonym=1), "and?", 2.0),
        ),
    )  # fmt: skip


def page(show_author: bool) -> str:
    models = [thread_model(thread(n, v), ENTRY, shows_author=show_author) for n, v in
              [(3, 2), (1, 1)]]  # fmt: skip
    threads = {
        "threads": [models[0] | {"may_resolve": True}],
        "earlier": [models[1]],
        "cells": [CellAnchor(HOSTILE, 0, "code", HOSTILE)],
        "cells_left_out": 0,
        "action": "/services/gallery/api/entries/1/versions/2/threads",
        "xsrf": "TOKEN",
    }
    return render("gallery_entry.html", show_author=show_author, threads=threads)


def test_threads_are_escaped_and_post_with_the_token():
    html = page(show_author=True)
    section = html.split('id="kh-gallery-threads"')[1]
    assert HOSTILE not in section and section.count(ESCAPED) >= 5
    assert "<script" not in html
    # Open, comment, resolve: three forms on this version, each with the token.
    assert section.count('<input type="hidden" name="_xsrf" value="TOKEN">') == 3
    assert 'action="/services/gallery/api/entries/1/versions/2/threads/3/comments"' in section
    assert 'action="/services/gallery/api/entries/1/versions/2/threads/3/resolve"' in section
    assert "Reviewer 1" in section and "<strong>ada</strong> <span" in section


def test_who_may_not_resolve_sees_no_button():
    models = [thread_model(thread(3, 2), ENTRY, shows_author=True) | {"may_resolve": False}]
    threads = {"threads": models, "earlier": [], "cells": [], "cells_left_out": 0,
               "action": "/a", "xsrf": "TOKEN"}  # fmt: skip
    section = render("gallery_entry.html", show_author=True, threads=threads)
    assert 'action="/a/3/comments"' in section and "/resolve" not in section


def test_an_earlier_versions_threads_are_read_only():
    earlier = page(show_author=True).split('id="kh-gallery-earlier-threads"')[1]
    assert "On an earlier version (v1)" in earlier
    assert 'id="thread-1"' in earlier and "<form" not in earlier


def test_the_hidden_author_is_author():
    section = page(show_author=False).split('id="kh-gallery-threads"')[1]
    assert "<strong>ada</strong>" not in section
    assert "<strong>Author</strong>" in section and "<strong>bob</strong>" in section
