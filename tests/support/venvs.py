"""Server environments for tests: real venvs with jupyterhub-singleuser and a kernel."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

UV = Path(sys.executable).parent / "uv"


def make_server_venv(path: Path, extra: tuple[str, ...] = ()) -> Path:
    """Create a venv at ``path`` holding the hub's versions of the server packages."""
    if not (path / "bin" / "jupyterhub-singleuser").exists():
        subprocess.run(
            [str(UV), "venv", "--quiet", "--python", sys.executable, str(path)], check=True
        )
        packages = [
            f"jupyterhub=={version('jupyterhub')}",
            f"jupyterlab=={version('jupyterlab')}",
            f"ipykernel=={version('ipykernel')}",
            *extra,
        ]
        subprocess.run(
            [
                str(UV),
                "pip",
                "install",
                "--quiet",
                "--python",
                str(path / "bin" / "python"),
                *packages,
            ],
            check=True,
        )
    return path
