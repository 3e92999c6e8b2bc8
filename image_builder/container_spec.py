"""What a repository asks of a container build, read as data (``checkout_files``).

The container builder honours more than the venv builder: ``apt.txt`` (Debian packages),
``start`` and, where the site allows it, a ``Dockerfile``. The Python files are read the way
``repo_spec`` reads them (``binder/`` or ``.binder/`` win over the top folder; the pip part of
``environment.yml``; ``runtime.txt``), so both builders agree on what a file means.

Every refusal names the file and, where there is one, the line. Nothing quotes a file's
content beyond a token that passed a strict pattern (a Debian package name is one).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from .builder_base import BuildFailed, NeedsContainerBuilder
from .checkout_files import CheckoutFiles
from .repo_spec import (
    LOCAL_REFERENCE,
    parse_runtime,
    quoted,
    read_environment_yml,
    spec_prefix,
)

DEBIAN_PACKAGE = re.compile(r"^[a-z0-9][a-z0-9+.-]{1,99}$")
"""A Debian package name (Debian policy 5.6.1): lowercase letters, digits, + - ."""
PYTHON_FILES = (
    "requirements.txt",
    "environment.yml",
    "runtime.txt",
    "postBuild",
    "start",
    "apt.txt",
    "Dockerfile",
)
PROJECT_FILES = ("setup.py", "pyproject.toml")
NOT_BUILT = {
    "install.R": "R packages (install.R)",
    "DESCRIPTION": "an R package (DESCRIPTION)",
    "Project.toml": "Julia (Project.toml)",
    "REQUIRE": "Julia (REQUIRE)",
    "default.nix": "Nix (default.nix)",
}
IMAGE_PYTHON = "3.11"
"""The Python of the site base image (Debian bookworm's python3)."""


@dataclass(frozen=True)
class AptPackage:
    name: str
    line: int


@dataclass(frozen=True)
class ContainerSpec:
    """What to put into the image, and the spec files' bytes (part of the image's key).

    ``prefix`` is where the spec files live inside the repository ("" or "binder/").
    """

    prefix: str = ""
    apt_packages: tuple[AptPackage, ...] = ()
    requirements: bool = False
    requirements_use_local_files: bool = False
    pip_packages: tuple[str, ...] = ()
    install_project: bool = False
    post_build: bool = False
    start: bool = False
    dockerfile: bool = False
    files: dict[str, bytes] = field(default_factory=dict)
    notes: tuple[str, ...] = ()
    """What the build did otherwise than the repository asked (shown on its page)."""

    def summary(self) -> list[str]:
        parts = []
        if self.dockerfile:
            return ["the repository's own Dockerfile"]
        if self.apt_packages:
            parts.append(f"apt.txt ({len(self.apt_packages)} Debian packages)")
        if self.requirements:
            parts.append("requirements.txt")
        if self.pip_packages:
            parts.append(f"environment.yml ({len(self.pip_packages)} pip packages)")
        if self.install_project:
            parts.append("the project itself (pip install .)")
        if self.post_build:
            parts.append("postBuild")
        if self.start:
            parts.append("start")
        return parts or ["no spec files: the server packages only"]


def detect_container_spec(
    root: Path,
    *,
    allow_dockerfile: bool = False,
    image_python: str = IMAGE_PYTHON,
    python_policy: str = "refuse",
) -> ContainerSpec:
    """The container spec of the repository checked out at ``root``.

    A ``runtime.txt`` asking for another Python than the base image's fails under the
    ``refuse`` policy; under ``nearest`` or ``download`` the image keeps the base image's
    Python (an image has one) and the spec's ``notes`` say so.
    """
    checkout = CheckoutFiles(root)
    prefix = spec_prefix(checkout)
    for name, what in NOT_BUILT.items():
        if checkout.kind(prefix + name) is not None:
            raise BuildFailed(
                f"{prefix}{name} asks for {what}; KioskHub's container builder builds Python "
                "environments only. Remove the file, or ask the site for a repo2docker build."
            )
    files = {
        name: checkout.read(prefix + name)
        for name in PYTHON_FILES
        if checkout.kind(prefix + name) is not None
    }
    if "Dockerfile" in files:
        if not allow_dockerfile:
            raise BuildFailed(
                f"{prefix}Dockerfile: this site does not build repositories' own Dockerfiles "
                "(builder.allow_dockerfile is false). Remove the Dockerfile to build from "
                "apt.txt, requirements.txt, environment.yml and postBuild instead."
            )
        return ContainerSpec(prefix=prefix, dockerfile=True, files=files)
    for name in PROJECT_FILES:
        if not prefix and checkout.kind(name) is not None:
            files[name] = checkout.read(name)
    notes: tuple[str, ...] = ()
    if "runtime.txt" in files:
        try:
            wanted, line = parse_runtime(files["runtime.txt"].decode(errors="replace"))
        except NeedsContainerBuilder:
            raise BuildFailed(
                f"{prefix}runtime.txt asks for R; KioskHub's container builder builds Python "
                "environments only. Remove the file, or ask the site for a repo2docker build."
            ) from None
        if wanted != image_python and python_policy != "refuse":
            notes += (
                f"{prefix}runtime.txt line {line} asks for Python {wanted}; the image was "
                f"built with Python {image_python}, the site base image's.",
            )
        elif wanted != image_python:
            raise BuildFailed(
                f"{prefix}runtime.txt line {line} asks for Python {wanted}, but the site base "
                f"image has Python {image_python}; write python-{image_python} in runtime.txt, "
                "or remove it."
            )
    requirements_text = files.get("requirements.txt", b"").decode(errors="replace")
    return ContainerSpec(
        prefix=prefix,
        apt_packages=apt_packages(files.get("apt.txt", b""), f"{prefix}apt.txt"),
        requirements="requirements.txt" in files,
        requirements_use_local_files=any(
            LOCAL_REFERENCE.search(line) for line in requirements_text.splitlines()
        ),
        pip_packages=environment_pip_packages(files, prefix),
        install_project=any(name in files for name in PROJECT_FILES),
        post_build="postBuild" in files,
        start="start" in files,
        files=files,
        notes=notes,
    )


def apt_packages(data: bytes, where: str = "apt.txt") -> tuple[AptPackage, ...]:
    """The Debian packages ``apt.txt`` lists, one per line; comments (#) and blanks skipped."""
    found = []
    for number, raw in enumerate(data.decode(errors="replace").splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if not DEBIAN_PACKAGE.fullmatch(line):
            raise BuildFailed(
                f"{where} line {number}: {quoted(line)} is not a Debian package name "
                "(lowercase letters, digits and + - .); write one package name per line"
            )
        found.append(AptPackage(line, number))
    return tuple(found)


def environment_pip_packages(files: dict[str, bytes], prefix: str) -> tuple[str, ...]:
    """The pip part of environment.yml; conda packages are refused, naming the file."""
    if "environment.yml" not in files:
        return ()
    environment = read_environment_yml(files["environment.yml"].decode(errors="replace"))
    if environment.conda:
        lines = ", ".join(str(package.line) for package in environment.conda[:5])
        raise BuildFailed(
            f"{prefix}environment.yml lists conda packages (line {lines}); the container "
            "builder installs its pip part only. Move them under '- pip:' with their PyPI "
            "names, or build with the venv builder, which installs conda packages from the "
            "site's channels."
        )
    return environment.pip
