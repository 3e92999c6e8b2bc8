"""The podman backend through the hub: each user's server is a pod from the shared manifest.

A real hub with ``spawner.backend: podman`` spawns two users' servers as podman pods from the
site base image (built once per run by `kioskhub image build-base`). The tests execute code
in the kernels: the account is not root, the data mount refuses writes, the memory limit
kills a cell that allocates past it, the two users' pods see neither each other's files
nor processes, a restarted hub re-adopts a running pod, a pod's usage record has the
CPU time its cgroup counted, and a server killed in its start (a profile too small for it)
is explained with its exit status well before the start timeout.
"""

from __future__ import annotations

import json
import os
import shutil
import time

import pytest

from kioskhub.hub.sample_data import write_sample_data
from kioskhub.spawner import usage_store
from kioskhub.spawner.pod_image import IMAGE_UID
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

SMALL_MEMORY = 400 * 2**20


@pytest.fixture(scope="module")
def site():
    build_base_image()
    folder = open_folder("pods")
    write_sample_data(folder / "data")
    config = write_site_config(
        folder,
        hub={"cleanup_servers": False},
        spawner={"backend": "podman", "start_timeout": 90},
        environments=[
            {"name": "default", "display_name": "Python 3", "default": True},
            {"name": "unbuilt", "kind": "image", "image": "localhost/kioskhub-unbuilt:1"},
            {"name": "venv", "path": str(folder)},
        ],
        profiles=[
            {"name": "small", "cpu": 0.5, "memory": "400Mi", "default": True},
            {"name": "large", "cpu": 1, "memory": "1Gi", "groups": ["physics"]},
            {"name": "gpu", "cpu": 1, "memory": "1Gi", "gpu": {"count": 1}},
            {"name": "tiny", "cpu": 0.5, "memory": "24Mi"},
        ],
        data_mounts=[{"name": "data", "source": "data", "mount_path": "/data"}],
        groups={"physics": ["ada"]},
    )
    tag = hub_tag(folder / "state")
    hub = start_hub(config, folder / "hub.log")
    state = {"hub": hub, "folder": folder, "config": config, "tag": tag}
    yield state
    for user in ("ada", "bob"):
        try:
            signed_in(state["hub"], user).stop_server()
        except Exception:  # noqa: BLE001 (best effort; the label sweep below catches the rest)
            pass
    if state["hub"].process.poll() is None:
        state["hub"].stop()
    remove_pods_with_label(f"kioskhub/hub={tag}")
    remove_volumes_with_prefix(f"kh-{tag}-")
    shutil.rmtree(folder, ignore_errors=True)


def signed_in(hub, name: str) -> UserSession:
    user = UserSession(hub.url, name)
    user.login(SHARED_PASSWORD)
    user.request_token()
    return user


@pytest.fixture(scope="module")
def ada(site):
    user = signed_in(site["hub"], "ada")
    events = user.spawn({"profile": "large"}, timeout=120)
    assert events[-1].get("ready"), (events, site["hub"].log_text()[-3000:])
    return user


@pytest.fixture(scope="module")
def bob(site):
    user = signed_in(site["hub"], "bob")
    events = user.spawn(timeout=120)
    assert events[-1].get("ready"), (events, site["hub"].log_text()[-3000:])
    return user


PROBE = """
import json, os, socket
def read(path):
    try:
        return open(path).read().strip()
    except OSError:
        return None
print(json.dumps({
    "uid": os.getuid(), "gid": os.getgid(), "home": os.path.expanduser("~"),
    "hostname": socket.gethostname(), "profile": os.environ.get("KIOSKHUB_PROFILE"),
    "data_dir": os.environ.get("KIOSKHUB_DATA_DIR"),
    "memory": read("/sys/fs/cgroup/memory/memory.limit_in_bytes")
              or read("/sys/fs/cgroup/memory.max"),
    "cpu": read("/sys/fs/cgroup/cpu/cpu.cfs_quota_us") or read("/sys/fs/cgroup/cpu.max"),
    "no_new_privs": [line.split()[1] for line in open("/proc/self/status")
                     if line.startswith("NoNewPrivs")][0],
    "pids": sorted(int(p) for p in os.listdir("/proc") if p.isdigit()),
    "cmdlines": [read(f"/proc/{p}/cmdline") for p in os.listdir("/proc") if p.isdigit()],
}))
"""


def probe(user: UserSession) -> dict:
    reply = user.execute(PROBE)
    assert reply["error"] is None, reply
    return json.loads(reply["stdout"])


def test_each_server_is_a_pod_of_its_own_running_as_non_root(site, ada, bob):
    seen_ada, seen_bob = probe(ada), probe(bob)
    tag = site["tag"]

    assert (seen_ada["uid"], seen_ada["gid"]) == (IMAGE_UID, 100)
    assert seen_ada["home"] == "/home/jovyan"
    assert seen_ada["no_new_privs"] == "1"
    assert (seen_ada["profile"], seen_bob["profile"]) == ("large", "small")
    assert seen_bob["memory"] in (str(SMALL_MEMORY), f"{SMALL_MEMORY}")
    assert seen_bob["cpu"] in ("50000", "50000 100000")
    assert seen_ada["data_dir"] == "/data"
    pods = {p["Labels"]["kioskhub/user"]: p for p in pods_with_label(f"kioskhub/hub={tag}")}
    assert set(pods) == {"ada", "bob"}
    assert pods["ada"]["Name"] == f"kh-{tag}-ada"
    assert seen_ada["hostname"] != seen_bob["hostname"]
    published = podman("port", f"kh-{tag}-bob-notebook").stdout.strip()
    assert published.startswith("8888/tcp -> 127.0.0.1:"), published


