"""Shared fixtures: a real hub started as `make up` starts it, on free ports."""

from __future__ import annotations

import pytest

from hub.sample_data import write_sample_data
from tests.support.hub_process import start_hub, write_site_config

SHARED_PASSWORD = "correct-horse-battery"


@pytest.fixture
def site_folder(tmp_path):
    """A folder holding a test site's config, state, homes and sample data."""
    write_sample_data(tmp_path / "data")
    return tmp_path


@pytest.fixture
def running_hub(site_folder):
    """A hub started with `kioskhub up`, stopped with Ctrl-C's signal afterwards."""
    config = write_site_config(site_folder)
    hub = start_hub(config, site_folder / "hub.log")
    yield hub
    if hub.process.poll() is None:
        hub.stop()
