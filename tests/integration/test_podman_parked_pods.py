"""Parked pods through a real hub: a stopped server's pod waits for its user's next start.

A hub with ``pods.park_minutes`` on the podman backend. When ada's server stops, a pod of
the same launch is made again whose Python has imported the server and waits, holding no
token. Her next start runs in that very pod (the same podman pod ID; the hub logs "Using
the pod parked for you", also the start's progress message), a kernel runs code, and the
server's environment and extensions are those of her fresh start. The hand-over path is
attacked: her server cannot write it, and bob's parked pod never gets her start. A
restarted hub uses the pod it finds parked. A start of another profile, or one that finds
the parked pod's server dead, removes the parked pod and starts fresh.
"""

from __future__ import annotations

import json
import os
import shutil
import time

import pytest

from kioskhub.hub.sample_data import write_sample_data
from kioskhub.spawner.parked_pods import WAITING
from kioskhub.spawner.podman_plan import hub_tag
from tests.conftest import SHARED_PASSWORD, open_folder
from tests.support.hub_process import start_hub, write_site_config
from tests.support.podman import (
    build_base_image,
    podman,
    pods_with_label,
    remove_pods_with_label,
    remove_volumes_with_prefix,
)
from tests.support.user_session import UserSession

pytestmark = pytest.mark.integration

PARKED = "Using the pod parked for you: {}"
PER_START = {"JUPYTERHUB_API_TOKEN", "JPY_API_TOKEN", "KIOSKHUB_SERVER_STARTED", "JPY_PARENT_PID",
             "JPY_SESSION_NAME"}  # fmt: skip
"""What differs from one start to the next of the same server, parked or not."""


@pytest.fixture(scope="module")
def site():
    build_base_image()
    folder = open_folder("parked")
    write_sample_data(folder / "data")
    config = write_site_config(
        folder,
        hub={"cleanup_servers": False},
        spawner={"backend": "podman", "start_timeout": 90},
        pods={"park_minutes": 5},
        profiles=[
            {"name": "small", "cpu": 1, "memory": "400Mi", "default": True},
            {"name": "large", "cpu": 1, "memory": "600Mi"},
        ],
        data_mounts=[{"name": "data", "source": "data", "mount_path": "/data"}],
    )
    tag = hub_tag(folder / "state")
    state = {"hub": start_hub(config, folder / "hub.log"), "folder": folder, "tag": tag,
             "config": config}  # fmt: skip
    yield state
    if state["hub"].process.poll() is None:
        state["hub"].stop()
    remove_pods_with_label(f"kioskhub/hub={tag}")
    remove_volumes_with_prefix(f"kh-{tag}-")
    shutil.rmtree(folder, ignore_errors=True)


def signed_in(site, name: str) -> UserSession:
    """``name``'s browser session, signed in once for the module."""
    sessions = site.setdefault("sessions", {})
    if name not in sessions:
        sessions[name] = UserSession(site["hub"].url, name)
        sessions[name].login(SHARED_PASSWORD)
        sessions[name].request_token()
    return sessions[name]


def started(user: UserSession, site, options: dict | None = None) -> dict:
    """The pod of ``user``'s new server, once it is ready."""
    events = user.spawn(options, timeout=120)
    assert events[-1].get("ready"), (events, site["hub"].log_text()[-3000:])
    [pod] = pods_with_label(f"kioskhub/hub={site['tag']}", f"kioskhub/user={user.username}")
    return pod


def parked_pod(site, name: str, timeout: float = 60) -> dict:
    """The parked pod of ``name`` once its server is imported and waits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for pod in pods_with_label(f"kioskhub/hub={site['tag']}", f"kioskhub/user={name}"):
            container = f"{pod['Name']}-notebook"
            if "kioskhub/parked-launch" in pod["Labels"] and WAITING in (
                podman("logs", container, check=False).stdout
            ):
                return pod
        time.sleep(0.5)
    raise AssertionError(f"no parked pod for {name}:\n{site['hub'].log_text()[-3000:]}")


def container_env(pod: dict) -> dict[str, str]:
    found = podman("container", "inspect", "--format", "json", f"{pod['Name']}-notebook")
    return dict(item.split("=", 1) for item in json.loads(found.stdout)[0]["Config"]["Env"])


SEEN = "import json, os\nprint(json.dumps(dict(os.environ)))"


def seen(user: UserSession) -> tuple[dict, list]:
    """The kernel's environment (the server's, inherited) and JupyterLab's extensions."""
    reply = user.execute(SEEN)
    assert reply["error"] is None, reply
    extensions = user.server("/lab/api/extensions").json()
    return json.loads(reply["stdout"]), sorted(e["name"] for e in extensions)


