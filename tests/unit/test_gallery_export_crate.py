"""A version as an RO-Crate 1.1: the metadata document as a literal, its structure (every
part described, the descriptor about the root, conformance to 1.1), the author left out
for anonymous links, hostile names refused, and the zip's members and checksums."""

from __future__ import annotations

import hashlib
import json
import zipfile
from urllib.parse import unquote

import pytest

from kioskhub.hub.gallery.export_api import TamperedFile, write_crate
from kioskhub.hub.gallery.export_crate import crate_metadata, preview_html
from kioskhub.hub.gallery.file_names import BadFileName
from kioskhub.hub.gallery.publish_request import Publication, file_line
from kioskhub.hub.gallery.version_files import make_root, write_version

NOTEBOOK = b'{"cells": [], "metadata": {"authors": [{"name": "Ada"}]}, "nbformat": 4}'
CSV = b"x,y\n1,2\n"
HOSTILE = '<script>alert("crate")</script>'


def version(files: dict[str, bytes], **changes) -> dict:
    return {
        "entry_id": 3,
        "number": 2,
        "author": "lovelace",
        "created": 1.7e9,
        "title": "Fit",
        "abstract": "",
        "tags": [],
        "manifest": Publication("Fit", "", (), NOTEBOOK, files).manifest(),
        "pinning": {"environment": "default", "profile": None, "source": "site config",
                    "kind": "venv", "image": None, "path": "/opt/venv"},
        "claims": {"git_commit": None, "kernel": None, "python": None, "data_reads": []},
    } | changes  # fmt: skip


def full_version() -> dict:
    return version(
        {"data/points.csv": CSV, "a b#.txt": b"odd"},
        title=HOSTILE,
        abstract="A fit.",
        tags=["physics", "fit"],
        pinning={
            "environment": "team.fit-env",
            "source": "catalog",
            "kind": "image",
            "image": "registry.lab/fit:1",
            "digest": "sha256:" + "a" * 64,
            "content_hash": None,
            "commit": "b" * 40,
            "repository": "https://git.lab/team/fit.git",
        },  # fmt: skip
        claims={
            "git_commit": "abc1234",
            "kernel": "python3",
            "python": "3.12.1",
            "data_reads": [
                {"path": "/data/run 7/points.csv", "size": 8, "mtime": 1.6e9, "sha256": "e" * 64},
                {"path": "/data/big.h5", "size": 9, "mtime": 1.6e9, "sha256": None},
            ],
        },  # fmt: skip
    )


def test_the_metadata_of_a_plain_version():
    assert crate_metadata(version({}), show_author=True) == {
        "@context": [
            "https://w3id.org/ro/crate/1.1/context",
            {
                "sha256": "https://w3id.org/ro/terms/workflow-run#sha256",
                "ContainerImage": "https://w3id.org/ro/terms/workflow-run#ContainerImage",
            },
        ],
        "@graph": [
            {"@id": "ro-crate-metadata.json", "@type": "CreativeWork",
             "conformsTo": {"@id": "https://w3id.org/ro/crate/1.1"}, "about": {"@id": "./"}},
            {"@id": "./", "@type": "Dataset", "name": "Fit", "description": "Fit",
             "datePublished": "2023-11-14T22:13:20+00:00", "version": "2",
             "hasPart": [{"@id": "notebook.ipynb"}], "mainEntity": {"@id": "notebook.ipynb"},
             "mentions": {"@id": "#run"}, "author": {"@id": "#author"}},
            {"@id": "notebook.ipynb",
             "@type": ["File", "SoftwareSourceCode", "ComputationalWorkflow"], "name": "Fit",
             "contentSize": str(len(NOTEBOOK)), "encodingFormat": "application/x-ipynb+json",
             "sha256": hashlib.sha256(NOTEBOOK).hexdigest(),
             "programmingLanguage": {"@id": "#python"},
             "softwareRequirements": {"@id": "#environment"}, "author": {"@id": "#author"}},
            {"@id": "#python", "@type": "ComputerLanguage", "name": "Python",
             "url": {"@id": "https://www.python.org/"}},
            {"@id": "#environment", "@type": "SoftwareApplication", "name": "default",
             "description": "The environment the author's server ran, as recorded by KioskHub "
             "from the site config.", "applicationCategory": "venv"},
            {"@id": "#run", "@type": "CreateAction", "name": "The notebook's run before publishing",
             "instrument": {"@id": "notebook.ipynb"}, "object": [], "agent": {"@id": "#author"}},
            {"@id": "#author", "@type": "Person", "name": "lovelace"},
        ],
    }  # fmt: skip


def entities(metadata: dict) -> dict[str, dict]:
    ids = [entity["@id"] for entity in metadata["@graph"]]
    assert len(ids) == len(set(ids)), "every @id is described once"
    return {entity["@id"]: entity for entity in metadata["@graph"]}


def references(value) -> list[str]:
    if isinstance(value, dict):
        own = [value["@id"]] if set(value) == {"@id"} else []
        return own + [ref for inner in value.values() for ref in references(inner)]
    if isinstance(value, list):
        return [ref for inner in value for ref in references(inner)]
    return []


