"""KioskHub installs like a package: a wheel, built from an sdist, in a venv of its own.

The installed ``kioskhub`` must work without the source tree: the example notebooks, the
default config, templates, static files, the CI template, migrations and containers.conf come
from the installed package, and nothing but ``kioskhub`` goes to the top of site-packages.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

from tests.support.hub_process import REPO

UV = Path(sys.executable).parent / "uv"


def run(argv: list, cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    done = subprocess.run(
        [str(a) for a in argv], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )
    assert done.returncode == 0, f"{argv} failed ({done.returncode}):\n{done.stdout}{done.stderr}"
    return done


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """A fresh venv with KioskHub installed from the wheel that `uv build` makes (via sdist)."""
    if not UV.exists():
        pytest.fail(f"uv is missing from {UV.parent}: run `make .venv/.installed-test`")
    folder = tmp_path_factory.mktemp("packaging")
    run([UV, "build", "--quiet", "--out-dir", folder / "dist", REPO], cwd=folder)
    run([UV, "venv", "--quiet", "--python", sys.executable, folder / "venv"], cwd=folder)
    (wheel,) = (folder / "dist").glob("kioskhub-*.whl")
    python = folder / "venv" / "bin" / "python"
    run([UV, "pip", "install", "--quiet", "--python", python, wheel], cwd=folder)
    return folder


def site_packages(venv: Path) -> Path:
    (found,) = venv.glob("lib/python3*/site-packages")
    return found


def test_the_wheel_holds_only_the_kioskhub_package(installed):
    (wheel,) = (installed / "dist").glob("kioskhub-*.whl")
    tops = {name.split("/")[0] for name in zipfile.ZipFile(wheel).namelist()}
    assert tops == {"kioskhub", wheel.name.split("-py3")[0] + ".dist-info"}


def test_every_data_file_of_the_source_packages_is_installed(installed):
    mapping = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"][
        "package-dir"
    ]
    installed_root = site_packages(installed / "venv")
    missing = []
    for package, folder in mapping.items():
        source = REPO / folder
        target = installed_root.joinpath(*package.split("."))
        for path in source.rglob("*"):
            relative = path.relative_to(source)
            if path.is_file() and "__pycache__" not in relative.parts and path.suffix != ".pyc":
                if not (target / relative).is_file():
                    missing.append(f"{package}: {relative}")
    assert not missing, "not installed: " + ", ".join(missing)


def test_installed_kioskhub_inits_and_checks_a_site(installed):
    site = installed / "site"
    site.mkdir()
    kioskhub = installed / "venv" / "bin" / "kioskhub"
    init = run([kioskhub, "init", "--config", site / "kioskhub.yaml"], cwd=site)
    assert "Wrote" in init.stdout
    written = (site / "kioskhub.yaml").read_text()
    assert written == (REPO / "hub" / "default_config.yaml").read_text()
    assert (site / ".kioskhub" / "sample-data" / "beamline-sample.csv").is_file()

    check = run([kioskhub, "check-config", "--config", site / "kioskhub.yaml"], cwd=site)
    assert "valid" in check.stdout

    python = installed / "venv" / "bin" / "python"
    probe = run(
        [python, "-c", "import kioskhub.hub; from kioskhub.hub.schema.site import Site; "
         "print(kioskhub.hub.__file__); print(Site().examples.source)"],
        cwd=site,
    )
    code, examples = (Path(line) for line in probe.stdout.split())
    root = site_packages(installed / "venv")
    assert code.is_relative_to(root) and examples == root / "kioskhub" / "examples"
    shipped = sorted(p.name for p in (REPO / "notebooks" / "examples").glob("*.ipynb"))
    assert sorted(p.name for p in examples.iterdir()) == shipped


def test_the_install_puts_only_kioskhub_into_site_packages(installed):
    """What the install recorded: the kioskhub package, its dist-info and the command."""
    root = site_packages(installed / "venv")
    (record,) = root.glob("kioskhub-*.dist-info/RECORD")
    tops = {line.split(",")[0].split("/")[0] for line in record.read_text().splitlines()}
    assert tops - {"..", "kioskhub"} == {record.parent.name}
    assert (installed / "venv" / "bin" / "kioskhub").is_file()
