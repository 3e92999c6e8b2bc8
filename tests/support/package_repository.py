"""A git repository holding a small Python package, as a scientist's analysis repository does.

``beamline`` (``pyproject.toml``, setuptools) with ``focus(x) = 2 x``: the builder installs
it into the environment, and a Dask task on the workers calls it.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

PYPROJECT = """\
[build-system]
requires = ["setuptools>=61"]
build-backend = "setuptools.build_meta"

[project]
name = "beamline"
version = "0.1.0"
"""
PACKAGE = '''\
"""A beamline analysis."""


def focus(x):
    return 2 * x
'''


def make_package_repository(folder: Path) -> Path:
    """``folder/beamline-repo``: the package ``beamline``, committed."""
    repo = folder / "beamline-repo"
    (repo / "beamline").mkdir(parents=True)
    (repo / "pyproject.toml").write_text(PYPROJECT)
    (repo / "beamline" / "__init__.py").write_text(PACKAGE)
    identity = ["-c", "user.name=Lise", "-c", "user.email=lise@example.org"]
    for args in (["init", "--quiet"], ["add", "."], ["commit", "--quiet", "-m", "beamline"]):
        subprocess.run(["git", "-C", str(repo), *identity, *args], check=True, capture_output=True)
    return repo
