"""Comparing two versions: cells by id (else by position), pinning, claims, data, files."""

from __future__ import annotations

from kioskhub.hub.gallery.compare import compare_cells, compare_versions


def cell(source, cell_id=None, cell_type="code", outputs=None) -> dict:
    data = {"cell_type": cell_type, "source": source, "metadata": {}, "outputs": outputs or []}
    return data | ({"id": cell_id} if cell_id else {})


def test_cells_are_matched_by_id_when_all_have_one():
    old = [cell("a = 1", "c1"), cell("b = 2", "c2"), cell("print(a)", "c3")]
    new = [cell("print(a)", "c3"), cell("a = 10", "c1"), cell("new()", "c4")]
    assert compare_cells(old, new) == {
        "matched_by": "id",
        "added": ["c4"],
        "removed": ["c2"],
        "changed": ["c1"],
        "outputs_changed": [],
    }


def test_cells_fall_back_to_positions_without_ids():
    old = [cell("a = 1"), cell(["b", " = 2"]), cell("x", outputs=[{"text": "1"}])]
    new = [cell("a = 1"), cell("b = 2"), cell("x", outputs=[{"text": "2"}]), cell("y")]
    assert compare_cells(old, new) == {
        "matched_by": "position",
        "added": ["3"],
        "removed": [],
        "changed": [],
        "outputs_changed": ["2"],
    }


def test_a_changed_cell_type_is_a_change():
    old = [cell("# T", "c1", "code")]
    new = [cell("# T", "c1", "markdown")]
    assert compare_cells(old, new)["changed"] == ["c1"]


def test_repeated_ids_fall_back_to_positions():
    old = [cell("a", "c1"), cell("b", "c1")]
    assert compare_cells(old, old)["matched_by"] == "position"


def version(number, cells, pinning, claims, files) -> dict:
    return {
        "number": number,
        "notebook": {"cells": cells},
        "pinning": pinning,
        "claims": claims,
        "manifest": {"notebook": {}, "files": files},
    }


def test_versions_compare_pinning_claims_data_and_files():
    old = version(
        1,
        [cell("a", "c1")],
        {"environment": "default", "kind": "venv", "digest": None, "commit": None},
        {
            "git_commit": "abc1234",
            "python": "3.12.1",
            "data_reads": [
                {"path": "/data/a.csv", "size": 10, "mtime": 1.0, "sha256": "1" * 64},
                {"path": "/data/gone.csv", "size": 5, "mtime": 1.0, "sha256": None},
            ],
        },
        [{"name": "a.csv", "size": 1, "sha256": "a"}, {"name": "b.csv", "size": 1, "sha256": "b"}],
    )
    new = version(
        2,
        [cell("a", "c1")],
        {"environment": "ada.fit", "kind": "image", "digest": "sha256:" + "f" * 64, "commit": "c0"},
        {
            "git_commit": "def5678",
            "python": "3.12.1",
            "data_reads": [
                {"path": "/data/a.csv", "size": 12, "mtime": 2.0, "sha256": "2" * 64},
                {"path": "/data/new.csv", "size": 5, "mtime": 1.0, "sha256": None},
            ],
        },
        [{"name": "a.csv", "size": 2, "sha256": "c"}, {"name": "c.csv", "size": 1, "sha256": "d"}],
    )
    assert compare_versions(old, new) == {
        "from": 1,
        "to": 2,
        "cells": {
            "matched_by": "id",
            "added": [],
            "removed": [],
            "changed": [],
            "outputs_changed": [],
        },
        "pinning": {
            "environment": {"from": "default", "to": "ada.fit"},
            "kind": {"from": "venv", "to": "image"},
            "digest": {"from": None, "to": "sha256:" + "f" * 64},
            "commit": {"from": None, "to": "c0"},
        },
        "claims": {"git_commit": {"from": "abc1234", "to": "def5678"}},
        "data_reads": {
            "added": ["/data/new.csv"],
            "removed": ["/data/gone.csv"],
            "changed": ["/data/a.csv"],
        },
        "files": {"added": ["c.csv"], "removed": ["b.csv"], "changed": ["a.csv"]},
    }
