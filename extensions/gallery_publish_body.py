"""The pure parts of publishing from JupyterLab: which paths may be published, the
request from JupyterLab, the claims and the body sent to the gallery. No I/O.

Paths are relative to the server's root (the notebook) or to the notebook's folder (the
files beside it, under the names the gallery stores them by). A path with an empty, ``.``,
``..`` or hidden part, a leading ``/``, a backslash or a control character is refused before
anything is read; ``resolved_inside`` then refuses a path whose links lead out of the root.
"""

from __future__ import annotations

import os
import posixpath
import re
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

MAX_FILES = 500
MAX_PATH = 1024
VISIBILITIES = ("draft", "site")
HEX = re.compile(r"[0-9a-f]{7,64}")
CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class PublishError(ValueError):
    """A problem the author can fix; ``status`` is the HTTP status JupyterLab gets."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


def checked_path(path: object, what: str) -> str:
    """``path`` as a plain relative path, or PublishError naming ``what`` and why."""
    if not isinstance(path, str) or not path.strip("/"):
        raise PublishError(f"Name the {what}: a path relative to your server's folder.")
    if len(path) > MAX_PATH or CONTROL.search(path) or "\\" in path:
        raise PublishError(
            f"The {what} {path[:80]!r} has a control character or backslash, or is too long."
        )
    if path.startswith("/"):
        raise PublishError(f"The {what} {path!r} must be relative to your server's folder.")
    parts = path.split("/")
    if any(part in ("", ".", "..") for part in parts):
        raise PublishError(
            f"The {what} {path!r} has an empty, '.' or '..' part; give a plain path below "
            "your server's folder."
        )
    if any(part.startswith(".") for part in parts):
        raise PublishError(f"The {what} {path!r} is hidden (a part starts with '.').")
    return path


def resolved_inside(root: Path, relative: str, what: str) -> Path:
    """The real path of ``relative`` under ``root``; PublishError if it, with every link
    resolved, lies outside ``root`` or is not a regular file."""
    real_root = Path(os.path.realpath(root))
    real = Path(os.path.realpath(real_root / relative))
    if real != real_root and real_root not in real.parents:
        raise PublishError(
            f"The {what} {relative!r} leads outside your server's folder (through a link); "
            "copy the file into the folder to publish it.",
            403,
        )
    if not real.is_file():
        raise PublishError(f"The {what} {relative!r} is not a file in your server's folder.", 404)
    return real


@dataclass(frozen=True)
class PublishRequest:
    """What JupyterLab asks to publish, checked."""

    notebook: str
    files: tuple[str, ...] = ()
    title: str = ""
    abstract: str = ""
    tags: tuple[str, ...] = ()
    visibility: str = "draft"
    entry: int | None = None
    folder: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "folder", posixpath.dirname(self.notebook))

    def file_path(self, name: str) -> str:
        """A file's path from the server's root (``name`` is relative to the notebook)."""
        return posixpath.join(self.folder, name) if self.folder else name


def publish_request(body: object) -> PublishRequest:
    """JupyterLab's JSON body, checked; PublishError names the field and the problem."""
    if not isinstance(body, dict):
        raise PublishError("Send a JSON object: path, files, title, abstract, tags, visibility.")
    notebook = checked_path(body.get("path"), "notebook")
    if not notebook.endswith(".ipynb"):
        raise PublishError(f"{notebook!r} is not a notebook (.ipynb): open a notebook to publish.")
    files = body.get("files") or []
    if not isinstance(files, list) or len(files) > MAX_FILES:
        raise PublishError(f"'files' must be a list of at most {MAX_FILES} file names.")
    names = tuple(dict.fromkeys(checked_path(name, "file") for name in files))
    title = body.get("title")
    if not isinstance(title, str) or not title.strip():
        raise PublishError("Give the notebook a title.")
    abstract = body.get("abstract") or ""
    tags = body.get("tags") or []
    if isinstance(tags, str):
        tags = [tag for tag in re.split(r"[,\s]+", tags) if tag]
    if not isinstance(abstract, str) or not isinstance(tags, list):
        raise PublishError("'abstract' must be text and 'tags' a list of words.")
    visibility = body.get("visibility") or "draft"
    if not isinstance(visibility, str) or not (
        visibility in VISIBILITIES or visibility.startswith("group:")
    ):
        raise PublishError("'visibility' must be draft, site or group:<name>.")
    entry = body.get("entry")
    if entry in (None, ""):
        entry = None
    elif isinstance(entry, bool) or not str(entry).isdigit():
        raise PublishError("'entry' must be the number of one of your gallery entries.")
    return PublishRequest(
        notebook=notebook,
        files=names,
        title=title.strip(),
        abstract=abstract,
        tags=tuple(str(tag) for tag in tags),
        visibility=visibility,
        entry=int(entry) if entry is not None else None,
    )


