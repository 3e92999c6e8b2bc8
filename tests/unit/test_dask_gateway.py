"""Literal-expectation tests of Dask Gateway's place in KioskHub.

Site → the gateway's config, the hub's service settings, the servers' environment and the
Helm values (pure); then KioskHub's classes inside the gateway (options, limits, group
gate) on their own, and the spawner's call that stops a user's clusters.
"""

from __future__ import annotations

import asyncio
import json
import pwd
import socket
from pathlib import Path
from types import SimpleNamespace

import pytest
from dask_gateway_server.backends.base import Backend, PublicException
from dask_gateway_server.models import User
from tornado import web
from traitlets.config import Config

from kioskhub.hub.dask_gateway import (
    client_env,
    gateway_config,
    gateway_hub_settings,
    merge_settings,
    write_gateway_config,
)
from kioskhub.hub.dask_gateway_backend import (
    KioskHubAuthenticator,
    KioskLocalBackend,
    KioskSharedLocalBackend,
    ProfileOptions,
)
from kioskhub.hub.dask_gateway_kube import (
    kube_extra_config,
    kube_gateway_values,
    kube_jupyterhub_values,
)
from kioskhub.hub.jupyterhub_settings import jupyterhub_settings
from kioskhub.hub.schema.config_file import ConfigError, load_site
from kioskhub.hub.schema.site import Site
from kioskhub.hub.state_dir import Passwords
from kioskhub.spawner.dask_clusters import stop_user_clusters
from kioskhub.spawner.launch_spec import build_launch_spec

DASK = {
    "enabled": True,
    "groups": ["physics", "chemistry"],
    "idle_timeout": 600,
    "profiles": [{"name": "large", "worker_cores": 4, "worker_memory": "8G", "max_workers": 10}],
    "user_limits": {"max_clusters": 3, "max_cores": 40, "max_memory": "100G"},
}
SMALL = {
    "name": "small",
    "groups": [],
    "worker_cores": 1,
    "worker_memory": 2_000_000_000,
    "max_workers": 4,
    "idle_timeout": 600,
}
LARGE = {
    "name": "large",
    "groups": ["physics"],
    "worker_cores": 4,
    "worker_memory": 8_000_000_000,
    "max_workers": 10,
    "idle_timeout": 600,
}
ENV = {
    "DASK_GATEWAY__ADDRESS": "http://127.0.0.1:8082/services/dask-gateway",
    "DASK_GATEWAY__PUBLIC_ADDRESS": "http://127.0.0.1:9000/services/dask-gateway",
    "DASK_GATEWAY__PROXY_ADDRESS": "gateway://127.0.0.1:8083",
    "DASK_GATEWAY__AUTH__TYPE": "jupyterhub",
    "DASK_GATEWAY__CLUSTER__OPTIONS__PROFILE": "large",
    "DASK_LABEXTENSION__FACTORY__MODULE": "dask_gateway",
    "DASK_LABEXTENSION__FACTORY__CLASS": "GatewayCluster",
}


def dask_site(folder: Path, **dask) -> Site:
    return Site.model_validate(
        {
            "hub": {"url": "http://127.0.0.1:9000", "state_dir": "state"},
            "profiles": [
                {"name": "small", "default": True},
                {"name": "large", "cpu": 8, "memory": "32G", "groups": ["physics"]},
            ],
            "dask": {**DASK, **dask},
        },
        context={"base_dir": folder},
    )


# ---- site → config ----------------------------------------------------------------------