def test_a_stopped_server_is_parked_and_the_next_start_runs_in_it(site):
    ada = signed_in(site, "ada")
    started(ada, site)
    fresh_env, fresh_extensions = seen(ada)
    ada.stop_server()

    pod = parked_pod(site, "ada")
    assert not [name for name in container_env(pod) if name.startswith("JUPYTERHUB")]

    assert started(ada, site)["Id"] == pod["Id"]
    reply = ada.execute("print(6 * 7)")
    assert reply["stdout"].strip() == "42", reply

    parked_env, parked_extensions = seen(ada)
    assert parked_extensions == fresh_extensions
    assert set(parked_env) == set(fresh_env)
    changed = {k for k in fresh_env if fresh_env[k] != parked_env[k]}
    assert changed <= PER_START, changed
    assert parked_env["JUPYTERHUB_API_TOKEN"] != fresh_env["JUPYTERHUB_API_TOKEN"]


def test_the_handover_reaches_only_its_own_pod_and_its_server_cannot_write_it(site):
    ada, bob = signed_in(site, "ada"), signed_in(site, "bob")
    started(bob, site)
    bob.stop_server()
    bobs = parked_pod(site, "bob")
    ada.stop_server()
    parked_pod(site, "ada")

    assert "kioskhub/parked-launch" in started(ada, site)["Labels"]
    reply = ada.execute(
        "import os\n"
        "print(os.listdir('/run/kioskhub-handover'))\n"
        "try:\n"
        "    os.symlink('/home/jovyan', '/run/kioskhub-handover/start.json')\n"
        "except OSError as error:\n"
        "    print(error.strerror)\n"
    )
    assert reply["stdout"].splitlines() == ["[]", "Read-only file system"], reply
    token = seen(ada)[0]["JUPYTERHUB_API_TOKEN"]

    parked = site["folder"] / "state" / "parked"
    assert (os.stat(parked).st_uid, os.stat(parked).st_mode & 0o777) == (0, 0o700)
    assert os.listdir(parked / bobs["Name"]) == []
    assert token not in json.dumps(container_env(bobs))
    still = parked_pod(site, "bob", timeout=5)
    assert still["Id"] == bobs["Id"]


def test_a_restarted_hub_uses_the_pod_it_finds_parked(site):
    ada = signed_in(site, "ada")
    ada.stop_server()
    waiting = parked_pod(site, "ada")
    assert site["hub"].stop() == 0
    site["hub"] = start_hub(site["config"], site["folder"] / "hub.log")

    assert started(ada, site)["Id"] == waiting["Id"]
    assert ada.execute("print(6 * 7)")["stdout"].strip() == "42"


def test_a_start_of_another_launch_removes_the_parked_pod_and_starts_fresh(site):
    bob = signed_in(site, "bob")
    waiting = parked_pod(site, "bob", timeout=5)
    running = started(bob, site, {"profile": "large"})
    assert running["Id"] != waiting["Id"]
    assert PARKED.format("bob") not in site["hub"].log_text()
    assert "Not using the pod parked for bob: it was parked for another environment" in (
        site["hub"].log_text()
    )
    assert "kioskhub/parked-launch" not in running["Labels"]
    reply = bob.execute("import os\nprint(os.environ['KIOSKHUB_PROFILE'])")
    assert reply["stdout"].strip() == "large", reply


def test_a_parked_pod_whose_server_died_is_replaced_by_a_fresh_one(site):
    bob = signed_in(site, "bob")
    bob.stop_server()
    dead = parked_pod(site, "bob")
    podman("kill", f"{dead['Name']}-notebook")

    running = started(bob, site, {"profile": "large"})
    assert running["Id"] != dead["Id"]
    assert "Not using the pod parked for bob: its waiting server is gone" in (
        site["hub"].log_text()
    )
    assert bob.execute("print(6 * 7)")["stdout"].strip() == "42"
