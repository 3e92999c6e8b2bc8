"""A version as an RO-Crate 1.1 (https://w3id.org/ro/crate/1.1): the ``ro-crate-metadata.json``
document and its short HTML preview. Pure: a version's record in, a dict or a string out.

The crate holds the notebook (``notebook.ipynb``) and the version's files (``files/<name>``),
the layout of the version's folder. The graph also describes what the crate does not hold:

- the environment, as a ``SoftwareApplication`` (a ``ContainerImage`` for images) with its
  digest or content hash, ``isBasedOn`` the repository and commit it was built from, where its
  specification and lock files are. The gallery reads the build catalog's record only,
  never a build's folders, so those files are referenced, not included;
- the data the notebook read, each a ``File`` whose ``@id`` is a ``file:`` URI on the site's
  data mounts, with size, modification time and sha256: the ``object`` of the run
  (``CreateAction``) whose ``instrument`` is the notebook, and never in the root's
  ``hasPart`` (the crate's payload).

Checksums use the Workflow Run Crate's ``sha256`` term, declared in the crate's context.
Through an anonymous reviewer link, the author is left out.
"""

from __future__ import annotations

import html
import mimetypes
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from .file_names import check_file_name

SPEC = "https://w3id.org/ro/crate/1.1"
WFRUN = "https://w3id.org/ro/terms/workflow-run#"
CONTEXT = [
    f"{SPEC}/context",
    {"sha256": f"{WFRUN}sha256", "ContainerImage": f"{WFRUN}ContainerImage"},
]
METADATA = "ro-crate-metadata.json"
PREVIEW = "ro-crate-preview.html"
NOTEBOOK = "notebook.ipynb"
NOTEBOOK_FORMAT = "application/x-ipynb+json"
NOT_INCLUDED = (
    "Read by the notebook from the site's data mounts during the run before publishing; "
    "not included in this crate."
)
SPEC_NOT_INCLUDED = (
    "The environment's build specification and lock files are in this repository at this "
    "commit; not included in this crate."
)


def member_name(name: str) -> str:
    """The zip member of a version's file ``name``; BadFileName for a name that could leave
    the crate's folder (the gallery refuses such names at publish, and checks again here)."""
    return f"files/{check_file_name(name)}"


def iso_time(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="seconds")


def file_entity(member: str, line: dict[str, Any], encoding: str | None = None) -> dict:
    """A data entity in the crate: ``member`` (its path in the zip) and its manifest line."""
    guessed = mimetypes.guess_type(line["name"])[0] or "application/octet-stream"
    return {
        "@id": quote(member),
        "@type": "File",
        "name": line["name"],
        "contentSize": str(line["size"]),
        "encodingFormat": encoding or guessed,
        "sha256": line["sha256"],
    }


def data_read_entity(read: dict[str, Any]) -> dict:
    """A file the notebook read from a data mount: referenced by its path, not included."""
    entity = {
        "@id": "file://" + quote("/" + read["path"].lstrip("/")),
        "@type": "File",
        "name": read["path"],
        "contentSize": str(read["size"]),
        "dateModified": iso_time(read["mtime"]),
        "description": NOT_INCLUDED,
    }
    if read.get("sha256"):
        entity["sha256"] = read["sha256"]
    return entity


def environment_entities(pinning: dict[str, Any]) -> list[dict]:
    """The environment, and where it was built from when the catalog knows."""
    image = pinning.get("kind") == "image"
    environment: dict[str, Any] = {
        "@id": "#environment",
        "@type": ["SoftwareApplication", "ContainerImage"] if image else "SoftwareApplication",
        "name": pinning.get("environment") or "unknown",
        "description": f"The environment the author's server ran, as recorded by KioskHub "
        f"from the {pinning.get('source', 'unknown')}.",
    }
    if pinning.get("kind"):
        environment["applicationCategory"] = pinning["kind"]
    if pinning.get("image"):
        environment["identifier"] = pinning["image"]
    digest = pinning.get("digest") or ""
    if digest.startswith("sha256:"):
        environment["sha256"] = digest.removeprefix("sha256:")
    elif digest:
        environment["identifier"] = digest
    if pinning.get("content_hash"):
        environment["softwareVersion"] = pinning["content_hash"]
    if not pinning.get("commit"):
        return [environment]
    environment["isBasedOn"] = {"@id": "#environment-source"}
    source = {
        "@id": "#environment-source",
        "@type": "SoftwareSourceCode",
        "name": f"Build source of {environment['name']}",
        "version": pinning["commit"],
        "description": SPEC_NOT_INCLUDED,
    }
    if pinning.get("repository"):
        source["codeRepository"] = pinning["repository"]
    return [environment, source]


