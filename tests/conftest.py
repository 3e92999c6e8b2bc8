"""Shared fixtures: real hubs started as `make up` starts them, on free ports."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

from kioskhub.hub.sample_data import write_sample_data
from tests.support.hub_process import start_hub, write_site_config
from tests.support.oidc_provider import provider_folder, start_oidc_provider, stop_oidc_provider
from tests.support.registry import loopback_registry  # noqa: F401 (a fixture)
from tests.support.venvs import make_server_venv

SHARED_PASSWORD = "correct-horse-battery"


def open_for_accounts(folder: Path) -> None:
    """Let other system accounts pass through ``folder`` and its parents (pytest makes 0700)."""
    for parent in [folder, *folder.parents]:
        mode = parent.stat().st_mode & 0o777
        if not mode & 0o001:
            os.chmod(parent, mode | 0o711)


def open_folder(prefix: str) -> Path:
    """A new folder below /tmp that user accounts may enter (pytest's own tmp is 0700)."""
    folder = Path(tempfile.mkdtemp(prefix=f"kioskhub-{prefix}-", dir="/tmp"))
    open_for_accounts(folder)
    return folder


@pytest.fixture
def site_folder():
    """A folder for a test site's config, state, homes and sample data."""
    folder = open_folder("site")
    write_sample_data(folder / "data")
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def running_hub(site_folder):
    """A hub started with `kioskhub up`, stopped with Ctrl-C's signal afterwards."""
    config = write_site_config(site_folder)
    hub = start_hub(config, site_folder / "hub.log")
    yield hub
    if hub.process.poll() is None:
        hub.stop()


@pytest.fixture(scope="session")
def second_venv() -> Path:
    """A second server environment (its own venv with the hub's server versions)."""
    folder = open_folder("environments")
    yield make_server_venv(folder / "analysis")
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def oidc_provider_factory():
    """Start real OpenID Connect providers (npm oidc-provider) for given redirect URIs."""
    started = []

    def start(redirect_uris: list[str]):
        provider = start_oidc_provider(redirect_uris, provider_folder())
        started.append(provider)
        return provider

    yield start
    for provider in started:
        stop_oidc_provider(provider)
        shutil.rmtree(provider.log.parent, ignore_errors=True)


@pytest.fixture(scope="session")
def keystone():
    """A real Keystone on loopback: the lab's project, KioskHub's user and its application
    credential (``tests/support/keystone.py``); one for the whole run."""
    from tests.support.keystone import start_keystone

    folder = open_folder("keystone")
    started = start_keystone(folder)
    yield started
    started.stop()
    shutil.rmtree(folder, ignore_errors=True)
