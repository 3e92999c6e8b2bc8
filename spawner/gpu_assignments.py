"""Which GPUs the local backend has handed to which server, kept as files in the state folder.

One file per assigned GPU (named by its UUID, holding the server's id) makes the
record survive hub restarts and lets every spawner see what the others hold.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from .gpus import Gpu

FOLDER = "gpu-assignments"


def assigned_elsewhere(state_dir: Path, server_id: str) -> set[str]:
    """UUIDs of the GPUs that servers other than ``server_id`` hold."""
    folder = state_dir / FOLDER
    if not folder.is_dir():
        return set()
    return {entry.name for entry in folder.iterdir() if entry.read_text().strip() != server_id}


def record_assignment(state_dir: Path, server_id: str, chosen: Iterable[Gpu]) -> None:
    folder = state_dir / FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    for gpu in chosen:
        fd = os.open(folder / gpu.uuid, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(server_id)


def release_assignment(state_dir: Path, server_id: str) -> None:
    folder = state_dir / FOLDER
    if not folder.is_dir():
        return
    for entry in folder.iterdir():
        if entry.read_text().strip() == server_id:
            entry.unlink()
