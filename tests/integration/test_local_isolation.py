"""The local backend as root: two users, two environments and profiles, real isolation."""

import pwd
import shutil
import sys
from pathlib import Path

import pytest

from kioskhub.hub.sample_data import write_sample_data
from tests.conftest import SHARED_PASSWORD, open_folder
from tests.support.hub_process import start_hub, write_site_config
from tests.support.user_session import UserSession
from tests.support.user_session import signed_in as sign_in

pytestmark = pytest.mark.integration

SMALL_MEMORY = 400 * 2**20


@pytest.fixture(scope="module")
def site(second_venv):
    if not Path("/proc/self/cgroup").exists() or pwd.getpwuid(0) is None:
        pytest.fail("these tests need Linux with /proc")
    folder = open_folder("isolation")
    write_sample_data(folder / "data")
    mount_path = str(folder / "mnt" / "data")
    config = write_site_config(
        folder,
        environments=[
            {"name": "default", "display_name": "Python 3", "default": True},
            {
                "name": "analysis",
                "display_name": "Analysis",
                "description": "A second venv",
                "path": str(second_venv),
            },
        ],
        profiles=[
            {"name": "small", "cpu": 0.5, "memory": "400Mi", "default": True},
            {"name": "large", "cpu": 1, "memory": "1Gi", "groups": ["physics"]},
            {"name": "gpu", "cpu": 1, "memory": "1Gi", "gpu": {"count": 1}},
        ],
        data_mounts=[
            {"name": "data", "source": "data", "mount_path": mount_path, "read_only": True}
        ],
        groups={"physics": ["ada"]},
    )
    hub = start_hub(config, folder / "hub.log")
    yield {"hub": hub, "folder": folder, "mount_path": mount_path, "venv": second_venv}
    if hub.process.poll() is None:
        hub.stop()
    shutil.rmtree(folder, ignore_errors=True)


def signed_in(hub, name: str) -> UserSession:
    return sign_in(hub.url, name, SHARED_PASSWORD)


@pytest.fixture(scope="module")
def ada(site):
    user = signed_in(site["hub"], "ada")
    events = user.spawn({"environment": "analysis", "profile": "large"})
    assert events[-1].get("ready"), events
    return user


@pytest.fixture(scope="module")
def bob(site):
    user = signed_in(site["hub"], "bob")
    events = user.spawn()
    assert events[-1].get("ready"), events
    return user


PROBE = """
import json, os, sys, pwd
print(json.dumps({
    "prefix": sys.prefix,
    "user": pwd.getpwuid(os.getuid()).pw_name,
    "home": os.path.expanduser("~"),
    "profile": os.environ.get("KIOSKHUB_PROFILE"),
    "environment": os.environ.get("KIOSKHUB_ENVIRONMENT"),
    "mem_limit": os.environ.get("MEM_LIMIT"),
    "data_dir": os.environ.get("KIOSKHUB_DATA_DIR"),
    "cgroup": open("/proc/self/cgroup").read(),
}))
"""


def probe(user: UserSession) -> dict:
    import json

    reply = user.execute(PROBE)
    assert reply["error"] is None, reply
    return json.loads(reply["stdout"])


def test_each_user_runs_their_choice_as_their_own_account(site, ada, bob):
    seen_ada, seen_bob = probe(ada), probe(bob)
    assert seen_ada["prefix"] == str(site["venv"])
    assert seen_bob["prefix"] == sys.prefix
    assert (seen_ada["user"], seen_bob["user"]) == ("kh-ada", "kh-bob")
    assert seen_ada["home"] == str(site["folder"] / "homes" / "ada")
    assert (seen_ada["environment"], seen_ada["profile"]) == ("analysis", "large")
    assert (seen_bob["environment"], seen_bob["profile"]) == ("default", "small")
    assert seen_bob["mem_limit"] == str(SMALL_MEMORY)
    assert seen_ada["data_dir"] == site["mount_path"]
    assert "kioskhub/bob" in seen_bob["cgroup"]


def test_data_mount_is_readable_and_really_read_only(site, bob):
    reply = bob.execute(
        "import os\n"
        f"print(open('{site['mount_path']}/beamline-sample.csv').readline().strip())\n"
        "print(sorted(os.listdir(os.path.expanduser('~/data'))))\n"
        "for target in (os.environ['KIOSKHUB_DATA_DIR'], os.path.expanduser('~/data')):\n"
        "    try:\n"
        "        open(os.path.join(target, 'mine.txt'), 'w')\n"
        "    except OSError as error:\n"
        "        print('refused', error.errno, error.strerror)\n"
    )
    lines = reply["stdout"].splitlines()
    assert lines[0] == "time_s,intensity,temperature_k"
    assert "beamline-sample.csv" in lines[1]
    assert lines[2:] == ["refused 30 Read-only file system"] * 2, reply
    assert not (site["folder"] / "data" / "mine.txt").exists()


def test_users_cannot_read_each_others_homes(site, ada, bob):
    (site["folder"] / "homes" / "ada" / "secret.txt").write_text("ada's notes")
    reply = bob.execute(
        "try:\n"
        f"    print(open('{site['folder']}/homes/ada/secret.txt').read())\n"
        "except PermissionError as error:\n"
        "    print('denied', error.errno)\n"
    )
    assert reply["stdout"].strip() == "denied 13", reply
    assert oct((site["folder"] / "homes" / "ada").stat().st_mode & 0o777) == "0o700"


def test_memory_limit_kills_the_cell_and_says_why(site, bob):
    reply = bob.execute('x = b"x" * (1024 * 2**20)', timeout=90)
    assert reply["died"], reply
    assert "memory limit" in reply["stderr"], reply
    assert "small" in reply["stderr"], reply
    after = bob.execute("print('still here')")
    assert after["stdout"].strip() == "still here"


def test_cpu_quota_holds_a_busy_loop_to_the_profile(bob):
    reply = bob.execute(
        "import time, resource\n"
        "start = time.monotonic(); t0 = time.process_time()\n"
        "while time.monotonic() - start < 3: pass\n"
        "print(round((time.process_time() - t0) / 3, 2))\n",
        timeout=60,
    )
    share = float(reply["stdout"])
    assert share <= 0.65, f"a 0.5-core profile used {share} of a core"


def test_groups_gate_profiles(site, bob):
    bob.stop_server()
    refused = bob.api("/users/bob/server", "POST", json={"profile": "large"})
    assert refused.status_code == 400
    assert "only for the groups physics" in refused.json()["message"]
    unknown = bob.api("/users/bob/server", "POST", json={"environment": "nope"})
    assert unknown.status_code == 400
    assert "Unknown environment 'nope'. Choose one of: default, analysis." in unknown.text
    gpu = bob.api("/users/bob/server", "POST", json={"profile": "gpu"})
    assert gpu.status_code == 400
    assert "needs 1 GPU(s), but this site has no NVIDIA GPU" in gpu.json()["message"]
    assert bob.spawn({"profile": "small"})[-1].get("ready")


def test_home_page_shows_the_choice_of_each_running_server(site, ada):
    page = ada.http.get(f"{site['hub'].url}/hub/home").content.decode()
    assert "Analysis · large" in page
    assert "kh-isolation-warning" not in page
