"""Preparing a user's home folder: create it, hand out the examples once, link the data."""

from __future__ import annotations

import json
import os
import shutil

from .launch_spec import LaunchSpec

EXAMPLES_LEDGER = ".kioskhub/examples-copied.json"
"""Records which examples a home has received, so they are copied once and never again."""


def prepare_home(spec: LaunchSpec) -> list[str]:
    """Create ``spec.home`` (0700), copy new examples and link data mounts.

    Returns the names of the example files copied this time.
    """
    home = spec.home
    home.mkdir(parents=True, exist_ok=True)
    os.chmod(home, 0o700)
    copied = _copy_new_examples(spec) if spec.examples_source else []
    for mount in spec.mounts:
        link = home / mount.name
        if not link.exists() and not link.is_symlink():
            link.symlink_to(mount.source, target_is_directory=True)
    return copied


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
