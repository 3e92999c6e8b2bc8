"""Idle culling on a real hub with the real jupyterhub-idle-culler, on short timeouts.

One hub for the module: servers of the profile ``small`` are culled after 16 idle seconds,
those of ``brief`` after 8, those of ``capped`` 50 seconds after they start, active or
not; the culler checks every 2 seconds and servers warn 6 seconds ahead (JupyterLab in
Chromium shows the warning). Dask Gateway runs too, so that a culled server's clusters
can be seen to go.
"""

from __future__ import annotations

import json
import shutil
import time

import psutil
import pytest
from dask_gateway import Gateway, JupyterHubAuth

from kioskhub.hub.sample_data import write_sample_data
from tests.browser.test_lab_in_browser import sign_in as sign_in_with_chromium
from tests.conftest import SHARED_PASSWORD, open_folder
from tests.integration.test_dask_gateway import dask_processes, wait_until
from tests.support.browser import Browser
from tests.support.hub_process import free_port, start_hub, write_site_config
from tests.support.user_session import UserSession, signed_in

pytestmark = pytest.mark.integration

SMALL_TIMEOUT, BRIEF_TIMEOUT, WARN_BEFORE, EVERY = 16, 8, 6, 2
CAPPED_MAX_AGE = 50


@pytest.fixture(scope="module")
def site():
    folder = open_folder("culling")
    write_sample_data(folder / "data")
    ports = {"http": free_port(), "scheduler_proxy": free_port(), "api": free_port()}
    config = write_site_config(
        folder,
        profiles=[
            {"name": "small", "cpu": 1, "memory": "1Gi", "default": True},
            {"name": "brief", "cpu": 1, "memory": "1Gi"},
            {"name": "capped", "cpu": 1, "memory": "1Gi"},
        ],
        culling={
            "enabled": True,
            "timeout": SMALL_TIMEOUT,
            "every": EVERY,
            "warn_before": WARN_BEFORE,
            "profiles": [
                {"name": "brief", "timeout": BRIEF_TIMEOUT},
                {"name": "capped", "timeout": 600, "max_age": CAPPED_MAX_AGE},
            ],
        },
        dask={
            "enabled": True,
            "workers": {"worker_cores": 1, "worker_memory": "500M", "max_workers": 1},
            "scheduler": {"cores": 1, "memory": "500M"},
            "ports": ports,
        },
    )
    hub = start_hub(config, folder / "hub.log")
    yield {"hub": hub, "folder": folder}
    if hub.process.poll() is None:
        hub.stop()
    shutil.rmtree(folder, ignore_errors=True)


def started(site, name: str, profile: str = "small") -> UserSession:
    user = signed_in(site["hub"].url, name, SHARED_PASSWORD)
    events = user.spawn({"profile": profile})
    assert events[-1].get("ready"), events
    return user


def running(user: UserSession) -> bool:
    reply = user.api(f"/users/{user.username}")
    reply.raise_for_status()
    return bool(reply.json()["servers"])


def culled_in_log(site, name: str) -> bool:
    return f"Culling server {name} " in site["hub"].log_text()


def test_a_shorter_profile_is_culled_first_then_the_idle_server(site):
    ada = started(site, "ada", "small")
    bob = started(site, "bob", "brief")
    wait_until(lambda: not running(bob), 4 * BRIEF_TIMEOUT, "bob's brief server was not culled")
    assert running(ada), "ada's small server went before bob's brief one"
    assert culled_in_log(site, "bob")
    wait_until(lambda: not running(ada), 4 * SMALL_TIMEOUT, "ada's idle server was not culled")
    assert culled_in_log(site, "ada")
    assert "Error processing" not in site["hub"].log_text()


