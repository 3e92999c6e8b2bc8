"""The lab identity: claims and name service → LabIdentity, its refusals, and what the local
plan, the launcher and the Pod manifest make of it."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from kioskhub.hub.schema.auth import AuthSettings, IdentitySettings
from kioskhub.hub.schema.builder import BuilderSettings
from kioskhub.hub.schema.pods import PodSettings
from kioskhub.hub.schema.site import Site
from kioskhub.spawner.lab_identity import (
    IdentityError,
    LabIdentity,
    checked_identity,
    identity_from_claims,
    identity_from_nss,
    reserved_ranges,
    resolve_identity,
)
from kioskhub.spawner.launch_spec import ChoiceError, LaunchSpec
from kioskhub.spawner.local_accounts import server_account
from kioskhub.spawner.local_plan import Account, local_launch
from kioskhub.spawner.pod_manifest import PodTarget, build_pod
from kioskhub.spawner.podman_plan import own_home_volume_args
from tests.unit.test_pod_manifest import spec as pod_spec

CLAIMS = IdentitySettings(source="claims", gids_claim="gidNumbers")
RESERVED = reserved_ranges(BuilderSettings())
ADA = LabIdentity(uid=20001, gid=20000, supplementary_gids=(20100, 20200), name="ada")


def from_claims(claims, settings=CLAIMS):
    return identity_from_claims(claims, settings, "ada", RESERVED)


def test_claims_give_uid_gid_and_supplementary_groups():
    claims = {"uidNumber": 20001, "gidNumber": 20000, "gidNumbers": [20200, 20100, 20000, 20100]}
    assert from_claims(claims) == ADA


def test_system_and_reserved_supplementary_groups_are_left_out():
    claims = {
        "uidNumber": 20001,
        "gidNumber": 20000,
        "gidNumbers": [0, 6, 999, 1_600_000_001, 20100],
    }
    assert from_claims(claims).supplementary_gids == (20100,)


@pytest.mark.parametrize(
    "claims, message",
    [
        (None, "Your sign-in carries no lab identity (no 'uidNumber' and 'gidNumber' claims)"),
        ({"gidNumber": 20000}, "Your sign-in has no 'uidNumber' claim (your lab uid)"),
        ({"uidNumber": 20001}, "Your sign-in has no 'gidNumber' claim (your lab gid)"),
        (
            {"uidNumber": "20001", "gidNumber": 20000},
            "The claim 'uidNumber' of your sign-in must be a whole number, got '20001'",
        ),
        (
            {"uidNumber": True, "gidNumber": 20000},
            "The claim 'uidNumber' of your sign-in must be a whole number, got True",
        ),
        (
            {"uidNumber": 20001.0, "gidNumber": 20000},
            "The claim 'uidNumber' of your sign-in must be a whole number, got 20001.0",
        ),
        (
            {"uidNumber": 20001, "gidNumber": 20000, "gidNumbers": "20100"},
            "The claim 'gidNumbers' of your sign-in must be a list of group numbers, got '20100'",
        ),
        (
            {"uidNumber": 20001, "gidNumber": 20000, "gidNumbers": [20100, None]},
            "An entry of the claim 'gidNumbers' of your sign-in must be a whole number, got None",
        ),
        (
            {"uidNumber": 0, "gidNumber": 20000},
            "Your lab identity has uid 0, below 1000: ids below that are root and the "
            "machine's system accounts, which a server never runs as.",
        ),
        ({"uidNumber": 20001, "gidNumber": 999}, "Your lab identity has gid 999, below 1000"),
        ({"uidNumber": -5, "gidNumber": 20000}, "Your lab identity has uid -5, below 1000"),
        (
            {"uidNumber": 1_500_000_007, "gidNumber": 20000},
            "Your lab identity has uid 1500000007, which KioskHub reserves for builds",
        ),
        (
            {"uidNumber": 2**32 - 1, "gidNumber": 20000},
            "Your lab identity has uid 4294967295, above the largest id 4294967294",
        ),
    ],
)
def test_bad_claims_are_refused_with_a_message(claims, message):
    with pytest.raises(IdentityError) as refused:
        from_claims(claims)
    assert message in str(refused.value)
    assert isinstance(refused.value, ChoiceError), "refused on the spawner's 400 path"


def test_min_id_is_the_sites():
    settings = IdentitySettings(source="claims", min_id=50000)
    with pytest.raises(IdentityError, match="uid 20001, below 50000"):
        from_claims({"uidNumber": 20001, "gidNumber": 60000}, settings)


def test_name_service_gives_the_accounts_identity_and_refuses_root_and_strangers():
    settings = IdentitySettings(source="nss")
    with pytest.raises(IdentityError, match="Your lab identity has uid 0, below 1000"):
        identity_from_nss("root", settings)
    with pytest.raises(
        IdentityError,
        match=r"name service \(passwd, LDAP, SSSD\) has no account 'no-such-lab-user'",
    ):
        identity_from_nss("no-such-lab-user", settings)
    nobody = identity_from_nss("nobody", IdentitySettings(source="nss", min_id=1))
    assert (nobody.uid, nobody.name) == (65534, "nobody")


def test_checked_identity_drops_the_primary_group_from_the_supplementary_ones():
    assert checked_identity(3000, 3000, [3000, 3001], "x", 1000) == LabIdentity(
        3000, 3000, (3001,), "x"
    )


def site(**auth) -> Site:
    return Site.model_validate({"auth": auth})


def test_resolve_reads_the_auth_state_only_for_claims():
    async def auth_state():
        return {"oauth_user": {"uidNumber": 20001, "gidNumber": 20000}}

    async def no_auth_state():
        raise AssertionError("auth state read for a source that needs none")

    claims_site = site(identity={"source": "claims", "trust_shared_password": True})
    resolved = asyncio.run(resolve_identity(claims_site, "ada", auth_state))
    assert resolved == LabIdentity(20001, 20000, (), "ada")
    assert asyncio.run(resolve_identity(site(), "ada", no_auth_state)) is None

    async def empty():
        return None

    with pytest.raises(IdentityError, match="carries no lab identity"):
        asyncio.run(resolve_identity(claims_site, "ada", empty))


@pytest.mark.parametrize("source", ["claims", "nss"])
@pytest.mark.parametrize("username", ["ws-abc234-001", "rv-0a1b2c3d4e"])
def test_temporary_users_run_as_an_account_of_their_own_under_any_source(source, username):
    """Workshop participants and gallery reviewer seats never get a lab identity."""

    async def no_auth_state():
        raise AssertionError("a temporary user has no auth state to read")

    lab_site = site(identity={"source": source, "trust_shared_password": True})

    assert asyncio.run(resolve_identity(lab_site, username, no_auth_state)) is None


def test_claims_need_a_provider_that_can_give_them():
    with pytest.raises(ValidationError, match="GitLab releases no uid or gid claims"):
        AuthSettings.model_validate(
            {"type": "gitlab", "gitlab": {"client_id": "x"}, "identity": {"source": "claims"}}
        )
    trusted = {"source": "claims", "trust_shared_password": True}
    assert AuthSettings.model_validate({"identity": trusted}).identity.source == "claims"


@pytest.mark.parametrize(
    "auth",
    [
        {"identity": {"source": "nss"}},
        {
            "type": "oidc",
            "oidc": {"issuer": "https://login.example.org", "client_id": "x"},
            "also": ["shared-password"],
            "identity": {"source": "claims"},
        },
    ],
)
def test_the_shared_password_gives_no_identity_unless_the_site_trusts_it(auth):
    with pytest.raises(ValidationError, match="the shared password lets anyone who knows it"):
        AuthSettings.model_validate(auth)


def spec(**changes) -> LaunchSpec:
    """The Pod manifest tests' spec, for ada with her lab identity."""
    return pod_spec(**{"mounts": (), "identity": ADA, **changes})


