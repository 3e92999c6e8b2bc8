"""Names of the files published beside a notebook: relative paths, checked before anything
is written. The service writes them below its own version folder, so a name must never
climb out of it, name a device or carry characters that mislead whoever reads a listing.
"""

from __future__ import annotations

import unicodedata

MAX_NAME_CHARS = 1024
MAX_PART_CHARS = 255


class BadFileName(ValueError):
    """A file name the gallery refuses; the message names it and says why."""


def check_file_name(name: object) -> str:
    """``name`` when it is a safe relative path (parts joined by ``/``), else BadFileName."""
    if not isinstance(name, str) or not name:
        raise BadFileName(f"a file name must be a non-empty string, got {name!r}")
    shown = repr(name[:80])
    if len(name) > MAX_NAME_CHARS:
        raise BadFileName(f"the file name {shown}… is longer than {MAX_NAME_CHARS} characters")
    if any(unicodedata.category(char) in ("Cc", "Cf", "Zl", "Zp") for char in name):
        raise BadFileName(f"the file name {shown} holds a control or invisible character")
    if "\\" in name:
        raise BadFileName(f"the file name {shown} holds a backslash; separate folders with /")
    if name.startswith("/"):
        raise BadFileName(
            f"the file name {shown} is absolute; give a path relative to the notebook"
        )
    for part in name.split("/"):
        if part in ("", ".", ".."):
            raise BadFileName(
                f"the file name {shown} has an empty, '.' or '..' part; "
                "give a plain path below the notebook's folder"
            )
        if len(part) > MAX_PART_CHARS:
            raise BadFileName(
                f"a part of the file name {shown} is over {MAX_PART_CHARS} characters"
            )
    return name


def check_file_names(names: list[str]) -> list[str]:
    """Every name checked, and no name both a file and a folder of another (``a``, ``a/b``)."""
    checked = sorted(check_file_name(name) for name in names)
    folders = {"/".join(n.split("/")[:i]) for n in checked for i in range(1, n.count("/") + 1)}
    clash = sorted(folders.intersection(checked))
    if clash:
        raise BadFileName(f"{clash[0]!r} is given both as a file and as a folder of other files")
    return checked