def test_gateway_config(tmp_path):
    config = gateway_config(dask_site(tmp_path), isolated=True, own_prefix=Path("/opt/kh"))

    assert config == {
        "DaskGateway": {
            "address": "127.0.0.1:8084",
            "backend_class": "kioskhub.hub.dask_gateway_backend.KioskLocalBackend",
            "authenticator_class": "kioskhub.hub.dask_gateway_backend.KioskHubAuthenticator",
            "log_level": "INFO",
        },
        "Proxy": {
            "address": "127.0.0.1:8082",
            "tcp_address": "127.0.0.1:8083",
            "prefix": "/services/dask-gateway",
        },
        "KioskHubAuthenticator": {"allowed_groups": ["physics", "chemistry"]},
        "KioskBackend": {
            "profiles": [SMALL, LARGE],
            "default_profile": "small",
            "max_clusters": 3,
            "max_cores": 40.0,
            "max_memory": 100_000_000_000,
            "clusters_directory": f"{tmp_path}/state/dask-gateway/clusters",
            "account_prefix": "kh-",
            "homes_directory": f"{tmp_path}/.kioskhub/homes",
        },
        "ClusterConfig": {
            "scheduler_cmd": [
                "/opt/kh/bin/dask",
                "scheduler",
                "--preload",
                "kioskhub.hub.dask_dashboard_guard",
            ],
            "worker_cmd": ["/opt/kh/bin/dask", "worker"],
            "scheduler_cores": 1,
            "scheduler_memory": 1_000_000_000,
            "idle_timeout": 600.0,
        },
    }


def test_without_isolation_clusters_run_as_the_gateways_account(tmp_path):
    config = gateway_config(dask_site(tmp_path), isolated=False, own_prefix=Path("/opt/kh"))

    assert config["DaskGateway"]["backend_class"] == (
        "kioskhub.hub.dask_gateway_backend.KioskSharedLocalBackend"
    )


def test_profile_entries_take_what_they_leave_out_from_the_workers_defaults(tmp_path):
    site = dask_site(
        tmp_path,
        workers={"worker_cores": 2, "worker_memory": "1G", "max_workers": 6},
        profiles=[{"name": "large", "idle_timeout": 60}],
    )

    assert site.dask.workers_for("large").model_dump() == {
        "worker_cores": 2,
        "worker_memory": 10**9,
        "max_workers": 6,
        "idle_timeout": 60,
    }
    assert site.dask.workers_for("small") == site.dask.workers


def test_hub_settings_run_the_gateway_as_a_service(tmp_path):
    site = dask_site(tmp_path)

    assert gateway_hub_settings(site, python="/opt/kh/bin/python") == {
        "JupyterHub": {
            "services": [
                {
                    "name": "dask-gateway",
                    "url": "http://127.0.0.1:8082",
                    "command": [
                        "/opt/kh/bin/python",
                        "-m",
                        "dask_gateway_server",
                        "--config",
                        f"{tmp_path}/state/dask-gateway/dask_gateway_config.json",
                    ],
                    "cwd": f"{tmp_path}/state/dask-gateway",
                    "display": False,
                }
            ],
            "load_roles": [
                {"name": "user", "scopes": ["self", "access:services!service=dask-gateway"]}
            ],
        },
        "KioskSpawner": {
            "server_token_scopes": [
                "users:activity!user",
                "access:servers!server",
                "access:services!service=dask-gateway",
            ]
        },
    }
    settings = jupyterhub_settings(site, Passwords("p" * 8, "a" * 32), "/path/chp")
    assert [s["name"] for s in settings["JupyterHub"]["services"]] == ["dask-gateway"]
    assert settings["KioskSpawner"]["site"] is site


def test_a_site_without_dask_gets_nothing(tmp_path):
    site = dask_site(tmp_path, enabled=False)

    assert gateway_hub_settings(site, python="python") == {}
    assert client_env(site, "small") == {}
    assert write_gateway_config(site) is None
    assert "DASK_GATEWAY__ADDRESS" not in build_launch_spec(site, "ada").env


def test_merge_settings_extends_lists_and_roles():
    base = {
        "JupyterHub": {
            "services": [{"name": "builder"}],
            "load_roles": [{"name": "user", "scopes": ["self", "access:services!service=builder"]}],
        },
    }
    extra = {
        "JupyterHub": {
            "services": [{"name": "gw"}],
            "load_roles": [
                {"name": "user", "scopes": ["self", "access:services!service=gw"]},
                {"name": "other", "scopes": ["read:users"]},
            ],
        },
        "KioskSpawner": {"server_token_scopes": ["x"]},
    }

    assert merge_settings(base, extra) == {
        "JupyterHub": {
            "services": [{"name": "builder"}, {"name": "gw"}],
            "load_roles": [
                {
                    "name": "user",
                    "scopes": [
                        "self",
                        "access:services!service=builder",
                        "access:services!service=gw",
                    ],
                },
                {"name": "other", "scopes": ["read:users"]},
            ],
        },
        "KioskSpawner": {"server_token_scopes": ["x"]},
    }
    assert base["JupyterHub"]["services"] == [{"name": "builder"}]


