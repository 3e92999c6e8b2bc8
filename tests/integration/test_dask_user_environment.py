"""Dask in the notebook's own environment: a cluster from a server launched from a built venv
runs that venv, so a task imports the repository's own package on the workers.

One hub as root with the builder and the gateway. lise registers a repository holding a small
package (``pyproject.toml``), which the local builder builds into her private venv; her
server launches from it, and from a kernel ``Gateway().new_cluster()`` (no arguments) runs a
task that calls the package. emmy, from her server in the default environment, names lise's
environment (by name and by path) and is refused with the reason.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import requests

from tests.conftest import open_folder
from tests.integration.test_builder_environments import Env, start_builder_hub
from tests.support.hub_process import free_port, write_site_config
from tests.support.package_repository import make_package_repository

pytestmark = pytest.mark.integration

ON_THE_WORKERS = """
import json, os, sys, urllib.error, urllib.request
from dask_gateway import Gateway
import beamline

gateway = Gateway()
cluster = gateway.new_cluster()
try:
    cluster.scale(1)
    client = cluster.get_client()
    client.wait_for_workers(1, timeout=180)

    def on_a_worker(x):
        import os, sys
        import beamline
        return {"answer": beamline.focus(x), "prefix": sys.prefix, "groups": os.getgroups()}

    result = client.submit(on_a_worker, 21).result(timeout=120)
    dashboard_request = urllib.request.Request(
        cluster.dashboard_link,
        headers={"Authorization": f"token {os.environ['JUPYTERHUB_API_TOKEN']}"},
    )
    try:
        with urllib.request.urlopen(dashboard_request, timeout=30) as reply:
            page = reply.read().decode()
            dashboard = [reply.status, "Bokeh." in page, page[:300]]
    except urllib.error.HTTPError as error:
        dashboard = [error.code, error.read(300).decode(errors="replace")]
    scheduler = client.run_on_scheduler(lambda: __import__("sys").prefix)
    print("RESULT", json.dumps({
        **result,
        "scheduler": scheduler,
        "server": sys.prefix,
        "in_server": beamline.focus(1),
        "dashboard": dashboard,
        "options": dict(gateway.cluster_options()),
    }))
    client.close()
finally:
    cluster.shutdown()
print("CLUSTERS LEFT", len(gateway.list_clusters()))
"""
# A refused ``new_cluster`` leaves its cluster's own ``Gateway`` in a reference cycle with the
# exception. dask_gateway's ``Gateway.__del__`` closes it through its event loop and waits,
# so if the cycle is collected on that loop's thread the kernel hangs; ``gc.collect()`` here
# collects it on the kernel's main thread, as a notebook that catches the error may need to.
ATTEMPT = """
import gc
from dask_gateway import Gateway
gateway = Gateway()
for name in {names!r}:
    try:
        cluster = gateway.new_cluster(environment=name)
        print("STARTED", name)
        cluster.shutdown()
    except Exception as error:
        print("REFUSED", type(error).__name__, error)
        del error
        gc.collect()
"""


@pytest.fixture(scope="module")
def site():
    assert os.geteuid() == 0, "these tests need root: servers and clusters run as user accounts"
    folder = open_folder("dask-env")
    repo = make_package_repository(folder)
    (folder / "data").mkdir()
    config = write_site_config(
        folder,
        builder={
            "enabled": True,
            "port": free_port(),
            "allow_local_paths": True,
            "build_timeout": 900,
        },
        profiles=[{"name": "small", "cpu": 1, "memory": "2Gi", "default": True}],
        dask={
            "enabled": True,
            "workers": {"worker_cores": 1, "worker_memory": "700M", "max_workers": 1},
            "scheduler": {"cores": 1, "memory": "700M"},
            "ports": {"http": free_port(), "scheduler_proxy": free_port(), "api": free_port()},
        },
    )
    hub = start_builder_hub(config, folder / "hub.log")
    yield {"hub": hub, "repo": repo, "folder": folder}
    hub.stop()
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def built(site):
    """lise's environment, built from the repository: its spawn name and venv."""
    lise = Env(site["hub"].url, "lise")
    reply = lise.call(
        "POST", "/environments", json={"name": "beam", "repository": str(site["repo"])}
    )
    assert reply.status_code == 201, reply.text
    events = lise.follow(reply.json()["id"], timeout=900)
    assert events[-1]["status"] == "ready", events[-5:]
    environment = lise.call("GET", f"/environments/{reply.json()['id']}").json()
    return {"lise": lise, "name": "lise.beam", "venv": environment["artifact"]["venv_path"]}


def stdout_of(user: Env, environment: str, code: str, timeout: float) -> str:
    """What ``code`` prints in a kernel of ``user``'s server launched from ``environment``."""
    events = user.user.spawn({"environment": environment})
    assert events[-1].get("ready"), events
    try:
        reply = user.user.execute(code, timeout=timeout)
    finally:
        user.user.stop_server()
    assert reply["error"] is None, reply
    return reply["stdout"]


def test_a_task_imports_the_repositorys_package_on_workers_of_the_same_venv(site, built):
    out = stdout_of(built["lise"], built["name"], ON_THE_WORKERS, timeout=400)

    result = json.loads(out.split("RESULT ", 1)[1].splitlines()[0])
    venv = built["venv"]
    assert result["answer"] == 42 and result["in_server"] == 2
    assert result["server"] == result["scheduler"] == result["prefix"] == venv
    assert result["options"] == {"profile": "small", "environment": "lise.beam"}
    # The status page itself (Bokeh's), not distributed's "Dask needs bokeh" page.
    assert result["dashboard"][:2] == [200, True], result["dashboard"]
    # lise's venv is private (root:<its group>, 0750): the worker holds that group.
    assert os.lstat(venv).st_mode & 0o777 == 0o750
    assert os.lstat(venv).st_gid in result["groups"]
    assert "CLUSTERS LEFT 0" in out
    assert "Created cluster" in site["hub"].log_text() and venv in site["hub"].log_text()


def test_another_users_private_environment_is_refused(site, built):
    emmy = Env(site["hub"].url, "emmy")
    names = [built["name"], built["venv"], str(Path(built["venv"]) / "bin" / "python")]

    out = stdout_of(emmy, "default", ATTEMPT.format(names=names), timeout=180)

    assert "STARTED" not in out, out
    for name in names:
        assert (
            f"REFUSED ValueError A Dask cluster runs in an environment you may launch. "
            f"Unknown environment {name!r}. Choose one of: default.\n"
        ) in out, out
    clusters = requests.get(
        f"{site['hub'].url}/services/dask-gateway/api/v1/clusters/",
        headers={"Authorization": f"jupyterhub {emmy.user.token}"},
        timeout=30,
    )
    assert clusters.status_code == 200 and clusters.json() == {}, clusters.text
