"""Scale-out with Dask Gateway on a real hub: clusters from a kernel, limits, groups, lifetime,
cgroups of the cluster processes, and dashboards for their owner only (with a token, or in a
browser that signs in with the hub's OAuth).

One hub for the module (the gateway runs as its service). lise and emmy may use the
gateway (group ``scientists``), otto may not. Each user may run 2 clusters and 3 cores
in all (a scheduler counts 1 core, a worker 1). The profile ``brief`` times out after 6
idle seconds.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import nbformat
import psutil
import pytest
import requests
from aiohttp import ClientResponseError
from dask_gateway import Gateway, GatewayClusterError, JupyterHubAuth

from kioskhub.hub.dask_cluster_cgroups import MAX_PROCESSES
from kioskhub.hub.dask_dashboard_guard import REFUSAL
from kioskhub.hub.dask_dashboard_login import NOT_SIGNED_IN, STATE_REFUSED
from kioskhub.hub.sample_data import write_sample_data
from kioskhub.spawner.cgroups import detect_layout
from tests.browser.test_lab_in_browser import sign_in as sign_in_with_chromium
from tests.conftest import SHARED_PASSWORD, open_folder
from tests.support.browser import Browser
from tests.support.hub_process import free_port, start_hub, write_site_config
from tests.support.user_session import UserSession
from tests.support.user_session import signed_in as sign_in

pytestmark = pytest.mark.integration

NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "examples" / "dask-scale-out.ipynb"
IDLE_SECONDS = 6


@pytest.fixture(scope="module")
def site():
    folder = open_folder("dask")
    write_sample_data(folder / "data")
    ports = {"http": free_port(), "scheduler_proxy": free_port(), "api": free_port()}
    config = write_site_config(
        folder,
        profiles=[
            {"name": "small", "cpu": 1, "memory": "1Gi", "default": True},
            {"name": "brief", "cpu": 1, "memory": "1Gi"},
        ],
        groups={"scientists": ["lise", "emmy"]},
        dask={
            "enabled": True,
            "groups": ["scientists"],
            "workers": {"worker_cores": 1, "worker_memory": "500M", "max_workers": 3},
            "profiles": [{"name": "brief", "idle_timeout": IDLE_SECONDS}],
            "scheduler": {"cores": 1, "memory": "500M"},
            "user_limits": {"max_clusters": 2, "max_cores": 3},
            "ports": ports,
        },
    )
    hub = start_hub(config, folder / "hub.log")
    gateways: dict[str, Gateway] = {}
    yield {"hub": hub, "folder": folder, "gateways": gateways}
    gateways.clear()  # each client closes itself when collected (closing twice fails)
    if hub.process.poll() is None:
        hub.stop()
    shutil.rmtree(folder, ignore_errors=True)


def signed_in(hub, name: str) -> UserSession:
    return sign_in(hub.url, name, SHARED_PASSWORD)


@pytest.fixture(scope="module")
def lise(site):
    user = signed_in(site["hub"], "lise")
    events = user.spawn()
    assert events[-1].get("ready"), events
    return user


@pytest.fixture(scope="module")
def emmy(site):
    """Signed in with a server, so that her system account exists."""
    user = signed_in(site["hub"], "emmy")
    events = user.spawn()
    assert events[-1].get("ready"), events
    return user


def gateway_for(site, user: UserSession) -> Gateway:
    """The gateway as ``user`` reaches it through the hub's URL, with a token of theirs.

    One client per user for the module: each holds an event loop in a thread.
    """
    if user.username not in site["gateways"]:
        config_file = site["folder"] / "state" / "dask-gateway" / "dask_gateway_config.json"
        config = json.loads(config_file.read_text())
        site["gateways"][user.username] = Gateway(
            address=f"{site['hub'].url}/services/dask-gateway",
            proxy_address=f"gateway://{config['Proxy']['tcp_address']}",
            auth=JupyterHubAuth(api_token=user.token),
        )
    return site["gateways"][user.username]


def dask_processes(account: str) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["username", "cmdline"]):
        cmdline = " ".join(proc.info["cmdline"] or [])
        if proc.info["username"] == account and "dask" in cmdline:
            found.append(proc)
    return found


def running_cluster(gateway: Gateway, **options) -> str:
    """The name of a new cluster, once it runs."""
    name = gateway.submit(**options)
    wait_until(lambda: gateway.get_cluster(name).status.name == "RUNNING", 60, f"{name} never ran")
    return name


def wait_until(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.5)
    raise TimeoutError(f"after {timeout}s: {what}")


def cgroup_dirs(pid: int) -> tuple[str, str | None]:
    """The memory and cpu cgroup folders of process ``pid``."""
    with open(f"/proc/{pid}/cgroup") as cgroup, open("/proc/self/mountinfo") as mounts:
        layout = detect_layout(cgroup.read(), mounts.read())
    return layout.memory_dir, layout.cpu_dir


def read_pids_limit(pid: int) -> int:
    """The pids.max of ``pid``'s cgroup."""
    with open(f"/proc/{pid}/cgroup") as cgroup, open("/proc/self/mountinfo") as mounts:
        layout = detect_layout(cgroup.read(), mounts.read())
    assert layout.pids_dir is not None, "no pids controller: cgroups lack process limits"
    return int(Path(layout.pids_dir, "pids.max").read_text())


