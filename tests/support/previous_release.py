"""An earlier release of KioskHub, checked out of this repository's history and installed.

As a site admin has it before an upgrade: the release's tree, and a venv of the system
Python with the tree installed editable (as its Makefile did), in a folder the servers'
accounts may enter.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.support.hub_process import REPO

SYSTEM_PYTHON = Path("/usr/bin/python3")
UV = Path(sys.executable).parent / "uv"


class ReleaseUnavailable(RuntimeError):
    """The release cannot be checked out or installed here; the message says why."""


def check_out(commit: str, target: Path) -> Path:
    """Extract ``commit``'s tree into ``target`` (no git metadata, nothing left in the repo)."""
    found = subprocess.run(
        ["git", "-C", str(REPO), "cat-file", "-e", f"{commit}^{{commit}}"],
        capture_output=True,
        text=True,
    )
    if found.returncode != 0:
        raise ReleaseUnavailable(
            f"commit {commit} is not in the history of {REPO} ({found.stderr.strip()}); "
            "the upgrade test needs a clone with full history (git fetch --unshallow)"
        )
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", "--format=tar", commit],
        capture_output=True,
        check=True,
    )
    target.mkdir(parents=True)
    subprocess.run(["tar", "-x", "-C", str(target)], input=archive.stdout, check=True)
    return target


def install(tree: Path, venv: Path) -> Path:
    """A venv of the system Python with ``tree`` installed editable; returns its bin folder."""
    for tool in (SYSTEM_PYTHON, UV):
        if not tool.exists():
            raise ReleaseUnavailable(f"{tool} is missing; the upgrade test installs with it")
    steps = [
        [str(UV), "venv", "--quiet", "--python", str(SYSTEM_PYTHON), str(venv)],
        [str(UV), "pip", "install", "--quiet", "--python", str(venv / "bin" / "python"),
         "-e", str(tree)],
    ]  # fmt: skip
    for step in steps:
        done = subprocess.run(step, capture_output=True, text=True)
        if done.returncode != 0:
            raise ReleaseUnavailable(f"{' '.join(step)} failed:\n{done.stderr}")
    return venv / "bin"
