"""The re-execution endpoint of a server: it writes only plain relative names inside its
run folder, and runs a notebook from which every published output has been removed."""

from __future__ import annotations

import base64

import pytest

from kioskhub.extensions.gallery_reexecute import ReexecuteError, cleared, write_files

NOTEBOOK = {
    "nbformat": 4,
    "nbformat_minor": 5,
    "metadata": {},
    "cells": [
        {"cell_type": "markdown", "id": "m", "metadata": {}, "source": "# t"},
        {"cell_type": "code", "id": "a", "metadata": {}, "source": "print(1)",
         "execution_count": 4, "outputs": [{"output_type": "stream", "name": "stdout",
                                            "text": "1\n"}]},
    ],
}  # fmt: skip


def test_published_outputs_are_removed_before_the_run():
    node = cleared(NOTEBOOK)
    assert node.cells[1]["outputs"] == [] and node.cells[1]["execution_count"] is None
    assert node.cells[0]["source"] == "# t"


@pytest.mark.parametrize(
    "name", ["../out.txt", "/etc/passwd", "a/../../b", "", "./x", "a//b", "bad\nname"]
)
def test_names_leading_out_of_the_run_folder_are_refused(tmp_path, name):
    run = tmp_path / "run"
    run.mkdir()
    with pytest.raises(ReexecuteError) as refused:
        write_files(run, cleared(NOTEBOOK), {name: ""})
    assert str(refused.value) == f"the file name {name!r} is not a plain relative path"
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["run"]


def test_files_are_written_beside_the_notebook(tmp_path):
    content = base64.b64encode(b"x,y\n").decode()
    path = write_files(tmp_path, cleared(NOTEBOOK), {"data/points.csv": content})
    assert path == tmp_path / "notebook.ipynb"
    assert (tmp_path / "data" / "points.csv").read_bytes() == b"x,y\n"
    with pytest.raises(ReexecuteError, match="'data/points.csv' is not base64"):
        write_files(tmp_path / "data", cleared(NOTEBOOK), {"data/points.csv": "%%%"})