def test_servers_get_the_client_config_with_their_profile(tmp_path):
    site = dask_site(tmp_path)

    assert client_env(site, "large") == ENV
    spec = build_launch_spec(site, "grace", ["physics"], {"profile": "large"})
    assert {k: v for k, v in spec.env.items() if k.startswith("DASK_")} == ENV


def test_write_gateway_config(tmp_path):
    site = dask_site(tmp_path)

    path = write_gateway_config(site, euid=0)

    assert path == tmp_path / "state" / "dask-gateway" / "dask_gateway_config.json"
    written = json.loads(path.read_text())
    assert written["DaskGateway"]["backend_class"].endswith(".KioskLocalBackend")
    assert (path.parent / "clusters").stat().st_mode & 0o777 == 0o711


@pytest.mark.parametrize(
    ("dask", "message"),
    [
        (
            {"profiles": [{"name": "huge"}]},
            "dask.profiles: huge is not a resource profile; the profiles are: small, large",
        ),
        ({"ports": {"http": 9000, "api": 9000}}, "ports: http, scheduler_proxy and api must"),
        ({"user_limits": {"max_memory": "lots"}}, "expected a size like 512M, 2G or 4GiB"),
    ],
)
def test_config_mistakes_name_the_key(tmp_path, dask, message):
    (tmp_path / "kioskhub.yaml").write_text(
        json.dumps(
            {
                "profiles": [{"name": "small"}, {"name": "large"}],
                "dask": {"enabled": True, **dask},
            }
        )
    )

    with pytest.raises(ConfigError, match="dask") as error:
        load_site(tmp_path / "kioskhub.yaml")

    assert message in str(error.value)


# ---- Kubernetes -----------------------------------------------------------------------------


def test_kube_values_for_the_dask_gateway_chart(tmp_path):
    site = dask_site(tmp_path)

    values = kube_gateway_values(
        site,
        gateway_image="registry.example.org/kioskhub/hub:1.0",
        cluster_image="registry.example.org/kioskhub/default:1.0",
        hub_api_url="http://hub:8081/hub/api",
    )

    assert values == {
        "gateway": {
            "prefix": "/services/dask-gateway",
            "loglevel": "INFO",
            "image": {"name": "registry.example.org/kioskhub/hub", "tag": "1.0"},
            "auth": {
                "type": "jupyterhub",
                "jupyterhub": {
                    "apiUrl": "http://hub:8081/hub/api",
                    "apiTokenFromSecretName": "hub",
                    "apiTokenFromSecretKey": "hub.services.dask-gateway.apiToken",
                },
            },
            "backend": {
                "image": {"name": "registry.example.org/kioskhub/default", "tag": "1.0"},
                "scheduler": {
                    "cores": {"request": 1, "limit": 1},
                    "memory": {"request": 10**9, "limit": 10**9},
                },
                "worker": {
                    "cores": {"request": 1, "limit": 1},
                    "memory": {"request": 2 * 10**9, "limit": 2 * 10**9},
                },
            },
            "extraConfig": {"kioskhub": kube_extra_config(site)},
        },
        "traefik": {"service": {"type": "ClusterIP"}},
    }
    with pytest.raises(ValueError, match="registry/name:tag"):
        kube_gateway_values(site, gateway_image="hub", cluster_image="x:1", hub_api_url="")