def test_a_lab_identity_is_the_local_account_as_it_is():
    account = asyncio.run(server_account(Site(), spec()))
    assert account == Account("ada", 20001, 20000, (20100, 20200))


def test_local_plan_sets_exactly_the_identitys_groups():
    account = Account("ada", 20001, 20000, (20100, 20200))
    plan = local_launch(spec(), own_prefix=Path("/venv"), account=account)
    launcher = json.loads(plan.launcher_argv("/py")[3])
    assert (launcher["uid"], launcher["gid"], launcher["groups"]) == (20001, 20000, [20100, 20200])
    assert launcher["initgroups"] is None, "no name service lookup: there may be no entry"
    assert (plan.env["USER"], plan.env["HOME"]) == ("ada", "/srv/kioskhub/homes/ada")
    kh = json.loads(
        local_launch(
            spec(), own_prefix=Path("/venv"), account=Account("kh-ada", 999, 999)
        ).launcher_argv("/py")[3]
    )
    assert (kh["initgroups"], kh["groups"]) == ("kh-ada", [])


def test_the_launcher_becomes_the_identity_without_a_passwd_entry():
    assert os.geteuid() == 0, "this test needs root (the launcher drops privileges)"
    plan = {
        "binds": [],
        "cgroup_procs": [],
        "uid": 20001,
        "gid": 20000,
        "groups": [20100, 20200],
        "initgroups": None,
        "home": "/",
    }
    probe = "import os; print(os.getuid(), os.getgid(), sorted(os.getgroups()))"
    ran = subprocess.run(
        [
            sys.executable,
            "-m",
            "kioskhub.spawner.local_launcher",
            json.dumps(plan),
            "--",
            sys.executable,
            "-I",
            "-c",
            probe,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert ran.stdout.split("\n")[0] == "20001 20000 [20100, 20200]", ran.stderr


def test_pod_runs_as_the_identity_without_fs_group():
    target = PodTarget(pod_name="jupyter-ada", home_claim="claim-ada", image="lab/nb:1")
    pod = build_pod(spec(), PodSettings(), target)
    assert pod["spec"]["securityContext"] == {
        "runAsNonRoot": True,
        "seccompProfile": {"type": "RuntimeDefault"},
        "supplementalGroups": [20100, 20200],
    }
    assert pod["spec"]["containers"][0]["securityContext"] == {
        "runAsUser": 20001,
        "runAsGroup": 20000,
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
    }
    plain = build_pod(spec(identity=None), PodSettings(), target)
    assert plain["spec"]["securityContext"]["fsGroup"] == 100
    assert "supplementalGroups" not in plain["spec"]["securityContext"]


def test_a_new_home_volume_is_first_mounted_as_its_owner_where_no_image_has_files():
    assert own_home_volume_args("kh-1234abcd-home-ada", (20001, 20000), "lab/nb:1") == (
        "run", "--rm", "--pull", "never", "--network", "none", "--user", "20001:20000",
        "--cap-drop", "all", "--security-opt", "no-new-privileges", "--pids-limit", "16",
        "--memory", "64m", "--timeout", "60", "--entrypoint", "/bin/true",
        "--volume", "kh-1234abcd-home-ada:/kioskhub-home-volume", "lab/nb:1",
    )  # fmt: skip
