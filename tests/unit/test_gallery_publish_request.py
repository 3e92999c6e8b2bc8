"""Publish requests: hostile file names refused with the name and the reason, limits
answered with 413 naming the setting, the author's claims checked, the environment ignored."""

from __future__ import annotations

import base64
import json

import pytest

from kioskhub.hub.gallery.file_names import BadFileName, check_file_name, check_file_names
from kioskhub.hub.gallery.publish_request import (
    BadRequest,
    TooLarge,
    parse_publication,
)

NOTEBOOK = {"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
LIMITS = {"max_version_bytes": 4096, "max_notebook_bytes": 1024}


def body(**changes) -> dict:
    return {"title": "Fit", "notebook": NOTEBOOK} | changes


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("../etc/passwd", "has an empty, '.' or '..' part"),
        ("data/../../x", "has an empty, '.' or '..' part"),
        ("a//b", "has an empty, '.' or '..' part"),
        ("./a", "has an empty, '.' or '..' part"),
        ("a/", "has an empty, '.' or '..' part"),
        ("..", "has an empty, '.' or '..' part"),
        ("/etc/passwd", "is absolute"),
        ("a\\..\\b", "holds a backslash"),
        ("evil\nname", "holds a control or invisible character"),
        ("nul\x00byte", "holds a control or invisible character"),
        ("rtl\u202etxt.exe", "holds a control or invisible character"),
        ("x" * 1025, "is longer than 1024 characters"),
        ("a/" + "y" * 256, "is over 255 characters"),
        ("", "must be a non-empty string"),
    ],
)
def test_hostile_file_names_are_refused_saying_why(name, why):
    with pytest.raises(BadFileName, match=why.replace("(", r"\(").replace(")", r"\)")):
        check_file_name(name)


def test_plain_relative_names_pass():
    assert check_file_name("data/results 2024.csv") == "data/results 2024.csv"
    assert check_file_name("..hidden/.env") == "..hidden/.env"


def test_a_name_cannot_be_both_a_file_and_a_folder():
    with pytest.raises(BadFileName, match="'data' is given both as a file and as a folder"):
        check_file_names(["data", "data/a.csv"])


def test_a_good_body_gives_the_notebook_files_and_manifest():
    publication = parse_publication(
        body(
            abstract=" A fit. ",
            tags=["Physics", "physics", "fit"],
            files={"data/a.csv": b64(b"x,y\n")},
            environment="a-lie",
            claims={"git_commit": "abc1234", "python": "3.12.1", "kernel": "python3"},
        ),
        **LIMITS,
    )
    assert publication.title == "Fit" and publication.abstract == "A fit."
    assert publication.tags == ("physics", "fit")
    assert publication.files == {"data/a.csv": b"x,y\n"}
    assert json.loads(publication.notebook) == NOTEBOOK
    manifest = publication.manifest()
    assert manifest["files"] == [
        {
            "name": "data/a.csv",
            "size": 4,
            "sha256": "9c6536d38fa37da58fac066342747e6d20fdace12ab5b287cf04506f2afe95b0",
        }
    ]
    assert manifest["notebook"]["size"] == len(publication.notebook)
    assert publication.claims == {
        "git_commit": "abc1234",
        "kernel": "python3",
        "python": "3.12.1",
        "data_reads": [],
    }
    assert not hasattr(publication, "environment")


def test_a_hostile_file_name_in_a_body_is_a_bad_request():
    with pytest.raises(BadFileName, match="is absolute"):
        parse_publication(body(files={"/root/.ssh/authorized_keys": b64(b"k")}), **LIMITS)


def test_a_notebook_over_the_limit_is_413_naming_the_setting():
    big = NOTEBOOK | {"metadata": {"pad": "x" * 2000}}
    with pytest.raises(TooLarge, match=r"at most 1024 bytes \(gallery.max_notebook_bytes\)"):
        parse_publication(body(notebook=big), **LIMITS)
    assert TooLarge.status == 413


def test_a_version_over_the_limit_is_413_naming_the_setting():
    files = {"a.bin": b64(b"0" * 3100), "b.bin": b64(b"1" * 1000)}
    with pytest.raises(TooLarge, match=r"at most 4096 bytes \(gallery.max_version_bytes\)"):
        parse_publication(body(files=files), **LIMITS)


def test_too_many_files_are_refused():
    files = {f"f{n}": "" for n in range(501)}
    with pytest.raises(TooLarge, match="at most 500 files"):
        parse_publication(body(files=files), **LIMITS)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"title": ""}, "'title' is required"),
        ({"notebook": "{}"}, "'notebook' must be the notebook's JSON"),
        ({"notebook": {"cells": [], "nbformat": 3}}, "nbformat 4 or later"),
        ({"files": {"a": "not base64!"}}, "the content of file 'a' is not base64"),
        ({"tags": ["<script>"]}, "the tag '<script>' is not a word"),
        ({"claims": {"git_commit": "; rm -rf /"}}, "'claims.git_commit' must be a git commit"),
        (
            {"claims": {"data_reads": [{"path": "/data/a", "size": -1, "mtime": 0}]}},
            r"'claims.data_reads\[0\].size' must be a whole number",
        ),
        ({"tolerance": {"relative": "1%"}}, "'tolerance': 'relative' must be a number"),
    ],
)
def test_bad_bodies_say_what_is_wrong(changes, message):
    with pytest.raises(BadRequest, match=message):
        parse_publication(body(**changes), **LIMITS)


def test_the_authors_tolerance_is_kept_with_the_claims():
    publication = parse_publication(body(tolerance={"relative": 1e-6}), **LIMITS)
    assert publication.claims["tolerance"] == {"relative": 1e-6}
    assert "tolerance" not in parse_publication(body(), **LIMITS).claims
