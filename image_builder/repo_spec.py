"""What a repository asks for, read from its repo2docker-style files, and its content hash.

``detect_spec`` reads a checked-out folder (``binder/`` or ``.binder/`` win over the top
folder, as in repo2docker) and returns a ``RepoSpec``; anything the local venv builder cannot
honour raises ``NeedsContainerBuilder`` rather than being skipped. ``content_hash`` is the
key under which a built venv is reused.

The files are data: they are read through ``checkout_files`` (never through a link out of
the checkout, never a FIFO or a huge file), and no message quotes their content beyond a
short token that passed ``SAFE_TOKEN``.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from .builder_base import BuildFailed, NeedsContainerBuilder
from .checkout_files import CheckoutFiles

CONTAINER_ONLY = {
    "apt.txt": "system packages (apt.txt)",
    "Dockerfile": "a Dockerfile",
    "install.R": "R packages (install.R)",
    "DESCRIPTION": "an R package (DESCRIPTION)",
    "Project.toml": "Julia (Project.toml)",
    "REQUIRE": "Julia (REQUIRE)",
    "default.nix": "Nix (default.nix)",
    "start": "a start script (start)",
}
SPEC_FILES = (
    "requirements.txt",
    "environment.yml",
    "runtime.txt",
    "postBuild",
    "setup.py",
    "setup.cfg",
    "pyproject.toml",
)
IMPLICIT_CONDA = {"python", "pip"}
LOCAL_REFERENCE = re.compile(r"^\s*[-./~]|file:|@\s*[./~]|\$\{?")
"""A requirement line that may name a file of the checkout: any option, path or variable."""
SAFE_TOKEN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.<>!~+-]{0,39}$")
"""What a message may quote of a spec file: a short package name or version."""
RUNTIME_TOKEN = re.compile(r"^[a-z]{1,12}-\d[\d.-]{0,24}$")
"""What a message may quote of runtime.txt: a runtime and its version (pypy-3.9, r-4.3)."""


@dataclass(frozen=True)
class RepoSpec:
    """What to install into the venv, and from which files."""

    folder: Path
    requirements: Path | None = None
    pip_packages: tuple[str, ...] = ()
    install_project: bool = False
    python_version: str | None = None
    post_build: Path | None = None
    files: dict[str, bytes] = field(default_factory=dict)
    uses_local_files: bool = False

    def summary(self) -> list[str]:
        parts = []
        if self.requirements:
            parts.append("requirements.txt")
        if self.pip_packages:
            parts.append(f"environment.yml ({len(self.pip_packages)} pip packages)")
        if self.install_project:
            parts.append("the project itself (pip install .)")
        if self.python_version:
            parts.append(f"Python {self.python_version} (runtime.txt)")
        if self.post_build:
            parts.append("postBuild")
        return parts or ["no spec files: the server packages only"]


def detect_spec(root: Path) -> RepoSpec:
    """The spec of the repository checked out at ``root`` (already the chosen subfolder)."""
    checkout = CheckoutFiles(root)
    prefix = next((f"{d}/" for d in ("binder", ".binder") if checkout.kind(d) == "folder"), "")
    folder = root / prefix.rstrip("/") if prefix else root
    for name, what in CONTAINER_ONLY.items():
        if checkout.kind(prefix + name) is not None:
            raise NeedsContainerBuilder(
                f"{name} asks for {what}; that needs the container builder (repo2docker). "
                "Choose the container builder, or remove the file for a local venv build."
            )
    files: dict[str, bytes] = {}
    for name in SPEC_FILES:
        kind = checkout.kind(prefix + name)
        if kind == "file":
            files[name] = checkout.read(prefix + name)
        elif kind is not None:
            files[name] = checkout.read(prefix + name)  # refused, with the reason
    requirements = folder / "requirements.txt" if "requirements.txt" in files else None
    pip_packages: tuple[str, ...] = ()
    if "environment.yml" in files:
        pip_packages = pip_only_dependencies(files["environment.yml"].decode(errors="replace"))
    python_version = None
    if "runtime.txt" in files:
        python_version = parse_runtime(files["runtime.txt"].decode(errors="replace"))
    install_project = not prefix and ("setup.py" in files or "pyproject.toml" in files)
    post_build = folder / "postBuild" if "postBuild" in files else None
    requirement_lines = [
        *files.get("requirements.txt", b"").decode(errors="replace").splitlines(),
        *pip_packages,
    ]
    uses_local = (
        install_project
        or post_build is not None
        or any(LOCAL_REFERENCE.search(line) for line in requirement_lines)
    )
    return RepoSpec(
        folder=folder,
        requirements=requirements,
        pip_packages=pip_packages,
        install_project=install_project,
        python_version=python_version,
        post_build=post_build,
        files=files,
        uses_local_files=uses_local,
    )


def quoted(token: str, pattern: re.Pattern = SAFE_TOKEN) -> str:
    """``token`` in quotes when it matches ``pattern`` (short and plain); else a placeholder."""
    token = token.strip()
    return repr(token) if pattern.fullmatch(token) else "(an entry not shown)"


def pip_only_dependencies(text: str) -> tuple[str, ...]:
    """The pip dependencies of an environment.yml that has no conda packages besides python/pip."""
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise BuildFailed(f"environment.yml is not valid YAML{where}") from None
    if not isinstance(data, dict):
        raise BuildFailed("environment.yml must be a mapping with a 'dependencies' list")
    conda, pip = [], []
    for item in data.get("dependencies") or []:
        if isinstance(item, dict) and set(item) == {"pip"}:
            pip.extend(str(p) for p in item["pip"] or [])
        elif isinstance(item, str):
            name = re.split(r"[=<>!~ \[]", item.strip(), maxsplit=1)[0].lower()
            if name not in IMPLICIT_CONDA:
                conda.append(item)
        else:
            conda.append(str(item))
    if conda:
        raise NeedsContainerBuilder(
            f"environment.yml lists conda packages ({', '.join(map(quoted, conda[:5]))}); "
            "that needs the "
            "container builder. Move them under '- pip:' for a local venv build."
        )
    return tuple(pip)


def parse_runtime(text: str) -> str:
    """'python-3.11' → '3.11'; other runtimes need the container builder."""
    line = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
    match = re.fullmatch(r"python-(3\.\d+)(\.\d+)?", line)
    if match:
        return match.group(1)
    if line.startswith("r-"):
        raise NeedsContainerBuilder(
            f"runtime.txt asks for R ({quoted(line, RUNTIME_TOKEN)}); "
            "that needs the container builder."
        )
    raise BuildFailed(
        f"runtime.txt says {quoted(line, RUNTIME_TOKEN)}, not a Python version; "
        "write python-3.X, e.g. python-3.11"
    )


def content_hash(
    spec: RepoSpec,
    *,
    python_version: str,
    builder_version: str,
    server_packages: tuple[str, ...],
    tree_sha: str,
    owner: str = "",
) -> str:
    """The key of the built venv: owner, spec files, Python, builder and server packages.

    A spec that installs the project itself, runs a postBuild or may reference local files
    depends on the whole folder, so its git tree SHA joins the key. The owner joins it too:
    a venv is never shared between owners (their visibility and trust differ).
    """
    digest = hashlib.sha256()
    material = {
        "builder": builder_version,
        "python": python_version,
        "server": list(server_packages),
        "files": {
            name: hashlib.sha256(data).hexdigest() for name, data in sorted(spec.files.items())
        },
        "tree": tree_sha if spec.uses_local_files else None,
    }
    if owner:
        material["owner"] = owner
    digest.update(json.dumps(material, sort_keys=True).encode())
    return digest.hexdigest()[:32]
