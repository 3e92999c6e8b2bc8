"""The body of a publish request, checked into a ``Publication``: pure, no I/O.

JSON: ``title``, ``abstract``, ``tags``, ``notebook`` (the nbformat JSON), ``files`` (name →
base64), ``visibility`` (a new entry only) and ``claims``: what the author's JupyterLab
recorded (the notebook's git commit, kernel and Python versions, the data the last run read);
``tolerance`` (optional): how far the re-execution report lets numbers and images move
(``reexec_compare.tolerance_from``), kept with the claims. Whatever else the body holds,
such as an ``environment``, is ignored: the environment is asked of the hub (``pinning``),
never taken from the author.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import Any

from .file_names import check_file_names
from .reexec_compare import tolerance_from

MAX_FILES = 500
MAX_TITLE, MAX_ABSTRACT, MAX_TAGS, MAX_TAG = 200, 20_000, 20, 40
MAX_DATA_READS = 2000
TAG = re.compile(r"[\w][\w .+#-]*")
HEX = re.compile(r"[0-9a-f]{7,64}")
SHA256 = re.compile(r"[0-9a-f]{64}")


class BadRequest(ValueError):
    """A body the gallery refuses (400); the message names the field and what to do."""

    status = 400


class TooLarge(BadRequest):
    """A notebook or version over the site's limit (413)."""

    status = 413


@dataclass(frozen=True)
class Publication:
    """A checked publish request: texts, the notebook's bytes and each file's bytes."""

    title: str
    abstract: str
    tags: tuple[str, ...]
    notebook: bytes
    files: dict[str, bytes]
    claims: dict[str, Any] = field(default_factory=dict)
    visibility: str | None = None

    def manifest(self) -> dict[str, Any]:
        """Name, size and sha256 of the notebook and of every file."""
        return {
            "notebook": file_line("notebook.ipynb", self.notebook),
            "files": [file_line(name, data) for name, data in sorted(self.files.items())],
        }


def file_line(name: str, data: bytes) -> dict[str, Any]:
    return {"name": name, "size": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def parse_publication(
    body: dict[str, Any], *, max_version_bytes: int, max_notebook_bytes: int
) -> Publication:
    """Check ``body`` against the site's limits; BadRequest or TooLarge saying what is wrong."""
    notebook = notebook_bytes(body.get("notebook"))
    if len(notebook) > max_notebook_bytes:
        raise TooLarge(
            f"the notebook is {len(notebook)} bytes; this site publishes notebooks of at most "
            f"{max_notebook_bytes} bytes (gallery.max_notebook_bytes): clear large outputs"
        )
    files = decoded_files(body.get("files") or {})
    total = len(notebook) + sum(len(data) for data in files.values())
    if total > max_version_bytes:
        raise TooLarge(
            f"the notebook and its files are {total} bytes; this site publishes versions of at "
            f"most {max_version_bytes} bytes (gallery.max_version_bytes): select fewer files"
        )
    visibility = body.get("visibility")
    recorded = claims(body.get("claims") or {})
    if body.get("tolerance") is not None:
        recorded["tolerance"] = reproduce_tolerance(body["tolerance"])
    return Publication(
        title=text(body.get("title"), "title", MAX_TITLE, required=True),
        abstract=text(body.get("abstract"), "abstract", MAX_ABSTRACT),
        tags=tags(body.get("tags")),
        notebook=notebook,
        files=files,
        claims=recorded,
        visibility=None if visibility is None else text(visibility, "visibility", 300),
    )


def notebook_bytes(notebook: object) -> bytes:
    """The notebook as the gallery stores it (indented JSON, as Jupyter writes it)."""
    if not isinstance(notebook, dict) or not isinstance(notebook.get("cells"), list):
        raise BadRequest("'notebook' must be the notebook's JSON: an object with a 'cells' list")
    if not isinstance(notebook.get("nbformat"), int) or notebook["nbformat"] < 4:
        raise BadRequest("'notebook' must be in nbformat 4 or later; save it with Jupyter first")
    return json.dumps(notebook, indent=1, ensure_ascii=False).encode()


def decoded_files(files: object) -> dict[str, bytes]:
    if not isinstance(files, dict):
        raise BadRequest("'files' must be an object: relative file name → base64 content")
    if len(files) > MAX_FILES:
        raise TooLarge(f"{len(files)} files given; a version holds at most {MAX_FILES} files")
    decoded = {}
    for name in check_file_names(list(files)):
        content = files[name]
        try:
            decoded[name] = base64.b64decode(content, validate=True)
        except (binascii.Error, TypeError, ValueError):
            raise BadRequest(f"the content of file {name!r} is not base64") from None
    return decoded


def text(value: object, name: str, limit: int, *, required: bool = False) -> str:
    if value is None:
        value = ""
    if not isinstance(value, str):
        raise BadRequest(f"'{name}' must be a string")
    value = value.strip()
    if required and not value:
        raise BadRequest(f"'{name}' is required")
    if len(value) > limit:
        raise BadRequest(f"'{name}' is longer than {limit} characters")
    return value


def tags(value: object) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or len(value) > MAX_TAGS:
        raise BadRequest(f"'tags' must be a list of at most {MAX_TAGS} words")
    checked = []
    for tag in value:
        if not isinstance(tag, str) or len(tag) > MAX_TAG or not TAG.fullmatch(tag):
            raise BadRequest(
                f"the tag {tag!r} is not a word of at most {MAX_TAG} letters, digits, spaces "
                "or . + # -"
            )
        if tag.lower() not in checked:
            checked.append(tag.lower())
    return tuple(checked)


def claims(value: object) -> dict[str, Any]:
    """What the author's JupyterLab recorded, kept as claims (the page says so)."""
    if not isinstance(value, dict):
        raise BadRequest("'claims' must be an object")
    commit = value.get("git_commit")
    if commit is not None and (not isinstance(commit, str) or not HEX.fullmatch(commit)):
        raise BadRequest("'claims.git_commit' must be a git commit id (hexadecimal)")
    return {
        "git_commit": commit,
        "kernel": text(value.get("kernel"), "claims.kernel", 200) or None,
        "python": text(value.get("python"), "claims.python", 100) or None,
        "data_reads": data_reads(value.get("data_reads") or []),
    }


def reproduce_tolerance(value: object) -> dict[str, Any]:
    """The author's tolerance for the re-execution report (``reexec_compare``), checked."""
    try:
        tolerance_from({}, value)
    except ValueError as error:
        raise BadRequest(str(error)) from None
    return dict(value)


def data_reads(value: object) -> list[dict[str, Any]]:
    if not isinstance(value, list) or len(value) > MAX_DATA_READS:
        raise BadRequest(f"'claims.data_reads' must be a list of at most {MAX_DATA_READS} reads")
    reads = []
    for number, read in enumerate(value):
        where = f"claims.data_reads[{number}]"
        if not isinstance(read, dict):
            raise BadRequest(f"'{where}' must be an object with path, size, mtime and sha256")
        path = text(read.get("path"), f"{where}.path", 4096, required=True)
        size, mtime, sha = read.get("size"), read.get("mtime"), read.get("sha256")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise BadRequest(f"'{where}.size' must be a whole number of bytes")
        if not isinstance(mtime, int | float) or isinstance(mtime, bool):
            raise BadRequest(f"'{where}.mtime' must be a time in seconds since 1970")
        if sha is not None and (not isinstance(sha, str) or not SHA256.fullmatch(sha)):
            raise BadRequest(f"'{where}.sha256' must be a sha256 in hexadecimal")
        reads.append({"path": path, "size": size, "mtime": float(mtime), "sha256": sha})
    return reads