def test_the_structure_of_a_full_version():
    metadata = crate_metadata(full_version(), show_author=True)
    by_id = entities(metadata)
    assert by_id["ro-crate-metadata.json"]["about"] == {"@id": "./"}
    assert by_id["ro-crate-metadata.json"]["conformsTo"] == {"@id": "https://w3id.org/ro/crate/1.1"}
    root = by_id["./"]
    assert root["@type"] == "Dataset" and root["name"] == HOSTILE
    assert root["keywords"] == "physics, fit"
    parts = [part["@id"] for part in root["hasPart"]]
    assert parts == ["notebook.ipynb", "files/a%20b%23.txt", "files/data/points.csv"]
    # Every reference inside the crate is described; outside ones are absolute URIs.
    for ref in references(metadata["@graph"]):
        assert ref in by_id or ref.startswith("https://"), ref
    for part in parts:
        assert "File" in by_id[part]["@type"] and by_id[part]["sha256"]
    assert by_id["files/data/points.csv"] | {} == {
        "@id": "files/data/points.csv", "@type": "File", "name": "data/points.csv",
        "contentSize": "8", "encodingFormat": "text/csv",
        "sha256": hashlib.sha256(CSV).hexdigest(),
    }  # fmt: skip
    # The environment: image digest, and where its spec and lock are (referenced).
    environment = by_id["#environment"]
    assert environment["@type"] == ["SoftwareApplication", "ContainerImage"]
    assert environment["sha256"] == "a" * 64 and environment["identifier"] == "registry.lab/fit:1"
    source = by_id[environment["isBasedOn"]["@id"]]
    assert source["codeRepository"] == "https://git.lab/team/fit.git"
    assert source["version"] == "b" * 40 and "not included" in source["description"]
    # Data read: referenced by file: URI, not part of the crate's payload.
    run = by_id["#run"]
    reads = [by_id[ref["@id"]] for ref in run["object"]]
    assert [r["@id"] for r in reads] == ["file:///data/run%207/points.csv", "file:///data/big.h5"]
    assert not set(r["@id"] for r in reads) & set(parts)
    assert reads[0]["sha256"] == "e" * 64 and "sha256" not in reads[1]
    assert reads[0]["dateModified"] == "2020-09-13T12:26:40+00:00"
    assert all("not included" in r["description"] for r in reads)
    assert by_id["#python"]["version"] == "3.12.1"
    assert by_id["notebook.ipynb"]["version"] == "abc1234"


def test_an_anonymous_crate_names_no_author():
    metadata = crate_metadata(full_version(), show_author=False)
    text = json.dumps(metadata)
    assert "lovelace" not in text
    assert "#author" not in text and "Person" not in text
    assert "agent" not in entities(metadata)["#run"]
    assert "Anonymous author" in preview_html(metadata)


@pytest.mark.parametrize("name", ["../x", "/etc/passwd", "a/../../x", "a\\..\\x", "./x"])
def test_a_manifest_claiming_a_climbing_name_is_refused(name):
    record = version({"ok.txt": b"1"})
    record["manifest"]["files"].append({"name": name, "size": 1, "sha256": "0" * 64})
    with pytest.raises(BadFileName, match="file name"):
        crate_metadata(record, show_author=True)


def test_the_preview_is_escaped_and_runs_nothing():
    page = preview_html(crate_metadata(full_version(), show_author=True))
    assert HOSTILE not in page and "&lt;script&gt;" in page
    assert "<script" not in page.lower() and "on" + "load=" not in page
    assert "/data/run 7/points.csv" in page and "By lovelace" in page


def published(tmp_path, files: dict[str, bytes]):
    root = make_root(tmp_path)
    write_version(root, 3, 2, Publication("Fit", "", (), NOTEBOOK, files))
    return root


def test_the_zip_holds_the_notebook_files_and_metadata_with_matching_checksums(tmp_path):
    files = {"data/points.csv": CSV, "a b#.txt": b"odd"}
    root = published(tmp_path, files)
    record = full_version()
    with write_crate(root, record, NOTEBOOK, show_author=True) as handle:
        crate = zipfile.ZipFile(handle)
        assert sorted(crate.namelist()) == [
            "files/a b#.txt", "files/data/points.csv", "notebook.ipynb",
            "ro-crate-metadata.json", "ro-crate-preview.html",
        ]  # fmt: skip
        metadata = json.loads(crate.read("ro-crate-metadata.json"))
        for part in entities(metadata)["./"]["hasPart"]:
            entity = entities(metadata)[part["@id"]]
            data = crate.read(unquote(part["@id"]))
            assert hashlib.sha256(data).hexdigest() == entity["sha256"]
            assert str(len(data)) == entity["contentSize"]


def test_a_file_changed_on_disk_stops_the_export(tmp_path):
    root = published(tmp_path, {"data/points.csv": CSV})
    (root / "3" / "v2" / "files" / "data" / "points.csv").write_bytes(b"x,y\n6,6\n")
    with pytest.raises(TamperedFile, match="'data/points.csv' of this version changed on disk"):
        write_crate(root, version({"data/points.csv": CSV}), NOTEBOOK, show_author=True)


def test_a_hostile_manifest_name_never_reaches_the_zip(tmp_path):
    root = published(tmp_path, {"ok.txt": b"1"})
    (tmp_path / "x").write_bytes(b"outside the version")
    record = version({"ok.txt": b"1"})
    record["manifest"]["files"].append(file_line("../x", b"outside the version"))
    with pytest.raises(BadFileName, match=r"the file name '\.\./x' has an empty, '\.' or '\.\.'"):
        write_crate(root, record, NOTEBOOK, show_author=True)
