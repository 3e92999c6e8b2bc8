"""A version exported as an RO-Crate on a real hub: the author downloads the zip (notebook,
files, metadata whose checksums match), a reviewer through an anonymous link gets one with
no author in it, a user who may not read the entry gets 404, and a manifest altered to claim
``../x`` stops the export instead of reaching the zip."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import sqlite3
import zipfile
from urllib.parse import unquote

import pytest
import requests

from tests.integration.test_gallery_service import SERVICE, call
from tests.integration.test_gallery_service import site as site  # the same hub, a fresh one

pytestmark = pytest.mark.integration

CSV = b"x,y\n1,2\n"


def publication() -> dict:
    return {
        "title": "Fit <b>crate</b>",
        "abstract": "A fit of the sample data.",
        "notebook": {
            "cells": [{"cell_type": "code", "id": "c0", "source": "print(1)", "metadata": {},
                       "outputs": [], "execution_count": None}],
            "metadata": {"authors": [{"name": "Ada Lovelace"}]},
            "nbformat": 4,
            "nbformat_minor": 5,
        },
        "files": {"data/points.csv": base64.b64encode(CSV).decode()},
        "claims": {"python": "3.12.1", "data_reads": [
            {"path": "/data/points.csv", "size": 8, "mtime": 1.7e9, "sha256": "e" * 64}]},
    }  # fmt: skip


def opened_crate(reply: requests.Response) -> tuple[zipfile.ZipFile, dict[str, dict]]:
    """The zip of a crate download, its members' checksums checked against its metadata."""
    assert reply.status_code == 200, reply.text[-2000:]
    assert reply.headers["Content-Type"] == "application/zip"
    assert reply.headers["Content-Disposition"].startswith("attachment; filename*=UTF-8''gallery-")
    assert reply.headers["X-Content-Type-Options"] == "nosniff"
    crate = zipfile.ZipFile(io.BytesIO(reply.content))
    metadata = json.loads(crate.read("ro-crate-metadata.json"))
    by_id = {entity["@id"]: entity for entity in metadata["@graph"]}
    assert by_id["ro-crate-metadata.json"]["about"] == {"@id": "./"}
    for part in by_id["./"]["hasPart"]:
        data = crate.read(unquote(part["@id"]))
        assert hashlib.sha256(data).hexdigest() == by_id[part["@id"]]["sha256"], part
    return crate, by_id


def test_a_version_exported_as_an_ro_crate(site):
    hub, ada, bob = site["hub"], site["ada"], site["bob"]
    ada.spawn()
    reply = call(ada, "POST", "/entries", json=publication())
    assert reply.status_code == 201, f"{reply.text}\n{hub.log_text()[-3000:]}"
    entry_id = reply.json()["id"]
    crate_path = f"/entries/{entry_id}/versions/1/crate.zip"

    # The author: every part, the author named, the data read referenced with its checksum.
    crate, by_id = opened_crate(call(ada, "GET", crate_path))
    assert sorted(crate.namelist()) == [
        "files/data/points.csv", "notebook.ipynb", "ro-crate-metadata.json",
        "ro-crate-preview.html",
    ]  # fmt: skip
    assert crate.read("files/data/points.csv") == CSV
    assert by_id["#author"]["name"] == "ada"
    assert by_id["#environment"]["name"] == "default"
    assert by_id["file:///data/points.csv"]["sha256"] == "e" * 64
    assert "file:///data/points.csv" not in [p["@id"] for p in by_id["./"]["hasPart"]]
    preview = crate.read("ro-crate-preview.html").decode()
    assert "Fit &lt;b&gt;crate&lt;/b&gt;" in preview and "<script" not in preview
    page = ada.http.get(f"{hub.url}{SERVICE}/entries/{entry_id}/v1", timeout=30).text
    assert f'href="{SERVICE}/api/entries/{entry_id}/versions/1/crate.zip" download>' in page

    # A draft: bob is told it does not exist.
    hidden = call(bob, "GET", crate_path)
    assert hidden.status_code == 404 and "Fit" not in hidden.text

    # An anonymous reviewer link: the same files, no author anywhere.
    link = call(ada, "POST", f"/entries/{entry_id}/links", json={"days": 1, "anonymous": True})
    url = link.json()["url"]
    review_page = requests.get(f"{hub.url}{url}", timeout=30).text
    assert f'href="{url}/versions/1/crate.zip" download>Download as RO-Crate' in review_page
    masked = requests.get(f"{hub.url}{url}/versions/1/crate.zip", timeout=60)
    crate, by_id = opened_crate(masked)
    assert "#author" not in by_id
    assert "authors" not in json.loads(crate.read("notebook.ipynb"))["metadata"]
    assert b"ada" not in crate.read("ro-crate-metadata.json").replace(b"metadata", b"")
    assert "Anonymous author" in crate.read("ro-crate-preview.html").decode()

    # A manifest altered to claim ../x: the export stops, nothing is served.
    with sqlite3.connect(site["folder"] / "state" / "gallery.sqlite") as db:
        (manifest,) = db.execute(
            "SELECT manifest FROM versions WHERE entry_id = ?", (entry_id,)
        ).fetchone()
        altered = json.loads(manifest)
        altered["files"].append({"name": "../x", "size": 1, "sha256": "0" * 64})
        db.execute(
            "UPDATE versions SET manifest = ? WHERE entry_id = ?", (json.dumps(altered), entry_id)
        )
    refused = call(ada, "GET", crate_path)
    assert refused.status_code == 400, refused.text
    assert refused.headers["Content-Type"] == "application/json"
    assert "the file name '../x' has an empty, '.' or '..' part" in refused.json()["message"]
