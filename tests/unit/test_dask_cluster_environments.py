"""The environment a Dask cluster runs in: only one its user may launch, with that venv's Python.

The gateway's resolver on a site config with a shared venv, a group-only venv and an image,
plus a catalog reader that offers one user's own venv to that user alone (as the build
catalog does); then the backend's commands and environment for a cluster in a venv.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from types import SimpleNamespace

import dask.config
import pytest
from dask_gateway_server.backends.base import PublicException
from dask_gateway_server.models import User
from dask_gateway_server.utils import FrozenAttrDict

from kioskhub.hub import dask_dashboard_guard
from kioskhub.hub.dask_cluster_environments import (
    OWN_ENVIRONMENT,
    ClusterEnvironment,
    ClusterEnvironments,
)
from kioskhub.hub.dask_gateway_backend import KioskSharedLocalBackend
from kioskhub.hub.schema.choices import Environment
from kioskhub.hub.schema.dask import client_env
from kioskhub.hub.schema.site import Site

PROFILE = {
    "name": "small",
    "groups": [],
    "worker_cores": 1,
    "worker_memory": 10**9,
    "max_workers": 2,
    "idle_timeout": 60,
}


def make_venv(folder: Path, with_dask: bool = True) -> Path:
    (folder / "bin").mkdir(parents=True)
    if with_dask:
        (folder / "bin" / "dask").write_text("#!/bin/sh\n")
    return folder


def make_site(folder: Path) -> Site:
    return Site.model_validate(
        {
            "hub": {"url": "http://127.0.0.1:9000", "state_dir": "state"},
            "environments": [
                {"name": "default", "default": True},
                {"name": "shared", "kind": "venv", "path": str(make_venv(folder / "shared"))},
                {
                    "name": "physics",
                    "kind": "venv",
                    "path": str(make_venv(folder / "physics")),
                    "groups": ["physics"],
                },
                {"name": "old", "kind": "venv", "path": str(make_venv(folder / "old", False))},
                {"name": "lab-image", "kind": "image", "image": "registry.example/lab:1"},
            ],
            "dask": {"enabled": True},
        },
        context={"base_dir": folder},
    )


def catalog_of(owner: str, venv: Path):
    """What the build catalog offers: the site's environments, plus ``owner``'s own venv to
    ``owner`` alone."""

    async def launchable(site: Site, username: str, groups) -> tuple[Environment, ...]:
        own = Environment(name=f"{owner}.analysis", kind="venv", path=venv)
        return (*site.environments, *((own,) if username == owner else ()))

    return launchable


def resolve(environments: ClusterEnvironments, user: str, name: str, groups=()):
    return asyncio.run(environments.resolve(user, groups, name))


def test_a_cluster_runs_in_an_environment_its_user_may_launch(tmp_path):
    site = make_site(tmp_path)
    ada_venv = make_venv(tmp_path / "ada-analysis")
    environments = ClusterEnvironments(site, catalog_of("ada", ada_venv))

    assert resolve(environments, "bob", "") == OWN_ENVIRONMENT
    assert resolve(environments, "bob", "default") == ClusterEnvironment("default")
    assert resolve(environments, "bob", "shared") == ClusterEnvironment(
        "shared", tmp_path / "shared"
    )
    assert resolve(environments, "bob", "physics", ["physics"]).prefix == tmp_path / "physics"
    assert resolve(environments, "ada", "ada.analysis") == ClusterEnvironment(
        "ada.analysis", ada_venv
    )


@pytest.mark.parametrize(
    ("name", "groups", "message"),
    [
        (
            "ada.analysis",
            (),
            "A Dask cluster runs in an environment you may launch. Unknown environment "
            "'ada.analysis'. Choose one of: default, shared, old, lab-image.",
        ),
        (
            "physics",
            ("chemistry",),
            "A Dask cluster runs in an environment you may launch. The environment 'physics' "
            "is only for the groups physics; you are in chemistry.",
        ),
        ("/srv/environments/abc123", (), "Unknown environment '/srv/environments/abc123'"),
        ("old", (), "The environment 'old' has no Dask (it was built before KioskHub put Dask"),
    ],
)
def test_other_environments_are_refused_with_the_reason(tmp_path, name, groups, message):
    environments = ClusterEnvironments(
        make_site(tmp_path), catalog_of("ada", make_venv(tmp_path / "ada-analysis"))
    )

    with pytest.raises(PublicException) as refused:
        resolve(environments, "bob", name, groups)

    assert message in str(refused.value)


def test_a_server_in_an_image_gets_clusters_in_kiosk_hubs_own_environment(tmp_path):
    environments = ClusterEnvironments(make_site(tmp_path))

    assert resolve(environments, "bob", "lab-image") == ClusterEnvironment("lab-image")


def test_a_gateway_without_the_site_config_runs_only_its_own_environment():
    backend = KioskSharedLocalBackend(profiles=[PROFILE], default_profile="small")

    with pytest.raises(PublicException, match="runs clusters only in KioskHub's own"):
        asyncio.run(backend.cluster_environment(User("bob"), "shared"))
    assert asyncio.run(backend.cluster_environment(User("bob"), "")) == OWN_ENVIRONMENT


def test_a_cluster_in_a_venv_runs_that_venvs_python_and_sees_that_venv(tmp_path, monkeypatch):
    backend = KioskSharedLocalBackend(
        profiles=[PROFILE], default_profile="small", api_url="http://127.0.0.1:1/api"
    )
    backend.environments = ClusterEnvironments(make_site(tmp_path))
    python = str(tmp_path / "shared" / "bin" / "python")

    options, config = asyncio.run(
        backend.process_cluster_options(User("bob"), {"environment": "shared"})
    )

    assert options == {"profile": "small", "environment": "shared"}
    assert config.scheduler_cmd == [
        python,
        "-m",
        "dask",
        "scheduler",
        "--preload",
        dask_dashboard_guard.__file__,
    ]
    assert config.worker_cmd == [python, "-m", "dask", "worker"]
    assert config.environment_prefix == str(tmp_path / "shared")
    monkeypatch.setenv("PYTHONPATH", "/opt/kioskhub/lib")
    cluster = SimpleNamespace(
        config=FrozenAttrDict(config.to_dict()),
        name="c1",
        token="t",
        username=os.environ.get("USER", "root"),
    )
    env = backend.get_env(cluster)
    assert env["PATH"] == f"{tmp_path}/shared/bin:/usr/local/bin:/usr/bin:/bin"
    assert env["VIRTUAL_ENV"] == str(tmp_path / "shared")
    assert "PYTHONPATH" not in env


def test_own_environment_clusters_keep_the_configured_commands(tmp_path):
    backend = KioskSharedLocalBackend(profiles=[PROFILE], default_profile="small")
    backend.environments = ClusterEnvironments(make_site(tmp_path))

    _options, config = asyncio.run(
        backend.process_cluster_options(User("bob"), {"environment": "default"})
    )

    assert config.scheduler_cmd == ["dask-scheduler"] and config.environment_prefix == ""


def test_servers_name_their_environment_so_that_dask_reads_back_a_string(tmp_path):
    site = make_site(tmp_path).model_copy(
        update={"environments": (Environment(name="2024", default=True),)}
    )
    env = client_env(site, "small", environment="2024")

    options = dask.config.collect_env(
        {k: v for k, v in env.items() if k.startswith("DASK_GATEWAY__CLUSTER")}
    )
    assert options == {
        "gateway": {"cluster": {"options": {"profile": "small", "environment": "2024"}}}
    }
