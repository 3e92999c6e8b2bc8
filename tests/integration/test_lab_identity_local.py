"""Lab identity on the local backend (``auth.identity.source: nss``): servers run as the
users' own accounts from the name service, and the central data's permissions decide.

Two accounts of the lab's directory (made with useradd, uids ≥ 40000) sign in with the
shared password; the data folder is root:<lab group> 0750, and only the group's member
reads it from a kernel of their server. An account with a system uid gets a clear refusal
and nothing is made for it.
"""

from __future__ import annotations

import pwd
import shutil

import pytest

from tests.conftest import SHARED_PASSWORD, open_folder
from tests.support.hub_process import start_hub, write_site_config
from tests.support.lab_accounts import (
    add_system_account,
    group_data_folder,
    identity_probe,
    make_directory,
    remove_directory,
    unique_tag,
)
from tests.support.user_session import signed_in

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def lab():
    tag = unique_tag()
    directory = make_directory(tag, members=("ada",), others=("bob",))
    add_system_account(directory, "svc", tag)
    yield directory
    remove_directory(directory)


@pytest.fixture(scope="module")
def site(lab):
    folder = open_folder("identity-local")
    closed = folder / "central"
    closed.mkdir()
    group_data_folder(closed / "beamline", lab.gid)
    config = write_site_config(
        folder,
        auth={
            "shared_password": SHARED_PASSWORD,
            "identity": {"source": "nss", "trust_shared_password": True},
        },
        data_mounts=[
            {
                "name": "beamline",
                "source": str(closed / "beamline"),
                "mount_path": str(folder / "mnt" / "beamline"),
                "read_only": True,
            }
        ],
    )
    hub = start_hub(config, folder / "hub.log")
    yield {"hub": hub, "folder": folder, "mount": folder / "mnt" / "beamline"}
    if hub.process.poll() is None:
        hub.stop()
    shutil.rmtree(folder, ignore_errors=True)


def started(site, account):
    user = signed_in(site["hub"].url, account.name, SHARED_PASSWORD)
    events = user.spawn()
    assert events[-1].get("ready"), (events, site["hub"].log_text()[-3000:])
    return user


@pytest.fixture(scope="module")
def ada(site, lab):
    return started(site, lab.accounts["ada"])


@pytest.fixture(scope="module")
def bob(site, lab):
    return started(site, lab.accounts["bob"])


def probe(user, folder) -> dict:
    return identity_probe(user, str(folder))


def test_each_server_runs_as_the_users_lab_account(site, lab, ada, bob):
    seen_ada, seen_bob = probe(ada, site["mount"]), probe(bob, site["mount"])
    ada_account, bob_account = lab.accounts["ada"], lab.accounts["bob"]
    assert (seen_ada["uid"], seen_ada["gid"]) == (ada_account.uid, ada_account.gid)
    assert (seen_bob["uid"], seen_bob["gid"]) == (bob_account.uid, bob_account.gid)
    assert lab.gid in seen_ada["groups"]
    assert lab.gid not in seen_bob["groups"]
    assert seen_ada["user"] == ada_account.name
    home = site["folder"] / "homes" / ada_account.name
    assert seen_ada["home"] == str(home)
    assert (home.stat().st_uid, home.stat().st_gid) == (ada_account.uid, ada_account.gid)
    for account in (ada_account, bob_account):
        with pytest.raises(KeyError):
            pwd.getpwnam(f"kh-{account.name}")


def test_only_the_lab_groups_member_reads_the_central_data(site, ada, bob):
    for folder in (site["mount"], site["folder"] / "homes" / ada.username / "beamline"):
        assert probe(ada, folder)["data"] == "beam current 42 mA\n"
    for folder in (site["mount"], site["folder"] / "homes" / bob.username / "beamline"):
        assert probe(bob, folder)["data"] == "PermissionError"


def test_a_system_account_gets_a_clear_refusal_and_nothing_is_made(site, lab):
    account = lab.accounts["svc"]
    user = signed_in(site["hub"].url, account.name, SHARED_PASSWORD)
    reply = user.api(f"/users/{account.name}/server", "POST", json={})
    assert reply.status_code == 400, reply.text
    assert reply.json()["message"] == (
        f"Your lab identity has uid {account.uid}, below 1000: ids below that are root and "
        "the machine's system accounts, which a server never runs as. Ask the site's "
        "admins to check your account in the directory."
    )
    assert user.api(f"/users/{account.name}").json()["servers"] == {}
    assert not (site["folder"] / "homes" / account.name).exists()
    with pytest.raises(KeyError):
        pwd.getpwnam(f"kh-{account.name}")


def test_a_name_the_directory_lacks_gets_a_clear_refusal(site):
    user = signed_in(site["hub"].url, "nobodyinthelab", SHARED_PASSWORD)
    reply = user.api("/users/nobodyinthelab/server", "POST", json={})
    assert reply.status_code == 400, reply.text
    assert "has no account 'nobodyinthelab'" in reply.json()["message"]
    assert not (site["folder"] / "homes" / "nobodyinthelab").exists()
