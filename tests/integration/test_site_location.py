"""`make up` works wherever the checkout is; `kioskhub up` refuses a site its users cannot reach.

As root, each user's server runs as an account of its own, which must reach KioskHub's venv,
its code and its own home. A checkout under a folder closed to other accounts (a clone under
/root) is run from /var/lib/kioskhub/<hash> instead, with a regular install of the tree.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from tests.support.hub_process import REPO, VENV_BIN

MAKE_FILES = ("Makefile", "pyproject.toml", "package.json", "package-lock.json")


@pytest.fixture
def closed_folder():
    """A folder only root may enter, as root's home is (mkdtemp makes it 0700)."""
    if os.geteuid() != 0:
        pytest.fail("these tests check what root's `make up` does: run them as root")
    folder = Path(tempfile.mkdtemp(prefix="kioskhub-closed-", dir="/tmp"))
    assert folder.stat().st_mode & 0o777 == 0o700
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def make_dry_run(checkout: Path, *targets: str) -> str:
    for name in MAKE_FILES:
        shutil.copy2(REPO / name, checkout / name)
    done = subprocess.run(
        ["make", "--dry-run", "--always-make", "-C", str(checkout), *targets],
        capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_make_up_in_a_closed_checkout_runs_the_site_from_var_lib(closed_folder):
    checkout = closed_folder / "kioskhub"
    checkout.mkdir()
    commands = make_dry_run(checkout, "up")

    site = Path("/var/lib/kioskhub") / hashlib.sha256(str(checkout).encode()).hexdigest()[:12]
    assert f"{closed_folder} is closed to other accounts, so KioskHub runs from {site}" in commands
    install = next(line for line in commands.splitlines() if "uv pip install" in line)
    assert f"--python {site}/venv/bin/python" in install and " -e " not in install + commands
    assert f"{site}/venv/bin/kioskhub init --config {site}/kioskhub.yaml" in commands
    assert f"{site}/venv/bin/kioskhub up --config {site}/kioskhub.yaml" in commands


def test_make_up_in_an_open_checkout_uses_its_own_editable_venv(closed_folder):
    os.chmod(closed_folder, 0o755)
    checkout = closed_folder / "kioskhub"
    checkout.mkdir()
    commands = make_dry_run(checkout, "up")
    assert "/var/lib/kioskhub" not in commands
    assert "-e ." in commands
    assert ".venv/bin/kioskhub up --config kioskhub.yaml" in commands


def test_kioskhub_up_refuses_homes_that_the_users_cannot_reach(closed_folder):
    """Without `make up`'s move, the hub would start and fail every spawn; it says why."""
    (closed_folder / "kioskhub.yaml").write_text("home: {root: homes}\ndata_mounts: []\n")
    done = subprocess.run(
        [str(VENV_BIN / "kioskhub"), "up", "--config", str(closed_folder / "kioskhub.yaml")],
        capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 4, done.stdout + done.stderr
    assert (
        f"the users' homes (home.root), {closed_folder}/homes: {closed_folder} is closed to "
        "other accounts" in done.stderr
    )
    assert "Run `make up`" in done.stderr
    assert not (closed_folder / ".kioskhub").exists(), "nothing is started or written"