def crate_metadata(version: dict[str, Any], *, show_author: bool) -> dict[str, Any]:
    """The ``ro-crate-metadata.json`` document of ``version`` (a record as the store keeps it;
    its manifest's notebook line must describe the notebook bytes the crate holds)."""
    manifest, claims = version["manifest"], version.get("claims") or {}
    notebook = file_entity(NOTEBOOK, manifest["notebook"] | {"name": NOTEBOOK}, NOTEBOOK_FORMAT)
    notebook |= {
        "@type": ["File", "SoftwareSourceCode", "ComputationalWorkflow"],
        "name": version["title"],
        "programmingLanguage": {"@id": "#python"},
        "softwareRequirements": {"@id": "#environment"},
    }
    if claims.get("git_commit"):
        notebook["version"] = claims["git_commit"]
    files = [file_entity(member_name(f["name"]), f) for f in manifest["files"]]
    reads = [data_read_entity(read) for read in claims.get("data_reads") or []]
    root: dict[str, Any] = {
        "@id": "./",
        "@type": "Dataset",
        "name": version["title"],
        "description": version.get("abstract") or version["title"],
        "datePublished": iso_time(version["created"]),
        "version": str(version["number"]),
        "hasPart": [{"@id": e["@id"]} for e in [notebook, *files]],
        "mainEntity": {"@id": notebook["@id"]},
        "mentions": {"@id": "#run"},
    }
    if version.get("tags"):
        root["keywords"] = ", ".join(version["tags"])
    run: dict[str, Any] = {
        "@id": "#run",
        "@type": "CreateAction",
        "name": "The notebook's run before publishing",
        "instrument": {"@id": notebook["@id"]},
        "object": [{"@id": read["@id"]} for read in reads],
    }
    python = {"@id": "#python", "@type": "ComputerLanguage", "name": "Python",
              "url": {"@id": "https://www.python.org/"}}  # fmt: skip
    if claims.get("python"):
        python["version"] = claims["python"]
    people = []
    if show_author:
        author = {"@id": "#author", "@type": "Person", "name": version["author"]}
        root["author"] = notebook["author"] = run["agent"] = {"@id": "#author"}
        people.append(author)
    descriptor = {
        "@id": METADATA,
        "@type": "CreativeWork",
        "conformsTo": {"@id": SPEC},
        "about": {"@id": "./"},
    }
    graph = [descriptor, root, notebook, *files, python, *environment_entities(version["pinning"])]
    return {"@context": CONTEXT, "@graph": graph + [run, *reads, *people]}


def preview_html(metadata: dict[str, Any]) -> str:
    """``ro-crate-preview.html``: the crate's title, parts and references; no script, every
    string escaped."""
    by_id = {entity["@id"]: entity for entity in metadata["@graph"]}
    root = by_id["./"]
    author = by_id.get("#author")

    def row(entity: dict[str, Any]) -> str:
        cells = (entity.get("name", ""), entity.get("contentSize", ""), entity.get("sha256", ""))
        return "<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in cells) + "</tr>"

    parts = [by_id[part["@id"]] for part in root["hasPart"]]
    reads = [by_id[read["@id"]] for read in by_id["#run"]["object"]]
    environment = by_id["#environment"]
    source = by_id.get("#environment-source", {})
    head = "<tr><th>name</th><th>bytes</th><th>sha256</th></tr>"
    lines = [
        "<!DOCTYPE html>",
        '<html><head><meta charset="utf-8">',
        f"<title>{html.escape(root['name'])}</title></head><body>",
        f"<h1>{html.escape(root['name'])}</h1>",
        f"<p>{html.escape(root['description'])}</p>",
        f"<p>{'By ' + html.escape(author['name']) if author else 'Anonymous author'}"
        f" · version {html.escape(root['version'])} · {html.escape(root['datePublished'])}</p>",
        f"<h2>In this crate</h2><table>{head}{''.join(row(e) for e in parts)}</table>",
        f"<h2>Environment</h2><p>{html.escape(environment['name'])} "
        f"{html.escape(environment.get('identifier', ''))} "
        f"{html.escape(environment.get('sha256', environment.get('softwareVersion', '')))}</p>",
        f"<p>{html.escape(source.get('codeRepository', ''))} "
        f"{html.escape(source.get('version', ''))}</p>",
        f"<h2>Data read (not included)</h2><table>{head}{''.join(row(e) for e in reads)}</table>",
        f"<p>The metadata is in {METADATA} (RO-Crate 1.1).</p>",
        "</body></html>",
    ]
    return "\n".join(lines) + "\n"
