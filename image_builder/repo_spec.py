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
CONDA_TOKEN = re.compile(
    r"^([a-z0-9-]{1,30}::)?[A-Za-z0-9][A-Za-z0-9._-]{0,39}"
    r"(\s*(==?|>=?|<=?|!=|~=)?\s*\d[\w.*,<>=!]{0,24})?$"
)
"""What a message may quote of a conda spec: a name and a version ('numpy=1.26')."""
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
    python_source: str = ""
    conda_packages: tuple[CondaPackage, ...] = ()
    post_build: Path | None = None
    files: dict[str, bytes] = field(default_factory=dict)
    uses_local_files: bool = False

    def summary(self) -> list[str]:
        parts = []
        if self.requirements:
            parts.append("requirements.txt")
        if self.conda_packages:
            parts.append(f"environment.yml ({len(self.conda_packages)} conda packages)")
        if self.pip_packages:
            parts.append(f"environment.yml ({len(self.pip_packages)} pip packages)")
        if self.install_project:
            parts.append("the project itself (pip install .)")
        if self.python_version:
            parts.append(f"Python {self.python_version} ({self.python_source.split()[0]})")
        if self.post_build:
            parts.append("postBuild")
        return parts or ["no spec files: the server packages only"]


def spec_prefix(checkout: CheckoutFiles) -> str:
    """Where the spec files are: "binder/" or ".binder/" when there is one (it wins over the
    top folder, as in repo2docker), else "" (the top folder). Every builder reads them here."""
    return next((f"{d}/" for d in ("binder", ".binder") if checkout.kind(d) == "folder"), "")


def detect_spec(root: Path) -> RepoSpec:
    """The spec of the repository checked out at ``root`` (already the chosen subfolder)."""
    checkout = CheckoutFiles(root)
    prefix = spec_prefix(checkout)
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
    environment = EnvironmentYml()
    if "environment.yml" in files:
        environment = read_environment_yml(files["environment.yml"].decode(errors="replace"))
    pip_packages = environment.pip
    python_version, python_source = None, ""
    if environment.python_version:
        python_version = environment.python_version
        python_source = f"environment.yml line {environment.python_line}"
    if "runtime.txt" in files:
        python_version, line = parse_runtime(files["runtime.txt"].decode(errors="replace"))
        python_source = f"runtime.txt line {line}"
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
        python_source=python_source,
        conda_packages=environment.conda,
        post_build=post_build,
        files=files,
        uses_local_files=uses_local,
    )


def quoted(token: str, pattern: re.Pattern = SAFE_TOKEN) -> str:
    """``token`` in quotes when it matches ``pattern`` (short and plain); else a placeholder."""
    token = token.strip()
    return repr(token) if pattern.fullmatch(token) else "(an entry not shown)"


@dataclass(frozen=True)
class CondaPackage:
    """One conda dependency of environment.yml, with the line it is on."""

    spec: str
    line: int


@dataclass(frozen=True)
class EnvironmentYml:
    """What environment.yml asks for: conda packages, pip packages, and a Python version."""

    conda: tuple[CondaPackage, ...] = ()
    pip: tuple[str, ...] = ()
    python_version: str | None = None
    python_line: int = 0


def read_environment_yml(text: str) -> EnvironmentYml:
    """The dependencies of an environment.yml; BuildFailed naming the line when it is broken."""
    try:
        node = yaml.compose(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise BuildFailed(f"environment.yml is not valid YAML{where}") from None
    if node is None:
        return EnvironmentYml()
    if not isinstance(node, yaml.MappingNode):
        raise BuildFailed("environment.yml must be a mapping with a 'dependencies' list")
    items = next(
        (value for key, value in node.value if getattr(key, "value", None) == "dependencies"),
        None,
    )
    if items is None or (isinstance(items, yaml.ScalarNode) and not items.value):
        return EnvironmentYml()
    if not isinstance(items, yaml.SequenceNode):
        raise BuildFailed(
            f"environment.yml line {items.start_mark.line + 1}: 'dependencies' must be a list"
        )
    conda: list[CondaPackage] = []
    pip: list[str] = []
    python_version, python_line = None, 0
    for item in items.value:
        line = item.start_mark.line + 1
        if isinstance(item, yaml.MappingNode):
            keys = [getattr(key, "value", None) for key, _ in item.value]
            if keys != ["pip"] or not isinstance(item.value[0][1], yaml.SequenceNode):
                raise BuildFailed(
                    f"environment.yml line {line}: only '- pip:' with a list may stand "
                    "among the dependencies"
                )
            pip.extend(str(entry.value) for entry in item.value[0][1].value)
            continue
        if not isinstance(item, yaml.ScalarNode) or not str(item.value).strip():
            raise BuildFailed(f"environment.yml line {line}: a dependency must be a package name")
        spec = str(item.value).strip()
        name = conda_name(spec)
        if name == "python":
            python_version = python_pin(spec)
            python_line = line
        elif name not in IMPLICIT_CONDA:
            conda.append(CondaPackage(spec, line))
    return EnvironmentYml(tuple(conda), tuple(pip), python_version, python_line)


def conda_name(spec: str) -> str:
    """The package name of a conda spec ('numpy>=1.2' → 'numpy'; 'conda-forge::x' → 'x')."""
    name = re.split(r"[=<>!~ \[]", spec.strip(), maxsplit=1)[0].lower()
    return name.rsplit("::", 1)[-1]


def python_pin(spec: str) -> str | None:
    """The 3.x a 'python=3.10' / 'python 3.10.*' / 'python==3.10.4' entry pins, else None."""
    match = re.fullmatch(r"python\s*(?:==?|\s)\s*(3\.\d+)(?:\.[\d*]+)?\*?", spec.strip())
    return match.group(1) if match else None


def parse_runtime(text: str) -> tuple[str, int]:
    """'python-3.11' → ('3.11', its line); other runtimes need the container builder."""
    line_number, line = next(
        ((n, ln.strip()) for n, ln in enumerate(text.splitlines(), 1) if ln.strip()), (1, "")
    )
    match = re.fullmatch(r"python-(3\.\d+)(\.\d+)?", line)
    if match:
        return match.group(1), line_number
    if line.startswith("r-"):
        raise NeedsContainerBuilder(
            f"runtime.txt line {line_number} asks for R ({quoted(line, RUNTIME_TOKEN)}); "
            "that needs the container builder."
        )
    raise BuildFailed(
        f"runtime.txt line {line_number} says {quoted(line, RUNTIME_TOKEN)}, not a Python "
        "version this builder knows; write python-3.X, e.g. python-3.11"
    )


def content_hash(
    spec: RepoSpec,
    *,
    python_version: str,
    builder_version: str,
    server_packages: tuple[str, ...],
    tree_sha: str,
    owner: str = "",
    conda_channels: tuple[str, ...] = (),
) -> str:
    """The key of the built venv: owner, spec files, Python, builder and server packages.

    The site's conda channels join it for a spec with conda packages. A spec that installs
    the project itself, runs a postBuild or may reference local files
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
    if conda_channels and spec.conda_packages:
        material["conda_channels"] = list(conda_channels)
    digest.update(json.dumps(material, sort_keys=True).encode())
    return digest.hexdigest()[:32]
