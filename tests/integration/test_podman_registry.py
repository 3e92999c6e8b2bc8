"""Image environments from a registry on the podman backend, through the hub.

A real registry (Debian's ``docker-registry``) on loopback, over plain HTTP, holds an
environment image built FROM the site base image, pushed and then removed from podman's
storage. The site lists that registry in ``pods.insecure_registries`` and names the
environment by digest. Starting it pulls it, with the pull in the spawn progress; the same
registry under another name (not listed) keeps TLS verification, so the pull is refused with
podman's reason. A venv environment is shown in the form as one this backend cannot run.
"""

from __future__ import annotations

import shutil
import subprocess
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
import yaml

from tests.conftest import SHARED_PASSWORD, open_folder
from tests.support.hub_process import free_port, write_site_config
from tests.support.podman import (
    build_base_image,
    podman,
    podman_hub,
)
from tests.support.user_session import UserSession, signed_in

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def registry():
    """docker-registry on a free loopback port, storing under a folder of its own."""
    if not shutil.which("docker-registry"):
        pytest.fail("the registry tests need docker-registry: apt-get install docker-registry")
    folder = open_folder("registry")
    port = free_port()
    config = folder / "config.yml"
    config.write_text(yaml.safe_dump({
        "version": 0.1,
        "storage": {"filesystem": {"rootdirectory": str(folder / "data")}},
        "http": {"addr": f"127.0.0.1:{port}"},
    }))
    process = subprocess.Popen(
        ["docker-registry", "serve", str(config)],
        stdout=subprocess.DEVNULL, stderr=(folder / "registry.log").open("w"),
    )
    deadline = time.monotonic() + 30
    while True:
        try:
            if requests.get(f"http://127.0.0.1:{port}/v2/", timeout=2).status_code == 200:
                break
        except requests.ConnectionError:
            pass
        assert time.monotonic() < deadline, (folder / "registry.log").read_text()
        time.sleep(0.2)
    yield f"localhost:{port}", port
    process.terminate()
    process.wait(timeout=10)
    shutil.rmtree(folder, ignore_errors=True)


def push_environment_image(registry: str) -> str:
    """An image FROM the base image, pushed to ``registry`` and gone from podman's storage;
    its reference by digest."""
    base = build_base_image().image
    folder = open_folder("env-image")
    (folder / "Containerfile").write_text(
        f"FROM {base}\nLABEL org.kioskhub.test={uuid.uuid4().hex}\n"
    )
    tag = f"{registry}/kioskhub/env:{uuid.uuid4().hex[:8]}"
    podman("build", "-q", "-t", tag, "-f", str(folder / "Containerfile"), str(folder))
    podman("push", "--tls-verify=false", "--digestfile", str(folder / "digest"), tag)
    digest = (folder / "digest").read_text().strip()
    podman("rmi", tag)
    shutil.rmtree(folder, ignore_errors=True)
    ref = f"{registry}/kioskhub/env@{digest}"
    assert podman("image", "exists", ref, check=False).returncode == 1
    return ref


@pytest.fixture(scope="module")
def pinned_image(registry):
    ref = push_environment_image(registry[0])
    yield ref
    podman("rmi", "--force", ref, check=False)


@pytest.fixture(scope="module")
def unlisted_image(registry):
    """Another image in the same registry, named by an address the site does not list."""
    name, port = registry
    ref = push_environment_image(name).replace(name, f"127.0.0.1:{port}", 1)
    yield ref
    podman("rmi", "--force", ref, check=False)


@pytest.fixture(scope="module")
def site(registry, pinned_image, unlisted_image):
    name, _ = registry
    folder = open_folder("pods-registry")
    config = write_site_config(
        folder,
        spawner={"backend": "podman", "start_timeout": 90},
        environments=[
            {"name": "default", "display_name": "Python 3", "default": True},
            {"name": "pinned", "kind": "image", "image": pinned_image},
            {"name": "unverified", "kind": "image", "image": unlisted_image},
            {"name": "lab-venv", "display_name": "Lab venv", "path": str(folder)},
        ],
        profiles=[{"name": "small", "cpu": 1, "memory": "1Gi", "default": True}],
        data_mounts=[],
        pods={"insecure_registries": [name]},
    )
    with podman_hub(config, folder) as hub:
        yield {"hub": hub, "folder": folder}


def start_message(user: UserSession, options: dict) -> tuple[int, list[str]]:
    """The start's HTTP status and the messages a user sees: its progress, followed while
    the start is pending as the spawn page follows it, and its error."""
    with ThreadPoolExecutor(1) as pool:
        posted = pool.submit(user.api, f"/users/{user.username}/server", "POST", json=options)
        while not posted.done() and not user.api(f"/users/{user.username}").json()["pending"]:
            time.sleep(0.05)
        events = [] if posted.done() else user.wait_ready(timeout=150)
        reply = posted.result()
    messages = [e.get("message", "") for e in events]
    if reply.status_code not in (201, 202):
        messages.append(reply.json()["message"])
    return reply.status_code, messages


def test_an_image_pinned_by_digest_is_pulled_with_progress_and_runs(site, pinned_image):
    ada = signed_in(site["hub"].url, "ada", SHARED_PASSWORD)

    status, messages = start_message(ada, {"environment": "pinned"})

    assert status in (201, 202), messages
    assert f"Pulling {pinned_image}" in messages, messages
    assert f"Pulled {pinned_image}" in messages, messages
    assert any(m.startswith("Copying image config ") for m in messages), messages
    reply = ada.execute("import os; print(os.environ['KIOSKHUB_ENVIRONMENT'])")
    assert reply["stdout"].strip() == "pinned", reply
    assert podman("image", "exists", pinned_image, check=False).returncode == 0
    ada.stop_server()


def test_a_registry_not_listed_as_insecure_keeps_tls_and_the_pull_is_refused(site, registry):
    _, port = registry
    bob = signed_in(site["hub"].url, "bob", SHARED_PASSWORD)

    status, messages = start_message(bob, {"environment": "unverified"})

    said = "\n".join(messages)
    assert f"The image 127.0.0.1:{port}/kioskhub/env@sha256:" in said, said
    assert f"is not on this machine and could not be pulled from 127.0.0.1:{port}" in said
    assert "server gave HTTP response to HTTPS client" in said, said


def test_the_form_shows_a_venv_environment_as_one_pods_cannot_run(site):
    carol = signed_in(site["hub"].url, "carol", SHARED_PASSWORD)
    form = carol.http.get(f"{site['hub'].url}/hub/spawn").content.decode()

    assert 'name="environment" value="default" checked>' in form
    assert 'name="environment" value="pinned">' in form
    assert 'name="environment" value="lab-venv" disabled>' in form
    assert (
        "The environment &#x27;lab-venv&#x27; is a venv on the hub&#x27;s machine, which the "
        "podman backend cannot use (a pod has only its image); it runs on sites whose "
        "spawner.backend is local. Choose another environment."
    ) in form
    refused = carol.api("/users/carol/server", "POST", json={"environment": "lab-venv"})
    assert refused.status_code == 400
    assert "which the podman backend cannot use" in refused.json()["message"]