def read_limits(pid: int) -> tuple[int, int]:
    """Memory limit (bytes) and CFS quota (µs per 100 ms) of ``pid``'s cgroups."""
    memory_dir, cpu_dir = cgroup_dirs(pid)
    for name in ("memory.limit_in_bytes", "memory.max"):
        if os.path.exists(f"{memory_dir}/{name}"):
            memory = int(Path(memory_dir, name).read_text())
    quota = Path(cpu_dir, "cpu.cfs_quota_us")
    if not quota.exists():
        quota = Path(cpu_dir, "cpu.max")
    cpu = int(quota.read_text().split()[0])
    return memory, cpu


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


PROBE = """
import getpass, json, os, urllib.request
dashboard_request = urllib.request.Request(
    cluster.dashboard_link,
    headers={"Authorization": f"token {os.environ['JUPYTERHUB_API_TOKEN']}"},
)
with urllib.request.urlopen(dashboard_request, timeout=30) as reply:
    dashboard = reply.status
print("PROBE", json.dumps({
    "accounts": sorted(set(client.run(getpass.getuser).values())),
    "homes": sorted(set(client.run(lambda: os.environ["HOME"]).values())),
    "server_home": os.environ["HOME"],
    "link": cluster.dashboard_link,
    "dashboard": dashboard,
    "options": dict(gateway.cluster_options()),
}))
"""


def test_the_example_notebook_scales_out_from_a_users_kernel(site, lise):
    cells = [c.source for c in nbformat.read(NOTEBOOK, as_version=4).cells if c.cell_type == "code"]
    code = "\n".join([*cells[:-1], PROBE, cells[-1]])

    reply = lise.execute(code, timeout=240)

    assert reply["error"] is None, reply
    out = reply["stdout"]
    assert "has 2 workers" in out and "Dask cluster shut down" in out, out
    assert "mean of x + x.T: 1.0" in out and "from 26 sensors" in out, out
    probe = json.loads(out.split("PROBE ", 1)[1].splitlines()[0])
    assert probe["accounts"] == ["kh-lise"]
    assert probe["homes"] == [probe["server_home"]], "workers and server disagree on HOME"
    assert probe["link"].startswith(f"{site['hub'].url}/services/dask-gateway/clusters/")
    assert probe["dashboard"] == 200
    assert probe["options"] == {"profile": "small", "environment": "default"}
    assert gateway_for(site, lise).list_clusters() == []


def test_the_lab_extensions_new_cluster_button_uses_the_gateway(site, lise):
    created = lise.server("/dask/clusters/", "PUT")
    assert created.status_code == 200, created.text
    model = created.json()
    try:
        assert model["dashboard_link"].startswith(
            f"{site['hub'].url}/services/dask-gateway/clusters/"
        )
        assert [c.name for c in gateway_for(site, lise).list_clusters()] == [
            model["dashboard_link"].split("/clusters/")[1].split("/")[0]
        ]
    finally:
        assert lise.server(f"/dask/clusters/{model['id']}", "DELETE").status_code == 204
    wait_until(lambda: not gateway_for(site, lise).list_clusters(), 30, "cluster left running")


def test_per_user_limits_refuse_with_a_clear_error(site, lise):
    gateway = gateway_for(site, lise)
    first = gateway.submit()
    try:
        with pytest.raises(
            GatewayClusterError,
            match="would use 4 cores, while your clusters "
            "may use 3 cores in all and your other clusters use 0",
        ):
            gateway.scale_cluster(first, 3)
        second = gateway.submit()
        with pytest.raises(
            ValueError,
            match="You already run 2 Dask cluster.s., the most one user may run at once is 2",
        ):
            gateway.submit()
        with pytest.raises(GatewayClusterError, match="your other clusters use 1"):
            gateway.scale_cluster(first, 2)
    finally:
        for name in (first, locals().get("second")):
            if name:
                gateway.stop_cluster(name)


def test_users_can_neither_list_nor_reach_each_others_clusters(site, lise, emmy):
    theirs = running_cluster(gateway_for(site, emmy))
    mine = gateway_for(site, lise)

    assert theirs not in [c.name for c in mine.list_clusters()]
    for attempt in (
        lambda: mine.get_cluster(theirs),  # what connect() asks first: the TLS credentials
        lambda: mine.scale_cluster(theirs, 1),
        lambda: mine.stop_cluster(theirs),
    ):
        with pytest.raises(ClientResponseError, match="403"):
            attempt()
    assert [c.name for c in gateway_for(site, emmy).list_clusters()] == [theirs]
    gateway_for(site, emmy).stop_cluster(theirs)


