"""A hub with the gallery turned on and the sample data at its data mount, for tests."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from kioskhub.hub.sample_data import write_sample_data
from tests.conftest import open_folder
from tests.support.hub_process import (
    HubProcess,
    free_port,
    remove_site_folder,
    start_hub,
    write_site_config,
)


@contextmanager
def gallery_hub(name: str, **gallery) -> Iterator[tuple[HubProcess, Path]]:
    """Start such a hub in a new site folder named after ``name`` (``gallery``: more
    settings of its ``gallery`` section); stop it and remove the folder afterwards."""
    folder = open_folder(name)
    write_sample_data(folder / "data")
    config = write_site_config(
        folder, gallery={"enabled": True, "port": free_port(), **gallery}
    )
    hub = start_hub(config, folder / "hub.log")
    try:
        yield hub, folder
    finally:
        if hub.process.poll() is None:
            hub.stop()
        remove_site_folder(folder)
