"""The pure parts of copying a gallery version into the reader's server: which names may be
written, which folder receives the copy, and where JupyterLab then opens. No I/O.

A version is copied to ``gallery/<entry>/v<N>/`` below the server's root: the notebook as
``notebook.ipynb`` (its name in the gallery) and each file under its name in the version's
manifest. The manifest comes from the gallery, so every name is checked again here as a
plain relative path (``gallery_publish_body.checked_path``) before anything is fetched. A
folder already holding a different copy is never overwritten: the copy goes next to it
(``v<N>-2``, ``v<N>-3``, …).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from kioskhub.extensions.gallery_publish_body import PublishError, checked_path

NOTEBOOK_NAME = "notebook.ipynb"
MAX_COPIES = 20
SHA256 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class VersionFile:
    """A file of the version: its name below the copy's folder, where the gallery serves it,
    its size and sha256."""

    name: str
    source: str
    size: int
    sha256: str


def version_number(value: object, what: str) -> int:
    """A positive whole number from the request, or PublishError naming it."""
    text = str(value or "")
    if not text.isdigit() or int(text) < 1:
        raise PublishError(f"Give the {what} as a positive whole number, not {text[:20]!r}.")
    return int(text)


def version_files(record: dict[str, Any], entry: int, number: int) -> list[VersionFile]:
    """The notebook and files a version's record lists, each name checked; PublishError
    (naming the file) for one that is not a plain relative path."""
    manifest = record.get("manifest") if isinstance(record, dict) else None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("notebook"), dict):
        raise PublishError("The gallery's answer lists no notebook for this version.", 502)
    base = f"api/entries/{entry}/versions/{number}/"
    listed = [(NOTEBOOK_NAME, base + "notebook", manifest["notebook"])]
    for line in manifest.get("files") or []:
        if not isinstance(line, dict):
            raise PublishError("The gallery's answer lists a file without a name.", 502)
        name = line.get("name")
        try:
            checked_path(name, "file")
        except PublishError as error:
            raise PublishError(
                f"Not copied: the version lists a file named {str(name)[:80]!r}, which is not "
                f"a plain relative path ({error}). Nothing was written.",
                400,
            ) from None
        if name == NOTEBOOK_NAME:
            raise PublishError(f"The version lists a file named {NOTEBOOK_NAME!r} twice.", 400)
        listed.append((name, base + "files/" + quote(name), line))
    files = []
    for name, source, line in listed:
        digest, size = line.get("sha256"), line.get("size")
        if not isinstance(digest, str) or not SHA256.fullmatch(digest) or not isinstance(size, int):
            raise PublishError(f"The gallery lists {name!r} without a size and sha256.", 502)
        files.append(VersionFile(name, source, size, digest))
    return files


def copy_folders(entry: int, number: int) -> list[str]:
    """The folders a copy may go to, first choice first."""
    first = f"gallery/{entry}/v{number}"
    return [first] + [f"{first}-{n}" for n in range(2, MAX_COPIES + 1)]


def lab_url(base_url: str, folder: str) -> str:
    """JupyterLab opening the copied notebook."""
    return f"{base_url}lab/tree/{quote(folder)}/{NOTEBOOK_NAME}"
