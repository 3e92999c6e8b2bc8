"""A conda channel on disk, made of hand-written packages, indexed with py-rattler.

Tests build environment.yml files against it: ``beamcalc`` is a noarch python package with a
module, ``beam-data`` a generic package with a data file (under the prefix's ``share/``).
"""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import sys
import tarfile
from pathlib import Path

BEAMCALC_MODULE = "def energy(gamma):\n    return 0.511 * gamma\n"
BEAM_DATA = "beam energy calibration 6.0 GeV\n"


def conda_package(
    channel: Path,
    name: str,
    version: str,
    files: dict[str, str],
    *,
    noarch: str,
    depends: tuple[str, ...] = (),
) -> Path:
    """Write ``name-version-0.tar.bz2`` into ``channel/noarch`` holding ``files``."""
    folder = channel / "noarch"
    folder.mkdir(parents=True, exist_ok=True)
    index = {
        "name": name,
        "version": version,
        "build": "0",
        "build_number": 0,
        "depends": list(depends),
        "noarch": noarch,
        "subdir": "noarch",
        "license": "MIT",
        "timestamp": 1_700_000_000_000,
    }
    paths = {
        "paths_version": 1,
        "paths": [
            {
                "_path": path,
                "path_type": "hardlink",
                "sha256": hashlib.sha256(text.encode()).hexdigest(),
                "size_in_bytes": len(text.encode()),
            }
            for path, text in files.items()
        ],
    }
    members = {
        "info/index.json": json.dumps(index),
        "info/paths.json": json.dumps(paths),
        "info/files": "".join(f"{path}\n" for path in files),
        **files,
    }
    if noarch == "python":
        link = {"noarch": {"type": "python"}, "package_metadata_version": 1}
        members["info/link.json"] = json.dumps(link)
    archive = folder / f"{name}-{version}-0.tar.bz2"
    with tarfile.open(archive, "w:bz2") as tar:
        for path, text in members.items():
            data = text.encode()
            entry = tarfile.TarInfo(path)
            entry.size, entry.mode, entry.mtime = len(data), 0o644, 1_700_000_000
            tar.addfile(entry, io.BytesIO(data))
    return archive


def make_channel(channel: Path) -> Path:
    """The test channel: beamcalc (noarch python, needs beam-data >=0.3) and beam-data
    (generic, 0.3.1 and an older 0.1.0)."""
    conda_package(
        channel,
        "beamcalc",
        "1.2.0",
        {"site-packages/beamcalc/__init__.py": BEAMCALC_MODULE},
        noarch="python",
        depends=("python >=3.8", "beam-data >=0.3"),
    )
    data = {"share/beam-data/calibration.txt": BEAM_DATA}
    conda_package(channel, "beam-data", "0.3.1", data, noarch="generic")
    conda_package(channel, "beam-data", "0.1.0", data, noarch="generic")
    index_channel(channel)
    return channel


def index_channel(channel: Path) -> None:
    """Write the channel's repodata.json with py-rattler's index function.

    In a process of its own: py-rattler's runtime may crash the interpreter at its shutdown,
    so that process leaves with os._exit once the index is written.
    """
    script = (
        "import asyncio, os, sys\n"
        "from rattler.index import index_fs\n"
        "asyncio.run(index_fs(sys.argv[1], write_zst=False, write_shards=False))\n"
        "os._exit(0)\n"
    )
    subprocess.run([sys.executable, "-c", script, str(channel)], check=True, timeout=120)
    assert (channel / "noarch" / "repodata.json").is_file(), f"no repodata.json in {channel}"
