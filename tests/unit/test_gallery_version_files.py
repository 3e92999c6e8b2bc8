"""A version's files on disk: written below the service's own folder without following
links, served only by their manifest names, and the author taken out for anonymous links;
the list's search and its pages."""

from __future__ import annotations

import json
import os
import stat

import pytest

from kioskhub.hub.gallery.anonymous import without_author, without_author_metadata
from kioskhub.hub.gallery.publish_request import Publication
from kioskhub.hub.gallery.search import EntryQuery, page_of, query_from
from kioskhub.hub.gallery.store import EntryRow
from kioskhub.hub.gallery.version_files import make_root, open_file, read_all, write_version


def publication(files: dict[str, bytes]) -> Publication:
    return Publication("T", "", (), b'{"cells": []}', files)


def test_a_version_is_written_closed_and_read_back(tmp_path):
    root = make_root(tmp_path)
    write_version(root, 3, 1, publication({"data/a.csv": b"1,2\n"}))
    folder = root / "3" / "v1"
    assert stat.S_IMODE(root.stat().st_mode) == 0o700
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert stat.S_IMODE((folder / "files" / "data").stat().st_mode) == 0o700
    assert stat.S_IMODE((folder / "files" / "data" / "a.csv").stat().st_mode) == 0o600
    assert read_all(open_file(root, 3, 1, None)) == b'{"cells": []}'
    assert read_all(open_file(root, 3, 1, "data/a.csv")) == b"1,2\n"
    assert not (root / "3" / "v1.partial").exists()


def test_a_link_planted_in_the_tree_is_not_followed(tmp_path):
    (tmp_path / "state").mkdir()
    root = make_root(tmp_path / "state")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_text("not the gallery's")
    write_version(root, 1, 1, publication({"a.txt": b"a"}))
    (root / "1" / "v1" / "files" / "link").symlink_to(outside)
    with pytest.raises(OSError):
        open_file(root, 1, 1, "link/secret")
    (root / "2").symlink_to(outside)
    with pytest.raises(OSError):
        write_version(root, 2, 1, publication({"secret": b"overwritten"}))
    assert (outside / "secret").read_text() == "not the gallery's"
    assert os.listdir(outside) == ["secret"]


def test_an_anonymous_notebook_loses_its_author_fields():
    notebook = {
        "metadata": {"authors": [{"name": "Ada"}], "author": "Ada", "kernelspec": {"name": "p"}},
        "cells": [{"cell_type": "code", "source": "", "metadata": {"author": "Ada", "tags": []}}],
        "nbformat": 4,
    }
    served = json.loads(without_author_metadata(json.dumps(notebook).encode()))
    assert served["metadata"] == {"kernelspec": {"name": "p"}}
    assert served["cells"][0]["metadata"] == {"tags": []}
    assert without_author({"number": 1, "author": "ada"}) == {"number": 1}


def entry(entry_id, title, author, tags, environment) -> EntryRow:
    return EntryRow(entry_id, author, title, "", tags, "site", environment, 1, 0.0, 0.0)


ENTRIES = [
    entry(1, "Fitting peaks", "ada", ("physics", "fit"), "default"),
    entry(2, "Peak widths", "bob", ("physics",), "ada.fit"),
    entry(3, "Cell counts", "ada", ("biology",), "default"),
]


@pytest.mark.parametrize(
    ("arguments", "ids", "total"),
    [
        ({}, [1, 2, 3], 3),
        ({"q": "PEAK"}, [1, 2], 2),
        ({"author": "ada"}, [1, 3], 2),
        ({"tag": "Physics"}, [1, 2], 2),
        ({"environment": "ada.fit"}, [2], 1),
        ({"q": "peak", "author": "ada"}, [1], 1),
        ({"per_page": "2"}, [1, 2], 3),
        ({"per_page": "2", "page": "2"}, [3], 3),
        ({"per_page": "0"}, [1], 3),
        ({"per_page": "100000"}, [1, 2, 3], 3),
    ],
)
def test_the_list_filters_on_the_server_a_page_at_a_time(arguments, ids, total):
    entries, matched = page_of(ENTRIES, query_from(arguments))
    assert ([e.entry_id for e in entries], matched) == (ids, total)


def test_a_page_that_is_not_a_number_says_so():
    with pytest.raises(ValueError, match="'page' must be a whole number"):
        query_from({"page": "two"})
    assert query_from({"tag": " Fit "}) == EntryQuery(tag="fit")
