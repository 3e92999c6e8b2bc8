"""pytest fixtures for real VMs: the VM image, built once and kept in pytest's cache."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tests.openstack_sim import qemu, vm_image


def require_vm_tools() -> None:
    """Fail (never skip) when a program that VMs or their image need is missing, naming it."""
    missing = sorted(set(qemu.missing_tools() + vm_image.missing_tools()))
    if missing:
        pytest.fail(
            f"the VM tests need the Debian package(s) {', '.join(missing)}, which this machine "
            f"lacks; install them with `apt-get install --no-install-recommends "
            f"{' '.join(missing)}` (tests/require-system-packages does this under `make test`)"
        )


@pytest.fixture(scope="session")
def vm_image_path(request) -> Path:
    """The KioskHub VM image's disk: built on the first run (minutes), then reused by key."""
    require_vm_tools()
    cache = Path(request.config.cache.mkdir("kioskhub-vm-images"))
    try:
        return vm_image.build_vm_image(cache, report=lambda line: print(line, file=sys.stderr))
    except vm_image.ImageBuildError as error:
        pytest.fail(f"the VM image could not be built: {error}")