def git_commit_claim(head: str | None, dirty: bool) -> tuple[str | None, list[str]]:
    """The commit to claim from ``git rev-parse HEAD``'s output, and notes for the author:
    none outside a repository; with a note when the notebook differs from that commit."""
    commit = (head or "").strip().lower()
    if not HEX.fullmatch(commit):
        return None, []
    if dirty:
        return commit, [
            f"The notebook has changes not committed to git: the commit {commit[:12]} "
            "recorded is the one its folder is at, not exactly what you publish."
        ]
    return commit, []


def seconds(mtime: object) -> float:
    """A modification time as seconds since 1970 (the data-reads answer gives ISO 8601)."""
    if isinstance(mtime, str):
        return datetime.fromisoformat(mtime).timestamp()
    return float(mtime)  # type: ignore[arg-type]


def data_read_claims(answer: dict[str, Any]) -> list[dict[str, Any]]:
    """The ``data_reads`` claims from the data-reads answer (``data_reads_server``)."""
    return [
        {
            "path": str(read["path"]),
            "size": int(read["size"]),
            "mtime": seconds(read["mtime"]),
            "sha256": read.get("sha256"),
        }
        for read in answer.get("files", [])
    ]


def python_version(kernel_info: dict[str, Any] | None) -> str | None:
    """The Python version from a kernel's ``kernel_info_reply`` content (None for others)."""
    language = (kernel_info or {}).get("language_info") or {}
    if str(language.get("name", "")).lower() != "python":
        return None
    version = str(language.get("version") or "")
    return version[:100] or None


def gallery_body(
    request: PublishRequest,
    notebook: dict[str, Any],
    files: dict[str, str],
    claims: dict[str, Any],
    server_name: str = "",
) -> dict[str, Any]:
    """The JSON body for the gallery's ``POST api/entries`` (or ``…/versions``): ``files``
    maps the names beside the notebook to their base64 content. The environment is not
    sent: the gallery asks the hub for it (of ``server_name``, the server publishing)."""
    body: dict[str, Any] = {
        "title": request.title,
        "abstract": request.abstract,
        "tags": list(request.tags),
        "notebook": notebook,
        "files": files,
        "claims": claims,
        "server": server_name,
    }
    if request.entry is None:
        body["visibility"] = request.visibility
    return body


def gallery_post_url(gallery_url: str, entry: int | None) -> str:
    """Where to publish: a new entry, or a new version of ``entry``."""
    base = gallery_url.rstrip("/") + "/api/entries"
    return base if entry is None else f"{base}/{entry}/versions"


def entry_page(hub_base_url: str, entry: int, version: int) -> str:
    """The path of a version's page, as the author's browser reaches it through the hub."""
    return f"{hub_base_url.rstrip('/')}/services/gallery/entries/{entry}/v{version}"


def gallery_error(status: int, reply: object) -> PublishError:
    """The gallery's refusal as the author reads it."""
    message = reply.get("message") if isinstance(reply, dict) else None
    if status == 404 and not message:
        message = "the gallery is not turned on at this site, or the entry is not yours"
    return PublishError(
        f"The gallery refused to publish: {message or f'it answered {status}'}",
        status if 400 <= status < 500 else 502,
    )