LEAVE_BEHIND = """
import subprocess
from dask_gateway import Gateway
client = Gateway().connect({name!r}).get_client()
client.wait_for_workers(1, timeout=90)
def leave_behind():
    return subprocess.Popen(["setsid", "sleep", "4321"]).pid
print("LEFT", *client.run(leave_behind).values())
client.close()
"""


def test_cluster_processes_run_in_limited_cgroups_and_die_with_the_cluster(site, lise):
    gateway = gateway_for(site, lise)
    name = running_cluster(gateway)
    try:
        gateway.scale_cluster(name, 1)
        reply = lise.execute(LEAVE_BEHIND.format(name=name), timeout=150)
        assert reply["error"] is None, reply
        left = int(reply["stdout"].split("LEFT ")[1].split()[0])
        scheduler = next(p for p in dask_processes("kh-lise") if "scheduler" in p.cmdline())

        assert psutil.Process(left).username() == "kh-lise"
        assert os.getsid(left) == left, "the leftover did not start a session of its own"
        assert cgroup_dirs(scheduler.pid)[0].endswith(f"/kioskhub/dask-{name}-scheduler")
        assert f"/kioskhub/dask-{name}-worker-" in cgroup_dirs(left)[0]
        # 500M of memory (to the kernel's page) and 1 core each, as the cluster counts them.
        for memory, cpu in (read_limits(scheduler.pid), read_limits(left)):
            assert 500_000_000 - 4096 < memory <= 500_000_000 and cpu == 100_000
        # At most as many processes as a server, so a fork bomb in a task stops there.
        for pid in (scheduler.pid, left):
            assert read_pids_limit(pid) == MAX_PROCESSES
        groups = [*cgroup_dirs(scheduler.pid), *cgroup_dirs(left)]
    finally:
        gateway.stop_cluster(name)

    wait_until(lambda: gone(left), 30, "the worker's setsid process outlived its cluster")
    wait_until(
        lambda: not [g for g in groups if os.path.exists(g)], 30, f"cgroups left: {groups}"
    )
    assert re.search(r"Killed \d+ leftover processes of worker-", site["hub"].log_text())


PEEK = """
import json, os, urllib.error, urllib.request
def fetch(url, token=None):
    headers = {{"Authorization": f"token {{token}}"}} if token else {{}}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=20) as r:
            return r.status, r.read(400).decode(errors="replace")
    except urllib.error.HTTPError as error:
        return error.code, error.read(400).decode(errors="replace")
    except OSError as error:
        return 0, repr(error)
mine = os.environ["JUPYTERHUB_API_TOKEN"]
print("PEEK", json.dumps({{
    "direct": [fetch(f"http://127.0.0.1:{{port}}/status") for port in {ports!r}],
    "gateway_without_token": fetch({link!r}),
    "gateway_with_own_token": fetch({link!r}, mine),
}}))
"""


def test_a_dashboard_is_only_for_its_clusters_owner(site, lise, emmy):
    gateway = gateway_for(site, lise)
    name = running_cluster(gateway)
    link = f"{site['hub'].url}/services/dask-gateway/clusters/{name}/status"
    try:
        scheduler = next(p for p in dask_processes("kh-lise") if "scheduler" in p.cmdline())
        ports = sorted(
            c.laddr.port for c in scheduler.net_connections("tcp") if c.status == "LISTEN"
        )
        # emmy, from her own notebook, tries every port of lise's scheduler and the gateway.
        reply = emmy.execute(PEEK.format(ports=ports, link=link), timeout=90)
        assert reply["error"] is None, reply
        peek = json.loads(reply["stdout"].split("PEEK ", 1)[1])
        owner = requests.get(link, headers={"Authorization": f"token {lise.token}"}, timeout=30)
    finally:
        gateway.stop_cluster(name)

    assert [status for status, _ in peek["direct"]].count(200) == 0, peek["direct"]
    assert [403, REFUSAL + "\n"] in peek["direct"], peek["direct"]
    assert peek["gateway_without_token"] == [401, NOT_SIGNED_IN], peek
    assert peek["gateway_with_own_token"] == [
        404, f"You have no running Dask cluster named {name}.\n"
    ]
    assert owner.status_code == 200 and "Dask" in owner.text, owner.text[:400]


