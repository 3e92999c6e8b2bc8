"""The work inside a user's home, done by a child that has already become the user.

Run by ``home.prepare_home`` as ``python -I -m kioskhub.spawner.home_setup REQUEST_JSON``,
at every start: it makes the data mount points and links, copies the examples the home has
never received (recorded in a ledger the user may have written) and pulls the environment's
repository files, then prints a JSON reply of at most a few KiB. It imports only the
standard library and the steps it uses, so that starting it costs a few hundredths of a
CPU-second, not the hub's schema.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import sys
from pathlib import Path

from . import root_paths
from .local_launcher import forbid_new_privileges
from .repository_pull import FolderInTheWay, pull_repository

EXAMPLES_LEDGER = ".kioskhub/examples-copied.json"
"""Records which examples a home has received, so they are copied once and never again."""

LEDGER_MAX_BYTES = 2**20
"""A ledger larger than this is not read: the user wrote it, not KioskHub."""


def setup_home(request: dict) -> dict:
    """The child's work, as the user: mount points, links, the examples, the repository."""
    home = Path(request["home"])
    warnings: list[str] = []
    for name in request["mount_points"]:
        folder = home / name
        if folder.is_symlink():
            folder.unlink()
        if not folder.is_dir():
            if folder.exists():
                return {"error": f"~/{name} is in the way of the data mount {name}; rename it."}
            folder.mkdir()
    for name, target in request["links"]:
        link = home / name
        if not link.exists() and not link.is_symlink():
            link.symlink_to(target, target_is_directory=True)
    copied: list[str] = []
    if request["examples_source"]:
        try:
            copied = _copy_new_examples(
                home, Path(request["examples_source"]), request["examples_target"]
            )
        except LedgerError as error:
            warnings.append(f"examples not copied: {error}")
        except OSError as error:
            warnings.append(f"examples not copied: {root_paths.describe(error)}")
    reply: dict = {"copied": copied, "warnings": warnings}
    files = request.get("repository_files")
    if files:
        try:
            reply["pulled"] = pull_repository(
                home, files["source"], files["commit"], files["folder"]
            )
        except FolderInTheWay as error:
            reply["error"] = str(error)
        except (RuntimeError, OSError) as error:
            warnings.append(f"the repository's files were not updated: {error}")
    return reply


class LedgerError(ValueError):
    """The examples ledger cannot be used as it is."""


def read_ledger(path: Path) -> set[str]:
    """The names in the ledger; refuses anything but a small JSON list in a regular file."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return set()
    except OSError as error:
        raise LedgerError(f"cannot open {path}: {error.strerror}") from None
    with os.fdopen(fd, "rb") as ledger:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise LedgerError(f"{path} is not a regular file; delete it to get the examples")
        data = ledger.read(LEDGER_MAX_BYTES + 1)
    if len(data) > LEDGER_MAX_BYTES:
        raise LedgerError(f"{path} is larger than {LEDGER_MAX_BYTES} bytes; delete it")
    try:
        names = json.loads(data)
    except ValueError:
        raise LedgerError(f"{path} is not JSON; delete it to get the examples") from None
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise LedgerError(f"{path} is not a list of names; delete it to get the examples")
    return set(names)


def _copy_new_examples(home: Path, source_folder: Path, target_name: str) -> list[str]:
    ledger_path = home / EXAMPLES_LEDGER
    ledger = read_ledger(ledger_path)
    target = home / target_name
    copied = []
    for source in sorted(source_folder.iterdir()):
        if source.name.startswith(".") or source.name in ledger:
            continue
        destination = target / source.name
        if not destination.exists() and not destination.is_symlink():
            target.mkdir(exist_ok=True)
            if source.is_dir():
                shutil.copytree(source, destination, symlinks=True)
            else:
                shutil.copy2(source, destination)
            copied.append(source.name)
        ledger.add(source.name)
    ledger_path.parent.mkdir(exist_ok=True)
    fresh = ledger_path.with_name(ledger_path.name + ".new")
    fresh.unlink(missing_ok=True)
    fresh.write_text(json.dumps(sorted(ledger), indent=1))
    os.replace(fresh, ledger_path)
    return copied


def main(argv: list[str]) -> int:
    try:
        forbid_new_privileges()
        reply = setup_home(json.loads(argv[1]))
    except OSError as error:
        reply = {"error": root_paths.describe(error)}
    print(json.dumps(reply))
    return 1 if reply.get("error") else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
