"""OIDC sign-in with lab identity from the provider's claims (``auth.identity.source:
claims``), end to end: the provider's ``uidNumber``/``gidNumber`` decide whom each server
runs as, and a 0750 data folder of the lab's group is read only by its member.
"""

from __future__ import annotations

import shutil

import pytest

from kioskhub.hub.sample_data import write_sample_data
from tests.conftest import open_folder
from tests.integration.test_oidc_sign_in import provider_sign_in
from tests.support.lab_accounts import group_data_folder, identity_probe
from tests.support.oidc_provider import USERS, hub_with_client_secret, oidc_site_config
from tests.support.user_session import UserSession

pytestmark = pytest.mark.integration

LAB_GID = USERS["ada-oidc"]["gidNumber"]


@pytest.fixture(scope="module")
def site(oidc_provider_factory):
    folder = open_folder("oidc-identity")
    write_sample_data(folder / "data")
    closed = folder / "central"
    closed.mkdir(mode=0o700)
    group_data_folder(closed / "beamline", LAB_GID)
    config = oidc_site_config(
        folder,
        oidc_provider_factory,
        allowed_groups=("physics", "chemistry"),
        data_mounts=[
            {
                "name": "beamline",
                "source": str(closed / "beamline"),
                "mount_path": str(folder / "mnt" / "beamline"),
                "read_only": True,
            }
        ],
        identity={"source": "claims", "trust_shared_password": True},
    )
    with hub_with_client_secret(config, folder / "hub.log") as hub:
        yield {"hub": hub, "folder": folder, "mount": folder / "mnt" / "beamline"}
    shutil.rmtree(folder, ignore_errors=True)


def started(site, login: str) -> UserSession:
    """``login`` signed in at the provider's own page, holding a token, server started."""
    user = UserSession(site["hub"].url, USERS[login]["preferred_username"])
    reply = provider_sign_in(site["hub"].url, login, user.http)
    assert reply.ok and "/hub/" in reply.url, (reply.status_code, reply.text[:500])
    user.request_token()
    events = user.spawn()
    assert events[-1].get("ready"), (events, site["hub"].log_text()[-3000:])
    return user


def test_servers_run_as_the_providers_uid_and_gid_and_the_data_decides(site):
    ada, grace = started(site, "ada-oidc"), started(site, "grace-oidc")

    seen_ada = identity_probe(ada, str(site["mount"]))
    seen_grace = identity_probe(grace, str(site["mount"]))

    assert (seen_ada["uid"], seen_ada["gid"]) == (51001, 51000)
    assert (seen_grace["uid"], seen_grace["gid"]) == (51002, 51002)
    assert seen_ada["data"] == "beam current 42 mA\n"
    assert seen_grace["data"] == "PermissionError"
    home = site["folder"] / "homes" / "ada-oidc"
    assert (home.stat().st_uid, home.stat().st_gid) == (51001, 51000)