def test_data_mount_is_readable_and_really_read_only(site, bob):
    reply = bob.execute(
        "import os\n"
        "print(open('/data/beamline-sample.csv').readline().strip())\n"
        "try:\n"
        "    open('/data/mine.txt', 'w')\n"
        "except OSError as error:\n"
        "    print('refused', error.errno, error.strerror)\n"
    )
    lines = reply["stdout"].splitlines()
    assert lines == ["time_s,intensity,temperature_k", "refused 30 Read-only file system"], reply
    assert not (site["folder"] / "data" / "mine.txt").exists()


def test_home_is_the_users_folder_on_the_host_and_pods_cannot_see_each_other(site, ada, bob):
    ada.execute("open('/home/jovyan/secret.txt', 'w').write(\"ada's notes\")")
    host_file = site["folder"] / "homes" / "ada" / "secret.txt"
    assert host_file.read_text() == "ada's notes"
    assert host_file.stat().st_uid == IMAGE_UID
    assert "examples" in os.listdir(site["folder"] / "homes" / "ada")

    reply = bob.execute(
        "import os, glob\n"
        "print(sorted(glob.glob('/home/*/secret.txt')))\n"
        f"print(os.path.exists('{host_file}'))\n"
    )
    assert reply["stdout"].splitlines() == ["[]", "False"], reply
    seen_ada, seen_bob = probe(ada), probe(bob)
    ada_commands = " ".join(c or "" for c in seen_ada["cmdlines"])
    bob_commands = " ".join(c or "" for c in seen_bob["cmdlines"])
    assert "JUPYTERHUB_USER" not in bob_commands
    assert "/user/ada" not in bob_commands and "/user/bob" not in ada_commands
    assert max(seen_bob["pids"]) < 1000, "bob's pod sees the host's processes"


def test_memory_limit_kills_the_cell_and_the_server_recovers(site, bob):
    reply = bob.execute('x = b"x" * (1024 * 2**20)', timeout=120)
    assert reply["died"], reply
    after = bob.execute("print('still here')", timeout=60)
    assert after["stdout"].strip() == "still here"


def test_profiles_are_gated_and_gpus_refused_without_gpus(site):
    carol = signed_in(site["hub"], "carol")
    refused = carol.api("/users/carol/server", "POST", json={"profile": "large"})
    assert refused.status_code == 400
    assert "only for the groups physics" in refused.json()["message"]
    gpu = carol.api("/users/carol/server", "POST", json={"profile": "gpu"})
    assert gpu.status_code == 400
    assert "needs 1 GPU(s), but this site has no NVIDIA GPU for its podman backend" in (
        gpu.json()["message"]
    )


def test_an_image_podman_does_not_hold_fails_the_start_saying_what_to_do(site):
    dan = signed_in(site["hub"], "dan")
    reply = dan.api("/users/dan/server", "POST", json={"environment": "unbuilt"})
    assert reply.status_code == 500, reply.text
    assert "The image localhost/kioskhub-unbuilt:1 is not in podman's storage" in (
        reply.json()["message"]
    )
    venv = dan.api("/users/dan/server", "POST", json={"environment": "venv"})
    assert venv.status_code == 400
    assert venv.json()["message"] == (
        "The environment 'venv' is a venv on the hub's machine, which the podman backend "
        "cannot use (a pod has only its image); it runs on sites whose spawner.backend is "
        "local. Choose another environment."
    )


def test_a_server_killed_during_its_start_is_explained_soon_with_its_exit_status(site):
    """The backend polls a starting pod's container every 2 s: a server that dies in its
    start is still reported, with its exit status, long before the start timeout."""
    erin = signed_in(site["hub"], "erin")
    began = time.monotonic()
    reply = erin.api("/users/erin/server", "POST", json={"profile": "tiny"})
    events = erin.wait_ready(120) if reply.status_code == 202 else []
    message = events[-1]["message"] if events else reply.json()["message"]
    assert "Your server exited during start (exit status 137)" in message, (reply.text, events)
    assert time.monotonic() - began < 60, "noticed only at the 90 s start timeout"


def test_a_restarted_hub_readopts_the_pod_and_stop_removes_it(site, ada):
    tag = site["tag"]
    before = probe(ada)["hostname"]
    assert site["hub"].stop() == 0
    assert [p["Status"] for p in pods_with_label("kioskhub/user=ada", f"kioskhub/hub={tag}")] == [
        "Running"
    ]

    site["hub"] = start_hub(site["config"], site["folder"] / "hub.log")
    again = ada  # the same browser session and token, as after any hub restart
    model = again.api("/users/ada").json()
    assert model["servers"][""]["ready"], model
    assert probe(again)["hostname"] == before

    start = time.monotonic()
    again.stop_server()
    assert time.monotonic() - start < 30
    assert pods_with_label("kioskhub/user=ada", f"kioskhub/hub={tag}") == []
    assert (site["folder"] / "homes" / "ada" / "secret.txt").exists()


BURN_CPU = "import time\nt = time.process_time()\nwhile time.process_time() - t < 2: pass\n1"


def test_a_pods_usage_record_has_the_cpu_seconds_and_memory_peak_of_its_cgroup(site, bob):
    """Read from the pod's cgroup folders as podman reports them, up to the pod's removal."""
    reply = bob.execute(BURN_CPU, timeout=120)
    assert not reply["died"], reply
    bob.stop_server()
    found = usage_store.records(site["folder"] / "state" / "usage.sqlite")
    record = [r for r in found if r.username == "bob"][-1]
    assert record.backend == "podman" and record.end is not None, record
    assert record.cpu_seconds >= 2, record
    assert record.memory_peak > 20 * 2**20, record
