"""Preparing a user's home folder: create it, hand out the examples once, hand it over."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from .launch_spec import LaunchSpec

EXAMPLES_LEDGER = ".kioskhub/examples-copied.json"
"""Records which examples a home has received, so they are copied once and never again."""


def prepare_home(spec: LaunchSpec, owner: tuple[int, int] | None = None) -> list[str]:
    """Create ``spec.home`` (0700) and copy in the examples it has never received.

    With ``owner`` (uid, gid), everything created here is handed to that account.
    Returns the names of the examples copied this time.
    """
    home = spec.home
    home.parent.mkdir(parents=True, exist_ok=True)
    home.mkdir(exist_ok=True)
    os.chmod(home, 0o700)
    copied = _copy_new_examples(spec) if spec.examples_source else []
    if owner:
        os.chown(home, *owner)
        for name in (spec.examples_target, EXAMPLES_LEDGER.split("/")[0]):
            _chown_tree(home / name, owner)
    return copied


def _chown_tree(path: Path, owner: tuple[int, int]) -> None:
    if not path.exists():
        return
    os.chown(path, *owner, follow_symlinks=False)
    for folder, dirs, files in os.walk(path):
        for name in dirs + files:
            os.chown(os.path.join(folder, name), *owner, follow_symlinks=False)


def _copy_new_examples(spec: LaunchSpec) -> list[str]:
    ledger_path = spec.home / EXAMPLES_LEDGER
    ledger = set(json.loads(ledger_path.read_text())) if ledger_path.exists() else set()
    target = spec.home / spec.examples_target
    copied = []
    for source in sorted(spec.examples_source.iterdir()):
        if source.name.startswith(".") or source.name in ledger:
            continue
        destination = target / source.name
        if not destination.exists():
            target.mkdir(exist_ok=True)
            if source.is_dir():
                shutil.copytree(source, destination)
            else:
                shutil.copy2(source, destination)
            copied.append(source.name)
        ledger.add(source.name)
    ledger_path.parent.mkdir(exist_ok=True)
    ledger_path.write_text(json.dumps(sorted(ledger), indent=1))
    return copied
