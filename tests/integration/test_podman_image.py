"""`kioskhub image build-base` as a site admin runs it, and podman under the project's config.

The base image is built once per test run (cold: debootstrap, import, build) and reused
from podman's storage afterwards; both paths show their progress.
"""

from __future__ import annotations

import json
import re
import subprocess
import time

import pytest

from kioskhub.hub.schema.site import PACKAGE_ROOT
from kioskhub.spawner.pod_image import IMAGE_PREFIX, IMAGE_UID, server_versions
from kioskhub.spawner.podman_cli import CONTAINERS_CONF
from tests.support.podman import KIOSKHUB, build_base_image, podman, require_pod_tools

pytestmark = pytest.mark.integration


def test_build_base_shows_its_steps_and_reuses_podmans_storage():
    built = build_base_image()

    assert built.image.startswith("localhost/kioskhub-base:")
    assert "[3/3" in built.output
    if "[1/3" in built.output:  # this run built it from scratch
        assert "with debootstrap" in built.output
        assert "Importing the Debian system into podman" in built.output
        assert f"Done: {built.image}" in built.output

    start = time.monotonic()
    again = subprocess.run(
        [str(KIOSKHUB), "image", "build-base"], capture_output=True, text=True, timeout=120
    )
    seconds = time.monotonic() - start

    assert again.returncode == 0, again.stderr
    assert f"{built.image} is already in podman's storage; reusing it" in again.stdout
    assert again.stdout.strip().splitlines()[-1] == built.image
    assert seconds < 15
    name = subprocess.run([str(KIOSKHUB), "image", "name"], capture_output=True, text=True)
    assert name.stdout.strip() == built.image


def test_the_base_image_runs_the_hubs_versions_as_a_non_root_account():
    image = build_base_image().image
    expected = server_versions()
    result = podman(
        "run", "--rm", image, "python", "-c",
        "import importlib.metadata as m, json, os, sys; "
        "print(json.dumps([os.getuid(), sys.prefix, "
        f"{{n: m.version(n) for n in {sorted(expected)}}}]))",
    )
    uid, prefix, versions = json.loads(result.stdout)

    assert uid == IMAGE_UID
    assert prefix == IMAGE_PREFIX
    assert versions == expected
    assert {"dask-gateway", "dask", "distributed"} <= set(versions)


def test_the_base_image_enables_kioskhubs_server_extensions():
    image = build_base_image().image
    result = podman(
        "run", "--rm", image, "sh", "-c",
        "python -c 'import kioskhub.extensions.memory_notice as m; print(m.__file__)'"
        " && jupyter server extension list 2>&1",
    )

    text = re.sub(r"\x1b\[[0-9;]*m", "", result.stdout)

    assert text.splitlines()[0] == (
        "/opt/kioskhub/kioskhub-extensions/kioskhub/extensions/memory_notice.py"
    )
    assert "kioskhub.extensions.memory_notice enabled" in text
    assert "kioskhub.extensions.memory_notice  OK" in text


def test_podman_runs_with_the_containers_conf_the_project_ships():
    require_pod_tools()
    info = json.loads(podman("info", "--format", "json").stdout)

    assert info["host"]["cgroupManager"] == "cgroupfs"
    assert info["host"]["ociRuntime"]["name"] == "runc"
    assert 'default_ulimits = []' in CONTAINERS_CONF.read_text()
    assert CONTAINERS_CONF == PACKAGE_ROOT / "spawner" / "containers.conf"
