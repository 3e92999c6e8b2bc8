"""The server layer: the server packages, installed and compiled once, shared by every build.

Every environment holds the same jupyterhub, jupyterlab, ipykernel, dask-gateway, dask,
distributed and bokeh (the hub's versions) and their dependencies: tens of thousands of
files and hundreds of MB. The local builder installs them once per Python and hub version
into ``<environments_dir>/server-layers/<key>``, compiles their bytecode, seals the folder
read-only and smoke-tests it. Each build then starts from a *clone* of the layer: its
folders are new, its files are hard links to the layer's (same inodes, so no copy and no
space), and only the scripts in ``bin/``, which name the venv's own path, are rewritten.
The repository's requirements are installed on top; uv replaces any layer package they
need at another version (unlinking the shared file, never writing into it).

Layers are only a source for new builds: deleting ``server-layers/`` loses nothing, and the
next build prepares the layer again.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import stat
from pathlib import Path

from .build_sandbox import BuildAccount, give_to, hand_to

LAYERS_FOLDER = "server-layers"
LAYER_MARKER = "kioskhub-server-layer.json"


def layer_key(
    *, python_version: str, server_packages: tuple[str, ...], builder_version: str
) -> str:
    """The layer's folder name: one per Python, server package versions and builder recipe."""
    material = {
        "python": python_version,
        "server": list(server_packages),
        "builder": builder_version,
    }
    return hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()[:24]


def layer_intact(layer_distributions: set[str], installed: set[str]) -> bool:
    """True when every distribution of the layer (``name-version``) is still installed as is."""
    return layer_distributions <= installed


def installed_distributions(venv: Path) -> set[str]:
    """The ``name-version`` of every distribution in ``venv``'s site-packages."""
    found: set[str] = set()
    for site_packages in venv.glob("lib/python*/site-packages"):
        found |= {
            entry.name.removesuffix(".dist-info") for entry in site_packages.glob("*.dist-info")
        }
    return found


def clone_layer(layer: Path, target: Path, owner: BuildAccount) -> None:
    """Clone ``layer`` into ``target`` (a venv just made): link its files, rewrite its scripts.

    Entries the venv tool already made in ``target`` (``bin/python``, ``pyvenv.cfg``, the
    activate scripts) are kept. New folders and rewritten scripts belong to ``owner`` (the
    build account), so the install can add and remove files; the linked files stay the
    layer's, sealed.
    """
    old_prefix, new_prefix = str(layer).encode(), str(target).encode()
    for root, dirs, files in os.walk(layer):
        source_dir = Path(root)
        relative_dir = source_dir.relative_to(layer)
        destination_dir = target / relative_dir
        if not destination_dir.exists():
            give_to(destination_dir, owner, 0o755)
        for name in [*files, *dirs]:
            source, destination = source_dir / name, destination_dir / name
            is_link = source.is_symlink()
            if (name in dirs and not is_link) or os.path.lexists(destination):
                continue
            if name == LAYER_MARKER and not relative_dir.parts:
                continue
            if is_link:
                os.symlink(os.readlink(source), destination)
            elif relative_dir.parts == ("bin",) and old_prefix in (script := source.read_bytes()):
                destination.write_bytes(script.replace(old_prefix, new_prefix))
                hand_to(destination, owner, stat.S_IMODE(source.stat().st_mode))
            else:
                _link_or_copy(source, destination)


def make_read_only(path: Path) -> None:
    """Take the write bits off every file under ``path`` (a layer prepared without root)."""
    for root, _dirs, files in os.walk(path):
        for name in files:
            full = os.path.join(root, name)
            if not os.path.islink(full):
                mode = stat.S_IMODE(os.lstat(full).st_mode)
                os.chmod(full, mode & ~0o222)


def _link_or_copy(source: Path, destination: Path) -> None:
    try:
        os.link(source, destination)
    except OSError as error:
        if error.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK):
            raise
        shutil.copy2(source, destination)  # keeps the mtime, so the bytecode stays valid
