"""A workshop on the podman backend, end to end: a participant joins through the link, their
server is a pod, their kernel writes into the materials folder and plants links to another
participant's home (a host path, which is only text inside the pod); the teacher collects
the work, then the ``workshop-schedule`` service expires the event: the seat's home is
emptied as the pods' account and removed, with podman's volume of it, no system account is
looked for, and the other home, which belongs to the same pods' account, is untouched.

The other home is a stand-in made by the test under the site's folder in /tmp.
"""

from __future__ import annotations

import io
import json
import os
import tarfile
import time

import pytest

from kioskhub.hub import workshop_store as store
from kioskhub.hub.workshop_collect import collections_folder
from kioskhub.spawner.podman_plan import home_claim_name, hub_tag
from tests.conftest import SHARED_PASSWORD, open_folder
from tests.integration.test_dask_gateway import wait_until
from tests.integration.test_workshop_expiry import ADMIN_PASSWORD, join, started
from tests.support.hub_process import remove_site_folder, start_hub, write_site_config
from tests.support.podman import (
    build_base_image,
    podman,
    remove_pods_with_label,
    remove_volumes_with_prefix,
)
from tests.support.user_session import signed_in

pytestmark = pytest.mark.integration

EVERY = 5

PLANT = """
import json, os, pathlib
home = pathlib.Path.home()
(home / "materials").mkdir(exist_ok=True)
(home / "materials" / "answer.py").write_text("print(42)  # my edit")
os.symlink({secret!r}, home / "materials" / "neighbour-secret")
os.symlink({neighbour!r}, home / "neighbour-home")
print(json.dumps({{"uid": os.getuid(), "home": str(home)}}))
"""


@pytest.fixture(scope="module")
def site():
    build_base_image()
    folder = open_folder("workshop-podman")
    (folder / "data").mkdir()
    config = write_site_config(
        folder,
        auth={"shared_password": SHARED_PASSWORD, "admin_password": ADMIN_PASSWORD},
        spawner={"backend": "podman", "start_timeout": 90},
        data_mounts=[{"name": "data", "source": "data", "mount_path": "/data"}],
        workshops={"enabled": True, "schedule_every": EVERY, "prewarm_seats": 0},
    )
    tag = hub_tag(folder / "state")
    hub = start_hub(config, folder / "hub.log")
    yield {"hub": hub, "folder": folder}
    if hub.process.poll() is None:
        hub.stop()
    remove_pods_with_label(f"kioskhub/hub={tag}")
    remove_volumes_with_prefix(f"kh-{tag}-")
    remove_site_folder(folder)


def test_a_podman_participant_joins_writes_is_collected_and_expires(site):
    hub, folder = site["hub"], site["folder"]
    admin = signed_in(hub.url, "admin", ADMIN_PASSWORD)
    token = admin.request_token()
    path = store.database(folder / "state")
    now = time.time()
    event = store.Event(
        "pwk234", "Pods 101", "admin", "default", "small", "", "main", 5,
        now - 60, now + 7200, 0.0, store.new_code(), now,
    )  # fmt: skip
    store.create_event(path, event)
    joined = join(hub.url, event.code, "Ada")
    assert joined.status_code == 302, joined.text[-2000:]
    seat = store.participants(path, "pwk234")[0]
    participant = started(hub.url, seat.username, token)

    homes = folder / "homes"
    seat_home = homes / seat.username
    pods = os.stat(seat_home)
    assert pods.st_uid != 0 and seat_home.is_dir()
    # Another participant's home, of the same pods' account (a stand-in).
    neighbour = homes / "ws-oth234-001"
    (neighbour / "materials").mkdir(parents=True)
    (neighbour / "materials" / "secret.txt").write_text("the neighbour's work")
    for entry in (neighbour, neighbour / "materials", neighbour / "materials" / "secret.txt"):
        os.chown(entry, pods.st_uid, pods.st_gid)
    neighbour.chmod(0o700)

    reply = participant.execute(
        PLANT.format(secret=str(neighbour / "materials" / "secret.txt"), neighbour=str(neighbour))
    )
    assert reply["error"] is None, reply
    inside = json.loads(reply["stdout"])
    assert inside["uid"] == pods.st_uid
    assert (seat_home / "materials" / "answer.py").read_text() == "print(42)  # my edit"

    collected = hub.api("/workshops/pwk234/collections", token, "POST")
    assert collected.status_code == 201, collected.text
    line = collected.json()["manifest"]["participants"][0]
    assert line["username"] == seat.username and line["error"] is None, line
    assert line["files"] == 1
    assert line["links"] == [
        {"name": "materials/neighbour-secret", "target": str(neighbour / "materials/secret.txt")}
    ]
    archive = collections_folder(folder / "state", "pwk234") / collected.json()["name"]
    with tarfile.open(archive) as opened:
        files = {m.name: opened.extractfile(m).read() for m in opened if m.isreg()}
    assert files[f"{seat.username}/materials/answer.py"] == b"print(42)  # my edit"
    assert b"the neighbour's work" not in b"".join(files.values())

    volume = home_claim_name(seat.username, hub_tag(folder / "state"))
    assert podman("volume", "exists", volume, check=False).returncode == 0
    store.update_event(path, "pwk234", start=now - 7200, end=now - 60)
    wait_until(
        lambda: store.get_event(path, "pwk234").expired is not None,
        EVERY * 6 + 90,
        f"the event did not expire:\n{hub.log_text()[-3000:]}",
    )
    assert hub.api(f"/users/{seat.username}", token).status_code == 404
    assert not os.path.lexists(seat_home)
    assert podman("volume", "exists", volume, check=False).returncode == 1
    assert (neighbour / "materials" / "secret.txt").read_text() == "the neighbour's work"
    assert os.stat(neighbour).st_uid == pods.st_uid
    log = hub.log_text()
    assert f"removed the home folder {seat_home}" in log
    assert f"kh-{seat.username}" not in log and "is left" not in log
    automatic = [
        c for c in os.listdir(collections_folder(folder / "state", "pwk234")) if c.endswith("gz")
    ]
    assert len(automatic) == 2  # the teacher's and expiry's
    with tarfile.open(collections_folder(folder / "state", "pwk234") / max(automatic)) as last:
        manifest = json.load(io.BytesIO(last.extractfile("manifest.json").read()))
    assert manifest["participants"][0]["files"] == 1
