"""Literal-expectation tests of Dask Gateway's place in KioskHub.

Site → the gateway's config, the hub's service settings, the servers' environment and the
Helm values (pure); then KioskHub's classes inside the gateway (options, limits, group
gate) on their own, and the spawner's call that stops a user's clusters.
"""

from __future__ import annotations

import asyncio
import json
import os
import pwd
from pathlib import Path
from types import SimpleNamespace

import aiohttp
import pytest
from aiohttp import web as aiohttp_web
from dask_gateway_server.backends.base import Backend, PublicException
from dask_gateway_server.models import User
from distributed.http.routing import RoutingApplication
from tornado import web, websocket
from tornado import web as tornado_web
from traitlets.config import Config

from kioskhub.hub.dask_cluster_cgroups import group_name, process_limits
from kioskhub.hub.dask_cluster_options import ProfileOptions
from kioskhub.hub.dask_dashboard_guard import (
    DASHBOARD_KEY_HEADER,
    REFUSAL,
    dashboard_key,
    guard,
)
from kioskhub.hub.dask_dashboard_login import NOT_SIGNED_IN
from kioskhub.hub.dask_dashboard_proxy import add_dashboard_routes, forwarded_headers
from kioskhub.hub.dask_gateway import (
    gateway_config,
    gateway_hub_settings,
    merge_settings,
    write_gateway_config,
)
from kioskhub.hub.dask_gateway_backend import (
    KioskHubAuthenticator,
    KioskLocalBackend,
    KioskSharedLocalBackend,
    open_log,
)
from kioskhub.hub.dask_gateway_kube import (
    kube_extra_config,
    kube_gateway_values,
    kube_jupyterhub_values,
)
from kioskhub.hub.jupyterhub_settings import jupyterhub_settings
from kioskhub.hub.schema.config_file import ConfigError, load_site
from kioskhub.hub.schema.dask import client_env
from kioskhub.hub.schema.site import Site
from kioskhub.hub.state_dir import Passwords
from kioskhub.spawner.dask_clusters import stop_user_clusters
from kioskhub.spawner.launch_spec import build_launch_spec
from tests.support.hub_process import free_port

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
    "DASK_GATEWAY__CLUSTER__OPTIONS__PROFILE": "'large'",
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
            "site_config": "",
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
                    "oauth_client_id": "service-dask-gateway",
                    "oauth_redirect_uri": "/services/dask-gateway/oauth_callback",
                    "oauth_client_allowed_scopes": [],
                    "oauth_no_confirm": True,
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
    assert {k: v for k, v in spec.env.items() if k.startswith("DASK_")} == {
        **ENV,
        "DASK_GATEWAY__CLUSTER__OPTIONS__ENVIRONMENT": "'default'",
    }


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
        {
            "field": "environment",
            "label": "Environment",
            "default": "",
            "spec": {"type": "string"},
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


# ---- dashboards: the key on the scheduler's port, the owner through the gateway ---------------


class DashboardPage(tornado_web.RequestHandler):
    def get(self):
        self.write(f"dashboard {self.request.path}?{self.request.query}")


class EchoSocket(websocket.WebSocketHandler):
    def on_message(self, message):
        self.write_message(f"echo {message}")


def guarded_dashboard(key: str) -> RoutingApplication:
    """distributed's dashboard application, with a page in a sub-application as bokeh's."""
    application = RoutingApplication([(r"/status", DashboardPage)])
    application.add_application(tornado_web.Application([(r"/status/ws", EchoSocket)]))
    guard(application, key)
    return application


def test_dashboard_keys_differ_per_cluster():
    assert dashboard_key("token-a") == dashboard_key("token-a")
    assert dashboard_key("token-a") != dashboard_key("token-b")
    assert len(dashboard_key("token-a")) == 64


def test_the_scheduler_dashboard_refuses_requests_without_the_clusters_key():
    key = dashboard_key("cluster-token")

    async def scenario():
        port = free_port()
        server = guarded_dashboard(key).listen(port, address="127.0.0.1")
        try:
            async with aiohttp.ClientSession() as session:
                replies = []
                for headers in ({}, {DASHBOARD_KEY_HEADER: "guess"}, {DASHBOARD_KEY_HEADER: key}):
                    async with session.get(
                        f"http://127.0.0.1:{port}/status", headers=headers
                    ) as reply:
                        replies.append((reply.status, await reply.text()))
                with pytest.raises(aiohttp.WSServerHandshakeError, match="403"):
                    await session.ws_connect(f"http://127.0.0.1:{port}/status/ws")
                return replies
        finally:
            server.stop()

    assert asyncio.run(scenario()) == [
        (403, REFUSAL + "\n"),
        (403, REFUSAL + "\n"),
        (200, "dashboard /status?"),
    ]


class TokensOfUsers(KioskHubAuthenticator):
    """Knows two tokens, as the hub would: 'ada-token' is ada's, 'otto-token' is otto's."""

    async def authenticate(self, request):
        users = {"ada-token": User("ada"), "otto-token": User("otto")}
        token = self.get_token(request)
        if token not in users:
            raise aiohttp_web.HTTPUnauthorized()
        return users[token]


def test_get_token_takes_both_schemes_and_nothing_else():
    auth = KioskHubAuthenticator()

    def token(header):
        return auth.get_token(SimpleNamespace(headers={"Authorization": header} if header else {}))

    assert [token("jupyterhub t1"), token("token t2"), token("Bearer t3"), token("")] == [
        "t1",
        "t2",
        None,
        None,
    ]


@pytest.mark.filterwarnings("ignore::aiohttp.web_exceptions.NotAppKeyWarning")
def test_a_dashboard_through_the_gateway_is_only_for_its_owner():
    """ada's cluster 'c1' through the gateway's route, as ada, as otto and as nobody."""
    key = dashboard_key("c1-token")

    async def scenario():
        dashboard_port, gateway_port = free_port(), free_port()
        dashboard = guarded_dashboard(key).listen(dashboard_port, address="127.0.0.1")
        c1 = SimpleNamespace(
            username="ada", token="c1-token", dashboard_address=f"http://127.0.0.1:{dashboard_port}"
        )
        app = aiohttp_web.Application()
        # The keys of dask-gateway-server's application.
        app["authenticator"] = TokensOfUsers()
        app["backend"] = SimpleNamespace(db=SimpleNamespace(get_cluster={"c1": c1}.get))
        add_dashboard_routes(app)
        runner = aiohttp_web.AppRunner(app)
        await runner.setup()
        await aiohttp_web.TCPSite(runner, "127.0.0.1", gateway_port).start()
        url = f"http://127.0.0.1:{gateway_port}/clusters"
        seen = {}
        try:
            # unsafe: the jar keeps cookies of IP addresses, as a browser does.
            async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
                for who, headers in (
                    ("nobody", {}),
                    ("otto", {"Authorization": "token otto-token"}),
                    ("ada", {"Authorization": "token ada-token"}),
                ):
                    async with session.get(f"{url}/c1/status?x=1", headers=headers) as reply:
                        seen[who] = (reply.status, await reply.text())
                async with session.get(f"{url}/c2/status", headers=headers) as reply:
                    seen["ada, another name"] = reply.status
                # The cookie set for ada's token carries the websocket.
                async with session.ws_connect(f"{url}/c1/status/ws") as ws:
                    await ws.send_str("hello")
                    seen["ada's websocket"] = (await ws.receive(timeout=10)).data
        finally:
            await runner.cleanup()
            dashboard.stop()
        return seen

    assert asyncio.run(scenario()) == {
        "nobody": (401, NOT_SIGNED_IN),
        "otto": (404, "You have no running Dask cluster named c1.\n"),
        "ada": (200, "dashboard /status?x=1"),
        "ada, another name": 404,
        "ada's websocket": "echo hello",
    }


def test_credentials_are_not_forwarded_to_the_dashboard():
    headers = {
        "Authorization": "token t",
        "Cookie": "jupyterhub-session-id=s",
        DASHBOARD_KEY_HEADER: "forged",
        "Connection": "keep-alive",
        "Accept": "text/html",
    }

    assert forwarded_headers(headers) == {"Accept": "text/html"}


def test_only_the_scheduler_goes_to_dask_gateways_proxy():
    routes = []

    async def add_route(**route):
        routes.append(route)

    backend = KioskSharedLocalBackend(profiles=[SMALL], default_profile="small")
    backend.proxy = SimpleNamespace(add_route=add_route)
    cluster = SimpleNamespace(
        name="c1",
        added_to_proxies=False,
        scheduler_address="tls://127.0.0.1:4000",
        dashboard_address="http://127.0.0.1:4001",
    )
    asyncio.run(backend._check_cluster_proxied(cluster))

    assert routes == [{"kind": "SNI", "sni": "c1", "target": "tls://127.0.0.1:4000"}]


def test_workers_run_without_a_dashboard():
    backend = KioskSharedLocalBackend(profiles=[SMALL], default_profile="small")
    cluster = SimpleNamespace(
        scheduler_address="tls://127.0.0.1:4000",
        config=SimpleNamespace(
            worker_cmd=["dask", "worker"], worker_threads=1, worker_memory=10**9
        ),
    )

    assert backend.get_worker_command(cluster, "w1")[-1] == "--no-dashboard"


# ---- cluster processes: cgroups and logs ----------------------------------------------------


def test_each_cluster_process_is_limited_to_what_the_cluster_counts_for_it():
    config = {
        "scheduler_memory": 10**9,
        "scheduler_cores": 1,
        "worker_memory": 4 * 10**9,
        "worker_cores": 2,
    }

    assert process_limits(config, "scheduler") == (10**9, 1.0)
    assert process_limits(config, "worker-3f2a") == (4 * 10**9, 2.0)
    assert process_limits(SimpleNamespace(**config), "worker-3f2a") == (4 * 10**9, 2.0)
    assert group_name("c1", "worker-3f2a") == "dask-c1-worker-3f2a"


def test_a_log_is_not_created_through_a_link_the_user_planted(tmp_path):
    workdir, elsewhere = tmp_path / "cluster", tmp_path / "elsewhere"
    workdir.mkdir()
    elsewhere.mkdir()
    (workdir / "logs").symlink_to(elsewhere)

    with pytest.raises(OSError):
        open_log(str(workdir), "scheduler.log")
    assert list(elsewhere.iterdir()) == []

    (workdir / "logs").unlink()
    (workdir / "logs").mkdir()
    (workdir / "logs" / "worker.log").symlink_to(elsewhere / "target")
    with pytest.raises(FileExistsError):
        open_log(str(workdir), "worker.log")
    os.close(open_log(str(workdir), "scheduler.log"))
    assert sorted(p.name for p in (workdir / "logs").iterdir()) == ["scheduler.log", "worker.log"]
