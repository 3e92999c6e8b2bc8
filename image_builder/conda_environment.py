"""The conda packages of an environment.yml, installed into the environment's venv.

How conda and the venv coexist: the venv stays the environment. Its Python is the one
``python_versions`` chose, and jupyterhub, jupyterlab and ipykernel come from its server
layer at the hub's versions, so it launches like every venv. The conda packages are solved
with py-rattler against the site's channels only (``builder.conda_channels``; a repository's
own ``channels:`` are not used), with the venv's Python given as a package that is already
there (``python ==X.Y.Z``), so conda's own Python is never installed. The solved packages are
then linked into the venv's prefix: a noarch python package's modules land in the venv's
site-packages, other files in its ``share/``, ``lib/``, ``bin/``. The solve and the install
run as a build step, as the build's identity (``python -m`` this module).

Where the site has no channel, ``builder.conda_pypi_fallback`` installs each package from
PyPI under its PyPI name (``PYPI_NAMES``, else the same name), logging every mapping;
otherwise the build is refused, naming environment.yml, the lines and the packages.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .builder_base import BuildFailed, NeedsContainerBuilder
from .repo_spec import CONDA_TOKEN, CondaPackage, conda_name, quoted

PYPI_NAMES = {
    "pytorch": "torch",
    "pytorch-cpu": "torch",
    "py-opencv": "opencv-python",
    "opencv": "opencv-python",
    "matplotlib-base": "matplotlib",
    "pytables": "tables",
    "msgpack-python": "msgpack",
    "python-graphviz": "graphviz",
    "pyqt": "PyQt5",
    "tensorflow-base": "tensorflow",
    "ruamel_yaml": "ruamel.yaml",
    "jupyter_client": "jupyter-client",
    "dask-core": "dask",
    "numpy-base": "numpy",
}
"""Conda names whose PyPI name differs; every other name is the same on PyPI."""
NOT_ON_PYPI = {"nodejs", "r-base", "gcc", "gxx", "gfortran", "make", "cmake", "cudatoolkit"}
"""Conda packages that are not Python packages: the fallback cannot install them."""
SPEC_PATTERN = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*(\s*[=<>!~ ][\w.*,|<>=!~ +-]*)?")
"""A conda spec the builder passes on: a name, then versions and build strings; no URL."""
UNSOLVABLE = "unsolvable: "
"""How the install step's output says the solver found no solution (one line)."""


@dataclass(frozen=True)
class CondaPlan:
    """What the build does with environment.yml's conda packages."""

    conda_specs: tuple[str, ...] = ()
    pip_packages: tuple[str, ...] = ()
    log_lines: tuple[str, ...] = ()


def plan_conda(
    packages: Sequence[CondaPackage], channels: Sequence[str], pypi_fallback: bool
) -> CondaPlan:
    """Conda packages from the site's channels, else PyPI packages (fallback), else a refusal."""
    if not packages:
        return CondaPlan()
    if channels:
        return CondaPlan(
            conda_specs=tuple(site_spec(package) for package in packages),
            log_lines=(f"Conda packages from the site's channels: {', '.join(channels)}",),
        )
    names = ", ".join(f"{quoted(p.spec, CONDA_TOKEN)} (line {p.line})" for p in packages[:8])
    if not pypi_fallback:
        raise NeedsContainerBuilder(
            f"environment.yml lists conda packages: {names}; this site has no conda channel "
            "for venv builds (builder.conda_channels) and no PyPI fallback. Move them under "
            "'- pip:', ask the site's admins for a channel, or use the container builder."
        )
    pip, lines = [], []
    for package in packages:
        name, shown = conda_name(package.spec), quoted(package.spec, CONDA_TOKEN)
        if name in NOT_ON_PYPI:
            raise BuildFailed(
                f"environment.yml line {package.line}: {shown} is a conda "
                "package with no PyPI counterpart, and this site has no conda channel "
                "(builder.conda_channels); remove it or use the container builder."
            )
        requirement = conda_to_pip(package.spec)
        pip.append(requirement)
        lines.append(
            f"environment.yml line {package.line}: conda {shown} → PyPI "
            f"{quoted(requirement, CONDA_TOKEN)} (no conda channel on this site)"
        )
    return CondaPlan(pip_packages=tuple(pip), log_lines=tuple(lines))


def site_spec(package: CondaPackage) -> str:
    """The spec solved against the site's channels: a 'channel::' prefix is dropped (the site's
    channels are the only ones), and a spec that names a URL or a file is refused, since it
    would fetch a package from outside them."""
    spec = package.spec.strip()
    if "::" in spec and re.fullmatch(r"[A-Za-z0-9_.-]+", spec.split("::", 1)[0]):
        spec = spec.split("::", 1)[1].strip()
    if not SPEC_PATTERN.fullmatch(spec):
        raise BuildFailed(
            f"environment.yml line {package.line}: {quoted(package.spec, CONDA_TOKEN)} is not a "
            "conda package name with a version; URLs, paths and channels are not allowed "
            "(this site's conda channels are the only source). Write e.g. numpy>=1.26."
        )
    return spec


