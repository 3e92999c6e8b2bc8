"""Binder-shaped repositories through the local builder, as root: another Python, conda packages.

Real builds: a runtime.txt asking for a Python this machine lacks, under the ``nearest`` and
``refuse`` policies; an environment.yml with conda and pip parts, solved (py-rattler) against
a channel the test makes, then imported in the built venv; an unsolvable one; and uv
installing a Python from a downloads list that names a local archive, in
python-build-standalone's layout, made from this machine's interpreter.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from kioskhub.hub.schema.builder import BuilderSettings
from kioskhub.image_builder.build_identity import identity_pool
from kioskhub.image_builder.build_log import BuildLog
from kioskhub.image_builder.build_sandbox import make_workdir, minimal_environment, run_step
from kioskhub.image_builder.builder_base import BuildFailed
from kioskhub.image_builder.local_builder import MARKER, LocalBuilder
from kioskhub.image_builder.python_versions import ManagedPythons, PythonDownloads
from tests.conftest import open_folder
from tests.integration.test_builder_identities import git_repository, request
from tests.support.conda_channel import BEAM_DATA, conda_package, index_channel, make_channel

pytestmark = pytest.mark.integration

OWN = f"{sys.version_info[0]}.{sys.version_info[1]}"
MISSING = f"3.{sys.version_info[1] - 1}"
"""A Python 3.x this machine lacks (checked in ``missing_python``)."""
ENVIRONMENT_YML = """name: beam
channels:
  - conda-forge
dependencies:
  - beamcalc>=1.2
  - pip
  - pip:
    - tomli-w
"""


@pytest.fixture(scope="module")
def state():
    assert os.geteuid() == 0, "these tests need root: builds switch to identities of their own"
    assert not Path(f"/usr/bin/python{MISSING}").exists(), f"this machine has Python {MISSING}"
    folder = open_folder("repo-environments")
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def channel(state):
    return make_channel(state / "channel")


def builder(state: Path, **options) -> LocalBuilder:
    return LocalBuilder(
        environments_dir=state / "environments",
        cache_dir=state / "cache",
        identities=identity_pool(BuilderSettings()),
        **options,
    )


def run_in(venv: Path, code: str) -> str:
    done = subprocess.run(
        [str(venv / "bin" / "python"), "-c", code], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_nearest_builds_with_the_nearest_python_and_says_so(state):
    repo = git_repository(
        state / "nearest", {"runtime.txt": f"python-{MISSING}\n", "requirements.txt": "tomli-w\n"}
    )
    log = BuildLog()
    artifact = asyncio.run(builder(state, python_policy="nearest").build(request(repo), log))
    note = (
        f"runtime.txt line 1 asks for Python {MISSING}; this site has no Python {MISSING}, so "
        f"the environment was built with Python {OWN}, the nearest it has."
    )
    assert artifact.notes == [note]
    assert f"Note: {note}" in log.lines
    venv = Path(artifact.venv_path)
    assert json.loads((venv / MARKER).read_text())["notes"] == [note]
    assert run_in(venv, "import sys, tomli_w; print(sys.version_info[:2])") == str(
        tuple(sys.version_info[:2])
    )


def test_refuse_fails_the_build_naming_runtime_txt_and_the_versions(state):
    repo = git_repository(state / "refuse", {"runtime.txt": f"\npython-{MISSING}\n"})
    with pytest.raises(BuildFailed) as refused:
        asyncio.run(builder(state, python_policy="refuse").build(request(repo), BuildLog()))
    assert str(refused.value).startswith(
        f"runtime.txt line 2 asks for Python {MISSING}, but this machine has "
    )


def test_conda_and_pip_parts_of_environment_yml_in_one_venv(state, channel):
    repo = git_repository(state / "conda", {"environment.yml": ENVIRONMENT_YML})
    log = BuildLog()
    local = builder(state, conda_channels=(channel.as_uri(),))
    artifact = asyncio.run(local.build(request(repo), log))
    venv = Path(artifact.venv_path)
    assert (
        run_in(
            venv,
            "import beamcalc, tomli_w, jupyterlab, ipykernel, sys\n"
            "print(beamcalc.energy(2), tomli_w.dumps({'a': 1}).strip())\n"
            "print(open(sys.prefix + '/share/beam-data/calibration.txt').read().strip())",
        )
        == f"1.022 a = 1\n{BEAM_DATA.strip()}"
    )
    assert any(line.startswith("installed beamcalc 1.2.0") for line in log.lines)
    assert any(line.startswith("installed beam-data 0.3.1") for line in log.lines)
    assert any("kernel said 1+1 = 2" in line for line in log.lines)
    assert os.lstat(venv / "share" / "beam-data" / "calibration.txt").st_uid == 0


def test_an_unsolvable_environment_yml_names_the_line_and_package(state, channel):
    text = ENVIRONMENT_YML.replace("  - pip\n", "  - nosuchpkg\n")
    repo = git_repository(state / "unsolvable", {"environment.yml": text})
    local = builder(state, conda_channels=(channel.as_uri(),))
    with pytest.raises(BuildFailed) as refused:
        asyncio.run(local.build(request(repo), BuildLog()))
    assert str(refused.value).startswith(
        "environment.yml line 6: 'nosuchpkg' cannot be found in the site's conda channels"
    )
    text = ENVIRONMENT_YML.replace("  - pip\n", "  - beam-data<0.2\n")
    repo = git_repository(state / "conflict", {"environment.yml": text})
    with pytest.raises(BuildFailed) as refused:
        asyncio.run(local.build(request(repo), BuildLog()))
    assert str(refused.value).startswith(
        "environment.yml lines 5, 6: 'beamcalc>=1.2', 'beam-data<0.2' cannot be installed together"
    )


def test_a_package_url_outside_the_sites_channels_is_refused(state, channel):
    """py-rattler would install a package named by URL from anywhere; the builder refuses it."""
    other = state / "other-channel"
    conda_package(other, "evilpkg", "1.0", {"share/evil.txt": "from elsewhere\n"}, noarch="generic")
    index_channel(other)
    url = (other / "noarch" / "evilpkg-1.0-0.tar.bz2").as_uri()
    repo = git_repository(state / "url-spec", {"environment.yml": f"dependencies:\n  - {url}\n"})
    local = builder(state, conda_channels=(channel.as_uri(),))
    log = BuildLog()
    with pytest.raises(BuildFailed) as refused:
        asyncio.run(local.build(request(repo), log))
    assert str(refused.value).startswith("environment.yml line 2: (an entry not shown) is not a")
    assert "URLs, paths and channels are not allowed" in str(refused.value)
    assert not any("evilpkg" in line for line in log.lines)


def test_without_a_channel_the_conda_packages_are_refused_or_mapped_to_pypi(state):
    text = "dependencies:\n  - tomli-w\n  - pip\n"
    repo = git_repository(state / "fallback", {"environment.yml": text})
    with pytest.raises(BuildFailed, match="environment.yml lists conda packages: 'tomli-w'"):
        asyncio.run(builder(state).build(request(repo), BuildLog()))
    log = BuildLog()
    artifact = asyncio.run(builder(state, conda_pypi_fallback=True).build(request(repo), log))
    assert (
        "environment.yml line 2: conda 'tomli-w' → PyPI 'tomli-w' (no conda channel on this site)"
        in log.lines
    )
    assert run_in(Path(artifact.venv_path), "import tomli_w; print('ok')") == "ok"


def standalone_archive(folder: Path) -> Path:
    """This machine's Python as a python-build-standalone 'install_only' archive."""
    python = Path(f"/usr/bin/python{OWN}")
    tree = folder / "python"
    (tree / "bin").mkdir(parents=True)
    shutil.copy2(python, tree / "bin" / python.name)
    (tree / "bin" / "python3").symlink_to(python.name)
    shutil.copytree(
        f"/usr/lib/python{OWN}",
        tree / "lib" / f"python{OWN}",
        symlinks=False,
        ignore=shutil.ignore_patterns("test", "__pycache__", "*-packages", "sitecustomize.py"),
    )
    archive = folder / f"cpython-{OWN}.99-standalone.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tree, arcname="python")
    return archive


