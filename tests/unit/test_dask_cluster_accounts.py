"""Whom a Dask cluster runs as: on a site with lab identities, the identity the spawner
recorded for the user's server (checked again), never what the user asks for; the kh-
account otherwise."""

from __future__ import annotations

import asyncio
import os
from types import SimpleNamespace

import pytest
from dask_gateway_server.backends.base import PublicException
from dask_gateway_server.models import User
from dask_gateway_server.utils import FrozenAttrDict

from kioskhub.hub.dask_cluster_accounts import DAMAGED_RECORD, NO_RECORD
from kioskhub.hub.dask_cluster_containers import ContainerProcess, run_arguments
from kioskhub.hub.dask_cluster_environments import ClusterEnvironments, KioskClusterConfig
from kioskhub.hub.dask_gateway_backend import KioskLocalBackend
from kioskhub.hub.schema.site import Site
from kioskhub.spawner.identity_record import record_path, write_record
from kioskhub.spawner.lab_identity import LabIdentity
from kioskhub.spawner.local_plan import Account
from tests.unit.test_dask_cluster_environments import PROFILE

ADA = LabIdentity(uid=20001, gid=20000, supplementary_gids=(20100, 20200), name="ada")


def site_with(tmp_path, source: str) -> Site:
    identity = {"source": source, "trust_shared_password": True}
    return Site.model_validate(
        {
            "hub": {"url": "http://127.0.0.1:9000", "state_dir": str(tmp_path / "state")},
            "home": {"root": str(tmp_path / "homes")},
            "auth": {"identity": identity} if source != "accounts" else {},
            "dask": {"enabled": True},
        }
    )


def gateway(site: Site) -> KioskLocalBackend:
    backend = KioskLocalBackend(
        profiles=[PROFILE],
        default_profile="small",
        homes_directory=str(site.home.root),
        api_url="http://127.0.0.1:8000/api",
    )
    backend.environments = ClusterEnvironments(site)
    return backend


def new_cluster(backend: KioskLocalBackend, username: str, options=None) -> KioskClusterConfig:
    """The config of ``username``'s new cluster, once the account it runs as is checked."""

    async def create():
        _options, config = await backend.process_cluster_options(User(username), options or {})
        await backend.check_account(username, config)
        return config

    return asyncio.run(create())


def cluster_of(username: str, config: KioskClusterConfig):
    return SimpleNamespace(
        username=username, name="c1", token="t", config=FrozenAttrDict(config.to_dict())
    )


def test_a_cluster_runs_as_the_identity_recorded_for_the_users_server(tmp_path):
    site = site_with(tmp_path, "claims")
    write_record(site.hub.state_dir, "ada", ADA)
    backend = gateway(site)

    config = new_cluster(backend, "ada")
    cluster = cluster_of("ada", config)

    assert config.run_as == {"name": "ada", "uid": 20001, "gid": 20000, "groups": [20100, 20200]}
    assert backend.runs_as(cluster) == Account("ada", 20001, 20000, (20100, 20200))
    env = backend.get_env(cluster)
    assert (env["USER"], env["LOGNAME"]) == ("ada", "ada")
    assert env["HOME"] == str(tmp_path / "homes" / "ada")


def test_without_a_record_the_user_is_told_to_start_their_server(tmp_path):
    backend = gateway(site_with(tmp_path, "nss"))

    with pytest.raises(PublicException) as refused:
        new_cluster(backend, "ada")
    assert str(refused.value) == NO_RECORD
    assert NO_RECORD.startswith(
        "Start your server first: your Dask clusters run as your server's identity"
    )


def test_a_record_is_checked_again_against_the_sites_rules(tmp_path):
    site = site_with(tmp_path, "claims")
    write_record(site.hub.state_dir, "ada", LabIdentity(500, 20000, (), "ada"))

    with pytest.raises(PublicException, match="Your lab identity has uid 500, below 1000"):
        new_cluster(gateway(site), "ada")


def test_a_record_others_could_have_written_is_not_believed(tmp_path):
    site = site_with(tmp_path, "claims")
    write_record(site.hub.state_dir, "ada", ADA)
    os.chmod(record_path(site.hub.state_dir, "ada"), 0o666)

    with pytest.raises(PublicException) as refused:
        new_cluster(gateway(site), "ada")
    assert str(refused.value) == DAMAGED_RECORD


def test_a_user_cannot_choose_the_identity_through_cluster_options(tmp_path):
    site = site_with(tmp_path, "claims")
    write_record(site.hub.state_dir, "ada", ADA)
    root = {"name": "root", "uid": 0, "gid": 0, "groups": [0]}

    with pytest.raises(PublicException, match=r"Unknown fields \['run_as'\]"):
        new_cluster(gateway(site), "ada", {"run_as": root})
    config = new_cluster(gateway(site), "ada", {"profile": "small"})
    assert config.run_as["uid"] == 20001


def test_on_an_accounts_site_a_record_is_ignored_and_the_kh_account_needed(tmp_path):
    site = site_with(tmp_path, "accounts")
    write_record(site.hub.state_dir, "nobodyhere", ADA)

    with pytest.raises(PublicException, match="The system account kh-nobodyhere does not exist"):
        new_cluster(gateway(site), "nobodyhere")


def test_a_container_of_a_lab_identity_gets_each_supplementary_group():
    process = ContainerProcess(
        gateway="/g",
        cluster="c1",
        process="scheduler",
        image="lab:1",
        command=("python",),
        env=(),
        uid=20001,
        gid=20000,
        workdir="/g/c1",
        guard="/guard.py",
        memory=1,
        cores=1,
        pids=1,
        groups=(20100, 20200),
    )

    arguments = run_arguments(process)
    start = arguments.index("--user=20001:20000")
    assert arguments[start : start + 4] == [
        "--user=20001:20000",
        "--group-add=20100",
        "--group-add=20200",
        "--cap-drop=all",
    ]