def conda_to_pip(spec: str) -> str:
    """A conda spec as a pip requirement: 'numpy=1.26' → 'numpy==1.26.*',
    'pytorch>=2' → 'torch>=2', 'scipy 1.11.*' → 'scipy==1.11.*'."""
    spec = spec.strip().rsplit("::", 1)[-1]
    name = conda_name(spec)
    pypi = PYPI_NAMES.get(name, name)
    version = spec[len(name) :].replace(" ", "")
    if not version:
        return pypi
    single = re.fullmatch(r"=([^=<>!~,]+)(=.*)?", version)  # conda's 'x=1.2' (=build)
    if single:
        number = single.group(1)
        return f"{pypi}=={number if number.endswith('*') else number + '.*'}"
    if re.fullmatch(r"\d[\w.*]*", version):
        return f"{pypi}=={version}"
    return f"{pypi}{version}"


def install_command(
    prefix: Path, python_version: str, channels: Sequence[str], cache: Path, specs: Sequence[str]
) -> list[str]:
    """The build step that solves ``specs`` and links them into ``prefix`` (argv, no shell)."""
    argv = [sys.executable, "-m", "kioskhub.image_builder.conda_environment"]
    argv += ["--prefix", str(prefix), "--python", python_version, "--cache", str(cache)]
    for channel in channels:
        argv += ["--channel", channel]
    return [*argv, "--", *specs]


def check_conda_step(status: int, output: str, packages: Sequence[CondaPackage]) -> None:
    """BuildFailed when the install step failed: the solver's, naming lines and packages."""
    if status == 3:
        raise solver_failure(output, packages)
    if status != 0:
        last = " / ".join(output.splitlines()[-2:])
        raise BuildFailed(
            f"installing environment.yml's conda packages failed (exit {status}): {last}"
        )


def solver_failure(output: str, packages: Sequence[CondaPackage]) -> BuildFailed:
    """The message for a failed solve, naming environment.yml, the lines and the packages."""
    reason = next(
        (line[len(UNSOLVABLE) :] for line in output.splitlines() if line.startswith(UNSOLVABLE)),
        "",
    )
    missing = set(re.findall(r"no candidates were found for ([a-z0-9_.-]+)", reason.lower()))
    words = missing or set(re.findall(r"[a-z0-9_.-]+", reason.lower()))
    named = [p for p in packages if conda_name(p.spec) in words] or list(packages)
    lines = ", ".join(str(p.line) for p in named)
    specs = ", ".join(quoted(p.spec, CONDA_TOKEN) for p in named[:8])
    if missing:
        problem = "cannot be found in the site's conda channels"
    else:
        problem = "cannot be installed together (or with the environment's Python)"
    return BuildFailed(
        f"environment.yml line{'s' if len(named) > 1 else ''} {lines}: {specs} {problem}; "
        "the build log has the solver's explanation. Change the versions, or move the "
        "package under '- pip:'."
    )


async def solve_and_install(
    prefix: Path, python_version: str, channels: Sequence[str], cache: Path, specs: Sequence[str]
) -> list[str]:
    """Solve ``specs`` against ``channels`` with ``python_version`` given, link into ``prefix``."""
    import rattler

    python = rattler.GenericVirtualPackage(
        rattler.PackageName("python"),
        rattler.Version(python_version),
        rattler.BuildString("0"),
    )
    platform = str(rattler.Platform.current())
    records = await rattler.solve(
        list(channels),
        list(specs),
        gateway=rattler.Gateway(cache_dir=cache / "repodata"),
        platforms=[platform, "noarch"],
        virtual_packages=[*rattler.VirtualPackage.detect(), python],
    )
    # The venv's Python, named so that noarch python packages know where site-packages is;
    # ignored, so nothing of conda's Python is installed.
    given = rattler.RepoDataRecord(
        rattler.PackageRecord(
            "python",
            python_version,
            rattler.BuildString("0"),
            0,
            platform,
            python_site_packages_path=f"lib/python{'.'.join(python_version.split('.')[:2])}"
            "/site-packages",
        ),
        f"python-{python_version}-0.conda",
        "file:///nonexistent/python.conda",
        "file:///nonexistent/",
    )
    await rattler.install(
        [*records, given],
        prefix,
        cache_dir=cache / "packages",
        ignored_packages={"python"},
        execute_link_scripts=False,
        show_progress=False,
    )
    return [f"{r.name.normalized} {r.version} ({r.channel})" for r in records]


def main(argv: Sequence[str] | None = None) -> int:
    """The build step: solve, install, print what was installed (or why not)."""
    parser = argparse.ArgumentParser(prog="conda_environment")
    parser.add_argument("--prefix", type=Path, required=True)
    parser.add_argument("--python", required=True)
    parser.add_argument("--cache", type=Path, required=True)
    parser.add_argument("--channel", action="append", default=[])
    parser.add_argument("specs", nargs="+")
    args = parser.parse_args(argv)
    try:
        installed = asyncio.run(
            solve_and_install(args.prefix, args.python, args.channel, args.cache, args.specs)
        )
    except Exception as error:  # the solver's and installer's errors have no common base
        text = " ".join(str(error).split())
        kind = type(error).__name__
        if kind in ("SolverError", "InvalidMatchSpecError", "PackageNameError"):
            print(f"{UNSOLVABLE}{text}", flush=True)
            return 3
        print(f"conda install failed ({kind}): {text}", flush=True)
        return 2
    for line in installed:
        print(f"installed {line}", flush=True)
    return 0


if __name__ == "__main__":
    sys.stdout.flush()
    status = main()
    sys.stdout.flush()
    # py-rattler's runtime threads may crash the interpreter's shutdown; the work is done.
    os._exit(status)
