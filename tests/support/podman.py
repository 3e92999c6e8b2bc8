"""podman for the tests: the tools checked (a missing one fails the test, naming it), the site
base image built once per run with `kioskhub image build-base` (reused from podman's
storage when present), and pods looked up and cleaned up by the hub's label."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from kioskhub.spawner.podman_cli import podman_command, podman_env
from kioskhub.spawner.podman_plan import hub_tag
from tests.support.hub_process import HubProcess, start_hub

KIOSKHUB = Path(sys.executable).parent / "kioskhub"
TOOLS = {"podman": "podman", "runc": "runc", "debootstrap": "debootstrap", "conmon": "conmon"}


def require_pod_tools() -> None:
    """Fail (never skip) when a tool that local pods need is missing, naming it."""
    missing = [tool for tool in TOOLS if not shutil.which(tool)]
    if missing:
        packages = " ".join(TOOLS[tool] for tool in missing)
        pytest.fail(
            f"the podman tests need {', '.join(missing)}, which this machine lacks; "
            f"install them with `apt-get install {packages}` (tests/require-system-packages "
            "does this under `make test`)"
        )


@dataclass(frozen=True)
class BaseImageBuild:
    image: str
    seconds: float
    output: str


_built: BaseImageBuild | None = None


def build_base_image() -> BaseImageBuild:
    """Run `kioskhub image build-base` once per test run, as a site admin would."""
    global _built
    if _built is None:
        require_pod_tools()
        start = time.monotonic()
        result = subprocess.run(
            [str(KIOSKHUB), "image", "build-base"], capture_output=True, text=True, timeout=900
        )
        if result.returncode != 0:
            pytest.fail(f"kioskhub image build-base failed:\n{result.stdout}\n{result.stderr}")
        _built = BaseImageBuild(
            image=result.stdout.strip().splitlines()[-1],
            seconds=time.monotonic() - start,
            output=result.stdout,
        )
        print(f"\nbase image {_built.image} ready in {_built.seconds:.0f}s", file=sys.stderr)
    return _built


def podman(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(
        podman_command(*args), env=podman_env(), capture_output=True, text=True, check=check,
        timeout=120,
    )


def pods_with_label(*labels: str) -> list[dict]:
    """The pods (``podman pod ps`` records) carrying every one of ``labels`` (key=value)."""
    filters = [arg for label in labels for arg in ("--filter", f"label={label}")]
    found = podman("pod", "ps", *filters, "--format", "json")
    return json.loads(found.stdout or "[]")


def remove_pods_with_label(label: str) -> None:
    for pod in pods_with_label(label):
        podman("pod", "rm", "--force", "--time", "0", pod["Name"], check=False)


def remove_volumes_with_prefix(prefix: str) -> None:
    names = podman("volume", "ls", "--format", "{{.Name}}").stdout.split()
    for name in names:
        if name.startswith(prefix):
            podman("volume", "rm", "--force", name, check=False)


@contextmanager
def podman_hub(config: Path, folder: Path) -> Iterator[HubProcess]:
    """A hub of the podman backend on ``config``; afterwards its pods, their home volumes
    and ``folder`` are removed."""
    tag = hub_tag(folder / "state")
    hub = start_hub(config, folder / "hub.log")
    try:
        yield hub
    finally:
        if hub.process.poll() is None:
            hub.stop()
        remove_pods_with_label(f"kioskhub/hub={tag}")
        remove_volumes_with_prefix(f"kh-{tag}-")
        shutil.rmtree(folder, ignore_errors=True)