PAGE = {"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}
"""What a browser asks for when it loads a page."""


def test_a_browser_with_the_hubs_login_signs_in_to_its_own_dashboard_only(site, lise, emmy):
    """Each ``.http`` is a browser's session: the hub's login cookies and no token."""
    gateway = gateway_for(site, lise)
    name = running_cluster(gateway)
    link = f"{site['hub'].url}/services/dask-gateway/clusters/{name}/status"
    try:
        owner = lise.http.get(link, headers=PAGE, timeout=60)
        again = lise.http.get(link, headers=PAGE, timeout=60)
        # emmy starts a sign-in and sends its callback (her code, her state) to lise.
        started = emmy.http.get(link, headers=PAGE, allow_redirects=False, timeout=30)
        authorize = urljoin(link, started.headers["Location"])
        approved = emmy.http.get(authorize, allow_redirects=False, timeout=30)
        callback = urljoin(link, approved.headers["Location"])
        planted = lise.http.get(callback, allow_redirects=False, timeout=30)
        other = emmy.http.get(link, headers=PAGE, timeout=60)
        outsider = signed_in(site["hub"], "otto").http.get(link, headers=PAGE, timeout=60)
    finally:
        gateway.stop_cluster(name)

    assert owner.status_code == 200 and "Dask" in owner.text, owner.text[:400]
    sent_to_hub, hub_back, gateway_back = (urlsplit(r.url).path for r in owner.history)
    assert sent_to_hub == f"/services/dask-gateway/clusters/{name}/status"
    assert hub_back == "/hub/api/oauth2/authorize", "the hub asked for a confirmation"
    assert gateway_back == "/services/dask-gateway/oauth_callback"
    cookie = owner.history[2].headers["Set-Cookie"].lower()
    assert "httponly" in cookie and "path=/services/dask-gateway/" in cookie, cookie
    assert again.status_code == 200 and again.history == [], "the cookie did not sign lise in"
    assert other.status_code == 404, other.text
    assert other.text == f"You have no running Dask cluster named {name}.\n"
    assert outsider.status_code == 403 and "only for members of the groups" in outsider.text
    assert callback.startswith(f"{site['hub'].url}/services/dask-gateway/oauth_callback?code=")
    assert (planted.status_code, planted.text) == (403, STATE_REFUSED)


@pytest.mark.browser
def test_chromium_signed_in_to_the_hub_opens_the_dashboard_link(site, lise):
    gateway = gateway_for(site, lise)
    name = running_cluster(gateway)
    link = f"{site['hub'].url}/services/dask-gateway/clusters/{name}/status"
    chromium = Browser()
    try:
        sign_in_with_chromium(chromium, site["hub"].url, "lise", SHARED_PASSWORD)
        chromium.wait_for_url(lambda url: "/hub/login" not in url, 60, "past the login page")
        chromium.get(link)
        title = chromium.wait_until(lambda driver: "Dask" in driver.title and driver.title, 60)
        url = chromium.url
    except Exception:
        raise AssertionError(chromium.describe()) from None
    finally:
        chromium.quit()
        gateway.stop_cluster(name)

    assert url == link and "Dask" in title


def test_stopping_the_server_stops_the_users_clusters(site, lise):
    gateway = gateway_for(site, lise)
    cluster = running_cluster(gateway)
    gateway.scale_cluster(cluster, 1)
    wait_until(lambda: len(dask_processes("kh-lise")) >= 2, 60, "no scheduler and worker")

    lise.stop_server()

    assert gateway.list_clusters() == []
    wait_until(lambda: not dask_processes("kh-lise"), 30, "cluster processes are left")
    assert f"Stopped the Dask clusters of lise with their server: {cluster}" in (
        site["hub"].log_text()
    )


def test_idle_clusters_time_out(site, emmy):
    gateway = gateway_for(site, emmy)
    started = time.monotonic()
    cluster = running_cluster(gateway, profile="brief")

    wait_until(
        lambda: cluster not in [c.name for c in gateway.list_clusters()],
        60,
        "the idle cluster is still running",
    )

    assert time.monotonic() - started >= IDLE_SECONDS
    wait_until(lambda: gateway.get_cluster(cluster).status.name == "STOPPED", 30, "not stopped")


def test_the_gateway_is_only_for_its_groups(site):
    otto = signed_in(site["hub"], "otto")

    for attempt in (gateway_for(site, otto).list_clusters, gateway_for(site, otto).submit):
        with pytest.raises(ValueError) as refused:
            attempt()
        assert str(refused.value) == (
            "Dask Gateway is only for members of the groups scientists; otto is in no group. "
            "Ask the site's admins to add you."
        )


def test_stopping_the_hub_leaves_no_gateway_or_cluster_behind(site, emmy):
    running_cluster(gateway_for(site, emmy))
    site["hub"].record_descendants()
    assert dask_processes("kh-emmy"), "the cluster's scheduler is not running"

    assert site["hub"].stop() == 0

    assert site["hub"].leftover_processes() == []
