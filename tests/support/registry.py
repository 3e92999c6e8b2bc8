"""A real container registry on loopback for the tests: Debian's ``docker-registry``.

``LoopbackRegistry`` starts ``/usr/bin/docker-registry serve`` with a config of its own (a
free port on 127.0.0.1, storage in a folder of the test's) and waits until its ``/v2/`` API
answers. The registry speaks plain HTTP, so podman and skopeo need ``--tls-verify=false``
for it, as for any registry a site lists as insecure. A missing registry fails the test,
naming the package.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from .hub_process import free_port

REGISTRY_PROGRAM = "docker-registry"
REGISTRY_PACKAGE = "docker-registry"


def registry_program() -> str:
    """The registry's program, or the reason the tests cannot run it."""
    found = shutil.which(REGISTRY_PROGRAM) or (
        "/usr/bin/docker-registry" if Path("/usr/bin/docker-registry").exists() else None
    )
    if not found:
        raise FileNotFoundError(
            f"{REGISTRY_PROGRAM} is not installed: run tests/require-system-packages as root "
            f"(apt-get install {REGISTRY_PACKAGE})"
        )
    return found


def registry_config(storage: Path, port: int) -> dict:
    """The registry's config: filesystem storage, loopback only, deletes allowed."""
    return {
        "version": 0.1,
        "log": {"level": "warn"},
        "storage": {"filesystem": {"rootdirectory": str(storage)}, "delete": {"enabled": True}},
        "http": {"addr": f"127.0.0.1:{port}"},
    }


class LoopbackRegistry:
    """One registry process; ``host`` is what image references start with (127.0.0.1:PORT)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port = free_port()
        self.host = f"127.0.0.1:{self.port}"
        self.url = f"http://{self.host}"
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 30) -> LoopbackRegistry:
        program = registry_program()
        storage = self.folder / "storage"
        storage.mkdir(parents=True, exist_ok=True)
        config = self.folder / "config.yml"
        # JSON is YAML: the registry reads this file as its config.
        config.write_text(json.dumps(registry_config(storage, self.port)))
        log = (self.folder / "registry.log").open("wb")
        self.process = subprocess.Popen(
            [program, "serve", str(config)], stdout=log, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the registry exited: {self.log_tail()}")
            try:
                with urllib.request.urlopen(f"{self.url}/v2/", timeout=2) as answer:
                    if answer.status == 200:
                        return self
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"the registry did not answer within {timeout:.0f} s: {self.log_tail()}")

    def log_tail(self) -> str:
        path = self.folder / "registry.log"
        return path.read_text(errors="replace")[-2000:] if path.exists() else "(no log)"

    def repositories(self) -> list[str]:
        with urllib.request.urlopen(f"{self.url}/v2/_catalog", timeout=10) as answer:
            return json.load(answer).get("repositories", [])

    def tags(self, repository: str) -> list[str]:
        with urllib.request.urlopen(f"{self.url}/v2/{repository}/tags/list", timeout=10) as answer:
            return json.load(answer).get("tags") or []

    def manifest_digest(self, repository: str, reference: str) -> str:
        """The digest the registry gives the manifest ``repository:reference``."""
        request = urllib.request.Request(
            f"{self.url}/v2/{repository}/manifests/{reference}",
            method="HEAD",
            headers={
                "Accept": ", ".join(
                    (
                        "application/vnd.oci.image.manifest.v1+json",
                        "application/vnd.docker.distribution.manifest.v2+json",
                        "application/vnd.oci.image.index.v1+json",
                    )
                )
            },
        )
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.headers["Docker-Content-Digest"]

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


@pytest.fixture(scope="session")
def loopback_registry(tmp_path_factory):
    """A registry on 127.0.0.1 for the whole run; a missing program fails, naming it."""
    try:
        registry = LoopbackRegistry(tmp_path_factory.mktemp("registry")).start()
    except (FileNotFoundError, RuntimeError) as error:
        pytest.fail(str(error))
    yield registry
    registry.stop()