def test_uv_installs_a_python_from_the_sites_downloads_list_sealed(state):
    source = open_folder("python-downloads")
    try:
        archive = standalone_archive(source)
        major, minor, patch = (*sys.version_info[:2], sys.version_info[2])
        listing = {
            f"cpython-{major}.{minor}.{patch}-linux-x86_64-gnu": {
                "name": "cpython",
                "arch": {"family": "x86_64", "variant": None},
                "os": "linux",
                "libc": "gnu",
                "major": major,
                "minor": minor,
                "patch": patch,
                "prerelease": "",
                "url": archive.as_uri(),
                "sha256": None,
                "variant": None,
                "build": "1",
            }
        }
        (source / "downloads.json").write_text(json.dumps(listing))
        downloads = PythonDownloads(
            state / "pythons", downloads_json=str(source / "downloads.json")
        )
        uv = shutil.which("uv") or str(Path(sys.executable).parent / "uv")
        pythons = ManagedPythons(
            downloads, identity_pool(BuilderSettings()), uv, state / "environments"
        )
        log = BuildLog()
        python = asyncio.run(pythons.install(OWN, log))
    finally:
        shutil.rmtree(source, ignore_errors=True)
    assert python.parent.parent.parent == state / "pythons" / OWN
    assert f"Installing Python {OWN} with uv, once for this site" in log.lines
    done = subprocess.run([str(python), "-c", "import json, ssl; print('ok')"], capture_output=True)
    assert done.stdout.strip() == b"ok", done.stderr
    for path in (state / "pythons" / OWN, python, python.parent.parent / "lib" / f"python{OWN}"):
        status = os.lstat(path)
        assert status.st_uid == 0 and not status.st_mode & 0o022, path
    assert downloads.installed() == {OWN: python}

    async def tamper() -> tuple[int, str]:
        async with identity_pool(BuilderSettings()).identity("tamper") as account:
            work = make_workdir(account)
            script = python.parent.parent / "lib" / f"python{OWN}" / "os.py"
            return await run_step(
                ["/bin/sh", "-c", f"echo changed >> {script} && echo WRITTEN"],
                log=BuildLog(),
                account=account.seeing(work, state),
                cwd=work,
                env=minimal_environment(work),
            )

    status, output = asyncio.run(tamper())
    assert status != 0 and "WRITTEN" not in output and "Permission denied" in output
