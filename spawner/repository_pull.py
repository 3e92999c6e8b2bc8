"""An environment's repository files into the user's home, with nbgitpuller's merge rules.

Runs in the home preparation's child (``home``), which has already become the user, with
the environment's group when the environment is private: the kernel checks every access,
so a link in the repository or in the home reaches only what the user could reach anyway.
The first launch clones the built commit into ``~/<folder>``; a launch of a newer build
merges it (nbgitpuller's ``GitPuller``: the user's edits win, files the user deleted come
back, a user's file in the way of a new one is renamed); a launch of the same build leaves
the folder alone.

The source is a bare repository owned by root (the image builder's, inside the sealed
environment), so git refuses it as "dubious ownership" unless ``safe.directory`` names it,
which git 2.39 reads only from global or system config: the child writes a global config of
its own, naming exactly that source, and reads no other (the user's ``~/.gitconfig`` plays
no part). It is fetched over ``file://`` so that nothing of it is hard-linked into the home.
"""

from __future__ import annotations

import contextlib
import os
import re
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

BRANCH = "built"
"""The branch of the source that holds the built commit."""

FOLDER_PATTERN = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}")
OUTPUT_LINES = 6


class FolderInTheWay(Exception):
    """``~/<folder>`` holds something that is not the user's copy of the repository."""


def pull_repository(home: Path, source: str, commit: str, folder: str) -> str:
    """Clone or merge ``source``'s built commit into ``home/folder``; what was done, in words.

    FolderInTheWay when the folder is a link, a file, or a folder that is no git copy;
    RuntimeError (with git's last lines) when git fails, leaving the user's files as they are.
    """
    if not FOLDER_PATTERN.fullmatch(folder):
        raise FolderInTheWay(f"{folder!r} is not a folder name KioskHub puts files in")
    target = home / folder
    existing = _kind(target)
    if existing == "link":
        raise FolderInTheWay(
            f"~/{folder} is a symbolic link; the repository's files go into a folder of your "
            f"home and KioskHub does not follow links. Rename or remove ~/{folder} (from a "
            "server of another environment) and start again."
        )
    if existing not in (None, "folder"):
        raise FolderInTheWay(
            f"~/{folder} is a file in the way of the repository's files; rename it and start again."
        )
    if existing == "folder" and _kind(target / ".git") != "folder":
        raise FolderInTheWay(
            f"~/{folder} exists but is not your copy of the repository (it has no .git folder); "
            "rename it and start again to get the repository's files."
        )
    with _git_environment(home, source):
        if existing and _git_output(target, "rev-parse", f"refs/remotes/origin/{BRANCH}") == commit:
            return f"~/{folder} already has commit {commit[:12]}"
        if existing:
            _git_output(target, "remote", "set-url", "origin", _url(source))
        from nbgitpuller.pull import GitPuller

        try:
            lines = list(GitPuller(_url(source), str(target), branch=BRANCH, depth=1).pull())
        except (subprocess.CalledProcessError, OSError) as error:
            raise RuntimeError(f"git failed ({error})") from None
        except Exception as error:  # nbgitpuller raises bare Exceptions (a held index.lock)
            raise RuntimeError(str(error) or type(error).__name__) from None
    action = "merged into" if existing else "cloned into"
    tail = " / ".join(line.strip() for line in lines[-OUTPUT_LINES:] if line.strip())
    return f"commit {commit[:12]} {action} ~/{folder}: {tail}"[:1000]


def _kind(path: Path) -> str | None:
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return None
    if stat.S_ISLNK(mode):
        return "link"
    return "folder" if stat.S_ISDIR(mode) else "file"


def _url(source: str) -> str:
    return Path(source).absolute().as_uri()


def _git_output(repository: Path, *args: str) -> str | None:
    """``git args`` in ``repository``: its output, or None when git fails."""
    done = subprocess.run(
        ["git", *args], cwd=repository, capture_output=True, text=True, check=False
    )
    return done.stdout.strip() if done.returncode == 0 else None


@contextlib.contextmanager
def _git_environment(home: Path, source: str) -> Iterator[None]:
    """Git's environment for this process and its children (nbgitpuller runs git with
    ``os.environ``): a global config that trusts exactly ``source``, no discovery above the
    home, no prompts, only the file protocol."""
    trusted = dict.fromkeys((str(Path(source).absolute()), os.path.realpath(source)))
    text = "[safe]\n" + "".join(f"\tdirectory = {_quoted(path)}\n" for path in trusted)
    with tempfile.NamedTemporaryFile("w", prefix="kioskhub-git-", suffix=".conf") as config:
        config.write(text)
        config.flush()
        os.environ.update(
            {
                "GIT_CONFIG_GLOBAL": config.name,
                "GIT_CONFIG_NOSYSTEM": "1",
                "GIT_CEILING_DIRECTORIES": str(home),
                "GIT_TERMINAL_PROMPT": "0",
                "GIT_ALLOW_PROTOCOL": "file",
                "HOME": str(home),
            }
        )
        yield


def _quoted(value: str) -> str:
    """A git config value in double quotes."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
