"""Lab identity in podman pods (``auth.identity.source: claims``): each pod runs as the uid,
gid and supplementary groups of the user's claims, and the central data's permissions decide.

The claims are what an admin sets in each user's auth state through the REST API (where
an OIDC provider would put its userinfo: ``auth_state.oauth_user``). The data folder is
root:<lab gid> 0750; only the user whose claims list that gid reads it from a kernel in
their pod. A uid of 0, a missing claim and a claim of the wrong type each get a clear
message, and no pod, volume or home folder is made.
"""

from __future__ import annotations

import json
import shutil

import pytest

from kioskhub.spawner.podman_plan import hub_tag
from tests.conftest import SHARED_PASSWORD, open_folder
from tests.support.hub_process import start_hub, write_site_config
from tests.support.lab_accounts import free_ids, group_data_folder, identity_probe, unique_tag
from tests.support.podman import (
    build_base_image,
    podman,
    pods_with_label,
    remove_pods_with_label,
    remove_volumes_with_prefix,
)
from tests.support.user_session import UserSession, signed_in

pytestmark = pytest.mark.integration

TAG = unique_tag()
LAB_GID, ADA_UID, BOB_UID = free_ids(3, 40000, 60000)


@pytest.fixture(scope="module")
def site():
    build_base_image()
    folder = open_folder("identity-pods")
    group_data_folder(folder / "central" / "beamline", LAB_GID)
    config = write_site_config(
        folder,
        hub={"cleanup_servers": False},
        auth={
            "shared_password": SHARED_PASSWORD,
            "identity": {
                "source": "claims",
                "gids_claim": "gidNumbers",
                "trust_shared_password": True,
            },
        },
        spawner={"backend": "podman", "start_timeout": 90},
        data_mounts=[
            {
                "name": "beamline",
                "source": str(folder / "central" / "beamline"),
                "mount_path": "/beamline",
                "read_only": True,
            }
        ],
    )
    tag = hub_tag(folder / "state")
    hub = start_hub(config, folder / "hub.log")
    secrets = json.loads((folder / "state" / "secrets.json").read_text())
    admin = UserSession(hub.url, "admin")
    assert admin.login(secrets["admin_password"]).status_code == 200
    admin.request_token()
    state = {"hub": hub, "folder": folder, "tag": tag, "admin": admin}
    yield state
    for name in ("ada", "bob"):
        admin.api(f"/users/{name}{TAG}/server", "DELETE")
    if hub.process.poll() is None:
        hub.stop()
    remove_pods_with_label(f"kioskhub/hub={tag}")
    remove_volumes_with_prefix(f"kh-{tag}-")
    shutil.rmtree(folder, ignore_errors=True)


def with_claims(site, short: str, claims: dict) -> UserSession:
    """User ``<short><TAG>`` signed in, with ``claims`` set by the admin in their auth state."""
    name = f"{short}{TAG}"
    user = signed_in(site["hub"].url, name, SHARED_PASSWORD)
    reply = site["admin"].api(
        f"/users/{name}", "PATCH", json={"auth_state": {"oauth_user": claims}}
    )
    assert reply.status_code == 200, reply.text
    return user


def started(site, user: UserSession) -> UserSession:
    events = user.spawn(timeout=150)
    assert events[-1].get("ready"), (events, site["hub"].log_text()[-3000:])
    return user


@pytest.fixture(scope="module")
def ada(site):
    claims = {"uidNumber": ADA_UID, "gidNumber": ADA_UID, "gidNumbers": [LAB_GID, 0, 27]}
    return started(site, with_claims(site, "ada", claims))


@pytest.fixture(scope="module")
def bob(site):
    return started(site, with_claims(site, "bob", {"uidNumber": BOB_UID, "gidNumber": BOB_UID}))


def probe(user: UserSession) -> dict:
    return identity_probe(user, "/beamline")


def test_each_pod_runs_as_the_users_claimed_identity(site, ada, bob):
    seen_ada, seen_bob = probe(ada), probe(bob)
    assert (seen_ada["uid"], seen_ada["gid"]) == (ADA_UID, ADA_UID)
    assert (seen_bob["uid"], seen_bob["gid"]) == (BOB_UID, BOB_UID)
    assert LAB_GID in seen_ada["groups"]
    assert 0 not in seen_ada["groups"] and 27 not in seen_ada["groups"], "system gids left out"
    assert LAB_GID not in seen_bob["groups"]
    assert seen_ada["home_writable"] and seen_bob["home_writable"]
    home = site["folder"] / "homes" / f"ada{TAG}"
    assert (home.stat().st_uid, home.stat().st_gid) == (ADA_UID, ADA_UID)


def test_only_the_claimed_group_member_reads_the_central_data(site, ada, bob):
    assert probe(ada)["data"] == "beam current 42 mA\n"
    assert probe(bob)["data"] == "PermissionError"


@pytest.mark.parametrize(
    "short, claims, message",
    [
        (
            "root",
            {"uidNumber": 0, "gidNumber": 0},
            "Your lab identity has uid 0, below 1000: ids below that are root and the "
            "machine's system accounts, which a server never runs as.",
        ),
        ("low", {"uidNumber": 999, "gidNumber": 45000}, "Your lab identity has uid 999"),
        ("nouid", {"gidNumber": 45000}, "Your sign-in has no 'uidNumber' claim (your lab uid)"),
        (
            "text",
            {"uidNumber": "45001", "gidNumber": 45000},
            "The claim 'uidNumber' of your sign-in must be a whole number, got '45001'",
        ),
    ],
)
def test_an_invalid_identity_gets_a_clear_message_and_no_pod(site, short, claims, message):
    user = with_claims(site, short, claims)
    reply = user.api(f"/users/{user.username}/server", "POST", json={})
    assert reply.status_code == 400, reply.text
    assert message in reply.json()["message"]
    assert user.api(f"/users/{user.username}").json()["servers"] == {}
    assert pods_with_label(f"kioskhub/user={user.username}") == []
    volumes = podman("volume", "ls", "--format", "{{.Name}}").stdout.split()
    assert f"kh-{site['tag']}-home-{user.username}" not in volumes
    assert not (site["folder"] / "homes" / user.username).exists()