def test_the_cullers_token_can_stop_servers_and_nothing_more(site):
    """Whoever gets hold of the culler's token can stop servers, not start them, make
    users or admins, delete users or read their tokens."""
    finn = started(site, "finn", "small")
    culler = next(
        proc
        for proc in psutil.Process(site["hub"].process.pid).children(recursive=True)
        if "kioskhub.hub.idle_culler_profiles" in " ".join(proc.cmdline())
    )
    token = culler.environ()["JUPYTERHUB_API_TOKEN"]
    hub = site["hub"]
    refused = {
        "start a server": hub.api("/users/ada/server", token, "POST"),
        "make a user": hub.api("/users/mallory", token, "POST"),
        "make an admin": hub.api("/users/finn", token, "PATCH", json={"admin": True}),
        "delete a user": hub.api("/users/ada", token, "DELETE"),
        "read tokens": hub.api("/users/finn/tokens", token),
        "read auth state": hub.api("/users/finn?include_stopped_servers", token),
    }
    codes = {what: reply.status_code for what, reply in refused.items()}
    assert codes["read auth state"] == 200
    assert "auth_state" not in refused["read auth state"].json()
    del codes["read auth state"]
    assert codes == dict.fromkeys(codes, 403), codes
    assert hub.api("/users/finn/server", token, "DELETE").status_code in (202, 204)
    wait_until(lambda: not running(finn), 30, "the culler's token did not stop finn's server")


def test_an_active_server_is_not_culled(site):
    cora = started(site, "cora", "brief")
    deadline = time.monotonic() + 3 * BRIEF_TIMEOUT
    while time.monotonic() < deadline:
        # What JupyterLab does while its user works: requests to the server's API.
        assert cora.server("/api/contents").status_code == 200
        assert running(cora), "cora's server was culled while she was working"
        time.sleep(1)
    assert not culled_in_log(site, "cora")
    cora.stop_server()


def test_the_server_warns_before_it_is_culled(site):
    dora = started(site, "dora", "small")
    states = []

    def culling_state() -> dict | None:
        reply = dora.server("/kioskhub/culling")
        if reply.status_code != 200:
            return None  # culled: the proxy no longer reaches the server
        states.append(reply.json())
        return states[-1]

    first = culling_state()
    assert first["enabled"] and first["timeout"] == SMALL_TIMEOUT
    assert first["warning"] is None and first["warning_due"] is not None
    warned = wait_until(
        lambda: (state := culling_state()) and state["warning"],
        2 * SMALL_TIMEOUT,
        f"no warning before culling; states: {states}",
    )
    assert "Your server has been idle and will be stopped in" in warned
    wait_until(lambda: not running(dora), 3 * SMALL_TIMEOUT, "dora's server was not culled")
    warnings = [s for s in states if s["warning"]]
    assert warnings and all(s["seconds_left"] <= WARN_BEFORE for s in warnings)


def test_jupyterlab_shows_the_warning_before_the_maximum_age(site):
    """An open JupyterLab keeps its server active, so the maximum age is what culls it:
    the user sees a notification in JupyterLab first."""
    gina = started(site, "gina", "capped")
    chromium = Browser()
    try:
        sign_in_with_chromium(chromium, site["hub"].url, "gina", SHARED_PASSWORD)
        chromium.wait_for_url(lambda url: "/user/gina/lab" in url, 60, "gina's JupyterLab")
        try:
            toast = chromium.wait_for_text(
                ".Toastify__toast", "maximum running time", CAPPED_MAX_AGE + 10
            )
        except TimeoutError:
            logs = chromium.driver.get_log("browser")
            reply = gina.server("/kioskhub/culling")
            raise AssertionError(f"{reply.status_code} {reply.text}; browser: {logs}") from None
        assert "will be stopped in" in toast.text
        assert running(gina), "the warning came only after the server was stopped"
    finally:
        chromium.quit()
    wait_until(lambda: not running(gina), 2 * CAPPED_MAX_AGE, "gina's server was not culled")
    assert culled_in_log(site, "gina")


def test_culling_stops_the_users_dask_clusters(site):
    emil = started(site, "emil", "small")
    config_file = site["folder"] / "state" / "dask-gateway" / "dask_gateway_config.json"
    config = json.loads(config_file.read_text())
    gateway = Gateway(
        address=f"{site['hub'].url}/services/dask-gateway",
        proxy_address=f"gateway://{config['Proxy']['tcp_address']}",
        auth=JupyterHubAuth(api_token=emil.token),
    )
    name = gateway.submit()
    wait_until(lambda: gateway.get_cluster(name).status.name == "RUNNING", 90, "no cluster")
    assert dask_processes("kh-emil"), "the cluster runs no dask process as kh-emil"

    wait_until(lambda: not running(emil), 4 * SMALL_TIMEOUT, "emil's server was not culled")
    assert culled_in_log(site, "emil")
    wait_until(lambda: not gateway.list_clusters(), 30, "emil's cluster outlived his server")
    wait_until(lambda: not dask_processes("kh-emil"), 30, "dask processes of kh-emil remain")