def test_kube_extra_config_sets_options_and_groups(tmp_path):
    c = Config()

    exec(kube_extra_config(dask_site(tmp_path)), {"c": c})  # noqa: S102 (the chart runs it so)

    authenticator = "kioskhub.hub.dask_gateway_backend.KioskHubAuthenticator"
    assert c.DaskGateway.authenticator_class == authenticator
    assert c.KioskHubAuthenticator.allowed_groups == ["physics", "chemistry"]
    assert c.KubeClusterConfig.idle_timeout == 600.0
    options = c.KubeBackend.cluster_options
    assert (options.profiles, options.default) == ([SMALL, LARGE], "small")


def test_kube_hub_values_register_the_service(tmp_path):
    values = kube_jupyterhub_values(
        dask_site(tmp_path), gateway_url="http://traefik-dask-gateway", profile="large"
    )

    assert values == {
        "hub": {
            "services": {"dask-gateway": {"url": "http://traefik-dask-gateway", "display": False}},
            "loadRoles": {"user": {"scopes": ["self", "access:services!service=dask-gateway"]}},
            "config": {
                "Spawner": {
                    "server_token_scopes": [
                        "users:activity!user",
                        "access:servers!server",
                        "access:services!service=dask-gateway",
                    ]
                }
            },
        },
        "singleuser": {
            "extraEnv": {
                **ENV,
                "DASK_GATEWAY__ADDRESS": "http://traefik-dask-gateway/services/dask-gateway",
                "DASK_GATEWAY__PROXY_ADDRESS": "gateway://traefik-dask-gateway:80",
            }
        },
    }


# ---- inside the gateway -------------------------------------------------------------------


def test_options_offer_the_profiles_of_the_users_groups():
    options = ProfileOptions([SMALL, LARGE], "large")

    physicist = options(User("grace", groups=["physics"]))
    assert physicist.get_specification() == [
        {
            "field": "profile",
            "label": "Resource profile",
            "default": "large",
            "spec": {"type": "select", "options": ["small", "large"]},
        },
    ]
    chosen = physicist.parse_options({"profile": "large"})
    assert physicist.get_configuration(chosen, User("grace")) == {
        "worker_cores": 4,
        "worker_memory": 8_000_000_000,
        "cluster_max_workers": 10,
        "idle_timeout": 600.0,
    }
    others = options(User("ada"))
    assert others.get_specification()[0]["default"] == "small"
    with pytest.raises(ValueError, match="'large' is not a valid option for profile"):
        others.parse_options({"profile": "large"})
    with pytest.raises(ValueError, match="No resource profile is available to your groups"):
        nobody = ProfileOptions([LARGE], "large")(User("ada"))
        nobody.get_configuration(nobody.parse_options({}), User("ada"))


def test_the_gateway_refuses_users_outside_its_groups():
    auth = KioskHubAuthenticator(allowed_groups=["physics"])

    assert auth.refusal(User("grace", groups=["physics", "astro"])) is None
    assert auth.refusal(User("otto", groups=["astro"])) == (
        "Dask Gateway is only for members of the groups physics; otto is in astro. "
        "Ask the site's admins to add you."
    )
    assert KioskHubAuthenticator().refusal(User("otto")) is None


def cluster(name: str, count: int, **config) -> SimpleNamespace:
    defaults = {
        "scheduler_cores": 1,
        "scheduler_memory": 10**9,
        "worker_cores": 2,
        "worker_memory": 4 * 10**9,
    }
    return SimpleNamespace(name=name, username="ada", count=count, config={**defaults, **config})


def limited_backend(*clusters, **limits) -> KioskSharedLocalBackend:
    backend = KioskSharedLocalBackend(profiles=[SMALL], default_profile="small", **limits)
    backend.db = SimpleNamespace(list_clusters=lambda username: list(clusters))
    return backend


def test_a_clusters_home_is_the_users_home_on_this_site(tmp_path):
    backend = KioskLocalBackend(
        profiles=[SMALL], default_profile="small", homes_directory=str(tmp_path), account_prefix=""
    )
    # Before the user's first server there is no home on this site: passwd's entry.
    assert backend.home("root") == pwd.getpwnam("root").pw_dir
    (tmp_path / "root").mkdir()
    assert backend.home("root") == str(tmp_path / "root")


def test_limits_hold_across_a_users_clusters():
    other = cluster("other", 2)  # 1 + 2 × 2 = 5 cores, 9 GB
    backend = limited_backend(other, max_cores=8, max_memory=16 * 10**9)

    assert backend.limit_breach("ada", cluster("this", 0).config, 1) is None
    assert backend.limit_breach("ada", cluster("this", 0).config, 2) == (
        "5 cores, while your clusters may use 8 cores in all and your other clusters use 5"
    )
    backend.max_cores = None
    assert backend.limit_breach("ada", cluster("this", 0).config, 2) == (
        "9 GB of memory, while your clusters may use 16 GB in all and your other clusters use 9 GB"
    )


def test_a_scale_beyond_the_limits_is_refused_with_the_reason():
    this = cluster("this", 0)
    backend = limited_backend(this, cluster("other", 1), max_cores=6)

    with pytest.raises(
        PublicException,
        match=(
            "Scaling cluster this to 2 workers would use 5 cores, while your clusters may use 6 "
            "cores in all and your other clusters use 3. Scale to fewer workers, or shut down "
            "another cluster."
        ),
    ):
        asyncio.run(backend.forward_message_to_scheduler(this, {"op": "scale", "count": 2}))


def test_adaptive_scaling_is_held_within_the_limits(monkeypatch):
    this = cluster("this", 0)
    backend = limited_backend(this, cluster("other", 1), max_cores=8)
    sent = []

    async def forward(self, cluster, msg):
        sent.append(msg)

    monkeypatch.setattr(Backend, "forward_message_to_scheduler", forward)
    asyncio.run(
        backend.forward_message_to_scheduler(
            this, {"op": "adapt", "minimum": 4, "maximum": 10, "active": True}
        )
    )

    assert sent == [{"op": "adapt", "minimum": 2, "maximum": 2, "active": True}]


def test_a_cluster_beyond_max_clusters_is_refused():
    backend = limited_backend(cluster("one", 0), cluster("two", 0), max_clusters=2)

    with pytest.raises(
        PublicException,
        match=(r"You already run 2 Dask cluster\(s\), the most one user may run at once is 2"),
    ):
        asyncio.run(backend.start_cluster(User("ada"), {}))


# ---- the spawner stops a user's clusters ----------------------------------------------------


class FakeGateway:
    """The two routes of dask-gateway's API that the spawner uses, recording calls."""

    def __init__(self, names):
        self.names = names
        self.calls = []

    def app(self):
        gateway = self

        class Clusters(web.RequestHandler):
            def get(self):
                gateway.calls.append(("GET", self.request.headers["Authorization"]))
                self.write(json.dumps({n: {"name": n} for n in gateway.names}))

        class OneCluster(web.RequestHandler):
            def delete(self, name):
                gateway.calls.append(("DELETE", name))
                self.set_status(204)

        prefix = "/services/dask-gateway/api/v1/clusters/"
        return web.Application([(prefix, Clusters), (prefix + "([a-z0-9]+)", OneCluster)])


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_stop_user_clusters_deletes_each_with_the_servers_token(tmp_path):
    port = free_port()
    site = dask_site(tmp_path, ports={"http": port, "scheduler_proxy": 8083, "api": 8084})
    fake = FakeGateway(["b2", "a1"])

    async def scenario():
        server = fake.app().listen(port, address="127.0.0.1")
        try:
            return await stop_user_clusters(site, "server-token", "ada")
        finally:
            server.stop()

    assert asyncio.run(scenario()) == ["a1", "b2"]
    assert fake.calls == [("GET", "jupyterhub server-token"), ("DELETE", "a1"), ("DELETE", "b2")]


def test_stop_user_clusters_never_keeps_a_server_from_stopping(tmp_path, caplog):
    site = dask_site(tmp_path, ports={"http": free_port(), "scheduler_proxy": 8083, "api": 8084})

    assert asyncio.run(stop_user_clusters(site, "server-token", "ada")) == []
    assert "Could not stop the Dask clusters of ada" in caplog.text
    assert asyncio.run(stop_user_clusters(dask_site(tmp_path, enabled=False), "t", "ada")) == []
